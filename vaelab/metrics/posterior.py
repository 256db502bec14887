"""What every held-out measurement starts from: checked data, eval mode, batches, and ``q(z | x)`` for a whole set.

Images and sentences are measured by the same functions. Sentences are batched in
order of length and each batch is trimmed to its longest sentence
(:func:`example_batches`), so padding costs nothing; results are returned in the
order of the data.
"""
from __future__ import annotations

import contextlib

import torch

from .._checks import check_positive_int, no_validation
from ..batching import batch_slices, is_text, training_tensors

__all__ = ['checked_images', 'checked_inputs', 'encode_all', 'evaluating', 'example_batches', 'model_device']


def model_device(model) -> torch.device:
    """The device of ``model``'s parameters."""
    return next(model.parameters()).device


@contextlib.contextmanager
def evaluating(model):
    """Eval mode inside the block, the previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def checked_inputs(model, data) -> tuple[torch.Tensor, ...]:
    """``data`` as the checked tuple of tensors ``model`` reads: ``(images,)`` or ``(tokens, lengths)``."""
    return training_tensors(model, data, "data")


def checked_images(model, data, *, function: str = "this measurement") -> torch.Tensor:
    """``data`` as one checked image tensor ``(N, *model.data_shape)`` (on any device).

    For the measurements that exist only for images; a sentence model gets a clear error.
    """
    if is_text(model):
        raise ValueError(
            f"{function} measures image models (it needs pixels); model is a {type(model).__name__}. For sentences use "
            "vaelab.elbo, iw_log_likelihood, kl_per_dim, active_units or mutual_information"
        )
    return training_tensors(model, data, "data")[0]


def example_batches(model, tensors: tuple, batch_size: int):
    """Yield ``(index, batch)``: ``index`` selects the examples (a slice or a CPU index tensor), ``batch``
    is the tuple of tensors on the model's device.

    Images come in order. Sentences come sorted by length (a stable sort), each batch
    trimmed to its longest sentence, which changes no score (padding is never read).
    """
    device = model_device(model)
    batch_size = check_positive_int("batch_size", batch_size)
    n = tensors[0].shape[0]
    if not is_text(model):
        for index in batch_slices(n, batch_size):
            yield index, tuple(t[index].to(device) for t in tensors)
        return
    tokens, lengths = tensors
    lengths = lengths.cpu()  # one copy: the order and every batch's width are read from it
    order = torch.sort(lengths, stable=True).indices
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        batch_lengths = lengths[index]
        rows = index.to(tokens.device)
        yield index, (tokens.index_select(0, rows)[:, : int(batch_lengths.max())].to(device), batch_lengths.to(device))


@torch.no_grad()
def encode_all(model, tensors, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar)`` of ``q(z | x)`` for every example: each ``(N, latent)`` on the model's device, in data order.

    Args:
        tensors: an image tensor, or the tuple :func:`checked_inputs` returns.
    """
    tensors = (tensors,) if isinstance(tensors, torch.Tensor) else tuple(tensors)
    n = tensors[0].shape[0]
    device = model_device(model)
    mu_all = logvar_all = None
    with evaluating(model), no_validation():
        for index, batch in example_batches(model, tensors, batch_size):
            mu, logvar = model.encode(*batch)
            if mu_all is None:
                mu_all = torch.empty(n, mu.shape[1], dtype=mu.dtype, device=device)
                logvar_all = torch.empty_like(mu_all)
            index = index if isinstance(index, slice) else index.to(device)
            mu_all[index], logvar_all[index] = mu, logvar
    return mu_all, logvar_all
