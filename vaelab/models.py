"""Image VAEs: MLP and convolutional encoders/decoders with one decoder head per likelihood.

A :class:`VAE` is an encoder giving ``(mu, logvar)``, a decoder giving raw outputs, and a
*head* that turns those outputs into the parameters of ``p(x | z)`` and scores data with
the functions of :mod:`vaelab.likelihoods`. The head fixes the likelihood, so it fixes
the scale of the reconstruction term: that is the subject of the whole book.

The forward pass takes the reparameterisation noise ``eps`` as an argument instead of
drawing it, so the training loop owns every random number (bit-identical resumes,
and vectorised sweeps that reproduce separate runs).
"""
from __future__ import annotations

import contextlib
import math
from typing import NamedTuple, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from ._checks import check_choice, check_positive_int, check_tensor
from .divergences import gaussian_kl
from .likelihoods import (
    bernoulli_log_prob,
    beta_log_prob,
    cb_mean,
    continuous_bernoulli_log_prob,
    gaussian_log_prob,
    optimal_log_sigma,
)

__all__ = [
    "VAEOutput",
    "VAE",
    "mlp_vae",
    "conv_vae",
    "make_head",
    "LIKELIHOODS",
    "GAUSSIAN_SIGMAS",
]

LIKELIHOODS = ("bernoulli", "continuous_bernoulli", "gaussian", "beta")
GAUSSIAN_SIGMAS = ("fixed", "shared", "per_pixel", "optimal")


class VAEOutput(NamedTuple):
    """What one forward pass returns (all per example, nothing reduced over the batch).

    Attributes:
        log_px: ``(batch,)`` log-likelihood ``log p(x | z)`` in nats, one sample of ``z``.
        kl_per_dim: ``(batch, latent)`` KL to the prior per latent dimension, nats.
        mu, logvar: ``(batch, latent)`` posterior parameters.
        z: ``(batch, latent)`` the sample used.
        params: dict of decoder-distribution parameters, each ``(batch, *data_shape)``.
    """

    log_px: torch.Tensor
    kl_per_dim: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    params: dict


# ------------------------------------------------------------------------- heads


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
    * ``"optimal"``: the batch's maximum-likelihood value :func:`vaelab.optimal_log_sigma`.
    """

    likelihood = "gaussian"
    n_outputs = 1
    support = None

    def __init__(self, data_shape: tuple, *, sigma: str = "fixed", log_sigma: float = 0.0):
        super().__init__()
        self.sigma = check_choice("sigma", sigma, GAUSSIAN_SIGMAS)
        init = torch.full(data_shape if sigma == "per_pixel" else (), float(log_sigma))
        if sigma in ("shared", "per_pixel"):
            self.log_sigma = nn.Parameter(init)
        else:
            self.register_buffer("log_sigma", init)

    def params(self, out):
        return {"mean": out}

    def current_log_sigma(self, x: torch.Tensor, params: dict) -> torch.Tensor:
        """The ``log sigma`` used to score ``x``: 0-dim, or ``data_shape`` for per-pixel."""
        if self.sigma == "optimal":
            return optimal_log_sigma(x, params["mean"])
        return self.log_sigma

    def log_prob(self, x, params, *, per_dim=False):
        return gaussian_log_prob(x, params["mean"], self.current_log_sigma(x, params), per_dim=per_dim)

    def mean(self, params):
        return params["mean"]


class BetaHead(nn.Module):
    """Beta decoder: ``alpha, beta = softplus(out) + 1e-4`` per pixel.

    Pixels are squeezed into the open interval as ``x * (1 - 2 * squeeze) + squeeze``
    before scoring, since exact 0s and 1s have zero or infinite Beta density.
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
        x = x * (1 - 2 * self.squeeze) + self.squeeze
        return beta_log_prob(x, params["alpha"], params["beta"], per_dim=per_dim)

    def mean(self, params):
        return params["alpha"] / (params["alpha"] + params["beta"])


def make_head(likelihood: str, data_shape: tuple, *, sigma: str = "fixed", log_sigma: float = 0.0) -> nn.Module:
    """The decoder head for a likelihood name (one of :data:`LIKELIHOODS`)."""
    check_choice("likelihood", likelihood, LIKELIHOODS)
    if likelihood == "gaussian":
        return GaussianHead(data_shape, sigma=sigma, log_sigma=log_sigma)
    if likelihood == "beta":
        return BetaHead()
    return BernoulliHead() if likelihood == "bernoulli" else ContinuousBernoulliHead()


