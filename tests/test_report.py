"""``run --report``: one self-contained HTML page, checked as text and in a real headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

import pairscan
from pairscan.records import format_p
from pairscan.report import dataset_facts
from pairscan.store import read_manifest, store_files

from conftest import run_cli

PNG = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars",
]


cli = run_cli  # the command line in this process


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A run of the pipeline on a ragged sample with one bad line, with its report."""
    root = tmp_path_factory.mktemp("report")
    folder = pairscan.sample(root / "daily-stock", tickers=8, days=4, bars_per_day=30, ragged=True)
    with open(folder / "amgn.json", "a") as f:
        f.write('{"timestamp": "2015-01-09 09:30:00", "close": "n/a"}\n')
    page = root / "report.html"
    done = cli("run", folder, "--workdir", root / "work", "--report", page, "--executor", "serial",
               "--on-bad-lines", "skip", "--top", "5", "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), page


def test_dataset_facts_match_the_stored_frames(report):
    out, _ = report
    store = Path(out["store"])
    frames = {t: pd.read_hdf(p, "/data") for t, p in store_files(store).items()}
    facts = dataset_facts(store)
    assert facts["tickers"] == 8
    assert facts["rows"] == sum(len(f) for f in frames.values()) == out["convert"]["rows"]
    assert facts["first"] == min(f.index[0] for f in frames.values())
    assert facts["last"] == max(f.index[-1] for f in frames.values())
    assert facts["bad_lines_skipped"] == 1
    assert list(facts["skipped_by_ticker"]) == ["amgn"]
    assert facts["format"] == "hdf5"
    assert read_manifest(store)["tickers"]["amgn"]["bad_lines_skipped"] == 1


def test_dataset_facts_of_a_parquet_store(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=3, days=2, bars_per_day=10, ragged=True)
    pairscan.convert(folder, to=tmp_path / "s", format="parquet", executor="serial")
    frames = [pd.read_parquet(p) for p in store_files(tmp_path / "s").values()]
    facts = dataset_facts(tmp_path / "s")
    assert (facts["first"], facts["last"]) == (min(f.index[0] for f in frames), max(f.index[-1] for f in frames))
    assert facts["rows"] == sum(len(f) for f in frames) and facts["format"] == "parquet"


def test_the_page_is_self_contained_and_says_what_the_run_did(report):
    out, page = report
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>")
    # Nothing is fetched: no links, scripts, stylesheets or images from anywhere else.
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text)
    assert "<script" not in text and "@import" not in text and "url(" not in text
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"', text)
    assert len(images) == 3 + ("spread" in out["plots"])  # histogram, pair, heatmap (and the best spread)
    for data, _ in images:
        assert base64.b64decode(data)[:8] == PNG
    assert images[0][1] == "histogram of the correlations of all ranked pairs"
    assert images[1][1] == f"{out['top'][0]['a']} and {out['top'][0]['b']} over time"
    # What was ranked, and each pair's n, p and interval.
    considered, ranked = out["pairs_considered"], out["pairs_ranked"]
    assert (f"Ranked: the {ranked:,} of {considered:,} pairs that share at least {out['min_periods']:,} "
            f"observations (auto: half the median history, at least 30); {considered - ranked:,} pairs were left "
            "out") in text
    best = out["top"][0]
    assert (f"<td class=num>{best['n']:,}</td><td class=num>{format_p(best['p'])}</td>"
            f"<td class=num>{best['ci_low']:.4f} &ndash; {best['ci_high']:.4f}</td>") in text
    # The top pairs, in order, with the values run --json printed.
    pairs_section = text.split('<section id="pairs">')[1].split("</section>")[0]
    rows = re.findall(r"<tr><td class=num>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td><td class=num>([-0-9.]+)</td>",
                      pairs_section)
    assert [(int(r), a, b, float(c)) for r, a, b, c in rows] == [
        (i, p["a"], p["b"], round(p["corr"], 6)) for i, p in enumerate(out["top"], 1)]
    # The data set, the skipped line and where the time went.
    assert f"{out['convert']['rows']:,}" in text
    assert "2015-01-02" in text and "bad lines skipped" in text.lower()
    bad = len((Path(out["data"]) / "amgn.json").read_text().splitlines())  # the line appended last
    assert f"<td>amgn</td><td class=num>1</td><td>line {bad}: &#x27;close&#x27; is not a number" in text
    for stage in out["stages"]:
        if stage != "report":
            assert f"<tr><td>{stage}<div" in text
    assert "serial &times;1" in text and "engine blocked" in text


def test_a_run_without_report_writes_none(tmp_path):
    out = pairscan.run(pairscan.sample(tmp_path / "d", tickers=3, days=1, bars_per_day=10), tmp_path / "w")
    assert "report" not in out and not list(tmp_path.glob("w/*.html"))


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium): the page is not opened in a browser")
    return found


PROBE = """<script>
window.addEventListener("load", () => {
  const probe = document.createElement("pre");
  probe.id = "probe";
  probe.textContent = JSON.stringify({
    images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.clientWidth]),
    pairs: document.querySelectorAll("table.pairs tbody tr").length,
    width: document.documentElement.scrollWidth,
  });
  document.body.appendChild(probe);
});
</script>"""


def test_the_page_renders_in_headless_chromium(report, tmp_path):
    browser = chromium()
    out, page = report
    profile = tmp_path / "profile"
    shot = tmp_path / "report.png"
    # The page as a reader sees it on a laptop screen.
    done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                           "--window-size=1280,900", page.as_uri()], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 900)
        grey = image.convert("L")
        dark = sum(grey.histogram()[:128])
    assert dark > 0.01 * 1280 * 900, "the screenshot is (nearly) blank"
    # The images decoded, the table is whole and nothing is wider than the window: a
    # copy of the page with a probe that writes what the browser laid out into the DOM.
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900",
                           "--virtual-time-budget=10000", "--dump-dom", probed.as_uri()],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stdout[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["pairs"] == len(out["top"]) == 5
    assert len(probe["images"]) == 3 + ("spread" in out["plots"])
    for complete, width, height, shown in probe["images"]:
        assert complete and width > 400 and height > 300 and 0 < shown <= 1280
    assert probe["width"] <= 1280
