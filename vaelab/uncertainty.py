"""How sure a comparison is: paired differences over held-out examples, spreads over seeds.

Two kinds of uncertainty stand behind a number such as "model A scores 0.09 bits/dim
better than model B", and they have separate answers:

* :func:`compare`: the uncertainty over **held-out examples**. Both models are scored on
  the same test images (``result["per_example"]`` of :func:`vaelab.iw_log_likelihood`,
  :func:`vaelab.elbo` or a baseline); the difference is averaged over examples, and its
  *paired* standard error says how much it would move on another test set drawn from
  the same distribution. It says nothing about another training run.
* :func:`spread`: the uncertainty over **training seeds**: one figure measured on models
  trained with several seeds, and how far it varies between them.

Both print as ``difference ± one standard error`` (or ``mean ± sd``), the standard error
rounded to two significant digits and the estimate to the same decimal place, so a
chapter can quote them as they are (``f"{comparison}"``, or glued).
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import NamedTuple

import torch

__all__ = ["Comparison", "Spread", "compare", "spread"]

_PER_EXAMPLE_HINT = 'pass per-example scores, e.g. result["per_example"]["nll"]'


def _scores(name: str, values) -> torch.Tensor:
    """``values`` as a 1-D float64 CPU tensor of finite numbers, or a ValueError naming ``name``."""
    if isinstance(values, dict):
        raise ValueError(f"{name} must be per-example scores, not a dict of results: {_PER_EXAMPLE_HINT}")
    if torch.is_tensor(values):
        tensor = values.detach().cpu()
    else:
        try:
            tensor = torch.as_tensor(values)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(
                f"{name} must hold numbers (a 1-D tensor, array or list); got {type(values).__name__}"
            ) from None
    if tensor.dtype == torch.bool or tensor.is_complex() or not (tensor.is_floating_point() or tensor.dtype in (
            torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise ValueError(f"{name} must hold real numbers; got dtype {tensor.dtype}")
    if tensor.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D, one score per example; got shape {tuple(tensor.shape)}: {_PER_EXAMPLE_HINT}"
        )
    tensor = tensor.double()
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        raise ValueError(f"{name} holds {int(bad.sum())} non-finite value(s) among {tensor.shape[0]}; "
                         f"the first is {float(tensor[first])} at index {first}")
    return tensor


def _check_unit(unit) -> str | None:
    if unit is not None and not isinstance(unit, str):
        raise ValueError(f"unit must be a str such as 'bits/dim' or 'nats', or None; got {unit!r}")
    return unit


def _rounded(estimate: float, error: float) -> tuple[str, str]:
    """``estimate`` and ``error`` as text: ``error`` to two significant digits, ``estimate`` to
    the same decimal place; with ``error == 0``, ``estimate`` to four significant digits."""
    if error == 0:
        return f"{estimate + 0.0:.4g}", "0"  # + 0.0 prints -0.0 as 0
    decimals = 1 - math.floor(math.log10(error))
    if round(error, decimals) >= 10 ** (2 - decimals):  # 0.0996 rounds up to 0.100: one digit fewer
        decimals -= 1
    places = max(decimals, 0)
    return f"{round(estimate, decimals) + 0.0:.{places}f}", f"{round(error, decimals):.{places}f}"


def _with_unit(text: str, unit: str | None) -> str:
    return text if unit is None else f"{text} {unit}"


class Comparison(NamedTuple):
    """The paired difference of two models' scores over the same held-out examples.

    Printed as ``difference ± se unit`` (``f"{c}"``, ``str(c)``, or glued); a format spec
    applies to both numbers (``f"{c:.3f}"``). The interval is not printed: :attr:`told_apart`
    says whether it excludes 0.
    """

    #: ``mean(a - b)`` in the unit of the scores.
    difference: float
    #: The paired standard error of ``difference``: ``std(a - b, ddof=1) / sqrt(n)``.
    se: float
    #: Lower end of the normal-approximation interval ``difference - z * se``.
    low: float
    #: Upper end of the interval, ``difference + z * se``.
    high: float
    #: The number of paired examples.
    n: int
    #: The unit of the scores (``"bits/dim"``), or None.
    unit: str | None
    #: The interval's coverage, e.g. 0.95.
    confidence: float

    @property
    def told_apart(self) -> bool:
        """True when the interval excludes 0: the two models differ by more than the held-out
        examples' noise explains. When False, write that they cannot be told apart."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        difference, se = _rounded(self.difference, self.se)
        return _with_unit(f"{difference} ± {se}", self.unit)

    def __format__(self, spec: str) -> str:
        if not spec:
            return str(self)
        return _with_unit(f"{self.difference:{spec}} ± {self.se:{spec}}", self.unit)

    def _repr_pretty_(self, printer, cycle) -> None:
        # IPython's text/plain (and so myst-nb's glue) shows the text a chapter quotes
        printer.text(str(self))


class Spread(NamedTuple):
    """One quantity measured on several training seeds: its mean and how far it varies.

    Printed as ``mean ± sd unit (sd over n seeds)``: the ``±`` is the standard deviation
    between seeds, not a standard error.
    """

    #: The mean over seeds.
    mean: float
    #: The sample standard deviation over seeds (ddof=1).
    sd: float
    #: The standard error of the mean, ``sd / sqrt(n)``.
    se: float
    #: The number of seeds.
    n: int
    #: The smallest value.
    min: float
    #: The largest value.
    max: float
    #: The unit of the values, or None.
    unit: str | None

    def __str__(self) -> str:
        mean, sd = _rounded(self.mean, self.sd)
        return _with_unit(f"{mean} ± {sd}", self.unit) + f" (sd over {self.n} seeds)"

    def __format__(self, spec: str) -> str:
        if not spec:
            return str(self)
        return _with_unit(f"{self.mean:{spec}} ± {self.sd:{spec}}", self.unit) + f" (sd over {self.n} seeds)"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(str(self))


