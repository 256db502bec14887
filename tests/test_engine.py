"""What fit and sweep accept and refuse before the first step: the forms students pass, and what to do instead."""
import warnings

import numpy as np
import pytest
import torch

import vaelab

SHAPE = (1, 6, 6)
DATA = torch.linspace(0.0, 1.0, 96 * 36).reshape(96, *SHAPE).remainder(0.97)
LABELS = torch.arange(96) % 10
TEST = DATA[:32].flip(0)
OPTIONS = dict(epochs=1, batch_size=20, lr=3e-3, progress=False, sync_every=4)


def model(**kwargs):
    return vaelab.mlp_vae(data_shape=SHAPE, hidden=(16,), latent_dim=3, seed=0, **kwargs)


def test_images_with_labels_train_as_the_images_alone():
    plain = vaelab.fit(model(), DATA, test_data=TEST, **OPTIONS)
    labelled = vaelab.fit(model(), (DATA, LABELS), test_data=(TEST, LABELS[:32]), **OPTIONS)
    assert labelled.same_as(plain)
    assert vaelab.elbo(model(), (TEST, LABELS[:32]))["elbo"] == vaelab.elbo(model(), TEST)["elbo"]


def test_a_tensor_dataset_is_accepted_and_a_loader_is_refused_with_what_to_pass():
    dataset = torch.utils.data.TensorDataset(DATA, LABELS)
    assert vaelab.fit(model(), dataset, **OPTIONS).same_as(vaelab.fit(model(), DATA, **OPTIONS))
    loader = torch.utils.data.DataLoader(dataset, batch_size=20)
    with pytest.raises(ValueError, match=r"data must be whole tensors, not a DataLoader: vaelab keeps the whole data "
                                         r"set on the device.*e.g. data=loader.dataset.tensors"):
        vaelab.fit(model(), loader, **OPTIONS)


def test_other_extra_tensors_are_refused():
    with pytest.raises(ValueError, match=r"data must hold 1 tensor\(s\) \(x\) for a VAE; got 3\. Pass the images alone"):
        vaelab.fit(model(), (DATA, LABELS, LABELS), **OPTIONS)


def test_float64_data_and_test_data_are_refused_before_the_first_step():
    m = model()
    before = [p.detach().clone() for p in m.parameters()]
    with pytest.raises(ValueError, match=r"data has dtype torch.float64 but the model's parameters are torch.float32; "
                                         r"convert the data with .to\(torch.float32\)"):
        vaelab.fit(m, DATA.double(), **OPTIONS)
    with pytest.raises(ValueError, match=r"test_data has dtype torch.float64"):
        vaelab.fit(m, DATA, test_data=TEST.double(), **OPTIONS)
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))  # not one step was taken
    with pytest.raises(ValueError, match=r"test_data has dtype torch.float64"):
        vaelab.sweep([model(), model()], DATA, test_data=TEST.double(), **OPTIONS)


def test_a_gaussian_model_warns_about_8bit_grey_levels_stored_as_floats():
    grey = (DATA * 3).round()  # whole numbers above 1 (0-255 would diverge this tiny model at once)
    with pytest.warns(UserWarning, match=r"data look like 8-bit grey levels stored as floats .* Divide by 255"):
        vaelab.fit(model(likelihood="gaussian"), grey, **dict(OPTIONS, epochs=1))
    with pytest.warns(UserWarning, match=r"8-bit grey levels"):
        vaelab.sweep([model(likelihood="gaussian"), model(likelihood="gaussian")], grey, max_steps=1, progress=False)


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 6, 6\) for this model; got \(96, 36\); "
                                         r"reshape it with x.reshape\(-1, 1, 6, 6\)"):
        vaelab.fit(model(), DATA.reshape(96, 36), **OPTIONS)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]; got values from 0 to 247: they look like 8-bit grey levels, so divide by 255"):
        vaelab.fit(model(), (DATA * 255).round(), **OPTIONS)
    with pytest.raises(ValueError, match=r"x must be a floating-point tensor, got dtype torch.uint8; for 8-bit images "
                                         r"use x.float\(\) / 255"):
        vaelab.fit(model(), (DATA * 255).to(torch.uint8), **OPTIONS)
    with pytest.raises(ValueError, match=r"data must be a tensor.*got ndarray; convert it with torch.from_numpy\(data\)"):
        vaelab.fit(model(), DATA.numpy(), **OPTIONS)


