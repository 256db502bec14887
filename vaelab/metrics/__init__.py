"""Held-out measurements of trained VAEs, in nats per example unless noted.

* :func:`elbo`: the single-sample held-out ELBO and its two terms.
* :func:`iw_log_likelihood`: the importance-weighted estimate of ``log p(x)``
  (Burda et al. 2016), the number to compare across models and papers.
* :func:`kl_per_dim`, :func:`active_units`: which latent dimensions carry information.
* :func:`mutual_information`: ``I(x; z)`` under the aggregate posterior.
* :func:`mig`, :func:`mig_from_codes`: the mutual information gap (Chen et al. 2018);
  :func:`factor_information`: the informations ``I(z_j; v_k)`` it is built from.
* :func:`rate_distortion`: rate and distortion on held-out data; :func:`gaussian_baseline`:
  the input-ignoring Gaussian a Gaussian VAE must beat (and :func:`pixel_baseline`,
  :func:`histogram_baseline` for the other families); :func:`principal_variances`: the
  data's variance per principal direction; :func:`bits_per_dim`; :func:`perplexity`, per word,
  for sentences.

The ELBO, the importance-weighted estimate and the latent diagnostics measure sentence
VAEs too, given :class:`vaelab.data.Sentences`; sentences are batched by length.

The ELBO, the importance-weighted estimate and the baselines take ``per_example=True``
to return each held-out example's score as well (``result["per_example"]``, in data
order), for the paired comparisons of :func:`vaelab.compare`.

All of them work on whole tensors on the model's device, a batch of examples at a time.
The modules: :mod:`~vaelab.metrics.estimates` (likelihood estimates),
:mod:`~vaelab.metrics.latents` (latent diagnostics), :mod:`~vaelab.metrics.disentanglement`,
and :mod:`~vaelab.metrics.posterior` (what they share).
"""
from . import baselines, disentanglement, estimates, latents
from .disentanglement import factor_information, mig, mig_from_codes
from .baselines import gaussian_baseline, histogram_baseline, pixel_baseline
from .estimates import bits_per_dim, elbo, iw_log_likelihood, perplexity, rate_distortion
from .latents import active_units, kl_per_dim, mutual_information, principal_variances

__all__ = sorted(baselines.__all__ + disentanglement.__all__ + estimates.__all__ + latents.__all__)
