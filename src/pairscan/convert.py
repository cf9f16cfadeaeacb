"""Convert: a source (a folder of per-ticker files, or a long table) -> a store, one task per ticker.

The readers' registry finds the tickers (``readers.discover``); each ticker is a task,
run on the chosen executor, and reads its file with its format's reader. A long table
is first split, streamed, into one part per ticker. A manifest in the store records
what was converted; a rerun skips tickers whose source is unchanged and whose output
is there, and tries again every file that failed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from . import checks
from .errors import PairscanError
from .executors import Execution, Pool, preload, run_tasks
from .outputs import printable
from .readers import BAD_LINE_MODES, DEFAULT_MAX_BYTES, READERS, Found, discover, polars_started
from .readers.compressed import unpack
from .readers.base import BadLines
from .readers.normalize import adjusted_close_differs, check_date_format, reading
from .store import (
    FORMATS,
    checked_stored_file,
    read_manifest,
    remove_stale_temporaries,
    remove_tickers,
    stamp_entry,
    store_lock,
    stored_file_intact,
    stored_layout,
    stored_name,
    stored_path,
    ticker_of,
    unlink_stored,
    write_frame,
    write_manifest,
)

MANIFEST_VERSION = 2  # 2: entries record their stored file's size and mtime
DEFAULT_LOCK_TIMEOUT = 600.0  # seconds a convert waits for another one writing the same store
LOUD = Execution(quiet=False)  # convert's own default: it says what it waits for, and shows progress
# What its process workers need; each parses one file at a time on a core of its own, where
# polars' pool of threads would only spin against the other workers.
preload(__name__, "polars", fork_unsafe=polars_started, environment={"POLARS_MAX_THREADS": "1"})


class ConvertFailed(PairscanError):
    """Some files were bad; the good ones were converted. ``failures`` has one entry each."""

    def __init__(self, failures: list[dict], summary: dict):
        self.failures = failures
        self.summary = summary
        first = failures[0]
        more = f" (and {len(failures) - 1} more bad files)" if len(failures) > 1 else ""
        super().__init__(first["reason"] + more, first["file"], first["line"])

    def __reduce__(self):
        return (type(self), (self.failures, self.summary))


def source_files(source: str | os.PathLike, ticker_column: str | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> list[Path]:
    """The source files of a folder (or the long-table file), sorted; :class:`PairscanError` if none."""
    return [found.path for found in discover(source, ticker_column, max_bytes)]


def convert_file(source: str, target: str, on_bad_lines: str, reader: str = "jsonl", origin: str | None = None,
                 max_bytes: int = DEFAULT_MAX_BYTES, options: dict | None = None, columns: dict | None = None) -> dict:
    """Task: read one ticker's file with its format's reader and store it. Bad input is returned, not raised.

    ``origin`` is the file the ticker comes from when ``source`` is a long table's part
    (errors and the manifest name it). Returns the ticker's manifest entry, or
    ``{"error": {"file", "line", "reason"}}`` for a bad file, whose stale output (from
    an earlier good version) is removed so the store never holds what the source no
    longer says. ``columns``: the column options (``close_column``, ``date_format``),
    recorded in the entry.
    """
    columns = {**COLUMN_OPTIONS, **(columns or {})}
    source_path = Path(source)
    origin_path = Path(origin) if origin else source_path
    try:
        target_path = checked_stored_file(target)
    except PairscanError as err:
        return {"error": {"file": str(origin_path), "line": None, "reason": err.reason}}
    try:
        stat = origin_path.stat()
    except OSError as exc:
        return {"error": {"file": str(origin_path), "line": None, "reason": f"cannot read ({exc.strerror})"}}
    entry = {
        "source": origin_path.name,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "on_bad_lines": on_bad_lines,
        **columns,
    }
    try:
        with reading(**columns):
            parsed = READERS[reader].read(source_path, on_bad_lines, str(origin_path), max_bytes, **(options or {}))
    except PairscanError as err:
        unlink_stored(target_path.parent, target_path)
        return {"error": {"file": err.file or str(origin_path), "line": err.line, "reason": err.reason}}
    entry.update(
        bad_lines_skipped=parsed.bad_lines_skipped,
        duplicates_dropped=parsed.duplicates_dropped,
        first_bad_line=parsed.first_bad,
    )
    if parsed.data is None:
        unlink_stored(target_path.parent, target_path)
        return {**entry, "rows": 0, "file": None}
    try:
        write_frame(parsed.data, target_path)  # arrays or a frame: no frame built for the usual file
    except OSError as exc:  # a full disk, a store that went away: the store is the bad input
        ticker = next(filter(None, (ticker_of(target_path.name, s) for s in FORMATS.values())), None)
        return {"error": {"file": target, "line": None,
                          "reason": f"cannot write the stored file of ticker {ticker!r} ({exc.strerror or exc})"}}
    layout = stored_layout(target_path)  # where its arrays lie: read without HDF5 while the file is this one
    return {**entry, "rows": len(parsed.data), "file": target_path.name,
            "adj_close_differs": adjusted_close_differs(parsed.data), **({"layout": layout} if layout else {})}


COLUMN_OPTIONS = {"close_column": None, "date_format": None}  # the default of each, as the manifest records it


def _up_to_date(entry: dict | None, source: Path, store: Path, on_bad_lines: str, columns: dict) -> bool:
    if not entry or any(entry.get(k) != v for k, v in columns.items()):
        return False
    try:
        stat = source.stat()
    except OSError:
        return False
    if (entry.get("size"), entry.get("mtime_ns"), entry.get("on_bad_lines")) != (
        stat.st_size,
        stat.st_mtime_ns,
        on_bad_lines,
    ):
        return False
    return stored_file_intact(store, entry)


def convert(
    source: str | os.PathLike,
    to: str | os.PathLike | None = None,
    format: str = "hdf5",
    on_bad_lines: str = "error",
    force: bool = False,
    executor=None,
    workers: int | None = None,
    retries: int | None = None,
    quiet: bool | None = None,
    connect_timeout: float | None = None,
    pool: Pool | None = None,
    ticker_column: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    follow_links: bool = False,
    *,
    layout: str = "auto",
    close_column: str | None = None,
    date_format: str | None = None,
    execution: Execution | None = None,
) -> dict:
    """Convert every ticker of ``source`` to a stored frame in ``to``.

    ``source`` is a folder of per-ticker files (JSON Lines, CSV, Parquet) or one long
    table (a file with a ticker column, ``ticker_column`` to name it). ``to`` defaults
    to ``source`` itself (the seed keeps the ``.h5`` files beside the JSON), or for a
    long table its folder. Every source file must be a regular file of at most
    ``max_bytes``; a link in the source folder to a file outside it is refused unless
    ``follow_links``. A single file is a long table or a wide table (a time column and
    one column per ticker, or a download's multi-row header): ``layout`` is ``"auto"``
    (by its columns), ``"long"`` or ``"wide"``. Any source file may be compressed
    (``.gz``, ``.bz2``, ``.xz``, ``.zst``), bounded by ``max_bytes`` on what it unpacks
    to. ``close_column`` names the column that is the close (``price``, ``Adj Close``,
    ``last``; matched as every column name is), ``date_format`` how the dates are
    written (strftime: ``%b %d %Y``, ``%m/%d/%Y``); both are recorded in the manifest,
    so a rerun with others converts again. Returns the summary that ``convert --json``
    prints. If any file is bad (with
    ``on_bad_lines="error"``), the good files are still converted and
    :class:`ConvertFailed` is raised afterwards, naming every bad file.

    How it runs is an :class:`~pairscan.executors.Execution`: pass one as
    ``execution=``, or its fields (``executor``, ``workers``, ``retries``, ``quiet``,
    ``connect_timeout``, ``pool``) as keywords; unlike the other stages, convert is not
    quiet unless told.

    The store mirrors the source: a ticker the manifest records whose source is gone
    is removed (its stored file and its entry; counted as ``"removed"``). One convert
    writes to a store at a time: another waits up to ``lock_timeout`` seconds
    (``math.inf``: without limit), then :class:`PairscanError` names the process that
    holds the store. A full disk is a :class:`PairscanError` too, after which the
    store holds only whole files and a valid manifest, and a rerun with room finishes.
    """
    _check_options(source, to, ticker_column, close_column, date_format, max_bytes, force, follow_links, format,
                   on_bad_lines, lock_timeout)
    columns = {"close_column": close_column, "date_format": date_format}
    execution = Execution.of(execution or LOUD, executor=executor, workers=workers, retries=retries, quiet=quiet,
                             connect_timeout=connect_timeout, pool=pool)
    started = time.perf_counter()
    source = Path(source)
    try:
        store = Path(to) if to is not None else (source if source.is_dir() else source.parent)
        own = _store_files(store) if source.is_dir() and store.resolve() == source.resolve() else frozenset()
    except OSError as exc:  # a source or store that cannot be looked at
        raise PairscanError(f"cannot read ({exc.strerror or exc})", exc.filename or source) from None
    discovered = discover(source, ticker_column, max_bytes, exclude=own, follow_links=follow_links, layout=layout)
    _open_store(store, discovered, format)
    run = _Conversion(store, format, on_bad_lines, columns, max_bytes)
    with contextlib.ExitStack() as stack:
        stack.push(run.warn_if_cut_short)
        # Held until the very end, after the pool is shut down and the last cleanup:
        # the temporary files of this store are this run's alone to remove.
        locking = time.perf_counter()
        stack.enter_context(store_lock(store, lock_timeout, _waiting(store, lock_timeout, execution.quiet)))
        started += time.perf_counter() - locking  # waiting for another convert is not the work
        remove_stale_temporaries(store)
        for scratch in store.glob(SPLIT_PREFIX + "*"):  # a killed run's split: no one else's, under the lock
            shutil.rmtree(scratch, ignore_errors=True)
        manifest = run.read_manifest()
        for found in discovered:
            run.plan(found, force, stack)
        removed = _remove_gone(store, manifest, run.names, run.entries, run.suffix)
        for table in [t for t in run.tables if not (source / t if source.is_dir() else source.parent / t).exists()]:
            del run.tables[table]
        run.save()  # the removals, before anything else can fail
        # Runs last, once our pool is shut down: a worker that died (or was stopped when
        # its pool broke) may have left a temporary file that no one else will remove.
        stack.callback(remove_stale_temporaries, store)
        opening = time.perf_counter()
        pool = stack.enter_context(execution.opened())
        started += time.perf_counter() - opening  # a Dask cluster's start-up is not the work
        run.convert(pool, execution.quiet, execution.retries)
        seconds = time.perf_counter() - started  # before the executor shuts down
    this_run = {found.path.name for found in discovered if found.ticker is None}
    return run.finish(this_run, removed, pool, seconds, source)


def _check_options(source, to, ticker_column, close_column, date_format, max_bytes, force, follow_links, format,
                   on_bad_lines, lock_timeout) -> None:
    """Every option of :func:`convert` but the executor's, checked before anything is read."""
    checks.path("source", source)
    checks.path("to", to, optional=True)
    checks.text("ticker_column", ticker_column, optional=True)
    checks.text("close_column", close_column, optional=True)
    checks.text("date_format", date_format, optional=True)
    check_date_format(date_format)
    checks.integer("max_bytes", max_bytes, low=1)
    for name, value in (("force", force), ("follow_links", follow_links)):
        checks.boolean(name, value)
    if format not in FORMATS:
        raise PairscanError(f"--format must be hdf5 or parquet, not {format!r}")
    if on_bad_lines not in BAD_LINE_MODES:
        raise PairscanError(f"--on-bad-lines must be error or skip, not {on_bad_lines!r}")
    if not (isinstance(lock_timeout, (int, float)) and lock_timeout >= 0):  # NaN too
        raise PairscanError(f"--lock-timeout must be a number of seconds >= 0, not {lock_timeout!r}")


def _open_store(store: Path, discovered: list[Found], format: str) -> None:
    """The store folder, made if need be and writable, and no stored file that would be a
    source file: checked before anything is written (the lock file too)."""
    for found in discovered:
        try:
            name = stored_name(found.ticker, FORMATS[format]) if found.ticker is not None else None
        except PairscanError:
            continue  # named as bad input with the others
        if name is not None:
            _never_over_source(store / name, found.path)
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PairscanError(f"cannot create the store folder ({exc.strerror})", store) from None
    if not os.access(store, os.W_OK):
        raise PairscanError("the store folder is not writable", store)


def _waiting(store: Path, lock_timeout: float, quiet: bool):
    """What a convert says while another holds the store's lock (nothing when quiet)."""

    def waiting(holder: str) -> None:
        if not quiet:
            print(f"pairscan: waiting for another pairscan process ({printable(holder)}) writing {printable(store)} "
                  f"(up to {lock_timeout:g} s)", file=sys.stderr, flush=True)

    return waiting


class _Conversion:
    """One convert's state under the store's lock: the manifest's entries and tables, the
    tickers found (``names``), the tasks to run (``todo``), and what went wrong."""

    def __init__(self, store: Path, format: str, on_bad_lines: str, columns: dict, max_bytes: int):
        self.store, self.format, self.on_bad_lines = store, format, on_bad_lines
        self.columns, self.max_bytes, self.suffix = columns, max_bytes, FORMATS[format]
        self.names: set[str] = set()
        self.todo: list = []
        self.refused: list[dict] = []  # tickers that cannot be stored: bad input, each a failure
        self.failures: list[dict] = []
        self.empty: list[str] = []  # tickers with no data: a warning each, unless nothing at all is stored
        self.entries: dict = {}
        self.tables: dict = {}

    def warn_if_cut_short(self, kind, *_) -> bool:
        # A run stopped by an error (a full disk) still names the tickers it found without data.
        if kind is not None:
            for message in self.empty:
                warnings.warn(message)
        return False

    def read_manifest(self) -> dict:
        """The store's manifest (empty if of another format or version); its entries and tables kept."""
        manifest = read_manifest(self.store)
        if manifest.get("format") not in (None, self.format) or manifest.get("version") != MANIFEST_VERSION:
            manifest = {}
        self.entries = dict(manifest.get("tickers", {}))
        self.tables = dict(manifest.get("tables", {})) if isinstance(manifest.get("tables"), dict) else {}
        return manifest

    def save(self) -> None:
        write_manifest(self.store, {"version": MANIFEST_VERSION, "format": self.format, "tickers": self.entries,
                                    "tables": self.tables})

    def plan(self, found: Found, force: bool, stack: contextlib.ExitStack) -> None:
        """Queue what ``found`` needs converted: a ticker's file unless it is up to date; a
        long or wide table split (streamed) into parts unless it is unchanged."""
        if found.ticker is not None:
            self.names.add(found.ticker)
            if not force and _up_to_date(self.entries.get(found.ticker), found.path, self.store, self.on_bad_lines,
                                         self.columns):
                self._record_layout(found.ticker)
                return
            self.entries.pop(found.ticker, None)
            self._queue(found.ticker, found.path, found)
            return
        record = {**_table_record(found, self.on_bad_lines), **self.columns}
        known = self.tables.get(found.path.name)
        known = known if isinstance(known, dict) else None
        if not force and known is not None and {k: known.get(k) for k in record} == record and all(
                _up_to_date(self.entries.get(t), found.path, self.store, self.on_bad_lines, self.columns)
                for t in known.get("tickers", [])):
            self.names.update(known.get("tickers", []))
            for ticker in known.get("tickers", []):
                self._record_layout(ticker)
            return
        for ticker in (known or {}).get("tickers", []):
            self.entries.pop(ticker, None)
        scratch = Path(tempfile.mkdtemp(prefix=SPLIT_PREFIX, dir=self.store))
        stack.callback(shutil.rmtree, scratch, True)
        reader = READERS[found.reader]
        bad = BadLines()  # rows of the table that are no ticker's: not CSV of its header
        with reading(**self.columns):
            parts = _split(reader, found, scratch, self.max_bytes, self.on_bad_lines, bad)
        for ticker, part in parts:
            self._queue(ticker, part, found, found.path, {"text": reader.text(found.path), "ticker": ticker})
        self.tables[found.path.name] = {**record, "tickers": [t for t, _ in parts], "bad_lines_skipped": bad.count,
                                        "first_bad_line": f"line {bad.first[0]}: {bad.first[1]}" if bad else None}

    def _queue(self, ticker: str, path: Path, found: Found, origin: Path | None = None,
               options: dict | None = None) -> None:
        self.names.add(ticker)
        try:
            target = stored_path(self.store, ticker, self.suffix)
        except PairscanError as err:
            line = READERS[found.reader].first_line(path) if origin else None
            self.refused.append({"file": str(origin or path), "line": line, "reason": err.reason})
            return
        _never_over_source(target, origin or path)
        self.todo.append((ticker, (str(path), str(target), self.on_bad_lines, found.reader,
                                   str(origin) if origin else None, self.max_bytes, options, self.columns)))

    def _record_layout(self, ticker: str) -> None:
        """Add where its arrays lie to the entry of an unchanged ticker converted before
        they were recorded (its stored file was just found intact), so that a rerun lets
        loads read it without HDF5."""
        entry = self.entries.get(ticker)
        if entry and entry.get("file") and "layout" not in entry:
            layout = stored_layout(Path(self.store) / entry["file"])
            if layout:
                self.entries[ticker] = {**entry, "layout": layout}

    def convert(self, pool: Pool, quiet: bool, retries: int) -> None:
        """Run the queued tasks on ``pool``, recording each result in the manifest as it
        comes (saved at most once a second, and whatever stops the run)."""
        if pool.can.remote:
            # A scheduler's workers may run in another folder (or on another machine with the same mount).
            self.todo = [(t, (os.path.abspath(src), os.path.abspath(dst), mode, reader,
                              origin and os.path.abspath(origin), *rest))
                         for t, (src, dst, mode, reader, origin, *rest) in self.todo]
        sources = {ticker: args[4] or args[0] for ticker, args in self.todo}
        saved = time.monotonic()
        try:
            for ticker, result in run_tasks(pool, convert_file, self.todo, desc="convert", quiet=quiet,
                                            retries=retries):
                if "error" in result:
                    self.failures.append(result["error"])
                else:
                    _record(self.entries, ticker, stamp_entry(self.store, result))
                    if result["rows"] == 0:
                        self.empty.append(_no_data(sources[ticker], ticker, result))
                if time.monotonic() - saved > 1.0:  # keep finished work if the run is killed
                    self.save()
                    saved = time.monotonic()
        except BaseException:
            # What did finish stays recorded, if there is room to say so; the error that
            # stopped the run is the one to report, not a second one from this.
            with contextlib.suppress(PairscanError):
                self.save()
            raise
        self.save()

    def finish(self, this_run: set[str], removed: list[str], pool: Pool, seconds: float, source: Path) -> dict:
        """The summary ``convert --json`` prints; :class:`ConvertFailed` if any file was bad,
        :class:`PairscanError` if nothing at all was stored."""
        names, entries = self.names, self.entries
        current = [e for t, e in entries.items() if t in names]
        current += [_table_skips(name, record) for name, record in self.tables.items() if name in this_run]
        converted = len(self.todo) - len(self.failures)
        failures = sorted(self.failures + self.refused, key=lambda f: (f["file"], f["line"] or 0))
        summary = {
            "files": len(names),
            "converted": converted,
            "up_to_date": len(names) - len(self.todo) - len(self.refused),
            "removed": len(removed),
            "failed": failures,
            "rows": sum(e["rows"] for e in current),
            "bad_lines_skipped": sum(e["bad_lines_skipped"] for e in current),
            "duplicates_dropped": sum(e["duplicates_dropped"] for e in current),
            "skipped_by_file": _skipped_by_file(current),
            "adj_close_differs": sorted(t for t, e in entries.items() if t in names and e.get("adj_close_differs")),
            "format": self.format,
            "store": str(self.store),
            "executor": pool.name,
            "workers": pool.workers,
            "seconds": round(seconds, 4),
        }
        nothing = bool(names) and not any(e["rows"] for e in current)
        for message in self.empty if failures or not nothing else []:  # else the one error below says it all
            warnings.warn(message)
        if failures:
            raise ConvertFailed(failures, summary)
        if nothing:
            raise PairscanError(_nothing_stored(current), source)
        return summary


def _table_skips(name: str, record: dict) -> dict:
    """A long table's rows skipped before they were any ticker's, counted as an entry with no rows."""
    skipped = record.get("bad_lines_skipped")
    skipped = skipped if isinstance(skipped, int) and not isinstance(skipped, bool) and skipped > 0 else 0
    first = record.get("first_bad_line") if isinstance(record.get("first_bad_line"), str) else None
    return {"source": name, "rows": 0, "bad_lines_skipped": skipped, "first_bad_line": first,
            "duplicates_dropped": 0}


def _skipped_by_file(entries: list[dict]) -> dict[str, int]:
    """Bad lines skipped per source file: a long table's are the sum over its tickers."""
    out: dict[str, int] = {}
    for entry in sorted(entries, key=lambda e: e["source"]):
        if entry["bad_lines_skipped"]:
            out[entry["source"]] = out.get(entry["source"], 0) + entry["bad_lines_skipped"]
    return out


def _nothing_stored(entries: list[dict]) -> str:
    """Why a convert that stored nothing failed: what was skipped, and the first reason."""
    skipped = sum(e["bad_lines_skipped"] for e in entries)
    if not skipped:
        return "nothing stored: the source files hold no records"
    first = min((e for e in entries if e["bad_lines_skipped"] and e["first_bad_line"]),
                key=lambda e: (e["source"], int(e["first_bad_line"].split(":")[0].split()[-1])), default=None)
    if first is None:
        return f"nothing stored: every record was bad ({skipped:,} lines skipped)"
    return (f"nothing stored: every record was bad ({skipped:,} line{'s' if skipped != 1 else ''} skipped; "
            f"first: {first['source']} {first['first_bad_line']}); fix the source or the options "
            f"(--close-column, --date-format, --ticker-column)")


def _remove_gone(store: Path, manifest: dict, present: set[str], entries: dict, suffix: str) -> list[str]:
    """Remove the tickers the manifest records whose source is gone; return them.

    Only what the manifest names is pairscan's to remove (a damaged entry still says
    its ticker was converted here); other files in the store are left alone.
    """
    gone = sorted((set(entries) | set(manifest.get("damaged", ()))) - present)
    remove_tickers(store, gone, suffix)
    for ticker in gone:
        entries.pop(ticker, None)
    return gone


def _never_over_source(target: Path, source: Path) -> None:
    # The store defaults to the source folder: a per-ticker Parquet file (or a long
    # table named as one of its tickers) would be its own stored file, overwritten.
    with contextlib.suppress(OSError):
        if target.exists() and os.path.samefile(target, source):
            raise PairscanError("the store would be written over this source file; pass --to with another folder "
                                "for the store", source)


def _record(entries: dict, ticker: str, entry: dict | None) -> None:
    # An entry whose stored file could not be looked at is not recorded: the next run
    # converts that ticker again rather than trust it.
    if entry is not None:
        entries[ticker] = entry


SPLIT_PREFIX = ".pairscan-split-"


def _split(reader, found: Found, scratch: Path, max_bytes: int, on_bad_lines: str,
           bad: BadLines) -> list[tuple[str, Path]]:
    """A table's parts, one per ticker; a compressed table is first unpacked (streamed, at
    most ``max_bytes``) into the scratch folder, and errors name the file as given. Rows
    that are no ticker's are settled by ``on_bad_lines`` (skipped ones added to ``bad``)."""
    table = unpack(found.path, scratch / "unpacked", max_bytes)
    try:
        return reader.split(table, scratch / "parts", found.options["ticker_column"], on_bad_lines=on_bad_lines,
                            bad=bad)
    except PairscanError as err:
        if table != found.path and err.file == str(table):
            raise PairscanError(err.reason, found.path, err.line) from None
        raise
    finally:
        if table != found.path:
            table.unlink(missing_ok=True)


def _table_record(found: Found, on_bad_lines: str) -> dict:
    try:
        stat = found.path.stat()
    except OSError as exc:
        raise PairscanError(f"cannot read ({exc.strerror})", found.path) from None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "on_bad_lines": on_bad_lines,
            "ticker_column": found.options["ticker_column"], "layout": "wide" if found.reader == "wide" else "long"}


def _store_files(store: Path) -> frozenset[str]:
    """The store's own files where the store is the source folder: not sources."""
    entries = read_manifest(store).get("tickers", {})
    own = {e.get("file") for e in entries.values() if isinstance(e, dict)} if isinstance(entries, dict) else set()
    return frozenset(f for f in own if isinstance(f, str))


def _no_data(source: str, ticker: str, entry: dict) -> str:
    if entry["bad_lines_skipped"]:
        why = f"every record was bad ({entry['bad_lines_skipped']} lines skipped; {entry['first_bad_line']})"
    else:
        why = "no records"
    return f"{source}: {why}; ticker {ticker!r} has no data and is not stored"

