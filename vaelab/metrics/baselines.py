"""Models that ignore the input: the bar a VAE's latent code has to clear.

Each one models every pixel independently with the same distribution for every image,
fitted to the training images and scored on held-out ones, in the units of
:func:`vaelab.iw_log_likelihood`. A VAE whose decoder ignores ``z`` *is* such a model, so a
VAE that scores worse than the baseline of its own family has learned nothing useful from
its code.

* :func:`gaussian_baseline`: a Gaussian per pixel, with a shared or per-pixel sigma, in
  closed form.
* :func:`pixel_baseline`: any decoder family of vaelab (continuous Bernoulli, Beta,
  Gaussian, discretised logistic), one set of decoder outputs per pixel fitted by
  maximum likelihood with Adam.
* :func:`histogram_baseline`: a 256-level histogram per pixel: the best any
  input-ignoring model of 8-bit pixels can do, up to its smoothing.

Each takes ``per_example=True`` to add ``"per_example"``: ``{"nll", "bits_per_dim"}``, each
a ``(N,)`` float64 CPU tensor over the test images in their order, whose mean is the float
of the same name, for a paired comparison with a VAE scored on the same images
(:func:`vaelab.compare`).
"""
from __future__ import annotations

import math

import torch

from .._checks import (
    check_choice, check_flag, check_positive, check_positive_int, check_tensor, level_index, no_validation,
)
from ..batching import batch_slices, generator
from ..likelihoods import gaussian_log_prob, mean_image_fit
from ..models.heads import make_head
from .estimates import bits_per_dim

__all__ = ["gaussian_baseline", "histogram_baseline", "pixel_baseline"]


def _scores(nll_each: torch.Tensor, data_dim: int, levels: int | None, per_example: bool) -> dict:
    """``{"per_example": {"nll", "bits_per_dim"}}`` from each test image's nll, or nothing."""
    if not per_example:
        return {}
    nll_each = nll_each.detach().double().cpu()
    return {"per_example": {"nll": nll_each, "bits_per_dim": bits_per_dim(nll_each, data_dim, levels=levels)}}


def _pair(train, test):
    check_tensor("train", train, min_dim=2)
    check_tensor("test", test, min_dim=2)
    if train.shape[1:] != test.shape[1:]:
        raise ValueError(
            f"train and test must hold images of one shape; got {tuple(train.shape[1:])} and {tuple(test.shape[1:])}"
        )


@torch.no_grad()
def gaussian_baseline(train, test, *, sigma: str = "shared", levels: int | None = None,
                      per_example: bool = False) -> dict:
    """A Gaussian per pixel that ignores the input, fitted to ``train`` and scored on ``test``.

    The mean is the training set's mean image; the variance is the mean squared deviation
    from it over all pixels (``sigma="shared"``) or per pixel (``"per_pixel"``): the
    maximum-likelihood fit to the training data. It is the bar a Gaussian VAE must clear:
    its latent code is worth something only if it scores better than this model, which
    has none.

    Args:
        train, test: images ``(N, *shape)``, floating point; dequantised when ``levels`` is given.
        sigma: ``"shared"`` or ``"per_pixel"``.
        levels: as in :func:`iw_log_likelihood`.
        per_example: also return each test image's scores (see the module's docstring).

    Returns:
        ``{"nll": float, "bits_per_dim": float, "sigma": tensor}``: nats per test example,
        bits per dimension, and the fitted sigma (0-dim, or one per pixel; data units);
        with ``per_example=True`` also ``"per_example"``: ``{"nll", "bits_per_dim"}``, ``(N,)`` each.
    """
    per_example = check_flag("per_example", per_example)
    check_choice("sigma", sigma, ("shared", "per_pixel"))
    _pair(train, test)
    train, test = train.detach().cpu().double(), test.detach().cpu().double()  # float64: on the CPU (MPS has none)
    mean, log_sigma = mean_image_fit(train, per_pixel=sigma == "per_pixel")
    log_px = gaussian_log_prob(test, mean.expand_as(test), log_sigma)
    nll = -float(log_px.mean())
    return {"nll": nll, "bits_per_dim": bits_per_dim(nll, mean.numel(), levels=levels), "sigma": log_sigma.exp().float(),
            **_scores(-log_px, mean.numel(), levels, per_example)}


