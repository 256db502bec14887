"""Held-out metrics against closed forms, quadrature and hand-computed cases."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vaelab
from vaelab.models import VAE, make_head


def linear_vae(enc_weight, enc_bias, dec_weight, dec_bias, *, data_shape, log_sigma=0.0):
    """A VAE with one linear encoder layer, one linear decoder layer and a fixed-sigma Gaussian head."""
    dim, latent = math.prod(data_shape), dec_weight.shape[1]
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(dim, 2 * latent))
    decoder = nn.Sequential(nn.Linear(latent, dim), nn.Unflatten(1, data_shape))
    with torch.no_grad():
        encoder[1].weight.copy_(enc_weight)
        encoder[1].bias.copy_(enc_bias)
        decoder[0].weight.copy_(dec_weight)
        decoder[0].bias.copy_(dec_bias)
    head = make_head("gaussian", data_shape, sigma="fixed", log_sigma=log_sigma)
    return VAE(encoder, decoder, head, data_shape=data_shape, latent_dim=latent)


# p(z) = N(0, I), p(x|z) = N(Wz + b, sigma^2 I): p(x) = N(b, W W^T + sigma^2 I). W has orthogonal
# columns, so the exact posterior N(A (x - b), S) has a diagonal S and the encoder can represent it.
W = torch.tensor([[0.8, 0.6], [0.8, -0.6], [0.0, 0.6]], dtype=torch.float64)
B = torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64)
SIGMA = 0.5
S = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + W.T @ W / SIGMA**2)
A = S @ W.T / SIGMA**2
X3 = torch.tensor([[0.5, -1.0, 0.3], [0.0, 0.0, 0.0], [1.5, 1.0, -0.7], [-0.4, 0.9, 2.0]]).reshape(4, 1, 1, 3)
EXACT = torch.distributions.MultivariateNormal(B, W @ W.T + SIGMA**2 * torch.eye(3, dtype=torch.float64)).log_prob(
    X3.double().reshape(4, 3)
)


def gaussian_model(mean_shift=0.0, logvar_shift=0.0):
    enc_weight = torch.cat([A, torch.zeros(2, 3, dtype=torch.float64)])
    enc_bias = torch.cat([-(A @ B) + mean_shift, torch.log(torch.diagonal(S)) + logvar_shift])
    return linear_vae(enc_weight.float(), enc_bias.float(), W.float(), B.float(), data_shape=(1, 1, 3), log_sigma=math.log(SIGMA))


def test_exact_posterior_makes_every_importance_weight_the_marginal():
    result = vaelab.iw_log_likelihood(gaussian_model(), X3, k=3)
    torch.testing.assert_close(result["log_likelihood"], EXACT, rtol=0, atol=2e-6)
    assert result["nll"] == pytest.approx(-float(EXACT.mean()), abs=2e-6)
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (3 * math.log(2)))
    assert result["k"] == 3 and result["log_likelihood"].dtype == torch.float64


def test_importance_weighting_closes_the_gap_of_an_imperfect_encoder():
    model = gaussian_model(mean_shift=0.1, logvar_shift=0.3)
    assert float(EXACT.mean()) - vaelab.elbo(model, X3)["elbo"] > 0.5  # the ELBO's gap: 0.53 nats
    iw = vaelab.iw_log_likelihood(model, X3, k=2000, seed=1)["log_likelihood"]
    assert (iw - EXACT).abs().max() < 0.04  # 2000 samples close it to ~0.01 (standard deviation over seeds)


def test_k1_estimate_has_the_elbo_as_its_expectation():
    model = gaussian_model(mean_shift=0.4, logvar_shift=0.6)
    x = (torch.arange(3000 * 3, dtype=torch.float32).reshape(3000, 1, 1, 3) * 0.61803).remainder(1.0) * 3 - 1.5
    log_w = vaelab.iw_log_likelihood(model, x, k=1, seed=0)["log_likelihood"]
    standard_error = float(log_w.std()) / math.sqrt(len(log_w))
    assert standard_error < 0.06
    assert float(log_w.mean()) == pytest.approx(vaelab.elbo(model, x)["elbo"], abs=3 * standard_error)


def test_bernoulli_marginal_equals_quadrature_over_a_one_dimensional_latent():
    model = vaelab.mlp_vae(data_shape=(1, 2, 2), hidden=(8,), latent_dim=1, seed=3)
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).reshape(16, 1, 2, 2)
    z = torch.linspace(-10, 10, 40001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        logits = model.decode(z.float())["logits"].double().flatten(1)[:, None]  # (grid, 1, 4)
    log_joint = (x.double().flatten(1) * logits - F.softplus(logits)).sum(2) - 0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    exact = torch.logsumexp(log_joint, 0) + math.log(float(z[1] - z[0]))
    assert float(exact.exp().sum()) == pytest.approx(1.0, abs=1e-9)  # 16 binary images: a distribution
    iw = vaelab.iw_log_likelihood(model, x, k=2000, seed=0)
    assert (iw["log_likelihood"] - exact).abs().max() < 0.03
    assert float(iw["log_likelihood"].exp().sum()) == pytest.approx(1.0, abs=0.02)
    assert -float(exact.mean()) < -vaelab.elbo(model, x)["elbo"] - 0.1


def test_chunking_does_not_change_the_samples():
    model = vaelab.mlp_vae(data_shape=(1, 3, 3), hidden=(8,), latent_dim=2, seed=0)
    x = (torch.linspace(0, 1, 5 * 9).reshape(5, 1, 3, 3) * 7.3).remainder(1.0).round()  # binary pixels
    whole = vaelab.iw_log_likelihood(model, x, k=150, k_chunk=150, batch_size=2, seed=4)["log_likelihood"]
    chunked = vaelab.iw_log_likelihood(model, x, k=150, k_chunk=7, batch_size=2, seed=4)["log_likelihood"]
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)  # same samples; float32 decoder rounding only
    other_seed = vaelab.iw_log_likelihood(model, x, k=150, k_chunk=7, batch_size=2, seed=5)["log_likelihood"]
    assert (other_seed - whole).abs().max() > 1e-4


def test_iw_bound_rises_above_the_elbo_of_a_trained_model():
    data = (torch.linspace(0, 1, 200 * 16).reshape(200, 1, 4, 4) * 7.3).remainder(1.0).round()
    model = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(32,), latent_dim=2, seed=0)
    vaelab.fit(model, data, epochs=15, batch_size=50, lr=1e-2, progress=False, device="cpu")
    elbo = vaelab.elbo(model, data)["elbo"]
    k1 = vaelab.iw_log_likelihood(model, data, k=1)["nll"]
    k100 = vaelab.iw_log_likelihood(model, data, k=100)["nll"]
    assert k1 == pytest.approx(-elbo, abs=0.15)
    assert -k100 > elbo + 0.2


@pytest.mark.parametrize("measure", [
    lambda m, x: vaelab.elbo(m, x),
    lambda m, x: vaelab.iw_log_likelihood(m, x, k=7),
    lambda m, x: vaelab.rate_distortion(m, x),
    lambda m, x: vaelab.kl_per_dim(m, x),
    lambda m, x: vaelab.active_units(m, x),
    lambda m, x: vaelab.mutual_information(m, x),
], ids=["elbo", "iw_log_likelihood", "rate_distortion", "kl_per_dim", "active_units", "mutual_information"])
def test_metrics_build_no_autograd_graph(measure):
    """An evaluation must not keep activations for a backward pass (memory grows with k and the data)."""
    model = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, likelihood="gaussian", sigma="shared",
                           seed=0)
    data = torch.rand(30, 1, 4, 4)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(1) or t, lambda t: t):
        result = measure(model, data)
    assert not saved
    values = result.values() if isinstance(result, dict) else [result]
    assert not any(torch.is_tensor(v) and v.requires_grad for v in values)


def test_iw_needs_k_of_at_least_one():
    with pytest.raises(ValueError, match=r"k must be an integer >= 1, got 0"):
        vaelab.iw_log_likelihood(gaussian_model(), X3, k=0)


# ------------------------------------------------------------ per-latent diagnostics

# One-pixel data; mu = (1, 0.05, 0) * x + (0, 0, 0.3), logvar = (-1, 0, 2).
X1 = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0, 0.4]).reshape(6, 1, 1, 1)


def pixel_model():
    enc_weight = torch.tensor([[1.0], [0.05], [0.0], [0.0], [0.0], [0.0]])
    enc_bias = torch.tensor([0.0, 0.0, 0.3, -1.0, 0.0, 2.0])
    return linear_vae(enc_weight, enc_bias, torch.zeros(1, 3), torch.zeros(1), data_shape=(1, 1, 1))


def test_active_units_count_variances_of_the_posterior_mean():
    result = vaelab.active_units(pixel_model(), X1)
    pixel_variance = float(X1.double().var(correction=0))  # 0.1356 for these pixels
    torch.testing.assert_close(result["variance"], torch.tensor([1.0, 0.0025, 0.0], dtype=torch.float64) * pixel_variance)
    assert result["count"] == 1
    assert vaelab.active_units(pixel_model(), X1, threshold=1e-4)["count"] == 2


def test_kl_per_dim_is_the_mean_closed_form_kl_and_sums_to_the_elbo_term():
    mu = X1.double().flatten()[:, None] * torch.tensor([1.0, 0.05, 0.0], dtype=torch.float64) + torch.tensor([0, 0, 0.3])
    logvar = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    expected = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).mean(0)
    result = vaelab.kl_per_dim(pixel_model(), X1, batch_size=4)
    torch.testing.assert_close(result, expected, rtol=1e-6, atol=1e-9)
    assert float(result.sum()) == pytest.approx(vaelab.elbo(pixel_model(), X1)["kl"], rel=1e-6)


def encoder_model(scale, logvar):
    """One-pixel data, one latent: q(z|x) = N(scale * x, exp(logvar))."""
    return linear_vae(torch.tensor([[scale], [0.0]]), torch.tensor([0.0, logvar]), torch.zeros(1, 1), torch.zeros(1), data_shape=(1, 1, 1))


def test_mutual_information_is_zero_when_every_posterior_is_the_prior():
    x = torch.linspace(0, 1, 40).reshape(40, 1, 1, 1)
    assert vaelab.mutual_information(encoder_model(0.0, 0.0), x) == pytest.approx(0.0, abs=1e-9)


def test_mutual_information_is_log_n_for_separated_posteriors():
    x = torch.linspace(0, 1, 50).reshape(50, 1, 1, 1)
    assert vaelab.mutual_information(encoder_model(1000.0, -10.0), x, batch_size=16) == pytest.approx(math.log(50), abs=1e-6)


def test_mutual_information_of_two_overlapping_clusters_matches_quadrature():
    # Half the examples have q(z|x) = N(-1, 1), half N(+1, 1): I(x; z) is the information z
    # carries about the cluster, a number below log 2 computed here by quadrature.
    x = torch.cat([torch.zeros(1000), torch.ones(1000)]).reshape(2000, 1, 1, 1)
    model = linear_vae(torch.tensor([[2.0], [0.0]]), torch.tensor([-1.0, 0.0]), torch.zeros(1, 1), torch.zeros(1), data_shape=(1, 1, 1))
    z = torch.linspace(-12, 12, 200001, dtype=torch.float64)
    left, right = (torch.exp(-0.5 * (z - c) ** 2) / math.sqrt(2 * math.pi) for c in (-1.0, 1.0))
    mixture = 0.5 * (left + right)
    exact = float((0.5 * left * torch.log(left / mixture) + 0.5 * right * torch.log(right / mixture)).sum() * (z[1] - z[0]))
    assert exact == pytest.approx(0.3368, abs=1e-4)
    estimate = vaelab.mutual_information(model, x, batch_size=700, seed=0)
    assert estimate == pytest.approx(exact, abs=0.035)  # standard deviation over seeds: 0.011


# -------------------------------------------------------------------------- MIG


def test_mig_of_a_hand_computed_case():
    factor = torch.tensor([0, 0, 1, 1])
    exact_code = torch.tensor([0.0, 0.0, 1.0, 1.0])
    partial_code = torch.tensor([0.0, 0.0, 0.0, 1.0])
    # I(partial; factor) = H(3/4, 1/4) - H(partial | factor) = H(3/4, 1/4) - log(2) / 2
    partial = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) - 0.5 * math.log(2)
    result = vaelab.mig_from_codes(torch.stack([exact_code, partial_code], 1), factor, n_bins=2)
    assert result["mig"] == pytest.approx((math.log(2) - partial) / math.log(2))  # 0.6887
    assert result["per_factor"].shape == (1,)


# A full grid: shape 0..4 x scale 0..2 x 4 repetitions, so factors and repetition index are
# exactly independent in the data.
GRID = torch.tensor(list(itertools.product(range(5), range(3), range(4))))


def test_mig_is_one_for_axis_aligned_codes_and_zero_for_codes_that_ignore_the_factors():
    factors = GRID[:, :2]
    repetition = GRID[:, 2].double()
    aligned = torch.stack([GRID[:, 1] * 0.3, repetition, GRID[:, 0] * 2.0 - 1.0], 1)
    result = vaelab.mig_from_codes(aligned, factors)
    torch.testing.assert_close(result["per_factor"], torch.tensor([1.0, 1.0], dtype=torch.float64))
    ignoring = torch.stack([repetition, repetition**2, -repetition], 1)
    assert vaelab.mig_from_codes(ignoring, factors)["mig"] == pytest.approx(0.0, abs=1e-12)


def test_mig_of_a_model_uses_its_posterior_means_and_checks_factor_length():
    x = GRID[:, :1].float().reshape(-1, 1, 1, 1) / 4  # the pixel is the first factor
    model = linear_vae(
        torch.tensor([[1.0], [0.0], [0.0], [0.0]]), torch.tensor([0.0, 0.5, 0.0, 0.0]),
        torch.zeros(1, 2), torch.zeros(1), data_shape=(1, 1, 1),
    )
    result = vaelab.mig(model, x, GRID[:, :2])
    torch.testing.assert_close(result["per_factor"], torch.tensor([1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"factors must have shape \(N, K\) with one row of labels per example, N = 60; got shape \(59, 2\)"):
        vaelab.mig(model, x, GRID[:59, :2])
    with pytest.raises(ValueError, match="factors must hold integer factor labels"):
        vaelab.mig(model, x, GRID[:, :2].float())


# ------------------------------------------------------------ dequantised units


def test_a_uniform_decoder_whose_posterior_is_the_prior_scores_exactly_8_bits_per_dim():
    # Beta(1, 1) is uniform on (0, 1): log p(y | z) = 0 for every y, and q(z|x) = p(z) makes every weight 1.
    model = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, likelihood="beta", seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.decoder[0][-1].bias.fill_(math.log(math.expm1(1 - 1e-4)))  # softplus(b) + 1e-4 = 1
    grey = torch.randint(0, 256, (50, 1, 4, 4)).float() / 255
    y = vaelab.dequantize(grey, generator=torch.Generator().manual_seed(0))
    result = vaelab.iw_log_likelihood(model, y, k=4, levels=256)
    # The Beta head squeezes x into [1e-3, 1 - 1e-3] and counts the map's slope, so the uniform
    # Beta(1, 1) gives x the density 1 - 2e-3 (its mass outside the squeezed interval is lost)
    slope = 1 - 2e-3
    assert result["nll"] == pytest.approx(-16 * math.log(slope), abs=1e-4)
    assert result["bits_per_dim"] == pytest.approx(8.0 - math.log2(slope), abs=1e-5)
    assert vaelab.iw_log_likelihood(model, y, k=4)["bits_per_dim"] == pytest.approx(-math.log2(slope), abs=1e-5)
    # The continuous Bernoulli with lambda = 1/2 is exactly uniform on [0, 1]: exactly 8 bits
    uniform = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, likelihood="continuous_bernoulli", seed=0)
    with torch.no_grad():
        for p in uniform.parameters():
            p.zero_()
    assert vaelab.iw_log_likelihood(uniform, y, k=4, levels=256)["bits_per_dim"] == pytest.approx(8.0, abs=1e-6)
    with pytest.raises(ValueError, match="levels must be an integer >= 2"):
        vaelab.iw_log_likelihood(model, y, k=4, levels=1)


def test_gaussian_baseline_is_the_maximum_likelihood_gaussian_that_ignores_the_input():
    gen = torch.Generator().manual_seed(0)
    train = torch.rand(500, 1, 3, 3, generator=gen, dtype=torch.float64) * torch.linspace(0.1, 1, 9).reshape(1, 1, 3, 3)
    test = train[:100].flip(0)
    mean = train.mean(0)
    for mode, var in (("shared", (train - mean).square().mean()), ("per_pixel", (train - mean).square().mean(0))):
        result = vaelab.gaussian_baseline(train, test, sigma=mode)
        reference = torch.distributions.Normal(mean, var.sqrt()).log_prob(test).sum((1, 2, 3)).mean()
        assert result["nll"] == pytest.approx(-float(reference), rel=1e-9)
        assert result["bits_per_dim"] == pytest.approx(result["nll"] / (9 * math.log(2)))
        assert vaelab.gaussian_baseline(train, test, sigma=mode, levels=256)["bits_per_dim"] == pytest.approx(
            result["bits_per_dim"] + 8)
    per_pixel = vaelab.gaussian_baseline(train, test, sigma="per_pixel")
    assert per_pixel["nll"] < vaelab.gaussian_baseline(train, test, sigma="shared")["nll"]  # pixels differ in spread
    with pytest.raises(ValueError, match="sigma must be one of 'shared', 'per_pixel'"):
        vaelab.gaussian_baseline(train, test, sigma="learned")


def test_principal_variances_are_the_covariance_eigenvalues():
    gen = torch.Generator().manual_seed(0)
    directions = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))[0]
    scales = torch.tensor([3.0, 1.0, 0.5, 0.1, 0.01, 0.001], dtype=torch.float64)
    codes = torch.randn(20000, 6, generator=gen, dtype=torch.float64) * scales
    images = (codes @ directions.T).reshape(-1, 1, 2, 3)
    variances = vaelab.principal_variances(images)
    np.testing.assert_allclose(variances.numpy(), (scales**2).numpy(), rtol=0.05)
    assert int((variances > 0.2**2).sum()) == 3  # the directions a fixed sigma of 0.2 leaves room for


def test_rate_distortion_matches_the_elbo_terms_and_the_squared_error():
    model = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, likelihood="gaussian", log_sigma=-1.0, seed=0)
    x = torch.rand(30, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    result, e = vaelab.rate_distortion(model, x, seed=3), vaelab.elbo(model, x, seed=3)
    assert result["rate"] == pytest.approx(e["kl"]) and result["recon"] == pytest.approx(e["recon"])
    # a Gaussian with fixed sigma: recon = SSE / (2 sigma^2) + (D / 2) log(2 pi sigma^2)
    sigma2 = math.exp(-2.0)
    assert result["recon"] == pytest.approx(result["sse"] / (2 * sigma2) + 8 * math.log(2 * math.pi * sigma2), rel=1e-6)


def test_pixel_baseline_recovers_the_closed_form_fits():
    gen = torch.Generator().manual_seed(0)
    k = torch.randint(0, 256, (3000, 1, 2, 2), generator=gen) * torch.tensor([1, 0, 1, 1]).reshape(1, 1, 2, 2)
    grey = (k.float() / 255).clamp(0, 1)
    y = vaelab.dequantize(grey, generator=gen)
    # the Gaussian per pixel is the closed form
    closed = vaelab.gaussian_baseline(y, y[:500], sigma="per_pixel", levels=256)
    fitted = vaelab.pixel_baseline(y, y[:500], likelihood="gaussian", levels=256)
    assert fitted["bits_per_dim"] == pytest.approx(closed["bits_per_dim"], rel=1e-6)
    assert fitted["grad_max"] < 1e-8
    # the continuous Bernoulli is an exponential family in x: at the maximum its mean equals the data's mean,
    # for the always-black pixel too (a logit near -500, far beyond what a few hundred Adam steps reach)
    cb = vaelab.pixel_baseline(y, y[:500], likelihood="continuous_bernoulli", levels=256)
    logits = cb["params"]["logits"].double()
    torch.testing.assert_close(vaelab.cb_mean(logits), y.double().mean(0), atol=1e-7, rtol=0)
    assert logits[0, 0, 1] < -400 and cb["grad_max"] < 1e-6
    # scored as torch's CB where torch is exact; at logit -500 (torch clips probabilities at 1e-16) as the
    # normalised exponential density |eta| exp(eta x) / (1 - exp(eta)) that the CB becomes there
    x = y[:500].double()
    log_p = torch.distributions.ContinuousBernoulli(logits=logits).log_prob(x)
    eta = logits[0, 0, 1]
    log_p[:, 0, 0, 1] = (-eta).log() + eta * x[:, 0, 0, 1] - torch.log(-torch.expm1(eta))
    assert cb["nll"] == pytest.approx(float(-log_p.sum((1, 2, 3)).mean()), rel=1e-6)
    with pytest.raises(ValueError, match="binary test images"):
        vaelab.pixel_baseline(y, y, likelihood="bernoulli")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        vaelab.pixel_baseline(y, y, likelihood="poisson")


def test_beta_baseline_is_the_maximum_likelihood_beta_of_each_pixel():
    samples = torch.distributions.Beta(torch.tensor([[[0.5, 2.0], [5.0, 0.3]]]), torch.tensor([[[0.5, 5.0], [1.0, 3.0]]]))
    torch.manual_seed(3)
    train = samples.sample((4000,)).double().clamp(0, 1)
    test = samples.sample((300,)).double().clamp(0, 1)
    result = vaelab.pixel_baseline(train, test, likelihood="beta")
    assert result["grad_max"] < 1e-8
    squeeze = 1e-3
    alpha, beta = result["params"]["alpha"].double(), result["params"]["beta"].double()

    def mean_log_lik(a, b, x):
        squeezed = x * (1 - 2 * squeeze) + squeeze
        return float((torch.distributions.Beta(a, b).log_prob(squeezed) + math.log(1 - 2 * squeeze)).sum((1, 2, 3)).mean())

    # the fit is a maximum of the training likelihood: every nudge of a parameter lowers it
    best = mean_log_lik(alpha, beta, train)
    for nudge in (0.99, 1.01):
        assert mean_log_lik(alpha * nudge, beta, train) < best and mean_log_lik(alpha, beta * nudge, train) < best
    assert result["nll"] == pytest.approx(-mean_log_lik(alpha, beta, test), rel=1e-5)
    # and near the generating parameters (4000 draws per pixel), except alpha = 0.3, whose draws pile up within
    # the squeeze of 0, where the squeezed data are no longer Beta(0.3, 3)
    torch.testing.assert_close(alpha.flatten()[:3], torch.tensor([0.5, 2.0, 5.0], dtype=torch.float64), rtol=0.1, atol=0)


def test_bernoulli_baseline_is_each_pixels_training_mean():
    gen = torch.Generator().manual_seed(2)
    grey = torch.rand(400, 1, 3, 3, generator=gen)
    grey[:, :, 0, 0] = 0.0  # an always-black pixel: the clip keeps its log-probability finite
    test = vaelab.data.binarize(grey[:100], method="sample", generator=gen)
    test[0, 0, 0, 0] = 1.0
    result = vaelab.pixel_baseline(grey, test, likelihood="bernoulli")
    p = grey.double().mean(0).clamp(1e-6, 1 - 1e-6)
    expected = -torch.distributions.Bernoulli(probs=p).log_prob(test.double()).flatten(1).sum(1).mean()
    assert result["nll"] == pytest.approx(float(expected), rel=1e-10)
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (9 * math.log(2)))


def test_histogram_baseline_is_the_smoothed_frequency_of_each_level():
    train = torch.tensor([[0.0, 1.0], [0.0, 128 / 255], [0.0, 1.0]]).reshape(3, 1, 1, 2)
    test = torch.tensor([[0.0, 1.0]]).reshape(1, 1, 1, 2)
    result = vaelab.histogram_baseline(train, test, pseudocount=0.5)
    expected = math.log((3 + 0.5) / (3 + 128)) + math.log((2 + 0.5) / (3 + 128))
    assert result["nll"] == pytest.approx(-expected)
    assert result["bits_per_dim"] == pytest.approx(-expected / (2 * math.log(2)))
    # a pixel that is black in every training image costs almost nothing: the histogram's advantage
    black = torch.zeros(1000, 1, 1, 1)
    assert vaelab.histogram_baseline(black, black[:1])["nll"] == pytest.approx(-math.log(1001 / 1256))
    with pytest.raises(ValueError, match=r"test must hold grey levels k / 255"):
        vaelab.histogram_baseline(train, test * 0.5 + 0.001)


def test_discretised_logistic_baseline_needs_no_dequantisation():
    gen = torch.Generator().manual_seed(1)
    grey = torch.randint(0, 256, (2000, 1, 2, 2), generator=gen).float() / 255
    result = vaelab.pixel_baseline(grey, grey[:300], likelihood="discretized_logistic", steps=800)
    assert result["grad_max"] < 1e-4  # Adam, then L-BFGS: converged
    # uniform grey levels: a logistic cannot be flat on [0, 1] (its tails pile into the edge bins), so the
    # best one is a little worse than the 8 bits of a uniform model; and its result is a probability, not a density
    assert 8.0 < result["bits_per_dim"] < 8.5


# ------------------------------------------------------------ per-example scores


def test_bits_per_dim_of_a_tensor_is_the_float_rule_element_by_element():
    nll = torch.tensor([0.0, 543.21, -20.5, 1e4], dtype=torch.float64)
    for levels in (None, 256):
        per_example = vaelab.bits_per_dim(nll, 784, levels=levels)
        assert torch.is_tensor(per_example) and per_example.shape == (4,)
        expected = [vaelab.bits_per_dim(float(v), 784, levels=levels) for v in nll]
        torch.testing.assert_close(per_example, torch.tensor(expected, dtype=torch.float64), rtol=1e-15, atol=0)
    assert isinstance(vaelab.bits_per_dim(543.21, 784), float)


def assert_per_example(result, names, n):
    """``result["per_example"]`` holds exactly ``names``, each ``(n,)`` float64 on the CPU with the scalar as its mean."""
    assert set(result["per_example"]) == set(names)
    for name in names:
        values = result["per_example"][name]
        assert values.shape == (n,) and values.dtype == torch.float64 and values.device.type == "cpu"
        assert float(values.mean()) == pytest.approx(result[name], rel=1e-12, abs=1e-12)


def test_elbo_per_example_is_each_images_terms_in_data_order():
    # The decoder ignores z (zero weights): log p(x|z) = log N(x; 0, 1) whatever the noise, so each term is known
    model = pixel_model()
    result = vaelab.elbo(model, X1, batch_size=4, per_example=True)
    assert_per_example(result, ["elbo", "recon", "kl"], 6)
    x = X1.double().flatten()
    mu = x[:, None] * torch.tensor([1.0, 0.05, 0.0], dtype=torch.float64) + torch.tensor([0, 0, 0.3], dtype=torch.float64)
    logvar = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    each = result["per_example"]
    torch.testing.assert_close(each["recon"], 0.5 * x**2 + 0.5 * math.log(2 * math.pi), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(each["kl"], 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(each["elbo"], -(each["recon"] + each["kl"]), rtol=0, atol=0)
    reversed_each = vaelab.elbo(model, X1.flip(0), batch_size=4, per_example=True)["per_example"]
    for name in ("elbo", "recon", "kl"):
        torch.testing.assert_close(reversed_each[name], each[name].flip(0), rtol=1e-6, atol=1e-7)


def test_per_example_adds_a_key_and_moves_no_number():
    model = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, likelihood="gaussian", sigma="shared", seed=0)
    data = torch.rand(37, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    train = torch.rand(60, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    binary = (train[:25] > 0.5).float()
    grey = (train * 255).round() / 255
    measures = {
        "elbo": lambda **o: vaelab.elbo(model, data, batch_size=10, **o),
        "iw": lambda **o: vaelab.iw_log_likelihood(model, data, k=9, batch_size=10, levels=256, **o),
        "gaussian": lambda **o: vaelab.gaussian_baseline(train, train[:25], levels=256, **o),
        "pixel": lambda **o: vaelab.pixel_baseline(train, train[:25], likelihood="beta", levels=256, steps=5,
                                                   batch_size=7, **o),
        "bernoulli": lambda **o: vaelab.pixel_baseline(train, binary, likelihood="bernoulli", **o),
        "histogram": lambda **o: vaelab.histogram_baseline(grey, grey[:25], **o),
    }
    for name, measure in measures.items():
        plain, with_examples = measure(), measure(per_example=True)
        assert "per_example" not in plain
        names = ["elbo", "recon", "kl"] if name == "elbo" else ["nll", "bits_per_dim"]
        assert_per_example(with_examples, names, 37 if name in ("elbo", "iw") else 25)
        for key, value in plain.items():
            if isinstance(value, float):
                assert with_examples[key] == value, (name, key)  # exactly: the stored numbers do not move
    with pytest.raises(ValueError, match="per_example must be True or False, got 1"):
        vaelab.elbo(model, data, per_example=1)


def test_iw_per_example_is_each_images_estimate_in_data_order():
    # the exact posterior makes every importance weight p(x): each example's nll is -log p(x), whatever the noise
    result = vaelab.iw_log_likelihood(gaussian_model(), X3, k=3, batch_size=3, per_example=True)
    assert_per_example(result, ["nll", "bits_per_dim"], 4)
    torch.testing.assert_close(result["per_example"]["nll"], -EXACT, rtol=0, atol=2e-6)
    torch.testing.assert_close(result["per_example"]["nll"], -result["log_likelihood"], rtol=0, atol=0)
    torch.testing.assert_close(result["per_example"]["bits_per_dim"], -EXACT / (3 * math.log(2)), rtol=0, atol=2e-6)
    reversed_nll = vaelab.iw_log_likelihood(gaussian_model(), X3.flip(0), k=3, per_example=True)["per_example"]["nll"]
    torch.testing.assert_close(reversed_nll, -EXACT.flip(0), rtol=0, atol=2e-6)
    dequantised = vaelab.iw_log_likelihood(gaussian_model(), X3, k=3, levels=256, per_example=True)
    torch.testing.assert_close(dequantised["per_example"]["bits_per_dim"], -EXACT / (3 * math.log(2)) + 8, rtol=0, atol=2e-6)


# Sentences of lengths 5, 3, 4, 3, 5, 4: sorted by length they come in another order than the data's
SENTENCE_TOKENS = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0], [1, 9, 5, 2, 0], [1, 4, 2, 0, 0], [1, 6, 6, 4, 2],
                                [1, 7, 8, 2, 0]])
SENTENCE_LENGTHS = torch.tensor([5, 3, 4, 3, 5, 4])


def test_sentence_scores_per_example_follow_the_data_order_not_the_length_batches():
    model = vaelab.SentenceVAE(10, embed_dim=8, hidden_dim=12, latent_dim=4, seed=0)
    data = vaelab.data.Sentences(SENTENCE_TOKENS, SENTENCE_LENGTHS)
    result = vaelab.elbo(model, data, batch_size=2, per_example=True)
    assert_per_example(result, ["elbo", "recon", "kl"], 6)
    with torch.no_grad():
        expected_kl = vaelab.gaussian_kl(*model.eval().encode(SENTENCE_TOKENS, SENTENCE_LENGTHS)).double().sum(1)
    torch.testing.assert_close(result["per_example"]["kl"], expected_kl, rtol=1e-5, atol=1e-6)  # the KL needs no noise
    iw = vaelab.iw_log_likelihood(model, data, k=5, batch_size=2, per_example=True)
    assert_per_example(iw, ["nll"], 6)  # per-sentence bits per token would not average to the corpus's
    torch.testing.assert_close(iw["per_example"]["nll"], -iw["log_likelihood"], rtol=0, atol=0)


def test_baselines_score_each_test_image_in_data_order():
    gen = torch.Generator().manual_seed(0)
    train = torch.rand(200, 1, 2, 3, generator=gen, dtype=torch.float64)
    test = train[:30]
    result = vaelab.gaussian_baseline(train, test, sigma="per_pixel", per_example=True)
    mean, sd = train.mean(0), (train - train.mean(0)).square().mean(0).sqrt()
    expected = -torch.distributions.Normal(mean, sd).log_prob(test).sum((1, 2, 3))
    torch.testing.assert_close(result["per_example"]["nll"], expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(result["per_example"]["bits_per_dim"], expected / (6 * math.log(2)), rtol=1e-12, atol=0)
    reversed_nll = vaelab.gaussian_baseline(train, test.flip(0), sigma="per_pixel", per_example=True)["per_example"]["nll"]
    torch.testing.assert_close(reversed_nll, expected.flip(0), rtol=1e-12, atol=0)

    # the fitted family: the same fit (same train, same seed) scores the reversed test set in reverse
    fitted = vaelab.pixel_baseline(train.float(), test.float(), likelihood="gaussian", steps=30, batch_size=8,
                                   per_example=True)
    fitted_reversed = vaelab.pixel_baseline(train.float(), test.float().flip(0), likelihood="gaussian", steps=30,
                                            batch_size=8, per_example=True)
    torch.testing.assert_close(fitted_reversed["per_example"]["nll"], fitted["per_example"]["nll"].flip(0))
    assert fitted["per_example"]["nll"].std() > 0.1  # the images differ: a per-example score, not a copy of the mean

    binary = (test > 0.5).double()
    bernoulli = vaelab.pixel_baseline(train, binary, likelihood="bernoulli", per_example=True)
    p = train.mean(0)
    expected = -torch.distributions.Bernoulli(probs=p).log_prob(binary).sum((1, 2, 3))
    torch.testing.assert_close(bernoulli["per_example"]["nll"], expected, rtol=1e-12, atol=0)

    grey = torch.tensor([[0.0, 1.0], [0.0, 128 / 255], [0.0, 1.0]]).reshape(3, 1, 1, 2)
    pair = torch.tensor([[0.0, 1.0], [0.0, 128 / 255]]).reshape(2, 1, 1, 2)
    histogram = vaelab.histogram_baseline(grey, pair, pseudocount=0.5, per_example=True)
    black, white, middle = ((c + 0.5) / (3 + 128) for c in (3, 2, 1))
    expected = -torch.tensor([math.log(black) + math.log(white), math.log(black) + math.log(middle)], dtype=torch.float64)
    torch.testing.assert_close(histogram["per_example"]["nll"], expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(vaelab.histogram_baseline(grey, pair.flip(0), pseudocount=0.5, per_example=True)
                               ["per_example"]["nll"], expected.flip(0), rtol=1e-12, atol=0)


# ------------------------------------------------- informations behind the MIG


def test_factor_information_of_a_hand_computed_case_and_the_mig_it_feeds():
    factor = torch.tensor([0, 0, 1, 1])
    codes = torch.stack([torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([0.0, 0.0, 0.0, 1.0])], 1)
    partial = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) - 0.5 * math.log(2)
    information = vaelab.factor_information(codes, factor, n_bins=2)
    assert information.shape == (2, 1) and information.dtype == torch.float64
    torch.testing.assert_close(information[:, 0], torch.tensor([math.log(2), partial], dtype=torch.float64))
    result = vaelab.mig_from_codes(codes, factor, n_bins=2)
    torch.testing.assert_close(result["information"], information, rtol=0, atol=0)
    torch.testing.assert_close(result["entropy"], torch.tensor([math.log(2)], dtype=torch.float64))


def test_factor_information_of_independent_codes_is_the_plug_in_bias():
    # codes independent of the factors: the true information is 0, the plug-in estimate is
    # about (B - 1)(V - 1) / (2N) nats (Miller 1955), and it shrinks as 1 / N
    generator = torch.Generator().manual_seed(0)
    n, values = 20_000, 8
    factor = torch.arange(n) % values
    codes = torch.rand(n, 3, generator=generator)  # uniform: all 20 bins well filled
    information = vaelab.factor_information(codes[:, :], factor, n_bins=20)
    predicted = 19 * (values - 1) / (2 * n)
    assert bool((information > 0).all())
    torch.testing.assert_close(information.mean(), torch.tensor(predicted, dtype=torch.float64), rtol=0.25, atol=0)
    small = vaelab.factor_information(codes[:500], factor[:500], n_bins=20)
    assert float(small.mean()) > 20 * float(information.mean())  # 40 times fewer examples
