"""Vectorised sweeps: each configuration equals a separate fit with the same seed."""
import numpy as np
import pytest
import torch

import vaelab

SHAPE = (1, 6, 6)
DATA = torch.linspace(0.0, 1.0, 96 * 36).reshape(96, *SHAPE).remainder(0.97)
TEST = DATA[:32].flip(0)
OPTIONS = dict(epochs=3, batch_size=20, lr=3e-3, progress=False, sync_every=4, test_data=TEST, seed=7)
COLUMNS = ["weight", "recon", "kl", "objective", "elbo"]


def model(likelihood="bernoulli", **kwargs):
    return vaelab.mlp_vae(data_shape=SHAPE, hidden=(16,), latent_dim=3, likelihood=likelihood, seed=0, **kwargs)


def assert_same_run(swept, history, separate, reference):
    """A configuration of a sweep against a separate fit: parameters and every recorded number."""
    for (name, a), b in zip(swept.named_parameters(), separate.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
    assert len(history) == len(reference) and history.epochs["step"] == reference.epochs["step"]
    np.testing.assert_array_equal(history["step"], reference["step"])
    for column in COLUMNS:
        np.testing.assert_allclose(history[column], reference[column], rtol=1e-4, atol=1e-6, err_msg=column)
    np.testing.assert_allclose(history.kl_per_dim, reference.kl_per_dim, rtol=1e-4, atol=1e-6)
    for key in ("test_elbo", "test_recon", "test_kl"):
        np.testing.assert_allclose(history.epochs[key], reference.epochs[key], rtol=1e-5)


def test_beta_sweep_equals_separate_fits():
    betas = [0.25, 1.0, 4.0]
    models = [model() for _ in betas]
    histories = vaelab.sweep(models, DATA, betas=betas, **OPTIONS)
    assert len(histories) == 3 and len(histories[0]) == 15  # 3 epochs of ceil(96 / 20) steps
    for beta, swept, history in zip(betas, models, histories):
        separate = model()
        reference = vaelab.fit(separate, DATA, objective=vaelab.Objective(beta=beta), **OPTIONS)
        assert_same_run(swept, history, separate, reference)
    # and the configurations really differ: a larger beta buys a smaller KL (0.052, 0.024, 0.015 nats)
    kl = [h["kl"][-5:].mean() for h in histories]
    assert kl[0] > 1.5 * kl[1] and kl[1] > 1.5 * kl[2]


def test_schedule_sweep_with_dynamic_binarisation_and_free_bits_equals_separate_fits():
    schedules = [vaelab.linear(10), vaelab.cyclical(12, n_cycles=2), vaelab.delayed_linear(4, 8)]
    options = dict(OPTIONS, binarize="dynamic")
    objectives = [vaelab.Objective(beta=schedule, free_bits=0.1) for schedule in schedules]
    models = [model() for _ in schedules]
    histories = vaelab.sweep(models, DATA, objectives=objectives, **options)
    for schedule, objective, swept, history in zip(schedules, objectives, models, histories):
        separate = model()
        reference = vaelab.fit(separate, DATA, objective=objective, **options)
        np.testing.assert_allclose(history["weight"], schedule(np.arange(15)))
        assert_same_run(swept, history, separate, reference)


def test_fixed_sigma_sweep_equals_separate_fits():
    log_sigmas = [-1.5, 0.0]
    models = [model("gaussian", log_sigma=s) for s in log_sigmas]
    histories = vaelab.sweep(models, DATA, **dict(OPTIONS, max_steps=8))
    for log_sigma, swept, history in zip(log_sigmas, models, histories):
        separate = model("gaussian", log_sigma=log_sigma)
        reference = vaelab.fit(separate, DATA, **dict(OPTIONS, max_steps=8))
        assert_same_run(swept, history, separate, reference)
    assert histories[0]["recon"][-1] > histories[1]["recon"][-1]  # a smaller sigma weighs errors more



@pytest.mark.parametrize("likelihood", ["continuous_bernoulli", "beta", ("gaussian", "shared")])
def test_sweeps_of_other_heads_equal_separate_fits(likelihood):
    # Parameter-free heads score all configurations in one call outside vmap; a learned sigma stays inside.
    likelihood, sigma = likelihood if isinstance(likelihood, tuple) else (likelihood, "fixed")
    make = lambda: model(likelihood, sigma=sigma) if likelihood == "gaussian" else model(likelihood)  # noqa: E731
    betas, options = [0.5, 2.0], dict(OPTIONS, max_steps=6)
    models = [make() for _ in betas]
    histories = vaelab.sweep(models, DATA, betas=betas, **options)
    for beta, swept, history in zip(betas, models, histories):
        separate = make()
        reference = vaelab.fit(separate, DATA, objective=vaelab.Objective(beta=beta), **options)
        assert_same_run(swept, history, separate, reference)

def test_objectives_of_different_forms_in_one_sweep_equal_separate_fits():
    # reductions, free bits and a capacity target differ per configuration: one vmapped loss per form
    objectives = [
        vaelab.Objective(beta=2.0),
        vaelab.Objective(recon_dims="mean", kl_dims="mean"),
        vaelab.Objective(free_bits=0.2),
        vaelab.Objective(capacity=vaelab.capacity(10, stop=3.0), gamma=5.0),
        vaelab.Objective(beta=0.5),
    ]
    options = dict(OPTIONS, max_steps=8)
    models = [model() for _ in objectives]
    histories = vaelab.sweep(models, DATA, objectives=objectives, **options)
    for objective, swept, history in zip(objectives, models, histories):
        separate = model()
        reference = vaelab.fit(separate, DATA, objective=objective, **options)
        assert_same_run(swept, history, separate, reference)
    assert histories[1]["objective"][-1] < histories[0]["objective"][-1] / 5  # the mean convention is another scale


SEEDS = [3, 11, 0]
GREY_LEVELS = (DATA * 255).round() / 255  # on the 8-bit grid, as dequantize=True needs


def seeded(seed, likelihood="bernoulli"):
    return vaelab.mlp_vae(data_shape=SHAPE, hidden=(16,), latent_dim=3, likelihood=likelihood, seed=seed)


@pytest.mark.parametrize(
    "likelihood, data, betas, extra",
    [
        ("bernoulli", DATA, None, {}),  # scored outside vmap, each configuration against its own batch
        ("bernoulli", DATA, [0.5, 1.0, 2.0], dict(binarize="dynamic")),
        ("gaussian", GREY_LEVELS, None, dict(dequantize=True, max_steps=8)),  # a fixed-sigma buffer: scored inside vmap
    ],
    ids=["plain", "binarized", "dequantized"],
)
def test_seed_sweep_equals_separate_fits_with_their_own_seeds(likelihood, data, betas, extra):
    # minibatch order, binarisation or dequantisation, noise, held-out preparation: each from its own seed
    options = {k: v for k, v in dict(OPTIONS, test_data=data[:32].flip(0), **extra).items() if k != "seed"}
    models = [seeded(s, likelihood) for s in SEEDS]
    histories = vaelab.sweep(models, data, seeds=SEEDS, betas=betas, **options)
    for seed, beta, swept, history in zip(SEEDS, betas or [1.0] * len(SEEDS), models, histories):
        separate = seeded(seed, likelihood)
        reference = vaelab.fit(separate, data, objective=vaelab.Objective(beta=beta), seed=seed, **options)
        assert_same_run(swept, history, separate, reference)


def test_seeds_make_runs_of_one_configuration_differ_and_the_sequential_path_takes_them():
    options = {k: v for k, v in dict(OPTIONS, binarize="dynamic").items() if k != "seed"}
    same_start = [model() for _ in SEEDS]  # one initialisation: any difference comes from the seeds of the run
    histories = vaelab.sweep(same_start, DATA, seeds=SEEDS, **options)
    for a, b in [(0, 1), (1, 2), (0, 2)]:
        assert not np.allclose(histories[a]["elbo"], histories[b]["elbo"], rtol=1e-3)
    separately = vaelab.sweep([model() for _ in SEEDS], DATA, seeds=SEEDS, vectorize=False, **options)
    for seed, history, vectorised in zip(SEEDS, separately, histories):
        assert history.same_as(vaelab.fit(model(), DATA, seed=seed, **options))
        np.testing.assert_allclose(history["elbo"], vectorised["elbo"], rtol=1e-4)


def test_sweep_shows_fits_keyword_arguments():
    import inspect

    shown = inspect.signature(vaelab.sweep).parameters
    for name in ("objectives", "betas", "seeds", "test_data", "epochs", "batch_size", "lr", "binarize", "seed", "progress"):
        assert name in shown
    assert "checkpoint_dir" not in shown and "options" not in shown
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'epoch'; it takes test_data, epochs"):
        vaelab.sweep([model(), model()], DATA, epoch=2)


@pytest.mark.parametrize("vectorize", [True, "auto"])
def test_convolutional_sweep_equals_separate_fits(vectorize, capsys):
    data = DATA[:, :, :4, :4].contiguous()
    make = lambda: vaelab.conv_vae(data_shape=(1, 4, 4), channels=(4, 8), hidden=16, latent_dim=2, seed=1)  # noqa: E731
    models = [make(), make()]
    histories = vaelab.sweep(models, data, betas=[0.5, 2.0], vectorize=vectorize,
                             **dict(OPTIONS, test_data=None, max_steps=6))
    said = capsys.readouterr().out
    # on a CPU, "auto" trains a conv VAE's configurations one after another (the vectorised convolutions lose) and says so
    assert ("2 configurations trained one after another with fit" in said) == (vectorize == "auto")
    for beta, swept, history in zip([0.5, 2.0], models, histories):
        separate = make()
        reference = vaelab.fit(separate, data, objective=vaelab.Objective(beta=beta), **dict(OPTIONS, test_data=None, max_steps=6))
        for a, b in zip(swept.parameters(), separate.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(history["objective"], reference["objective"], rtol=1e-4)


def test_models_get_their_own_storage_back():
    models = [model(), model()]
    vaelab.sweep(models, DATA, betas=[1.0, 2.0], **dict(OPTIONS, max_steps=3))
    first, second = (m.encoder[1][0].weight for m in models)
    assert first.is_contiguous() and first.untyped_storage().data_ptr() != second.untyped_storage().data_ptr()
    assert first.untyped_storage().nbytes() == first.numel() * 4  # not a view of the stacked tensor
    assert not models[0].training


def test_a_diverging_configuration_is_named():
    models = [model("gaussian"), model("gaussian", log_sigma=-50.0)]  # (x - mean)^2 / sigma^2 overflows float32
    with pytest.raises(vaelab.TrainingDiverged, match=r"step 0 \(epoch 0\) in configuration 1: the reconstruction term became inf"):
        vaelab.sweep(models, DATA, **OPTIONS)


@pytest.mark.parametrize(
    "models, kwargs, match",
    [
        (lambda: [model(), vaelab.mlp_vae(data_shape=SHAPE, hidden=(8,), latent_dim=3, seed=0)], {},
         r"models\[1\] differs from models\[0\] in parameters, layers"),
        (lambda: [model(), vaelab.mlp_vae(data_shape=SHAPE, hidden=(16,), latent_dim=3, activation="tanh", seed=0)], {},
         r"models must share one architecture .* models\[1\] differs from models\[0\] in layers"),
        (lambda: [model("gaussian"), model("gaussian", sigma="optimal")], {}, r"differs from models\[0\] in head"),
        (lambda: [model(), model("continuous_bernoulli")], {}, r"differs from models\[0\] in likelihood"),
        (lambda: [model()] * 2, {}, r"models\[0\] and models\[1\] are the same object"),
        (lambda: model(), {}, r"models must be a non-empty list of vaelab VAEs"),
        (lambda: [model(), model()], dict(betas=[1.0]), r"betas must give one KL weight per model: 2 models but 1 betas"),
        (lambda: [model(), model()], dict(betas=[1.0, 2.0], objectives=[vaelab.Objective()] * 2),
         r"pass objectives .* or betas"),
        (lambda: [model(), model()], dict(objectives=[vaelab.Objective(), "linear"]),
         r"objectives\[1\] must be a vaelab.Objective"),
        (lambda: [model(), model()], dict(betas=[1.0, "linear"]), r"beta must be a real number"),
        (lambda: [model(), model()], dict(objective=vaelab.Objective()), r"sweep does not take objective=: give one"),
        (lambda: [model(), model()], dict(checkpoint_dir="x"), r"sweep does not take checkpoint_dir=.*use vaelab.fit"),
        (lambda: [model(), model()], dict(likelihood="gaussian"), r"likelihood='gaussian' does not match"),
        (lambda: [model(), model()], dict(vectorize="yes"), r"vectorize must be 'auto', True or False; got 'yes'"),
        (lambda: [model(), model()], dict(seeds=[1]), r"seeds must give one seed per model: 2 models but 1 seeds"),
        (lambda: [model(), model()], dict(seeds=3), r"seeds must be a list of non-negative ints, one per model; got 3"),
        (lambda: [model(), model()], dict(seeds=[1, -1]), r"seeds\[1\] must be an integer >= 0, got -1"),
        (lambda: [model(), model()], dict(seeds=[1, 2.0]), r"seeds\[1\] must be an integer >= 0, got 2.0"),
        (lambda: [model(), model()], dict(seeds=[1, 2], seed=3), r"pass seed= .* or seeds= \(one per configuration\), not both"),
    ],
)
def test_bad_sweeps(models, kwargs, match):
    with pytest.raises(ValueError, match=match):
        vaelab.sweep(models(), DATA, progress=False, **kwargs)
