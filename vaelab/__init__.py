"""vaelab: how to weight the KL term against the reconstruction term, and why.

The companion package of the vaelab book. Everything a chapter calls is importable
from here; matplotlib is only imported by :mod:`vaelab.plots`.
"""
from .divergences import free_bits, gaussian_kl
from .likelihoods import (
    bernoulli_log_prob,
    beta_log_prob,
    cb_log_norm,
    cb_logits_from_mean,
    cb_mean,
    continuous_bernoulli_log_prob,
    gaussian_log_prob,
    optimal_log_sigma,
)
from .objective import beta_from_norm, beta_norm, effective_beta, implied_sigma2, kl_penalty, reduce_loss
from .scale import by_scale, get_scale
from .schedules import capacity, constant, cyclical, delayed_linear, linear

__version__ = "0.1.0"
from .batching import pick_device
from .metrics import active_units, elbo, iw_log_likelihood, kl_per_dim, mig, mig_from_codes, mutual_information
from .models import VAE, VAEOutput, conv_vae, mlp_vae
from .train import History, TrainingDiverged, fit, load_checkpoint
from .sweep import sweep
from .text import SentenceVAE
