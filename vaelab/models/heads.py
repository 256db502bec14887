"""Decoder heads: one per likelihood, each turning decoder outputs into ``p(x | z)`` and scoring data.

A head fixes the likelihood, so it fixes the scale of the reconstruction term: that is
the subject of the whole book. The scoring itself is done by :mod:`vaelab.likelihoods`.
"""
from __future__ import annotations


import math

import torch
from torch import nn
import torch.nn.functional as F

from .._checks import check_choice, check_positive, check_real
from ..likelihoods import (
    bernoulli_log_prob,
    beta_log_prob,
    cb_mean,
    continuous_bernoulli_log_prob,
    gaussian_log_prob,
    discretized_logistic_log_prob,
    discretized_logistic_mean,
    mean_image_fit,
    optimal_log_sigma,
)
from ..likelihoods import MIN_LOG_SIGMA

__all__ = [
    "BernoulliHead",
    "BetaHead",
    "ContinuousBernoulliHead",
    "DiscretizedLogisticHead",
    "DECODED_MIN_SIGMA",
    "GAUSSIAN_SIGMAS",
    "GaussianHead",
    "LIKELIHOODS",
    "make_head",
]

#: The decoder likelihoods, by name: the ``likelihood`` argument of :func:`make_head`,
#: :func:`vaelab.mlp_vae` and :func:`vaelab.conv_vae`.
LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian", "beta", "discretized_logistic")
#: The ways a Gaussian head sets its sigma: the ``sigma`` argument of :class:`GaussianHead`.
GAUSSIAN_SIGMAS = ("fixed", "shared", "per_pixel", "optimal", "decoded")
#: The floor on a ``"decoded"`` Gaussian sigma (data units, pixels in [0, 1]): a quarter of a
#: grey level's width 1/256. It lies below the sigma that dequantisation noise itself makes
#: best, ``(1/256) / sqrt(12)`` = 0.00113 (the standard deviation of a uniform bin), so it never
#: binds at the optimum on dequantised 8-bit data; it bounds the density at
#: ``1 / (sqrt(2 pi) 0.001)`` (about 400), where without it a pixel that is exactly constant (data
#: not dequantised) would let sigma go to 0 and the likelihood to infinity.
DECODED_MIN_SIGMA = 1e-3


class BernoulliHead(nn.Module):
    """Bernoulli decoder: one logit per pixel. ``mean = sigmoid(logits)``."""

    likelihood = "bernoulli"
    n_outputs = 1
    support = (0.0, 1.0)

    def params(self, out: torch.Tensor) -> dict:
        return {"logits": out}

    def log_prob(self, x: torch.Tensor, params: dict, *, per_dim: bool = False) -> torch.Tensor:
        return bernoulli_log_prob(x, params["logits"], per_dim=per_dim)

    def mean(self, params: dict) -> torch.Tensor:
        return torch.sigmoid(params["logits"])


class ContinuousBernoulliHead(BernoulliHead):
    """Continuous-Bernoulli decoder (Loaiza-Ganem & Cunningham 2019). Its mean is :func:`cb_mean`, not ``lambda``."""

    likelihood = "continuous_bernoulli"

    def log_prob(self, x, params, *, per_dim=False):
        return continuous_bernoulli_log_prob(x, params["logits"], per_dim=per_dim)

    def mean(self, params):
        return cb_mean(params["logits"])


