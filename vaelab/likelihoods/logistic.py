"""The discretised logistic: a distribution on the 256 grey levels themselves.

Kingma et al. (2016) and Salimans et al. (2017, PixelCNN++) put a logistic density with
mean ``mu`` and scale ``s`` on the real line and give grey level ``k`` of ``L`` levels
(pixel value ``x = k / (L - 1)``) the probability of its bin,
``[x - h, x + h]`` with ``h = 1 / (2 (L - 1))``; the first and last levels take the tails:

    P(k) = sigmoid((x + h - mu) / s) - sigmoid((x - h - mu) / s)     (0 < k < L - 1)
    P(0) = sigmoid((h - mu) / s),    P(L - 1) = 1 - sigmoid((1 - h - mu) / s).

The probabilities of the ``L`` levels sum to 1 exactly, so the log-likelihood of 8-bit
images is a log-*probability*: bits per dimension are ``-log P / (D ln 2)``, with no
dequantisation and no ``log2(256)`` term.

A narrow bin far in a tail makes ``sigmoid(a) - sigmoid(b)`` a difference of two nearly
equal numbers. Instead of the mid-bin density fallback of PixelCNN++ this module uses an
identity that stays exact everywhere, for ``a > b``:

    sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(b - a)),

so ``log P = logsigmoid(a) + logsigmoid(-b) + log(1 - exp(-(a - b)))``, each term stable
(the last one with ``log(-expm1(-d))``), and so are the gradients.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_positive_int, level_index, validation_enabled
from .common import check_data_and_param, reduce_dims

__all__ = ["MIN_LOG_SCALE", "discretized_logistic_log_prob", "discretized_logistic_mean", "log1mexp"]

#: The smallest ``log s`` used (Salimans et al. clamp at -7): a bin of width 1/255 then holds
#: all but a vanishing fraction of the mass, and ``1/s`` stays far from overflow.
MIN_LOG_SCALE = -8.0


def log1mexp(d: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(-d))`` for ``d > 0``, accurate for tiny and for large ``d`` (Mächler 2012)."""
    return torch.where(d < math.log(2), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


def discretized_logistic_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, *, levels: int = 256, per_dim: bool = False
) -> torch.Tensor:
    """Log-probability of grey levels under a discretised logistic (see the module docstring).

    Args:
        x: ``(batch, *data_shape)``, grey levels ``k / (levels - 1)`` in [0, 1].
        mean: same shape; the logistic's location ``mu`` in pixel units (any real).
        log_scale: same shape; ``log s``, clamped below at :data:`MIN_LOG_SCALE`.
        levels: the number of grey levels, 256 for 8-bit images.
        per_dim: keep one term per pixel instead of summing.

    Returns:
        ``(batch,)`` in nats (or ``x.shape``): a log-*probability*, at most 0.
    """
    check_data_and_param(x, "x", mean, "mean", low=0.0, high=1.0)
    check_data_and_param(x, "x", log_scale, "log_scale")
    levels = check_positive_int("levels", levels, minimum=2)
    k = level_index("x", x, levels, check=validation_enabled())
    half = 0.5 / (levels - 1)
    inv_scale = torch.exp(-log_scale.clamp(min=MIN_LOG_SCALE))
    upper = (x + half - mean) * inv_scale  # a: the bin's upper edge, standardised
    lower = (x - half - mean) * inv_scale  # b: its lower edge
    inner = F.logsigmoid(upper) + F.logsigmoid(-lower) + log1mexp(upper - lower)
    log_p = torch.where(k == 0, F.logsigmoid(upper), torch.where(k == levels - 1, F.logsigmoid(-lower), inner))
    return reduce_dims(log_p, per_dim)


@torch.no_grad()
def discretized_logistic_mean(mean: torch.Tensor, log_scale: torch.Tensor, *, levels: int = 256) -> torch.Tensor:
    """The expected pixel value ``E[x] = sum_k P(k) k / (levels - 1)``, in [0, 1], same shape as ``mean``.

    Computed as ``sum_{k >= 1} P(X >= k) / (levels - 1)``, one boundary at a time, so memory
    stays that of ``mean`` (what a figure shows as the model's reconstruction).
    """
    levels = check_positive_int("levels", levels, minimum=2)
    inv_scale = torch.exp(-log_scale.clamp(min=MIN_LOG_SCALE))
    total = torch.zeros_like(mean)
    for k in range(1, levels):
        boundary = (k - 0.5) / (levels - 1)
        total += torch.sigmoid((mean - boundary) * inv_scale)  # P(X >= k) = 1 - F(boundary)
    return total / (levels - 1)
