"""Likelihoods against torch.distributions, closed forms and high-precision references."""
import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Beta, ContinuousBernoulli, Normal

import vaelab

D64 = torch.float64
X = torch.tensor([[0.0, 0.25, 0.5, 1.0], [1.0, 0.9, 0.1, 0.0]], dtype=D64)
LOGITS = torch.tensor([[-3.0, -0.7, 0.0, 2.5], [8.0, 0.3, -1.2, -9.0]], dtype=D64)


def mp_log_norm(eta: float) -> float:
    """log C(lambda) from the definition in lambda, with 200 significant digits (1 - 2 lambda is within 1e-43 of 1 at |eta| = 100)."""
    mpmath.mp.dps = 200
    eta = mpmath.mpf(eta)
    if eta == 0:
        return float(mpmath.log(2))
    lam = 1 / (1 + mpmath.exp(-eta))
    return float(mpmath.log(2 * mpmath.atanh(1 - 2 * lam) / (1 - 2 * lam)))


def mp_cb_mean(eta: float) -> float:
    mpmath.mp.dps = 200
    eta = mpmath.mpf(eta)
    if eta == 0:
        return 0.5
    lam = 1 / (1 + mpmath.exp(-eta))
    return float(lam / (2 * lam - 1) + 1 / (2 * mpmath.atanh(1 - 2 * lam)))


# ------------------------------------------------------------------ Bernoulli


def test_bernoulli_matches_torch_for_binary_data():
    x = (X > 0.5).to(D64)
    expected = Bernoulli(logits=LOGITS).log_prob(x).sum(1)
    torch.testing.assert_close(vaelab.bernoulli_log_prob(x, LOGITS), expected)


def test_bernoulli_equals_minus_bce_for_grey_values():
    expected = -torch.nn.functional.binary_cross_entropy_with_logits(LOGITS, X, reduction="none")
    torch.testing.assert_close(vaelab.bernoulli_log_prob(X, LOGITS, per_dim=True), expected)


def test_bernoulli_is_exact_and_has_finite_gradient_at_extreme_logits():
    logits = torch.tensor([[-100.0, 100.0, -100.0, 100.0]], dtype=D64, requires_grad=True)
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0]], dtype=D64)
    value = vaelab.bernoulli_log_prob(x, logits)
    torch.testing.assert_close(value, torch.tensor([-200.0], dtype=D64))
    value.sum().backward()
    assert torch.isfinite(logits.grad).all()
    torch.testing.assert_close(logits.grad, x - torch.sigmoid(logits.detach()))


# ------------------------------------------------------- continuous Bernoulli


def test_cb_log_prob_matches_torch_at_moderate_logits():
    # torch switches to its own Taylor branch only within lambda in (0.499, 0.501).
    expected = ContinuousBernoulli(logits=LOGITS).log_prob(X).sum(1)
    torch.testing.assert_close(vaelab.continuous_bernoulli_log_prob(X, LOGITS), expected)


@pytest.mark.parametrize(
    "eta", [-100.0, -30.0, -5.0, -0.5, -0.0100001, -0.0099999, -1e-3, -1e-6, 0.0, 1e-8, 2e-3, 0.01, 0.02, 1.0, 30.0, 100.0]
)
def test_cb_log_norm_matches_high_precision_reference(eta):
    value = vaelab.cb_log_norm(torch.tensor([eta], dtype=D64))
    assert value.item() == pytest.approx(mp_log_norm(eta), rel=1e-14, abs=1e-15)


def test_cb_log_norm_float32_is_accurate_near_one_half():
    etas = [-0.02, -0.0101, -0.0099, -1e-4, 0.0, 1e-4, 0.0099, 0.0101, 0.02]
    value = vaelab.cb_log_norm(torch.tensor(etas, dtype=torch.float32))
    expected = torch.tensor([mp_log_norm(e) for e in etas], dtype=torch.float32)
    torch.testing.assert_close(value, expected, rtol=2e-7, atol=0)


