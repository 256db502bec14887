"""Image VAEs: each head scores data with the vaelab likelihood it names."""
import math

import pytest
import torch

import vaelab
from vaelab.models import LIKELIHOODS

X = (torch.linspace(0.02, 0.98, 2 * 64).reshape(2, 1, 8, 8) * 255).round() / 255  # on the 8-bit grid, as loaded


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_forward_terms_equal_the_library_functions(likelihood):
    model = vaelab.mlp_vae(data_shape=(1, 8, 8), hidden=(16,), latent_dim=3, likelihood=likelihood, seed=0)
    eps = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.3, -0.2]])
    out = model(X, eps)
    mu, logvar = model.encode(X)
    torch.testing.assert_close(out.z, mu + torch.exp(0.5 * logvar) * eps)
    torch.testing.assert_close(out.kl_per_dim, vaelab.gaussian_kl(mu, logvar))
    params = model.decode(out.z)
    expected = {
        "bernoulli": lambda: vaelab.bernoulli_log_prob(X, params["logits"]),
        "continuous_bernoulli": lambda: vaelab.continuous_bernoulli_log_prob(X, params["logits"]),
        "gaussian": lambda: vaelab.gaussian_log_prob(X, params["mean"], 0.0),
        "beta": lambda: vaelab.beta_log_prob(X * (1 - 2e-3) + 1e-3, params["alpha"], params["beta"])
        + 64 * math.log(1 - 2e-3),  # the squeeze's slope, so that the density of X integrates to 1
        "discretized_logistic": lambda: vaelab.discretized_logistic_log_prob(X, params["mean"], params["log_scale"]),
    }[likelihood]()
    torch.testing.assert_close(out.log_px, expected)
    assert out.log_px.shape == (2,) and out.kl_per_dim.shape == (2, 3)


def test_reconstruction_uses_the_likelihoods_mean():
    model = vaelab.mlp_vae(data_shape=(1, 8, 8), hidden=(16,), latent_dim=3, likelihood="continuous_bernoulli", seed=0)
    mu, _ = model.encode(X)
    torch.testing.assert_close(model.reconstruct(X), vaelab.cb_mean(model.decode(mu)["logits"]))


def test_gaussian_sigma_variants():
    shape = (1, 8, 8)
    fixed = vaelab.mlp_vae(data_shape=shape, hidden=(16,), latent_dim=3, likelihood="gaussian", log_sigma=-1.0)
    assert "head.log_sigma" not in dict(fixed.named_parameters()) and fixed.head.log_sigma.item() == -1.0
    shared = vaelab.mlp_vae(data_shape=shape, hidden=(16,), latent_dim=3, likelihood="gaussian", sigma="shared")
    assert dict(shared.named_parameters())["head.log_sigma"].shape == ()
    per_pixel = vaelab.mlp_vae(data_shape=shape, hidden=(16,), latent_dim=3, likelihood="gaussian", sigma="per_pixel")
    assert dict(per_pixel.named_parameters())["head.log_sigma"].shape == shape
    optimal = vaelab.mlp_vae(data_shape=shape, hidden=(16,), latent_dim=3, likelihood="gaussian", sigma="optimal", seed=0)
    out = optimal(X, torch.zeros(2, 3))
    expected = vaelab.gaussian_log_prob(X, out.params["mean"], vaelab.optimal_log_sigma(X, out.params["mean"]))
    torch.testing.assert_close(out.log_px, expected)



def test_decoded_sigma_is_a_normal_per_pixel_per_image_with_a_floor():
    from vaelab.models import DECODED_MIN_SIGMA, GaussianHead

    head = GaussianHead((1, 2, 2), sigma="decoded")
    assert head.n_outputs == 2 and not list(head.parameters()) and not head.init_from_data
    out = torch.tensor([[[[0.1, 0.5], [0.9, -0.2]], [[-100.0, 0.0], [2.0, 50.0]]]], dtype=torch.float64)
    params = head.params(out)
    sigma = DECODED_MIN_SIGMA + torch.nn.functional.softplus(out[:, 1:])
    torch.testing.assert_close(params["log_sigma"].exp(), sigma)
    # the floor: a very negative output gives sigma = min_sigma, not 0
    assert params["log_sigma"][0, 0, 0, 0].exp().item() == pytest.approx(DECODED_MIN_SIGMA, rel=1e-12)
    x = torch.tensor([[[[0.0, 0.3], [1.0, 0.5]]]], dtype=torch.float64)
    expected = torch.distributions.Normal(out[:, :1], sigma).log_prob(x)
    torch.testing.assert_close(head.log_prob(x, params, per_dim=True), expected)
    torch.testing.assert_close(head.log_prob(x, params), expected.sum((1, 2, 3)))
    # gradients reach both outputs, and match Normal's
    raw = out.clone().requires_grad_()
    head.log_prob(x, head.params(raw)).sum().backward()
    raw_ref = out.clone().requires_grad_()
    mean, spread = raw_ref.chunk(2, dim=1)
    torch.distributions.Normal(mean, DECODED_MIN_SIGMA + torch.nn.functional.softplus(spread)).log_prob(x).sum().backward()
    torch.testing.assert_close(raw.grad, raw_ref.grad)
    assert raw.grad[0, 1, 0, 1].abs() > 0 and raw.grad[0, 0, 0, 1].abs() > 0
    # in a model: twice the outputs, sigma varies per image, no single model.sigma
    model = vaelab.mlp_vae(data_shape=(1, 8, 8), hidden=(16,), latent_dim=3, likelihood="gaussian", sigma="decoded",
                           seed=0)
    result = model(X, torch.tensor([[0.0, 0.0, 0.0], [2.0, -2.0, 1.0]]))
    assert result.params["log_sigma"].shape == X.shape and model.sigma is None
    assert not torch.equal(result.params["log_sigma"][0], result.params["log_sigma"][1])
    torch.testing.assert_close(result.log_px, vaelab.gaussian_log_prob(X, result.params["mean"], result.params["log_sigma"]))
    with pytest.raises(ValueError, match="takes no log_sigma"):
        GaussianHead((1, 2, 2), sigma="decoded", log_sigma=0.0)

