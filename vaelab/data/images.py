"""MNIST and Fashion-MNIST from their IDX files, and binarisation of grey levels.

Images come back as whole tensors ``(N, 1, 28, 28)``, float32 grey levels ``k/255`` in
``[0, 1]``, labels ``(N,)`` int64.
"""
from __future__ import annotations

import functools
import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from .._checks import check_choice, check_positive, check_tensor
from .files import DataIntegrityError, fetch_file, file_version

__all__ = ['binarize', 'fashion_mnist', 'mnist']


_IDX_IMAGES, _IDX_LABELS = 2051, 2049
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: Path, magic: int) -> np.ndarray:
    return _read_idx_cached(*file_version(path), magic)


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
        root: a data root to look in first (:mod:`vaelab.data.files` gives the order).
        device: where to put the tensors (default CPU).

    Returns:
        ``(images, labels)``: images of shape ``(N, 1, 28, 28)``, float32, grey values in
        ``[0, 1]`` (byte / 255); labels of shape ``(N,)``, int64, classes ``0..9``.
        Each call returns fresh tensors; the decoded files are memoised in-process.
    """
    return _load_idx_pair("mnist", split, root, device)


def fashion_mnist(split: str, *, root=None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): Zalando article images.

    The arguments, shapes and units are those of :func:`mnist`; the labels are 10
    balanced classes ``0..9`` (T-shirt/top, trouser, pullover, dress, coat, sandal, shirt,
    sneaker, bag, ankle boot).
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
