"""Data as whole tensors on the device, minibatches, and counter-based random numbers.

Data stay whole tensors on the device; a minibatch is an index slice. Every random
number the training loop uses is drawn from a generator seeded by ``(seed, purpose,
counter)``, so step ``t`` sees the same noise whether the run was interrupted or not,
and a vectorised sweep can reproduce separate runs exactly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re

import torch

from .data.text import Sentences

__all__ = [
    "as_tensors", "batch_slices", "bucketed_batches", "derive_seed", "generator", "is_text", "pick_device",
    "training_tensors",
]


def pick_device(device=None) -> torch.device:
    """The device a run uses: ``device`` if given, else ``$VAELAB_DEVICE`` if set, else CUDA, then Apple MPS, then CPU.

    ``VAELAB_DEVICE`` (``cpu``, ``cuda``, ``cuda:N`` or ``mps``; empty means unset)
    replaces the automatic choice in every call that passes no ``device``, notebooks
    included. Its purpose: the book's stored numbers were computed on a CPU, and a GPU's
    kernels add in another order, a rounding difference that training amplifies; a reader
    on a GPU machine reproduces them with ``VAELAB_DEVICE=cpu``. A device this machine lacks
    is an error rather than a silent fallback, so that a run never reports numbers from
    another device than the one asked for.

    Raises:
        ValueError: ``VAELAB_DEVICE`` is none of the values above, or names a device
            that is not available here (CUDA without a CUDA build or GPU, a CUDA index
            beyond the GPUs present, MPS without Apple silicon).
    """
    if device is not None:
        return torch.device(device)
    named = os.environ.get("VAELAB_DEVICE", "").strip()
    if named:
        return _environment_device(named)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _environment_device(value: str) -> torch.device:
    """The device ``VAELAB_DEVICE=value`` names, checked to exist on this machine."""
    match = re.fullmatch(r"cpu|mps|cuda(?::(\d+))?", value)
    if match is None:
        raise ValueError(
            f"VAELAB_DEVICE={value!r} is not a device vaelab takes; use cpu, cuda, cuda:N (N = 0, 1, ...) or mps, "
            "or leave it unset for the automatic choice (CUDA, then MPS, then CPU)"
        )
    found = None
    if value.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            found = "CUDA, but torch.cuda.is_available() is False here (no GPU, or a CPU-only build of torch)"
        elif int(match[1] or 0) >= count:
            found = f"CUDA device {match[1]}, but this machine has {count} (cuda:0 to cuda:{count - 1})"
    elif value == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        found = "Apple's MPS, which is not available on this machine"
    if found is not None:
        raise ValueError(f"VAELAB_DEVICE={value!r} asks for {found}; unset it, or set VAELAB_DEVICE=cpu")
    return torch.device(value)


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
        hint = f"; convert it with torch.from_numpy({name})" if type(data).__module__ == "numpy" else ""
        raise ValueError(
            f"{name} must be a tensor, a tuple of tensors or a dataclass of tensors; got {type(data).__name__}{hint}"
        )
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        found = ", ".join(type(t).__name__ for t in tensors) or "nothing"
        raise ValueError(f"{name} must contain only torch tensors; got {found} (convert arrays with torch.from_numpy)")
    n = tensors[0].shape[0] if tensors[0].dim() else 0
    if n == 0 or any(t.dim() == 0 or t.shape[0] != n for t in tensors):
        raise ValueError(
            f"{name}: every tensor needs the same non-zero first dimension (one row per example); got shapes "
            f"{[tuple(t.shape) for t in tensors]}"
        )
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


def is_text(model) -> bool:
    """Whether ``model`` reads sentences (``tokens``, ``lengths``) rather than images."""
    return tuple(getattr(model, "inputs", ())) == ("tokens", "lengths")


def bucketed_batches(lengths: torch.Tensor, *, batch_size: int, bucket_size: int, seed: int, epoch: int) -> list:
    """One epoch of length-bucketed batches: a list of ``(index, width)``, ``index`` a CPU int64 tensor.

    The examples are shuffled with the generator of ``(seed, "shuffle", epoch)`` (the
    order :func:`vaelab.fit` uses for images), taken ``bucket_size * batch_size`` at a time,
    sorted by length within that pool (a stable sort) and cut into batches of
    ``batch_size``; the order of the batches is then shuffled with the generator of
    ``(seed, "buckets", epoch)``. Only the last batch of the epoch may be short, so an
    epoch has ``ceil(N / batch_size)`` batches, as without buckets. ``width`` is the
    longest length in the batch, the number of columns it needs.

    Args:
        lengths: ``(N,)`` integer lengths (on any device; read once per epoch).
        bucket_size: batches per pool, >= 1; 1 keeps the shuffled order.

    The result depends only on ``lengths``, ``batch_size``, ``bucket_size``, ``seed`` and
    ``epoch``, so a resumed run sees the same batches.
    """
    lengths = lengths.detach().cpu().to(torch.int64)
    n = lengths.shape[0]
    permutation = torch.randperm(n, generator=generator(seed, "shuffle", epoch))
    pool = batch_size * bucket_size
    batches = []
    for start in range(0, n, pool):
        members = permutation[start : start + pool]
        if bucket_size > 1:
            members = members[torch.sort(lengths[members], stable=True).indices]
        batches.extend(members[i : i + batch_size] for i in range(0, members.shape[0], batch_size))
    if bucket_size > 1:
        # the short batch stays last, so that every other batch has batch_size rows
        full = len(batches) - (1 if n % batch_size else 0)
        order = torch.randperm(full, generator=generator(seed, "buckets", epoch)).tolist()
        batches = [batches[i] for i in order] + batches[full:]
    return [(index, int(lengths[index].max())) for index in batches]


def _dataset_tensors(data, name: str):
    """``data`` itself, or the tensors inside a ``TensorDataset``; a clear error for loaders."""
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    if isinstance(data, TensorDataset):
        return tuple(data.tensors)
    if isinstance(data, DataLoader):
        inside = ("loader.dataset.tensors" if isinstance(data.dataset, TensorDataset)
                  else "torch.cat([x for x, *_ in loader])")
        raise ValueError(
            f"{name} must be whole tensors, not a DataLoader: vaelab keeps the whole data set on the device and "
            "takes each minibatch as an index slice, which for data that fit in memory is many times faster than "
            f"a DataLoader. Pass the tensors instead, e.g. {name}={inside}"
        )
    if isinstance(data, Dataset):
        raise ValueError(
            f"{name} must be whole tensors, not a {type(data).__name__}: stack its examples into one tensor, e.g. "
            f"torch.stack([{name}[i][0] for i in range(len({name}))]), or use vaelab.data's loaders, which return "
            "tensors"
        )
    return data


def training_tensors(model, data, name: str = "data") -> tuple[torch.Tensor, ...]:
    """``data`` as the tuple of tensors ``model`` consumes, checked before any training step.

    Accepts a tensor, a tuple/list or dataclass of tensors, or a ``TensorDataset``. For an
    image model, ``(images, labels)`` as vaelab's loaders return it is accepted and the
    labels are dropped (a VAE is trained without them). Every image tensor must have the
    dtype of the model's parameters.
    """
    tensors = as_tensors(_dataset_tensors(data, name), name)
    inputs = getattr(model, "inputs", None) or (None,) * len(tensors)
    if isinstance(data, Sentences) and len(inputs) == 1:
        raise ValueError(
            f"{name} are sentences (vaelab.data.Sentences), but the model is a {type(model).__name__} of images; "
            "sentences need a vaelab.SentenceVAE"
        )
    if len(tensors) == 2 and len(inputs) == 1 and tensors[1].dim() == 1:
        tensors = tensors[:1]  # (images, labels): an unsupervised model ignores the labels
    elif len(tensors) != len(inputs):
        wanted = ", ".join(inputs)
        raise ValueError(
            f"{name} must hold {len(inputs)} tensor(s) ({wanted}) for a {type(model).__name__}; got {len(tensors)}. "
            + (f"Pass the images alone ({name}=images) or (images, labels)" if len(inputs) == 1 else
               "Pass sentences as vaelab.data.Sentences (e.g. corpus.train, or a slice corpus.train[:1000]) or as "
               "(tokens, lengths)")
        )
    parameter = next(model.parameters(), None)
    if parameter is not None:
        for i, tensor in enumerate(tensors):
            if tensor.is_floating_point() and tensor.dtype != parameter.dtype:
                label = name if len(tensors) == 1 else f"{name}[{i}]"
                raise ValueError(
                    f"{label} has dtype {tensor.dtype} but the model's parameters are {parameter.dtype}; convert the "
                    f"data with .to({parameter.dtype}) (or the model with model.to({tensor.dtype}))"
                )
    model.check_input(*tensors)
    return tensors
