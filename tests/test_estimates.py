"""Held-out estimates that refuse or warn about wrongly prepared test data, naming what to pass instead."""
import math
import warnings

import pytest
import torch

import vaelab

SHAPE = (1, 4, 4)
GREY = torch.randint(0, 256, (12, *SHAPE), generator=torch.Generator().manual_seed(0)).float() / 255
DEQUANTISED = vaelab.prepare_heldout(GREY, dequantize=True, seed=0)
BINARY = vaelab.prepare_heldout(GREY, binarize="dynamic", seed=0)


def model(likelihood="gaussian", **kwargs):
    return vaelab.mlp_vae(data_shape=SHAPE, hidden=(8,), latent_dim=2, likelihood=likelihood, seed=0, **kwargs)


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return function(*args, **kwargs)


def test_a_bernoulli_model_scored_on_grey_levels_warns_unless_asked_for():
    for name, score in (("elbo", vaelab.elbo), ("iw_log_likelihood", lambda m, x, **o: vaelab.iw_log_likelihood(m, x, k=2, **o))):
        with pytest.warns(UserWarning, match=rf"data hold grey levels .* Bernoulli.*the numbers {name} returns are not a "
                                             r"log-likelihood.*vaelab.prepare_heldout\(test_images, binarize=\"dynamic\""):
            warned = score(model("bernoulli"), GREY)
        deliberate = quiet(score, model("bernoulli"), GREY, bernoulli_on_grey=True)
        key = "elbo" if name == "elbo" else "nll"
        assert deliberate[key] == warned[key]  # the same numbers, without the warning
        quiet(score, model("bernoulli"), BINARY)
        quiet(score, model("continuous_bernoulli"), DEQUANTISED, **({} if name == "elbo" else {"levels": 256}))


def test_levels_on_data_that_were_not_dequantised_is_an_error():
    with pytest.raises(ValueError, match=r"data sit exactly on the 256-level grid k / 255, so they were not dequantised.*"
                                         r"vaelab.prepare_heldout\(test_images, dequantize=True"):
        vaelab.iw_log_likelihood(model(), GREY, k=2, levels=256)
    result = quiet(vaelab.iw_log_likelihood, model(), DEQUANTISED, k=2, levels=256)
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (16 * math.log(2)) + 8)
    for likelihood in ("bernoulli", "discretized_logistic"):
        with pytest.raises(ValueError, match=rf"this model's decoder, '{likelihood}', gives probabilities of discrete "
                                             r"pixels already: leave levels=None"):
            vaelab.iw_log_likelihood(model(likelihood), DEQUANTISED, k=2, levels=256)


def test_a_density_without_levels_warns_where_its_bits_per_dim_mislead():
    sharp = model(sigma="fixed", log_sigma=math.log(0.01))  # a density above 1 near its mean: negative nats
    smooth = torch.full((12, *SHAPE), 0.5) + 1e-3 * torch.randn(12, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # decode every code to the data's mean: the density is high, the bits negative
        sharp.decoder[0][-1].weight.zero_()
        sharp.decoder[0][-1].bias.fill_(0.5)
    with pytest.warns(UserWarning, match=r"bits_per_dim = -\d.* is negative, so it is no code length: a 'gaussian' "
                                         r"decoder is a density.*pass levels=256"):
        negative = vaelab.iw_log_likelihood(sharp, smooth, k=2)
    assert negative["bits_per_dim"] < 0
    with pytest.warns(UserWarning, match=r"the data sit on the 256-level grid k / 255, where a density is no probability"):
        vaelab.iw_log_likelihood(model(), GREY, k=2)
    assert quiet(vaelab.iw_log_likelihood, model(), DEQUANTISED, k=2)["bits_per_dim"] > 0  # positive, off the grid