def test_cb_log_norm_is_continuous_and_monotone_across_the_taylor_switch():
    eta = torch.linspace(0.0095, 0.0105, 2001, dtype=D64)
    value = vaelab.cb_log_norm(eta)
    steps = value.diff()
    assert (steps > 0).all(), "log C must increase with |eta|"
    # Each step is the derivative (1/eta - 1/sinh(eta)) times the grid spacing: no jump at 0.01.
    mid = 0.5 * (eta[1:] + eta[:-1])
    slope = 1 / mid - 1 / torch.sinh(mid)
    torch.testing.assert_close(steps, slope * (eta[1] - eta[0]), rtol=1e-5, atol=0)


def test_cb_log_norm_gradient_is_finite_and_correct_at_extremes():
    eta = torch.tensor([-100.0, -1e-3, 0.0, 1e-12, 0.5, 100.0], dtype=D64, requires_grad=True)
    vaelab.cb_log_norm(eta).sum().backward()
    assert torch.isfinite(eta.grad).all()
    # d/deta log(eta / tanh(eta / 2)) = 1/eta - 1/sinh(eta); 0 at eta = 0 by symmetry.
    e = eta.detach()
    closed = torch.where(e == 0, torch.zeros_like(e), 1 / torch.where(e == 0, 1, e) - 1 / torch.sinh(torch.where(e == 0, 1, e)))
    torch.testing.assert_close(eta.grad, closed, rtol=1e-9, atol=1e-12)


def test_cb_log_prob_gradients_are_finite_for_logits_up_to_100():
    x = torch.tensor([[0.0, 1.0, 0.5, 0.3, 0.7]], dtype=torch.float32)
    logits = torch.tensor([[-100.0, 100.0, 0.0, 1e-4, 60.0]], requires_grad=True)
    value = vaelab.continuous_bernoulli_log_prob(x, logits)
    assert torch.isfinite(value).all()
    value.sum().backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("eta", [-60.0, -3.0, -0.9, -0.1, -1e-5, 0.0, 0.05, 0.14, 0.16, 0.99, 1.01, 4.0, 60.0])
def test_cb_mean_matches_high_precision_reference(eta):
    value64 = vaelab.cb_mean(torch.tensor([eta], dtype=D64)).item()
    assert value64 == pytest.approx(mp_cb_mean(eta), rel=1e-14, abs=1e-16)
    value32 = vaelab.cb_mean(torch.tensor([eta], dtype=torch.float32)).item()
    assert value32 == pytest.approx(mp_cb_mean(eta), rel=3e-7, abs=1e-7)


def test_cb_mean_matches_torch_and_differs_from_lambda():
    expected = ContinuousBernoulli(logits=LOGITS).mean
    torch.testing.assert_close(vaelab.cb_mean(LOGITS), expected)
    assert (vaelab.cb_mean(LOGITS) - torch.sigmoid(LOGITS)).abs().max() > 0.1


def test_cb_logits_from_mean_inverts_cb_mean():
    eta = torch.tensor([-500.0, -40.0, -2.0, -1e-3, 0.0, 1e-7, 0.3, 7.0, 400.0], dtype=D64)
    torch.testing.assert_close(vaelab.cb_logits_from_mean(vaelab.cb_mean(eta)), eta, rtol=1e-9, atol=1e-9)
    m = torch.tensor([1e-4, 0.2, 0.5, 0.75, 0.9999], dtype=torch.float32)
    torch.testing.assert_close(vaelab.cb_mean(vaelab.cb_logits_from_mean(m)), m)


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=-50, max_value=50, allow_nan=False))
def test_cb_density_integrates_to_one(eta):
    x = torch.linspace(0, 1, 20001, dtype=D64).unsqueeze(1)
    logits = torch.full_like(x, eta)
    density = vaelab.continuous_bernoulli_log_prob(x, logits).exp()
    assert torch.trapezoid(density, x.squeeze(1)).item() == pytest.approx(1.0, abs=2e-4)