def test_dynamic_binarisation_binarises_the_heldout_images_once():
    history = vaelab.fit(model(), DATA, test_data=TEST, binarize="dynamic", **dict(OPTIONS, epochs=2))
    fixed = vaelab.data.binarize(TEST, method="sample", generator=vaelab.batching.generator(0, "binarize-test"))
    m = model()
    vaelab.fit(m, DATA, binarize="dynamic", **dict(OPTIONS, epochs=2))
    assert history.epochs["test_elbo"][-1] == pytest.approx(vaelab.elbo(m, fixed)["elbo"])
    assert history.epochs["test_elbo"][-1] != pytest.approx(vaelab.elbo(m, TEST)["elbo"])  # not BCE on grey levels
    # binary held-out images stay as they are: a fixed binarisation passed in is used unchanged
    again = vaelab.fit(model(), DATA, test_data=fixed, binarize="dynamic", **dict(OPTIONS, epochs=2))
    assert again.epochs["test_elbo"] == history.epochs["test_elbo"]


def test_a_learned_sigma_is_readable_and_recorded():
    m = model(likelihood="gaussian", sigma="shared", log_sigma=-1.0)
    assert float(m.sigma) == pytest.approx(np.exp(-1.0))
    history = vaelab.fit(m, DATA, **dict(OPTIONS, epochs=3))
    assert len(history.epochs["sigma"]) == 3
    assert history.epochs["sigma"][-1] == pytest.approx(float(m.sigma))
    assert history.epochs["sigma"][-1] != pytest.approx(np.exp(-1.0))  # it was learned
    per_pixel = model(likelihood="gaussian", sigma="per_pixel", log_sigma=-1.0)
    assert per_pixel.sigma.shape == SHAPE
    assert model(likelihood="gaussian", sigma="optimal").sigma is None and model().sigma is None
    assert "sigma" not in vaelab.fit(model(), DATA, **OPTIONS).epochs


def test_a_plain_import_reaches_every_submodule_lazily():
    import subprocess
    import sys

    code = ("import sys, vaelab; assert 'matplotlib' not in sys.modules; "
            "assert callable(vaelab.data.mnist) and callable(vaelab.plots.image_grid); "
            "assert 'matplotlib' in sys.modules; print('ok')")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "ok\n"
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        vaelab.nonsense


GREY = (DATA * 255).round() / 255  # on the 8-bit grid, as the loaders return it


def test_dequantize_draws_fresh_noise_every_epoch_and_fixes_the_heldout_noise(training_inputs):
    m = model(likelihood="gaussian")
    seen = training_inputs(m)
    history = vaelab.fit(m, GREY, test_data=GREY[:32], dequantize=True, **dict(OPTIONS, batch_size=96, epochs=2))
    assert not torch.equal(seen[0], seen[1]) and bool((seen[0] > 0).all() and (seen[0] < 1).all())
    fixed = vaelab.dequantize(GREY[:32], generator=vaelab.batching.generator(0, "dequantize-test"))
    assert history.epochs["test_elbo"][-1] == pytest.approx(vaelab.elbo(m, fixed)["elbo"])
    with pytest.raises(ValueError, match="binarize and dequantize are alternatives"):
        vaelab.fit(model(), GREY, binarize="dynamic", dequantize=True, **OPTIONS)
    with pytest.raises(ValueError, match=r"dequantize=True needs the training images as grey levels k / 255"):
        vaelab.fit(model(likelihood="gaussian"), DATA * 0.999, dequantize=True, **OPTIONS)


@pytest.mark.parametrize("mode", ["shared", "per_pixel"])
def test_a_learned_sigma_starts_from_the_training_data_unless_given(mode):
    m = model(likelihood="gaussian", sigma=mode)
    assert m.head.init_from_data
    vaelab.fit(m, GREY, **dict(OPTIONS, max_steps=1, lr=1e-12))  # one step that moves nothing
    deviation = GREY - GREY.mean(0)
    expected = deviation.square().mean(0).sqrt() if mode == "per_pixel" else deviation.square().mean().sqrt()
    torch.testing.assert_close(m.sigma, expected.clamp(min=np.exp(-8.0)), rtol=1e-4, atol=0)
    assert not m.head.init_from_data
    given = model(likelihood="gaussian", sigma=mode, log_sigma=0.0)
    vaelab.fit(given, GREY, **dict(OPTIONS, max_steps=1, lr=1e-12))
    assert torch.allclose(given.sigma, torch.ones(()))