def pixel_baseline(train, test, *, likelihood: str, levels: int | None = None, steps: int = 600,
                   batch_size: int = 1000, lr: float = 0.05, seed: int = 0, per_example: bool = False) -> dict:
    """The best input-ignoring model of one decoder family: the same distribution for every
    image, with its own parameters for each pixel, fitted by maximum likelihood.

    The decoder head of ``likelihood`` (:func:`vaelab.models.make_head`) scores the data from
    one learned output per pixel and parameter (for ``"gaussian"``, a per-pixel mean and a
    per-pixel learned sigma), trained with Adam on minibatches of ``train`` for ``steps``
    steps, its step size decaying geometrically from ``lr`` to ``lr / 1000``, then scores ``test``.

    Args:
        train, test: images ``(N, *shape)`` in the form the family scores: dequantised grey
            levels for a density (continuous Bernoulli, Beta, Gaussian), the 8-bit grey
            levels themselves for ``"discretized_logistic"``.
        likelihood: ``"bernoulli"`` (binary ``test`` only; the fit is then closed-form, each
            pixel's mean over ``train``, which may be binary or the grey levels that dynamic
            binarisation draws from, clipped to ``[1e-6, 1 - 1e-6]``),
            ``"continuous_bernoulli"``, ``"beta"``, ``"gaussian"`` or ``"discretized_logistic"``.
        levels: as in :func:`vaelab.iw_log_likelihood`: 256 for dequantised 8-bit data,
            ``None`` for the discretised logistic, whose result is already a probability.
        steps, batch_size, lr, seed: the fit (Adam on a fixed sequence of minibatches).
        per_example: also return each test image's scores (see the module's docstring).

    Returns:
        ``{"nll": float, "bits_per_dim": float, "params": dict}``: nats per test image, bits
        per dimension, and the fitted distribution's parameters, each ``shape``; with
        ``per_example=True`` also ``"per_example"``: ``{"nll", "bits_per_dim"}``, ``(N,)`` each.
    """
    per_example = check_flag("per_example", per_example)
    check_choice("likelihood", likelihood,
                 ("bernoulli", "continuous_bernoulli", "beta", "gaussian", "discretized_logistic"))
    _pair(train, test)
    if likelihood == "bernoulli":
        return _bernoulli_baseline(train, test, per_example=per_example)
    steps, batch_size = check_positive_int("steps", steps), check_positive_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    shape = tuple(train.shape[1:])
    head = make_head(likelihood, shape, sigma="per_pixel")
    head.to(train.device)
    raw = torch.zeros((head.n_outputs * shape[0], *shape[1:]), device=train.device, requires_grad=True)
    optimizer = torch.optim.Adam([raw, *head.parameters()], lr=lr)
    # The step size decays geometrically to lr / 1000, so that the fit settles to the
    # precision a constant pixel needs (its sigma can be as small as the dequantisation noise).
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1e-3 ** (step / steps))
    with no_validation():
        for step in range(steps):
            index = torch.randint(train.shape[0], (min(batch_size, train.shape[0]),),
                                  generator=generator(seed, "pixel-baseline", step)).to(train.device)
            x = train.index_select(0, index)
            params = head.params(raw.expand(x.shape[0], *raw.shape))
            loss = -head.log_prob(x, params).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            decay.step()
        with torch.no_grad():
            total = 0.0
            log_px = torch.empty(test.shape[0], dtype=torch.float64)
            for index in batch_slices(test.shape[0], batch_size):
                x = test[index].to(train.device)
                batch_log_px = head.log_prob(x, head.params(raw.expand(x.shape[0], *raw.shape))).double()
                total += float(batch_log_px.sum())
                log_px[index] = batch_log_px.cpu()
            fitted = {name: value[0] for name, value in head.params(raw.unsqueeze(0)).items()}
    nll = -total / test.shape[0]
    return {"nll": nll, "bits_per_dim": bits_per_dim(nll, math.prod(shape), levels=levels), "params": fitted,
            **_scores(-log_px, math.prod(shape), levels, per_example)}


@torch.no_grad()
def _bernoulli_baseline(train, test, *, per_example: bool) -> dict:
    """Each pixel Bernoulli with its mean over ``train``: the maximum-likelihood input-ignoring model."""
    if not bool(((test == 0) | (test == 1)).all()):
        raise ValueError(
            "likelihood='bernoulli' scores binary test images (0 or 1); binarise them first "
            "(vaelab.data.binarize), or use a likelihood for grey levels"
        )
    p = train.detach().double().mean(0).clamp(1e-6, 1 - 1e-6).to(test.device)
    x = test.double()
    log_px = (x * p.log() + (1 - x) * (-p).log1p()).flatten(1).sum(1)
    nll = -float(log_px.mean())
    return {"nll": nll, "bits_per_dim": bits_per_dim(nll, p.numel()), "params": {"probs": p.float()},
            **_scores(-log_px, p.numel(), None, per_example)}


@torch.no_grad()
def histogram_baseline(train, test, *, levels: int = 256, pseudocount: float = 1.0,
                       per_example: bool = False) -> dict:
    """A histogram of the ``levels`` grey levels per pixel, from the training images.

    ``P(pixel i = k) = (count_ik + a) / (N + levels * a)`` with the pseudocount ``a`` (add-one
    smoothing by default), so that a level never seen at a pixel in training keeps a small
    probability. Among models that ignore the input it is all but the best possible for
    8-bit pixels: it can put any amount of mass on exactly 0 and on exactly 255, which no
    smooth density can. The result is a log-probability: bits per dimension need no
    dequantisation term.

    Args:
        train, test: grey levels ``k / (levels - 1)``, images ``(N, *shape)``.
        levels: number of grey levels.
        pseudocount: ``a`` > 0.
        per_example: also return each test image's scores (see the module's docstring).

    Returns:
        ``{"nll": float, "bits_per_dim": float}``, nats per test image and bits per dimension;
        with ``per_example=True`` also ``"per_example"``: ``{"nll", "bits_per_dim"}``, ``(N,)`` each.
    """
    per_example = check_flag("per_example", per_example)
    _pair(train, test)
    levels = check_positive_int("levels", levels, minimum=2)
    pseudocount = check_positive("pseudocount", pseudocount)
    k_train, k_test = (level_index(name, data.reshape(data.shape[0], -1).cpu().double(), levels).long()
                       for data, name in ((train, "train"), (test, "test")))
    pixels = k_train.shape[1]
    counts = torch.zeros(pixels, levels, dtype=torch.float64)
    counts.scatter_add_(1, k_train.T.contiguous(), torch.ones_like(k_train.T, dtype=torch.float64))
    log_p = (counts + pseudocount).log() - math.log(train.shape[0] + levels * pseudocount)
    log_p_test = log_p.gather(1, k_test.T.contiguous())  # (pixels, N)
    nll = -float(log_p_test.sum()) / test.shape[0]
    return {"nll": nll, "bits_per_dim": bits_per_dim(nll, pixels),
            **_scores(-log_p_test.sum(0), pixels, None, per_example)}
