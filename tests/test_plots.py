"""Figures: they draw the numbers they are given (checked on the artists, not by eye)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import vaelab  # noqa: E402
from vaelab import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_importing_vaelab_does_not_import_matplotlib():
    import subprocess
    import sys

    code = "import sys, vaelab; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_image_grid_places_each_image():
    images = torch.stack([torch.full((1, 2, 2), v) for v in (0.0, 0.25, 0.5, 1.0, 0.75)])
    ax = plots.image_grid(images, nrow=3, pad=1)
    grid = ax.get_images()[0].get_array()
    assert grid.shape == (5, 8)  # 2 rows, 3 columns of 2x2 with 1-pixel gaps
    assert grid[0, 0] == 0.0 and grid[0, 3] == 0.25 and grid[0, 6] == 0.5 and grid[3, 0] == 1.0 and grid[3, 3] == 0.75
    assert grid[3, 6] == 1.0  # the empty slot stays white
    with pytest.raises(ValueError, match=r"images must have shape \(n, 1 or 3, H, W\)"):
        plots.image_grid(torch.zeros(2, 4, 4))


def test_plot_history_draws_kl_and_weight_on_a_twin_axis():
    model = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=2, seed=0)
    data = torch.linspace(0, 1, 40 * 16).reshape(40, 1, 4, 4)
    history = vaelab.fit(model, data, epochs=2, batch_size=10, objective=vaelab.Objective(beta=vaelab.linear(8)), progress=False, test_data=data)
    ax_recon, ax_kl, ax_weight = history.plot(smooth=1)
    np.testing.assert_allclose(ax_kl.lines[0].get_ydata(), history["kl"])
    np.testing.assert_allclose(ax_weight.lines[0].get_ydata(), vaelab.linear(8)(np.arange(8)))
    np.testing.assert_allclose(ax_recon.lines[1].get_ydata(), history.epochs["test_recon"])
    # without the weight: no twin axis is made
    _, ax_kl_only, none = history.plot(smooth=1, show_weight=False)
    assert none is None and len(ax_kl_only.figure.axes) == 2


def test_plot_schedule_and_rate_distortion_plane():
    ax = plots.plot_schedule(vaelab.cyclical(100, n_cycles=2), 100)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), vaelab.cyclical(100, n_cycles=2)(np.arange(100)))
    ax = plots.rate_distortion_plane([("beta=1", 20.0, 80.0), ("beta=4", 8.0, 100.0)])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [20.0, 8.0])
    assert [t.get_text() for t in ax.texts] == ["beta=1", "beta=4"]
    with pytest.raises(ValueError, match="points must contain"):
        plots.rate_distortion_plane([])


def test_latent_traversal_varies_one_dimension_per_row():
    model = vaelab.mlp_vae(data_shape=(1, 4, 4), hidden=(8,), latent_dim=3, seed=0)
    x = torch.full((1, 4, 4), 0.5)
    ax = plots.latent_traversal(model, x, dims=[0, 2], values=[-1.0, 0.0, 1.0])
    grid = ax.get_images()[0].get_array()
    assert grid.shape == (2 * 5 - 1, 3 * 5 - 1)
    mu, _ = model.encode(x.unsqueeze(0))
    z = mu.clone()
    z[0, 2] = 1.0
    expected = model.head.mean(model.decode(z))[0, 0].detach().numpy()
    np.testing.assert_allclose(grid[5:9, 10:14], expected, rtol=1e-6)


def test_rate_distortion_plane_in_squared_error_units():
    ax = plots.rate_distortion_plane([("a", 1.0, 20.0), ("b", 5.0, 12.0)], distortion="sse")
    assert "squared error" in ax.get_ylabel() and len(ax.lines) == 1  # no equal-ELBO diagonals
    assert len(plots.rate_distortion_plane([("a", 1.0, 20.0), ("b", 5.0, 12.0)]).lines) == 4
    with pytest.raises(ValueError, match="distortion must be one of 'nats', 'sse'"):
        plots.rate_distortion_plane([("a", 1.0, 2.0)], distortion="bits")
