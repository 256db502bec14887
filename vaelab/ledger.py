"""The loss-scale ledger: any ``sum``/``mean`` way of writing a VAE loss, read as one KL weight.

Practitioners write VAE losses as ``a * R + w * K``: a reconstruction loss ``R`` reduced
by ``sum`` or ``mean`` over pixels and then over the batch, and a KL ``K`` reduced by
``sum`` or ``mean`` over latent dimensions and then over the batch. Every such choice is,
up to a positive overall scale, ``sum_i r_i + beta_eff * sum_j KL_j`` per example
(averaged over the batch) with a *different KL weight* ``beta_eff``. When the per-pixel
loss ``r_i`` is a negative log-likelihood (BCE on binary pixels) that is the negative ELBO
with its KL term weighted by ``beta_eff``; for a squared error it is the negative ELBO of a
Gaussian decoder with ``sigma^2 = beta_eff / 2`` (:func:`implied_sigma2`). :func:`reduce_loss` computes such a
loss; :func:`effective_beta` reads off the KL weight it implies (chapter 1), and
:func:`implied_sigma2` the Gaussian variance that a squared-error loss implies (chapter 2).
"""
from __future__ import annotations

import inspect
import math

import torch

from ._checks import check_choice, check_positive, check_positive_int, check_tensor

__all__ = ["REDUCTIONS", "beta_from_norm", "beta_norm", "effective_beta", "implied_sigma2", "reduce_loss"]

#: The two reductions every convention is built from.
REDUCTIONS = ("sum", "mean")


def _reduce_over(term: torch.Tensor, *, dims: str, batch: str, dims_name: str, batch_name: str) -> torch.Tensor:
    check_choice(dims_name, dims, REDUCTIONS)
    check_choice(batch_name, batch, REDUCTIONS)
    per_example = term.flatten(1).sum(1) if dims == "sum" else term.flatten(1).mean(1)
    return per_example.sum() if batch == "sum" else per_example.mean()


def reduce_loss(
    recon_per_dim: torch.Tensor,
    kl_per_dim: torch.Tensor,
    *,
    recon_weight: float = 1.0,
    kl_weight: float = 1.0,
    recon_dims: str = "sum",
    recon_batch: str = "mean",
    kl_dims: str = "sum",
    kl_batch: str = "mean",
) -> torch.Tensor:
    """``recon_weight * R + kl_weight * K`` for any sum/mean convention.

    The defaults give the negative per-example ELBO averaged over the batch, the
    reference every other convention is measured against (:func:`effective_beta`).

    Args:
        recon_per_dim: ``(batch, *data_shape)`` per-pixel reconstruction loss, e.g. the
            negative log-likelihood ``-log p(x_d | z)`` in nats, or a squared error.
        kl_per_dim: ``(batch, latent)`` from :func:`vaelab.gaussian_kl`, nats.
        recon_weight, kl_weight: the weights ``a`` and ``w`` of the two terms.
        recon_dims, recon_batch: ``"sum"`` or ``"mean"`` over pixels, then over the batch.
        kl_dims, kl_batch: ``"sum"`` or ``"mean"`` over latent dimensions, then the batch.

    Returns:
        0-dim tensor.
    """
    check_tensor("recon_per_dim", recon_per_dim, min_dim=2)
    check_tensor("kl_per_dim", kl_per_dim, min_dim=2)
    if recon_per_dim.shape[0] != kl_per_dim.shape[0]:
        raise ValueError(
            f"recon_per_dim has batch size {recon_per_dim.shape[0]} but kl_per_dim has {kl_per_dim.shape[0]}"
        )
    recon = _reduce_over(recon_per_dim, dims=recon_dims, batch=recon_batch, dims_name="recon_dims", batch_name="recon_batch")
    kl = _reduce_over(kl_per_dim, dims=kl_dims, batch=kl_batch, dims_name="kl_dims", batch_name="kl_batch")
    return recon_weight * recon + kl_weight * kl


def _scale(dims: str, batch: str, n_dims: int, batch_size: int | None, names: tuple[str, str]) -> float:
    """The factor a reduction multiplies the (sum over dims, sum over batch) total by."""
    check_choice(names[0], dims, REDUCTIONS)
    check_choice(names[1], batch, REDUCTIONS)
    factor = 1.0 / n_dims if dims == "mean" else 1.0
    if batch == "mean":
        factor /= batch_size
    return factor


def _data_dim(data_dim) -> int:
    """``N`` from an int, or from the shape of one example."""
    if isinstance(data_dim, (tuple, list, torch.Size)):
        if not data_dim or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in data_dim):
            raise ValueError(f"data_dim must be a positive int or the shape of one example; got {data_dim!r}")
        return math.prod(data_dim)
    try:
        return check_positive_int("data_dim", data_dim)
    except ValueError as error:
        raise ValueError(f"{error}. Pass the number of data dimensions per example, e.g. data_dim=784 for "
                         "28×28 images, or the shape of one example, data_dim=(1, 28, 28)") from None


