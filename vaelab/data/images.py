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

from .._checks import check_choice, check_positive, check_positive_int, check_tensor
from .._checks import on_level_grid as is_on_grid
from .files import DataIntegrityError, fetch_file, file_version

__all__ = ["binarize", "dequantize", "fashion_mnist", "mnist", "on_level_grid"]


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


def on_level_grid(images: torch.Tensor, *, levels: int = 256) -> bool:
    """Whether every value is one of the grey levels ``k / (levels - 1)``, as the loaders return them."""
    return is_on_grid(images.to(_wide(images.device)), levels)


def _wide(device: torch.device) -> torch.dtype:
    """float64, except on Apple's MPS, which has none (there the clamp below keeps float32 exact)."""
    return torch.float32 if device.type == "mps" else torch.float64


# The open interval that dequantised float32 values are kept in: 2**-24 and 1 - 2**-24 are
# the float32 numbers nearest to 0 and 1 from inside (1 - 2**-24 is the largest float32 below 1).
_OPEN_LOW, _OPEN_HIGH = 2.0**-24, 1.0 - 2.0**-24


def dequantize(images: torch.Tensor, *, levels: int = 256, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantisation of 8-bit grey levels: ``k / 255 -> (k + u) / 256``, ``u ~ U(0, 1)``.

    A density model of continuous data in ``[0, 1]`` scores discrete grey levels honestly
    only when each level ``k`` is spread over its bin ``[k/256, (k+1)/256)``: then
    ``-log p(y) / (D ln 2) + log2(256)`` bits per dimension bounds the codelength of the
    discrete image from above (Theis, van den Oord & Bethge 2016), a density cannot grow
    without bound on a constant pixel, and models with different likelihoods become
    comparable (:func:`vaelab.iw_log_likelihood` with ``levels=256``).

    The sum is formed in float64 (float32 on MPS) and kept strictly inside ``(0, 1)`` in float32 too
    (``(255 + u) / 256`` rounds to 1.0 in float32 for ``u`` near 1, and ``u`` can be 0):
    results are clamped to ``[2**-24, 1 - 2**-24]``, a shift of at most ``6e-8``.

    Args:
        images: any shape, floating point, values on the grid ``k / (levels - 1)``,
            ``k = 0 .. levels - 1`` (what :func:`mnist` and :func:`fashion_mnist` return).
        levels: the number of grey levels, 256 for 8-bit images.
        generator: random source for ``u``, on the device of ``images``; ``None`` uses
            torch's global generator. :func:`vaelab.fit` with ``dequantize=True`` draws a
            fresh ``u`` every epoch from a generator seeded by ``(seed, epoch)``.

    Returns:
        Same shape and dtype as ``images``, values in the open interval ``(0, 1)``.
    """
    check_tensor("images", images, support=(0.0, 1.0))
    levels = check_positive_int("levels", levels, minimum=2)
    if not on_level_grid(images, levels=levels):
        raise ValueError(
            f"images must be grey levels k / {levels - 1} (k = 0 .. {levels - 1}), as vaelab's loaders return them; "
            "these are not (already dequantised, normalised or resized?). Dequantise the original 8-bit images"
        )
    wide = _wide(images.device)
    k = (images.to(wide) * (levels - 1)).round()
    u = torch.rand(images.shape, generator=generator, device=images.device, dtype=wide)
    return ((k + u) / levels).clamp_(_OPEN_LOW, _OPEN_HIGH).to(images.dtype)
