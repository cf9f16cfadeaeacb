"""Archive: extract a tarball of ``<ticker>.json`` files, refusing anything hostile.

Every member is checked before anything is written: absolute paths, ``..``, links
that point outside the target, device files, FIFOs and other special files make the
whole archive refused, naming the member. Only then is it extracted, through the
standard library's ``data`` filter (PEP 706) as a second line of defence, with a
bound on the total size to stop decompression bombs.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from .errors import PairscanError

ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".tar.bz2", ".tar.xz")
DEFAULT_MAX_BYTES = 20 * 2**30  # 20 GiB unpacked
STAGING_PREFIX = ".pairscan-extract-"
# What reading a damaged or truncated archive raises, for each compression.
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)


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

    The data folder is the one folder holding ``*.json`` files (``daily-stock`` for the
    seed's archive). Raises :class:`PairscanError` naming the member for anything
    unsafe, and for archives that would unpack to more than ``max_bytes``; in that
    case nothing is written. Files appear in ``to`` whole or not at all.
    """
    archive = Path(archive)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
        raise PairscanError(f"--max-bytes must be a positive number of bytes, not {max_bytes!r}")
    if not archive.is_file():
        raise PairscanError("no such archive", archive)
    target = Path(to) if to is not None else default_target(archive)
    if target.exists() and not target.is_dir():
        raise PairscanError("cannot extract here: not a folder", target)
    try:
        tar = tarfile.open(archive, mode="r:*")
    except _READ_ERRORS as exc:
        raise PairscanError(f"not a readable tar archive ({exc})", archive) from None
    with tar:
        members = _read_members(tar, archive, max_bytes)
        refused = check_members(members)
        if refused:
            member, why = refused
            raise PairscanError(f"refusing the archive: member {member.name!r}: {why}", archive)
        folder = _data_folder(members, archive)
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
                raise PairscanError(f"cannot extract ({exc})", archive) from None
            try:
                for entry in sorted(staging.iterdir()):
                    _move(entry, target / entry.name)
            except OSError as exc:
                raise PairscanError(f"cannot move the extracted files into place ({exc})", target) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for folder_made in created:  # deepest first; only if still empty
                with contextlib.suppress(OSError):
                    folder_made.rmdir()
            raise
        shutil.rmtree(staging, ignore_errors=True)
    return target / folder


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
    folders = {posixpath.dirname(_key(m.name)) for m in members if m.isfile() and m.name.endswith(".json")}
    if not folders:
        raise PairscanError("the archive holds no <ticker>.json files", archive)
    if len(folders) > 1:
        raise PairscanError(f"the archive holds .json files in several folders: {sorted(folders)}", archive)
    return folders.pop()
