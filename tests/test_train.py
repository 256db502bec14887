"""The training loop: determinism, resume, divergence, checkpoints, and its objective."""
import os

import numpy as np
import pytest
import torch

import vaelab
import vaelab.objective as objective_module
import vaelab.train as train_module

SHAPE = (1, 6, 6)
DATA = torch.linspace(0.0, 1.0, 96 * 36).reshape(96, *SHAPE).remainder(0.97)
TEST = DATA[:32].flip(0)


def model(seed=0, likelihood="bernoulli"):
    return vaelab.mlp_vae(data_shape=SHAPE, hidden=(16,), latent_dim=3, likelihood=likelihood, seed=seed)


OBJECTIVE_FIELDS = ("beta", "recon_dims", "kl_dims", "free_bits", "capacity", "gamma")


def run(**kwargs):
    """fit a small model; objective fields among ``kwargs`` make its Objective."""
    m = model(kwargs.pop("model_seed", 0))
    fields = {k: kwargs.pop(k) for k in OBJECTIVE_FIELDS if k in kwargs}
    if fields:
        kwargs["objective"] = vaelab.Objective(**fields)
    # DATA are grey levels: a Bernoulli model on them is the naive BCE, asked for on purpose here
    options = dict(epochs=3, batch_size=20, lr=3e-3, progress=False, sync_every=4, test_data=TEST, bernoulli_on_grey=True)
    options.update(kwargs)
    return m, vaelab.fit(m, DATA, **options)


def params(m):
    return [p.detach().clone() for p in m.parameters()]


def test_same_seed_gives_bit_identical_results_and_another_seed_does_not():
    m1, h1 = run(seed=3)
    m2, h2 = run(seed=3)
    assert h1.same_as(h2)
    assert all(torch.equal(a, b) for a, b in zip(params(m1), params(m2)))
    _, h3 = run(seed=4)
    assert not h1.same_as(h3)


def test_history_records_every_step_and_epoch():
    schedule = vaelab.linear(10)
    _, h = run(beta=schedule)
    assert len(h) == 3 * 5  # ceil(96 / 20) = 5 steps per epoch
    np.testing.assert_array_equal(h["step"], np.arange(15))
    np.testing.assert_allclose(h["weight"], schedule(np.arange(15)))
    np.testing.assert_allclose(h["elbo"], -(h["recon"] + h["kl"]))
    np.testing.assert_allclose(h.kl_per_dim.sum(1), h["kl"], rtol=1e-6)
    np.testing.assert_allclose(h["objective"], h["recon"] + h["weight"] * h["kl"], rtol=1e-5)
    assert np.all(np.diff(h["time"]) >= 0)
    assert h.epochs["epoch"] == [0, 1, 2] and h.epochs["step"] == [5, 10, 15]


def test_heldout_elbo_after_the_last_epoch_matches_metrics_elbo():
    m, h = run()
    result = vaelab.elbo(m, TEST)
    assert h.epochs["test_elbo"][-1] == pytest.approx(result["elbo"])
    assert result["elbo"] == pytest.approx(-(result["recon"] + result["kl"]))


def test_training_improves_the_heldout_elbo():
    _, h = run(epochs=30)
    assert h.epochs["test_elbo"][-1] > h.epochs["test_elbo"][0] + 1.0


def test_free_bits_and_capacity_objectives_are_recorded():
    _, fb = run(free_bits=2.0)
    assert np.all(fb["objective"] >= fb["recon"] + 3 * 2.0 - 1e-4)  # 3 latents x 2 nats allowance
    target = vaelab.capacity(15, stop=5.0)
    _, cap = run(capacity=target, gamma=10.0)
    np.testing.assert_allclose(cap["objective"], cap["recon"] + 10.0 * np.abs(cap["kl"] - target(np.arange(15))), rtol=1e-5)


def test_mean_reductions_scale_the_reconstruction_term():
    _, h = run(recon_dims="mean", epochs=1)
    np.testing.assert_allclose(h["objective"], h["recon"] / 36 + h["kl"], rtol=1e-5)


