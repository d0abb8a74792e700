"""Cached, checksummed downloads (CIFAR-10 archive, Inception weights) with a clear offline message."""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

from va_core.errors import UsageError
from va_core.runinfo import publish

DATA_ENV = "CHAINER_VA_DATA"
DEFAULT_CACHE = Path("~/.cache/chainer_va")


class DownloadError(UsageError, RuntimeError):
    """A file could not be downloaded (offline, or the server failed) or failed its checksum."""


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The data cache: ``override``, else ``$CHAINER_VA_DATA``, else ``~/.cache/chainer_va``."""
    path = Path(override) if override else Path(os.environ.get(DATA_ENV) or DEFAULT_CACHE)
    return path.expanduser()


def digest_of(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest (``hashlib`` algorithm name) of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    return digest_of(path, "sha256", chunk)


def verify(path: str | os.PathLike, sha256: str | None, what: str = "file", size: int | None = None,
           md5: str | None = None) -> Path:
    """Check ``path`` exists and has the expected size, sha256 and md5 (each skipped when None).

    The size is checked first (cheap, and it catches a truncated download with a clearer message).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError("{} not found at {}".format(what, path))
    if size is not None and path.stat().st_size != size:
        raise DownloadError(
            "{} at {} is truncated or not the expected file: {} bytes, expected {}. Delete it and "
            "download it again.".format(what, path, path.stat().st_size, size))
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected is None:
            continue
        actual = digest_of(path, algorithm)
        if actual != expected.lower():
            raise DownloadError(
                "{} at {} is corrupted or not the expected file: {} {} != expected {}. Delete it "
                "and download it again.".format(what, path, algorithm, actual, expected))
    return path


def _check_complete(response, received: int, what: str) -> None:
    """Raise when the server announced more bytes (Content-Length) than arrived: ``read`` ends quietly
    on a dropped connection, and a file no checksum pins would otherwise be kept truncated."""
    announced = response.headers.get("Content-Length") if response.headers is not None else None
    if announced is not None and announced.isdigit() and int(announced) != received:
        raise DownloadError("the download of {} stopped after {} of {} bytes".format(what, received, announced))


def fetch(url: str | Sequence[str], filename: str, sha256: str | None,
          directory: str | os.PathLike | None = None, what: str | None = None, timeout: float = 60.0,
          size: int | None = None, md5: str | None = None, where: str | None = None) -> Path:
    """Return the local path of ``filename`` in the cache, downloading ``url`` there first if needed.

    ``url`` may be a list of mirrors, tried in order until one gives a file that passes the checks
    (``size``, ``sha256``, ``md5``: each skipped when None). The download goes to a temporary file in
    the same folder and is renamed into place only after the checks passed, so an interrupted or
    corrupted download never leaves a file that looks valid. Offline, the error says which file to
    place where: ``where`` (the caller's accepted places, in words) or else the target path.
    """
    what = what or filename
    urls = [url] if isinstance(url, str) else list(url)
    folder = cache_dir(directory)
    target = folder / filename
    if target.exists():
        return verify(target, sha256, what, size=size, md5=md5)
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for source in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=folder)
        try:
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(source, timeout=timeout) as response:
                    shutil.copyfileobj(response, out, 1 << 20)
                    _check_complete(response, out.tell(), what)
                verify(tmp_name, sha256, "downloaded " + what, size=size, md5=md5)
            except (urllib.error.URLError, http.client.HTTPException, OSError, DownloadError) as exc:
                failures.append("{} ({})".format(source, exc))
                continue
            publish(tmp_name, target)
            return target
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
    if where is None:
        where = str(target)
        if folder == cache_dir():  # the folder came from $CHAINER_VA_DATA (or its default)
            where += " (or set ${} to a folder that holds {})".format(DATA_ENV, filename)
    raise DownloadError(
        "could not download {} from {}. If this machine is offline, download it elsewhere and place it "
        "at {}.".format(what, "; ".join(failures), where))
