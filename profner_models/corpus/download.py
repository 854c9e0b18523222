"""Fetch the official corpus zips (Zenodo) and unpack them safely.

The default URLs are the public Zenodo record file links. Sizes and sha256 sums of the official
zips are not pinned here (they could not be fetched when this was written): the sha256 of what
was downloaded is always printed so it can be pinned with ``--sha256-*`` / :class:`Source`.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from tqdm import tqdm

PROFNER_URL = "https://zenodo.org/record/4563995/files/profner.zip?download=1"
MEDDOPROF_URL = "https://zenodo.org/record/4775741/files/meddoprof-training-set.zip?download=1"
_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A failed download, a size/checksum mismatch or an unsafe archive member."""


@dataclass(frozen=True)
class Source:
    """One archive: where it comes from, what it must be (when known), where it unpacks."""

    name: str
    url: str
    subdir: str  # unpacked under <dest>/<subdir>
    sha256: str | None = None
    size: int | None = None


def default_sources(url_profner: str = PROFNER_URL, url_meddoprof: str = MEDDOPROF_URL) -> list[Source]:
    """ProfNER unpacks to ``<dest>/`` (the zip holds ``profner/``), MEDDOPROF to ``<dest>/meddoprof/``."""
    return [Source("profner", url_profner, "."), Source("meddoprof", url_meddoprof, "meddoprof")]


def download(url: str, target: Path, sha256: str | None = None, size: int | None = None,
             timeout: float = 60.0, progress: bool = True) -> str:
    """Stream ``url`` to ``target`` with a progress bar; check size and sha256 when given.

    Returns the sha256 hex digest. On any mismatch the partial file is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    got = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            if size is not None and total is not None and total != size:
                raise DownloadError(f"{url}: server announces {total} bytes, expected {size}")
            with open(target, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                                 desc=target.name, disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        if size is not None and got != size:
            raise DownloadError(f"{url}: got {got} bytes, expected {size}")
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise DownloadError(f"{url}: sha256 {digest.hexdigest()}, expected {sha256.lower()}")
    except (OSError, DownloadError) as error:
        target.unlink(missing_ok=True)
        if isinstance(error, DownloadError):
            raise
        raise DownloadError(f"{url}: {error}") from error
    return digest.hexdigest()


def _member_target(dest: Path, info: zipfile.ZipInfo) -> Path:
    """Where a member lands; DownloadError when it would escape ``dest`` or is a link."""
    name = info.filename
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise DownloadError(f"unsafe archive member {name!r}: escapes the destination")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DownloadError(f"unsafe archive member {name!r}: symbolic link")
    target = (dest / pure).resolve()
    if not target.is_relative_to(dest.resolve()):
        raise DownloadError(f"unsafe archive member {name!r}: escapes the destination")
    return target


def safe_extract(archive: Path, dest: Path, progress: bool = True) -> list[Path]:
    """Unpack a zip under ``dest`` after checking every member (nothing written if one is bad)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        members = [(info, _member_target(dest, info)) for info in zf.infolist()]
        written = []
        for info, target in tqdm(members, desc=f"unpack {Path(archive).name}", unit="file",
                                 disable=not progress):
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            written.append(target)
    return written


def fetch(source: Source, dest: Path, progress: bool = True,
          log: Callable[[str], None] = print) -> Path:
    """Download one source to a temporary file, verify it, unpack it under ``dest/subdir``."""
    dest = Path(dest)
    out_dir = dest / source.subdir
    with tempfile.TemporaryDirectory(dir=dest if dest.is_dir() else None) as tmp:
        archive = Path(tmp) / f"{source.name}.zip"
        digest = download(source.url, archive, source.sha256, source.size, progress=progress)
        log(f"{source.name}: {archive.stat().st_size} bytes, sha256 {digest}")
        files = safe_extract(archive, out_dir, progress=progress)
    log(f"{source.name}: {len(files)} files under {out_dir.resolve()}")
    return out_dir


def fetch_all(dest: Path, sources: list[Source], progress: bool = True,
              log: Callable[[str], None] = print) -> list[Path]:
    Path(dest).mkdir(parents=True, exist_ok=True)
    return [fetch(source, Path(dest), progress, log) for source in sources]
