"""Cached, checksummed downloads (CIFAR-10 archive, Inception weights) with a clear offline message."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

DATA_ENV = "CHAINER_VA_DATA"
DEFAULT_CACHE = Path("~/.cache/chainer_va")


class DownloadError(RuntimeError):
    """A file could not be downloaded (offline, or the server failed) or failed its checksum."""


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The data cache: ``override``, else ``$CHAINER_VA_DATA``, else ``~/.cache/chainer_va``."""
    path = Path(override) if override else Path(os.environ.get(DATA_ENV) or DEFAULT_CACHE)
    return path.expanduser()


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: str | os.PathLike, sha256: str | None, what: str = "file") -> Path:
    """Check ``path`` exists and has the expected sha256 (skipped when ``sha256`` is None)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError("{} not found at {}".format(what, path))
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256.lower():
            raise DownloadError(
                "{} at {} is corrupted or not the expected file: sha256 {} != expected {}. Delete it "
                "and download it again.".format(what, path, actual, sha256))
    return path


def fetch(url: str, filename: str, sha256: str | None, directory: str | os.PathLike | None = None,
          what: str | None = None, timeout: float = 60.0) -> Path:
    """Return the local path of ``filename`` in the cache, downloading ``url`` there first if needed.

    The download goes to a temporary file in the same folder and is renamed into place only after
    its sha256 matched, so an interrupted or corrupted download never leaves a file that looks valid.
    Offline, the error says which file to place where.
    """
    what = what or filename
    folder = cache_dir(directory)
    target = folder / filename
    if target.exists():
        return verify(target, sha256, what)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=folder)
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except (urllib.error.URLError, OSError) as exc:
            raise DownloadError(
                "could not download {} from {} ({}). If this machine is offline, download it elsewhere "
                "and place it at {} (or set ${} to a folder that holds {}).".format(
                    what, url, exc, target, DATA_ENV, filename)) from exc
        verify(tmp_name, sha256, "downloaded " + what)
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target
