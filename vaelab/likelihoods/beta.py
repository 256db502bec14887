"""The Beta log-density, for data in the open interval (0, 1).
"""
from __future__ import annotations

import math

import torch

from .._checks import check_same_shape, check_support, check_tensor
from .common import check_data_and_param, reduce_dims

__all__ = ['beta_log_prob']


def beta_log_prob(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, *, per_dim: bool = False) -> torch.Tensor:
    """Beta log-density ``(a-1) log x + (b-1) log(1-x) - log B(a, b)`` for data in (0, 1).

    Pixel data with exact 0s and 1s must be squeezed into the open interval first
    (e.g. ``x * (1 - 2 eps) + eps``), since the density can be infinite at the ends.

    Args:
        x: ``(batch, *data_shape)``, values in the open interval (0, 1).
        alpha: same shape, > 0.
        beta: same shape, > 0.
        per_dim: keep one term per data dimension.

    Returns:
        ``(batch,)`` in nats (or ``x.shape``).
    """
    check_data_and_param(x, "x", alpha, "alpha", low=0.0, high=1.0, open_interval=True)
    check_tensor("beta", beta, min_dim=1)
    check_same_shape("x", x, "beta", beta)
    check_support("alpha", alpha, 0.0, math.inf, open_interval=True)
    check_support("beta", beta, 0.0, math.inf, open_interval=True)
    log_norm = torch.lgamma(alpha + beta) - torch.lgamma(alpha) - torch.lgamma(beta)
    log_prob = log_norm + (alpha - 1) * torch.log(x) + (beta - 1) * torch.log1p(-x)
    return reduce_dims(log_prob, per_dim)
