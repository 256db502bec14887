"""Which latent dimensions carry information: KL per dimension, active units (Burda et al. 2016)
and the mutual information ``I(x; z)`` under the aggregate posterior."""
from __future__ import annotations

import math

import torch

from .._checks import check_positive, check_tensor
from ..batching import batch_slices, generator
from ..divergences import gaussian_kl
from .posterior import checked_inputs, encode_all

__all__ = ["active_units", "kl_per_dim", "mutual_information", "principal_variances"]

_LOG_2PI = math.log(2 * math.pi)


def kl_per_dim(model, data, *, batch_size: int = 1000) -> torch.Tensor:
    """``KL(q(z_j | x) || p(z_j))`` averaged over ``data``, for each latent dimension ``j``.

    Args:
        data: images, or sentences (:class:`vaelab.data.Sentences`) for a sentence VAE.

    Returns:
        ``(latent,)`` float64 CPU tensor, nats per example; it sums to the KL term of the ELBO.
    """
    mu, logvar = encode_all(model, checked_inputs(model, data), batch_size)
    return gaussian_kl(mu.double(), logvar.double()).mean(0).cpu()


def active_units(model, data, *, threshold: float = 0.01, batch_size: int = 1000) -> dict:
    """Active latent units (Burda et al. 2016, Sec. 5.2): ``A_j = Cov_x(E_q[z_j | x]) > threshold``.

    The variance over ``data`` of each posterior mean (population variance, divisor N). A
    unit whose mean does not move with ``x`` carries no information about it, whatever its
    posterior variance.

    Args:
        data: images, or sentences for a sentence VAE.
        threshold: 0.01 in Burda et al.

    Returns:
        ``{"count": int, "variance": (latent,) float64 CPU tensor}``.
    """
    threshold = check_positive("threshold", threshold, allow_zero=True)
    mu, _ = encode_all(model, checked_inputs(model, data), batch_size)
    variance = mu.double().var(0, correction=0).cpu()
    return {"count": int((variance > threshold).sum()), "variance": variance}


def _log_normal_matrix(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(z_a; mu_b, diag exp(logvar_b))`` for every pair: ``(len(z), len(mu))``, float64.

    Expanded as ``z^2 . p - 2 z . (mu p) + mu^2 . p`` with ``p = exp(-logvar)``, so it is two
    matrix products and never an ``(a, b, latent)`` tensor.
    """
    precision = torch.exp(-logvar)
    quadratic = z.square() @ precision.T - 2 * z @ (mu * precision).T + (mu.square() * precision).sum(1)
    return -0.5 * (quadratic + logvar.sum(1) + z.shape[1] * _LOG_2PI)


def mutual_information(model, data, *, batch_size: int = 1000, seed: int = 0) -> float:
    """``I(x; z)`` under the aggregate posterior ``q(z) = (1/N) sum_n q(z | x_n)`` of ``data``.

    ``I = E_n E_{z ~ q(z|x_n)} [log q(z | x_n) - log q(z)]`` (Hoffman & Johnson 2016), with
    one ``z`` per example and ``q(z)`` the exact mixture over all ``N`` examples (no
    minibatch approximation): ``O(N^2 * latent)`` work, in ``batch_size x batch_size``
    blocks, float64. Since ``q(z) >= q(z | x_n) / N``, the estimate is at most ``log N``;
    it is clipped below at 0 (a negative value is sampling noise around 0). It reaches
    ``log N`` when the posteriors do not overlap: ``N`` examples cannot give more
    information than their own index. So compare it with ``log N`` (9.2 nats for 10,000
    examples): a value near that cap measures the sample size, not the code.

    Args:
        data: images, or sentences (:class:`vaelab.data.Sentences`) for a sentence VAE.

    Returns:
        Nats.
    """
    mu, logvar = (t.double() for t in encode_all(model, checked_inputs(model, data), batch_size))
    n, latent = mu.shape
    eps = torch.randn(n, latent, generator=generator(seed, "mutual_information"), dtype=torch.float64).to(mu.device)
    z = mu + torch.exp(0.5 * logvar) * eps
    log_q_own = -0.5 * (eps.square() + logvar + _LOG_2PI).sum(1)
    log_q_mixture = torch.empty(n, dtype=torch.float64, device=mu.device)
    for rows in batch_slices(n, batch_size):
        total = torch.full((z[rows].shape[0],), -math.inf, dtype=torch.float64, device=mu.device)
        for cols in batch_slices(n, batch_size):
            total = torch.logaddexp(total, torch.logsumexp(_log_normal_matrix(z[rows], mu[cols], logvar[cols]), dim=1))
        log_q_mixture[rows] = total - math.log(n)
    return min(max(float((log_q_own - log_q_mixture).mean()), 0.0), math.log(n))


@torch.no_grad()
def principal_variances(images: torch.Tensor) -> torch.Tensor:
    """The variances of the data along its principal directions, largest first.

    The eigenvalues of the covariance matrix of the flattened images (computed in
    float64). For a VAE with a linear decoder and a Gaussian likelihood of fixed variance
    ``sigma^2``, a latent direction survives only where the data vary by more than
    ``sigma^2`` along it; the others collapse to the prior (Lucas et al. 2019). So
    ``(principal_variances(x) > sigma**2).sum()`` counts the directions a fixed sigma leaves
    room for.

    Args:
        images: ``(N, *shape)``, floating point, in data units (e.g. pixels in [0, 1]).

    Returns:
        ``(D,)`` float64, squared data units, on the CPU.
    """
    check_tensor("images", images, min_dim=2)
    flat = images.reshape(images.shape[0], -1).cpu().double()
    if flat.shape[0] < 2:
        raise ValueError(f"images must hold at least 2 examples to have a covariance; got {flat.shape[0]}")
    centred = flat - flat.mean(dim=0)
    covariance = centred.T @ centred / (flat.shape[0] - 1)
    return torch.linalg.eigvalsh(covariance).flip(0).clamp(min=0.0)
