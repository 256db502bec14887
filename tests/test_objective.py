"""The loss-scale ledger: common loss conventions, their effective beta and implied sigma^2."""
import pytest
import torch
import torch.nn.functional as F

import vaelab

B, D, M = 4, 6, 3
GEN = torch.Generator().manual_seed(0)
X = torch.rand(B, D, generator=GEN, dtype=torch.float64)
X_HAT = torch.rand(B, D, generator=GEN, dtype=torch.float64)
KL = torch.rand(B, M, generator=GEN, dtype=torch.float64)

SSE = ((X_HAT - X) ** 2)
BCE = F.binary_cross_entropy(X_HAT, X, reduction="none")


def elbo_form(recon_per_dim, beta):
    """Per-example reference: sum over pixels and latents, mean over the batch."""
    return recon_per_dim.sum(1).mean() + beta * KL.sum(1).mean()


# Each case: the loss exactly as tutorials write it, the convention in ledger terms,
# the overall factor the ledger predicts, and the expected effective beta.
CASES = {
    "mean-MSE + w*KL (sum over latents)": (
        lambda w: F.mse_loss(X_HAT, X) + w * KL.sum(1).mean(),
        dict(recon_dims="mean"), SSE, 1 / D, D,
    ),
    "mean-MSE + w*KL (mean over everything)": (
        lambda w: F.mse_loss(X_HAT, X) + w * KL.mean(),
        dict(recon_dims="mean", kl_dims="mean"), SSE, 1 / D, D / M,
    ),
    "0.5*SSE + w*KL": (
        lambda w: 0.5 * SSE.sum(1).mean() + w * KL.sum(1).mean(),
        dict(recon_weight=0.5), SSE, 0.5, 2.0,
    ),
    "SSE + w*KL, summed over the batch (PyTorch example style)": (
        lambda w: F.mse_loss(X_HAT, X, reduction="sum") + w * KL.sum(),
        dict(recon_batch="sum", kl_batch="sum"), SSE, B, 1.0,
    ),
    "BCE-mean + w*KL": (
        lambda w: F.binary_cross_entropy(X_HAT, X) + w * KL.sum(1).mean(),
        dict(recon_dims="mean"), BCE, 1 / D, D,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("w", [1.0, 0.25])
def test_each_convention_is_a_scaled_elbo_with_the_ledgers_beta(name, w):
    literal, convention, per_pixel, scale, beta_per_unit_w = CASES[name]
    beta = vaelab.effective_beta(data_dim=D, latent_dim=M, kl_weight=w, **convention)
    recon_weight = convention.get("recon_weight", 1.0)
    assert beta == pytest.approx(w * beta_per_unit_w)
    torch.testing.assert_close(literal(w), scale * elbo_form(per_pixel, beta))
    # reduce_loss, the library's single reduction point, computes the same number.
    kwargs = {k: v for k, v in convention.items() if k != "recon_weight"}
    torch.testing.assert_close(
        vaelab.reduce_loss(per_pixel, KL, recon_weight=recon_weight, kl_weight=w, **kwargs), literal(w)
    )


def test_implied_sigma2_for_squared_error_conventions():
    assert vaelab.implied_sigma2(data_dim=784, latent_dim=20, recon_weight=0.5) == pytest.approx(1.0)
    assert vaelab.implied_sigma2(data_dim=784, latent_dim=20) == pytest.approx(0.5)
    assert vaelab.implied_sigma2(data_dim=784, latent_dim=20, recon_dims="mean") == pytest.approx(392.0)


def test_implied_sigma2_makes_mse_loss_a_gaussian_elbo():
    # mean-MSE + w*KL has the same minimiser (same gradients up to a factor) as the
    # negative Gaussian ELBO with sigma^2 from the ledger.
    w = 0.01
    sigma2 = vaelab.implied_sigma2(data_dim=D, latent_dim=M, recon_dims="mean", kl_weight=w)
    x_hat = X_HAT.clone().requires_grad_(True)
    kl = KL.clone().requires_grad_(True)
    (F.mse_loss(x_hat, X) + w * kl.sum(1).mean()).backward()
    g_mse = torch.cat([x_hat.grad.flatten(), kl.grad.flatten()])
    x_hat.grad = kl.grad = None
    log_sigma = 0.5 * torch.log(torch.tensor(sigma2, dtype=torch.float64))
    (-(vaelab.gaussian_log_prob(X, x_hat, log_sigma) - kl.sum(1)).mean()).backward()
    g_elbo = torch.cat([x_hat.grad.flatten(), kl.grad.flatten()])
    ratio = g_mse / g_elbo
    torch.testing.assert_close(ratio, torch.full_like(ratio, ratio[0].item()))


def test_mixed_batch_reductions_need_the_batch_size():
    with pytest.raises(ValueError, match="batch_size is needed"):
        vaelab.effective_beta(data_dim=D, latent_dim=M, recon_batch="sum")
    beta = vaelab.effective_beta(data_dim=D, latent_dim=M, recon_batch="sum", batch_size=128)
    assert beta == pytest.approx(1 / 128)


def test_beta_norm_round_trip_and_higgins_example():
    # Higgins et al. (2017): dSprites, 64x64 = 4096 pixels, 10 latents, beta = 4 -> beta_norm ~ 0.0098.
    assert vaelab.beta_norm(4.0, 10, 4096) == pytest.approx(4 * 10 / 4096)
    assert vaelab.beta_from_norm(vaelab.beta_norm(4.0, latent_dim=10, data_dim=4096), 10, 4096) == pytest.approx(4.0)


def test_kl_penalty_variants():
    kl = torch.tensor([[0.1, 2.0], [0.3, 4.0]])
    assert vaelab.kl_penalty(kl).item() == pytest.approx(3.2)
    assert vaelab.kl_penalty(kl, kl_dims="mean").item() == pytest.approx(1.6)
    assert vaelab.kl_penalty(kl, free_bits=0.5).item() == pytest.approx(3.5)
    assert vaelab.kl_penalty(kl, capacity=5.0, gamma=10.0).item() == pytest.approx(18.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: vaelab.effective_beta(data_dim=D, latent_dim=M, recon_dims="avg"), r"recon_dims must be one of 'sum', 'mean'"),
        (lambda: vaelab.effective_beta(data_dim=0, latent_dim=M), r"data_dim must be an integer >= 1"),
        (lambda: vaelab.effective_beta(data_dim=D, latent_dim=M, recon_weight=0), r"recon_weight must be a finite number > 0"),
        (lambda: vaelab.reduce_loss(SSE, KL[:2]), r"recon_per_dim has batch size 4 but kl_per_dim has 2"),
        (lambda: vaelab.reduce_loss(SSE, KL, kl_batch="median"), r"kl_batch must be one of"),
        (lambda: vaelab.kl_penalty(KL, free_bits=1.0, capacity=2.0), r"pass at most one"),
        (lambda: vaelab.beta_norm(-1.0, 10, 4096), r"beta must be a finite number >= 0"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_check_loss_reads_practitioners_losses():
    # mean-over-pixels MSE (F.mse_loss's default) plus a summed KL, on MNIST: sigma^2 = 784 / 2
    mse = vaelab.check_loss(data_dim=(1, 28, 28), latent_dim=20, recon="squared_error", recon_dims="mean")
    assert mse.beta_eff == pytest.approx(784.0) and mse.sigma2 == pytest.approx(392.0)
    assert mse.sigma == pytest.approx(392.0 ** 0.5) and mse.beta_norm == pytest.approx(20.0)
    assert "σ² = β_eff / 2 = 392" in repr(mse) and "784 data dimensions (N" in repr(mse)
    # a summed BCE plus a summed KL is the ELBO; no sigma for a likelihood
    elbo = vaelab.check_loss(data_dim=784, latent_dim=10)
    assert elbo.beta_eff == 1.0 and elbo.sigma2 is None and elbo.beta_norm == pytest.approx(10 / 784)
    assert "negative ELBO itself" in str(elbo)
    # both terms summed over the batch with a KL weight of 4: a beta-VAE with beta 4, whatever the batch size
    beta4 = vaelab.check_loss(data_dim=4096, latent_dim=10, kl_weight=4, recon_batch="sum", kl_batch="sum")
    assert beta4.beta_eff == pytest.approx(4.0) and "weighted 4 times, more than" in repr(beta4)
    # mixed batch reductions: the batch size enters
    mixed = vaelab.check_loss(data_dim=784, latent_dim=20, batch_size=100, recon_batch="sum")
    assert mixed.beta_eff == pytest.approx(0.01) and "less than" in repr(mixed)
    assert "autoencoder" in repr(vaelab.check_loss(data_dim=784, latent_dim=20, kl_weight=0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kl_weight=-1.0), r"kl_weight must be a finite number >= 0, got -1.0"),
        (dict(recon_weight=0.0), r"recon_weight must be a finite number > 0"),
        (dict(recon_dims="avg"), r"recon_dims must be one of 'sum', 'mean'; got 'avg'"),
        (dict(kl_batch="max", batch_size=10), r"kl_batch must be one of 'sum', 'mean'; got 'max'"),
        (dict(data_dim=0), r"data_dim must be an integer >= 1, got 0"),
        (dict(latent_dim=0), r"latent_dim must be an integer >= 1, got 0"),
        (dict(recon="l1"), r"recon must be one of 'nll', 'bce', 'gaussian_nll', 'squared_error', 'mse'; got 'l1'"),
        (dict(recon_batch="sum"), r"batch_size is needed when recon_batch \('sum'\) and kl_batch \('mean'\) differ"),
    ],
)
def test_check_loss_names_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vaelab.check_loss(**{"data_dim": 784, "latent_dim": 20, **kwargs})
