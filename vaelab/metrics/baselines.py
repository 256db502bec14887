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
  maximum likelihood to convergence (in closed form, by Newton's method, or by Adam and
  L-BFGS), with the remaining gradient reported.
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
from ..likelihoods import cb_logits_from_mean, gaussian_log_prob, mean_image_fit
from ..models.heads import GaussianHead, make_head
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
    image, with its own parameters for each pixel, fitted by maximum likelihood to convergence.

    Each family is fitted where its optimum lies, not just near it:

    * ``"continuous_bernoulli"``: in closed form. It is an exponential family in ``x``, so at
      the maximum its mean equals the pixel's training mean: ``logits =
      cb_logits_from_mean(mean)`` (Loaiza-Ganem & Cunningham 2019, eq. 7). For an
      always-black pixel of dequantised data (mean about 1/512) that is a logit near -500,
      which no gradient method started at 0 reaches in a few hundred steps.
    * ``"beta"``: by Newton's method per pixel on its sufficient statistics, the training
      means of ``log y`` and ``log(1 - y)`` of the squeezed pixel ``y`` (see
      :class:`vaelab.models.BetaHead`); the log-likelihood is concave in ``(alpha, beta)``,
      so Newton converges to the unique maximum from the method-of-moments start.
    * ``"gaussian"``: in closed form, each pixel's mean and standard deviation
      (:func:`vaelab.likelihoods.gaussian.mean_image_fit` with ``per_pixel=True``).
    * ``"discretized_logistic"``: no closed form; each pixel's frequencies of the 256 levels
      are its sufficient statistic, so Adam on that exact full-batch objective (``steps``,
      ``lr``, step size decaying geometrically to ``lr / 1000``), then L-BFGS.

    Every result reports ``"grad_max"``, the largest absolute gradient of the mean training
    log-likelihood per image with respect to any fitted parameter (each pixel's logit;
    ``alpha`` and ``beta``; mean and log sigma; location and log scale): about 0 at the
    maximum, so a caller can assert the fit converged.

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
        steps, lr: the Adam stage of the discretised logistic's fit; ``batch_size`` batches
            the scoring; ``seed`` is kept for compatibility (every fit is deterministic).
        per_example: also return each test image's scores (see the module's docstring).

    Returns:
        ``{"nll": float, "bits_per_dim": float, "params": dict, "grad_max": float}``: nats per
        test image, bits per dimension, the fitted distribution's parameters (each
        ``shape``), and the convergence check above (nats per image per unit of parameter;
        0.0 for ``"bernoulli"``, whose fit is exact); with ``per_example=True`` also
        ``"per_example"``: ``{"nll", "bits_per_dim"}``, ``(N,)`` each.
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
    head = make_head(likelihood, shape)
    train64 = train.detach().cpu().double()  # float64 on the CPU: the fits are per pixel and small
    with no_validation():
        if likelihood == "continuous_bernoulli":
            fitted = {"logits": cb_logits_from_mean(train64.mean(0).clamp(1e-12, 1 - 1e-12))}
        elif likelihood == "beta":
            squeezed = train64 * (1 - 2 * head.squeeze) + head.squeeze
            fitted = _beta_fit(squeezed.log().mean(0), (-squeezed).log1p().mean(0), squeezed.mean(0),
                               squeezed.var(0))
        elif likelihood == "gaussian":
            mean, log_sigma = mean_image_fit(train64, per_pixel=True)
            head = GaussianHead(shape, sigma="per_pixel", log_sigma=0.0).double()
            head.log_sigma.data.copy_(log_sigma)
            fitted = {"mean": mean}
        else:
            fitted = _logistic_fit(head, train64, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
        grad_max = _grad_max(head, fitted, train64, batch_size)
        with torch.no_grad():
            log_px = torch.empty(test.shape[0], dtype=torch.float64)
            for index in batch_slices(test.shape[0], batch_size):
                x = test[index].detach().cpu().double()
                log_px[index] = head.log_prob(x, _expand(fitted, x.shape[0]))
    if likelihood == "gaussian":
        fitted = {"mean": fitted["mean"], "log_sigma": head.current_log_sigma(None, {}).detach()}
    nll = -float(log_px.mean())
    return {"nll": nll, "bits_per_dim": bits_per_dim(nll, math.prod(shape), levels=levels),
            "params": {name: value.detach().float() for name, value in fitted.items()}, "grad_max": grad_max,
            **_scores(-log_px, math.prod(shape), levels, per_example)}


def _expand(params: dict, batch: int) -> dict:
    return {name: value.expand(batch, *value.shape) for name, value in params.items()}


def _grad_max(head, fitted: dict, train: torch.Tensor, batch_size: int) -> float:
    """Largest |d (mean training log-likelihood per image) / d parameter| over pixels and parameters."""
    leaves = {name: value.detach().clone().requires_grad_() for name, value in fitted.items()}
    extra = [p for p in head.parameters() if p.requires_grad]
    grads = [torch.zeros_like(v) for v in [*leaves.values(), *extra]]
    for index in batch_slices(train.shape[0], batch_size):
        x = train[index]
        total = head.log_prob(x, _expand(leaves, x.shape[0])).sum() / train.shape[0]
        for g, d in zip(grads, torch.autograd.grad(total, [*leaves.values(), *extra])):
            g += d
    return max(float(g.abs().max()) for g in grads)


def _beta_fit(mean_log: torch.Tensor, mean_log1m: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
              *, iterations: int = 100, tolerance: float = 1e-10) -> dict:
    """Maximum-likelihood Beta per pixel from ``E[log y]``, ``E[log(1 - y)]`` (each ``shape``).

    Newton's method on the concave log-likelihood ``(a - 1) E[log y] + (b - 1) E[log(1 - y)]
    - log B(a, b)`` from the method-of-moments start, each step shortened to keep ``a, b > 0``.
    """
    common = (mean * (1 - mean) / var.clamp(min=1e-300) - 1).clamp(min=1e-3)
    a, b = (mean * common).clamp(min=1e-3), ((1 - mean) * common).clamp(min=1e-3)
    for _ in range(iterations):
        digamma_ab, trigamma_ab = torch.digamma(a + b), torch.polygamma(1, a + b)
        g_a = mean_log - torch.digamma(a) + digamma_ab
        g_b = mean_log1m - torch.digamma(b) + digamma_ab
        if float(torch.maximum(g_a.abs(), g_b.abs()).max()) < tolerance:
            break
        h_aa, h_bb, h_ab = trigamma_ab - torch.polygamma(1, a), trigamma_ab - torch.polygamma(1, b), trigamma_ab
        det = h_aa * h_bb - h_ab * h_ab  # > 0: the Hessian is negative definite
        step_a = -(h_bb * g_a - h_ab * g_b) / det
        step_b = -(h_aa * g_b - h_ab * g_a) / det
        # at most 90% of the way to the boundary a = 0 or b = 0
        limit = torch.ones_like(a)
        limit = torch.where(step_a < 0, torch.minimum(limit, -0.9 * a / step_a), limit)
        limit = torch.where(step_b < 0, torch.minimum(limit, -0.9 * b / step_b), limit)
        a, b = a + limit * step_a, b + limit * step_b
    return {"alpha": a, "beta": b}


def _logistic_fit(head, train: torch.Tensor, *, steps: int, batch_size: int, lr: float, seed: int) -> dict:
    """The discretised logistic per pixel, fitted on each pixel's histogram of the 256 levels
    (its sufficient statistic): Adam on the full-batch objective, then L-BFGS."""
    del batch_size, seed  # the objective is the exact full-batch one
    shape = tuple(train.shape[1:])
    k = level_index("train", train, 256).long()  # (N, *shape)
    frequency = torch.zeros(256, math.prod(shape), dtype=torch.float64)
    frequency.scatter_add_(0, k.reshape(k.shape[0], -1), torch.ones(k.shape[0], math.prod(shape), dtype=torch.float64))
    frequency = (frequency / train.shape[0]).reshape(256, *shape)
    grid = (torch.arange(256, dtype=torch.float64) / 255).reshape(256, *([1] * len(shape))).expand(256, *shape)
    raw = torch.zeros((head.n_outputs * shape[0], *shape[1:]), dtype=torch.float64, requires_grad=True)

    def loss_of():
        log_p = head.log_prob(grid, head.params(raw.expand(256, *raw.shape)), per_dim=True)
        return -(frequency * log_p).sum()

    optimizer = torch.optim.Adam([raw], lr=lr)
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1e-3 ** (step / steps))
    for _ in range(steps):
        loss = loss_of()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        decay.step()
    polish = torch.optim.LBFGS([raw], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                               history_size=20, line_search_fn="strong_wolfe")

    def closure():
        polish.zero_grad(set_to_none=True)
        loss = loss_of()
        loss.backward()
        return loss

    polish.step(closure)
    with torch.no_grad():
        return {name: value[0] for name, value in head.params(raw.detach().unsqueeze(0)).items()}


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
