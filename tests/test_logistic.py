"""The discretised logistic: a normalised distribution on the 256 grey levels, stable in its tails."""
import math

import numpy as np
import pytest
import torch

import vaelab
from vaelab.likelihoods.logistic import log1mexp

LEVELS = torch.arange(256, dtype=torch.float64) / 255
MEANS = [-3.0, -0.2, 0.0, 0.3, 0.5, 0.99, 1.0, 1.4, 4.0]
LOG_SCALES = [-8.0, -6.0, -3.0, -1.0, 0.0, 2.0]


def all_levels(mean, log_scale, dtype=torch.float64):
    """log P(k) for k = 0..255 at one (mean, log_scale): shape (256,)."""
    x = LEVELS.to(dtype).reshape(256, 1)
    m = torch.full_like(x, mean)
    s = torch.full_like(x, log_scale)
    return vaelab.discretized_logistic_log_prob(x, m, s, per_dim=True).reshape(256)


@pytest.mark.parametrize("mean", MEANS)
@pytest.mark.parametrize("log_scale", LOG_SCALES)
def test_the_probabilities_of_the_256_levels_sum_to_one(mean, log_scale):
    log_p = all_levels(mean, log_scale)
    assert bool((log_p <= 1e-12).all())
    assert torch.logsumexp(log_p, 0).item() == pytest.approx(0.0, abs=1e-9)
    # in float32, x - mean carries a rounding error of ~6e-8, magnified by 1/s (2981 at the floor)
    tolerance = 1e-5 + 1e-7 * math.exp(-log_scale)
    assert torch.logsumexp(all_levels(mean, log_scale, torch.float32), 0).item() == pytest.approx(0.0, abs=tolerance)


def test_against_the_difference_of_logistic_cdfs():
    mean, log_scale = 0.37, -2.5
    s, h = math.exp(log_scale), 0.5 / 255
    cdf = lambda v: 1 / (1 + math.exp(-(v - mean) / s))  # noqa: E731
    log_p = all_levels(mean, log_scale)
    for k in (1, 50, 94, 95, 200, 254):
        x = k / 255
        assert log_p[k].item() == pytest.approx(math.log(cdf(x + h) - cdf(x - h)), rel=1e-10)
    assert log_p[0].item() == pytest.approx(math.log(cdf(h)), rel=1e-10)  # the edge bins take the tails
    assert log_p[255].item() == pytest.approx(math.log(1 - cdf(1 - h)), rel=1e-10)
    expected = torch.distributions.TransformedDistribution(
        torch.distributions.Uniform(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)),
        [torch.distributions.transforms.SigmoidTransform().inv,
         torch.distributions.transforms.AffineTransform(torch.tensor(mean, dtype=torch.float64),
                                                        torch.tensor(s, dtype=torch.float64))])
    # the same bin probability from torch.distributions' logistic CDF
    upper = torch.tensor(100 / 255 + h, dtype=torch.float64)
    lower = torch.tensor(100 / 255 - h, dtype=torch.float64)
    cdf_torch = lambda v: expected.cdf(v.double())  # noqa: E731
    assert log_p[100].item() == pytest.approx(math.log(float(cdf_torch(upper) - cdf_torch(lower))), rel=1e-8)


def test_narrow_bins_far_in_the_tails_stay_exact_where_the_naive_difference_fails():
    # s = exp(-8): a level 0.5 away from the mean is 1450 scales out; both CDFs round to 1 in float32
    level = 128 / 255
    x = torch.tensor([[level]], dtype=torch.float32)
    mean, log_scale = torch.tensor([[0.0]]), torch.tensor([[-8.0]])
    naive = torch.log(torch.sigmoid((x + 0.5 / 255 - mean) / math.exp(-8)) - torch.sigmoid((x - 0.5 / 255 - mean) / math.exp(-8)))
    assert not torch.isfinite(naive).all()
    got = vaelab.discretized_logistic_log_prob(x, mean, log_scale)
    a, b = (float(x) + 0.5 / 255) * math.exp(8), (float(x) - 0.5 / 255) * math.exp(8)
    # for a, b >> 1: sigmoid(a) - sigmoid(b) = e^-b - e^-a to relative precision e^-b
    assert got.item() == pytest.approx(-b + math.log1p(-math.exp(b - a)), rel=1e-6)
    assert log1mexp(torch.tensor([1e-12, 0.5, 50.0], dtype=torch.float64)).tolist() == pytest.approx(
        [math.log(1e-12), math.log(1 - math.exp(-0.5)), -math.exp(-50.0)], rel=1e-9)


