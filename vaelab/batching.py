"""On-device minibatches and counter-based random numbers.

Data stay whole tensors on the device; a minibatch is an index slice. Every random
number the training loop uses is drawn from a generator seeded by ``(seed, purpose,
counter)``, so step ``t`` sees the same noise whether the run was interrupted or not,
and a vectorised sweep can reproduce separate runs exactly.
"""
from __future__ import annotations

import dataclasses
import hashlib

import torch

__all__ = ["as_tensors", "derive_seed", "generator", "pick_device", "batch_slices"]


def pick_device(device=None) -> torch.device:
    """The given device, else CUDA, then Apple MPS, then CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def as_tensors(data, name: str = "data") -> tuple[torch.Tensor, ...]:
    """A tensor, a tuple/list of tensors, or a dataclass of tensors (e.g. ``Sentences``) as a tuple.

    All tensors must share their first (example) dimension.
    """
    if isinstance(data, torch.Tensor):
        tensors: tuple = (data,)
    elif isinstance(data, (tuple, list)):
        tensors = tuple(data)
    elif dataclasses.is_dataclass(data):
        tensors = tuple(getattr(data, f.name) for f in dataclasses.fields(data))
    else:
        raise ValueError(f"{name} must be a tensor, a tuple of tensors or a dataclass of tensors; got {type(data).__name__}")
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ValueError(f"{name} must contain only torch tensors")
    n = tensors[0].shape[0] if tensors[0].dim() else 0
    if n == 0 or any(t.dim() == 0 or t.shape[0] != n for t in tensors):
        raise ValueError(f"{name}: every tensor needs the same non-zero first dimension; got {[tuple(t.shape) for t in tensors]}")
    return tensors


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed for ``(seed, *keys)``: independent streams for each purpose and counter."""
    text = repr((int(seed),) + tuple(keys)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def generator(seed: int, *keys, device=None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed`."""
    device = torch.device("cpu") if device is None else torch.device(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, *keys))
    return gen


def batch_slices(n: int, batch_size: int, *, permutation: torch.Tensor | None = None):
    """Index tensors (or slices, when not shuffled) covering ``range(n)`` in batches; the last may be short."""
    for start in range(0, n, batch_size):
        if permutation is None:
            yield slice(start, min(start + batch_size, n))
        else:
            yield permutation[start : start + batch_size]
