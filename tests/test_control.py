"""The PI controller on the KL weight: its formula, its bounds, that it reaches its target, and exact resume."""
import math

import numpy as np
import pytest
import torch

import vaelab
from vaelab.data import Sentences


def test_one_update_follows_the_formula_and_smooths_the_kl():
    controller = vaelab.PIController(target=3.0, kp=0.5, ki=0.01, smoothing=0.8)
    state = controller.initial_state()
    first = controller.update(state, torch.tensor(5.0))  # the first KL starts the running average
    error = 3.0 - 5.0
    assert float(first) == pytest.approx(0.5 / (1 + math.exp(error)) - 0.01 * error)
    second = controller.update(state, torch.tensor(1.0))
    smoothed = 0.8 * 5.0 + 0.2 * 1.0
    integral = -0.01 * error - 0.01 * (3.0 - smoothed)
    assert float(state.kl) == pytest.approx(smoothed)
    assert float(second) == pytest.approx(0.5 / (1 + math.exp(3.0 - smoothed)) + integral)


def test_the_weight_stays_in_its_bounds_and_the_integral_does_not_wind_up():
    controller = vaelab.PIController(target=2.0, kp=0.3, ki=0.05, beta_min=0.1, beta_max=0.7, smoothing=0.0)
    state = controller.initial_state()
    generator = torch.Generator().manual_seed(0)
    weights = [float(controller.update(state, 20 * torch.rand((), generator=generator))) for _ in range(500)]
    assert min(weights) >= 0.1 and max(weights) <= 0.7
    # a long spell far below target pins the weight at beta_min; the integral is held there,
    # so one step above target lifts the weight at once instead of after a long unwinding
    for _ in range(1000):
        pinned = controller.update(state, torch.tensor(0.0))
    assert float(pinned) == pytest.approx(0.1)
    lifted = [float(controller.update(state, torch.tensor(12.0))) for _ in range(5)]
    assert lifted[-1] > 0.1 + 0.01


def test_it_reaches_its_target_on_a_toy_plant():
    # A KL that falls as the weight rises, with batch noise: KL = 8 (1 - w) + noise.
    controller = vaelab.PIController(target=3.0, kp=0.01, ki=0.002, smoothing=0.9)
    state = controller.initial_state()
    generator = torch.Generator().manual_seed(1)
    weight, kls = torch.tensor(0.0, dtype=torch.float64), []
    for _ in range(4000):
        kl = 8 * (1 - weight) + 0.5 * torch.randn((), generator=generator, dtype=torch.float64)
        weight = controller.update(state, kl)
        kls.append(float(kl))
    assert np.mean(kls[-500:]) == pytest.approx(3.0, rel=0.05)


def test_fit_reaches_the_target_kl_and_records_the_weight():
    torch.manual_seed(0)
    x = (torch.rand(512, 1, 6, 6) < torch.linspace(0.1, 0.9, 36).view(1, 1, 6, 6)).float()
    x[:256, :, :3] = 1 - x[:256, :, :3]  # two kinds of image: something for the code to carry
    model = vaelab.mlp_vae(data_shape=(1, 6, 6), hidden=(32,), latent_dim=4, seed=0)
    controller = vaelab.PIController(target=1.5, kp=0.01, ki=0.01)
    history = vaelab.fit(model, x, objective=vaelab.Objective(beta=controller), epochs=60, batch_size=64, lr=3e-3,
                         progress=False, seed=0)
    weights = history["weight"]
    assert np.all(weights >= 0) and np.all(weights <= 1) and np.ptp(weights) > 0
    assert np.mean(history["kl"][-80:]) == pytest.approx(1.5, rel=0.2)
    assert vaelab.elbo(model, x)["kl"] == pytest.approx(1.5, rel=0.25)


