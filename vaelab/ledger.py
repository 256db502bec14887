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
import warnings
from dataclasses import dataclass

import torch

from ._checks import check_choice, check_positive, check_positive_int, check_tensor

__all__ = [
    "REDUCTIONS", "RECON_KINDS", "RECON_ALIASES", "LossReport", "beta_from_norm", "beta_norm", "check_loss", "effective_beta",
    "implied_sigma2", "reduce_loss",
]

#: The two reductions every convention is built from.
REDUCTIONS = ("sum", "mean")

#: What the per-pixel reconstruction loss is: a negative log-likelihood (a categorical
#: cross-entropy, ...), a binary cross-entropy (a likelihood on binary pixels only), a
#: Gaussian negative log-likelihood with the decoder's own sigma, or a squared error.
RECON_KINDS = ("nll", "bce", "gaussian_nll", "squared_error")
#: Other spellings :func:`check_loss` accepts.
RECON_ALIASES = {"mse": "squared_error"}


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


#: Chapter 1's sweep (binarised MNIST, a 784-400-20 MLP VAE, one seed): most of the 20
#: units switched off between these two values of beta_eff, and none was active at 32.
COLLAPSE_ONSET = (4.0, 8.0)
COLLAPSE_COMPLETE = 32.0
#: The standard deviation of MNIST's pixels in [0, 1] (torchvision's usual 0.3081).
MNIST_PIXEL_STD = 0.3081

