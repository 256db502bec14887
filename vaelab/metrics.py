"""Held-out measurements of trained VAEs, in nats per example unless noted."""
from __future__ import annotations

import torch

from .batching import as_tensors, batch_slices, generator

__all__ = ["elbo"]


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


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
    was_training = model.training
    model.eval()
    n = tensors[0].shape[0]
    recon_total = torch.zeros((), dtype=torch.float64, device=device)
    kl_total = torch.zeros((), dtype=torch.float64, device=device)
    try:
        for i, index in enumerate(batch_slices(n, batch_size)):
            batch = tuple(t[index].to(device) for t in tensors)
            gen = generator(seed, "elbo", i, device=device)
            eps = torch.randn(batch[0].shape[0], model.latent_dim, generator=gen, device=device)
            out = model(*batch, eps)
            recon_total += -out.log_px.double().sum()
            kl_total += out.kl_per_dim.double().sum()
    finally:
        model.train(was_training)
    recon, kl = float(recon_total) / n, float(kl_total) / n
    return {"elbo": -(recon + kl), "recon": recon, "kl": kl}
