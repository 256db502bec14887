"""What every held-out measurement starts from: checked images, eval mode, and ``q(z | x)`` for a whole set."""
from __future__ import annotations

import contextlib

import torch

from .._checks import check_positive_int, no_validation
from ..batching import training_tensors, batch_slices

__all__ = ['checked_images', 'encode_all', 'evaluating', 'model_device']

def model_device(model) -> torch.device:
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


def checked_images(model, data) -> torch.Tensor:
    """``data`` as one checked image tensor ``(N, *model.data_shape)`` (on any device)."""
    return training_tensors(model, data, "data")[0]


@torch.no_grad()
def encode_all(model, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar)`` of ``q(z | x)`` for every example: each ``(N, latent)`` on the model's device."""
    device = model_device(model)
    batch_size = check_positive_int("batch_size", batch_size)
    mus, logvars = [], []
    with evaluating(model), no_validation():
        for index in batch_slices(x.shape[0], batch_size):
            mu, logvar = model.encode(x[index].to(device))
            mus.append(mu)
            logvars.append(logvar)
    return torch.cat(mus), torch.cat(logvars)
