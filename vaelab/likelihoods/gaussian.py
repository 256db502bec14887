"""The Gaussian log-density with a fixed, learned or optimal ``log sigma``, and the floor on ``log sigma``.
"""
from __future__ import annotations

import math

import torch

from .._checks import check_tensor
from .common import check_data_and_param, reduce_dims

__all__ = ["MIN_LOG_SIGMA", "gaussian_log_prob", "mean_image_fit", "optimal_log_sigma"]

_LOG_2PI = math.log(2 * math.pi)


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
    check_data_and_param(x, "x", mean, "mean")
    log_sigma = _broadcast_log_sigma(log_sigma, x)
    z = (x - mean) * torch.exp(-log_sigma)
    return reduce_dims(-0.5 * z * z - log_sigma - 0.5 * _LOG_2PI, per_dim)


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
    check_data_and_param(x, "x", mean, "mean")
    mse = torch.mean((x.detach() - mean.detach()) ** 2)
    return torch.clamp(0.5 * torch.log(mse), min=min_log_sigma)


@torch.no_grad()
def mean_image_fit(images: torch.Tensor, *, per_pixel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The maximum-likelihood Gaussian that ignores the input: ``(mean, log_sigma)``.

    The mean is the mean image ``(*shape)``; ``sigma^2`` is the mean squared deviation from it,
    per pixel (``per_pixel=True``, ``(*shape)``) or over all pixels (0-dim), floored at
    :data:`MIN_LOG_SIGMA`. Computed in the dtype and on the device of ``images`` ``(N, *shape)``.
    """
    mean = images.mean(dim=0)
    squared = (images - mean).square()
    log_sigma = 0.5 * (squared.mean(dim=0) if per_pixel else squared.mean()).log()
    return mean, log_sigma.clamp(min=MIN_LOG_SIGMA)
