"""The Bernoulli log-likelihood (binary cross-entropy) and the continuous Bernoulli of
Loaiza-Ganem & Cunningham (2019): its normaliser, mean and inverse-mean map.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_tensor
from .common import check_data_and_param, reduce_dims

__all__ = ['bernoulli_log_integral', 'bernoulli_log_prob', 'cb_log_norm', 'cb_logits_from_mean', 'cb_mean', 'continuous_bernoulli_log_prob']


def bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor, *, per_dim: bool = False) -> torch.Tensor:
    """Bernoulli log-likelihood, ``x log(lambda) + (1 - x) log(1 - lambda)`` with ``lambda = sigmoid(logits)``.

    This is minus the binary cross-entropy (``BCEWithLogits``) summed over pixels. For
    non-binary ``x`` in [0, 1] it is *not* a normalised density: that is the point of the
    continuous Bernoulli (Loaiza-Ganem & Cunningham 2019).

    Args:
        x: ``(batch, *data_shape)``, values in [0, 1].
        logits: same shape as ``x``; any finite real.
        per_dim: keep one term per data dimension instead of summing.

    Returns:
        ``(batch,)`` in nats (or ``x.shape`` with ``per_dim=True``).
    """
    check_data_and_param(x, "x", logits, "logits", low=0.0, high=1.0)
    # = x*eta - softplus(eta), stable for |eta| up to float max; one fused kernel (and one in
    # the backward pass) instead of three elementwise ops, which matters in the training loop.
    # The sign is flipped after the sum: on (batch,) values, not on every pixel.
    return -reduce_dims(F.binary_cross_entropy_with_logits(logits, x, reduction="none"), per_dim)


# --------------------------------------------------------------- continuous Bernoulli

# Below these |logits| the closed forms lose digits to cancellation, so Taylor series
# around lambda = 0.5 take over (coefficients from the series of eta / tanh(eta / 2) and
# 1 / (1 - exp(-eta)); both branches agree to rounding at the switch).
_CB_NORM_TAYLOR_BELOW = 1e-2


def cb_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """Elementwise log normaliser ``log C(lambda)`` of the continuous Bernoulli.

    ``C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda)`` (Loaiza-Ganem & Cunningham
    2019, Eq. 7), and ``C(1/2) = 2``. Written in the logits ``eta`` this is
    ``C = eta / tanh(eta / 2)``, which we evaluate as
    ``log(|eta| / (1 - exp(-|eta|))) + log(1 + exp(-|eta|))``: no ``1 - 2 lambda``
    cancellation and finite for any finite ``eta``. For ``|eta| < 1e-2`` a Taylor series
    ``log 2 + eta^2/12 - 7 eta^4/1440 + 31 eta^6/90720`` is used instead; gradients are
    finite on both sides (``d/d eta = 0`` at ``eta = 0``).

    Args:
        logits: any shape, finite.

    Returns:
        Same shape as ``logits``, nats; ``log 2`` at ``logits = 0``, growing like
        ``log|logits|`` for large ``|logits|``.
    """
    check_tensor("logits", logits)
    small = logits.abs() < _CB_NORM_TAYLOR_BELOW
    # Double-where: feed each branch only values it is safe on, so no NaN gradient leaks.
    eta_far = torch.where(small, torch.ones_like(logits), logits).abs()
    far = torch.log(eta_far / -torch.expm1(-eta_far)) + torch.log1p(torch.exp(-eta_far))
    eta2 = torch.where(small, logits, torch.zeros_like(logits)) ** 2
    near = math.log(2.0) + eta2 * (1.0 / 12 + eta2 * (-7.0 / 1440 + eta2 * (31.0 / 90720)))
    return torch.where(small, near, far)


def continuous_bernoulli_log_prob(x: torch.Tensor, logits: torch.Tensor, *, per_dim: bool = False) -> torch.Tensor:
    """Continuous Bernoulli log-density ``log C(lambda) + x log(lambda) + (1 - x) log(1 - lambda)``.

    A proper density on [0, 1] (Loaiza-Ganem & Cunningham 2019, Eq. 5): the Bernoulli
    "likelihood" plus the log normaliser :func:`cb_log_norm`.

    Args:
        x: ``(batch, *data_shape)``, values in [0, 1].
        logits: same shape as ``x``; ``lambda = sigmoid(logits)``.
        per_dim: keep one term per data dimension.

    Returns:
        ``(batch,)`` in nats (or ``x.shape``).
    """
    check_data_and_param(x, "x", logits, "logits", low=0.0, high=1.0)
    return reduce_dims(cb_log_norm(logits) + x * logits - F.softplus(logits), per_dim)


def cb_mean(logits: torch.Tensor) -> torch.Tensor:
    """Elementwise mean of the continuous Bernoulli with ``lambda = sigmoid(logits)``.

    ``E[x] = lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda))``
    (Loaiza-Ganem & Cunningham 2019, Eq. 8), which in the logits is
    ``1 / (1 - exp(-eta)) - 1 / eta``. It is *not* ``lambda``: the mean is pulled towards
    1/2, which is why continuous-Bernoulli reconstructions must be shown as this mean.
    Near ``eta = 0`` the series ``1/2 + eta/12 - eta^3/720 + eta^5/30240 - eta^7/1209600``
    replaces the cancelling difference.

    Args:
        logits: any shape, finite.

    Returns:
        Same shape, values in (0, 1); exactly 0.5 at ``logits = 0``.
    """
    check_tensor("logits", logits)
    threshold = 0.15 if logits.dtype == torch.float64 else 1.0
    small = logits.abs() < threshold
    eta_far = torch.where(small, torch.ones_like(logits), logits)
    far = -1.0 / torch.expm1(-eta_far) - 1.0 / eta_far
    eta = torch.where(small, logits, torch.zeros_like(logits))
    eta2 = eta * eta
    near = 0.5 + eta * (1.0 / 12 + eta2 * (-1.0 / 720 + eta2 * (1.0 / 30240 - eta2 / 1209600)))
    return torch.where(small, near, far)


def cb_logits_from_mean(mean: torch.Tensor, *, iterations: int = 200) -> torch.Tensor:
    """Inverse of :func:`cb_mean`: the logits whose continuous-Bernoulli mean is ``mean``.

    The mean is strictly increasing in the logits, so a bisection in float64 on a bracket
    that provably contains the root (``|eta| <= 2 / min(m, 1 - m)``) converges to rounding.

    Args:
        mean: any shape, values in the open interval (0, 1).

    Returns:
        Logits with the dtype and device of ``mean``.
    """
    check_tensor("mean", mean, support=(0.0, 1.0), open_interval=True)
    m = mean.detach().to(torch.float64)
    bound = 2.0 / torch.minimum(m, 1.0 - m) + 1.0
    low, high = -bound, bound.clone()
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        above = cb_mean(mid) > m
        high = torch.where(above, mid, high)
        low = torch.where(above, low, mid)
        if bool(((high - low) <= 1e-15 * torch.clamp(high.abs(), min=1.0)).all()):
            break
    return (0.5 * (low + high)).to(mean.dtype)


def bernoulli_log_integral(logits: torch.Tensor) -> torch.Tensor:
    """``log`` of the integral over ``x`` in [0, 1] of the Bernoulli "density" ``lambda^x (1 - lambda)^(1 - x)``.

    Binary cross-entropy on grey levels treats this function of ``x`` as a density, but its
    integral is not 1 and depends on ``lambda``: it is ``1 / C(lambda)``, the reciprocal of
    the continuous Bernoulli's normaliser (Loaiza-Ganem & Cunningham 2019), so the result
    is ``-cb_log_norm(logits)``; at ``lambda = 0.5`` it is ``log(1/2)``. The continuous
    Bernoulli is exactly this function, normalised.

    Args:
        logits: any shape, ``logit(lambda)``.

    Returns:
        Same shape, nats (at most 0: the integral is at most 1).
    """
    return -cb_log_norm(logits)
