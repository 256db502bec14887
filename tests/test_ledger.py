"""check_loss's verdicts: each message of its paragraph, and the warnings (issues 25 and 26)."""
from __future__ import annotations

import warnings

import pytest

import vaelab
from vaelab.ledger import COLLAPSE_COMPLETE, COLLAPSE_ONSET


def report(**kwargs):
    return str(vaelab.check_loss(**{"data_dim": 784, "latent_dim": 20, **kwargs}))


def test_bce_on_grey_levels_is_not_called_the_elbo():
    grey = report(recon="bce", binary=False, recon_batch="sum", kl_batch="sum")  # PyTorch's examples/vae
    assert "negative ELBO itself" not in grey
    assert "is no negative ELBO" in grey and "integral over [0, 1] is below 1" in grey and "chapter 3" in grey
    generic = report(binary=False)  # Keras's example, described as a plain NLL
    assert "negative ELBO itself" not in generic and "A BCE on such data" in generic


def test_bce_on_binary_pixels_is_the_elbo():
    text = report(recon="bce", binary=True)
    assert "This is the negative ELBO itself (β = 1)" in text and "Bernoulli negative log-likelihood" in text


def test_unsaid_binary_makes_the_verdict_conditional():
    text = report()
    assert "negative ELBO itself (β = 1) if the per-dimension loss is a normalised likelihood" in text
    assert "pass binary=True or binary=False" in text


def test_a_gaussian_nll_with_its_own_sigma_is_the_elbo():
    assert "This is the negative ELBO itself" in report(recon="gaussian_nll")


def test_large_weights_warn_of_collapse_and_say_where_chapter_one_found_it():
    low, high = COLLAPSE_ONSET
    beta784 = report(recon_dims="mean", binary=True)  # the book's central bug
    assert "Expect posterior collapse" in beta784
    assert f"between β_eff = {low:g} and {high:g}" in beta784 and "784-400-20 MLP" in beta784
    assert "one seed" in beta784 and "beyond the point where no unit stayed active" in beta784
    assert "at or beyond that point" in report(kl_weight=high, binary=True)
    assert "at the start of that range" in report(kl_weight=low, binary=True)
    assert "Expect posterior collapse" not in report(kl_weight=2, binary=True)
    assert COLLAPSE_COMPLETE == 32


def test_below_one_is_no_bound_at_all():
    text = report(kl_weight=0.5, binary=True)
    assert "no bound on the likelihood at all" in text and "loosens" not in text


def test_grey_bce_away_from_one_is_an_elbo_in_form_only():
    assert "ELBO in form only" in report(recon="bce", binary=False, kl_weight=4)
    assert "If the data are not binary" in report(kl_weight=4)
    assert "ELBO in form only" not in report(recon="bce", binary=True, kl_weight=4)


def test_mse_is_the_squared_error():
    mse = vaelab.check_loss(data_dim=784, latent_dim=20, recon="mse", recon_dims="mean")
    assert mse.convention["recon"] == "squared_error" and mse.sigma2 == pytest.approx(392.0)


def test_sigma_is_compared_with_the_datas_spread():
    generic = report(recon="mse", recon_dims="mean")
    assert "Compare σ with the spread of your data" in generic and "MNIST's is about 0.31" in generic
    assert "Pass data_std=" in generic
    wide = report(recon="mse", recon_dims="mean", data_std=0.31)  # sigma = 19.8
    assert "63.9 times the data's own standard deviation (0.31)" in wide and "collapse" in wide
    fine = report(recon="mse", recon_weight=50.0, data_std=0.31)  # sigma = 0.1
    assert "0.323 times" in fine and "coarse noise level" in fine
    tight = report(recon="mse", recon_weight=5000.0, data_std=0.31)  # sigma = 0.01
    assert "well inside the spread of the data" in tight


def test_unused_batch_size_warns():
    with pytest.warns(UserWarning, match=r"batch_size=128 is not used: both terms are averaged over the batch"):
        vaelab.check_loss(data_dim=784, latent_dim=20, batch_size=128)
    with pytest.warns(UserWarning, match=r"summed over the batch"):
        vaelab.check_loss(data_dim=784, latent_dim=20, batch_size=128, recon_batch="sum", kl_batch="sum")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vaelab.check_loss(data_dim=784, latent_dim=20, batch_size=128, recon_batch="sum")  # used: no warning


def test_data_std_for_a_likelihood_warns_and_bad_values_fail():
    with pytest.warns(UserWarning, match=r"data_std is only used for a squared error"):
        vaelab.check_loss(data_dim=784, latent_dim=20, data_std=0.3)
    with pytest.raises(ValueError, match=r"data_std must be a finite number > 0"):
        vaelab.check_loss(data_dim=784, latent_dim=20, recon="mse", data_std=0.0)
    with pytest.raises(ValueError, match=r"binary must be True, False or None"):
        vaelab.check_loss(data_dim=784, latent_dim=20, binary="yes")


def test_docstring_shows_mse_loss_and_bce():
    doc = vaelab.check_loss.__doc__
    assert "F.mse_loss(x_hat, x)" in doc and "F.binary_cross_entropy(x_hat, x, reduction=\"sum\")" in doc
