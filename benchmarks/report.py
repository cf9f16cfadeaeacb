"""Report benchmark: `run --report` on a daily universe, its size, and its load in a browser.

Run: ``python benchmarks/report.py [--tickers 3000] [--days 1260] [--executor threads] [--shots DIR]``

Data: the daily universe of ``benchmarks/universe.py`` (built once and cached). The
command runs as a user runs it (``python -m pairscan run STORE --report r.html``, a
fresh process), then the page opens in headless Chromium (Debian's ``chromium`` and
``chromium-driver`` through Selenium, offline): printed are the file's size, the time
from navigation to the load event (the browser's own clock, best of 3), and whether a
ticker typed into the search shows its partners. The contract: under 15 MB, and open
in under 2 seconds, for 3,000 tickers. ``--shots DIR`` also saves screenshots (the
top of the page with a ticker searched, and the whole page).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from universe import universe

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def open_in_chromium(page: Path, shots: Path | None, repeat: int = 3) -> dict:
    """Load times (ms, navigation start to load event end) and the search's answer."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium must not look for a browser of its own
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        loads = []
        for _ in range(repeat):
            browser.get("about:blank")
            browser.get(page.as_uri())
            loads.append(browser.execute_script(
                "const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime;"))
        # A ticker from the middle of the list that has partners (some histories are too short for any).
        names, alone = browser.execute_script(
            "const d = JSON.parse(document.getElementById('search-data').textContent);"
            "const half = d.tickers.length >> 1;"
            "const at = d.partners.findIndex((p, i) => i >= half && p.length > 0);"
            "return [[d.tickers[at]], d.partners.filter(p => p.length === 0).length];")
        ticker = names[0]
        box = browser.find_element(By.ID, "ticker")
        started = time.perf_counter()
        box.send_keys(ticker)
        rows = browser.find_elements(By.CSS_SELECTOR, "#search-result tbody tr")
        answered = time.perf_counter() - started
        partners = [row.find_elements(By.TAG_NAME, "td")[1].text for row in rows]
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            browser.execute_script("document.getElementById('search').scrollIntoView()")
            browser.save_screenshot(str(shots / "report-search.png"))
            height = browser.execute_script("return document.documentElement.scrollHeight")
            browser.set_window_size(1280, min(height + 150, 16000))
            browser.save_screenshot(str(shots / "report-page.png"))
        return {"load_ms": loads, "ticker": ticker, "partners": partners, "typed_s": answered, "alone": alone}
    finally:
        browser.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=1260)
    parser.add_argument("--executor", default="threads")
    parser.add_argument("--shots", type=Path, default=None, help="save screenshots of the page here")
    args = parser.parse_args()
    store = universe(args.tickers, args.days)
    with tempfile.TemporaryDirectory(prefix="pairscan-report-") as tmp:
        page = Path(tmp) / "r.html"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pairscan", "run", str(store), "--workdir", str(Path(tmp) / "w"),
                        "--report", str(page), "--executor", args.executor, "--quiet"], check=True,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        size = page.stat().st_size
        opened = open_in_chromium(page, args.shots)
    print(f"{args.tickers:,} tickers x {args.days:,} days: run --report {wall:.1f} s; the page is "
          f"{size / 1e6:.2f} MB (limit 15 MB)")
    print(f"load in headless Chromium: {', '.join(f'{ms / 1000:.3f}' for ms in opened['load_ms'])} s "
          f"(best {min(opened['load_ms']) / 1000:.3f} s; limit 2 s)")
    print(f"search {opened['ticker']!r}: {len(opened['partners'])} partners shown ({', '.join(opened['partners'])}) "
          f"in {opened['typed_s']:.3f} s of typing; {opened['alone']:,} tickers have no ranked pair")


if __name__ == "__main__":
    main()
