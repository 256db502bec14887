"""KL per dimension and free bits, against torch.distributions and by their gradients."""
import mpmath
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal, kl_divergence

import vaelab

D64 = torch.float64
MU = torch.tensor([[0.0, 1.5, -3.0], [0.2, 0.0, 10.0]], dtype=D64)
LOGVAR = torch.tensor([[0.0, -2.0, 1.0], [-20.0, 5.0, 0.0]], dtype=D64)


def test_gaussian_kl_matches_torch_per_dimension():
    expected = kl_divergence(Normal(MU, (0.5 * LOGVAR).exp()), Normal(0.0, 1.0))
    value = vaelab.gaussian_kl(MU, LOGVAR)
    assert value.shape == (2, 3)
    torch.testing.assert_close(value, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("logvar", [-0.3, -0.05, -1e-3, 1e-8, 2e-3, 0.0099, 0.0101, 0.099, 0.101, 0.4])
def test_gaussian_kl_keeps_digits_near_the_prior(logvar, dtype):
    # (exp(v) - 1 - v) / 2 ~ v^2 / 4: a collapsed unit's KL, which exp(v) - 1 - v would lose.
    mpmath.mp.dps = 50
    expected = float((mpmath.exp(mpmath.mpf(logvar)) - 1 - mpmath.mpf(logvar)) / 2)
    value = vaelab.gaussian_kl(torch.zeros(1, 1, dtype=dtype), torch.tensor([[logvar]], dtype=dtype)).item()
    assert value == pytest.approx(expected, rel=1e-6 if dtype == torch.float32 else 1e-13)



@pytest.mark.parametrize("logvar", [-0.3, -1e-3, 1e-8, 0.0101, 0.099, 0.101, 0.4])
def test_float32_series_fallback_keeps_digits(logvar):
    # The series used on devices without float64 (MPS), checked here in float32 on the CPU.
    from vaelab.divergences import _expm1_minus_x_series

    mpmath.mp.dps = 50
    expected = float(mpmath.exp(mpmath.mpf(logvar)) - 1 - mpmath.mpf(logvar))
    assert _expm1_minus_x_series(torch.tensor([logvar])).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("logvar", [-20.0, -1e-3, 1e-6, 0.3, 20.0])
def test_gaussian_kl_float32_gradient_is_expm1_over_two(logvar):
    v = torch.tensor([[logvar]], requires_grad=True)
    vaelab.gaussian_kl(torch.zeros(1, 1), v).sum().backward()
    assert v.grad.dtype == torch.float32
    assert v.grad.item() == pytest.approx(float(mpmath.expm1(logvar)) / 2, rel=1e-6)

# Zero, or far enough from it that KL ~ v^2 / 4 does not underflow float64.
_VALUES = st.one_of(st.just(0.0), st.floats(1e-6, 10), st.floats(-10, -1e-6))


@settings(max_examples=50, deadline=None)
@given(_VALUES, _VALUES)
def test_gaussian_kl_is_nonnegative_and_zero_only_at_the_prior(mu, logvar):
    value = vaelab.gaussian_kl(torch.tensor([[mu]], dtype=D64), torch.tensor([[logvar]], dtype=D64)).item()
    assert value >= 0
    if mu != 0 or logvar != 0:
        assert value > 0
    else:
        assert value == 0


def test_gaussian_kl_gradients_are_closed_form_and_finite_at_extremes():
    mu = torch.tensor([[0.0, 50.0]], dtype=D64, requires_grad=True)
    logvar = torch.tensor([[-30.0, 30.0]], dtype=D64, requires_grad=True)
    vaelab.gaussian_kl(mu, logvar).sum().backward()
    torch.testing.assert_close(mu.grad, mu.detach())
    torch.testing.assert_close(logvar.grad, 0.5 * (logvar.detach().exp() - 1))


def test_free_bits_per_dimension_clamps_batch_mean_and_blocks_gradient_below_threshold():
    kl = torch.tensor([[0.1, 2.0, 0.4], [0.3, 4.0, 0.8]], requires_grad=True)
    value = vaelab.free_bits(kl, threshold=0.5)
    # batch means: 0.2, 3.0, 0.6 -> max(0.5, .) -> 0.5 + 3.0 + 0.6
    assert value.item() == pytest.approx(4.1)
    value.backward()
    torch.testing.assert_close(kl.grad, torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]]))


def test_free_bits_on_the_whole_vector():
    kl = torch.tensor([[0.1, 0.2], [0.3, 0.2]], requires_grad=True)
    below = vaelab.free_bits(kl, threshold=1.0, per_dimension=False)
    assert below.item() == pytest.approx(1.0)
    below.backward()
    assert (kl.grad == 0).all()
    kl.grad = None
    above = vaelab.free_bits(kl, threshold=0.1, per_dimension=False)
    assert above.item() == pytest.approx(0.4)
    above.backward()
    torch.testing.assert_close(kl.grad, torch.full((2, 2), 0.5))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: vaelab.gaussian_kl(MU, LOGVAR[:, :2]), r"mu has shape \(2, 3\) but logvar has shape \(2, 2\)"),
        (lambda: vaelab.gaussian_kl(MU[0], LOGVAR[0]), r"mu must have at least 2 dimension"),
        (lambda: vaelab.gaussian_kl(MU, LOGVAR * float("inf")), r"logvar contains .* NaN or infinite"),
        (lambda: vaelab.free_bits(MU.abs(), threshold=-1.0), r"threshold must be a finite number >= 0"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
