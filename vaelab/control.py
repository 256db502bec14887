"""A feedback controller on the KL weight: the weight follows the KL the model shows.

A schedule fixes the KL weight of every step in advance. A controller reads the KL of
each step and moves the weight so that the KL approaches a target value, in the spirit
of ControlVAE (Shao et al. 2020). With ``e = target - KL`` (nats, positive while the
KL is below its target) the weight of step ``t`` is

.. math::

    \\beta_t = \\mathrm{clip}\\Big(\\frac{k_p}{1 + e^{e_t}} + I_t + \\beta_{\\min},\\;
    \\beta_{\\min}, \\beta_{\\max}\\Big), \\qquad I_t = I_{t-1} - k_i\\, e_t,

a proportional term bounded in ``[0, k_p]`` and an integral term that accumulates the
error. While the KL is below its target the integral falls and the weight with it, so
the KL is cheaper and grows; above its target the weight rises. The integral is held
(not accumulated) on a step whose weight is clipped at a bound, so that it does not
wind up while the weight cannot move (anti-windup).

The KL the controller reads is a running average of the batch KL,
``KL_t = s KL_{t-1} + (1 - s) KL(batch_t)`` (the first batch's KL starts it), because
a batch's KL varies with what the batch holds; with length-bucketed sentences it
tracks the sentences' length.

Everything runs on the device as 0-dim tensors, without a host synchronisation per
step: :meth:`PIController.update` takes the batch KL as a tensor and returns the weight
as a tensor, and :class:`ControllerState` (the running KL and the integral, all the
controller remembers) is what a checkpoint saves to resume exactly.
"""
from __future__ import annotations

import dataclasses

import torch

from ._checks import check_positive, check_real

__all__ = ["ControllerState", "PIController"]


@dataclasses.dataclass
class ControllerState:
    """The controller's memory, 0-dim float64 tensors on the training device.

    Attributes:
        kl: the running average of the batch KL (nats per example); NaN before the first step.
        integral: the integral term ``I``.
    """

    kl: torch.Tensor
    integral: torch.Tensor

    def state_dict(self) -> dict:
        return {name: value.detach().cpu().clone() for name, value in dataclasses.asdict(self).items()}

    def load_state_dict(self, state: dict) -> None:
        for field in dataclasses.fields(self):
            getattr(self, field.name).copy_(state[field.name])


@dataclasses.dataclass(frozen=True)
class PIController:
    """A PI controller that steers the KL towards ``target`` nats (Shao et al. 2020).

    Pass it where a KL weight goes: ``vaelab.Objective(beta=vaelab.PIController(target=3.0))``
    with :func:`vaelab.fit` or :func:`vaelab.sweep`. The weight of every step is recorded in
    ``history["weight"]``.

    Attributes:
        target: the KL to reach, nats per example (summed over latents), finite and >= 0.
        kp: proportional gain, >= 0: the P term lies in ``[0, kp]``.
        ki: integral gain, >= 0: the weight moves by about ``ki * (KL - target)`` per step.
        beta_min, beta_max: bounds of the weight, ``0 <= beta_min < beta_max``.
        smoothing: ``s`` of the running average of the batch KL, in ``[0, 1)``; 0 reads the
            raw batch KL.

    **Settings for the length of the run.** The defaults are ControlVAE's language-model
    settings (``kp=0.01``, ``ki=0.0001``, ``beta_max=1``), made for tens of thousands of
    steps, and do little in a short run, for two reasons:

    * the integral moves the weight by about ``ki * |KL - target|`` per step, so crossing
      ``[0, 1]`` with an error of ``e`` nats takes about ``1 / (ki * e)`` steps: 3,300 steps
      at the default ``ki`` with the KL 3 nats off its target;
    * the running average lags the batch KL by about ``1 / (1 - smoothing)`` steps: 20 at
      the default 0.95, long against a run of a few hundred.

    For a run of a few hundred steps use ``PIController(target=..., ki=1e-3, smoothing=0.8)``
    (chapter 4 uses ``ki=1e-3`` for 1,000 steps): the weight can cross its range in about
    300 steps and the average follows within about 5. ``tests/test_control.py`` checks
    both claims on a simulated run of 300 steps. Raise ``beta_max`` only if a weight above
    1 is meant.
    """

    target: float
    kp: float = 0.01
    ki: float = 1e-4
    beta_min: float = 0.0
    beta_max: float = 1.0
    smoothing: float = 0.95

    def __post_init__(self):
        object.__setattr__(self, "target", check_positive("target", self.target, allow_zero=True))
        object.__setattr__(self, "kp", check_positive("kp", self.kp, allow_zero=True))
        object.__setattr__(self, "ki", check_positive("ki", self.ki, allow_zero=True))
        object.__setattr__(self, "beta_min", check_positive("beta_min", self.beta_min, allow_zero=True))
        object.__setattr__(self, "beta_max", check_real("beta_max", self.beta_max))
        if not self.beta_max > self.beta_min:
            raise ValueError(f"beta_max must be greater than beta_min ({self.beta_min}); got {self.beta_max}")
        smoothing = check_real("smoothing", self.smoothing)
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1) (0 reads the raw batch KL); got {smoothing}")
        object.__setattr__(self, "smoothing", smoothing)

    def initial_state(self, device=None) -> ControllerState:
        """A fresh state on ``device`` (0-dim float64 tensors); a sweep keeps one per controlled configuration."""
        return ControllerState(kl=torch.full((), float("nan"), dtype=torch.float64, device=device),
                               integral=torch.zeros((), dtype=torch.float64, device=device))

    @torch.no_grad()
    def update(self, state: ControllerState, kl: torch.Tensor) -> torch.Tensor:
        """Read one step's batch KL, update ``state`` in place, and return that step's weight.

        Args:
            state: from :meth:`initial_state`.
            kl: the batch-mean KL of this step, nats per example, summed over latents:
                a tensor of ``state``'s shape (detached; never copied to the host).

        Returns:
            The weight, float64, of ``state``'s shape, on ``state``'s device.
        """
        kl = kl.detach().to(torch.float64)
        smoothed = torch.where(torch.isnan(state.kl), kl, self.smoothing * state.kl + (1 - self.smoothing) * kl)
        error = self.target - smoothed
        proportional = self.kp * torch.sigmoid(-error)  # kp / (1 + exp(error))
        integral = state.integral - self.ki * error
        raw = proportional + integral + self.beta_min
        inside = (raw >= self.beta_min) & (raw <= self.beta_max)
        state.integral.copy_(torch.where(inside, integral, state.integral))  # anti-windup: hold at a bound
        state.kl.copy_(smoothed)
        return raw.clamp(self.beta_min, self.beta_max)
