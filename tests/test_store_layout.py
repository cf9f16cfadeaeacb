"""A stored file is the one pandas writes: HDF5 node for node and attribute for attribute, Parquet
the same schema (with pandas' metadata) and table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tables

from pairscan.store.formats.hdf5 import frame_image
from pairscan.sample import sample_frames
from pairscan.store import read_column, write_frame


def _nodes(path) -> dict:
    """Every node of an HDF5 file as PyTables sees it: class, dtype, shape, attributes and their types."""
    out = {}
    with tables.open_file(path) as h5:
        for node in h5.walk_nodes("/"):
            attrs = node._v_attrs
            out[node._v_pathname] = (
                type(node).__name__, str(getattr(node, "dtype", "")), getattr(node, "shape", None),
                {name: (repr(attrs[name]), type(attrs[name]).__name__) for name in attrs._f_list("all")},
            )
            if isinstance(node, tables.Array):
                out[node._v_pathname + " values"] = node.read().tobytes()
    return out


def _frames() -> list[pd.DataFrame]:
    daily = sample_frames(tickers=4, days=600, daily=True)
    frames = list(daily.values())
    index = pd.DatetimeIndex(pd.date_range("2001-01-01", periods=5, freq="D").values, name="timestamp").as_unit("ns")
    frames.append(pd.DataFrame({"close": [1.5, -2.0, np.nan, 1e308, 5e-324]}, index=index))
    frames.append(pd.DataFrame({"volume": [1, 2, 3, -(2**63), 2**63 - 1], "prix_clôture": np.arange(5.0),
                                "adj_close": np.linspace(0, 1, 5), "c": [0, 0, 0, 0, 7]}, index=index))
    frames.append(pd.DataFrame({"close": [3.0]}, index=index[:1].rename("when")))
    return frames


@pytest.mark.parametrize("number", range(7))
def test_the_file_is_the_one_pandas_writes(tmp_path, number):
    frame = _frames()[number]
    theirs, ours = tmp_path / "theirs.h5", tmp_path / "ours.h5"
    frame.to_hdf(theirs, key="data", format="fixed")
    image = frame_image(frame)
    assert image is not None
    ours.write_bytes(image)
    assert _nodes(ours) == _nodes(theirs)
    got = pd.read_hdf(ours, "/data")
    pd.testing.assert_frame_equal(got, pd.read_hdf(theirs, "/data"), check_exact=True)
    pd.testing.assert_frame_equal(got, frame, check_exact=True, check_freq=False)
    for column in frame.columns:
        np.testing.assert_array_equal(read_column(ours, column).to_numpy(),
                                      frame[column].to_numpy(dtype=np.float64))


def test_other_frames_go_through_pandas(tmp_path):
    index = pd.DatetimeIndex(["2015-01-02", "2015-01-05"], name="timestamp").as_unit("ns")
    # pandas' own integer type (which its fixed layout refuses) is not taken for numpy's
    assert frame_image(pd.DataFrame({"close": [1.0, 2.0], "n": pd.array([1, 2], dtype="Int64")}, index=index)) is None
    others = [
        pd.DataFrame({"close": [1.0, 2.0], "tag": ["a", None]}, index=index),  # text
        pd.DataFrame({"close": [1.0, 2.0], "flag": [True, False]}, index=index),  # booleans
        pd.DataFrame({"close": [1.0, 2.0]}, index=index.tz_localize("UTC")),  # not a naive index
        pd.DataFrame({"close": [1.0, 2.0]}, index=pd.Index([1, 2], name="timestamp")),
        pd.DataFrame({"close": [1.0, 2.0], 5: [1.0, 2.0]}, index=index),  # a column name that is not text
        pd.DataFrame({"close": []}, index=index[:0]),
    ]
    for number, frame in enumerate(others):
        assert frame_image(frame) is None
        path = tmp_path / f"{number}.h5"
        write_frame(frame, path)
        pd.testing.assert_frame_equal(pd.read_hdf(path, "/data"), frame, check_exact=True)


@pytest.mark.parametrize("number", range(7))
def test_parquet_holds_what_pandas_writes(tmp_path, number):
    import pyarrow.parquet as pq

    frame = _frames()[number]
    theirs, ours = tmp_path / "theirs.parquet", tmp_path / "ours.parquet"
    frame.to_parquet(theirs, engine="pyarrow")
    write_frame(frame, ours)
    assert pq.read_schema(ours).equals(pq.read_schema(theirs), check_metadata=True)
    assert pq.read_table(ours).equals(pq.read_table(theirs))
    pd.testing.assert_frame_equal(pd.read_parquet(ours), frame, check_exact=True, check_freq=False)
