"""Archive: extract a tarball or zip of per-ticker files, refusing anything hostile.

Every member is checked before anything is written: absolute paths, ``..``, links
that do not end at a regular data file of the archive, duplicate names, device
files, FIFOs and other special files make the whole archive refused, naming the
member, as does an archive whose sizes add up to more than the bound. Then only what
becomes the source is extracted: the data files of the one data folder (and links
among them), streamed a chunk at a time and counted against the bound as they
unpack, into a folder of their own that pairscan marks as its extraction. A folder
that is not pairscan's is never written to, and in pairscan's own only the files it
extracted are ever replaced or removed. Files are written by this module alone, as
plain files with the usual permissions, never through the standard library's
extraction. A zip archive's members are described as tar members first, so the same
rules judge them.
"""

from __future__ import annotations

import contextlib
import filecmp
import io
import json
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import time
import uuid
import zipfile
import zlib
from pathlib import Path

from .errors import PairscanError
from .readers import check_file, reader_for

ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".tar.bz2", ".tar.xz", ".zip")
DEFAULT_MAX_BYTES = 20 * 2**30  # 20 GiB unpacked
STAGING_PREFIX = ".pairscan-extract-"
# What reading a damaged or truncated archive raises, for each compression.
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error, lzma.LZMAError)
# ... and reading one member: zipfile raises RuntimeError for an encrypted member, and
# NotImplementedError for a compression method it does not know.
_MEMBER_ERRORS = (*_READ_ERRORS, KeyError, RuntimeError, NotImplementedError)


def is_archive(path: str | os.PathLike) -> bool:
    name = os.fspath(path).lower()
    return name.endswith(ARCHIVE_SUFFIXES)


def default_target(archive: Path) -> Path:
    """``data/daily-stock.tgz`` -> ``data`` (the archive's own folder, as the seed does)."""
    return archive.parent


