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
from dataclasses import dataclass

import torch

from ._checks import check_choice, check_positive, check_positive_int, check_tensor

__all__ = [
    "REDUCTIONS", "RECON_KINDS", "LossReport", "beta_from_norm", "beta_norm", "check_loss", "effective_beta",
    "implied_sigma2", "reduce_loss",
]

#: The two reductions every convention is built from.
REDUCTIONS = ("sum", "mean")

#: What the per-pixel reconstruction loss is: a negative log-likelihood (BCE on binary
#: pixels, a categorical cross-entropy, ...) or a squared error.
RECON_KINDS = ("nll", "squared_error")


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


def _number(value: float) -> str:
    """A weight or size as the report writes it: ``784``, ``0.5``, ``0.0255``."""
    return f"{value:.4g}" if value != int(value) or abs(value) >= 1e6 else f"{int(value)}"


@dataclass(frozen=True, repr=False)
class LossReport:
    """What a VAE loss, as written, weights the KL by: the result of :func:`check_loss`.

    Its ``repr`` is a paragraph that says it in words.

    Attributes:
        beta_eff: the KL weight relative to the per-pixel loss summed over pixels
            (:func:`effective_beta`); 1 is the ELBO for a negative log-likelihood.
        beta_norm: ``beta_eff * M / N`` (:func:`beta_norm`), the normalised weight of
            Higgins et al. (2017).
        sigma2: for a squared error, the variance of the Gaussian decoder the loss
            implies, ``beta_eff / 2`` in squared data units (:func:`implied_sigma2`);
            ``None`` for a negative log-likelihood.
        sigma: ``sqrt(sigma2)`` in data units, or ``None``.
        convention: the arguments of :func:`check_loss` that describe the loss.
    """

    beta_eff: float
    beta_norm: float
    sigma2: float | None
    sigma: float | None
    convention: dict

    def _described(self) -> str:
        c = self.convention
        kind = "squared error" if c["recon"] == "squared_error" else "negative log-likelihood"
        over = {"sum": "summed", "mean": "averaged"}

        def term(weight, name, dims, n, what, batch):
            return f"{_number(weight)} × {name} {over[dims]} over the {n} {what} and {over[batch]} over the batch"

        recon = term(c["recon_weight"], f"the per-dimension {kind}", c["recon_dims"], f'{c["data_dim"]:,}',
                     "data dimensions (N, pixels times channels)", c["recon_batch"])
        kl = term(c["kl_weight"], "the KL", c["kl_dims"], c["latent_dim"], "latents (M)", c["kl_batch"])
        return f"The loss is {recon}, plus {kl}."

    def __repr__(self) -> str:
        c, beta = self.convention, self.beta_eff
        text = [self._described()]
        text.append(
            f"Up to a positive overall factor, which only rescales the learning rate, it is the per-dimension loss "
            f"summed over the data dimensions plus β_eff · KL per example with β_eff = {beta:.4g} "
            f"(β_norm = β_eff · M / N = {self.beta_norm:.4g})."
        )
        if beta == 0:
            text.append("There is no KL term: this trains an autoencoder, not a VAE, and its codes need not "
                        "follow the prior.")
        elif c["recon"] == "squared_error":
            text.append(
                f"A squared error is a Gaussian log-likelihood with a fixed variance: up to that factor and a "
                f"constant, this is the negative ELBO of a Gaussian decoder with σ² = β_eff / 2 = {self.sigma2:.4g} "
                f"(σ = {self.sigma:.3g} in data units). So the KL weight is set by that variance "
                "(β_eff = 2σ² against the summed squared error): the larger σ, the more of the image the "
                "decoder may treat as noise and the more the KL term wins (chapter 2). β_norm alone does not "
                "describe such a loss; σ does."
            )
        elif math.isclose(beta, 1.0, rel_tol=1e-9):
            text.append("This is the negative ELBO itself (β = 1), as a likelihood-based VAE needs.")
        else:
            relation = "more" if beta > 1 else "less"
            text.append(
                f"That is the negative ELBO with its KL term weighted {beta:.4g} times, {relation} than the ELBO "
                "does: " + ("a β-VAE, which trades reconstruction for a lower rate and fewer active latents "
                            "(chapter 1; chapter 5)." if beta > 1 else
                            "the rate rises and the bound on the likelihood loosens (chapter 1).")
            )
        return " ".join(text)

    __str__ = __repr__


def check_loss(*, recon: str = "nll", **convention) -> LossReport:
    """Read a VAE loss as practitioners write it: its effective beta, beta_norm and implied sigma.

    The loss is ``recon_weight * R + kl_weight * K`` with ``R`` the per-pixel loss
    reduced over pixels and then the batch, and ``K`` the KL reduced over latents and then
    the batch (:func:`reduce_loss`). ``recon="squared_error"`` says the per-pixel loss is
    ``(x - x_hat)^2``; the report then gives the Gaussian decoder variance it implies.

    >>> report = check_loss(data_dim=784, latent_dim=20, recon="squared_error", recon_dims="mean")
    >>> round(report.sigma2, 9), round(report.beta_norm, 9)
    (392.0, 20.0)

    Args:
        recon: ``"nll"`` (a per-pixel negative log-likelihood, e.g. BCE) or
            ``"squared_error"``.
        **convention: ``data_dim``, ``latent_dim``, ``batch_size``, ``recon_weight``,
            ``kl_weight`` (the ``beta`` of the code), ``recon_dims``, ``recon_batch``,
            ``kl_dims``, ``kl_batch``: the convention, exactly as for
            :func:`effective_beta`.

    Returns:
        A :class:`LossReport`; print it for the explanation.

    Raises:
        ValueError: a negative or non-finite weight, a zero reconstruction weight, an
            unknown reduction or ``recon``, a size below 1, or differing batch reductions
            without ``batch_size``.
    """
    check_choice("recon", recon, RECON_KINDS)
    beta = effective_beta(**convention)  # checks every argument
    convention = {**{name: p.default for name, p in _CONVENTION.items()}, **convention}
    n = _data_dim(convention["data_dim"])
    convention.update(data_dim=n, recon=recon, recon_weight=float(convention["recon_weight"]),
                      kl_weight=float(convention["kl_weight"]))
    sigma2 = beta / 2.0 if recon == "squared_error" else None
    return LossReport(
        beta_eff=beta, beta_norm=beta_norm(beta, convention["latent_dim"], n), sigma2=sigma2,
        sigma=None if sigma2 is None else math.sqrt(sigma2), convention=convention,
    )


_CONVENTION = inspect.signature(effective_beta).parameters
check_loss.__signature__ = inspect.Signature(  # help() shows every keyword
    [inspect.Parameter("recon", inspect.Parameter.KEYWORD_ONLY, default="nll", annotation=str),
     *_CONVENTION.values()],
    return_annotation=LossReport,
)
