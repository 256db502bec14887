"""KL-weight schedules: callables ``step -> weight``.

Each schedule accepts a Python int/float (and returns a float), a NumPy array (returns a
float64 array) or a torch tensor (returns a floating tensor on the same device), so the
same object drives training and draws its own plot. Steps count optimiser updates from
0 and must be >= 0.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ._checks import check_choice, check_positive, check_positive_int, check_real

__all__ = ["Schedule", "constant", "linear", "delayed_linear", "staircase", "cyclical", "capacity"]


class Schedule:
    """Base class: subclasses implement ``_weights`` on a float64 tensor of steps."""

    def _weights(self, steps: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, step):
        if isinstance(step, torch.Tensor):
            steps = step.detach().to(torch.float64)
        elif isinstance(step, np.ndarray):
            steps = torch.from_numpy(np.asarray(step, dtype=np.float64))
        elif isinstance(step, (int, float, np.integer, np.floating)) and not isinstance(step, bool):
            steps = torch.tensor(float(step), dtype=torch.float64)
        else:
            raise ValueError(f"step must be an int, a NumPy array or a torch tensor; got {type(step).__name__}")
        if not bool(torch.isfinite(steps).all()):
            raise ValueError("step must be finite")
        if bool((steps < 0).any()):
            raise ValueError(f"step must be >= 0; got a minimum of {float(steps.min()):g}")
        weights = self._weights(steps)
        if isinstance(step, torch.Tensor):
            dtype = step.dtype if step.is_floating_point() else torch.get_default_dtype()
            return weights.to(dtype)
        if isinstance(step, np.ndarray):
            return weights.numpy()
        return float(weights)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class constant(Schedule):
    """The same weight at every step (``value = 1`` is the plain ELBO)."""

    def __init__(self, value: float = 1.0):
        self.value = check_positive("value", value, allow_zero=True)

    def _weights(self, steps):
        return torch.full_like(steps, self.value)


class linear(Schedule):
    """Linear warm-up from ``start`` to ``stop`` over ``total_steps``, then ``stop``
    (Bowman et al. 2016; Sønderby et al. 2016)."""

    def __init__(self, total_steps: int, *, start: float = 0.0, stop: float = 1.0):
        self.total_steps = check_positive_int("total_steps", total_steps)
        self.start = check_real("start", start)
        self.stop = check_real("stop", stop)

    def _weights(self, steps):
        progress = torch.clamp(steps / self.total_steps, max=1.0)
        return self.start + (self.stop - self.start) * progress


class delayed_linear(Schedule):
    """Zero for ``delay_steps``, then a linear ramp to ``stop`` over ``ramp_steps``, then ``stop``.

    The recipe of the popular Keras KL-annealing callback: let the decoder learn to
    reconstruct first, then bring the KL in.
    """

    def __init__(self, delay_steps: int, ramp_steps: int, *, stop: float = 1.0):
        self.delay_steps = check_positive_int("delay_steps", delay_steps, minimum=0)
        self.ramp_steps = check_positive_int("ramp_steps", ramp_steps)
        self.stop = check_real("stop", stop)

    def _weights(self, steps):
        progress = torch.clamp((steps - self.delay_steps) / self.ramp_steps, min=0.0, max=1.0)
        return self.stop * progress


class staircase(Schedule):
    """A weight that changes once per stair of ``stair_steps`` steps, as a per-epoch callback changes it.

    During stair ``e = floor(step / stair_steps)`` (counted from 0) the weight is
    ``min(stop, increment * max(0, e - delay))``: 0 for the first ``delay + 1`` stairs, then
    ``increment`` more on each later one.

    The popular Keras annealing callback (``on_epoch_end(epoch)``: ``if epoch > klstart:
    weight += 1 / annealtime``, capped at 1, with Keras counting epochs from 0) is, with
    stairs of one epoch, ``staircase(steps_per_epoch, delay=klstart + 1, increment=1 / annealtime)``:
    the weight first differs from 0 in epoch ``klstart + 2`` (0-based), the 43rd epoch for
    ``klstart = 40``.
    """

    def __init__(self, stair_steps: int, *, delay: int, increment: float, stop: float = 1.0):
        self.stair_steps = check_positive_int("stair_steps", stair_steps)
        self.delay = check_positive_int("delay", delay, minimum=0)
        self.increment = check_positive("increment", increment)
        self.stop = check_positive("stop", stop, allow_zero=True)

    def _weights(self, steps):
        stairs = torch.floor(steps / self.stair_steps)
        return torch.clamp(self.increment * torch.clamp(stairs - self.delay, min=0.0), max=self.stop)


_SHAPES = ("linear", "sigmoid", "cosine")


class cyclical(Schedule):
    """Cyclical annealing (Fu et al. 2019).

    ``total_steps`` is split into ``n_cycles`` equal periods. In each, the weight rises
    from ``start`` to ``stop`` over the first ``ratio`` of the period, then holds ``stop``;
    after ``total_steps`` it stays at ``stop``. The rise is ``"linear"``, ``"cosine"``
    (``(1 - cos(pi u)) / 2``) or ``"sigmoid"`` (a logistic curve on [-6, 6], rescaled to
    hit ``start`` and ``stop`` exactly), with ``u`` the fraction of the rise done.
    """

    def __init__(
        self,
        total_steps: int,
        n_cycles: int = 4,
        ratio: float = 0.5,
        start: float = 0.0,
        stop: float = 1.0,
        shape: str = "linear",
    ):
        self.total_steps = check_positive_int("total_steps", total_steps)
        self.n_cycles = check_positive_int("n_cycles", n_cycles)
        ratio = check_real("ratio", ratio)
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], the fraction of each cycle spent rising; got {ratio}")
        self.ratio = ratio
        self.start = check_real("start", start)
        self.stop = check_real("stop", stop)
        self.shape = check_choice("shape", shape, _SHAPES)

    @property
    def period(self) -> float:
        """Steps per cycle."""
        return self.total_steps / self.n_cycles

    def _weights(self, steps):
        phase = torch.remainder(steps, self.period) / self.period
        u = torch.clamp(phase / self.ratio, max=1.0)
        if self.shape == "cosine":
            u = 0.5 - 0.5 * torch.cos(math.pi * u)
        elif self.shape == "sigmoid":
            low, high = 1 / (1 + math.exp(6)), 1 / (1 + math.exp(-6))
            u = (torch.sigmoid(12 * u - 6) - low) / (high - low)
        weights = self.start + (self.stop - self.start) * u
        return torch.where(steps >= self.total_steps, torch.full_like(weights, self.stop), weights)


class capacity(linear):
    """The capacity target ``C(step)`` for the objective ``gamma * |KL - C|`` (Burgess et al. 2018).

    ``C`` grows linearly from ``start`` to ``stop`` nats over ``total_steps``, then holds.
    Use it as ``Objective(capacity=capacity(10_000, stop=25.0), gamma=1000)``.
    """

    def __init__(self, total_steps: int, *, stop: float, start: float = 0.0):
        super().__init__(total_steps, start=check_positive("start", start, allow_zero=True),
                         stop=check_positive("stop", stop, allow_zero=True))