def test_a_sweep_of_learned_sigmas_with_dequantisation_equals_separate_fits():
    options = dict(OPTIONS, epochs=2, dequantize=True, test_data=GREY[:32], seed=5)
    betas = [0.5, 2.0]
    models = [model(likelihood="gaussian", sigma="shared") for _ in betas]
    histories = vaelab.sweep(models, GREY, betas=betas, **options)
    for beta, swept, history in zip(betas, models, histories):
        separate = model(likelihood="gaussian", sigma="shared")
        reference = vaelab.fit(separate, GREY, objective=vaelab.Objective(beta=beta), **options)
        np.testing.assert_allclose(history["objective"], reference["objective"], rtol=1e-4)
        np.testing.assert_allclose(history.epochs["sigma"], reference.epochs["sigma"], rtol=1e-5)
        np.testing.assert_allclose(history.epochs["test_elbo"], reference.epochs["test_elbo"], rtol=1e-5)


def test_resume_knows_about_dequantisation(tmp_path):
    vaelab.fit(model(likelihood="gaussian"), GREY, checkpoint_dir=tmp_path, dequantize=True, **OPTIONS)
    with pytest.raises(ValueError, match=r"dequantize: checkpoint True, this call False"):
        vaelab.fit(model(likelihood="gaussian"), GREY, checkpoint_dir=tmp_path, **OPTIONS)


def test_the_optimal_sigma_is_fixed_from_training_data_before_heldout_data_are_scored():
    m = model(likelihood="gaussian", sigma="optimal")
    assert m.sigma is None  # nothing fixed yet
    history = vaelab.fit(m, GREY, test_data=GREY[:32], dequantize=True, **dict(OPTIONS, epochs=2))
    fixed = float(m.sigma)
    train_epoch = vaelab.dequantize(GREY, generator=vaelab.batching.generator(0, "dequantize", 1))
    expected = (vaelab.rate_distortion(m, train_epoch)["sse"] / 36) ** 0.5
    assert fixed == pytest.approx(expected, rel=1e-5) and history.epochs["sigma"][-1] == pytest.approx(fixed)
    # in eval mode, any data are scored with that sigma, not with their own batch optimum
    test = vaelab.dequantize(GREY[:32], generator=torch.Generator().manual_seed(3))
    out = m.eval()(test, torch.zeros(32, 3))
    mean = out.params["mean"]
    reference = torch.distributions.Normal(mean, fixed).log_prob(test).sum((1, 2, 3))
    torch.testing.assert_close(out.log_px, reference, rtol=1e-5, atol=1e-4)
    assert fixed != pytest.approx(float(vaelab.optimal_log_sigma(test, mean).exp()), rel=1e-3)


# --- what a student trips over: grey levels under a Bernoulli decoder, steps, held-out data never scored ---

BINARY = (DATA > 0.5).float()


