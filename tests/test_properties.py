"""Properties: whatever bytes convert is given, it never shows a traceback and never writes part of a file.

Random almost-valid records are written in every style the format allows, some of them
broken in a known way; the store must hold exactly the good ones (the last of each
timestamp, sorted, in UTC), and the error must name exactly the first broken line.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pairscan
from pairscan.cli import main
from pairscan.convert import ConvertFailed
from pairscan.errors import PairscanError
from pairscan.store import store_files

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GOOD_LINE = b'{"timestamp": "2015-01-02 09:30:00", "close": 10.5, "volume": 100}'


def assert_store_is_whole(folder: Path) -> None:
    """No temporary file is left, and every stored frame reads whole and well formed."""
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    for path in store_files(folder).values():
        frame = pd.read_hdf(path, "/data")
        assert frame.index.name == "timestamp" and frame.index.is_monotonic_increasing and frame.index.is_unique
        assert frame["close"].dtype == np.float64 and len(frame) > 0


# --- random bytes -------------------------------------------------------------------------------

@st.composite
def spliced(draw) -> bytes:
    """A good file with random bytes put in, cut, or written over somewhere."""
    good = b"\n".join([GOOD_LINE] * 3) + b"\n"
    cut = draw(st.integers(0, len(good)))
    noise = draw(st.binary(max_size=40))
    how = draw(st.sampled_from(["insert", "replace", "truncate"]))
    if how == "insert":
        return good[:cut] + noise + good[cut:]
    if how == "replace":
        return good[:cut] + noise + good[cut + len(noise):]
    return good[:cut]


# capsys is read (and so emptied) once per example.
@settings(SETTINGS, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=300), spliced()), mode=st.sampled_from(["error", "skip"]))
def test_random_bytes_never_make_a_traceback_or_a_partial_file(capsys, content, mode):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "aet.json").write_bytes(content)
        (folder / "afl.json").write_bytes(GOOD_LINE + b"\n")
        status = main(["convert", tmp, "--executor", "serial", "--quiet", "--on-bad-lines", mode])
        out, err = capsys.readouterr()
        assert status in (0, 2)
        assert "Traceback" not in err
        assert all(line.startswith("pairscan: ") for line in err.splitlines())
        if status == 2:
            assert err.startswith(f"pairscan: error: {folder / 'aet.json'}:")
            # Skipping bad lines keeps the good ones; a file none of whose lines can be read
            # (text in another encoding, or compressed under a plain name) is refused whole, whatever the mode.
            assert mode == "error" or "encoded; save it as UTF-8" in err or "-compressed; name it " in err
            assert not (folder / "aet.h5").exists()
        assert (folder / "afl.h5").exists()
        assert_store_is_whole(folder)


# --- almost-valid records -----------------------------------------------------------------------

STAMPS = st.one_of(
    st.datetimes(min_value=pd.Timestamp("1990-01-01").to_pydatetime(),
                 max_value=pd.Timestamp("2040-12-31").to_pydatetime()).map(lambda d: pd.Timestamp(d).floor("ms")),
    # A few instants over and over, so that duplicates are common.
    st.sampled_from([pd.Timestamp("2015-01-02"), pd.Timestamp("2015-01-02 09:30:00"),
                     pd.Timestamp("2015-01-02 09:30:00.250")]),
)
PRICE = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**6), 10**6))


def render_stamp(stamp: pd.Timestamp, style: str, offset_minutes: int):
    """``stamp`` (UTC) written in one of the styles the format allows."""
    if style == "ms":
        return int(stamp.value // 10**6)
    if style == "date" and stamp == stamp.normalize():
        return stamp.strftime("%Y-%m-%d")
    text = "%Y-%m-%dT%H:%M:%S" if style == "T" else "%Y-%m-%d %H:%M:%S"
    fraction = f".{stamp.microsecond // 1000:03d}" if stamp.microsecond else ""
    if style == "offset":
        local = stamp + pd.Timedelta(minutes=offset_minutes)
        sign = "+" if offset_minutes >= 0 else "-"
        hours, minutes = divmod(abs(offset_minutes), 60)
        return local.strftime(text) + fraction + f"{sign}{hours:02d}:{minutes:02d}"
    if style == "Z":
        return stamp.strftime(text) + fraction + "Z"
    return stamp.strftime(text) + fraction


@st.composite
def records(draw):
    """(line bytes, record as stored or None when the line is bad)."""
    stamp = draw(STAMPS)
    record = {"close": draw(PRICE)}
    for name in ("open", "high", "low"):
        if draw(st.booleans()):
            record[name] = draw(PRICE)
    if draw(st.booleans()):
        record["volume"] = draw(st.integers(0, 2**40))
    if draw(st.booleans()):
        record["note"] = draw(st.text(max_size=8))
    style = draw(st.sampled_from(["space", "T", "offset", "Z", "ms", "date"]))
    written = {"timestamp": render_stamp(stamp, style, draw(st.integers(-12 * 60, 14 * 60))), **record}
    flaw = draw(st.sampled_from([None] * 6 + ["no-close", "no-timestamp", "text-close", "word-time",
                                              "array", "broken", "binary", "nan"]))
    if flaw is None:
        return json.dumps(written).encode(), (stamp, record)
    if flaw == "no-close":
        written.pop("close")
    elif flaw == "no-timestamp":
        written.pop("timestamp")
    elif flaw == "text-close":
        written["close"] = str(written["close"])
    elif flaw == "word-time":
        written["timestamp"] = draw(st.sampled_from(["now", "today", "soon", "", "2015-02-30"]))
    elif flaw == "array":
        return json.dumps(list(written.values())).encode(), None
    elif flaw == "broken":
        return json.dumps(written).encode()[:-1], None
    elif flaw == "binary":
        return b"\x00" + draw(st.binary(max_size=10)).replace(b"\n", b""), None
    elif flaw == "nan":
        return json.dumps({**written, "close": float("nan")}).encode(), None
    return json.dumps(written).encode(), None


def expected_frame(good: list[tuple[pd.Timestamp, dict]]) -> pd.DataFrame | None:
    """The oracle: every good record, sorted by time, the last of each timestamp kept.

    Columns are those of any good record (a dropped duplicate's too), in the store's order;
    ``volume`` is int64 when every good record has one.
    """
    if not good:
        return None
    index = pd.DatetimeIndex([stamp for stamp, _ in good], name="timestamp").as_unit("ns")
    frame = pd.DataFrame.from_records([record for _, record in good], index=index)
    known = [c for c in ("open", "high", "low", "close", "volume") if c in frame]
    frame = frame[known + [c for c in frame if c not in known]]
    for name in ("open", "high", "low", "close"):
        if name in frame:
            frame[name] = frame[name].astype("float64")
    if "volume" in frame:
        frame["volume"] = frame["volume"].astype("int64" if frame["volume"].notna().all() else "float64")
    if "note" in frame:
        frame["note"] = pd.Series([None if pd.isna(v) else v for v in frame["note"]], index=frame.index, dtype=object)
    frame = frame.iloc[np.argsort(frame.index.values, kind="stable")]
    return frame[~frame.index.duplicated(keep="last")]


def assert_frame_as_stored(path: Path, want: pd.DataFrame) -> None:
    stored = pd.read_hdf(path, "/data")
    # Text may come back as pandas' string type (missing as NaN); numbers keep their exact types.
    if "note" in stored:
        stored["note"] = pd.Series([None if pd.isna(v) else v for v in stored["note"]], index=stored.index,
                                   dtype=object)
    pd.testing.assert_frame_equal(stored, want, check_freq=False)


@SETTINGS
@given(lines=st.lists(records(), min_size=1, max_size=25), crlf=st.booleans(), bom=st.booleans(),
       blank_every=st.integers(0, 5), final_newline=st.booleans())
def test_almost_valid_records_store_exactly_the_good_ones(lines, crlf, bom, blank_every, final_newline):
    body, good, bad_numbers = [], [], []
    for i, (line, parsed) in enumerate(lines):
        if blank_every and i % blank_every == 0:
            body.append(b"  ")
        body.append(line)
        if parsed is None:
            bad_numbers.append(len(body))
        else:
            good.append(parsed)
    data = (b"\r\n" if crlf else b"\n").join(body) + (b"\n" if final_newline else b"")
    data = b"\xef\xbb\xbf" + data if bom else data
    want = expected_frame(good)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "aet.json"
        path.write_bytes(data)
        if bad_numbers:
            with pytest.raises(ConvertFailed) as caught:
                pairscan.convert(folder, executor="serial", quiet=True)
            (failure,) = caught.value.failures
            assert (failure["file"], failure["line"]) == (str(path), bad_numbers[0])
            assert not (folder / "aet.h5").exists()
        else:
            summary = pairscan.convert(folder, executor="serial", quiet=True)
            assert summary["duplicates_dropped"] == len(good) - len(want)
            assert_frame_as_stored(folder / "aet.h5", want)
        assert_store_is_whole(folder)
        # Skipping keeps exactly the good records and counts the rest.
        if want is None:
            # Skipping every line stores nothing: bad input, said in one line with the count.
            with pytest.raises(PairscanError, match=f"nothing stored: every record was bad \\({len(bad_numbers)} "):
                pairscan.convert(folder, executor="serial", quiet=True, on_bad_lines="skip", force=True)
            assert not (folder / "aet.h5").exists()
        else:
            summary = pairscan.convert(folder, executor="serial", quiet=True, on_bad_lines="skip", force=True)
            assert summary["bad_lines_skipped"] == len(bad_numbers)
            assert_frame_as_stored(folder / "aet.h5", want)
        assert_store_is_whole(folder)


# --- any JSON at all ----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)
KEYS = st.sampled_from(["timestamp", "close", "open", "volume", "", "x", "__index_level_0__", "index", "é"])


@st.composite
def json_objects(draw):
    record = draw(st.dictionaries(KEYS, JSON, max_size=6))
    if draw(st.booleans()):  # usually a record that could be good
        record["timestamp"] = draw(st.sampled_from(["2015-01-02", "2015-01-02 09:30:00", 1420191000000]))
        record["close"] = draw(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70))
    return json.dumps(record).encode()


@SETTINGS
@given(lines=st.lists(json_objects(), min_size=1, max_size=8), fmt=st.sampled_from(["hdf5", "parquet"]),
       mode=st.sampled_from(["error", "skip"]))
def test_any_json_is_stored_or_named_never_a_crash(lines, fmt, mode):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "aet.json").write_bytes(b"\n".join(lines) + b"\n")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # a ticker without data
                pairscan.convert(folder, format=fmt, on_bad_lines=mode, executor="serial", quiet=True)
        except ConvertFailed as failed:
            (failure,) = failed.failures
            assert failure["line"] in range(1, len(lines) + 1)
        except PairscanError as err:  # skipping every line stores nothing: one error, not a silent empty store
            assert mode == "skip" and err.reason.startswith("nothing stored: every record was bad")
        assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
        for path in store_files(folder).values():
            frame = pd.read_hdf(path, "/data") if fmt == "hdf5" else pd.read_parquet(path)
            assert frame.index.is_unique and frame.index.is_monotonic_increasing
            assert frame["close"].dtype == np.float64
