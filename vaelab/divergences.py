"""The KL term of the ELBO, per latent dimension, and free bits.

Keeping the KL *per dimension*, shape ``(batch, latent)``, is what lets the book count
active units, apply free bits per dimension, and show the loss-scale ledger's
``sum`` vs ``mean`` over latents.
"""
from __future__ import annotations

import torch

from ._checks import check_positive, check_same_shape, check_tensor

__all__ = ["gaussian_kl", "free_bits"]


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, 1))`` for each latent dimension, in nats.

    ``KL_j = (mu_j^2 + exp(logvar_j) - 1 - logvar_j) / 2`` (Kingma & Welling 2013,
    Appendix B). For a collapsed unit ``logvar`` is near 0 and ``exp(v) - 1 - v ~ v^2/2``
    would cancel to noise, so there a Taylor series is used (to rounding in both
    float32 and float64).

    Args:
        mu: ``(batch, latent)`` posterior means.
        logvar: same shape, posterior log-variances.

    Returns:
        ``(batch, latent)``, nats, >= 0; exactly 0 only where ``mu = 0, logvar = 0``.
    """
    check_tensor("mu", mu, min_dim=2)
    check_tensor("logvar", logvar, min_dim=2)
    check_same_shape("mu", mu, "logvar", logvar)
    return 0.5 * (mu * mu + _expm1_minus_x(logvar))


def _expm1_minus_x(v: torch.Tensor) -> torch.Tensor:
    """``exp(v) - 1 - v`` without cancellation near ``v = 0``.

    Below float64 (the usual float32 training case) it is computed in float64 and rounded
    back once: four elementwise ops forward and backward, exact to float32 rounding for any
    ``v``, and far cheaper per training step than the series. In float64 itself, and on
    devices without float64 (MPS), a Taylor series takes over near 0.
    """
    if v.dtype != torch.float64 and v.device.type != "mps":
        wide = v.double()
        return (torch.expm1(wide) - wide).to(v.dtype)
    return _expm1_minus_x_series(v)


def _expm1_minus_x_series(v: torch.Tensor) -> torch.Tensor:
    """:func:`_expm1_minus_x` in ``v``'s own dtype: a Taylor series where ``|v|`` is small."""
    threshold = 1e-2 if v.dtype == torch.float64 else 1e-1
    series = 0.5 * v * v * (1 + v * (1 / 3 + v * (1 / 12 + v * (1 / 60 + v * (1 / 360 + v / 2520)))))
    return torch.where(v.abs() < threshold, series, torch.expm1(v) - v)


def free_bits(kl_per_dim: torch.Tensor, *, threshold: float, per_dimension: bool = True) -> torch.Tensor:
    """The free-bits KL penalty of Kingma et al. (2016), in nats per example.

    The KL is first averaged over the minibatch, as in the paper, then clamped from below:

    * ``per_dimension=True``: ``sum_j max(threshold, mean_n KL_nj)``, one allowance of
      ``threshold`` nats for each latent dimension;
    * ``per_dimension=False``: ``max(threshold, mean_n sum_j KL_nj)``, one allowance for
      the whole vector.

    Gradients: where the (averaged) KL is below the threshold the penalty is the
    constant ``threshold``, so it sends **zero gradient** to that dimension (or, for
    the whole-vector variant, to every dimension); the encoder is free to use those
    nats. Above the threshold the gradient equals that of the plain KL.

    Args:
        kl_per_dim: ``(batch, latent)`` from :func:`gaussian_kl`.
        threshold: nats, >= 0 (per dimension, or in total).
        per_dimension: which of the two variants.

    Returns:
        0-dim tensor, nats per example.
    """
    check_tensor("kl_per_dim", kl_per_dim, min_dim=2)
    threshold = check_positive("threshold", threshold, allow_zero=True)
    batch_mean = kl_per_dim.mean(dim=0)
    if per_dimension:
        return torch.clamp(batch_mean, min=threshold).sum()
    return torch.clamp(batch_mean.sum(), min=threshold)
