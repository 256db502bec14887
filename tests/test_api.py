"""The public API: the names a chapter, the README and coursework import, and what help() shows for them."""
import doctest
import sys
import inspect
import pydoc
import warnings

import numpy as np
import pytest
import torch

import vaelab

# A name removed or renamed here breaks the book and every assignment written against it:
# change this list only together with the README and the chapters.
PUBLIC = [
    "GaussianHead", "History", "Objective", "Schedule", "SentenceVAE", "TrainingDiverged", "VAE", "VAEOutput",
    "active_units", "bernoulli_log_prob", "beta_from_norm", "beta_log_prob", "beta_norm", "by_scale", "capacity",
    "cb_log_norm", "cb_logits_from_mean", "cb_mean", "constant", "continuous_bernoulli_log_prob", "conv_vae",
    "cyclical", "delayed_linear", "effective_beta", "elbo", "fit", "free_bits", "gaussian_kl", "gaussian_log_prob",
    "get_scale", "glue", "implied_sigma2", "iw_log_likelihood", "kl_penalty", "kl_per_dim", "linear",
    "load_checkpoint", "mig", "mig_from_codes", "mlp_vae", "mutual_information", "optimal_log_sigma", "pick_device",
    "reduce_loss", "sweep", "training_loss", "bits_per_dim", "dequantize", "gaussian_baseline", "principal_variances",
    "rate_distortion", "discretized_logistic_log_prob", "discretized_logistic_mean", "histogram_baseline",
    "pixel_baseline", "bernoulli_log_integral", "PIController", "perplexity", "staircase",
    "LossReport", "check_loss", "stored_glue", "Comparison", "Spread", "compare", "spread", "prepare_heldout",
    "factor_information", "LossAudit", "audit_loss",
]
DATA_PUBLIC = [
    "CHECKSUMS", "Checksum", "DOWNLOAD_DEADLINE", "DOWNLOAD_TIMEOUT", "DSPRITES_FACTORS", "DataIntegrityError",
    "DownloadError", "DSPRITES_FILE", "MIRRORS", "PTBCorpus", "Sentences", "Vocab", "binarize", "cache_dir", "dequantize", "dsprites",
    "dsprites_like", "fashion_mnist", "fetch_file", "file_version", "mnist", "on_level_grid", "ptb", "render_dsprites_like",
    "SHAPE_SYMMETRY", "distinct_orientations", "orientation_angles",
]


def test_public_names_are_pinned():
    assert sorted(vaelab.PUBLIC_NAMES) == sorted(PUBLIC)
    assert all(hasattr(vaelab, name) for name in PUBLIC)
    assert sorted(vaelab.data.__all__) == sorted(DATA_PUBLIC)
    assert all(hasattr(vaelab.data, name) for name in DATA_PUBLIC)
    for module in vaelab.SUBMODULES:
        assert getattr(vaelab, module).__doc__, module  # every module says what it holds