_KIND_NAMES = {
    "nll": "negative log-likelihood",
    "bce": "binary cross-entropy",
    "gaussian_nll": "Gaussian negative log-likelihood (with the decoder's own σ)",
    "squared_error": "squared error",
}


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
        convention: the arguments of :func:`check_loss` that describe the loss
            (``recon`` as one of :data:`RECON_KINDS`, and the keywords of
            :func:`effective_beta`).
        binary: whether the data are binary (0/1), as given to :func:`check_loss`, or
            ``None`` if not said.
        data_std: the data's own standard deviation (data units), as given, or ``None``.
    """

    beta_eff: float
    beta_norm: float
    sigma2: float | None
    sigma: float | None
    convention: dict
    binary: bool | None = None
    data_std: float | None = None

    def _described(self) -> str:
        c = self.convention
        over = {"sum": "summed", "mean": "averaged"}

        def term(weight, name, dims, n, what, batch):
            return f"{_number(weight)} × {name} {over[dims]} over the {n} {what} and {over[batch]} over the batch"

        recon = term(c["recon_weight"], f"the per-dimension {_KIND_NAMES[c['recon']]}", c["recon_dims"],
                     f'{c["data_dim"]:,}', "data dimensions (N, pixels times channels)", c["recon_batch"])
        kl = term(c["kl_weight"], "the KL", c["kl_dims"], c["latent_dim"], "latents (M)", c["kl_batch"])
        return f"The loss is {recon}, plus {kl}."

    def _squared_error_verdict(self) -> list[str]:
        text = [
            f"A squared error is a Gaussian log-likelihood with a fixed variance: up to that factor and a "
            f"constant, this is the negative ELBO of a Gaussian decoder with σ² = β_eff / 2 = {self.sigma2:.4g} "
            f"(σ = {self.sigma:.3g} in data units). So the KL weight is set by that variance "
            "(β_eff = 2σ² against the summed squared error): the larger σ, the more of the image the "
            "decoder may treat as noise and the more the KL term wins (chapter 2). β_norm alone does not "
            "describe such a loss; σ does."
        ]
        if self.data_std is None:
            text.append(
                f"Compare σ with the spread of your data: pixels in [0, 1] have a standard deviation of at most "
                f"0.5 (MNIST's is about {MNIST_PIXEL_STD:.2f}), and a σ near or above the data's own spread "
                "tells the decoder that the images are mostly noise, so the code stays small and units switch "
                "off. Pass data_std= "
                "(e.g. x.std()) to have that comparison made."
            )
            return text
        ratio = self.sigma / self.data_std
        share = f"That σ is {ratio:.3g} times the data's own standard deviation ({self.data_std:.3g})"
        wider = (f"{share}: the decoder is told its noise is wider than the spread of the images themselves, "
                 "so the mean image, which ignores the input, already explains them within that noise. ")
        if ratio >= 4:
            text.append(wider + "Expect the KL term to win and the code to all but collapse: in chapter 2's "
                        "sweep on MNIST, σ = 1.57 (five times the data's spread) kept under 2 nats of KL and 4 "
                        "of its 16 latent units.")
        elif ratio >= 1:
            text.append(wider + "Expect a small code and blurred reconstructions: in chapter 2's sweep on "
                        "MNIST, a fixed σ of 0.5 to 1 kept well under half the KL of a σ fitted to the data, "
                        "and at σ = 1 latent units switched off.")
        elif ratio >= 0.25:
            text.append(f"{share}: a coarse noise level, which leaves the detail below it to the noise and "
                        "blurs the reconstructions.")
        else:
            text.append(f"{share}: a noise level well inside the spread of the data.")
        return text

    def _at_one(self, kind: str) -> str:
        if kind == "gaussian_nll" or (self.binary and kind in ("nll", "bce")):
            extra = "; on binary (0/1) data BCE is the Bernoulli negative log-likelihood" if self.binary else ""
            return f"This is the negative ELBO itself (β = 1), as a likelihood-based VAE needs{extra}."
        if self.binary is False:
            what = ("A BCE on data that are not binary" if kind == "bce" else
                    "On data that are not binary this is the negative ELBO only if the per-dimension loss is a "
                    "normalised density for them (a Gaussian with its own σ, a continuous Bernoulli, a Beta). "
                    "A BCE on such data")
            return (f"{what}, as in PyTorch's and Keras's MNIST examples on grey levels, has the ELBO's "
                    "weighting (β = 1) but is no negative ELBO: on grey levels BCE is not a normalised "
                    "likelihood (its integral over [0, 1] is below 1 and depends on the output), so its value "
                    "bounds no log-likelihood (chapter 3).")
        return ("This is the negative ELBO itself (β = 1) if the per-dimension loss is a normalised likelihood "
                "of the data, as BCE is on binary (0/1) pixels. On grey levels (MNIST as loaded) BCE is not one "
                "(chapter 3): pass binary=True or binary=False to say which.")

    def _likelihood_verdict(self, kind: str) -> list[str]:
        beta = self.beta_eff
        if math.isclose(beta, 1.0, rel_tol=1e-9):
            return [self._at_one(kind)]
        if beta > 1:
            text = [f"That is the negative ELBO with its KL term weighted {beta:.4g} times, more than the ELBO "
                    "does: a β-VAE, which trades reconstruction for a lower rate and fewer active latents "
                    "(chapter 1; chapter 5)."]
            low, high = COLLAPSE_ONSET
            if beta >= low:
                where = ("beyond the point where no unit stayed active" if beta >= COLLAPSE_COMPLETE else
                         "at or beyond that point" if beta >= high else "at the start of that range")
                text.append(
                    f"Expect posterior collapse: in chapter 1's sweep (binarised MNIST, a 784-400-20 MLP VAE, one "
                    f"seed) most units switched off between β_eff = {low:g} and {high:g}, and none stayed active "
                    f"at {COLLAPSE_COMPLETE:g}; this weight is {where}. Where collapse sets in depends on the "
                    "data, the decoder and the latent size."
                )
        else:
            text = [f"That is the negative ELBO with its KL term weighted {beta:.4g} times, less than the ELBO "
                    "does. Below 1 the objective is no bound on the likelihood at all: it lies below the "
                    "negative ELBO and may fall below −log p(x), so its value must not be reported as one; the "
                    "rate rises, as each nat of code need save less than a nat of reconstruction (chapter 1)."]
        if self.binary is False and kind in ("nll", "bce"):
            text.append("On data that are not binary a BCE is no normalised likelihood (chapter 3), so "
                        + ("this" if kind == "bce" else "with one this") + " is an ELBO in form only.")
        elif self.binary is None and kind in ("nll", "bce"):
            text.append("If the data are not binary and the per-dimension loss is a BCE, it is no normalised "
                        "likelihood (chapter 3) and this is an ELBO in form only.")
        return text

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
            text.extend(self._squared_error_verdict())
        else:
            text.extend(self._likelihood_verdict(c["recon"]))
        return " ".join(text)

    __str__ = __repr__


def check_loss(*, recon: str = "nll", binary: bool | None = None, data_std: float | None = None,
               **convention) -> LossReport:
    """Read a VAE loss as practitioners write it: its effective beta, beta_norm and implied sigma.

    The loss is ``recon_weight * R + kl_weight * K`` with ``R`` the per-pixel loss
    reduced over pixels and then the batch, and ``K`` the KL reduced over latents and then
    the batch (:func:`reduce_loss`). ``recon="squared_error"`` (or ``"mse"``) says the
    per-pixel loss is ``(x - x_hat)^2``; the report then gives the Gaussian decoder
    variance it implies. To describe a loss you have as code, :func:`vaelab.audit_loss`
    finds these arguments by calling it.

    ``F.mse_loss(x_hat, x)`` (a mean over pixels *and* batch) plus a KL summed over the 20
    latents and averaged over the batch, ``kl.sum(1).mean()``, on MNIST:

    >>> report = check_loss(data_dim=(1, 28, 28), latent_dim=20, recon="mse", recon_dims="mean")
    >>> round(report.beta_eff, 6), round(report.sigma, 2), round(report.beta_norm, 6)
    (784.0, 19.8, 20.0)

    PyTorch's ``examples/vae``: ``F.binary_cross_entropy(x_hat, x, reduction="sum")`` plus
    ``-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())``, both summed over the
    batch, on grey-level MNIST:

    >>> report = check_loss(data_dim=784, latent_dim=20, recon="bce", binary=False,
    ...                     recon_batch="sum", kl_batch="sum")
    >>> report.beta_eff, "no negative ELBO" in str(report)
    (1.0, True)

    Args:
        recon: what the per-dimension reconstruction loss is: ``"nll"`` (a negative
            log-likelihood), ``"bce"`` (a binary cross-entropy), ``"gaussian_nll"`` (a
            Gaussian one with the decoder's own σ) or ``"squared_error"`` (alias ``"mse"``).
        binary: whether the data are binary (0/1). BCE is a likelihood only on binary
            data; ``None`` (not said) makes the report say so conditionally.
        data_std: the data's own standard deviation in data units (``x.std()``); for a
            squared error the report compares σ with it.
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

    Warns:
        UserWarning: ``batch_size`` given where both terms reduce the batch alike (it
            cancels), or ``data_std`` given for a loss that is not a squared error.
    """
    recon = RECON_ALIASES.get(recon, recon)
    check_choice("recon", recon, RECON_KINDS + tuple(RECON_ALIASES))
    if binary is not None and not isinstance(binary, bool):
        raise ValueError(f"binary must be True, False or None (not said), got {binary!r}")
    beta = effective_beta(**convention)  # checks every argument
    convention = {**{name: p.default for name, p in _CONVENTION.items()}, **convention}
    if convention["batch_size"] is not None and convention["recon_batch"] == convention["kl_batch"]:
        warnings.warn(
            f"batch_size={convention['batch_size']} is not used: both terms are "
            f"{ {'sum': 'summed', 'mean': 'averaged'}[convention['kl_batch']] } over the batch, so the batch size "
            "cancels from beta_eff", UserWarning, stacklevel=2,
        )
    if data_std is not None:
        data_std = check_positive("data_std", data_std)
        if recon != "squared_error":
            warnings.warn(f"data_std is only used for a squared error, not for recon={recon!r}",
                          UserWarning, stacklevel=2)
    n = _data_dim(convention["data_dim"])
    convention.update(data_dim=n, recon=recon, recon_weight=float(convention["recon_weight"]),
                      kl_weight=float(convention["kl_weight"]))
    sigma2 = beta / 2.0 if recon == "squared_error" else None
    return LossReport(
        beta_eff=beta, beta_norm=beta_norm(beta, convention["latent_dim"], n), sigma2=sigma2,
        sigma=None if sigma2 is None else math.sqrt(sigma2), convention=convention, binary=binary,
        data_std=data_std,
    )


_CONVENTION = inspect.signature(effective_beta).parameters
check_loss.__signature__ = inspect.Signature(  # help() shows every keyword
    [inspect.Parameter("recon", inspect.Parameter.KEYWORD_ONLY, default="nll", annotation=str),
     inspect.Parameter("binary", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="bool | None"),
     inspect.Parameter("data_std", inspect.Parameter.KEYWORD_ONLY, default=None, annotation="float | None"),
     *_CONVENTION.values()],
    return_annotation=LossReport,
)
