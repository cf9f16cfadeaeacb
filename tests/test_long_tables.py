"""Long tables as downloads ship them: any close column, any date format, any number of
tickers in any order; and the messages a user needs when a table is not what convert expects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pairscan
from pairscan.cli import main
from pairscan.errors import PairscanError
from pairscan.sample import sample_frames, write_jsonl
from pairscan.store import read_manifest, store_files


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "pairscan", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def universe() -> dict[str, pd.DataFrame]:
    frames = sample_frames(tickers=4, days=60, daily=True, seed=5)
    return {t.upper(): f.assign(close=f["close"].round(4)) for t, f in frames.items()}


@pytest.fixture(scope="module")
def jsonl_store(tmp_path_factory, universe) -> Path:
    root = tmp_path_factory.mktemp("jsonl")
    (root / "src").mkdir()
    for ticker, frame in universe.items():
        write_jsonl(frame[["close"]], root / "src" / f"{ticker}.json")
    pairscan.convert(root / "src", to=root / "store", executor="serial", quiet=True)
    return root / "store"


def closes(store: Path) -> dict[str, pd.Series]:
    return {t: pd.read_hdf(p, "/data")["close"] for t, p in store_files(store).items()}


def symbol_date_price(universe, path: Path) -> None:
    """``symbol,date,price`` with dates like ``Jan 5 2000``, sorted by date, as a bulk download writes it."""
    rows = [(t, f"{d:%b} {d.day} {d:%Y}", c) for t, f in universe.items() for d, c in f["close"].items()]
    rows.sort(key=lambda r: (pd.Timestamp(r[1]), r[0]))
    pd.DataFrame(rows, columns=["symbol", "date", "price"]).to_csv(path, index=False)


def test_symbol_date_price_converts_with_the_two_options_to_the_jsonl_store(tmp_path, universe, jsonl_store):
    table = tmp_path / "prices.csv"
    symbol_date_price(universe, table)
    store = tmp_path / "store"

    done = cli("convert", table, "--to", store)
    assert (done.returncode, done.stderr) == (2, f"pairscan: error: {table}: no close column; its columns are "
                                                 "symbol, date, price; --close-column to name one\n")
    done = cli("convert", table, "--to", store, "--close-column", "price")
    first = min(frame.index[0] for frame in universe.values())
    assert (done.returncode, done.stderr) == (
        2, f"pairscan: error: {table}:2: dates like '{first:%b} {first.day} {first:%Y}': --date-format '%b %d %Y'\n")
    assert not store_files(store)

    options = dict(close_column="price", date_format="%b %d %Y", executor="serial", quiet=True)
    out = pairscan.convert(table, to=store, **options)
    assert (out["converted"], out["rows"]) == (4, sum(map(len, universe.values())))
    got, want = closes(store), closes(jsonl_store)
    assert list(got) == list(want)
    for ticker in want:
        pd.testing.assert_series_equal(got[ticker], want[ticker])
    record = read_manifest(store)["tables"]["prices.csv"]
    assert (record["close_column"], record["date_format"]) == ("price", "%b %d %Y")

    # The options are part of what was converted: the same again is up to date, others convert again.
    assert pairscan.convert(table, to=store, **options)["up_to_date"] == 4
    assert pairscan.convert(table, to=store, **{**options, "close_column": "PRICE"})["converted"] == 4
    with pytest.raises(PairscanError, match=r"no column 'last' \(--close-column\); its columns are symbol, date"):
        pairscan.convert(table, to=store, **{**options, "close_column": "last"})


def test_close_column_in_a_folder_keeps_the_files_own_close(tmp_path, universe):
    folder = tmp_path / "yf"
    folder.mkdir()
    frame = universe["AET"].reset_index()
    pd.DataFrame({"Date": frame["timestamp"].dt.strftime("%m/%d/%Y"), "Close": frame["close"] * 2,
                  "Adj Close": frame["close"]}).to_csv(folder / "aet.csv", index=False)
    done = cli("convert", folder, "--to", tmp_path / "s", "--close-column", "adj close", "--date-format", "%m/%d/%Y")
    assert done.returncode == 0, done.stderr
    stored = pd.read_hdf(tmp_path / "s" / "aet.h5", "/data")
    assert list(stored.columns) == ["close", "source_close"]
    pd.testing.assert_series_equal(stored["close"], universe["AET"]["close"])
    # Without the options: the dates are recognised and the option named.
    done = cli("convert", folder, "--to", tmp_path / "t")
    assert done.returncode == 2
    day = frame["timestamp"][0]
    assert (f"aet.csv:2: unparseable timestamp \"{day:%m/%d/%Y}\" (dates like '{day:%m/%d/%Y}': "
            "--date-format '%m/%d/%Y')") in done.stderr.splitlines()[0]  # the 18th: not day first


def test_a_date_sorted_table_of_1500_tickers_converts_exactly(tmp_path):
    # pyarrow's writer refuses more than 1,024 partitions; a daily dump sorted by date holds
    # every ticker in every batch.
    days, count = pd.bdate_range("2020-01-01", periods=3), 1500
    tickers = [f"T{i:04d}" for i in range(count)]
    close = np.arange(days.size * count, dtype=np.float64).reshape(days.size, count) / 8 + 1
    pd.DataFrame({"date": np.repeat(days.strftime("%Y-%m-%d"), count), "ticker": tickers * days.size,
                  "close": close.ravel()}).to_csv(tmp_path / "daily.csv", index=False)
    out = pairscan.convert(tmp_path / "daily.csv", to=tmp_path / "s", format="parquet", quiet=True)
    assert (out["converted"], out["rows"]) == (count, days.size * count)
    files = store_files(tmp_path / "s")
    assert sorted(files) == tickers
    for i in (0, 1023, 1024, count - 1):
        stored = pd.read_parquet(files[tickers[i]])
        assert stored["close"].tolist() == close[:, i].tolist()
        assert stored.index.tolist() == list(days)
    assert not [p for p in (tmp_path / "s").iterdir() if p.name.startswith(".pairscan-split")]


def test_skip_that_stores_nothing_exits_2_with_one_line(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("ticker,date,close\n" + "".join(f"{t},someday,{i}\n" for i in range(3) for t in "AB"))
    before = snapshot(tmp_path)
    done = cli("convert", table, "--to", tmp_path / "s", "--on-bad-lines", "skip")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f'pairscan: error: {table}: nothing stored: every record was bad (6 lines skipped; first: t.csv line 2: '
        'unparseable timestamp "someday" (expected ISO 8601 text, YYYYMMDD or epoch seconds/ms/us/ns, years '
        '1677-2262)); fix the source or the options (--close-column, --date-format, --ticker-column)']
    assert not store_files(tmp_path / "s")
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("s/")} == before


def test_skipped_lines_are_counted_per_file_and_named_by_their_line(tmp_path):
    lines = ["ticker,date,close"] + [f"{t},2020-01-{d:02d},{d}" for d in range(1, 8) for t in "AB"]
    lines[3] = "A,2020-01-02,2,extra"  # a row that is not CSV of the header: the table's, no ticker's
    lines[8] = "B,2020-01-04,oops"
    lines[11] = "A,2020-01-06,none"
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(PairscanError) as caught:
        pairscan.convert(tmp_path / "t.csv", to=tmp_path / "e", quiet=True)
    assert (caught.value.line, caught.value.reason) == (4, "4 fields where the header has 3")
    out = pairscan.convert(tmp_path / "t.csv", to=tmp_path / "s", on_bad_lines="skip", quiet=True)
    assert (out["bad_lines_skipped"], out["skipped_by_file"]) == (3, {"t.csv": 3})
    tickers = read_manifest(tmp_path / "s")["tickers"]
    assert tickers["A"]["first_bad_line"] == "line 12: 'close' is not a number: \"none\""
    assert tickers["B"]["first_bad_line"] == "line 9: 'close' is not a number: \"oops\""
    assert pd.read_hdf(tmp_path / "s" / "A.h5", "/data")["close"].tolist() == [1, 3, 4, 5, 7]


def test_a_long_table_inside_a_folder_is_refused_naming_it(tmp_path, universe):
    folder = tmp_path / "d"
    folder.mkdir()
    for name in ("one", "two"):
        pd.concat([universe[t]["close"].reset_index().assign(symbol=t) for t in ("AET", "AFL")]).to_csv(
            folder / f"{name}.csv", index=False)
    write_jsonl(universe["AIG"], folder / "aig.json")
    done = cli("convert", folder, "--to", tmp_path / "s")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"pairscan: error: {folder / name}.csv: its 'symbol' column holds 2 tickers (AET, AFL...): this is a long "
        "table, not one ticker's file; convert it on its own (pairscan convert FILE --to STORE)"
        for name in ("one", "two")] + ["pairscan: 2 bad files not converted; 1 other converted"]
    assert sorted(store_files(tmp_path / "s")) == ["aig"]


def test_a_ticker_column_that_is_not_one_is_named(tmp_path):
    rows = [f"T{i % 3},2020-01-{1 + i // 3:02d},{i}.5,{i}" for i in range(1100 * 3)]
    table = tmp_path / "t.csv"
    table.write_text("ticker,date,close,trade_id\n" + "\n".join(r for r in rows if r) + "\n")
    done = cli("convert", table, "--to", tmp_path / "s", "--ticker-column", "trade_id")
    assert (done.returncode, done.stderr) == (
        2, f"pairscan: error: {table}: column 'trade_id' has 3,300 distinct values in 3,300 rows ('0', '1', '2', "
           "...): it does not look like tickers; --ticker-column names the ticker column\n")
    done = cli("convert", table, "--to", tmp_path / "s", "--ticker-column", "date")
    assert (done.returncode, done.stderr) == (
        2, f"pairscan: error: {table}: no time column (timestamp, date or datetime); its columns are ticker, date, "
           "close, trade_id (with 'date' as the ticker column; --ticker-column names another)\n")
    assert not (tmp_path / "s").exists() or not store_files(tmp_path / "s")


def test_a_broken_parquet_table_is_one_line_that_says_what_to_do(tmp_path, capsys):
    table = tmp_path / "t.parquet"
    pd.DataFrame({"ticker": ["A"] * 3, "date": ["2020-01-01", "2020-01-02", "2020-01-03"],
                  "close": [1.0, 2.0, 3.0]}).to_parquet(table)
    data = table.read_bytes()
    table.write_bytes(data[:4] + b"\0" * 64 + data[68:])  # the column chunks damaged, the footer whole
    assert main(["convert", str(table), "--to", str(tmp_path / "s"), "--quiet"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"pairscan: error: {table}: not a readable Parquet file (") and line.endswith(
        "); write it again, or give the table as CSV")


def test_an_unadjusted_close_beside_adj_close_is_pointed_out(tmp_path, universe):
    folder = tmp_path / "yf"
    folder.mkdir()
    for ticker in ("AET", "AFL"):
        frame = universe[ticker].reset_index()
        adjusted = frame["close"] * (ticker == "AET" and 0.5 or 1.0)
        pd.DataFrame({"Date": frame["timestamp"].dt.strftime("%Y-%m-%d"), "Close": frame["close"],
                      "Adj Close": adjusted}).to_csv(folder / f"{ticker}.csv", index=False)
    store = tmp_path / "s"
    done = cli("convert", folder, "--to", store, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["adj_close_differs"] == ["AET"]
    note = ("note: the close of 1 ticker (AET) is unadjusted beside its adj_close: splits and dividends show as "
            "jumps; --column adj_close correlates the adjusted prices")
    assert done.stderr.splitlines() == [f"pairscan: {note}"]
    assert note in cli("correlate", store, "--min-periods", "2").stdout.splitlines()
    assert note not in cli("correlate", store, "--min-periods", "2", "--column", "adj_close").stdout


@pytest.mark.parametrize("fmt, why", [
    ("%Q", "--date-format '%Q' is not a strftime format ('Q' is a bad directive in format '%Q'); for example "
           "'%b %d %Y' or '%m/%d/%Y'"),
    ("abc", "--date-format must be a strftime format such as '%b %d %Y' or '%m/%d/%Y', not 'abc'"),
])
def test_a_date_format_that_is_not_one_is_one_line(tmp_path, capsys, fmt, why):
    (tmp_path / "t.csv").write_text("ticker,date,close\nA,2020-01-01,1\n")
    assert main(["convert", str(tmp_path / "t.csv"), "--to", str(tmp_path / "s"), "--date-format", fmt]) == 2
    assert capsys.readouterr().err == f"pairscan: error: {why}\n"
    assert not (tmp_path / "s").exists()