def effective_beta(
    *,
    data_dim,
    latent_dim: int,
    batch_size: int | None = None,
    recon_weight: float = 1.0,
    kl_weight: float = 1.0,
    recon_dims: str = "sum",
    recon_batch: str = "mean",
    kl_dims: str = "sum",
    kl_batch: str = "mean",
) -> float:
    """The KL weight that a loss convention implies, relative to the per-pixel loss summed over pixels.

    A loss ``a * R + w * K`` (see :func:`reduce_loss`) equals, up to a positive overall
    factor that only rescales the learning rate, ``R_elbo + beta_eff * K_elbo`` with

    ``beta_eff = (w * s_K) / (a * s_R)``,

    where ``s_R`` is ``1/N`` for a mean over the ``N = data_dim`` pixels (else 1) times
    ``1/B`` for a mean over the batch, and likewise ``s_K`` with ``M = latent_dim``.
    Example: mean-over-pixels BCE plus a summed KL on MNIST gives ``beta_eff = 784``.

    ``F.mse_loss(x_hat, x)`` (PyTorch's default ``reduction="mean"``) is a mean over the
    pixels *and* the batch: ``recon_dims="mean", recon_batch="mean"``; with a KL summed
    over latents and averaged over the batch (``kl_batch="mean"``) it is
    ``recon_dims="mean"`` with the defaults otherwise. ``F.mse_loss(..., reduction="sum")``
    sums over pixels and batch: ``recon_batch="sum"``, to be paired with a KL summed over
    the batch too (``kl_batch="sum"``), or ``batch_size`` must be given.

    >>> round(effective_beta(data_dim=(1, 28, 28), latent_dim=20, recon_dims="mean"), 9)
    784.0

    Args:
        data_dim: ``N``, number of data dimensions per example (784 for MNIST), or the
            shape of one example, e.g. ``(1, 28, 28)``, whose product is used.
        latent_dim: ``M``, number of latent dimensions.
        batch_size: ``B``; only needed when the two batch reductions differ.

    Returns:
        ``beta_eff`` (dimensionless; 1 is the ELBO when the per-pixel loss is a negative
        log-likelihood).
    """
    data_dim = _data_dim(data_dim)
    latent_dim = check_positive_int("latent_dim", latent_dim)
    recon_weight = check_positive("recon_weight", recon_weight)
    kl_weight = check_positive("kl_weight", kl_weight, allow_zero=True)
    if recon_batch != kl_batch and batch_size is None:
        raise ValueError(
            f"batch_size is needed when recon_batch ({recon_batch!r}) and kl_batch ({kl_batch!r}) differ: "
            "the effective beta then depends on it; pass batch_size=B, the minibatch size"
        )
    # With equal batch reductions the batch factor cancels, so any batch_size will do.
    batch_size = 1 if batch_size is None else check_positive_int("batch_size", batch_size)
    s_recon = _scale(recon_dims, recon_batch, data_dim, batch_size, ("recon_dims", "recon_batch"))
    s_kl = _scale(kl_dims, kl_batch, latent_dim, batch_size, ("kl_dims", "kl_batch"))
    return (kl_weight * s_kl) / (recon_weight * s_recon)


def implied_sigma2(**convention) -> float:
    """The Gaussian decoder variance that a squared-error reconstruction loss implies.

    With ``R`` built from per-pixel squared errors ``(x - x_hat)^2``, the loss is the
    negative ELBO of a Gaussian decoder with fixed variance ``sigma^2`` (up to scale and
    a constant) when ``1 / (2 sigma^2) = 1 / beta_eff``, so ``sigma^2 = beta_eff / 2``.
    ``0.5 * SSE + KL`` implies ``sigma^2 = 1``; ``MSE(mean) + KL`` on MNIST implies
    ``sigma^2 = 392``, a decoder told its pixels are noise (chapter 2).

    The reference is ``SSE + KL`` (the sum of squared errors over pixels, plus the KL):
    a beta measured against a plain squared error is measured against that, and
    ``SSE + beta * KL`` implies ``sigma^2 = beta / 2``. So ``SSE + KL`` itself means
    ``sigma^2 = 1/2``, not 1.

    >>> implied_sigma2(data_dim=784, latent_dim=20, recon_weight=0.5)
    1.0
    >>> implied_sigma2(data_dim=784, latent_dim=20)
    0.5

    Args:
        **convention: ``data_dim``, ``latent_dim``, ``batch_size``, ``recon_weight``,
            ``kl_weight``, ``recon_dims``, ``recon_batch``, ``kl_dims``, ``kl_batch``:
            the convention, exactly as for :func:`effective_beta` (``help()`` shows them).

    Returns:
        ``sigma^2`` in squared data units.
    """
    return effective_beta(**convention) / 2.0


implied_sigma2.__signature__ = inspect.signature(effective_beta)  # help() shows the keywords


def beta_norm(beta: float, latent_dim: int, data_dim: int) -> float:
    """Normalised beta of Higgins et al. (2017): ``beta_norm = beta * M / N``.

    Args:
        beta: the KL weight against a summed reconstruction term.
        latent_dim: ``M``.
        data_dim: ``N``.
    """
    beta = check_positive("beta", beta, allow_zero=True)
    return beta * check_positive_int("latent_dim", latent_dim) / check_positive_int("data_dim", data_dim)


def beta_from_norm(beta_norm: float, latent_dim: int, data_dim: int) -> float:
    """Inverse of :func:`beta_norm`: ``beta = beta_norm * N / M``."""
    beta_norm = check_positive("beta_norm", beta_norm, allow_zero=True)
    return beta_norm * check_positive_int("data_dim", data_dim) / check_positive_int("latent_dim", latent_dim)
