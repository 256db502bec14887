"""vaelab: how to weight the KL term against the reconstruction term of a VAE, and why.

The companion package of the vaelab book. What to call for what (``help(vaelab.fit)``
for any one of them; the whole reference is the book's API page):

=====================  ==================================================================
to                     call
=====================  ==================================================================
load data              ``vaelab.data.mnist("train")`` (also ``fashion_mnist``, ``ptb``,
                       ``dsprites``): whole tensors, grey levels in [0, 1]
build a model          ``mlp_vae(latent_dim=20, likelihood="bernoulli", seed=0)``,
                       ``conv_vae``, ``SentenceVAE``
choose the loss        ``Objective(beta=4)``; a schedule as beta: ``linear``,
                       ``cyclical``, ``staircase``, ...; ``PIController``; ``free_bits``
train                  ``fit(model, data, objective=..., test_data=..., epochs=5,
                       binarize="dynamic")``; many configurations: ``sweep``
read a run             the ``History`` ``fit`` returns: ``history["elbo"]``,
                       ``history.epochs["test_elbo"]``, ``history.plot()``
prepare test data      ``prepare_heldout(test_images, binarize="dynamic", seed=0)``,
                       as ``fit`` prepares its ``test_data``
score held-out data    ``elbo``, ``iw_log_likelihood`` (``levels=256`` on dequantised
                       8-bit images), ``rate_distortion``, ``perplexity``
compare models         ``compare`` (paired, with a standard error), ``spread`` (seeds),
                       input-ignoring baselines: ``pixel_baseline``, ...
look at the latents    ``active_units``, ``kl_per_dim``, ``mutual_information``, ``mig``
read a written loss    ``audit_loss(my_loss, data_shape=(1, 28, 28), latent_dim=20)``
                       (the function itself); ``check_loss`` (its reductions),
                       ``effective_beta``, ``implied_sigma2``
resume, reproduce      ``fit(..., checkpoint_dir="runs/a")``, ``load_checkpoint``;
                       ``by_scale`` and ``VAELAB_SCALE``; ``pick_device``
plot                   ``vaelab.plots`` (the only module that imports matplotlib)
=====================  ==================================================================

Submodules (``vaelab.likelihoods``, ``vaelab.metrics``, ...; listed in ``SUBMODULES``)
are attributes of the package, imported on first use. ``PUBLIC_NAMES`` lists the public
API; it is not called ``__all__`` so that ``help(vaelab)`` shows this map rather than the
full text of every class, ``torch.nn.Module``'s inherited methods included.
"""
import importlib as _importlib

from .audit import LossAudit, audit_loss
from .batching import pick_device
from .checkpoints import load_checkpoint
from .control import PIController
from .divergences import free_bits, gaussian_kl
from .history import History, TrainingDiverged
from .ledger import LossReport, beta_from_norm, beta_norm, check_loss, effective_beta, implied_sigma2, reduce_loss
from .likelihoods import (
    bernoulli_log_integral,
    bernoulli_log_prob,
    beta_log_prob,
    cb_log_norm,
    cb_logits_from_mean,
    cb_mean,
    continuous_bernoulli_log_prob,
    discretized_logistic_log_prob,
    discretized_logistic_mean,
    gaussian_log_prob,
    optimal_log_sigma,
)
from .metrics import (
    active_units,
    bits_per_dim,
    elbo,
    factor_information,
    gaussian_baseline,
    histogram_baseline,
    iw_log_likelihood,
    kl_per_dim,
    mig,
    mig_from_codes,
    mutual_information,
    perplexity,
    pixel_baseline,
    principal_variances,
    rate_distortion,
)
from .data.images import dequantize
from .engine import prepare_heldout
from .models import VAE, GaussianHead, SentenceVAE, VAEOutput, conv_vae, mlp_vae
from .notebook import glue, stored_glue
from .objective import Objective, kl_penalty, training_loss
from .scale import by_scale, get_scale
from .schedules import Schedule, capacity, constant, cyclical, delayed_linear, linear, staircase
from .sweep import sweep
from .train import fit
from .uncertainty import Comparison, Spread, compare, spread

__version__ = "0.1.0"

#: The public API: what a chapter, the README and coursework import (pinned by tests/test_api.py).
PUBLIC_NAMES = [
    "Comparison",
    "History",
    "GaussianHead",
    "LossAudit",
    "LossReport",
    "Objective",
    "PIController",
    "Schedule",
    "SentenceVAE",
    "Spread",
    "TrainingDiverged",
    "VAE",
    "VAEOutput",
    "active_units",
    "audit_loss",
    "bits_per_dim",
    "dequantize",
    "gaussian_baseline",
    "histogram_baseline",
    "pixel_baseline",
    "principal_variances",
    "rate_distortion",
    "bernoulli_log_integral",
    "bernoulli_log_prob",
    "beta_from_norm",
    "beta_log_prob",
    "beta_norm",
    "by_scale",
    "capacity",
    "check_loss",
    "compare",
    "cb_log_norm",
    "cb_logits_from_mean",
    "cb_mean",
    "constant",
    "continuous_bernoulli_log_prob",
    "discretized_logistic_log_prob",
    "discretized_logistic_mean",
    "conv_vae",
    "cyclical",
    "delayed_linear",
    "effective_beta",
    "elbo",
    "fit",
    "free_bits",
    "gaussian_kl",
    "gaussian_log_prob",
    "get_scale",
    "glue",
    "implied_sigma2",
    "iw_log_likelihood",
    "kl_penalty",
    "kl_per_dim",
    "linear",
    "load_checkpoint",
    "factor_information",
    "mig",
    "mig_from_codes",
    "mlp_vae",
    "mutual_information",
    "optimal_log_sigma",
    "perplexity",
    "pick_device",
    "prepare_heldout",
    "reduce_loss",
    "spread",
    "staircase",
    "stored_glue",
    "sweep",
    "training_loss",
]

#: Submodules reachable as attributes after a plain ``import vaelab`` (imported on first use).
SUBMODULES = (
    "audit", "batching", "checkpoints", "control", "data", "divergences", "engine", "history", "ledger", "likelihoods", "metrics",
    "models", "notebook", "objective", "plots", "scale", "schedules", "sweep", "train", "uncertainty",
)


def __getattr__(name: str):
    if name in SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(SUBMODULES))
