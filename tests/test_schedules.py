"""KL-weight schedules: values at known steps, endpoints, periodicity, input types, bad input."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vaelab


def test_constant_and_linear():
    assert vaelab.constant(0.3)(12345) == 0.3
    ramp = vaelab.linear(100, start=0.2, stop=1.0)
    assert ramp(0) == pytest.approx(0.2)
    assert ramp(50) == pytest.approx(0.6)
    assert ramp(100) == ramp(10_000) == pytest.approx(1.0)


def test_delayed_linear_is_zero_then_ramps():
    schedule = vaelab.delayed_linear(delay_steps=1000, ramp_steps=500, stop=2.0)
    np.testing.assert_allclose(schedule(np.array([0, 999, 1000, 1250, 1500, 9000])), [0, 0, 0, 1.0, 2.0, 2.0])


def test_cyclical_linear_matches_fu_et_al_recipe():
    # 4 cycles of 25 steps; rise over the first 12.5 steps of each, then hold.
    schedule = vaelab.cyclical(100, n_cycles=4, ratio=0.5)
    steps = np.arange(100)
    period, rise = 25, 12.5
    expected = np.minimum((steps % period) / rise, 1.0)
    np.testing.assert_allclose(schedule(steps), expected, atol=1e-12)
    assert schedule(100) == schedule(5000) == 1.0


@pytest.mark.parametrize("shape", ["linear", "sigmoid", "cosine"])
def test_cyclical_shapes_hit_start_and_stop_and_rise_monotonically(shape):
    schedule = vaelab.cyclical(400, n_cycles=4, ratio=0.5, start=0.1, stop=0.9, shape=shape)
    assert schedule(0) == pytest.approx(0.1)
    assert schedule(50) == pytest.approx(0.9)
    rise = schedule(np.arange(0, 51))
    assert np.all(np.diff(rise) > 0)
    assert schedule(70) == pytest.approx(0.9)
    if shape != "linear":
        assert schedule(25) == pytest.approx(0.5)  # symmetric S-curves pass the midpoint halfway


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 8), st.floats(0.05, 1.0), st.integers(0, 10_000))
def test_cyclical_is_periodic_within_the_run(n_cycles, ratio, step):
    total = 8 * 125 * n_cycles
    schedule = vaelab.cyclical(total, n_cycles=n_cycles, ratio=ratio)
    period = total // n_cycles
    step = step % (total - period)
    assert schedule(step) == pytest.approx(schedule(step + period), abs=1e-9)
    assert schedule(step - step % period) == 0.0


def test_capacity_grows_linearly_to_its_target():
    target = vaelab.capacity(1000, stop=25.0)
    assert [target(s) for s in (0, 500, 1000, 4000)] == pytest.approx([0.0, 12.5, 25.0, 25.0])


def test_schedules_preserve_input_type():
    schedule = vaelab.linear(10)
    assert isinstance(schedule(3), float)
    array = schedule(np.arange(3))
    assert isinstance(array, np.ndarray) and array.dtype == np.float64
    tensor = schedule(torch.arange(3))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    assert schedule(torch.tensor([5.0], dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: vaelab.cyclical(100, ratio=0.0), r"ratio must be in \(0, 1\]"),
        (lambda: vaelab.cyclical(100, ratio=1.5), r"ratio must be in \(0, 1\]"),
        (lambda: vaelab.cyclical(0), r"total_steps must be an integer >= 1"),
        (lambda: vaelab.cyclical(100, n_cycles=0), r"n_cycles must be an integer >= 1"),
        (lambda: vaelab.cyclical(100, shape="square"), r"shape must be one of 'linear', 'sigmoid', 'cosine'"),
        (lambda: vaelab.linear(2.5), r"total_steps must be an integer"),
        (lambda: vaelab.linear(10)(-1), r"step must be >= 0"),
        (lambda: vaelab.linear(10)(np.array([3, -2])), r"step must be >= 0"),
        (lambda: vaelab.linear(10)(math.nan), r"step must be finite"),
        (lambda: vaelab.linear(10)("3"), r"step must be an int"),
        (lambda: vaelab.delayed_linear(-1, 10), r"delay_steps must be an integer >= 0"),
        (lambda: vaelab.capacity(10, stop=-1.0), r"stop must be a finite number >= 0"),
        (lambda: vaelab.constant(-0.5), r"value must be a finite number >= 0"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