@pytest.mark.parametrize("module", ["ledger", "audit", "objective", "uncertainty"])
def test_doctests(module):
    result = doctest.testmod(getattr(vaelab, module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_help_shows_what_a_student_looks_for():
    assert "recon_dims: 'str' = 'sum'" in str(inspect.signature(vaelab.implied_sigma2))
    text = pydoc.render_doc(vaelab.implied_sigma2, renderer=pydoc.plaintext)
    assert "SSE + KL" in text and "sigma^2 = 1/2" in text
    assert "F.mse_loss(x_hat, x)" in pydoc.render_doc(vaelab.effective_beta, renderer=pydoc.plaintext)
    assert "the labels are" in pydoc.render_doc(vaelab.fit, renderer=pydoc.plaintext)
    assert "decoder's likelihood" in vaelab.VAE.likelihood.__doc__
    assert "starting value of the learned one" in vaelab.mlp_vae.__doc__
    assert "0.048 nats" in vaelab.sweep.__doc__


def test_effective_beta_takes_a_shape_or_says_what_to_pass():
    assert vaelab.effective_beta(data_dim=(1, 28, 28), latent_dim=20, recon_dims="mean") == pytest.approx(784)
    with pytest.raises(ValueError, match=r"data_dim must be an integer >= 1.*e.g. data_dim=784"):
        vaelab.effective_beta(data_dim=784.0, latent_dim=20)


def test_image_grid_warns_before_saturating():
    from vaelab import plots

    with pytest.warns(UserWarning, match=r"images range from 0 to 255: values outside are clipped.*images / 255"):
        plots.image_grid(torch.linspace(0, 255, 32).reshape(2, 1, 4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.image_grid(torch.rand(2, 1, 4, 4))


def test_glue_prints_the_value_where_myst_nb_is_missing(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "myst_nb", None)  # as on Colab: import myst_nb fails
    vaelab.glue("ch_number", np.float64(26.1834567))
    vaelab.glue("ch_count", 20)
    assert capsys.readouterr().out == "ch_number = 26.1835\nch_count = 20\n"
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        vaelab.glue("", 1.0)


def test_glue_stores_numpy_and_torch_scalars_as_python_numbers(monkeypatch):
    stored = {}
    fake = type(sys)("myst_nb")
    fake.glue = lambda name, value, display=False: stored.update({name: value})
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    vaelab.glue("a", np.float64(0.25))
    vaelab.glue("b", torch.tensor(3))
    vaelab.glue("c", np.arange(3))
    assert type(stored["a"]) is float and stored["a"] == 0.25
    assert type(stored["b"]) is int and stored["b"] == 3
    assert isinstance(stored["c"], np.ndarray)  # arrays are left as they are


def test_stored_glue_reads_another_chapters_numbers(tmp_path, monkeypatch):
    import json

    def output(name, text):
        return {"output_type": "display_data", "data": {"application/papermill.record/text/plain": text},
                "metadata": {"scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}}}

    cells = [{"cell_type": "code", "source": "", "metadata": {}, "execution_count": 1, "outputs": [
        output("kl", "28.5"), output("weight", "np.float64(0.27)"), output("scheme", "'free bits'"),
        output("rates", "[1.0, 2.5]"), {"output_type": "stream", "name": "stdout", "text": "kl = 3"}]}]
    path = tmp_path / "04_x.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert vaelab.stored_glue(path) == {"kl": 28.5, "weight": 0.27, "scheme": "free bits", "rates": [1.0, 2.5]}
    with pytest.raises(ValueError, match="must be the path of a .ipynb file"):
        vaelab.stored_glue(tmp_path / "x.md")
    empty = tmp_path / "empty.ipynb"
    empty.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(ValueError, match="stores no glued value"):
        vaelab.stored_glue(empty)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.ipynb is not on disk"):
        vaelab.stored_glue("missing.ipynb", book_url="file:///nonexistent/")
    # not on disk here (as on Colab): read from book_url, the file name appended
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "05_y.ipynb").write_text(path.read_text())
    assert vaelab.stored_glue("05_y.ipynb", book_url=remote.as_uri() + "/")["kl"] == 28.5


@pytest.mark.parametrize("module", vaelab.SUBMODULES)
def test_every_name_in_a_submodules_all_exists(module):
    import importlib

    imported = importlib.import_module(f"vaelab.{module}")
    missing = [name for name in getattr(imported, "__all__", []) if not hasattr(imported, name)]
    assert not missing, f"vaelab.{module}.__all__ names {missing}, which `from vaelab.{module} import *` cannot import"


def test_help_of_the_package_is_a_short_map():
    text = pydoc.render_doc(vaelab, renderer=pydoc.plaintext)
    assert len(text.splitlines()) < 120  # was 5,578 lines while every class was documented in full
    for call in ("prepare_heldout(test_images", "fit(model, data", "iw_log_likelihood", "Objective(beta=4)"):
        assert call in text
    assert "Methods inherited from torch.nn.modules.module.Module" not in text
    assert not hasattr(vaelab, "__all__")  # pydoc would document each of PUBLIC_NAMES in full
