"""Argument checks shared by every vaelab module.

Every public function validates its inputs here, so that bad input fails with a
``ValueError`` that names the argument and what was expected, instead of being
broadcast or propagated as NaN. Checks on tensor *values* (finiteness, support)
cost a device synchronisation; hot loops that have already validated their data
switch them off with :func:`no_validation`.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch

_VALIDATE = True


def validation_enabled() -> bool:
    """Whether value checks (finite, in support) are currently performed."""
    return _VALIDATE


@contextlib.contextmanager
def no_validation() -> Iterator[None]:
    """Skip value checks inside the block (shape checks always run).

    Used by the training loop, which validates its data once before the first step.
    """
    global _VALIDATE
    previous, _VALIDATE = _VALIDATE, False
    try:
        yield
    finally:
        _VALIDATE = previous


def check_tensor(
    name: str, value, *, min_dim: int = 0, support: tuple[float, float] | None = None, open_interval: bool = False
) -> torch.Tensor:
    """Require a floating-point tensor with at least ``min_dim`` dimensions and no NaN/inf.

    With ``support=(low, high)`` the values must also lie in that interval (open when
    ``open_interval``), checked from the same single pass over the data.
    """
    if not isinstance(value, torch.Tensor):
        hint = f"; convert it with torch.from_numpy({name})" if type(value).__module__ == "numpy" else ""
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}{hint}")
    if not value.is_floating_point():
        hint = (f"; for 8-bit images use {name}.float() / 255" if value.dtype == torch.uint8
                else f"; convert it with {name}.float()")
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}{hint}")
    if value.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s) (batch first), got shape {tuple(value.shape)}"
        )
    if _VALIDATE:
        smallest, largest = _value_range(value)
        if not (math.isfinite(smallest) and math.isfinite(largest)):
            n_bad = int((~torch.isfinite(value)).sum())
            where = "" if support is None else f" in {_interval(*support, open_interval)}"
            raise ValueError(f"{name} contains {n_bad} NaN or infinite value(s); expected finite values{where}")
        if support is not None:
            _require_within(name, smallest, largest, *support, open_interval)
    return value


def _value_range(value: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` in one pass and one synchronisation; NaN propagates into both, inf shows.

    One reduction with no temporary tensor, instead of an elementwise test, a boolean
    tensor and a reduction per check: on the 60000 MNIST training images (which
    :func:`vaelab.fit` validates on every call) about 25 ms instead of 0.9 s on a 2-core CPU.
    """
    if value.numel() == 0:
        return 0.0, 0.0
    low, high = torch.aminmax(value.detach())
    return tuple(torch.stack([low, high]).tolist())


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Require identical shapes: vaelab never broadcasts data against parameters."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {tuple(a.shape)} but {name_b} has shape {tuple(b.shape)}; "
            "they must be equal (vaelab does not broadcast them)"
        )


def check_support(name: str, value: torch.Tensor, low: float, high: float, *, open_interval: bool = False) -> None:
    """Require ``low <= value <= high`` (or strict inequalities when ``open_interval``)."""
    if _VALIDATE:
        _require_within(name, *_value_range(value), low, high, open_interval)  # NaN fails every comparison


def _interval(low: float, high: float, open_interval: bool) -> str:
    return f"the open interval ({low:g}, {high:g})" if open_interval else f"[{low:g}, {high:g}]"


def _require_within(name: str, smallest: float, largest: float, low: float, high: float, open_interval: bool) -> None:
    ok = (smallest > low and largest < high) if open_interval else (smallest >= low and largest <= high)
    if not ok:
        if (low, high) == (0.0, 1.0) and 1 < largest <= 255 and smallest >= 0:
            hint = f": they look like 8-bit grey levels, so divide by 255 ({name} / 255)"
        else:
            hint = (": rescale the data into that interval, or use a likelihood whose support covers it "
                    "(a Gaussian has no bounds)")
        raise ValueError(
            f"{name} must lie in {_interval(low, high, open_interval)}; got values from {smallest:g} to {largest:g}{hint}"
        )


def check_positive(name: str, value, *, allow_zero: bool = False) -> float:
    """Require a finite real number > 0 (or >= 0)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {expected}, got {value!r}")
    return number


def check_real(name: str, value) -> float:
    """Require a finite real number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    """Require an integer >= ``minimum`` (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_flag(name: str, value) -> bool:
    """Require ``True`` or ``False`` (a keyword such as ``per_example``)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    """Require one of a fixed set of strings."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


#: How far, in units of one level, a value may lie from a grey level ``k / (levels - 1)`` and still count as on it.
_GRID_TOLERANCE = 1e-3


def _level_steps(values: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(k, off_grid)``: the nearest level index of every value, and where it lies off the grid."""
    steps = values.detach() * (levels - 1)
    k = steps.round()
    return k, (steps - k).abs() > _GRID_TOLERANCE


def on_level_grid(values: torch.Tensor, levels: int) -> bool:
    """Whether every value is one of the grey levels ``k / (levels - 1)``."""
    return not bool(_level_steps(values, levels)[1].any())


def level_index(name: str, values: torch.Tensor, levels: int, *, check: bool = True) -> torch.Tensor:
    """``k = round(values * (levels - 1))`` in the dtype of ``values``; with ``check``, a clear
    error unless every value lies on the grid ``k / (levels - 1)``."""
    k, off_grid = _level_steps(values, levels)
    if check and bool(off_grid.any()):
        raise ValueError(
            f"{name} must hold grey levels k / {levels - 1} (k = 0 .. {levels - 1}), as vaelab's loaders return "
            "them; these are not (dequantised or rescaled?). Pass the original images"
        )
    return k