# ------------------------------------------------------------------- Gaussian


def test_gaussian_matches_torch_with_shared_sigma():
    mean = X.flip(1)
    expected = Normal(mean, math.exp(-1.5)).log_prob(X).sum(1)
    torch.testing.assert_close(vaelab.gaussian_log_prob(X, mean, -1.5), expected)
    torch.testing.assert_close(vaelab.gaussian_log_prob(X, mean, torch.tensor(-1.5, dtype=D64)), expected)


def test_gaussian_per_pixel_and_per_example_sigma_broadcast_from_the_left():
    mean = X.flip(1)
    per_pixel = torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=D64)
    expected = Normal(mean, per_pixel.exp().expand_as(X)).log_prob(X).sum(1)
    torch.testing.assert_close(vaelab.gaussian_log_prob(X, mean, per_pixel), expected)
    per_example = torch.tensor([-2.0, 1.0], dtype=D64)
    expected = Normal(mean, per_example.exp().unsqueeze(1).expand_as(X)).log_prob(X).sum(1)
    torch.testing.assert_close(vaelab.gaussian_log_prob(X, mean, per_example), expected)


def test_gaussian_with_unit_sigma_is_half_sse_plus_constant():
    mean = X.flip(1)
    sse = ((X - mean) ** 2).sum(1)
    expected = -0.5 * sse - 0.5 * X.shape[1] * math.log(2 * math.pi)
    torch.testing.assert_close(vaelab.gaussian_log_prob(X, mean, 0.0), expected)


def test_gaussian_gradient_wrt_log_sigma_is_finite_at_extremes():
    mean = X.flip(1)
    log_sigma = torch.tensor([-20.0, 20.0], dtype=D64, requires_grad=True)
    vaelab.gaussian_log_prob(X, mean, log_sigma).sum().backward()
    assert torch.isfinite(log_sigma.grad).all()


def test_optimal_log_sigma_is_the_batch_mse_and_maximises_the_likelihood():
    mean = X.flip(1) * 0.8
    value = vaelab.optimal_log_sigma(X, mean)
    mse = ((X - mean) ** 2).mean()
    torch.testing.assert_close(torch.exp(2 * value), mse)
    assert not value.requires_grad
    best = vaelab.gaussian_log_prob(X, mean, value).sum()
    for delta in (-0.05, 0.05):
        assert vaelab.gaussian_log_prob(X, mean, value + delta).sum() < best


def test_optimal_log_sigma_is_floored_for_perfect_reconstruction():
    assert vaelab.optimal_log_sigma(X, X.clone()).item() == vaelab.likelihoods.MIN_LOG_SIGMA == -8.0
    # below the optimum of an always-black dequantised pixel, log(1 / (256 sqrt 12)) = -6.79
    assert vaelab.likelihoods.MIN_LOG_SIGMA < np.log(1 / (256 * np.sqrt(12)))


def test_gaussian_rejects_ambiguous_and_wrong_log_sigma_shapes():
    x = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="ambiguous"):
        vaelab.gaussian_log_prob(x, x, torch.zeros(3))
    with pytest.raises(ValueError, match="log_sigma must be"):
        vaelab.gaussian_log_prob(X, X, torch.zeros(3, dtype=D64))


# ----------------------------------------------------------------------- Beta


def test_beta_matches_torch():
    x = torch.tensor([[0.01, 0.3, 0.5, 0.99]], dtype=D64)
    alpha = torch.tensor([[0.5, 2.0, 1.0, 30.0]], dtype=D64)
    beta = torch.tensor([[0.5, 5.0, 1.0, 0.2]], dtype=D64)
    expected = Beta(alpha, beta).log_prob(x).sum(1)
    torch.testing.assert_close(vaelab.beta_log_prob(x, alpha, beta), expected)


