"""Archive: extract a tarball of ``<ticker>.json`` files, refusing anything hostile.

Every member is checked before anything is written: absolute paths, ``..``, links
that point outside the target, device files, FIFOs and other special files make the
whole archive refused, naming the member. Only then is it extracted, through the
standard library's ``data`` filter (PEP 706) as a second line of defence, with a
bound on the total size to stop decompression bombs.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tarfile
import tempfile
from pathlib import Path

from .errors import PairscanError

ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar", ".tar.bz2", ".tar.xz")
DEFAULT_MAX_BYTES = 20 * 2**30  # 20 GiB unpacked


def is_archive(path: str | os.PathLike) -> bool:
    name = os.fspath(path).lower()
    return name.endswith(ARCHIVE_SUFFIXES)


def default_target(archive: Path) -> Path:
    """``data/daily-stock.tgz`` -> ``data`` (the archive's own folder, as the seed does)."""
    return archive.parent


def check_member(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` may not be extracted, or None if it is safe."""
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in parts:
        return "path contains '..'"
    if member.isdev() or member.isfifo():
        return "device or special file"
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        return "special file"
    if member.issym() or member.islnk():
        link = member.linkname.replace("\\", "/")
        if link.startswith("/"):
            return f"link to an absolute path ({member.linkname})"
        base = posixpath.dirname(name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, link))
        if resolved == ".." or resolved.startswith("../"):
            return f"link points outside the target ({member.linkname})"
    return None


def extract(
    archive: str | os.PathLike,
    to: str | os.PathLike | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Path:
    """Extract ``archive`` into ``to`` (default: the archive's folder); return the data folder.

    The data folder is the one folder holding ``*.json`` files (``daily-stock`` for the
    seed's archive). Raises :class:`PairscanError` naming the member for anything
    unsafe, and for archives that would unpack to more than ``max_bytes``; in that
    case nothing is written.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise PairscanError("no such archive", archive)
    target = Path(to) if to is not None else default_target(archive)
    try:
        tar = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise PairscanError(f"not a readable tar archive ({exc})", archive) from None
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise PairscanError(f"damaged archive ({exc})", archive) from None
        total = 0
        for member in members:
            why = check_member(member)
            if why:
                raise PairscanError(f"refusing the archive: member {member.name!r}: {why}", archive)
            total += max(0, member.size)
            if total > max_bytes:
                raise PairscanError(
                    f"refusing the archive: it unpacks to more than {max_bytes} bytes "
                    f"(at member {member.name!r})", archive)
        target.mkdir(parents=True, exist_ok=True)
        # Unpack into a private folder inside the target, then move the results into
        # place, so an interrupted extraction leaves no half-written files behind.
        staging = Path(tempfile.mkdtemp(prefix=".pairscan-extract-", dir=target))
        try:
            try:
                tar.extractall(staging, filter="data")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise PairscanError(f"cannot extract ({exc})", archive) from None
            for entry in sorted(staging.iterdir()):
                dest = target / entry.name
                if dest.is_dir() and entry.is_dir():
                    _merge(entry, dest)
                else:
                    if dest.is_dir():
                        shutil.rmtree(dest)
                    os.replace(entry, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _data_folder(target, members)


def _merge(src: Path, dest: Path) -> None:
    for entry in src.iterdir():
        out = dest / entry.name
        if entry.is_dir() and out.is_dir():
            _merge(entry, out)
        else:
            if out.is_dir():
                shutil.rmtree(out)
            os.replace(entry, out)


def _data_folder(target: Path, members: list[tarfile.TarInfo]) -> Path:
    folders = {posixpath.dirname(m.name) for m in members if m.isfile() and m.name.endswith(".json")}
    if not folders:
        raise PairscanError("the archive holds no <ticker>.json files", target)
    if len(folders) > 1:
        raise PairscanError(f"the archive holds .json files in several folders: {sorted(folders)}", target)
    return target / folders.pop()
