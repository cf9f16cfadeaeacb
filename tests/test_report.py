"""``run --report``: one self-contained HTML page, checked as text and in a real headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.pipeline import report_clusters
from pairscan.records import format_p
from pairscan.report import dataset_facts, write_report
from pairscan.run_result import RunNetwork
from pairscan.store import read_manifest, store_files

from conftest import oracle_series, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


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
    # Nothing is fetched: no links, scripts, stylesheets or images from anywhere else; the
    # scripts are the search's data and the page's own code, inline.
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text)
    assert "@import" not in text and "url(" not in text and "fetch(" not in text and "XMLHttpRequest" not in text
    assert re.findall(r"<script[^>]*>", text) == ['<script type="application/json" id="search-data">', "<script>"]
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]+)"', text)
    assert len(images) == 4 + ("spread" in out["plots"])  # histogram, pair, network, heatmap (and the best spread)
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
    rows = re.findall(r"<tr(?: class=best)?><td class=num>(\d+)</td><td>([^<]+)</td><td>([^<]+)</td>"
                      r"<td class=num>([-0-9.]+)</td>", pairs_section)
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


def report_network(store, selection=None):
    """The network as the report cuts it, through ``network``'s own ``clusters=``: the
    tickers with no ranked pair stay alone, the others are cut into report_clusters."""
    whole = pairscan.network(store, selection=selection, executor="serial", quiet=True)
    n, lone = len(whole.tickers), len(whole.lone)
    return pairscan.network(store, clusters=min(n, lone + report_clusters(n - lone)), selection=selection,
                            executor="serial", quiet=True)


def test_the_page_shows_the_network_that_pairscan_network_finds(report):
    # run --report includes the network (DESIGN: networks and clusters), cut into
    # report_clusters clusters, its picture, and each ticker's cluster in the search.
    out, page = report
    store = Path(out["store"])
    expected = report_network(store)
    assert Path(out["plots"]["network"]).read_bytes()[:8] == PNG
    text = page.read_text(encoding="utf-8")
    section = text.split('<section id="network">')[1].split("</section>")[0]
    assert 'alt="the minimum spanning tree of the correlations, coloured by cluster"' in section
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=num>(\d+)</td>", section)
    sizes = expected.cluster_sizes
    want = [(str(c), int(k)) for c, k in sizes.items() if k > 1] + ([("alone", int((sizes == 1).sum()))]
                                                                   if (sizes == 1).any() else [])
    assert [(label.split(" (")[0], int(k)) for label, k in rows] == want
    data = json.loads(text.split('id="search-data">')[1].split("</script>")[0])
    assert dict(zip(data["tickers"], data["clusters"])) == expected.clusters.to_dict()


def test_the_page_names_the_tickers_too_short_to_rank(tmp_path):
    folder = pairscan.sample(tmp_path / "d", tickers=4, days=2, bars_per_day=30)
    short = sorted(folder.glob("*.json"))[-1]
    short.write_text("".join(short.read_text().splitlines(keepends=True)[:5]))
    result = pairscan.run(folder, tmp_path / "w", k=3, report=tmp_path / "r.html", executor="serial", quiet=True)
    assert result.correlation.left_out == [{"ticker": short.stem, "n": 5}]
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert (f"<p>Left out: 1 ticker with fewer than {result.correlation.min_periods:,} observations: "
            f"{short.stem} (5).</p>") in text
    # In the network it has no edge: a cluster of its own, listed among the tickers alone, said why.
    assert result.network.lone == 1 and list(result.network.clusters.values()).count(
        result.network.clusters[short.stem]) == 1
    assert re.search(rf"<tr><td>alone \(1 with no ranked pair[^<]*</td><td class=num>\d+</td><td>[^<]*\b{short.stem}\b",
                     text)


def test_the_reports_clusters_grow_as_the_square_root_of_the_tickers():
    assert [report_clusters(n) for n in (2, 8, 21, 200, 3000)] == [1, 2, 4, 10, 20]


def test_a_run_without_report_writes_none(tmp_path):
    result = pairscan.run(pairscan.sample(tmp_path / "d", tickers=3, days=1, bars_per_day=10), tmp_path / "w")
    assert result.report is None and result.search is None and "report" not in result.to_json()
    assert "search" not in result.stages and not list(tmp_path.glob("w/*.html"))


def test_run_returns_a_typed_result_whose_json_is_correlates_plus_the_stages(report, tmp_path):
    out, _ = report
    store = Path(out["store"])
    result = pairscan.run(store, tmp_path / "work", k=5, executor="serial", quiet=True)
    assert isinstance(result, pairscan.RunResult) and isinstance(result.correlation, pairscan.Correlation)
    answer = result.to_json()
    alone = pairscan.correlate(store, k=5, executor="serial", quiet=True).to_dict()
    assert list(answer)[:len(alone)] == list(alone)
    assert list(answer)[len(alone):] == ["source", "data", "store", "convert", "plots", "stages", "analysis"]
    for key in alone.keys() - {"seconds", "timings"}:
        assert answer[key] == alone[key], key
    assert answer["top"] == out["top"] and answer["convert"] is None and answer["store"] == str(store)
    assert list(answer["stages"]) == ["correlate", "analyze", "plot"]
    with pytest.raises(AttributeError):
        result.report = "elsewhere.html"  # frozen: what a run found stays what it found


def oracle_partners(store: Path, ticker: str, min_periods: int, k: int = 10) -> list[tuple[str, float, int]]:
    """``ticker``'s ``k`` best partners by pandas: ``A.corr(B, min_periods)`` and the
    observations the two share, ranked pairs only, best first."""
    series = oracle_series(store)
    found = []
    for other, s in series.items():
        if other == ticker:
            continue
        corr = series[ticker].corr(s, min_periods=min_periods)
        if not np.isnan(corr):
            both = pd.concat([series[ticker], s], axis=1, sort=True).dropna()
            found.append((other, corr, len(both)))
    return sorted(found, key=lambda f: -f[1])[:k]


# -- in a real browser ------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium driven by Selenium: Debian's chromium and chromium-driver, named
    explicitly, so that Selenium never looks for (or downloads) a browser of its own."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or next((p for p in ("/usr/bin/chromedriver",) if Path(p).exists()), None)
    if binary is None or driver is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium "
                    "chromium-driver): the report is not opened in a browser")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
    from selenium.webdriver.chrome.service import Service

    previous = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()
        if previous is None:
            os.environ.pop("SE_OFFLINE", None)
        else:
            os.environ["SE_OFFLINE"] = previous


def _opened(browser, page: Path):
    browser.get(page.as_uri())
    return browser


def _search_rows(browser) -> list[tuple[str, str, str]]:
    from selenium.webdriver.common.by import By

    rows = browser.find_elements(By.CSS_SELECTOR, "#search-result tbody tr")
    return [tuple(cell.text for cell in row.find_elements(By.TAG_NAME, "td"))[1:4] for row in rows]


def test_a_ticker_typed_into_the_search_shows_its_partners_with_pandas_values(report, browser):
    from selenium.webdriver.common.by import By

    out, page = report
    ticker = out["top"][0]["a"]
    _opened(browser, page).find_element(By.ID, "ticker").send_keys(ticker.upper())  # any case finds it
    rows = _search_rows(browser)
    want = oracle_partners(Path(out["store"]), ticker, out["min_periods"])
    assert 0 < len(want) == len(rows) <= 7  # 8 tickers: at most 7 partners
    for (partner, r, n), (other, corr, common) in zip(rows, want):
        assert partner == other and int(n.replace(",", "")) == common
        assert abs(float(r) - corr) <= 5e-5 + 1e-12
    caption = browser.find_element(By.CSS_SELECTOR, "#search-result caption").text
    cluster = report_network(Path(out["store"])).clusters[ticker]
    assert caption == f"The {len(want)} best partners of {ticker} (cluster {cluster})"


def test_the_search_offers_tickers_by_their_first_letters(report, browser):
    from selenium.webdriver.common.by import By

    out, page = report
    tickers = sorted(store_files(Path(out["store"])))
    first = tickers[0][0]
    box = _opened(browser, page).find_element(By.ID, "ticker")
    box.send_keys(first)
    offered = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#search-matches button")]
    starting = [t for t in tickers if t.startswith(first)]
    if len(starting) > 1:
        assert offered == starting and not browser.find_element(By.ID, "search-result").is_displayed()
        browser.find_elements(By.CSS_SELECTOR, "#search-matches button")[-1].click()
    assert browser.find_element(By.ID, "search-result").is_displayed()
    assert box.get_attribute("value") == starting[-1]
    box.clear()
    box.send_keys("zzz-none")
    status = browser.find_element(By.ID, "search-status").text
    assert status == "No ticker starts with \u201czzz-none\u201d." and not _search_rows(browser)


def test_clicking_a_heading_sorts_the_top_pairs(report, browser):
    from selenium.webdriver.common.by import By

    out, page = report
    _opened(browser, page)
    heads = browser.find_elements(By.CSS_SELECTOR, "#pairs thead th")

    def column(index: int) -> list[str]:
        return [row.find_elements(By.TAG_NAME, "td")[index].text
                for row in browser.find_elements(By.CSS_SELECTOR, "#pairs tbody tr")]

    heads[5].click()  # n, ascending; equal n keep their rank order
    assert column(5) == [f"{p['n']:,}" for p in sorted(out["top"], key=lambda p: p["n"])]
    assert heads[5].get_attribute("aria-sort") == "ascending"
    heads[5].click()
    assert [int(n.replace(",", "")) for n in column(5)] == sorted((p["n"] for p in out["top"]), reverse=True)
    heads[1].click()  # a, alphabetical
    assert column(1) == sorted(p["a"] for p in out["top"])
    heads[0].click()  # back to the ranking
    assert column(0) == [str(i) for i in range(1, len(out["top"]) + 1)]
    assert heads[0].get_attribute("aria-sort") == "ascending" and heads[5].get_attribute("aria-sort") is None


def test_the_page_renders_in_headless_chromium(report, browser, tmp_path):
    out, page = report
    _opened(browser, page)
    shot = tmp_path / "report.png"
    browser.save_screenshot(str(shot))
    from PIL import Image

    viewport = browser.execute_script("return [window.innerWidth, window.innerHeight]")
    with Image.open(shot) as image:
        assert list(image.size) == viewport and viewport[0] == 1280
        dark = sum(image.convert("L").histogram()[:128])
    assert dark > 0.01 * viewport[0] * viewport[1], "the screenshot is (nearly) blank"
    # The images decoded, the table is whole and nothing is wider than the window.
    laid_out = browser.execute_script(
        "return {images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.clientWidth]),"
        " pairs: document.querySelectorAll('#pairs tbody tr').length,"
        " width: document.documentElement.scrollWidth}")
    assert laid_out["pairs"] == len(out["top"]) == 5
    assert len(laid_out["images"]) == 4 + ("spread" in out["plots"])
    for complete, width, height, shown in laid_out["images"]:
        assert complete and width > 400 and height > 300 and 0 < shown <= 1280
    assert laid_out["width"] <= 1280
    logs = browser.get_log("browser")
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs


def test_many_tickers_get_the_search_and_no_heatmap(tmp_path, browser):
    folder = pairscan.sample(tmp_path / "d", tickers=61, days=40, daily=True)
    page = tmp_path / "r.html"
    result = pairscan.run(folder, tmp_path / "w", k=3, report=page, executor="serial", quiet=True, partners_of="all")
    text = page.read_text(encoding="utf-8")
    assert ("<p>61 tickers named: too many for a table each; the search above shows each one's 10 best "
            "partners, and run --json lists them all.</p>") in text and "best partners of" not in text
    assert "heatmap" in result.plots  # the work folder still has it; the page does not
    assert 'alt="clustered correlation heatmap"' not in text
    assert "Not drawn: with 61 tickers its labels could not be read (this page draws it up to 60)" in text
    assert list(result.stages) == ["convert", "correlate", "partners", "search", "network", "analyze", "plot",
                                   "report"]
    expected = report_network(result.store, result.correlation.selection)
    assert result.network.clusters == expected.clusters.to_dict() and result.network.picture.exists()
    assert len(result.search.partners_of) == 61
    from selenium.webdriver.common.by import By

    ticker = result.correlation.top["a"][0]
    _opened(browser, page).find_element(By.ID, "ticker").send_keys(ticker)
    found = result.search.partners[ticker]
    assert len(found) == 10
    assert _search_rows(browser) == [(b, f"{r:.4f}", f"{n:,}") for b, r, n in zip(found.b, found["corr"], found.n)]
    # Any network the page is given: its picture, its clusters, and each partner's cluster in the search.
    clusters = {t: 1 + i % 3 for i, t in enumerate(result.search.partners_of)}
    with_network = replace(result, network=RunNetwork(Path(result.plots["pair"]), clusters))
    write_report(tmp_path / "n.html", with_network)
    text = (tmp_path / "n.html").read_text(encoding="utf-8")
    assert '<section id="network">' in text and 'alt="the minimum spanning tree' in text
    assert "<tr><td>1</td><td class=num>21</td>" in text  # 61 tickers: 21, 20 and 20
    _opened(browser, tmp_path / "n.html").find_element(By.ID, "ticker").send_keys(ticker)
    shown = browser.find_elements(By.CSS_SELECTOR, "#search-result tbody tr")
    assert [row.find_elements(By.TAG_NAME, "td")[4].text for row in shown] == [str(clusters[b]) for b in found.b]
    assert browser.find_element(By.CSS_SELECTOR, "#search-result caption").text.endswith(
        f"of {ticker} (cluster {clusters[ticker]})")
