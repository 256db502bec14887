"""vaelab: how to weight the KL term against the reconstruction term, and why.

The companion package of the vaelab book. Everything a chapter calls is importable from
here, and the submodules (``vaelab.data``, ``vaelab.plots``, ...) are attributes of the
package, imported on first use, so that ``import vaelab`` stays light: matplotlib is
only imported by :mod:`vaelab.plots`.

======================  =============================================================
module                  holds
======================  =============================================================
``likelihoods``         log-likelihoods of the decoders (Bernoulli, continuous
                        Bernoulli, Gaussian, Beta)
``divergences``         the Gaussian KL and free bits
``ledger``              sum/mean conventions, their effective beta and implied sigma²
``objective``           :class:`Objective`: what a run minimises
``schedules``           KL-weight schedules
``control``             :class:`PIController`: a KL weight set by feedback
``data``                MNIST, Fashion-MNIST, PTB, dSprites as whole tensors
``models``              decoder heads, image VAEs, the sentence VAE
``train``, ``sweep``    :func:`fit` and :func:`sweep`
``engine``              what ``fit`` and ``sweep`` share (checks, minibatches, optimiser)
``history``             :class:`History`: what training records
``checkpoints``         the checkpoint format and the record that guards resuming
``metrics``             held-out estimates and latent diagnostics
``uncertainty``         paired differences with standard errors; spreads over seeds
``plots``               figures (imports matplotlib)
``notebook``            :func:`glue`, for quoting computed numbers in the text
``scale``               the scale switch (``VAELAB_SCALE``)
``batching``            devices, minibatches, seeds
======================  =============================================================
"""
import importlib as _importlib

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
from .models import VAE, GaussianHead, SentenceVAE, VAEOutput, conv_vae, mlp_vae
from .notebook import glue, stored_glue
from .objective import Objective, kl_penalty, training_loss
from .scale import by_scale, get_scale
from .schedules import Schedule, capacity, constant, cyclical, delayed_linear, linear, staircase
from .sweep import sweep
from .train import fit
from .uncertainty import Comparison, Spread, compare, spread

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "History",
    "GaussianHead",
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
    "mig",
    "mig_from_codes",
    "mlp_vae",
    "mutual_information",
    "optimal_log_sigma",
    "perplexity",
    "pick_device",
    "reduce_loss",
    "spread",
    "staircase",
    "stored_glue",
    "sweep",
    "training_loss",
]

#: Submodules reachable as attributes after a plain ``import vaelab`` (imported on first use).
SUBMODULES = (
    "batching", "checkpoints", "control", "data", "divergences", "engine", "history", "ledger", "likelihoods", "metrics",
    "models", "notebook", "objective", "plots", "scale", "schedules", "sweep", "train", "uncertainty",
)


def __getattr__(name: str):
    if name in SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(SUBMODULES))
