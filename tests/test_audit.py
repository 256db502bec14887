"""vaelab.audit_loss: losses written as code read the same as check_loss reads their description.

Every row of chapter 1's ledger and every project of chapters 2 and 6 is written here as the
PyTorch function it stands for; the audit must give check_loss's beta_eff, beta_norm and
sigma for each.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vaelab

ROOT = Path(__file__).resolve().parents[1]
N, M, B = 784, 20, 128  # chapter 1's ledger
MNIST = (1, 28, 28)


def kl_per_dim(mu, logvar):
    return -0.5 * (1 + logvar - mu**2 - logvar.exp())


def bce(x_hat, x):
    return F.binary_cross_entropy(x_hat, x, reduction="none")


# chapter 1's LEDGER, row text -> (the loss as code, audit options)
LEDGER_LOSSES = {
    "BCE summed over pixels and batch + KL summed over latents and batch (the ELBO)": (
        lambda x_hat, x, mu, logvar: F.binary_cross_entropy(x_hat, x, reduction="sum") + kl_per_dim(mu, logvar).sum(),
        {},
    ),
    "BCE averaged over pixels (Keras `binary_crossentropy`) × 784 + KL summed": (
        lambda x_hat, x, mu, logvar: (784 * bce(x_hat, x).mean((1, 2, 3))).mean() + kl_per_dim(mu, logvar).sum(1).mean(),
        {},
    ),
    "BCE averaged over pixels + KL summed over latents, both averaged over the batch": (
        lambda x_hat, x, mu, logvar: bce(x_hat, x).flatten(1).mean(1).mean() + kl_per_dim(mu, logvar).sum(1).mean(),
        {},
    ),
    "`F.binary_cross_entropy(x_hat, x)` (mean over everything) + KL summed over latents and batch": (
        lambda x_hat, x, mu, logvar: F.binary_cross_entropy(x_hat, x) + kl_per_dim(mu, logvar).sum(),
        {"batch_size": B},
    ),
    "BCE mean over everything + KL mean over everything (`.mean()` on both)": (
        lambda x_hat, x, mu, logvar: bce(x_hat, x).mean() + kl_per_dim(mu, logvar).mean(),
        {},
    ),
    "0.5 · SSE + KL": (
        lambda x_hat, x, mu, logvar: (0.5 * ((x_hat - x) ** 2).sum((1, 2, 3)) + kl_per_dim(mu, logvar).sum(1)).mean(),
        {},
    ),
    "SSE + KL": (
        lambda x_hat, x, mu, logvar: (((x_hat - x) ** 2).sum((1, 2, 3)) + kl_per_dim(mu, logvar).sum(1)).mean(),
        {},
    ),
    "`F.mse_loss(x_hat, x)` (mean over pixels and batch) + KL summed over latents, averaged over the batch": (
        lambda x_hat, x, mu, logvar: F.mse_loss(x_hat, x) + kl_per_dim(mu, logvar).sum(1).mean(),
        {},
    ),
    "`F.mse_loss(x_hat, x)` (mean over pixels and batch) + KL summed over latents and batch": (
        lambda x_hat, x, mu, logvar: F.mse_loss(x_hat, x) + kl_per_dim(mu, logvar).sum(),
        {"batch_size": B},
    ),
    "MSE mean + 0.001 · KL summed over latents": (
        lambda x_hat, x, mu, logvar: F.mse_loss(x_hat, x) + 0.001 * kl_per_dim(mu, logvar).sum(1).mean(),
        {},
    ),
}


def _chapter_ledger() -> list:
    """chapter 1's LEDGER, executed from the notebook's code cell."""
    nb = json.loads((ROOT / "book" / "01_two_terms.ipynb").read_text())
    source = next("".join(c["source"]) for c in nb["cells"]
                  if c["cell_type"] == "code" and "LEDGER = [" in "".join(c["source"]))
    namespace = {}
    exec(source[: source.index("\nrows = [")], namespace)
    return namespace["LEDGER"]


LEDGER = _chapter_ledger()


def _agree(audit, report):
    assert audit.beta_eff == pytest.approx(report.beta_eff, rel=1e-6)
    assert audit.beta_norm == pytest.approx(report.beta_norm, rel=1e-6)
    if report.sigma2 is None:
        assert audit.sigma2 is None
    else:
        assert audit.sigma2 == pytest.approx(report.sigma2, rel=1e-6)


def test_every_ledger_row_has_its_loss_here():
    assert [text for text, _, _ in LEDGER] == list(LEDGER_LOSSES)


@pytest.mark.parametrize("row", LEDGER, ids=[text[:40] for text, _, _ in LEDGER])
def test_audit_agrees_with_check_loss_on_the_ledger(row):
    text, squared_error, convention = row
    loss, options = LEDGER_LOSSES[text]
    audit = vaelab.audit_loss(loss, data_shape=MNIST, latent_dim=M, **options)
    report = vaelab.check_loss(data_dim=N, latent_dim=M, recon="squared_error" if squared_error else "nll",
                               **convention)
    _agree(audit, report)
    assert audit.recon == ("squared_error" if squared_error else "bce")
    assert audit.batch_dependent == (convention.get("recon_batch", "mean") != convention.get("kl_batch", "mean"))


# The projects of chapter 2's table (and chapter 6's), as the PyTorch functions they use.
CELEBA_TRAIN = 162_770


def pytorch_examples(recon_x, x, mu, logvar):  # pytorch/examples vae/main.py, 77f55b9
    BCE = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return BCE + KLD


def keras_vae(data, reconstruction, z_mean, z_log_var):  # keras-io vae.py (Keras 3), data (28, 28, 1)
    reconstruction_loss = bce(reconstruction, data).mean(-1).sum((1, 2)).mean()
    kl_loss = -0.5 * (1 + z_log_var - z_mean**2 - z_log_var.exp())
    return reconstruction_loss + kl_loss.sum(1).mean()


def antixk(kld_weight):  # AntixK vanilla_vae.py loss_function
    def loss_function(recons, input, mu, log_var):
        recons_loss = F.mse_loss(recons, input)
        kld_loss = torch.mean(-0.5 * torch.sum(1 + log_var - mu**2 - log_var.exp(), dim=1), dim=0)
        return {"loss": recons_loss + kld_weight * kld_loss, "Reconstruction_Loss": recons_loss}
    return loss_function


def pythae(half):  # pythae VAE.loss_function with reconstruction_loss="mse"
    def loss_function(recon_x, x, mu, log_var):
        recon_loss = F.mse_loss(recon_x.reshape(x.shape[0], -1), x.reshape(x.shape[0], -1), reduction="none")
        recon_loss = (0.5 if half else 1.0) * recon_loss.sum(dim=-1)
        KLD = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp(), dim=-1)
        return (recon_loss + KLD).mean(dim=0), recon_loss.mean(dim=0), KLD.mean(dim=0)
    return loss_function


def disentanglement_lib(beta):  # l2_loss + compute_gaussian_kl, decoder logits
    def loss(true_images, reconstructed_images, z_mean, z_logvar):
        per_sample = ((true_images - torch.sigmoid(reconstructed_images)) ** 2).sum((1, 2, 3))
        kl = (0.5 * (z_mean**2 + z_logvar.exp() - z_logvar - 1).sum(1)).mean()
        return per_sample.mean() + beta * kl
    return loss


XFIRST = ("x", "x_hat", "mu", "logvar")
PROJECTS = [  # (name, loss, audit options, chapter 2's convention, recon of check_loss)
    ("PyTorch examples", pytorch_examples, dict(data_shape=MNIST, output_shape=784, latent_dim=20, binary=False),
     dict(data_dim=784, latent_dim=20, recon_batch="sum", kl_batch="sum"), "bce"),
    ("Keras vae.py", keras_vae, dict(data_shape=(28, 28, 1), latent_dim=2, arguments=XFIRST),
     dict(data_dim=784, latent_dim=2), "bce"),
    ("AntixK 2020", antixk(144 / CELEBA_TRAIN), dict(data_shape=(3, 64, 64), latent_dim=128, data_range=(-1, 1)),
     dict(data_dim=12288, latent_dim=128, recon_dims="mean", kl_weight=144 / CELEBA_TRAIN), "squared_error"),
    ("AntixK since 2021", antixk(0.00025), dict(data_shape=(3, 64, 64), latent_dim=128),
     dict(data_dim=12288, latent_dim=128, recon_dims="mean", kl_weight=0.00025), "squared_error"),
    ("Pythae v0.1.2", pythae(True), dict(data_shape=MNIST, latent_dim=16),
     dict(data_dim=784, latent_dim=16, recon_weight=0.5), "squared_error"),
    ("Pythae <= v0.1.1", pythae(False), dict(data_shape=MNIST, latent_dim=16),
     dict(data_dim=784, latent_dim=16), "squared_error"),
    ("disentanglement_lib beta 1", disentanglement_lib(1.0),
     dict(data_shape=(64, 64, 1), latent_dim=10, output="logits", arguments=XFIRST),
     dict(data_dim=4096, latent_dim=10), "squared_error"),
    ("disentanglement_lib beta 16", disentanglement_lib(16.0),
     dict(data_shape=(64, 64, 1), latent_dim=10, output="logits", arguments=XFIRST),
     dict(data_dim=4096, latent_dim=10, kl_weight=16.0), "squared_error"),
]


@pytest.mark.parametrize("name, loss, options, convention, recon", PROJECTS, ids=[p[0] for p in PROJECTS])
def test_audit_agrees_with_check_loss_on_the_projects(name, loss, options, convention, recon):
    audit = vaelab.audit_loss(loss, **options)
    report = vaelab.check_loss(recon=recon, **convention)
    _agree(audit, report)
    assert audit.recon == recon
    # the same paragraph as check_loss's for the convention it found
    assert repr(audit).endswith(repr(audit.report))


def test_the_projects_are_chapter_twos():
    nb = json.loads((ROOT / "book" / "02_gaussian_precision.ipynb").read_text())
    source = next("".join(c["source"]) for c in nb["cells"]
                  if c["cell_type"] == "code" and "PROJECTS = [" in "".join(c["source"]))
    namespace = {}
    exec(source[: source.index("\nrows = [")], namespace)
    assert [c for *_, c, _ in namespace["PROJECTS"]] == [p[3] for p in PROJECTS]


def test_recognises_a_gaussian_nll_with_its_own_sigma():
    def loss(x_hat, x, mu, logvar, log_sigma):
        nll = (x - x_hat) ** 2 / (2 * torch.exp(2 * log_sigma)) + log_sigma + 0.5 * math.log(2 * math.pi)
        return (nll.sum((1, 2, 3)) + 4.0 * kl_per_dim(mu, logvar).sum(1)).mean()

    audit = vaelab.audit_loss(loss, data_shape=MNIST, latent_dim=20, arguments=("x_hat", "x", "mu", "logvar", "log_sigma"))
    assert audit.recon == "gaussian_nll" and audit.beta_eff == pytest.approx(4.0) and audit.sigma is None
    assert "Gaussian NLL" in repr(audit) and "Expect posterior collapse" in repr(audit)


def test_a_fixed_gaussian_normaliser_reads_as_its_squared_error():
    def loss(x_hat, x, mu, logvar):  # torch's Gaussian NLL with a fixed variance 0.01, full normaliser
        var = torch.full_like(x, 0.01)
        return F.gaussian_nll_loss(x_hat, x, var, full=True, reduction="sum") / x.shape[0] + kl_per_dim(mu, logvar).sum(1).mean()

    audit = vaelab.audit_loss(loss, data_shape=MNIST, latent_dim=20, data_std=0.5)
    assert audit.recon == "squared_error" and audit.sigma == pytest.approx(0.1)
    assert "constant" in repr(audit) and "well inside the spread" in repr(audit)


def test_logits_bce_and_the_posterior_std():
    def loss(logits, x, mu, std):
        kl = 0.5 * (mu**2 + std**2 - 2 * std.log() - 1)
        return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") + 2 * kl.sum()

    audit = vaelab.audit_loss(loss, data_shape=784, latent_dim=8, output="logits", arguments=("x_hat", "x", "mu", "std"),
                              binary=True)
    assert audit.recon == "bce" and audit.beta_eff == pytest.approx(2.0)
    assert audit.call == "check_loss(recon='bce', binary=True, data_dim=784, latent_dim=8, kl_weight=2.0, " \
                         "recon_batch='sum', kl_batch='sum')"


def test_a_mean_over_pixels_is_told_from_a_weight_when_the_size_can_vary():
    audit = vaelab.audit_loss(LEDGER_LOSSES["BCE mean over everything + KL mean over everything (`.mean()` on both)"][0],
                              data_shape=MNIST, latent_dim=M)
    c = audit.report.convention
    assert (c["recon_dims"], c["kl_dims"], c["recon_weight"], c["kl_weight"]) == ("mean", "mean", 1.0, 1.0)
    assert audit.beta_eff == pytest.approx(N / M)


@pytest.mark.parametrize(
    "loss, match",
    [
        (lambda x_hat, x, mu, logvar: F.l1_loss(x_hat, x) + kl_per_dim(mu, logvar).sum(),
         r"none of the losses the audit recognises"),
        (lambda x_hat, x, mu, logvar: F.mse_loss(x_hat, x) + kl_per_dim(mu, logvar).sum(1).mean().clamp(min=3.0),
         r"not of the form a·R \+ b·KL \+ c: its KL part is no fixed multiple.*clamped KL \(free bits\)"),
        (lambda x_hat, x, mu, logvar: F.mse_loss(x_hat, x) + kl_per_dim(mu, logvar).sum(1).clamp(min=0.5).mean(),
         r"clamped KL"),
        (lambda x_hat, x, mu, logvar: -F.mse_loss(x_hat, x) - kl_per_dim(mu, logvar).sum(),
         r"returns? the ELBO rather than the loss"),
        (lambda x_hat, x, mu, logvar: F.mse_loss(x_hat, x) * x.shape[0] ** 2 + kl_per_dim(mu, logvar).sum(),
         r"reconstruction weight changes with the batch size as neither a sum nor a mean"),
        (lambda x_hat, x, mu, logvar: F.mse_loss(x_hat, x) + kl_per_dim(mu, logvar).sum(),
         r"cannot name one KL weight for this loss without the batch size.*Pass batch_size=B"),
        (lambda x_hat, x, mu, logvar: F.mse_loss(x_hat, x.view(-1, 3)) + kl_per_dim(mu, logvar).sum(),
         r"could not call the loss .* RuntimeError"),
        (lambda x_hat, x, mu, logvar: (x_hat - x).pow(2).sum(1), r"not one number"),
    ],
)
def test_what_it_cannot_read_it_says_why(loss, match):
    with pytest.raises(ValueError, match=match):
        vaelab.audit_loss(loss, data_shape=784, latent_dim=20)


def test_an_annealed_weight_inside_the_function_is_refused():
    steps = []

    def loss(x_hat, x, mu, logvar):
        steps.append(1)
        return F.mse_loss(x_hat, x) + min(1.0, len(steps) / 1000) * kl_per_dim(mu, logvar).sum(1).mean()

    with pytest.raises(ValueError, match=r"changed between two calls with the same inputs.*annealing schedule"):
        vaelab.audit_loss(loss, data_shape=784, latent_dim=20)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(data_shape=0), r"data_shape must be the shape of one example"),
        (dict(latent_dim=0), r"latent_dim must be an integer >= 1"),
        (dict(output="probs"), r"output must be one of 'mean', 'logits'"),
        (dict(arguments=("x_hat", "x", "mu", "logvar", "z")), r"arguments must name each input once"),
        (dict(arguments=("x_hat", "x", "mu")), r"must include 'logvar' or 'std'"),
        (dict(output_shape=100), r"output_shape .* must hold as many values"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vaelab.audit_loss(LEDGER_LOSSES["SSE + KL"][0], **{"data_shape": 784, "latent_dim": 20, **kwargs})