def test_resume_with_a_controller_equals_the_uninterrupted_run(tmp_path):
    tokens = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0], [1, 9, 5, 2, 0], [1, 4, 4, 4, 2]]).repeat(6, 1)
    data = Sentences(tokens, (tokens != 0).sum(1))
    objective = vaelab.Objective(beta=vaelab.PIController(target=0.0, kp=0.2, ki=1.0))

    def run(folder, **options):
        model = vaelab.SentenceVAE(10, embed_dim=8, hidden_dim=12, latent_dim=3, seed=0)
        history = vaelab.fit(model, data, objective=objective, epochs=4, batch_size=5, lr=1e-2, progress=False,
                             checkpoint_dir=folder, bucket_size=2, sync_every=3, **options)
        return model, history

    full_model, full = run(tmp_path / "full")
    run(tmp_path / "cut", max_steps=7)
    cut_model, resumed = run(tmp_path / "cut")
    assert resumed.same_as(full)
    assert len(np.unique(full["weight"])) > 3
    for a, b in zip(full_model.parameters(), cut_model.parameters()):
        assert torch.equal(a, b)


def test_a_sweep_configuration_with_a_controller_equals_its_fit():
    torch.manual_seed(0)
    x = (torch.rand(256, 1, 5, 5) < 0.4).float()
    build = lambda: vaelab.mlp_vae(data_shape=(1, 5, 5), hidden=(16,), latent_dim=3, seed=0)  # noqa: E731
    objectives = [vaelab.Objective(beta=0.5), vaelab.Objective(beta=vaelab.PIController(target=2.0, ki=0.01)),
                  vaelab.Objective(beta=vaelab.PIController(target=0.5, ki=0.02, kp=0.1))]
    models = [build() for _ in objectives]
    histories = vaelab.sweep(models, x, objectives=objectives, epochs=2, batch_size=32, progress=False)
    for objective, history in zip(objectives, histories):
        alone = vaelab.fit(build(), x, objective=objective, epochs=2, batch_size=32, progress=False)
        np.testing.assert_allclose(history["weight"], alone["weight"], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(history["kl"], alone["kl"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arguments, named", [
    (dict(target=-1.0), "target"), (dict(target=math.inf), "target"), (dict(target=math.nan), "target"),
    (dict(target=1.0, kp=-0.1), "kp"), (dict(target=1.0, ki=-1e-4), "ki"),
    (dict(target=1.0, beta_min=-0.1), "beta_min"), (dict(target=1.0, beta_min=0.5, beta_max=0.5), "beta_max"),
    (dict(target=1.0, smoothing=1.0), "smoothing"),
])
def test_bad_settings_are_named(arguments, named):
    with pytest.raises(ValueError, match=named):
        vaelab.PIController(**arguments)


def test_a_controller_has_no_weights_in_advance():
    objective = vaelab.Objective(beta=vaelab.PIController(target=1.0))
    assert objective.controller.target == 1.0
    assert np.isnan(objective.betas(3)).all()


def _simulated_run(controller, steps=300):
    """A KL that follows 15 (1 - weight) nats with a lag of 20 steps, read through noisy batches; the KL per step."""
    state, kl, noise, kls = controller.initial_state(), 12.0, torch.Generator().manual_seed(0), []
    for _ in range(steps):
        weight = float(controller.update(state, torch.tensor(kl + float(torch.randn((), generator=noise)))))
        kl += 0.05 * (15 * (1 - weight) - kl)
        kls.append(kl)
    return np.array(kls)


def test_the_short_run_settings_of_the_docstring_reach_the_target_where_the_defaults_do_not():
    assert "ki=1e-3, smoothing=0.8" in vaelab.PIController.__doc__
    defaults = _simulated_run(vaelab.PIController(target=3.0))
    short_run = _simulated_run(vaelab.PIController(target=3.0, ki=1e-3, smoothing=0.8))
    assert np.abs(defaults[-100:] - 3).mean() > 5  # after 300 steps still far above the target
    assert np.abs(short_run[-100:] - 3).mean() < 0.3
    # the running average lags the batch KL by about 1 / (1 - smoothing) steps: 63% of a step change after that many
    for smoothing, lag in ((0.95, 20), (0.8, 5)):
        controller, state = vaelab.PIController(target=3.0, smoothing=smoothing), None
        state = controller.initial_state()
        controller.update(state, torch.tensor(0.0))
        for _ in range(lag):
            controller.update(state, torch.tensor(1.0))
        assert float(state.kl) == pytest.approx(1 - math.exp(-1), abs=0.05)
