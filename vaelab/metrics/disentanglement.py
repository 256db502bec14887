"""Disentanglement: the mutual information gap (MIG, Chen et al. 2018) against known factors."""
from __future__ import annotations

import torch

from .._checks import check_positive_int, check_tensor
from .posterior import checked_images, encode_all

__all__ = ['factor_information', 'mig', 'mig_from_codes']

def _discretise(codes: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Equal-width histogram bins between each column's min and max: ``(N, latent)`` int64 in ``0 .. n_bins - 1``."""
    low, high = codes.min(0).values, codes.max(0).values
    width = torch.where(high > low, (high - low) / n_bins, torch.ones_like(high))
    return ((codes - low) / width).floor().long().clamp_(0, n_bins - 1)


def _factor_labels(factors, n: int) -> torch.Tensor:
    """``factors`` as an ``(n, K)`` integer tensor, or a ValueError naming it."""
    factors = torch.as_tensor(factors)
    if factors.is_floating_point() or factors.is_complex() or factors.dtype == torch.bool:
        raise ValueError(f"factors must hold integer factor labels; got dtype {factors.dtype} (convert with factors.long())")
    if factors.dim() == 1:
        factors = factors[:, None]
    if factors.dim() != 2 or factors.shape[0] != n:
        raise ValueError(
            f"factors must have shape (N, K) with one row of labels per example, N = {n}; got shape {tuple(factors.shape)}"
        )
    return factors


def factor_information(codes: torch.Tensor, factors: torch.Tensor, *, n_bins: int = 20) -> torch.Tensor:
    """The histogram estimate of ``I(z_j; v_k)`` for every code dimension and factor, in nats.

    Each code dimension is cut into ``n_bins`` equal-width bins between its own minimum and
    maximum (as in disentanglement_lib); the mutual information of the binned dimension
    and the factor is computed from their empirical joint frequencies (the plug-in
    estimate). This is what :func:`mig_from_codes` ranks.

    **The estimate is biased upwards.** Codes independent of the factor have
    ``I = 0``, but chance co-occurrences in a finite sample score as information: to
    first order ``(B - 1)(V - 1) / (2N)`` nats with ``B`` occupied bins, ``V`` factor
    values and ``N`` examples (Miller 1955; Paninski 2003), so about
    ``19 * 31 / (2 * 500) = 0.59`` nats for a 32-valued factor at 500 examples.

    Args:
        codes: ``(N, latent)`` real codes, e.g. posterior means.
        factors: ``(N, K)`` or ``(N,)`` integer factor labels (any integer values).
        n_bins: bins per code dimension.

    Returns:
        ``(latent, K)`` float64 CPU tensor, nats: row ``j``, column ``k`` is ``I(z_j; v_k)``.
        Divide column ``k`` by ``H(v_k)`` (:func:`mig_from_codes` does) for a fraction.
    """
    check_tensor("codes", codes, min_dim=2)
    n_bins = check_positive_int("n_bins", n_bins)
    factors = _factor_labels(factors, codes.shape[0])
    return _information(codes, factors, n_bins)[0]


def _information(codes: torch.Tensor, factors: torch.Tensor, n_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``I(z_j; v_k)`` as ``(latent, K)`` and ``H(v_k)`` as ``(K,)``, float64 CPU tensors, nats."""
    n, latent = codes.shape
    bins = _discretise(codes.double(), n_bins)
    factors = factors.to(codes.device)
    information = torch.empty(latent, factors.shape[1], dtype=torch.float64)
    entropy = torch.empty(factors.shape[1], dtype=torch.float64)
    for f in range(factors.shape[1]):
        _, labels = torch.unique(factors[:, f], return_inverse=True)
        n_values = int(labels.max()) + 1
        joint = torch.bincount(
            (bins * n_values + labels[:, None] + torch.arange(latent, device=codes.device) * (n_bins * n_values)).flatten(),
            minlength=latent * n_bins * n_values,
        ).reshape(latent, n_bins, n_values).double() / n
        p_code, p_factor = joint.sum(2, keepdim=True), joint[0].sum(0)
        entropy[f] = -float((p_factor * torch.log(p_factor)).sum())
        ratio = torch.where(joint > 0, joint / (p_code * p_factor), torch.ones_like(joint))
        information[:, f] = (joint * torch.log(ratio)).sum((1, 2)).cpu()
    return information, entropy


def mig_from_codes(codes: torch.Tensor, factors: torch.Tensor, *, n_bins: int = 20) -> dict:
    """Mutual information gap (Chen et al. 2018, Eq. 6) of given latent codes.

    Each code dimension is discretised into ``n_bins`` equal-width bins (as in
    disentanglement_lib); for each factor ``k``, ``MIG_k = (I(z_a; v_k) - I(z_b; v_k)) / H(v_k)``
    with ``a``, ``b`` the dimensions of largest and second-largest mutual information, all
    from empirical frequencies (:func:`factor_information`). 1 means one dimension captures
    the factor and no other does; 0 means no dimension is singled out. The upward bias of
    each information largely cancels in the gap; it does not cancel in the informations
    themselves.

    Args:
        codes: ``(N, latent)`` real codes, e.g. posterior means.
        factors: ``(N, K)`` integer factor labels (any integer values).
        n_bins: bins per code dimension.

    Returns:
        ``{"mig": float (mean over factors), "per_factor": (K,) float64 CPU tensor,
        "information": (latent, K), "entropy": (K,)}``: the informations ``I(z_j; v_k)``
        and the factors' empirical entropies ``H(v_k)``, float64 CPU tensors in nats.
    """
    check_tensor("codes", codes, min_dim=2)
    n_bins = check_positive_int("n_bins", n_bins)
    factors = _factor_labels(factors, codes.shape[0])
    latent = codes.shape[1]
    information, entropy = _information(codes, factors, n_bins)
    per_factor = torch.empty(factors.shape[1], dtype=torch.float64)
    for f in range(factors.shape[1]):
        if float(entropy[f]) == 0.0:
            raise ValueError(f"factors column {f} takes a single value: its entropy is 0, so MIG is undefined for it; leave that column out")
        top = torch.topk(information[:, f], min(2, latent)).values
        gap = top[0] - (top[1] if latent > 1 else 0.0)
        per_factor[f] = float(gap) / float(entropy[f])
    return {"mig": float(per_factor.mean()), "per_factor": per_factor, "information": information, "entropy": entropy}


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
    x = checked_images(model, data, function="mig")
    factors = _factor_labels(factors, x.shape[0])  # before the encoder runs: a wrong length fails fast
    mu, _ = encode_all(model, x, batch_size)
    return mig_from_codes(mu, factors, n_bins=n_bins)