# --------------------------------------------------------------------------- VAE


class VAE(nn.Module):
    """An image VAE with a diagonal-Gaussian posterior and a standard-normal prior.

    Args:
        encoder: maps ``(batch, *data_shape)`` to ``(batch, 2 * latent_dim)``.
        decoder: maps ``(batch, latent_dim)`` to ``(batch, head.n_outputs * C, H, W)``.
        head: a decoder head from :func:`make_head`.
        data_shape: ``(C, H, W)`` of one example.
        latent_dim: ``M``.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, head: nn.Module, *, data_shape, latent_dim: int):
        super().__init__()
        self.encoder, self.decoder, self.head = encoder, decoder, head
        self.data_shape = tuple(data_shape)
        self.latent_dim = latent_dim

    @property
    def likelihood(self) -> str:
        return self.head.likelihood

    @property
    def data_dim(self) -> int:
        """``N``: the number of data dimensions per example."""
        return math.prod(self.data_shape)

    def check_input(self, x) -> None:
        """Raise a clear error if ``x`` is not a batch of this model's images."""
        check_tensor("x", x, min_dim=1, support=self.head.support)
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"x must have shape (batch, {', '.join(map(str, self.data_shape))}) for this model; "
                f"got {tuple(x.shape)}"
            )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``(batch, latent)``."""
        self.check_input(x)
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> dict:
        """Parameters of ``p(x | z)``, each ``(batch, *data_shape)``."""
        return self.head.params(self.decoder(z))

    def forward(self, x: torch.Tensor, eps: torch.Tensor, *, generator=None, score: bool = True) -> VAEOutput:
        """One reparameterised pass: ``z = mu + exp(logvar / 2) * eps``.

        Args:
            x: ``(batch, *data_shape)``.
            eps: ``(batch, latent)`` standard-normal noise (zeros give the posterior mean).
            generator: unused by image models (kept for a uniform interface).
            score: ``False`` skips ``log p(x | z)`` (``log_px`` is then ``None``), for a
                caller that scores many outputs in one call, as :func:`vaelab.sweep` does.
        """
        mu, logvar = self.encode(x)
        if eps.shape != mu.shape:
            raise ValueError(f"eps must have shape {tuple(mu.shape)}; got {tuple(eps.shape)}")
        z = mu + torch.exp(0.5 * logvar) * eps
        params = self.decode(z)
        log_px = self.head.log_prob(x, params) if score else None
        return VAEOutput(log_px, gaussian_kl(mu, logvar), mu, logvar, z, params)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's mean at the posterior mean ``z = mu``: ``(batch, *data_shape)``."""
        mu, _ = self.encode(x)
        return self.head.mean(self.decode(mu))

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means for ``n`` draws from the prior: ``(n, *data_shape)``."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator, device=device)
        return self.head.mean(self.decode(z))


def _activation(name: str) -> nn.Module:
    check_choice("activation", name, ("relu", "tanh", "elu"))
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}[name]()


def _mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(_activation(activation))
    return nn.Sequential(*layers)