@settings(max_examples=20, deadline=None)
@given(st.floats(min_value=1.0, max_value=40.0), st.floats(min_value=1.0, max_value=40.0))
def test_beta_density_integrates_to_one(a, b):
    x = torch.linspace(1e-9, 1 - 1e-9, 40001, dtype=D64).unsqueeze(1)
    density = vaelab.beta_log_prob(x, torch.full_like(x, a), torch.full_like(x, b)).exp()
    assert torch.trapezoid(density, x.squeeze(1)).item() == pytest.approx(1.0, abs=1e-3)


def test_beta_gradient_is_finite_near_the_boundary():
    x = torch.tensor([[1e-6, 1 - 1e-6]], dtype=D64)
    alpha = torch.tensor([[0.3, 50.0]], dtype=D64, requires_grad=True)
    beta = torch.tensor([[50.0, 0.3]], dtype=D64, requires_grad=True)
    vaelab.beta_log_prob(x, alpha, beta).sum().backward()
    assert torch.isfinite(alpha.grad).all() and torch.isfinite(beta.grad).all()


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: vaelab.bernoulli_log_prob(X + 0.5, LOGITS), r"x must lie in \[0, 1\]"),
        (lambda: vaelab.continuous_bernoulli_log_prob(X - 0.5, LOGITS), r"x must lie in \[0, 1\]"),
        (lambda: vaelab.beta_log_prob(X, X + 1, X + 1), r"x must lie in the open interval \(0, 1\)"),
        (lambda: vaelab.beta_log_prob(X * 0.5 + 0.25, -X - 1, X + 1), r"alpha must lie in the open interval"),
        (lambda: vaelab.bernoulli_log_prob(X, LOGITS[:, :3]), r"x has shape \(2, 4\) but logits has shape \(2, 3\)"),
        (lambda: vaelab.gaussian_log_prob(X, LOGITS[:1], 0.0), r"x has shape \(2, 4\) but mean has shape \(1, 4\)"),
        (lambda: vaelab.bernoulli_log_prob(X, LOGITS * float("nan")), r"logits contains 8 NaN or infinite"),
        (lambda: vaelab.gaussian_log_prob(X, X, torch.tensor(float("inf"))), r"log_sigma contains 1 NaN"),
        (lambda: vaelab.cb_log_norm(torch.tensor([float("inf")])), r"logits contains 1 NaN"),
        (lambda: vaelab.cb_logits_from_mean(torch.tensor([0.0, 0.5])), r"mean must lie in the open interval"),
        (lambda: vaelab.bernoulli_log_prob(X.numpy(), LOGITS), r"x must be a torch.Tensor"),
    ],
)
def test_bad_input_raises_a_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_validation_can_be_switched_off_for_hot_loops():
    from vaelab._checks import no_validation

    with no_validation():
        out = vaelab.bernoulli_log_prob(X + 0.5, LOGITS)
    assert out.shape == (2,)
    with pytest.raises(ValueError, match="x has shape"):
        with no_validation():
            vaelab.bernoulli_log_prob(X, LOGITS[:, :3])


def test_the_bernoulli_density_on_grey_levels_does_not_integrate_to_one():
    x = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    for lam in (0.5, 0.1, 0.9, 0.999, 1e-4):
        logit = torch.tensor(math.log(lam / (1 - lam)), dtype=torch.float64)
        integrand = torch.exp(vaelab.bernoulli_log_prob(x.reshape(-1, 1), logit.expand(x.numel(), 1)))
        integral = torch.trapezoid(integrand, x)
        assert vaelab.bernoulli_log_integral(logit).item() == pytest.approx(math.log(integral.item()), abs=1e-8)
    assert vaelab.bernoulli_log_integral(torch.tensor(0.0)).item() == pytest.approx(math.log(0.5))
