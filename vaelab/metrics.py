"""Held-out measurements of trained VAEs, in nats per example unless noted.

* :func:`elbo`: the single-sample held-out ELBO and its two terms.
* :func:`iw_log_likelihood`: the importance-weighted estimate of ``log p(x)``
  (Burda et al. 2016), the number to compare across models and papers.
* :func:`kl_per_dim`, :func:`active_units`: which latent dimensions carry information.
* :func:`mutual_information`: ``I(x; z)`` under the aggregate posterior.
* :func:`mig`, :func:`mig_from_codes`: the mutual information gap (Chen et al. 2018).

All of them work on whole tensors on the model's device, a batch of examples at a time.
"""
from __future__ import annotations

import contextlib
import math

import torch

from ._checks import check_positive, check_positive_int, check_tensor, no_validation
from .batching import as_tensors, batch_slices, generator
from .divergences import gaussian_kl

__all__ = [
    "elbo",
    "iw_log_likelihood",
    "kl_per_dim",
    "active_units",
    "mutual_information",
    "mig",
    "mig_from_codes",
]

_LOG_2PI = math.log(2 * math.pi)
# Importance samples are drawn in blocks of this many, each from its own seeded generator,
# so the samples do not depend on k_chunk (how many are scored at once).
_NOISE_BLOCK = 64


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def _evaluating(model):
    """Eval mode inside the block, the previous mode after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _images(model, data) -> torch.Tensor:
    """``data`` as one checked image tensor ``(N, *model.data_shape)`` (on any device)."""
    tensors = as_tensors(data)
    if len(tensors) != 1:
        raise ValueError(f"data must be one tensor of images (N, {', '.join(map(str, model.data_shape))}); got {len(tensors)} tensors")
    model.check_input(tensors[0])
    return tensors[0]


@torch.no_grad()
def _posterior(model, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar)`` of ``q(z | x)`` for every example: each ``(N, latent)`` on the model's device."""
    device = _model_device(model)
    batch_size = check_positive_int("batch_size", batch_size)
    mus, logvars = [], []
    with _evaluating(model), no_validation():
        for index in batch_slices(x.shape[0], batch_size):
            mu, logvar = model.encode(x[index].to(device))
            mus.append(mu)
            logvars.append(logvar)
    return torch.cat(mus), torch.cat(logvars)


@torch.no_grad()
def elbo(model, data, *, batch_size: int = 1000, seed: int = 0) -> dict:
    """Single-sample held-out ELBO, with its two terms.

    One ``z`` per example, drawn from a generator seeded by ``seed`` and the batch index,
    so the estimate is reproducible. The model is put in eval mode and restored.

    Args:
        model: a :class:`vaelab.VAE` (or any model with the same ``forward``).
        data: held-out examples (a tensor, or a tuple/dataclass of tensors for text).
        batch_size: examples per forward pass (memory only; the result does not depend on it
            beyond the noise draw).
        seed: noise seed.

    Returns:
        ``{"elbo", "recon", "kl"}`` as floats: ``elbo = -(recon + kl)``, where ``recon`` is
        ``-E log p(x|z)`` and ``kl`` is ``KL(q(z|x) || p(z))``, each averaged over ``data``.
    """
    tensors = as_tensors(data)
    device = _model_device(model)
    n = tensors[0].shape[0]
    recon_total = torch.zeros((), dtype=torch.float64, device=device)
    kl_total = torch.zeros((), dtype=torch.float64, device=device)
    with _evaluating(model):
        for i, index in enumerate(batch_slices(n, batch_size)):
            batch = tuple(t[index].to(device) for t in tensors)
            gen = generator(seed, "elbo", i, device=device)
            eps = torch.randn(batch[0].shape[0], model.latent_dim, generator=gen, device=device)
            out = model(*batch, eps)
            recon_total += -out.log_px.double().sum()
            kl_total += out.kl_per_dim.double().sum()
    recon, kl = float(recon_total) / n, float(kl_total) / n
    return {"elbo": -(recon + kl), "recon": recon, "kl": kl}