@contextlib.contextmanager
def seeded(seed: int | None):
    """Build modules inside this block to initialise them from ``seed`` without touching the global RNG."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_common(data_shape, latent_dim, likelihood):
    data_shape = tuple(data_shape)
    if len(data_shape) != 3 or not all(isinstance(d, int) and d > 0 for d in data_shape):
        raise ValueError(f"data_shape must be (channels, height, width) of positive ints; got {data_shape}")
    check_positive_int("latent_dim", latent_dim)
    check_choice("likelihood", likelihood, LIKELIHOODS)
    return data_shape


def mlp_vae(
    *,
    data_shape=(1, 28, 28),
    hidden: Sequence[int] = (400,),
    latent_dim: int = 20,
    likelihood: str = "bernoulli",
    activation: str = "relu",
    sigma: str = "fixed",
    log_sigma: float = 0.0,
    seed: int | None = None,
) -> VAE:
    """A fully connected VAE: ``N - hidden... - 2M`` encoder, mirrored decoder.

    ``mlp_vae(hidden=(400,), latent_dim=20)`` is Kingma & Welling's MNIST model;
    ``mlp_vae(hidden=(200, 200), latent_dim=50, activation="tanh")`` is Burda et al.'s.

    Args:
        data_shape: ``(C, H, W)``.
        hidden: widths of the hidden layers (decoder mirrors them).
        latent_dim: ``M``.
        likelihood: one of :data:`LIKELIHOODS`.
        activation: ``"relu"``, ``"tanh"`` or ``"elu"``.
        sigma, log_sigma: Gaussian head options (see :class:`GaussianHead`).
        seed: initialise the weights from this seed (global RNG untouched).
    """
    data_shape = _check_common(data_shape, latent_dim, likelihood)
    hidden = [check_positive_int("hidden", h) for h in hidden]
    head = make_head(likelihood, data_shape, sigma=sigma, log_sigma=log_sigma)
    n = math.prod(data_shape)
    out_shape = (head.n_outputs * data_shape[0], *data_shape[1:])
    with seeded(seed):
        encoder = nn.Sequential(nn.Flatten(), _mlp([n, *hidden, 2 * latent_dim], activation))
        decoder = nn.Sequential(
            _mlp([latent_dim, *reversed(hidden), head.n_outputs * n], activation), nn.Unflatten(1, out_shape)
        )
    return VAE(encoder, decoder, head, data_shape=data_shape, latent_dim=latent_dim)


def conv_vae(
    *,
    data_shape=(1, 28, 28),
    channels: Sequence[int] = (32, 64),
    hidden: int = 256,
    latent_dim: int = 16,
    likelihood: str = "bernoulli",
    sigma: str = "fixed",
    log_sigma: float = 0.0,
    seed: int | None = None,
) -> VAE:
    """A convolutional VAE: stride-2 4x4 convolutions, then a dense layer; a mirrored decoder.

    Each convolution halves the image, so ``H`` and ``W`` must be divisible by
    ``2 ** len(channels)``: ``(32, 64)`` for 28x28 (-> 7x7), ``(32, 32, 64, 64)`` for 64x64
    (-> 4x4, the architecture of Burgess et al. 2018).

    Args:
        data_shape: ``(C, H, W)``.
        channels: channels of each convolution.
        hidden: width of the dense layer.
        latent_dim, likelihood, sigma, log_sigma, seed: as in :func:`mlp_vae`.
    """
    data_shape = _check_common(data_shape, latent_dim, likelihood)
    channels = [check_positive_int("channels", c) for c in channels]
    c_in, height, width = data_shape
    factor = 2 ** len(channels)
    if height % factor or width % factor:
        raise ValueError(
            f"data_shape {data_shape}: height and width must be divisible by 2 ** len(channels) = {factor}"
        )
    head = make_head(likelihood, data_shape, sigma=sigma, log_sigma=log_sigma)
    small = (channels[-1], height // factor, width // factor)
    with seeded(seed):
        encoder, decoder = _conv_stacks(c_in, channels, small, hidden, latent_dim, head.n_outputs)
    return VAE(encoder, decoder, head, data_shape=data_shape, latent_dim=latent_dim)


def _conv_stacks(c_in, channels, small, hidden, latent_dim, n_outputs):
    enc: list[nn.Module] = []
    for c_prev, c_next in zip([c_in, *channels[:-1]], channels):
        enc += [nn.Conv2d(c_prev, c_next, 4, stride=2, padding=1), nn.ReLU()]
    encoder = nn.Sequential(
        *enc, nn.Flatten(), nn.Linear(math.prod(small), hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim)
    )
    dec: list[nn.Module] = [
        nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, math.prod(small)), nn.ReLU(), nn.Unflatten(1, small)
    ]
    outs = [*reversed(channels[:-1]), n_outputs * c_in]
    for i, (c_prev, c_next) in enumerate(zip(reversed(channels), outs)):
        dec.append(nn.ConvTranspose2d(c_prev, c_next, 4, stride=2, padding=1))
        if i < len(outs) - 1:
            dec.append(nn.ReLU())
    return encoder, nn.Sequential(*dec)