@pytest.mark.parametrize("mean, log_scale", [(0.4, -2.0), (0.0, -7.9), (1.0, -7.0), (-5.0, 1.0), (0.5, -6.5)])  # -7.9: not on the clamp
def test_gradients_are_finite_and_match_finite_differences(mean, log_scale):
    x = (torch.tensor([[0.0, 3.0, 128.0, 254.0, 255.0]], dtype=torch.float64) / 255)
    m = torch.full_like(x, mean, requires_grad=True)
    s = torch.full_like(x, log_scale, requires_grad=True)
    torch.autograd.gradcheck(
        lambda mm, ss: vaelab.discretized_logistic_log_prob(x, mm, ss, per_dim=True), (m, s), eps=1e-7, atol=1e-5)
    m32, s32 = m.detach().float().requires_grad_(), s.detach().float().requires_grad_()
    vaelab.discretized_logistic_log_prob(x.float(), m32, s32).sum().backward()
    assert torch.isfinite(m32.grad).all() and torch.isfinite(s32.grad).all()


def test_the_mean_is_the_expected_grey_level():
    for mean, log_scale in [(0.3, -3.0), (-1.0, 0.0), (0.8, -8.0), (0.5, 3.0)]:
        expected = (all_levels(mean, log_scale).exp() * LEVELS).sum().item()
        got = vaelab.discretized_logistic_mean(torch.tensor([mean], dtype=torch.float64),
                                               torch.tensor([log_scale], dtype=torch.float64)).item()
        assert got == pytest.approx(expected, abs=1e-9)


def test_bad_input_is_refused_with_what_to_do():
    x = torch.tensor([[0.5]])
    with pytest.raises(ValueError, match=r"x must hold grey levels k / 255 .* Pass the original images"):
        vaelab.discretized_logistic_log_prob(x, x, x)
    grey = torch.tensor([[128 / 255]])
    with pytest.raises(ValueError, match=r"x has shape \(1, 1\) but mean has shape \(1, 2\); they must be equal"):
        vaelab.discretized_logistic_log_prob(grey, torch.zeros(1, 2), torch.zeros(1, 1))
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        vaelab.discretized_logistic_log_prob(grey + 1, grey, grey)


def test_a_discretised_logistic_vae_trains_and_scores_exact_bits_per_dim():
    grey = (torch.linspace(0, 1, 64 * 16).reshape(64, 1, 4, 4).remainder(0.93) * 255).round() / 255
    model = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(16,), latent_dim=2, likelihood="discretized_logistic", seed=0)
    untrained = vaelab.iw_log_likelihood(model, grey, k=8)["bits_per_dim"]
    history = vaelab.fit(model, grey, test_data=grey, epochs=20, batch_size=16, lr=3e-3, progress=False)
    assert history.epochs["test_elbo"][-1] > history.epochs["test_elbo"][0]
    result = vaelab.iw_log_likelihood(model, grey, k=8)  # a probability: bits/dim with no dequantisation term
    assert np.isfinite(result["bits_per_dim"]) and 0 < result["bits_per_dim"] < untrained - 1
    with torch.no_grad():
        recon = model.reconstruct(grey)
    assert recon.shape == grey.shape and float(recon.min()) >= 0 and float(recon.max()) <= 1
    # and a sweep of it equals separate fits (the head has no parameters: scored outside vmap)
    models = [vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(16,), latent_dim=2, likelihood="discretized_logistic",
                             seed=0) for _ in range(2)]
    histories = vaelab.sweep(models, grey, betas=[0.5, 2.0], steps=6, batch_size=16, progress=False)
    for beta, h in zip([0.5, 2.0], histories):
        separate = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(16,), latent_dim=2, likelihood="discretized_logistic",
                                  seed=0)
        reference = vaelab.fit(separate, grey, objective=vaelab.Objective(beta=beta), steps=6, batch_size=16,
                               progress=False)
        np.testing.assert_allclose(h["objective"], reference["objective"], rtol=1e-4)
