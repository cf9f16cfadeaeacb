"""Ingest: every kind of bad line is named with its file, line and reason; messy but valid input is accepted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pairscan.errors import PairscanError
from pairscan.readers.jsonl import _parse_fast, _parse_slow, parse_file
from pairscan.readers.normalize import finish as _finish
from pairscan.sample import sample_frames, write_jsonl

REASON_TS = "unparseable timestamp"

# name -> (the bad line, the reason the error must start with). Each is put in as line 4
# of a good file of six records.
BAD_LINES = {
    "invalid-json": (b'{"timestamp": "2015-01-02 09:36:00", "close": }', "invalid JSON (Expecting value"),
    "single-quotes": (b"{'timestamp': '2015-01-02 09:36:00', 'close': 1}", "invalid JSON (Expecting property name"),
    "two-objects": (b'{"timestamp": "2015-01-02", "close": 1} {"close": 2}', "invalid JSON (Extra data"),
    "nan": (b'{"timestamp": "2015-01-02 09:36:00", "close": NaN}', "invalid JSON (NaN is not a JSON number)"),
    "infinity": (b'{"timestamp": "2015-01-02 09:36:00", "close": -Infinity}', "invalid JSON (-Infinity is not"),
    "too-deep": (b'{"timestamp": "2015-01-02", "close": 1, "x": ' + b"[" * 20000 + b"]" * 20000 + b"}",
                 "invalid JSON (nested too deeply: more than 100 levels)"),
    "array": (b'["2015-01-02 09:36:00", 1.0]', "not a JSON object but an array"),
    "string": (b'"2015-01-02 09:36:00"', "not a JSON object but a string"),
    "number": (b"42", "not a JSON object but a number"),
    "null": (b"null", "not a JSON object but null"),
    "no-timestamp": (b'{"close": 1.0, "open": 1.0}', "missing 'timestamp'"),
    "no-close": (b'{"timestamp": "2015-01-02 09:36:00", "open": 1.0}', "missing 'close'"),
    "null-close": (b'{"timestamp": "2015-01-02 09:36:00", "close": null}', "missing 'close'"),
    "text-close": (b'{"timestamp": "2015-01-02 09:36:00", "close": "12.5"}', "'close' is not a number: \"12.5\""),
    "bool-open": (b'{"timestamp": "2015-01-02 09:36:00", "close": 1, "open": true}', "'open' is not a number: true"),
    "object-high": (b'{"timestamp": "2015-01-02 09:36:00", "close": 1, "high": {}}', "'high' is not a number: {}"),
    "huge-low": (b'{"timestamp": "2015-01-02 09:36:00", "close": 1, "low": 1' + b"0" * 400 + b"}",
                 "'low' is out of range: 1000"),
    "overflow-close": (b'{"timestamp": "2015-01-02 09:36:00", "close": 1e999}', "'close' is out of range: Infinity"),
    "fractional-volume": (b'{"timestamp": "2015-01-02 09:36:00", "close": 1, "volume": 2.5}',
                          "'volume' is not a 64-bit integer: 2.5"),
    "huge-volume": (b'{"timestamp": "2015-01-02 09:36:00", "close": 1, "volume": 99999999999999999999}',
                    "'volume' is not a 64-bit integer: 99999999999999999999"),
    "word-timestamp": (b'{"timestamp": "yesterday", "close": 1}', REASON_TS + ' "yesterday"'),
    "now-timestamp": (b'{"timestamp": "now", "close": 1}', REASON_TS + ' "now"'),
    "impossible-date": (b'{"timestamp": "2015-02-30 09:36:00", "close": 1}', REASON_TS + ' "2015-02-30 09:36:00"'),
    "year-3000": (b'{"timestamp": "3000-01-01", "close": 1}', REASON_TS + ' "3000-01-01"'),
    "ms-too-large": (b'{"timestamp": 99999999999999999, "close": 1}', REASON_TS + " 99999999999999999"),
    "float-timestamp": (b'{"timestamp": 1420191000000.5, "close": 1}', REASON_TS + " 1420191000000.5"),
    "bool-timestamp": (b'{"timestamp": false, "close": 1}', REASON_TS + " false"),
    "null-timestamp": (b'{"timestamp": null, "close": 1}', REASON_TS + " null"),
    "nul-bytes": (b"\x00\x01\x02garbage\x00", "binary data (NUL bytes), not JSON text"),
    "not-utf8": (b"\xff\xfe\x89PNG\xc3\x28", "binary data (not UTF-8 text), not JSON text"),
}


@pytest.fixture(scope="module")
def good_lines() -> list[bytes]:
    frame = sample_frames(tickers=1, days=1, bars_per_day=6)["aet"]
    out = frame.reset_index()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    return [line.encode() for line in out.to_json(orient="records", lines=True).splitlines()]


def expected_frame(lines: list[bytes]) -> pd.DataFrame:
    records = [json.loads(line) for line in lines]
    frame = pd.DataFrame.from_records(records)
    frame.index = pd.DatetimeIndex(pd.to_datetime(frame.pop("timestamp")), name="timestamp").as_unit("ns")
    frame[["open", "high", "low", "close"]] = frame[["open", "high", "low", "close"]].astype("float64")
    return frame.astype({"volume": "int64"})


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_bad_line_is_named_with_file_line_and_reason(tmp_path, good_lines, case):
    bad, reason = BAD_LINES[case]
    path = tmp_path / "aet.json"
    path.write_bytes(b"\n".join(good_lines[:3] + [bad] + good_lines[3:]) + b"\n")
    with pytest.raises(PairscanError) as caught:
        parse_file(path)
    err = caught.value
    assert (err.file, err.line) == (str(path), 4)
    assert err.reason.startswith(reason), err.reason
    assert str(err) == f"{path}:4: {err.reason}"
    assert "more bad line" not in err.reason
    # Skipping keeps exactly the six good records and says what it skipped.
    parsed = parse_file(path, "skip")
    assert (parsed.bad_lines_skipped, parsed.duplicates_dropped) == (1, 0)
    assert parsed.first_bad == f"line 4: {err.reason}"
    pd.testing.assert_frame_equal(parsed.frame, expected_frame(good_lines))


def test_a_truncated_last_line_says_so(tmp_path, good_lines):
    path = tmp_path / "aet.json"
    whole = b"\n".join(good_lines)
    path.write_bytes(whole[:-7])  # the writer died inside the sixth record
    with pytest.raises(PairscanError) as caught:
        parse_file(path)
    assert caught.value.line == 6
    assert caught.value.reason == "truncated last line (the file ends inside a record)"
    parsed = parse_file(path, "skip")
    pd.testing.assert_frame_equal(parsed.frame, expected_frame(good_lines[:5]))
    # The same bad text inside the file is invalid JSON, not truncation.
    path.write_bytes(whole[:-7] + b"\n" + good_lines[5] + b"\n")
    with pytest.raises(PairscanError, match=r"aet\.json:6: invalid JSON"):
        parse_file(path)
    # A last record without a newline after it is whole, and fine.
    path.write_bytes(whole)
    pd.testing.assert_frame_equal(parse_file(path).frame, expected_frame(good_lines))


def test_the_first_bad_line_is_named_and_the_others_counted(tmp_path, good_lines):
    path = tmp_path / "aet.json"
    # A timestamp problem (found after the JSON pass) before a JSON problem: still line order.
    lines = [good_lines[0], b'{"timestamp": "soon", "close": 1}', good_lines[1], b"{oops", b"[]", good_lines[2]]
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(PairscanError) as caught:
        parse_file(path)
    assert str(caught.value) == (f'{path}:2: unparseable timestamp "soon" (expected ISO 8601 text, YYYYMMDD '
                                 "or epoch seconds/ms/us/ns, years 1677-2262) (and 2 more bad lines)")
    parsed = parse_file(path, "skip")
    assert parsed.bad_lines_skipped == 3 and parsed.first_bad.startswith("line 2: unparseable timestamp")
    pd.testing.assert_frame_equal(parsed.frame, expected_frame(good_lines[:3]))


def test_a_file_of_binary_garbage(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(PairscanError, match=r"x\.json:1: binary data \(NUL bytes\), not JSON text \(and 8 more"):
        parse_file(path)
    skipped = parse_file(path, "skip")
    assert skipped.frame is None and skipped.bad_lines_skipped == 9


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \r\n\t\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n"])
def test_an_empty_file_has_no_records(tmp_path, content):
    path = tmp_path / "e.json"
    path.write_bytes(content)
    parsed = parse_file(path)
    assert (parsed.frame, parsed.bad_lines_skipped, parsed.duplicates_dropped) == (None, 0, 0)


def messy(frame: pd.DataFrame) -> tuple[bytes, int]:
    """``frame`` written as valid but messy JSON Lines, and how many duplicates it holds.

    BOM, CRLF, blank lines, shuffled records, every timestamp style the format allows,
    stale duplicates before the record that wins, extra keys, no final newline.
    """
    rng = np.random.default_rng(7)
    lines = []
    for i, (stamp, row) in enumerate(frame.iterrows()):
        record = {k: (int(v) if k == "volume" else float(v)) for k, v in row.items()}
        style = i % 6
        if style == 0:
            ts = stamp.strftime("%Y-%m-%d %H:%M:%S")
        elif style == 1:
            ts = stamp.strftime("%Y-%m-%dT%H:%M:%S")
        elif style == 2:  # the same instant in New York (UTC-5 in January)
            ts = (stamp - pd.Timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S-05:00")
        elif style == 3:
            ts = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
        elif style == 4:
            ts = int(stamp.value // 10**6)  # epoch milliseconds
        else:
            ts = (stamp + pd.Timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+0100")
        lines.append(json.dumps({"timestamp": ts, **record, "exchange": "NYSE"}))
    stale = [json.dumps({"timestamp": frame.index[i].strftime("%Y-%m-%d %H:%M:%S"), "close": -1.0, "open": -1.0,
                         "high": -1.0, "low": -1.0, "volume": 0, "exchange": "NYSE"}) for i in (0, 5, 9)]
    order = rng.permutation(len(lines))
    shuffled = [lines[i] for i in order]
    # A stale record must come before the one that wins: put all three first.
    text = "\r\n".join(stale + ["", "   "] + shuffled)
    return b"\xef\xbb\xbf" + text.encode(), len(stale)


def test_messy_but_valid_input_is_stored_as_the_clean_frame(tmp_path):
    frame = sample_frames(tickers=1, days=2, bars_per_day=12)["aet"]
    data, duplicates = messy(frame)
    path = tmp_path / "aet.json"
    path.write_bytes(data)
    parsed = parse_file(path)
    assert (parsed.bad_lines_skipped, parsed.duplicates_dropped) == (0, duplicates)
    want = frame.assign(exchange="NYSE").astype({"exchange": object})
    pd.testing.assert_frame_equal(parsed.frame, want, check_freq=False)


def test_the_fast_and_slow_paths_agree(tmp_path):
    frame = sample_frames(tickers=1, days=3, bars_per_day=40, ragged=True)["aet"]
    path = tmp_path / "aet.json"
    write_jsonl(frame, path)
    texts = [
        path.read_bytes(),
        # Offsets, Z, fractions of a second, unsorted, CRLF, text extras with gaps, an extra
        # that looks like a time (kept as the text it is), numbers that are ints and floats.
        b'{"timestamp": "2015-01-02T10:00:00+01:00", "close": 1, "tag": "a", "when": "2015-01-02"}\r\n'
        b'{"timestamp": "2015-01-02 08:00:00.25", "close": 2.5, "volume": 7, "when": "2015-01-05"}\r\n'
        b'\r\n{"timestamp": "2015-01-02T09:00:00Z", "close": 3, "tag": null, "volume": 8}\r\n',
        b'{"timestamp": 1420191000000, "close": 1, "flag": true}\n{"timestamp": 1420190000000, "close": 2}\n',
    ]
    for text in texts:
        fast = _parse_fast(text)
        assert fast is not None
        slow, bad = _parse_slow(text)
        assert not bad
        pd.testing.assert_frame_equal(_finish(fast)[0], _finish(slow)[0])


def test_extras_that_nest_or_mix_types_become_json_text(tmp_path):
    path = tmp_path / "aet.json"
    path.write_bytes(b'{"timestamp": "2015-01-02", "close": 1, "x": {"a": [1, 2]}, "m": 1, "t": "hi"}\n'
                     b'{"timestamp": "2015-01-03", "close": 2, "x": null, "m": "b"}\n')
    got = parse_file(path).frame
    assert got["x"].tolist() == ['{"a": [1, 2]}', None]
    assert got["m"].tolist() == ["1", '"b"']
    assert got["t"].tolist() == ["hi", None]
    assert list(got.columns) == ["close", "x", "m", "t"]


def test_keys_and_types_that_first_appear_late_are_kept(tmp_path):
    # The compiled reader guesses the schema from the first rows; later surprises must
    # neither be dropped nor truncated.
    lines = [f'{{"timestamp": "2015-01-02 09:{i // 60:02d}:{i % 60:02d}", "close": {i}}}' for i in range(300)]
    lines[250] = '{"timestamp": "2015-01-02 09:04:10", "close": 250.5, "note": "late key"}'
    path = tmp_path / "aet.json"
    path.write_text("\n".join(lines) + "\n")
    frame = parse_file(path).frame
    assert list(frame.columns) == ["close", "note"]
    assert frame["close"].iloc[250] == 250.5 and frame["close"].dtype == np.float64
    assert frame["note"].iloc[250] == "late key" and frame["note"].isna().sum() == 299
