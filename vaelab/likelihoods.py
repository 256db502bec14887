"""Decoder likelihoods log p(x | z) for the book's data.

Every function returns log-densities in **nats**. By default the result is summed over
all data dimensions and has shape ``(batch,)``; with ``per_dim=True`` it keeps the
shape of ``x`` (one term per pixel), which is what the loss-scale ledger reduces.
Data and parameters must have the same shape: nothing is broadcast silently.

The decoder's choice of likelihood fixes the *scale* of the reconstruction term, and
so the effective weight of the KL term. Chapter 2 (Gaussian) and chapter 3
(Bernoulli vs continuous Bernoulli) of the book derive this.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_same_shape, check_support, check_tensor

__all__ = [
    "bernoulli_log_prob",
    "continuous_bernoulli_log_prob",
    "cb_log_norm",
    "cb_mean",
    "cb_logits_from_mean",
    "gaussian_log_prob",
    "optimal_log_sigma",
    "beta_log_prob",
]

_LOG_2PI = math.log(2 * math.pi)


def _reduce(log_prob: torch.Tensor, per_dim: bool) -> torch.Tensor:
    """Sum a per-dimension tensor over every axis but the first (the batch)."""
    if per_dim or log_prob.dim() <= 1:
        return log_prob
    return log_prob.flatten(1).sum(dim=1)


def _check_data_and_param(x, x_name, param, param_name, *, low=None, high=None, open_interval=False):
    check_tensor(x_name, x, min_dim=1, support=None if low is None else (low, high), open_interval=open_interval)
    check_tensor(param_name, param, min_dim=1)
    check_same_shape(x_name, x, param_name, param)


# --------------------------------------------------------------------------- Bernoulli


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
    _check_data_and_param(x, "x", logits, "logits", low=0.0, high=1.0)
    # = x*eta - softplus(eta), stable for |eta| up to float max; one fused kernel (and one in
    # the backward pass) instead of three elementwise ops, which matters in the training loop.
    # The sign is flipped after the sum: on (batch,) values, not on every pixel.
    return -_reduce(F.binary_cross_entropy_with_logits(logits, x, reduction="none"), per_dim)


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
    _check_data_and_param(x, "x", logits, "logits", low=0.0, high=1.0)
    return _reduce(cb_log_norm(logits) + x * logits - F.softplus(logits), per_dim)


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


# ------------------------------------------------------------------------- Gaussian


def _broadcast_log_sigma(log_sigma, x: torch.Tensor) -> torch.Tensor:
    """Expand a shared, per-pixel or per-example ``log_sigma`` to ``x.shape`` (from the left)."""
    if not isinstance(log_sigma, torch.Tensor):
        log_sigma = torch.as_tensor(float(log_sigma), dtype=x.dtype, device=x.device)
    check_tensor("log_sigma", log_sigma)
    shape, batch = tuple(log_sigma.shape), x.shape[0]
    data_shape = tuple(x.shape[1:])
    if shape == () or shape == tuple(x.shape):
        return log_sigma.expand_as(x)
    per_pixel = shape == data_shape
    per_example = shape == (batch,) or shape == (batch,) + (1,) * len(data_shape)
    if per_pixel and per_example and shape == (batch,):
        raise ValueError(
            f"log_sigma of shape {shape} is ambiguous for x of shape {tuple(x.shape)}: it could be per pixel "
            f"or per example; pass shape {(1,) + data_shape} for per-pixel or {(batch,) + (1,) * len(data_shape)} "
            "for per-example"
        )
    if per_pixel or shape == (1,) + data_shape:
        return log_sigma.reshape((1,) + data_shape).expand_as(x)
    if per_example:
        return log_sigma.reshape((batch,) + (1,) * len(data_shape)).expand_as(x)
    raise ValueError(
        f"log_sigma must be a scalar (shared), shape {data_shape} (per pixel), shape ({batch},) "
        f"(per example) or shape {tuple(x.shape)}; got shape {shape}"
    )


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_sigma, *, per_dim: bool = False) -> torch.Tensor:
    """Gaussian log-density with standard deviation ``sigma = exp(log_sigma)``, normaliser included.

    ``log N(x; mean, sigma^2) = -(x - mean)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2``
    per dimension. With a fixed sigma this is MSE up to a scale and a constant: the
    scale ``1 / (2 sigma^2)`` is exactly the reconstruction-vs-KL weight (Rybkin et al.
    2021; chapter 2 of the book).

    Args:
        x: ``(batch, *data_shape)``, any real values.
        mean: same shape as ``x``.
        log_sigma: a float or 0-dim tensor (shared sigma), a ``data_shape`` tensor
            (per pixel), a ``(batch,)`` tensor (per example, broadcast from the left),
            or ``x.shape``.
        per_dim: keep one term per data dimension.

    Returns:
        ``(batch,)`` in nats (or ``x.shape``).
    """
    _check_data_and_param(x, "x", mean, "mean")
    log_sigma = _broadcast_log_sigma(log_sigma, x)
    z = (x - mean) * torch.exp(-log_sigma)
    return _reduce(-0.5 * z * z - log_sigma - 0.5 * _LOG_2PI, per_dim)


#: The smallest ``log sigma`` a Gaussian decoder uses (sigma = 3.4e-4 in pixel units). It sits
#: below the standard deviation of the dequantisation noise, ``1 / (256 sqrt(12))`` (log
#: -6.79), which is the optimum of a pixel that is always black, so on dequantised 8-bit
#: images the floor never binds at an optimum; on raw grey levels it keeps the density of
#: a constant pixel finite (Mattei & Frellsen 2018).
MIN_LOG_SIGMA = -8.0


def optimal_log_sigma(x: torch.Tensor, mean: torch.Tensor, *, min_log_sigma: float = MIN_LOG_SIGMA) -> torch.Tensor:
    """The shared ``log sigma*`` that maximises the Gaussian likelihood of the batch.

    ``sigma*^2 = mean((x - mean)^2)`` over every element of the batch (Rybkin et al. 2021,
    "optimal sigma-VAE"), returned detached so it acts as a constant in the loss. It is
    floored at ``min_log_sigma`` (:data:`MIN_LOG_SIGMA`) so a perfect reconstruction cannot
    give ``log 0``.

    Args:
        x: ``(batch, *data_shape)``.
        mean: same shape.
        min_log_sigma: lower bound on the result.

    Returns:
        0-dim tensor, ``log sigma*``.
    """
    _check_data_and_param(x, "x", mean, "mean")
    mse = torch.mean((x.detach() - mean.detach()) ** 2)
    return torch.clamp(0.5 * torch.log(mse), min=min_log_sigma)


# ----------------------------------------------------------------------------- Beta


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
    _check_data_and_param(x, "x", alpha, "alpha", low=0.0, high=1.0, open_interval=True)
    check_tensor("beta", beta, min_dim=1)
    check_same_shape("x", x, "beta", beta)
    check_support("alpha", alpha, 0.0, math.inf, open_interval=True)
    check_support("beta", beta, 0.0, math.inf, open_interval=True)
    log_norm = torch.lgamma(alpha + beta) - torch.lgamma(alpha) - torch.lgamma(beta)
    log_prob = log_norm + (alpha - 1) * torch.log(x) + (beta - 1) * torch.log1p(-x)
    return _reduce(log_prob, per_dim)