@pytest.mark.parametrize(
    "shape, channels", [((1, 28, 28), (32, 64)), ((1, 64, 64), (32, 32, 64, 64)), ((3, 32, 32), (8, 16))]
)
@pytest.mark.parametrize("likelihood", ["bernoulli", "beta"])
def test_conv_vae_decodes_to_the_data_shape(shape, channels, likelihood):
    model = vaelab.conv_vae(data_shape=shape, channels=channels, latent_dim=4, hidden=32, likelihood=likelihood, seed=0)
    x = torch.full((3, *shape), 0.5)
    out = model(x, torch.zeros(3, 4))
    assert all(p.shape == (3, *shape) for p in out.params.values())
    assert torch.isfinite(out.log_px).all()
    assert model.sample(5, generator=torch.Generator().manual_seed(0)).shape == (5, *shape)


def test_seeded_initialisation_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = vaelab.mlp_vae(seed=7)
    after = torch.rand(1)
    b = vaelab.mlp_vae(seed=7)
    assert before == after
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = vaelab.mlp_vae(seed=8)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m(torch.zeros(2, 1, 28, 28), torch.zeros(2, 3)), r"x must have shape \(batch, 1, 8, 8\) for this model; got \(2, 1, 28, 28\)"),
        (lambda m: m(X + 1.0, torch.zeros(2, 3)), r"x must lie in \[0, 1\]"),
        (lambda m: m(X.index_fill(0, torch.tensor([1]), float("nan")), torch.zeros(2, 3)), r"x contains 64 NaN or infinite value\(s\); expected finite values in \[0, 1\]"),
        (lambda m: vaelab.mlp_vae(data_shape=(1, 8, 8), hidden=(16,), latent_dim=3, likelihood="gaussian")(
            X.index_fill(0, torch.tensor([1]), float("inf")), torch.zeros(2, 3)), r"x contains 64 NaN or infinite value"),
        (lambda m: m(X, torch.zeros(2, 4)), r"eps must have shape \(2, 3\)"),
        (lambda m: vaelab.mlp_vae(likelihood="poisson"), r"likelihood must be one of"),
        (lambda m: vaelab.mlp_vae(data_shape=(28, 28)), r"data_shape must be \(channels, height, width\)"),
        (lambda m: vaelab.conv_vae(data_shape=(1, 30, 30)), r"divisible by 2 \*\* len\(channels\) = 4"),
        (lambda m: vaelab.mlp_vae(likelihood="gaussian", sigma="learned"), r"sigma must be one of"),
    ],
)
def test_bad_input(call, match):
    model = vaelab.mlp_vae(data_shape=(1, 8, 8), hidden=(16,), latent_dim=3, seed=0)
    with pytest.raises(ValueError, match=match):
        call(model)


def test_an_image_model_draws_its_own_noise_when_given_none():
    m = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=3, seed=0)
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    out = m(x, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out.z, m(x, eps).z, rtol=0, atol=0)
    assert not torch.equal(m(x).z, m(x).z)  # the global RNG: a fresh draw each call


def test_a_learned_sigma_reads_none_until_fit_starts_it_from_the_data():
    m = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=3, likelihood="gaussian", sigma="shared", seed=0)
    assert m.sigma is None  # not the placeholder 1.0
    data = torch.rand(40, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 0.2
    vaelab.fit(m, data, steps=1, progress=False)
    assert 0.03 < float(m.sigma) < 0.1  # started from the data's spread (about 0.058)
    chosen = vaelab.mlp_vae(data_shape=(1, 4, 4), likelihood="gaussian", sigma="shared", log_sigma=math.log(0.3))
    assert float(chosen.sigma) == pytest.approx(0.3)
