"""Image VAEs: MLP and convolutional encoders/decoders with one decoder head per likelihood.

A :class:`VAE` is an encoder giving ``(mu, logvar)``, a decoder giving raw outputs, and a
*head* that turns those outputs into the parameters of ``p(x | z)`` and scores data with
the functions of :mod:`vaelab.likelihoods`. The head fixes the likelihood, so it fixes
the scale of the reconstruction term: that is the subject of the whole book.

The forward pass takes the reparameterisation noise ``eps`` as an argument, so the
training loop owns every random number (bit-identical resumes, and vectorised sweeps
that reproduce separate runs); called as ``model(x)``, it draws its own.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .._checks import check_choice, check_positive_int, check_tensor
from ..divergences import gaussian_kl
from .base import VAEOutput, seeded
from .heads import LIKELIHOODS, make_head

__all__ = ["VAE", "conv_vae", "mlp_vae"]


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

    #: The tensors one example consists of (``fit`` accepts ``(images, labels)`` and ignores the labels).
    inputs = ("x",)

    @property
    def likelihood(self) -> str:
        """The decoder's likelihood: one of ``"bernoulli"``, ``"continuous_bernoulli"``, ``"gaussian"``, ``"beta"``."""
        return self.head.likelihood

    @property
    def sigma(self) -> torch.Tensor | None:
        """The Gaussian decoder's standard deviation in data units (pixels in ``[0, 1]``), detached.

        A 0-dim tensor for a ``"fixed"``, learned ``"shared"`` or ``"optimal"`` sigma,
        ``data_shape`` for a learned ``"per_pixel"`` one; ``None`` for likelihoods without a
        scale parameter or with a ``"decoded"`` sigma (one per pixel per image, in the decoder's
        output). :func:`vaelab.fit` records
        it after every epoch in ``history.epochs["sigma"]``. For ``"optimal"``, the value fixed
        from the training data after the last epoch (used in eval mode), ``None`` before. For a
        learned sigma built with ``log_sigma=None``, ``None`` until :func:`vaelab.fit` (or
        :func:`vaelab.sweep`) has started it from the training data.
        """
        if self.likelihood != "gaussian" or self.head.sigma == "decoded" or bool(torch.isnan(self.head.log_sigma).any()):
            return None
        if getattr(self.head, "init_from_data", False):  # not set yet: its placeholder 0 is no sigma of these data
            return None
        return self.head.log_sigma.detach().exp()

    @property
    def data_dim(self) -> int:
        """``N``: the number of data dimensions per example."""
        return math.prod(self.data_shape)

    def check_input(self, x) -> None:
        """Raise a clear error if ``x`` is not a batch of this model's images."""
        check_tensor("x", x, min_dim=1, support=self.head.support)
        if tuple(x.shape[1:]) != self.data_shape:
            shape = ", ".join(map(str, self.data_shape))
            hint = ""
            if x.dim() >= 1 and x[0].numel() == self.data_dim:
                hint = f"; reshape it with x.reshape(-1, {shape})"
            elif x.dim() == len(self.data_shape) and tuple(x.shape) == self.data_shape:
                hint = "; for a single image add the batch axis with x.unsqueeze(0)"
            raise ValueError(f"x must have shape (batch, {shape}) for this model; got {tuple(x.shape)}{hint}")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``(batch, latent)``."""
        self.check_input(x)
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> dict:
        """Parameters of ``p(x | z)``, each ``(batch, *data_shape)``."""
        return self.head.params(self.decoder(z))

    def decoder_log_prob(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``log p(x | z)`` under the decoder head: ``(batch,)`` nats, summed over pixels."""
        return self.head.log_prob(x, self.decode(z))

    def forward(self, x: torch.Tensor, eps: torch.Tensor | None = None, *, generator=None,
                score: bool = True) -> VAEOutput:
        """One reparameterised pass: ``z = mu + exp(logvar / 2) * eps``.

        Args:
            x: ``(batch, *data_shape)``.
            eps: ``(batch, latent)`` standard-normal noise (zeros give the posterior mean);
                ``None`` draws it from ``generator`` (the global RNG when that is ``None``).
            generator: a ``torch.Generator`` on the model's device, for ``eps=None``.
            score: ``False`` skips ``log p(x | z)`` (``log_px`` is then ``None``), for a
                caller that scores many outputs in one call, as :func:`vaelab.sweep` does.
        """
        mu, logvar = self.encode(x)
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        if eps.shape != mu.shape:
            raise ValueError(
                f"eps must have shape {tuple(mu.shape)}, one standard-normal draw per example and latent "
                f"(torch.randn({mu.shape[0]}, {mu.shape[1]})); got {tuple(eps.shape)}"
            )
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
    log_sigma: float | None = None,
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
        sigma: how a Gaussian decoder gets its standard deviation: ``"fixed"``, ``"shared"``
            (one learned value), ``"per_pixel"`` (learned per pixel), ``"decoded"`` (an output
            of the decoder per pixel per image, floored at
            :data:`vaelab.models.DECODED_MIN_SIGMA`) or ``"optimal"`` (the batch's
            maximum-likelihood value); see :class:`vaelab.models.GaussianHead`.
        log_sigma: for ``"fixed"``, the log standard deviation (data units; ``None`` is 0);
            for ``"shared"`` and ``"per_pixel"``, the starting value of the learned one,
            where ``None`` (the default) lets :func:`vaelab.fit` start it from the training
            data. Read the current value as ``model.sigma``.
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
    log_sigma: float | None = None,
    seed: int | None = None,
) -> VAE:
    """A convolutional VAE: stride-2 4x4 convolutions, then a dense layer; a mirrored decoder.

    Each convolution halves the image, so ``H`` and ``W`` must be divisible by
    ``2 ** len(channels)``: ``(32, 64)`` for 28x28 (-> 7x7), ``(32, 32, 64, 64)`` for 64x64
    (-> 4x4, as in chapter 5; Burgess et al. 2018 use 32 channels throughout and two dense layers).

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
            f"data_shape {data_shape}: height and width must be divisible by 2 ** len(channels) = {factor} (each "
            "layer halves them); use fewer channels entries or pad the images"
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
