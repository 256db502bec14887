"""Checkpoints: a resume continues exactly the run that wrote it, and refuses any other."""
import numpy as np
import pytest
import torch

import vaelab

SHAPE = (1, 6, 6)
DATA = (torch.linspace(0.0, 1.0, 96 * 36).reshape(96, *SHAPE) * 7.3).remainder(1.0).round()  # binary pixels
TEST = DATA[:32].flip(0)
OPTIONS = dict(epochs=2, batch_size=20, lr=3e-3, progress=False, sync_every=4, test_data=TEST)


def model(**kwargs):
    return vaelab.mlp_vae(data_shape=SHAPE, hidden=(16,), latent_dim=3, seed=0, **kwargs)


def fit(folder, **kwargs):
    m = kwargs.pop("model", None) or model()
    return m, vaelab.fit(m, kwargs.pop("data", DATA), checkpoint_dir=folder, **{**OPTIONS, **kwargs})


@pytest.mark.parametrize(
    "changed, named",
    [
        (dict(objective=vaelab.Objective(beta=4.0)), r"objective.beta: checkpoint '1.0', this call '4.0'"),
        (dict(objective=vaelab.Objective(free_bits=0.5)), r"objective.free_bits: checkpoint 'None', this call '0.5'"),
        (dict(objective=vaelab.Objective(recon_dims="mean")), r"objective.recon_dims"),
        (dict(binarize="dynamic"), r"binarize: checkpoint None, this call 'dynamic'"),
        (dict(data=DATA.flip(0)), r"data: checkpoint '[0-9a-f]+', this call '[0-9a-f]+'"),
        (dict(test_data=TEST[:16]), r"test_data"),
        (dict(lr=1e-3), r"lr: checkpoint 0.003, this call 0.001"),
        (dict(seed=1), r"seed: checkpoint 0, this call 1"),
        (dict(clip_grad_norm=1.0), r"clip_grad_norm: checkpoint None, this call 1.0"),
    ],
)
def test_a_finished_run_is_not_returned_for_another_call(tmp_path, changed, named):
    fit(tmp_path)
    with pytest.raises(ValueError, match=r"holds 10 steps of a different run, so continuing it would mix two runs\. "
                                         r"It differs in .*" + named):
        fit(tmp_path, **changed)


def test_a_different_fixed_sigma_is_another_run(tmp_path):
    fit(tmp_path, model=model(likelihood="gaussian", log_sigma=-1.0))
    with pytest.raises(ValueError, match=r"model head.log_sigma: checkpoint -1.0, this call -2.0"):
        fit(tmp_path, model=model(likelihood="gaussian", log_sigma=-2.0))


def test_a_half_finished_run_is_not_continued_with_another_schedule(tmp_path):
    fit(tmp_path, max_steps=6, checkpoint_every=3)
    with pytest.raises(ValueError, match=r"objective.beta: checkpoint '1.0', this call 'linear\(total_steps=20.*\)' "
                                         r"\(its values over the 6 steps done differ\)"):
        fit(tmp_path, objective=vaelab.Objective(beta=vaelab.linear(20)))
    # a lambda has no readable name: its values decide
    with pytest.raises(ValueError, match=r"this call 'a lambda' \(its values over the 6 steps done differ\)"):
        fit(tmp_path, objective=vaelab.Objective(beta=lambda steps: 4.0 + 0 * steps))


def test_other_names_for_the_same_values_continue_the_run(tmp_path):
    _, full = fit(tmp_path / "full")
    fit(tmp_path / "cut", max_steps=6)
    m, resumed = fit(tmp_path / "cut", objective=vaelab.Objective(beta=vaelab.constant(1.0)))
    assert resumed.same_as(full)


def test_a_schedule_may_change_after_the_steps_done(tmp_path):
    # steps 0-5 saw weight 1 under both, so continuing is exactly the run with the new schedule
    later = vaelab.Objective(beta=lambda steps: np.where(np.asarray(steps) < 6, 1.0, 0.5))
    _, reference = fit(tmp_path / "ref", objective=later)
    fit(tmp_path / "cut", max_steps=6)
    _, resumed = fit(tmp_path / "cut", objective=later)
    assert resumed.same_as(reference)


def test_a_finished_run_extends_to_more_epochs(tmp_path):
    m_long, long = fit(tmp_path / "long", epochs=4)
    fit(tmp_path / "short", epochs=2)
    m, extended = fit(tmp_path / "short", epochs=4)
    assert extended.same_as(long)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), m_long.parameters()))
    with pytest.raises(ValueError, match=r"holds 20 steps, more than the 10 this call trains; pass more epochs"):
        fit(tmp_path / "short", epochs=2)


def test_resume_false_starts_afresh(tmp_path):
    fit(tmp_path)
    _, fresh = fit(tmp_path, objective=vaelab.Objective(beta=4.0), resume=False)
    assert fresh["weight"][0] == 4.0
    assert vaelab.load_checkpoint(tmp_path / "latest.pt")["history"]["steps"][0, 2] == 4.0


def test_a_different_architecture_names_the_tensor_and_both_shapes(tmp_path):
    fit(tmp_path)
    other = vaelab.mlp_vae(data_shape=SHAPE, hidden=(8,), latent_dim=3, seed=0)
    with pytest.raises(ValueError, match=r"saved from a different model \(tensor encoder.1.0.weight: checkpoint "
                                         r"\(16, 36\), this model \(8, 36\); .*Build the model with the arguments"):
        fit(tmp_path, model=other)
    with pytest.raises(ValueError, match=r"likelihood: checkpoint 'bernoulli', this model 'continuous_bernoulli'"):
        fit(tmp_path, model=model(likelihood="continuous_bernoulli"))


def test_an_old_or_foreign_file_is_named(tmp_path):
    torch.save({"format": "vaelab-checkpoint-1"}, tmp_path / "latest.pt")
    with pytest.raises(ValueError, match=r"is not a vaelab checkpoint of format vaelab-checkpoint-3 .* delete it"):
        fit(tmp_path)


def test_a_dequantised_run_with_a_learned_sigma_resumes_exactly(tmp_path):
    grey = (DATA * 255).round() / 255
    options = dict(dequantize=True, test_data=grey[:32])
    m_full, full = fit(tmp_path / "full", data=grey, model=model(likelihood="gaussian", sigma="shared"), **options)
    fit(tmp_path / "cut", data=grey, model=model(likelihood="gaussian", sigma="shared"), max_steps=7, **options)
    m, resumed = fit(tmp_path / "cut", data=grey, model=model(likelihood="gaussian", sigma="shared"), **options)
    assert resumed.same_as(full) and resumed.epochs["sigma"] == full.epochs["sigma"]
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), m_full.parameters()))


def test_load_checkpoint_takes_the_checkpoint_dir_and_says_what_a_folder_lacks(tmp_path):
    x = (torch.linspace(0, 1, 64 * 16).reshape(64, 1, 4, 4) * 7.3).remainder(1.0).round()
    model = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, seed=0)
    vaelab.fit(model, x, epochs=1, batch_size=16, progress=False, device="cpu", checkpoint_dir=tmp_path / "run",
               checkpoint_every=2)
    from_dir = vaelab.load_checkpoint(tmp_path / "run", model)
    from_file = vaelab.load_checkpoint(tmp_path / "run" / "latest.pt")
    assert from_dir["history"]["steps"].shape == from_file["history"]["steps"].shape
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no latest.pt"):
        vaelab.load_checkpoint(tmp_path / "empty")
