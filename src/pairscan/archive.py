"""Archive: extract a tarball or zip of per-ticker files, refusing anything hostile.

Every member is checked before anything is written: absolute paths, ``..``, links
that point outside the target, device files, FIFOs and other special files make the
whole archive refused, naming the member. Only then is it extracted, through the
standard library's ``data`` filter (PEP 706) as a second line of defence, with a
bound on the total size to stop decompression bombs. A zip archive's members are
described as tar members first, so the same rules judge them.
"""

from __future__ import annotations

import contextlib
import io
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
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

    Besides :func:`check_member`'s rules, links are followed through the other links
    of the archive as the file system would (a chain of links that each look harmless
    can still end outside), a path may not run through a link, and a hard link must
    name a regular file that comes before it.
    """
    for member in members:
        why = check_member(member)
        if why:
            return member, why
    symlinks = {_key(m.name): m.linkname.replace("\\", "/") for m in members if m.issym()}
    links = {_key(m.name) for m in members if m.issym() or m.islnk()}
    files_before: set[str] = set()
    for member in members:
        key = _key(member.name)
        parts = key.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in links:
                return member, f"path runs through the link {prefix!r}"
        try:
            if member.issym():
                _resolve(parts[:-1] + member.linkname.replace("\\", "/").split("/"), symlinks)
            elif member.islnk():
                target = _resolve(member.linkname.replace("\\", "/").split("/"), symlinks)
                if "/".join(target) not in files_before:
                    return member, f"hard link to {member.linkname!r}, which is not a file earlier in the archive"
        except _Escapes as escape:
            kind = "symbolic link" if member.issym() else "hard link"
            return member, f"{kind} {escape} ({member.linkname})"
        if member.isfile():
            files_before.add(key)
    return None


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
    """Extract ``archive`` into ``to`` (default: the archive's folder); return the data folder.

    The data folder is the one folder holding source files (``daily-stock`` for the
    seed's archive); an archive whose files lie at its top level unpacks into a folder
    named after it (``prices.zip`` -> ``prices/``), never among other files. Raises :class:`PairscanError` naming the member for anything
    unsafe, and for archives that would unpack to more than ``max_bytes``; in that
    case nothing is written. Files appear in ``to`` whole or not at all.
    """
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
        subfolder = "" if folder else _stem(archive)
        created = _missing_parents(target)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PairscanError(f"cannot create the folder ({exc.strerror})", target) from None
        _remove_stale_staging(target)
        # Unpack into a private folder inside the target, then move the results into
        # place, so an interrupted extraction leaves no half-written files behind.
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=target))
        try:
            try:
                tar.extractall(staging, members=members, filter="data")
            except (*_READ_ERRORS, KeyError) as exc:
                raise PairscanError(f"cannot extract ({_one_line(exc)})", archive) from None
            try:
                if subfolder:
                    (target / subfolder).mkdir(exist_ok=True)
                for entry in sorted(staging.iterdir()):
                    _move(entry, target / subfolder / entry.name)
            except OSError as exc:
                raise PairscanError(f"cannot move the extracted files into place ({exc})", target) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for folder_made in created:  # deepest first; only if still empty
                with contextlib.suppress(OSError):
                    folder_made.rmdir()
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return target / (folder or subfolder)


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
            if info.is_dir() or stat.S_ISDIR(mode):
                member.type, member.size = tarfile.DIRTYPE, 0
            elif stat.S_ISLNK(mode):
                member.type, member.size = tarfile.SYMTYPE, 0
                member.linkname = self.zip.read(info)[:4096].decode("utf-8", "replace")
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

    def extractall(self, staging: Path, members, filter=None):
        for member in members:
            dest = staging / _key(member.name)
            if member.isdir():
                dest.mkdir(parents=True, exist_ok=True)
            elif member.issym():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(member.linkname, dest)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                with self.zip.open(self.infos[member.name]) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(_Bounded(src, member.size), out)


class _Bounded(io.RawIOBase):
    """At most ``size`` bytes of ``stream``: a member that inflates past its recorded size is a bomb."""

    def __init__(self, stream, size: int):
        self.stream, self.left = stream, size

    def readable(self):
        return True

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
    except _READ_ERRORS as exc:
        raise PairscanError(f"damaged archive ({exc})", archive) from None
    return members


def _missing_parents(target: Path) -> list[Path]:
    """The folders ``target.mkdir(parents=True)`` would create, deepest first."""
    missing = []
    for folder in (target, *target.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _remove_stale_staging(target: Path) -> None:
    # Left behind only by an extraction that was killed; never holds the only copy.
    for stale in target.glob(STAGING_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def _move(entry: Path, dest: Path) -> None:
    # A link is moved as the link it is, never followed: what it names may be anywhere.
    entry_is_dir = entry.is_dir() and not entry.is_symlink()
    dest_is_dir = dest.is_dir() and not dest.is_symlink()
    if entry_is_dir and dest_is_dir:
        for child in sorted(entry.iterdir()):
            _move(child, dest / child.name)
        return
    if dest_is_dir:
        shutil.rmtree(dest)
    elif entry_is_dir and (dest.is_symlink() or dest.exists()):
        dest.unlink()  # a folder cannot be renamed over a file
    os.replace(entry, dest)


def _data_folder(members: list[tarfile.TarInfo], archive: Path) -> str:
    folders = {posixpath.dirname(_key(m.name)) for m in members
               if m.isfile() and not posixpath.basename(m.name).startswith(".")
               and reader_for(Path(posixpath.basename(m.name))) is not None}
    if not folders:
        raise PairscanError("the archive holds no source files (<ticker>.json, .csv, .txt, .parquet)", archive)
    if len(folders) > 1:
        raise PairscanError(f"the archive holds source files in several folders: {sorted(folders)}", archive)
    return folders.pop()
