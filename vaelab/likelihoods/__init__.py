"""Decoder likelihoods log p(x | z) for the book's data, one module per family.

Every function returns log-densities (log-probabilities for the discretised logistic) in **nats**. By default the result is summed over
all data dimensions and has shape ``(batch,)``; with ``per_dim=True`` it keeps the
shape of ``x`` (one term per pixel), which is what the loss-scale ledger reduces.
Data and parameters must have the same shape: nothing is broadcast silently.

The decoder's choice of likelihood fixes the *scale* of the reconstruction term, and
so the effective weight of the KL term. Chapter 2 (Gaussian) and chapter 3
(Bernoulli vs continuous Bernoulli) of the book derive this.

:mod:`~vaelab.likelihoods.bernoulli` (Bernoulli and continuous Bernoulli),
:mod:`~vaelab.likelihoods.gaussian`, :mod:`~vaelab.likelihoods.beta`, and
:mod:`~vaelab.likelihoods.logistic` (the discretised logistic on the 256 grey levels, a
log-*probability* rather than a density); :mod:`~vaelab.likelihoods.common` holds the
checks and the one reduction they share.
"""
from . import bernoulli, beta, common, gaussian, logistic
from .bernoulli import bernoulli_log_integral, bernoulli_log_prob, cb_log_norm, cb_logits_from_mean, cb_mean, continuous_bernoulli_log_prob
from .beta import beta_log_prob
from .gaussian import MIN_LOG_SIGMA, gaussian_log_prob, mean_image_fit, optimal_log_sigma
from .logistic import MIN_LOG_SCALE, discretized_logistic_log_prob, discretized_logistic_mean, log1mexp

__all__ = sorted(bernoulli.__all__ + beta.__all__ + gaussian.__all__ + logistic.__all__)