def test_resumed_run_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    m_full, h_full = run(checkpoint_dir=tmp_path / "full", checkpoint_every=4)

    calls = {"n": 0}
    real_loss = objective_module.training_loss

    def crash_at_step_11(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt("simulated disconnect")
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(objective_module, "training_loss", crash_at_step_11)
    with pytest.raises(KeyboardInterrupt):
        run(checkpoint_dir=tmp_path / "cut", checkpoint_every=4)
    monkeypatch.setattr(objective_module, "training_loss", real_loss)
    assert vaelab.load_checkpoint(tmp_path / "cut" / "latest.pt")["step"] == 8

    with pytest.raises(ValueError, match=r"differs in model weights at step 0 \(the model's seed\)"):
        run(checkpoint_dir=tmp_path / "cut", checkpoint_every=4, model_seed=99)  # built otherwise: another run
    m_resumed, h_resumed = run(checkpoint_dir=tmp_path / "cut", checkpoint_every=4)
    assert h_resumed.same_as(h_full)
    assert all(torch.equal(a, b) for a, b in zip(params(m_resumed), params(m_full)))
    assert sorted(os.listdir(tmp_path / "cut")) == ["latest.pt"]


def test_resume_refuses_another_model_or_other_settings(tmp_path):
    run(checkpoint_dir=tmp_path, checkpoint_every=5, epochs=1)
    other = vaelab.mlp_vae(data_shape=SHAPE, hidden=(8,), latent_dim=3, seed=0)
    with pytest.raises(ValueError, match="was saved from a different model"):
        vaelab.fit(other, DATA, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"different run.*batch_size: checkpoint 20, this call 32"):
        vaelab.fit(model(), DATA, checkpoint_dir=tmp_path, batch_size=32, lr=3e-3, progress=False)


def test_a_failed_checkpoint_write_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    run(checkpoint_dir=tmp_path, checkpoint_every=5, epochs=1)
    before = (tmp_path / "latest.pt").read_bytes()

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(train_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        run(checkpoint_dir=tmp_path, checkpoint_every=5, epochs=2)
    assert (tmp_path / "latest.pt").read_bytes() == before
    assert os.listdir(tmp_path) == ["latest.pt"]


def test_divergence_names_step_and_term_and_keeps_last_good_checkpoint(tmp_path):
    m = model()
    real_forward = m.forward
    calls = {"n": 0}

    def forward_going_bad(*args, **kwargs):
        out = real_forward(*args, **kwargs)
        calls["n"] += 1
        if m.training and calls["n"] >= 7:
            return out._replace(log_px=out.log_px * float("nan"))
        return out

    m.forward = forward_going_bad
    with pytest.raises(vaelab.TrainingDiverged, match=r"step 6 .*the reconstruction term became nan") as error:
        vaelab.fit(m, DATA, batch_size=20, epochs=3, checkpoint_dir=tmp_path, checkpoint_every=2, progress=False)
    assert error.value.step == 6
    state = vaelab.load_checkpoint(tmp_path / "latest.pt")
    assert state["step"] == 6  # steps 0-5 completed and checked; step 6 is the bad one
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_dynamic_binarisation_resamples_each_epoch(training_inputs):
    m = model()
    seen = training_inputs(m)
    vaelab.fit(m, DATA, batch_size=96, epochs=2, binarize="dynamic", progress=False)
    assert all(set(torch.unique(x).tolist()) <= {0.0, 1.0} for x in seen)
    assert not torch.equal(seen[0], seen[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(likelihood="gaussian"), r"likelihood='gaussian' does not match the model's decoder head, which is 'bernoulli'"),
        (dict(epochs=0), r"epochs must be an integer >= 1"),
        (dict(checkpoint_every=5), r"checkpoint_every needs a checkpoint_dir"),
        (dict(binarize="static"), r"binarize must be one of"),
        (dict(objective=vaelab.Objective(beta=lambda s: s - 5.0)), r"beta must give one finite value >= 0 per step"),
        (dict(objective=2.0), r"objective must be a vaelab.Objective, e.g. vaelab.Objective\(beta=4.0\); got 2.0"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vaelab.fit(model(), DATA, progress=False, **kwargs)


def test_bad_data():
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 1, 6, 6\)"):
        vaelab.fit(model(), torch.zeros(10, 1, 28, 28), progress=False)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
        vaelab.fit(model(), DATA * 255, progress=False)
    with pytest.raises(ValueError, match=r"x contains 1 NaN"):
        bad = DATA.clone()
        bad[3, 0, 0, 0] = float("nan")
        vaelab.fit(model(), bad, progress=False)


def test_unknown_scale_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("VAELAB_SCALE", "huge")
    with pytest.raises(ValueError, match="VAELAB_SCALE must be one of smoke, book, paper"):
        vaelab.get_scale()
    monkeypatch.delenv("VAELAB_SCALE")
    assert vaelab.get_scale() == "book"
    monkeypatch.setenv("VAELAB_SCALE", "smoke")
    assert vaelab.by_scale(smoke=1, book=2, paper=3) == 1
