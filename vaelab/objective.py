"""The training objective: what :func:`vaelab.fit` and :func:`vaelab.sweep` minimise.

:class:`Objective` is one value that says everything about the loss of a run: the KL
weight ``beta`` (a number or a schedule), the reductions over pixels and latents (the
conventions of the ledger, :mod:`vaelab.ledger`), and the alternative KL penalties, free
bits (Kingma et al. 2016) and a capacity target (Burgess et al. 2018). ``fit`` takes one;
``sweep`` takes one per configuration. The per-example terms become a scalar in one
place, :func:`training_loss`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Union

import numpy as np
import torch

from ._checks import check_choice, check_positive, check_tensor
from .control import PIController
from .divergences import free_bits as _free_bits
from .ledger import REDUCTIONS

__all__ = ["Objective", "kl_penalty", "training_loss"]

#: A weight or target per step: a number, or a schedule ``step -> value`` such as :func:`vaelab.linear`.
PerStep = Union[float, Callable]


def kl_penalty(
    kl_per_dim: torch.Tensor,
    *,
    kl_dims: str = "sum",
    free_bits: float | None = None,
    free_bits_per_dimension: bool = True,
    capacity: float | torch.Tensor | None = None,
    gamma: float = 1.0,
) -> torch.Tensor:
    """The KL term of a training objective, per example, averaged over the batch.

    Exactly one of three forms:

    * plain: ``mean_n sum_j KL_nj`` (or ``mean_j`` with ``kl_dims="mean"``);
    * free bits (Kingma et al. 2016): :func:`vaelab.free_bits` with threshold ``free_bits``;
    * capacity (Burgess et al. 2018): ``gamma * |mean_n sum_j KL_nj - C|`` with target ``C = capacity``.

    Args:
        kl_per_dim: ``(batch, latent)``, nats.

    Returns:
        0-dim tensor, nats per example (times ``gamma`` for capacity).
    """
    check_tensor("kl_per_dim", kl_per_dim, min_dim=2)
    if free_bits is not None and capacity is not None:
        raise ValueError("free_bits and capacity are alternative KL penalties; pass at most one of them")
    if free_bits is not None:
        if kl_dims != "sum":
            raise ValueError("free_bits is defined on the KL summed over latent dimensions; use kl_dims='sum'")
        return _free_bits(kl_per_dim, threshold=free_bits, per_dimension=free_bits_per_dimension)
    if capacity is not None:
        if kl_dims != "sum":
            raise ValueError("capacity is a target for the total KL; use kl_dims='sum'")
        gamma = check_positive("gamma", gamma)
        return gamma * (kl_per_dim.sum(dim=1).mean() - capacity).abs()
    check_choice("kl_dims", kl_dims, REDUCTIONS)
    per_example = kl_per_dim.sum(dim=1) if kl_dims == "sum" else kl_per_dim.mean(dim=1)
    return per_example.mean()


def training_loss(
    log_px: torch.Tensor,
    kl_per_dim: torch.Tensor,
    *,
    data_dim: int,
    weight: float | torch.Tensor = 1.0,
    recon_dims: str = "sum",
    kl_dims: str = "sum",
    free_bits: float | None = None,
    free_bits_per_dimension: bool = True,
    capacity: float | torch.Tensor | None = None,
    gamma: float = 1.0,
) -> torch.Tensor:
    """The loss :class:`Objective` computes for one step: ``R + weight * K``, averaged over the batch.

    ``R = -mean_n log p(x_n | z_n)``, divided by ``data_dim`` when ``recon_dims="mean"``
    (a mean over pixels is the per-example sum over ``N``); ``K`` is :func:`kl_penalty`.
    With all defaults this is the negative ELBO per example.

    Args:
        log_px: ``(batch,)`` nats, summed over the data dimensions.
        kl_per_dim: ``(batch, latent)`` nats.
        data_dim: ``N``.

    Returns:
        0-dim tensor.
    """
    check_choice("recon_dims", recon_dims, REDUCTIONS)
    recon = -log_px.mean()
    if recon_dims == "mean":
        recon = recon / data_dim
    kl = kl_penalty(
        kl_per_dim, kl_dims=kl_dims, free_bits=free_bits, free_bits_per_dimension=free_bits_per_dimension,
        capacity=capacity, gamma=gamma,
    )
    return recon + weight * kl


def per_step(value, total_steps: int, *, name: str) -> np.ndarray:
    """``value`` at steps ``0 .. total_steps - 1``: ``(total_steps,)`` float64, each finite and >= 0."""
    if callable(value):
        values = np.asarray(value(np.arange(total_steps)), dtype=np.float64)
    else:
        values = np.full(total_steps, float(value))
    if values.shape != (total_steps,) or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(
            f"{name} must give one finite value >= 0 per step; {value!r} does not (a schedule maps an array of "
            "steps to an array of the same length, e.g. vaelab.linear(10_000))"
        )
    return values


def _describe(value) -> str:
    """A readable, stable name of a number or schedule (a lambda has no stable repr)."""
    if callable(value) and getattr(value, "__name__", "") == "<lambda>":
        return "a lambda"
    return repr(value)


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a training run minimises at step ``t``: ``R + beta(t) * K``, averaged over the batch.

    ``R = -log p(x | z)`` per example (divided by the number of pixels ``N`` when
    ``recon_dims="mean"``); ``K`` is the KL summed over latents (averaged with
    ``kl_dims="mean"``), or its free-bits or capacity form (:func:`kl_penalty`). The
    defaults give the negative ELBO.

    >>> Objective()                                  # the ELBO
    Objective(beta=1.0, recon_dims='sum', kl_dims='sum', free_bits=None, free_bits_per_dimension=True, capacity=None, gamma=1.0)
    >>> Objective(beta=4.0).beta                     # a beta-VAE
    4.0

    Annealing passes a schedule: ``Objective(beta=vaelab.linear(10_000))``.

    Attributes:
        beta: the KL weight, a number >= 0, a schedule ``step -> weight``
            (:mod:`vaelab.schedules`, or any callable mapping a NumPy array of steps to
            weights), or a :class:`vaelab.PIController`, which sets each step's weight
            from the KL it observes (then :meth:`betas` has no values in advance).
        recon_dims, kl_dims: ``"sum"`` (the ELBO) or ``"mean"`` over pixels / latents,
            the conventions of the loss-scale ledger (chapter 1,
            :func:`vaelab.effective_beta`).
        free_bits: free-bits threshold in nats (Kingma et al. 2016), per latent dimension
            unless ``free_bits_per_dimension=False``.
        capacity: the KL target ``C`` in nats, a number or a schedule such as
            :func:`vaelab.capacity`; the penalty is ``gamma * |K - C|`` (Burgess et al. 2018).
        gamma: the weight of the capacity penalty.
    """

    beta: PerStep = 1.0
    recon_dims: str = "sum"
    kl_dims: str = "sum"
    free_bits: float | None = None
    free_bits_per_dimension: bool = True
    capacity: PerStep | None = None
    gamma: float = 1.0

    def __post_init__(self):
        if not callable(self.beta) and not isinstance(self.beta, PIController):
            object.__setattr__(self, "beta", check_positive("beta", self.beta, allow_zero=True))
        check_choice("recon_dims", self.recon_dims, REDUCTIONS)
        check_choice("kl_dims", self.kl_dims, REDUCTIONS)
        if self.free_bits is not None and self.capacity is not None:
            raise ValueError("free_bits and capacity are alternative KL penalties; give the Objective at most one of them")
        if self.free_bits is not None:
            object.__setattr__(self, "free_bits", check_positive("free_bits", self.free_bits, allow_zero=True))
        if self.capacity is not None and not callable(self.capacity):
            object.__setattr__(self, "capacity", check_positive("capacity", self.capacity, allow_zero=True))
        if (self.free_bits is not None or self.capacity is not None) and self.kl_dims != "sum":
            raise ValueError("free_bits and capacity are defined on the KL summed over latent dimensions; use kl_dims='sum'")
        if not isinstance(self.free_bits_per_dimension, bool):
            raise ValueError(f"free_bits_per_dimension must be True or False; got {self.free_bits_per_dimension!r}")
        object.__setattr__(self, "gamma", check_positive("gamma", self.gamma))

    @property
    def controller(self) -> PIController | None:
        """The feedback controller that sets the weight, or ``None`` for a number or schedule."""
        return self.beta if isinstance(self.beta, PIController) else None

    def betas(self, total_steps: int) -> np.ndarray:
        """The KL weight of steps ``0 .. total_steps - 1``: ``(total_steps,)`` float64.

        Under a controller the weights are not known in advance: NaN, filled in by training.
        """
        if self.controller is not None:
            return np.full(total_steps, np.nan)
        return per_step(self.beta, total_steps, name="beta")

    def capacities(self, total_steps: int) -> np.ndarray | None:
        """The capacity target of every step in nats, or ``None`` without one."""
        return None if self.capacity is None else per_step(self.capacity, total_steps, name="capacity")

    def loss(self, log_px: torch.Tensor, kl_per_dim: torch.Tensor, *, data_dim: int, beta, capacity=None) -> torch.Tensor:
        """The loss of one step (:func:`training_loss`), given that step's ``beta`` and ``capacity``."""
        return training_loss(
            log_px, kl_per_dim, data_dim=data_dim, weight=beta, recon_dims=self.recon_dims, kl_dims=self.kl_dims,
            free_bits=self.free_bits, free_bits_per_dimension=self.free_bits_per_dimension, capacity=capacity,
            gamma=self.gamma,
        )

    @property
    def form(self) -> tuple:
        """Everything but the per-step numbers: objectives of one form differ only in ``beta`` and ``capacity`` values."""
        return (self.recon_dims, self.kl_dims, self.free_bits, self.free_bits_per_dimension, self.capacity is None,
                self.gamma)

    def describe(self) -> dict:
        """Every field as a plain value (schedules by their repr), for checkpoints and messages."""
        return {f.name: _describe(getattr(self, f.name)) for f in dataclasses.fields(self)}