def check_member(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` alone may not be extracted, or None if it may.

    This looks at the member by itself (its name and type, where a link points as
    written); :func:`check_members` also follows links through one another.
    """
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or _has_drive(name):
        return "absolute path"
    if ".." in parts:
        return "path contains '..'"
    if member.ischr() or member.isblk():
        return "device file"
    if member.isfifo():
        return "FIFO (named pipe)"
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return f"special file (tar type {member.type!r})"
    if member.issym() or member.islnk():
        link = member.linkname.replace("\\", "/")
        kind = "symbolic link" if member.issym() else "hard link"
        if link.startswith("/") or _has_drive(link):
            return f"{kind} to an absolute path ({member.linkname})"
        base = posixpath.dirname(name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, link))
        if resolved == ".." or resolved.startswith("../"):
            return f"{kind} points outside the target ({member.linkname})"
    return None


def check_members(members: list[tarfile.TarInfo]) -> tuple[tarfile.TarInfo, str] | None:
    """The first member that may not be extracted and why, or None if all may.

    Besides :func:`check_member`'s rules: a name may appear once (a second member of
    the same name would be written over the first, or through it when the first is a
    link); links are followed through the other links of the archive as the file
    system would (a chain of links that each look harmless can still end outside); a
    path may not run through a link; and a link, symbolic or hard, must end at a
    regular data file of the archive (a hard link at one that comes before it), never
    at a folder or at anything beside the archive.
    """
    for member in members:
        why = check_member(member)
        if why:
            return member, why
    seen: dict[str, tarfile.TarInfo] = {}
    for member in members:
        key = _key(member.name)
        first = seen.get(key)
        if first is not None and not (first.isdir() and member.isdir()):
            return member, "the archive holds two members of this name"
        seen[key] = member
    symlinks = {_key(m.name): m.linkname.replace("\\", "/") for m in members if m.issym()}
    links = {_key(m.name) for m in members if m.issym() or m.islnk()}
    files_before: set[str] = set()
    ends: list[tuple[tarfile.TarInfo, str]] = []  # each link, and the path it ends at
    for member in members:
        key = _key(member.name)
        parts = key.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in links:
                return member, f"path runs through the link {prefix!r}"
        try:
            if member.issym():
                ends.append((member, "/".join(_resolve(parts[:-1] + member.linkname.replace("\\", "/").split("/"),
                                                       symlinks))))
            elif member.islnk():
                target = "/".join(_resolve(member.linkname.replace("\\", "/").split("/"), symlinks))
                if target not in files_before:
                    return member, f"hard link to {member.linkname!r}, which is not a file earlier in the archive"
                ends.append((member, target))
        except _Escapes as escape:
            kind = "symbolic link" if member.issym() else "hard link"
            return member, f"{kind} {escape} ({member.linkname})"
        if member.isfile():
            files_before.add(key)
    data_files = {_key(m.name) for m in members if _is_data_file(m)}
    for member, end in ends:
        if end not in data_files:
            kind = "symbolic link" if member.issym() else "hard link"
            return member, (f"{kind} to {member.linkname!r}, which is not a regular data file of the archive "
                            "(only links to those are extracted)")
    return None


def _is_data_file(member: tarfile.TarInfo) -> bool:
    """A regular file a reader knows, not hidden: what becomes the source."""
    name = posixpath.basename(_key(member.name))
    return member.isfile() and bool(name) and not name.startswith(".") and reader_for(Path(name)) is not None


class _Escapes(Exception):
    pass


_MAX_LINK_HOPS = 40  # links followed in one path, as Linux allows before ELOOP


def _resolve(parts: list[str], symlinks: dict[str, str]) -> list[str]:
    """The path ``parts`` (relative to the target) with the archive's links followed."""
    hops = 0  # over the whole path, so that links naming each other twice cannot explode

    def walk(parts: list[str]) -> list[str]:
        nonlocal hops
        out: list[str] = []
        for part in parts:
            if part in ("", "."):
                continue
            if part == "..":
                if not out:
                    raise _Escapes("points outside the target")
                out.pop()
                continue
            out.append(part)
            link = symlinks.get("/".join(out))
            if link is not None:
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise _Escapes(f"leads through more than {_MAX_LINK_HOPS} links (a loop?)")
                if link.startswith("/"):
                    raise _Escapes("points outside the target")
                out = walk(out[:-1] + link.split("/"))
        return out

    return walk(parts)


def _key(name: str) -> str:
    return "/".join(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def _has_drive(name: str) -> bool:
    return len(name) > 1 and name[1] == ":" and name[0].isalpha()


def extract(
    archive: str | os.PathLike,
    to: str | os.PathLike | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Path:
    """Extract the data files of ``archive`` into a folder of their own in ``to``; return that folder.

    ``to`` defaults to the archive's folder. The data folder is the one folder of the
    archive holding source files (``daily-stock`` for the seed's archive); only its
    data files (the files a reader knows, and links to them) are extracted, into
    ``to/<that folder>``; an archive whose files lie at its top level unpacks into a
    folder named after it (``prices.zip`` -> ``prices/``). Nothing else of the archive
    is written: no stored ``.h5``, no manifest or lock, no member of another folder.

    The folder is made new, or refreshed when it is pairscan's own extraction (it
    holds the marker :data:`MARKER`): then only the files pairscan extracted there are
    replaced or removed, and everything else in it is kept. A folder that exists and
    is not pairscan's is never written to: it is refused, unless its data files are
    exactly the archive's already (the folder the archive was made from). Raises
    :class:`PairscanError` naming the member for anything unsafe, and for archives that
    unpack to more than ``max_bytes``; then nothing is written. Files appear whole or
    not at all.
    """
    if not isinstance(archive, (str, os.PathLike)):
        raise PairscanError(f"archive must be a path, not {type(archive).__name__}")
    if to is not None and not isinstance(to, (str, os.PathLike)):
        raise PairscanError(f"to must be a path, not {type(to).__name__}")
    archive = Path(archive)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise PairscanError(f"--max-bytes must be a positive number of bytes, not {max_bytes!r}")
    if not archive.exists():
        raise PairscanError("no such archive", archive)
    check_file(archive, 2**63)
    target = Path(to) if to is not None else default_target(archive)
    if target.exists() and not target.is_dir():
        raise PairscanError("cannot extract here: not a folder", target)
    try:
        tar = _ZipAsTar(archive) if archive.name.lower().endswith(".zip") else tarfile.open(archive, mode="r:*")
    except _READ_ERRORS as exc:
        kind = "zip" if archive.name.lower().endswith(".zip") else "tar"
        raise PairscanError(f"not a readable {kind} archive ({_one_line(exc)})", archive) from None
    with tar:
        members = _read_members(tar, archive, max_bytes)
        refused = check_members(members)
        if refused:
            member, why = refused
            raise PairscanError(f"refusing the archive: member {member.name!r}: {why}", archive)
        folder = _data_folder(members, archive)
        dest = target / (folder or _stem(archive))
        plan = _plan(members, folder)
        stamp = _stamp(archive)
        previous = _previous(dest, plan, archive)
        if previous is _FOREIGN:
            _check_same(tar, plan, dest, archive, max_bytes)
            return dest  # the folder the archive was made from: nothing to write
        if previous is not None and _intact(dest, previous, stamp, plan):
            return dest  # extracted from this very archive before, and untouched since
        created = _missing_parents(dest.parent)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PairscanError(f"cannot create the folder ({exc.strerror})", dest.parent) from None
        _remove_stale_staging(dest.parent)
        # Unpack into a folder of pairscan's own beside the destination, then move the
        # results into place, so an interrupted extraction leaves no half-written files.
        try:
            # Made as any new folder (the umask's permissions, not mkdtemp's private ones):
            # a fresh extraction becomes the destination itself.
            staging = dest.parent / _staging_name()
            staging.mkdir()
        except OSError as exc:
            raise PairscanError(f"cannot create the folder ({exc.strerror})", dest.parent) from None
        try:
            record = _unpack(tar, plan, staging, archive, max_bytes)
            marker = {**stamp, "complete": True, "files": record}
            if previous is None:
                _write_marker(staging, marker)
                _move_new(staging, dest, archive)
            else:
                _refresh(staging, dest, previous, marker, archive)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for folder_made in created:  # deepest first; only if still empty
                with contextlib.suppress(OSError):
                    folder_made.rmdir()
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return dest


MARKER = ".pairscan-extracted.json"
_MARKER_MAX_BYTES = 64 * 2**20
_CHUNK = 2**20  # bytes copied at a time: the memory one member costs, however large it unpacks
_FOREIGN = object()  # the destination exists and is not pairscan's extraction


class _Item:
    """One file to extract: its name in the data folder, and the member it comes from.

    ``link``: for a symbolic link, the data file it names (in the same folder); for a
    hard link, the data file whose content it shares.
    """

    def __init__(self, member: tarfile.TarInfo, name: str, link: str | None = None):
        self.member, self.name, self.link = member, name, link


def _plan(members: list[tarfile.TarInfo], folder: str) -> list[_Item]:
    """What is extracted: the data files of ``folder`` and the links there to data files."""
    symlinks = {_key(m.name): m.linkname.replace("\\", "/") for m in members if m.issym()}
    items = []
    for member in members:
        key = _key(member.name)
        name = posixpath.basename(key)
        if posixpath.dirname(key) != folder or name.startswith(".") or reader_for(Path(name)) is None:
            continue
        if member.isfile():
            items.append(_Item(member, name))
        elif member.issym() or member.islnk():
            base = key.split("/")[:-1] if member.issym() else []
            end = _resolve(base + member.linkname.replace("\\", "/").split("/"), symlinks)
            if "/".join(end[:-1]) == folder:  # check_members made it a regular data file
                items.append(_Item(member, name, end[-1]))
    return items


def _stamp(archive: Path) -> dict:
    info = archive.stat()
    return {"archive": archive.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def _previous(dest: Path, plan: list[_Item], archive: Path) -> dict | object | None:
    """The marker of pairscan's extraction at ``dest``; None if there is nothing; else :data:`_FOREIGN`.

    Checked before anything is unpacked: a destination pairscan may not write to is
    refused at once, naming the first member that would land on an entry that is not
    pairscan's.
    """
    try:
        info = os.lstat(dest)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PairscanError(f"cannot extract member {plan[0].member.name!r} into {dest} ({exc.strerror})",
                            archive) from None
    marker = _read_marker(dest) if stat.S_ISDIR(info.st_mode) else None
    if marker is None:
        _check_foreign_names(dest, info, plan, archive)
        return _FOREIGN
    files = marker["files"]
    for item in plan:
        why = _not_ours(dest / item.name, files.get(item.name))
        if why:
            raise PairscanError(f"refusing to extract member {item.member.name!r}: {dest / item.name} {why}; "
                                f"pairscan never writes over it: move it away or extract elsewhere{_ELSEWHERE}",
                                archive)
    return marker


_ELSEWHERE = " (extract or convert --to DIR, run --workdir DIR)"


def _not_ours(path: Path, recorded: dict | None) -> str | None:
    """Why pairscan may not replace ``path`` in its own extraction, or None if it may."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be checked ({exc.strerror})"
    if recorded is None:
        return "exists and was not extracted by pairscan"
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        return "is no longer the file pairscan extracted"
    return None


def _check_foreign_names(dest: Path, info: os.stat_result, plan: list[_Item], archive: Path) -> None:
    """A foreign ``dest`` may stand only when its data files are named as the archive's; else refuse."""
    present: set[str] | None = None
    if stat.S_ISDIR(info.st_mode):
        with contextlib.suppress(OSError):
            present = {p.name for p in dest.iterdir() if not p.name.startswith(".") and reader_for(p) is not None}
    wanted = [item.name for item in plan]
    if present == set(wanted):
        return
    # Name a member that would land on an entry of the user's, else the first member.
    item = next((item for item in plan if present and item.name in present), plan[0])
    extra = sorted((present or set()) - set(wanted))
    differs = f", and holds {extra[0]!r}, which the archive does not" if extra else ""
    raise PairscanError(f"refusing to extract member {item.member.name!r}: {dest} exists and is not a folder "
                        f"pairscan extracted (it holds no {MARKER}){differs}; pairscan never writes over it: "
                        f"move it away or extract elsewhere{_ELSEWHERE}", archive)


def _check_same(tar, plan: list[_Item], dest: Path, archive: Path, max_bytes: int) -> None:
    """Leave a foreign ``dest`` as it is if its data files are byte for byte the archive's; else refuse.

    Compared as the archive is read, a chunk at a time: nothing is written.
    """
    written = 0
    for item in sorted(plan, key=lambda item: item.link is not None):  # files in the archive's order, then links
        theirs = dest / item.name
        try:
            if not stat.S_ISREG(os.stat(theirs).st_mode):
                same = False
            elif item.link is not None:
                same = filecmp.cmp(theirs, dest / item.link, shallow=False)
            else:
                source = tar.extractfile(item.member)
                if source is None:
                    raise tarfile.ExtractError("no data")
                with source, open(theirs, "rb") as f:
                    while True:
                        chunk = source.read(_CHUNK)
                        written += len(chunk)
                        if written > max_bytes:
                            raise PairscanError(
                                f"refusing the archive: it unpacks to more than {max_bytes} bytes "
                                f"(at member {item.member.name!r}; raise --max-bytes if this is expected)", archive)
                        if chunk != f.read(len(chunk)) or not chunk:
                            same = not chunk and not f.read(1)
                            break
        except _MEMBER_ERRORS as exc:
            if not isinstance(exc, OSError) or exc.filename is None or Path(exc.filename) != theirs:
                raise PairscanError(f"cannot extract ({_why(exc)}; at member {item.member.name!r})", archive) from None
            same = False
        if not same:
            raise PairscanError(f"refusing to extract member {item.member.name!r}: {dest} exists and is not a "
                                f"folder pairscan extracted (it holds no {MARKER}), and its {item.name} differs; "
                                f"pairscan never writes over it: move it away or extract elsewhere{_ELSEWHERE}",
                                archive)


def _intact(dest: Path, marker: dict, stamp: dict, plan: list[_Item]) -> bool:
    """Whether ``dest`` is a complete extraction of this archive whose files are as written."""
    if marker is _FOREIGN or not marker.get("complete") or any(marker.get(k) != v for k, v in stamp.items()):
        return False
    files = marker["files"]
    if set(files) != {item.name for item in plan}:
        return False
    for name, recorded in files.items():
        try:
            info = os.lstat(dest / name)
            if recorded.get("link") is not None:
                if not stat.S_ISLNK(info.st_mode) or os.readlink(dest / name) != recorded["link"]:
                    return False
            elif not stat.S_ISREG(info.st_mode) or [info.st_size, info.st_mtime_ns] != [
                    recorded.get("size"), recorded.get("mtime_ns")]:
                return False
        except OSError:
            return False
    return True


def _unpack(tar, plan: list[_Item], staging: Path, archive: Path, max_bytes: int) -> dict[str, dict]:
    """Write the planned files into ``staging``, streaming; return what the marker records of each."""
    record: dict[str, dict] = {}
    written = 0
    for item in plan:  # in the archive's order: a compressed stream is read once, forwards
        if item.link is not None:
            continue
        member, path = item.member, staging / item.name
        try:
            source = tar.extractfile(member)
            if source is None:
                raise tarfile.ExtractError("no data")
            with source, open(path, "xb") as out:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise PairscanError(
                            f"refusing the archive: it unpacks to more than {max_bytes} bytes "
                            f"(at member {member.name!r}; raise --max-bytes if this is expected)", archive)
                    out.write(chunk)
            with contextlib.suppress(OSError, OverflowError, ValueError):
                os.utime(path, ns=(round(member.mtime * 10**6) * 1000,) * 2)  # to the microsecond
            info = os.lstat(path)
        except _MEMBER_ERRORS as exc:
            raise PairscanError(f"cannot extract ({_why(exc)}; at member {member.name!r})", archive) from None
        record[item.name] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
    for item in plan:
        if item.link is None:
            continue
        path = staging / item.name
        try:
            if item.member.issym():
                os.symlink(item.link, path)
                record[item.name] = {"link": item.link}
            else:
                os.link(staging / item.link, path, follow_symlinks=False)
                info = os.lstat(path)
                record[item.name] = {"size": info.st_size, "mtime_ns": info.st_mtime_ns}
        except OSError as exc:
            raise PairscanError(f"cannot extract ({_why(exc)}; at member {item.member.name!r})", archive) from None
    return record


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # not str(exc): that names the private staging folder
    return _one_line(exc)


def _read_marker(folder: Path) -> dict | None:
    """``folder``'s extraction marker, or None if it has none that pairscan wrote (never through a link)."""
    try:
        fd = os.open(folder / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            marker = json.loads(f.read(_MARKER_MAX_BYTES + 1)[:_MARKER_MAX_BYTES])
    except (OSError, ValueError):
        return None
    if not (isinstance(marker, dict) and isinstance(marker.get("files"), dict)
            and all(isinstance(k, str) and "/" not in k and k not in ("", ".", "..") and isinstance(v, dict)
                    for k, v in marker["files"].items())):
        return None
    return marker


def _write_marker(folder: Path, marker: dict) -> None:
    tmp = folder / f"{_staging_name()}.tmp"  # a killed run's is removed by the next
    try:
        with open(tmp, "x") as f:
            json.dump(marker, f, indent=1, sort_keys=True)
        os.replace(tmp, folder / MARKER)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _move_new(staging: Path, dest: Path, archive: Path) -> None:
    """The staging folder becomes ``dest``, which must still not exist."""
    if os.path.lexists(dest):  # made since it was checked: never replaced
        raise PairscanError(f"{dest} appeared while extracting; pairscan never writes over it: "
                            f"move it away or extract elsewhere{_ELSEWHERE}")
    try:
        os.rename(staging, dest)
    except OSError as exc:
        raise PairscanError(f"cannot move the extracted files into place ({exc.strerror})", dest) from None


def _refresh(staging: Path, dest: Path, previous: dict, marker: dict, archive: Path) -> None:
    """Refresh pairscan's own extraction ``dest``: replace and remove only the files it wrote there."""
    old = previous["files"]
    _remove_stale_staging(dest)  # a marker being written when a run was killed
    try:
        # First record every name this may leave behind, so a run killed midway still
        # knows them as its own next time.
        _write_marker(dest, {**marker, "complete": False, "files": {**old, **marker["files"]}})
        for name in marker["files"]:
            why = _not_ours(dest / name, old.get(name))
            if why:
                raise PairscanError(f"refusing to extract into {dest}: {dest / name} {why}; "
                                    f"move it away or extract elsewhere{_ELSEWHERE}")
            os.replace(staging / name, dest / name)
        for name in old:
            if name not in marker["files"] and _not_ours(dest / name, old[name]) is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(dest / name)
        _write_marker(dest, marker)
    except OSError as exc:
        raise PairscanError(f"cannot move the extracted files into place ({exc.strerror or exc})", dest) from None


def _stem(archive: Path) -> str:
    name = archive.name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "data"
    return name


def _one_line(exc: BaseException) -> str:
    """tarfile lists the error of every compression it tried; one line says it."""
    if isinstance(exc, tarfile.ReadError) and "could not be opened successfully" in str(exc):
        return "not a tar file, compressed or not"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class _ZipAsTar:
    """A zip archive seen through tarfile's interface: members as :class:`tarfile.TarInfo`.

    A member's Unix mode (when the zip records one) gives its type, so links, FIFOs and
    devices are judged by the same rules as in a tarball; a symbolic link's target is
    its content. Extraction writes no more than each member's recorded size.
    """

    def __init__(self, path: Path):
        self.zip = zipfile.ZipFile(path)
        self.infos: dict[str, zipfile.ZipInfo] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()

    def __iter__(self):
        for info in self.zip.infolist():
            member = tarfile.TarInfo(info.filename)
            mode = info.external_attr >> 16
            member.size = info.file_size
            member.mode = stat.S_IMODE(mode) or 0o644
            with contextlib.suppress(OverflowError, ValueError):
                member.mtime = time.mktime((*info.date_time, 0, 0, -1))
            if info.is_dir() or stat.S_ISDIR(mode):
                member.type, member.size = tarfile.DIRTYPE, 0
            elif stat.S_ISLNK(mode):
                member.type, member.size = tarfile.SYMTYPE, 0
                with self.zip.open(info) as link:  # a link's content is its target: a short path
                    member.linkname = link.read(4096).decode("utf-8", "replace")
            elif stat.S_ISFIFO(mode):
                member.type = tarfile.FIFOTYPE
            elif stat.S_ISCHR(mode):
                member.type = tarfile.CHRTYPE
            elif stat.S_ISBLK(mode):
                member.type = tarfile.BLKTYPE
            elif stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                member.type = b"?"
            self.infos[member.name] = info
            yield member

    def extractfile(self, member: tarfile.TarInfo):
        """The member's bytes as a stream, never more than its recorded size."""
        return _Bounded(self.zip.open(self.infos[member.name]), member.size)


class _Bounded(io.RawIOBase):
    """At most ``size`` bytes of ``stream``: a member that inflates past its recorded size is a bomb."""

    def __init__(self, stream, size: int):
        self.stream, self.left = stream, size

    def readable(self):
        return True

    def close(self):
        self.stream.close()
        super().close()

    def readinto(self, buffer):
        data = self.stream.read(min(len(buffer), self.left + 1))
        if len(data) > self.left:
            raise zipfile.BadZipFile("a member unpacks to more than its recorded size")
        self.left -= len(data)
        buffer[: len(data)] = data
        return len(data)


def _read_members(tar: tarfile.TarFile, archive: Path, max_bytes: int) -> list[tarfile.TarInfo]:
    """Every member's header, refusing as soon as the sizes add up to more than ``max_bytes``.

    Stopping early matters for a decompression bomb: reading past a member means
    decompressing it.
    """
    members, total = [], 0
    try:
        for member in tar:
            total += max(0, member.size)
            if total > max_bytes:
                raise PairscanError(
                    f"refusing the archive: it unpacks to more than {max_bytes} bytes "
                    f"(at member {member.name!r}; raise --max-bytes if this is expected)", archive)
            members.append(member)
    except _MEMBER_ERRORS as exc:
        where = f" after member {members[-1].name!r}" if members else " at its first member"
        raise PairscanError(f"damaged archive ({_one_line(exc)}){where}", archive) from None
    return members


def _missing_parents(target: Path) -> list[Path]:
    """The folders ``target.mkdir(parents=True)`` would create, deepest first."""
    missing = []
    for folder in (target, *target.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _staging_name() -> str:
    return f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"


def _remove_stale_staging(target: Path) -> None:
    # Left behind only by an extraction that was killed (never the only copy of anything);
    # one whose process still runs is another extraction at work beside this one.
    for stale in target.glob(STAGING_PREFIX + "*"):
        pid = stale.name[len(STAGING_PREFIX):].split("-")[0]
        if pid.isdigit() and _running(int(pid)):
            continue
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        elif stale.is_file() and not stale.is_symlink() and stale.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def _data_folder(members: list[tarfile.TarInfo], archive: Path) -> str:
    folders = {posixpath.dirname(_key(m.name)) for m in members if _is_data_file(m)}
    if not folders:
        raise PairscanError("the archive holds no source files (<ticker>.json, .csv, .txt, .parquet)", archive)
    if len(folders) > 1:
        raise PairscanError(f"the archive holds source files in several folders: {sorted(folders)}", archive)
    return folders.pop()