def compare(a, b, *, unit: str | None = None, confidence: float = 0.95) -> Comparison:
    """The mean paired difference ``a - b`` of two models' scores, with its standard error.

    ``a`` and ``b`` score the *same* held-out examples, in the same order: ``a[i]`` and
    ``b[i]`` are two models' scores of example ``i`` (e.g. ``result["per_example"]["nll"]``
    of :func:`vaelab.iw_log_likelihood` for each model). The difference is
    ``d = mean(a - b)`` and its paired standard error ``std(a - b, ddof=1) / sqrt(N)``.

    **Why paired.** Some test images are hard for every model (a thick, busy digit costs
    more nats than a thin 1). That example-to-example variation is common to both models
    and cancels in ``a[i] - b[i]``, so the paired standard error is much smaller than the
    unpaired ``sqrt(var(a) / N + var(b) / N)``, which counts it twice: a difference of
    0.5 nats can be clear when paired and lost in the noise when not.

    **What it covers.** Only the choice of held-out examples: how much ``d`` would move on
    another test set of the same size from the same distribution. It does not cover
    training: two runs of the same model with other seeds differ too, often by more. For
    that, train several seeds and use :func:`spread` on each model's figure.

    The interval is the normal approximation ``d ± z se`` with ``z`` the
    ``(1 + confidence) / 2`` quantile of the standard normal (1.96 for 0.95), sound for the
    thousands of examples of a test set (the mean of ``N`` differences is close to normal).

    Args:
        a, b: per-example scores, ``(N,)`` each with ``N >= 2``, finite: tensors (any
            device), NumPy arrays or lists, in one unit (nats, or bits/dim).
        unit: the scores' unit, for printing (``"bits/dim"``, ``"nats"``), or None.
        confidence: the interval's coverage, in (0, 1).

    Returns:
        a :class:`Comparison` ``(difference, se, low, high, n, unit, confidence)``, floats in
        the unit of the scores. For a negative log-likelihood, a positive difference means
        ``a`` scores worse than ``b``.

    Raises:
        ValueError: ``a`` and ``b`` differ in length, are not 1-D, hold fewer than 2
            examples or a non-finite value; ``unit`` is not a str; ``confidence`` is
            outside (0, 1).

    Example: four test images; model A costs 1, 0, 1 and 2 nats more than model B.

    >>> import vaelab
    >>> a = [3.0, 5.0, 4.0, 6.0]
    >>> b = [2.0, 5.0, 3.0, 4.0]
    >>> c = vaelab.compare(a, b, unit="nats")
    >>> print(c)
    1.00 ± 0.41 nats
    >>> round(c.se, 4), round(c.low, 2), round(c.high, 2), c.told_apart
    (0.4082, 0.2, 1.8, True)

    Unpaired, the same scores give a standard error of
    ``sqrt(var(a) / 4 + var(b) / 4) = 0.91``, more than twice as large: image 1 is easy for
    both models and images 2 and 4 are hard for both, and pairing takes that out.
    """
    a, b = _scores("a", a), _scores("b", b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"a has {a.shape[0]} examples, b has {b.shape[0]}: compare scores of the same held-out examples"
        )
    n = a.shape[0]
    if n < 2:
        raise ValueError(f"a and b must hold at least 2 examples for a standard error; got {n}")
    unit = _check_unit(unit)
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), e.g. 0.95 for a 95% interval; got {confidence!r}")
    differences = a - b
    difference = float(differences.mean())
    se = float(differences.std(correction=1)) / math.sqrt(n)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return Comparison(difference, se, difference - z * se, difference + z * se, n, unit, float(confidence))


def spread(values, *, unit: str | None = None) -> Spread:
    """The mean of one quantity over training seeds, and how far it varies between them.

    Train the same model with several seeds, measure it on the same held-out data, and pass
    the figures: the standard deviation between them is the uncertainty that
    :func:`compare` does not cover (the training run's own luck: initialisation, minibatch
    order, noise draws).

    Args:
        values: one figure per seed, ``(n,)`` with ``n >= 2``, finite (tensor, array or list).
        unit: the figures' unit, for printing, or None.

    Returns:
        a :class:`Spread` ``(mean, sd, se, n, min, max, unit)``: the sample standard
        deviation (ddof=1) and the standard error of the mean ``sd / sqrt(n)``.

    Raises:
        ValueError: ``values`` is not 1-D, holds fewer than 2 values or a non-finite one;
            ``unit`` is not a str.

    >>> import vaelab
    >>> print(vaelab.spread([7.12, 7.08, 7.10], unit="bits/dim"))
    7.100 ± 0.020 bits/dim (sd over 3 seeds)
    """
    tensor = _scores("values", values)
    if tensor.shape[0] < 2:
        raise ValueError(f"values must hold at least 2 figures (one per seed) for a spread; got {tensor.shape[0]}")
    unit = _check_unit(unit)
    n = tensor.shape[0]
    sd = float(tensor.std(correction=1))
    return Spread(float(tensor.mean()), sd, sd / math.sqrt(n), n, float(tensor.min()), float(tensor.max()), unit)
