"""The models: decoder heads, image VAEs and the sentence VAE.

=====================================  ==================================================
module                                 holds
=====================================  ==================================================
:mod:`vaelab.models.heads`             one decoder head per likelihood
:mod:`vaelab.models.images`            :class:`VAE`, :func:`mlp_vae`, :func:`conv_vae`
:mod:`vaelab.models.text`              :class:`SentenceVAE` (Bowman et al. 2016)
:mod:`vaelab.models.base`              :class:`VAEOutput`, seeded construction
=====================================  ==================================================

Every model's forward pass takes the reparameterisation noise ``eps`` as an argument
instead of drawing it, so the training loop owns every random number.
"""
from . import base, heads, images, text
from .base import VAEOutput, seeded
from .heads import (
    DECODED_MIN_SIGMA,
    GAUSSIAN_SIGMAS,
    LIKELIHOODS,
    BernoulliHead,
    BetaHead,
    ContinuousBernoulliHead,
    DiscretizedLogisticHead,
    GaussianHead,
    make_head,
)
from .images import VAE, conv_vae, mlp_vae
from .text import SentenceVAE

__all__ = sorted(base.__all__ + heads.__all__ + images.__all__ + text.__all__)