class _ImportanceNoise:
    """Standard-normal noise for the importance samples of one batch of examples.

    Sample ``s`` comes from block ``s // _NOISE_BLOCK``, whose generator is seeded by
    ``(seed, batch, block)``: the samples do not depend on how many are scored at once.
    The last block is kept, so consecutive chunks smaller than a block draw it once.
    """

    def __init__(self, seed: int, batch: int, shape: tuple, device):
        self.seed, self.batch, self.shape, self.device = seed, batch, shape, device
        self.index, self.block = None, None

    def _block(self, index: int) -> torch.Tensor:
        if index != self.index:
            gen = generator(self.seed, "importance", self.batch, index, device=self.device)
            self.block = torch.randn(_NOISE_BLOCK, *self.shape, generator=gen, device=self.device)
            self.index = index
        return self.block

    def take(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``start .. stop - 1``: ``(stop - start, *shape)``."""
        parts = []
        while start < stop:
            index, offset = divmod(start, _NOISE_BLOCK)
            end = min(stop - index * _NOISE_BLOCK, _NOISE_BLOCK)
            parts.append(self._block(index)[offset:end])
            start = index * _NOISE_BLOCK + end
        return parts[0] if len(parts) == 1 else torch.cat(parts)


@torch.no_grad()
def iw_log_likelihood(
    model, data, *, k: int = 5000, batch_size: int = 100, k_chunk: int | None = None, seed: int = 0
) -> dict:
    """Importance-weighted estimate of ``log p(x)`` (Burda, Grosse & Salakhutdinov 2016, Eq. 8).

    ``log p(x) ~ log (1/k) sum_i w_i`` with ``w_i = p(x | z_i) p(z_i) / q(z_i | x)`` and
    ``z_i ~ q(z | x)``. For ``k = 1`` its expectation is the ELBO; it increases with ``k``
    and tends to ``log p(x)`` as ``k -> infinity``. ``log p(x | z)`` is the model's own
    decoder head, ``p(z) = N(0, I)`` and ``q(z | x)`` the encoder's diagonal Gaussian.

    The ``k`` samples are scored ``k_chunk`` at a time and combined with a running
    log-sum-exp in float64, so memory is about ``batch_size * k_chunk * D`` floats (D data
    dimensions) for any ``k``. The samples depend on ``seed``, ``batch_size`` and the example's
    position, not on ``k_chunk``. The default ``k_chunk`` is 25 on a CPU, where chunks that
    stay in cache are twice as fast as large ones (2-core CPU, 784-200-200-50 decoder), and
    500 on an accelerator, where large chunks fill the device.

    **Units and dequantisation.** The result is in nats per example. It is a log
    *probability* only for binary data under a Bernoulli decoder (e.g. dynamically or
    statically binarised MNIST, the setting of Burda et al.). For grey-level data in [0, 1]
    under a Gaussian, continuous-Bernoulli or Beta decoder it is a log *density* with no
    dequantisation: it depends on the pixel scale and can be positive, so it cannot be
    compared with a discrete likelihood, nor across data scalings. To compare with a
    model of the 256 discrete grey levels one would score uniformly dequantised data
    ``(x_int + u) / 256``, ``u ~ U(0, 1)``, and subtract ``D log 256`` nats; this function
    does not do that. (A Bernoulli decoder on grey levels is not normalised at all.)

    Args:
        model: an image :class:`vaelab.VAE`.
        data: ``(N, *data_shape)`` examples, on any device.
        k: importance samples per example, >= 1.
        batch_size: examples per pass.
        k_chunk: samples scored at once (memory and speed only); ``None`` picks by device.
        seed: noise seed.

    Returns:
        ``{"nll": float, "bits_per_dim": float, "log_likelihood": (N,) float64 CPU tensor, "k": int}``:
        ``nll`` is the mean ``-log p(x)`` in nats per example, ``bits_per_dim`` is
        ``nll / (D ln 2)``.
    """
    k = check_positive_int("k", k)
    batch_size = check_positive_int("batch_size", batch_size)
    x_all = _images(model, data)
    device = _model_device(model)
    k_chunk = check_positive_int("k_chunk", k_chunk if k_chunk is not None else 25 if device.type == "cpu" else 500)
    n, latent = x_all.shape[0], model.latent_dim
    result = torch.empty(n, dtype=torch.float64)
    with _evaluating(model), no_validation():
        for b, index in enumerate(batch_slices(n, batch_size)):
            x = x_all[index].to(device)
            mu, logvar = model.encode(x)
            std = torch.exp(0.5 * logvar)
            # log q(z|x) = -(1/2) sum_j (eps_j^2 + logvar_j + log 2 pi), with z = mu + std * eps
            log_q_offset = -0.5 * (logvar.double().sum(1) + latent * _LOG_2PI)
            total = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=device)
            noise = _ImportanceNoise(seed, b, tuple(mu.shape), device)
            for start in range(0, k, k_chunk):
                stop = min(start + k_chunk, k)
                eps = noise.take(start, stop)  # (s, batch, latent)
                z = mu + std * eps
                s = stop - start
                params = model.decode(z.reshape(s * x.shape[0], latent))
                x_repeated = x.expand(s, *x.shape).reshape(s * x.shape[0], *x.shape[1:])
                log_px = model.head.log_prob(x_repeated, params).double().reshape(s, x.shape[0])
                log_pz = -0.5 * (z.double().square().sum(2) + latent * _LOG_2PI)
                log_qz = log_q_offset - 0.5 * eps.double().square().sum(2)
                total = torch.logaddexp(total, torch.logsumexp(log_px + log_pz - log_qz, dim=0))
            result[index] = (total - math.log(k)).cpu()
    nll = -float(result.mean())
    return {"nll": nll, "bits_per_dim": nll / (model.data_dim * math.log(2)), "log_likelihood": result, "k": k}


def kl_per_dim(model, data, *, batch_size: int = 1000) -> torch.Tensor:
    """``KL(q(z_j | x) || p(z_j))`` averaged over ``data``, for each latent dimension ``j``.

    Returns:
        ``(latent,)`` float64 CPU tensor, nats per example; it sums to the KL term of the ELBO.
    """
    mu, logvar = _posterior(model, _images(model, data), batch_size)
    return gaussian_kl(mu.double(), logvar.double()).mean(0).cpu()


def active_units(model, data, *, threshold: float = 0.01, batch_size: int = 1000) -> dict:
    """Active latent units (Burda et al. 2016, Sec. 5.2): ``A_j = Cov_x(E_q[z_j | x]) > threshold``.

    The variance over ``data`` of each posterior mean (population variance, divisor N). A
    unit whose mean does not move with ``x`` carries no information about it, whatever its
    posterior variance.

    Args:
        threshold: 0.01 in Burda et al.

    Returns:
        ``{"count": int, "variance": (latent,) float64 CPU tensor}``.
    """
    threshold = check_positive("threshold", threshold, allow_zero=True)
    mu, _ = _posterior(model, _images(model, data), batch_size)
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
    information than their own index.

    Returns:
        Nats.
    """
    x = _images(model, data)
    mu, logvar = (t.double() for t in _posterior(model, x, batch_size))
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


def _discretise(codes: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal-width histogram bins between each column's min and max: ``(N, latent)`` int64 in ``0 .. n_bins - 1``."""
    low, high = codes.min(0).values, codes.max(0).values
    width = torch.where(high > low, (high - low) / n_bins, torch.ones_like(high))
    return ((codes - low) / width).floor().long().clamp_(0, n_bins - 1)


def _factor_labels(factors, n: int) -> torch.Tensor:
    """``factors`` as an ``(n, K)`` integer tensor, or a ValueError naming it."""
    factors = torch.as_tensor(factors)
    if factors.is_floating_point() or factors.is_complex() or factors.dtype == torch.bool:
        raise ValueError(f"factors must hold integer factor labels; got dtype {factors.dtype}")
    if factors.dim() == 1:
        factors = factors[:, None]
    if factors.dim() != 2 or factors.shape[0] != n:
        raise ValueError(
            f"factors must have shape (N, K) with one row of labels per example, N = {n}; got shape {tuple(factors.shape)}"
        )
    return factors


def mig_from_codes(codes: torch.Tensor, factors: torch.Tensor, *, n_bins: int = 20) -> dict:
    """Mutual information gap (Chen et al. 2018, Eq. 6) of given latent codes.

    Each code dimension is discretised into ``n_bins`` equal-width bins (as in
    disentanglement_lib); for each factor ``k``, ``MIG_k = (I(z_a; v_k) - I(z_b; v_k)) / H(v_k)``
    with ``a``, ``b`` the dimensions of largest and second-largest mutual information, all
    from empirical frequencies. 1 means one dimension captures the factor and no other
    does; 0 means no dimension is singled out.

    Args:
        codes: ``(N, latent)`` real codes, e.g. posterior means.
        factors: ``(N, K)`` integer factor labels (any integer values).
        n_bins: bins per code dimension.

    Returns:
        ``{"mig": float (mean over factors), "per_factor": (K,) float64 CPU tensor}``.
    """
    check_tensor("codes", codes, min_dim=2)
    n_bins = check_positive_int("n_bins", n_bins)
    factors = _factor_labels(factors, codes.shape[0])
    n, latent = codes.shape
    bins = _discretise(codes.double(), n_bins)
    factors = factors.to(codes.device)
    per_factor = torch.empty(factors.shape[1], dtype=torch.float64)
    for f in range(factors.shape[1]):
        _, labels = torch.unique(factors[:, f], return_inverse=True)
        n_values = int(labels.max()) + 1
        joint = torch.bincount(
            (bins * n_values + labels[:, None] + torch.arange(latent, device=codes.device) * (n_bins * n_values)).flatten(),
            minlength=latent * n_bins * n_values,
        ).reshape(latent, n_bins, n_values).double() / n
        p_code, p_factor = joint.sum(2, keepdim=True), joint[0].sum(0)
        entropy = -float((p_factor * torch.log(p_factor)).sum())
        if entropy == 0.0:
            raise ValueError(f"factors column {f} takes a single value: its entropy is 0, so MIG is undefined for it")
        ratio = torch.where(joint > 0, joint / (p_code * p_factor), torch.ones_like(joint))
        information = (joint * torch.log(ratio)).sum((1, 2))  # (latent,), nats
        top = torch.topk(information, min(2, latent)).values
        gap = top[0] - (top[1] if latent > 1 else 0.0)
        per_factor[f] = float(gap) / entropy
    return {"mig": float(per_factor.mean()), "per_factor": per_factor}


def mig(model, data, factors, *, n_bins: int = 20, batch_size: int = 1000) -> dict:
    """Mutual information gap (Chen et al. 2018) of a model's posterior means on data with known factors.

    Args:
        model: an image :class:`vaelab.VAE`.
        data: ``(N, *data_shape)``.
        factors: ``(N, K)`` integer ground-truth factors of ``data`` (e.g. from :func:`vaelab.data.dsprites`).
        n_bins: histogram bins per latent dimension.

    Returns:
        As :func:`mig_from_codes`.
    """
    x = _images(model, data)
    factors = _factor_labels(factors, x.shape[0])  # before the encoder runs: a wrong length fails fast
    mu, _ = _posterior(model, x, batch_size)
    return mig_from_codes(mu, factors, n_bins=n_bins)