class GaussianHead(nn.Module):
    """Gaussian decoder: a mean per pixel and a standard deviation that is

    * ``"fixed"``: ``exp(log_sigma)``, a constant (MSE with a chosen weight);
    * ``"shared"``: one learned scalar (sigma-VAE, Rybkin et al. 2021);
    * ``"per_pixel"``: one learned value per pixel;
    * ``"decoded"``: an output of the decoder, one sigma per pixel per image, like the
      discretised logistic's scale: the decoder has two output channels per image channel,
      the mean and ``sigma = min_sigma + softplus(out)``, floored at ``min_sigma``
      (:data:`DECODED_MIN_SIGMA` by default; why that floor is explained there);
    * ``"optimal"``: in training, the batch's maximum-likelihood value
      :func:`vaelab.optimal_log_sigma`, detached (Rybkin et al. 2021). In eval mode, a value
      fixed from the *training* data (:meth:`fix_optimal`, which :func:`vaelab.fit` and
      :func:`vaelab.sweep` call after every epoch), so that held-out data are scored with
      a sigma that was not re-fitted to them.

    ``log_sigma`` is the fixed value, or the start of a learned one. ``None`` means 0
    (sigma = 1) for ``"fixed"``, and for a learned sigma: start from the training data.
    :func:`vaelab.fit` and :func:`vaelab.sweep` then set it, before the first step, to the
    sigma of the best Gaussian that ignores the input (the RMS deviation of the training
    images from their mean image; per pixel, each pixel's standard deviation), which a
    VAE can only improve on. Starting from 0 instead, Adam moves ``log sigma`` by about
    the learning rate per step, so reaching sigma = 0.1 takes thousands of steps (chapter 2).
    A learned ``log sigma`` is clamped at :data:`vaelab.likelihoods.MIN_LOG_SIGMA`.
    """

    likelihood = "gaussian"
    n_outputs = 1
    support = None

    def __init__(self, data_shape: tuple, *, sigma: str = "fixed", log_sigma: float | None = None,
                 min_sigma: float = DECODED_MIN_SIGMA):
        super().__init__()
        self.sigma = check_choice("sigma", sigma, GAUSSIAN_SIGMAS)
        if sigma == "decoded":
            if log_sigma is not None:
                raise ValueError("sigma='decoded' takes no log_sigma: the decoder outputs sigma")
            #: Two outputs per image channel: the mean and the (pre-softplus) sigma.
            self.n_outputs = 2
            self.min_sigma = check_positive("min_sigma", min_sigma)
            self.init_from_data = False
            return
        #: True until fit or sweep has set a learned sigma from the training data.
        self.init_from_data = log_sigma is None and sigma in ("shared", "per_pixel")
        if log_sigma is not None:
            log_sigma = check_real("log_sigma", log_sigma)
        init = torch.full(data_shape if sigma == "per_pixel" else (), 0.0 if log_sigma is None else log_sigma)
        if sigma == "optimal":
            init = torch.tensor(float("nan"))  # not fixed from training data yet
        if sigma in ("shared", "per_pixel"):
            self.log_sigma = nn.Parameter(init)
        else:
            self.register_buffer("log_sigma", init)

    def params(self, out):
        """``{"mean"}``; for ``"decoded"`` also ``"log_sigma"``, ``log(min_sigma + softplus(.))``,
        each ``(batch, C, H, W)`` from the decoder's ``(batch, 2C, H, W)``."""
        if self.sigma == "decoded":
            mean, raw_sigma = out.chunk(2, dim=1)
            return {"mean": mean, "log_sigma": (self.min_sigma + F.softplus(raw_sigma)).log()}
        return {"mean": out}

    def current_log_sigma(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """The ``log sigma`` used to score ``x``: 0-dim, ``data_shape`` for per-pixel, or
        ``x.shape`` (from ``params``) for decoded."""
        if self.sigma == "decoded":
            return params["log_sigma"]
        if self.sigma == "optimal":
            if self.training or bool(torch.isnan(self.log_sigma)):
                return optimal_log_sigma(x, params["mean"])
            return self.log_sigma
        if self.sigma == "fixed":
            return self.log_sigma
        return self.log_sigma.clamp(min=MIN_LOG_SIGMA)

    @torch.no_grad()
    def fix_optimal(self, mse: float) -> None:
        """Fix the ``"optimal"`` sigma used in eval mode: ``sigma^2 = mse``, the mean squared
        residual per pixel on the training data (floored like :func:`vaelab.optimal_log_sigma`)."""
        self.log_sigma.fill_(max(0.5 * math.log(max(mse, 1e-300)), MIN_LOG_SIGMA))

    @torch.no_grad()
    def init_from(self, images: torch.Tensor) -> None:
        """Set a learned ``log sigma`` from training images ``(N, *data_shape)`` (see the class docstring)."""
        self.log_sigma.copy_(mean_image_fit(images, per_pixel=self.sigma == "per_pixel")[1])
        self.init_from_data = False

    def log_prob(self, x, params, *, per_dim=False):
        return gaussian_log_prob(x, params["mean"], self.current_log_sigma(x, params), per_dim=per_dim)

    def mean(self, params):
        return params["mean"]


class BetaHead(nn.Module):
    """Beta decoder: ``alpha, beta = softplus(out) + 1e-4`` per pixel.

    Pixels are squeezed into the open interval as ``x * (1 - 2 * squeeze) + squeeze``
    before scoring, since exact 0s and 1s have zero or infinite Beta density. The log of
    that map's slope, ``log(1 - 2 * squeeze)`` per pixel, is added, so that the head is a
    density of ``x`` itself: it integrates over [0, 1] to the Beta's mass inside
    ``[squeeze, 1 - squeeze]``, at most 1 (without the slope it could exceed 1).
    """

    likelihood = "beta"
    n_outputs = 2
    support = (0.0, 1.0)

    def __init__(self, *, squeeze: float = 1e-3):
        super().__init__()
        self.squeeze = squeeze

    def params(self, out):
        alpha, beta = out.chunk(2, dim=1)
        return {"alpha": F.softplus(alpha) + 1e-4, "beta": F.softplus(beta) + 1e-4}

    def log_prob(self, x, params, *, per_dim=False):
        slope = 1 - 2 * self.squeeze
        log_p = beta_log_prob(x * slope + self.squeeze, params["alpha"], params["beta"], per_dim=per_dim)
        return log_p + math.log(slope) * (1 if per_dim else x[0].numel())

    def mean(self, params):
        return params["alpha"] / (params["alpha"] + params["beta"])


class DiscretizedLogisticHead(nn.Module):
    """Discretised logistic decoder (Kingma et al. 2016; Salimans et al. 2017): a location
    and a log scale per pixel, and the probability of each of the 256 grey levels.

    It scores 8-bit images exactly as they are (no dequantisation); its log-likelihood is a
    log-probability, so bits per dimension are ``-log P / (D ln 2)``
    (:func:`vaelab.iw_log_likelihood` with ``levels=None``). Its :meth:`mean` is the
    expected grey level, what a reconstruction shows.
    """

    likelihood = "discretized_logistic"
    n_outputs = 2
    support = (0.0, 1.0)

    def params(self, out):
        mean, log_scale = out.chunk(2, dim=1)
        return {"mean": mean, "log_scale": log_scale}

    def log_prob(self, x, params, *, per_dim=False):
        return discretized_logistic_log_prob(x, params["mean"], params["log_scale"], per_dim=per_dim)

    def mean(self, params):
        return discretized_logistic_mean(params["mean"], params["log_scale"])


def make_head(likelihood: str, data_shape: tuple, *, sigma: str = "fixed", log_sigma: float | None = None) -> nn.Module:
    """The decoder head for a likelihood name (one of :data:`LIKELIHOODS`); ``sigma`` and
    ``log_sigma`` go to :class:`GaussianHead`."""
    check_choice("likelihood", likelihood, LIKELIHOODS)
    if likelihood == "gaussian":
        return GaussianHead(data_shape, sigma=sigma, log_sigma=log_sigma)
    if likelihood == "beta":
        return BetaHead()
    if likelihood == "discretized_logistic":
        return DiscretizedLogisticHead()
    return BernoulliHead() if likelihood == "bernoulli" else ContinuousBernoulliHead()
