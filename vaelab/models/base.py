"""What every vaelab model shares: the output of a forward pass, and seeded construction."""
from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch

__all__ = ["VAEOutput", "seeded"]


class VAEOutput(NamedTuple):
    """What one forward pass returns (all per example, nothing reduced over the batch).

    Attributes:
        log_px: ``(batch,)`` log-likelihood ``log p(x | z)`` in nats, one sample of ``z``.
        kl_per_dim: ``(batch, latent)`` KL to the prior per latent dimension, nats.
        mu, logvar: ``(batch, latent)`` posterior parameters.
        z: ``(batch, latent)`` the sample used.
        params: dict of decoder-distribution parameters, each ``(batch, *data_shape)``.
    """

    log_px: torch.Tensor
    kl_per_dim: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    params: dict


@contextlib.contextmanager
def seeded(seed: int | None):
    """Build modules inside this block to initialise them from ``seed`` without touching the global RNG."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