def test_a_bernoulli_model_on_grey_levels_warns_unless_asked_for_on_purpose():
    with pytest.warns(UserWarning, match=r"data and test_data hold grey levels .* decoder is Bernoulli.*binary "
                                         r"cross-entropy.*binarize=\"dynamic\".*bernoulli_on_grey=True"):
        vaelab.fit(model(), DATA, test_data=TEST, **OPTIONS)
    with pytest.warns(UserWarning, match=r"^test_data hold grey levels"):
        vaelab.fit(model(), BINARY, test_data=TEST, **OPTIONS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deliberate = vaelab.fit(model(), DATA, test_data=TEST, bernoulli_on_grey=True, **OPTIONS)
        vaelab.fit(model(), DATA, test_data=TEST, binarize="dynamic", **OPTIONS)  # the usual set-up
        vaelab.fit(model(), BINARY, test_data=BINARY[:32], **OPTIONS)
        vaelab.sweep([model(), model()], DATA, betas=[1, 2], bernoulli_on_grey=True, **OPTIONS)
    assert deliberate.same_as(vaelab.fit(model(), DATA, test_data=TEST, bernoulli_on_grey=True, **OPTIONS))
    with pytest.raises(ValueError, match=r"this model's decoder is 'gaussian', which needs no such permission"):
        vaelab.fit(model(likelihood="gaussian"), DATA, bernoulli_on_grey=True, **OPTIONS)
    with pytest.raises(ValueError, match=r"bernoulli_on_grey must be True or False, got 'yes'"):
        vaelab.fit(model(), DATA, bernoulli_on_grey="yes", **OPTIONS)


def test_prepare_heldout_reproduces_the_test_elbo_that_fit_recorded():
    for prepared in ({"binarize": "dynamic"}, {"dequantize": True}):
        grey = (DATA * 255).round() / 255
        likelihood = "bernoulli" if "binarize" in prepared else "gaussian"
        m = model(likelihood=likelihood)
        history = vaelab.fit(m, grey, test_data=(grey[:32], LABELS[:32]), seed=5, **prepared,
                             **dict(OPTIONS, epochs=2))
        test_images = vaelab.prepare_heldout((grey[:32], LABELS[:32]), seed=5, **prepared)
        assert vaelab.elbo(m, test_images, seed=5)["elbo"] == history.epochs["test_elbo"][-1]
        assert vaelab.elbo(m, vaelab.prepare_heldout(grey[:32], seed=6, **prepared), seed=5)["elbo"] != \
            history.epochs["test_elbo"][-1]  # another seed, another draw
    binary = vaelab.prepare_heldout(TEST, binarize="dynamic")
    assert set(binary.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(vaelab.prepare_heldout(binary, binarize="dynamic"), binary)  # binary stays binary
    with pytest.raises(ValueError, match=r"binarize and dequantize are alternatives"):
        vaelab.prepare_heldout(TEST, binarize="dynamic", dequantize=True)
    with pytest.raises(ValueError, match=r"test_data must be images, a floating-point tensor .* got Tensor of dtype "
                                         r"torch.uint8"):
        vaelab.prepare_heldout((TEST * 255).to(torch.uint8))


def test_steps_asks_for_a_number_of_steps_and_max_steps_says_it_is_a_cap():
    history = vaelab.fit(model(), DATA, steps=12, bernoulli_on_grey=True, **dict(OPTIONS, epochs=None))
    assert len(history) == 12 and history.epochs["step"] == [5, 10]  # 5 steps an epoch: two ends, then 2 steps
    with pytest.warns(UserWarning, match=r"max_steps=12 is a cap, not a length: 1 epoch\(s\) of 96 examples in "
                                         r"batches of 20 are 5 steps, so the run stops after 5\. To train 12 steps, "
                                         r"pass steps=12"):
        capped = vaelab.fit(model(), DATA, max_steps=12, bernoulli_on_grey=True, **OPTIONS)
    assert len(capped) == 5
    with pytest.raises(ValueError, match=r"pass steps or epochs, not both"):
        vaelab.fit(model(), DATA, steps=12, **OPTIONS)
    with pytest.raises(ValueError, match=r"pass steps or max_steps, not both"):
        vaelab.fit(model(), DATA, steps=12, max_steps=3, **dict(OPTIONS, epochs=None))


def test_heldout_data_never_scored_is_said():
    with pytest.warns(UserWarning, match=r"test_data were never scored: .* stopped after 3 steps, before its first "
                                         r"epoch \(5 steps\) ended\. Train whole epochs \(steps=5"):
        history = vaelab.fit(model(), DATA, test_data=TEST, max_steps=3, bernoulli_on_grey=True, **OPTIONS)
    assert history.epochs["epoch"] == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vaelab.fit(model(), DATA, test_data=TEST, steps=7, bernoulli_on_grey=True, **dict(OPTIONS, epochs=None))


def test_fit_beta_says_to_pass_an_objective():
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'beta': fit takes the KL weight in an Objective: "
                                        r"objective=vaelab.Objective\(beta=4\)"):
        vaelab.fit(model(), DATA, beta=4, **OPTIONS)
    with pytest.raises(TypeError, match=r"'betas': fit trains one model; .*vaelab.sweep\(models, data, betas=\[1, 4\]\)"):
        vaelab.fit(model(), DATA, betas=[1, 4], **OPTIONS)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'batchsize': did you mean batch_size=\?"):
        vaelab.fit(model(), DATA, batchsize=4, **OPTIONS)


def test_divergence_after_the_8bit_warning_points_at_the_data_scale():
    grey = (DATA * 255).round()
    with pytest.warns(UserWarning, match="8-bit grey levels"), \
            pytest.raises(vaelab.TrainingDiverged, match=r"look like 8-bit grey levels in \[0, 255\].*divide them by "
                                                         r"255 \(data / 255\) first; a lower lr would only hide that"):
        vaelab.fit(model(likelihood="gaussian", sigma="fixed", log_sigma=-20.0), grey, **dict(OPTIONS, lr=10.0))
