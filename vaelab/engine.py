"""The machinery that :func:`vaelab.fit` and :func:`vaelab.sweep` share.

* :func:`plan_run` checks a run's data and settings before the first step (types, dtypes,
  shapes, ranges, the forms students pass) and moves model and data to the device;
  :func:`heldout_tensors` prepares the held-out set as a run with a given seed scores it,
  and :func:`prepare_heldout` (``vaelab.prepare_heldout``) does the same for a student
  who scores a trained model afterwards.
* :func:`minibatches` yields every step's batch and noise from counter-based generators:
  the data order, the binarisation and the noise depend only on ``(seed, epoch, step)``,
  which is what makes a resumed run, and each configuration of a sweep, equal to one
  uninterrupted ``fit``.
* :func:`make_adam`, :func:`progress_bar` and :func:`epoch_record` are the optimiser,
  the bar and what a run records after each epoch.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import warnings

import torch

from ._checks import check_choice, check_positive, check_positive_int, no_validation
from .batching import batch_slices, bucketed_batches, derive_seed, generator, is_text, pick_device, training_tensors
from .data.images import binarize as binarize_images
from .data.images import dequantize as dequantize_images
from .data.images import on_level_grid
from .history import DIVERGENCE_ADVICE, History, TrainingDiverged
from .metrics import elbo as heldout_elbo
from .metrics import rate_distortion
from .metrics.estimates import warn_if_bernoulli_on_grey

__all__ = [
    "BUCKET_SIZE", "Plan", "epoch_images", "epoch_record", "heldout_tensors", "init_scales",
    "make_adam", "minibatches", "plan_run", "prepare_heldout", "progress_bar",
]



@dataclasses.dataclass
class Plan:
    """The checked data and step counts of a run."""

    device: torch.device
    tensors: tuple
    test_tensors: tuple | None
    batch_size: int
    lr: float
    binarize: str | None
    dequantize: bool
    steps_per_epoch: int
    total_steps: int
    bucket_size: int | None = None
    #: What a divergence message advises: the data's scale when the [0, 255] warning fired.
    advice: str = DIVERGENCE_ADVICE

    @property
    def n(self) -> int:
        return self.tensors[0].shape[0]


def _warn_if_8bit(model, images: torch.Tensor, name: str) -> bool:
    """A Gaussian has no support to check, so grey levels in [0, 255] would train silently: warn, and say whether."""
    if getattr(model, "likelihood", None) != "gaussian" or not images.is_floating_point():
        return False
    sample = images[:1000]
    if float(sample.max()) > 1.5 and bool((sample == sample.round()).all()) and float(sample.min()) >= 0:
        warnings.warn(
            f"{name} look like 8-bit grey levels stored as floats (whole numbers up to {float(sample.max()):g}); a "
            f"Gaussian decoder scores them in those units, so the reconstruction term is about 255² times larger "
            f"than for the same images in [0, 1]. Divide by 255 ({name} / 255) to train in the units vaelab's "
            "loaders and the book use",
            UserWarning, stacklevel=4,
        )
        return True
    return False


#: The default pool of :func:`vaelab.batching.bucketed_batches` for sentences, in batches.
BUCKET_SIZE = 50


def plan_run(model, data, *, test_data, epochs, batch_size, lr, likelihood, binarize, dequantize, device,
             max_steps, sync_every, seed, bucket_size=None, steps=None, bernoulli_on_grey=False) -> Plan:
    """Check everything a run needs before its first step, and move model and data to the device.

    ``steps`` (instead of ``epochs``) asks for exactly that many optimiser steps; the
    last epoch may then be partial. ``max_steps`` caps ``epochs``; a cap beyond them
    is said in a warning. A Bernoulli model given grey levels without ``binarize`` is
    warned about unless ``bernoulli_on_grey=True``.

    With ``binarize="dynamic"``, ``test_data`` is binarised once, from a generator seeded
    by ``seed`` (a fixed binarisation of the held-out set, as in Burda et al. 2016), so the
    held-out ELBO is a log-likelihood of binary images; data that are binary already stay
    as they are. Likewise with ``dequantize=True``: held-out grey levels are dequantised
    once, and held-out data that are not on the grey-level grid (dequantised already) stay
    as they are.
    """
    if steps is None:
        epochs = check_positive_int("epochs", 1 if epochs is None else epochs)
    else:
        steps = check_positive_int("steps", steps)
        if epochs is not None or max_steps is not None:
            given = "epochs" if epochs is not None else "max_steps"
            raise ValueError(
                f"pass steps or {given}, not both: steps={steps} trains exactly that many optimiser steps (the epochs "
                f"follow from it); {given} is the alternative"
            )
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    check_positive_int("sync_every", sync_every)
    check_positive_int("seed", seed, minimum=0)
    if likelihood is not None and likelihood != getattr(model, "likelihood", None):
        raise ValueError(
            f"likelihood={likelihood!r} does not match the model's decoder head, which is "
            f"{getattr(model, 'likelihood', None)!r}; build the model with likelihood={likelihood!r}"
        )
    check_choice("binarize", binarize, (None, "dynamic"))
    if not isinstance(dequantize, bool):
        raise ValueError(f"dequantize must be True or False; got {dequantize!r}")
    if dequantize and binarize is not None:
        raise ValueError("binarize and dequantize are alternatives (binary images, or dequantised grey levels); pass one")
    if is_text(model):
        bucket_size = BUCKET_SIZE if bucket_size is None else check_positive_int("bucket_size", bucket_size)
        if binarize is not None or dequantize:
            raise ValueError("binarize and dequantize apply to images; a sentence model takes neither")
    elif bucket_size is not None:
        raise ValueError(
            f"bucket_size={bucket_size!r} applies to sentences (batches of similar length); an image model takes "
            "none: leave bucket_size=None"
        )
    device = pick_device(device)
    model.to(device)
    tensors = tuple(t.to(device) for t in training_tensors(model, data, "data"))
    test_tensors = None
    if test_data is not None:
        test_tensors = tuple(t.to(device) for t in training_tensors(model, test_data, "test_data"))
        test_tensors = heldout_tensors(test_tensors, binarize=binarize, dequantize=dequantize, seed=seed)
    if dequantize and not on_level_grid(tensors[0]):
        raise ValueError(
            "dequantize=True needs the training images as grey levels k / 255, as vaelab's loaders return them; "
            "these are not (already dequantised or rescaled?): pass the original images, or dequantize=False"
        )
    scaled_8bit = _warn_if_8bit(model, tensors[0], "data")
    if not is_text(model):
        warn_if_bernoulli_on_grey(
            model, {"data": tensors[0][:1000] if binarize is None else None,
                    "test_data": None if test_tensors is None else test_tensors[0]},
            allowed=bernoulli_on_grey, function="fit", stacklevel=4,
        )
    steps_per_epoch = math.ceil(tensors[0].shape[0] / batch_size)
    if steps is not None:
        total_steps = steps
    else:
        total_steps = epochs * steps_per_epoch
        if max_steps is not None:
            max_steps = check_positive_int("max_steps", max_steps)
            if max_steps > total_steps:
                warnings.warn(
                    f"max_steps={max_steps} is a cap, not a length: {epochs} epoch(s) of {tensors[0].shape[0]} "
                    f"examples in batches of {batch_size} are {total_steps} steps, so the run stops after "
                    f"{total_steps}. To train {max_steps} steps, pass steps={max_steps} instead of epochs and max_steps",
                    UserWarning, stacklevel=3,
                )
            total_steps = min(total_steps, max_steps)
    advice = DIVERGENCE_ADVICE
    if scaled_8bit:
        advice = ("The data look like 8-bit grey levels in [0, 255] (see the warning before training): divide them by "
                  "255 (data / 255) first; a lower lr would only hide that")
    return Plan(device, tensors, test_tensors, batch_size, lr, binarize, dequantize, steps_per_epoch, total_steps,
                bucket_size, advice)


def prepare_heldout(test_data, *, binarize: str | None = None, dequantize: bool = False, seed: int = 0,
                    device=None) -> torch.Tensor:
    """Held-out images prepared exactly as :func:`vaelab.fit` prepares its ``test_data``.

    Use it to score a trained model the way ``fit`` scored it: with the same ``binarize``,
    ``dequantize``, ``seed`` and ``device`` as the ``fit`` call,
    ``vaelab.elbo(model, vaelab.prepare_heldout(test_images, binarize="dynamic", seed=0), seed=0)``
    equals that run's last ``history.epochs["test_elbo"]``.

    Args:
        test_data: images ``(N, C, H, W)`` in ``[0, 1]``, or ``(images, labels)`` as
            :func:`vaelab.data.mnist` returns it (the labels are dropped).
        binarize: ``"dynamic"`` binarises the images once, from a generator seeded by
            ``(seed, "binarize-test")`` (a fixed binarisation, Burda et al. 2016); images
            that are binary already stay as they are. ``None`` leaves them as they are.
        dequantize: ``True`` dequantises images on the 256-level grid once,
            ``(k + u) / 256`` with ``u`` from ``(seed, "dequantize-test")``; images off the
            grid (dequantised already) stay as they are.
        seed: the ``seed`` of the ``fit`` call.
        device: the ``device`` of the ``fit`` call (``None`` picks as it does,
            :func:`vaelab.pick_device`): a generator draws other numbers on another device.

    Returns:
        ``(N, C, H, W)`` images on ``device``, ready for :func:`vaelab.elbo` and
        :func:`vaelab.iw_log_likelihood` (with ``levels=256`` after ``dequantize=True``).
    """
    check_choice("binarize", binarize, (None, "dynamic"))
    if not isinstance(dequantize, bool):
        raise ValueError(f"dequantize must be True or False; got {dequantize!r}")
    if dequantize and binarize is not None:
        raise ValueError("binarize and dequantize are alternatives (binary images, or dequantised grey levels); pass one")
    seed = check_positive_int("seed", seed, minimum=0)
    images = test_data[0] if isinstance(test_data, (tuple, list)) and len(test_data) == 2 else test_data
    if not isinstance(images, torch.Tensor) or not images.is_floating_point() or images.dim() < 2:
        raise ValueError(
            "test_data must be images, a floating-point tensor (N, C, H, W) with values in [0, 1], or "
            f"(images, labels) as vaelab.data.mnist returns it; got {type(test_data).__name__}"
            + (f" of dtype {images.dtype} and shape {tuple(images.shape)}" if isinstance(images, torch.Tensor) else "")
        )
    return heldout_tensors((images.to(pick_device(device)),), binarize=binarize, dequantize=dequantize, seed=seed)[0]


def heldout_tensors(tensors: tuple, *, binarize: str | None, dequantize: bool, seed: int) -> tuple:
    """The held-out tensors as a run with ``seed`` scores them: binarised or dequantised once, from ``seed``.

    ``tensors[0]`` are the images, on the run's device. With ``binarize="dynamic"`` they
    are binarised with the generator of ``(seed, "binarize-test")``; images that are binary
    already come out as they went in. With ``dequantize=True``, images on the grey-level
    grid are dequantised with the generator of ``(seed, "dequantize-test")``, and others
    (dequantised already) stay as they are. Otherwise ``tensors`` is returned as it is.
    """
    device = tensors[0].device
    if binarize == "dynamic":
        fixed = generator(seed, "binarize-test", device=device)
        tensors = (binarize_images(tensors[0], method="sample", generator=fixed),) + tensors[1:]
    if dequantize and on_level_grid(tensors[0]):
        fixed = generator(seed, "dequantize-test", device=device)
        tensors = (dequantize_images(tensors[0], generator=fixed),) + tensors[1:]
    return tensors


def epoch_images(plan: Plan, *, seed: int, epoch: int) -> tuple:
    """The training tensors as epoch ``epoch`` sees them: binarised or dequantised afresh, from ``(seed, epoch)``."""
    if plan.binarize == "dynamic":
        gen = generator(seed, "binarize", epoch, device=plan.device)
        return (binarize_images(plan.tensors[0], method="sample", generator=gen),) + plan.tensors[1:]
    if plan.dequantize:
        gen = generator(seed, "dequantize", epoch, device=plan.device)
        return (dequantize_images(plan.tensors[0], generator=gen),) + plan.tensors[1:]
    return plan.tensors


def init_scales(models, plan: Plan, *, seed: int) -> None:
    """Start each learned Gaussian sigma that asks for it from the training images of the first epoch."""
    heads = [m.head for m in models if getattr(getattr(m, "head", None), "init_from_data", False)]
    if heads:
        images = epoch_images(plan, seed=seed, epoch=0)[0]
        for head in heads:
            head.init_from(images)


def minibatches(plan: Plan, *, seed: int, start_step: int, latent_dim: int):
    """Yield ``(step, epoch, batch, eps, step_generator)`` for every step from ``start_step`` on."""
    step_generator = torch.Generator(device=plan.device)
    step = start_step
    while step < plan.total_steps:
        epoch, position = divmod(step, plan.steps_per_epoch)
        if plan.bucket_size is not None:  # sentences: batches of similar length, each trimmed to its longest
            batches = bucketed_batches(plan.tensors[1], batch_size=plan.batch_size, bucket_size=plan.bucket_size,
                                       seed=seed, epoch=epoch)
            indices = torch.cat([index for index, _ in batches]).to(plan.device)
            offsets = [0, *itertools.accumulate(index.shape[0] for index, _ in batches)]
            slices = [(indices[a:b], width) for (a, b), (_, width) in zip(itertools.pairwise(offsets), batches)]
        else:
            permutation = torch.randperm(plan.n, generator=generator(seed, "shuffle", epoch)).to(plan.device)
            slices = [(index, None) for index in batch_slices(plan.n, plan.batch_size, permutation=permutation)]
        epoch_tensors = epoch_images(plan, seed=seed, epoch=epoch)
        for index, width in slices[position:]:
            if step >= plan.total_steps:
                return
            # index_select copies whole rows: about twice as fast on a CPU as t[index]
            batch = tuple(t[index] if isinstance(index, slice) else t.index_select(0, index) for t in epoch_tensors)
            if width is not None:
                batch = (batch[0][:, :width],) + batch[1:]
            step_generator.manual_seed(derive_seed(seed, "step", step))
            eps = torch.randn(batch[0].shape[0], latent_dim, generator=step_generator, device=plan.device)
            yield step, epoch, batch, eps, step_generator
            step += 1


def make_adam(parameters, lr: float) -> torch.optim.Adam:
    """Adam, with the fused kernel where the device has one.

    The fused kernel updates each tensor in one pass instead of about ten; on a CPU it
    makes a 784-400-20 MLP step about a third faster. The update is the same formula,
    so results differ from the unfused one only by rounding.
    """
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except RuntimeError:  # no fused kernel for this device or dtype
        return torch.optim.Adam(parameters, lr=lr)


def progress_bar(total: int, initial: int, enabled: bool):
    """A tqdm bar (the notebook widget where ipywidgets is installed), or ``None``."""
    if not enabled:
        return None
    try:
        import ipywidgets  # noqa: F401  (widgets present: the notebook bar works)
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm
    return tqdm(total=total, initial=initial, unit="step", file=sys.stderr, dynamic_ncols=True)


def _sigma_summary(model) -> float | None:
    """A learned or fixed Gaussian sigma as one number: the value, or the geometric mean over pixels."""
    sigma = getattr(model, "sigma", None)
    if sigma is None:
        return None
    return float(sigma.log().mean().exp())


def epoch_record(model, plan: Plan, *, seed: int, epoch: int, step: int, history: History) -> dict:
    """What :class:`History` keeps per epoch: the step, the decoder's sigma where it has
    one, and the held-out ELBO when there is test data.

    An ``"optimal"`` Gaussian sigma is first fixed from this epoch's training images (the
    mean squared residual per pixel, one posterior sample per image), so that the
    held-out data are scored with a sigma fitted on training data only.
    """
    test_tensors = plan.test_tensors
    head = getattr(model, "head", None)
    if getattr(head, "sigma", None) == "optimal":
        with no_validation():
            images = epoch_images(plan, seed=seed, epoch=epoch)[0]
            sse = rate_distortion(model, images, seed=seed)["sse"]
        head.fix_optimal(sse / model.data_dim)
    record = {"epoch": epoch, "step": step}
    sigma = _sigma_summary(model)
    if sigma is not None:
        record["sigma"] = sigma
    if test_tensors is not None:
        with no_validation():
            result = heldout_elbo(model, test_tensors, seed=seed)
        if not math.isfinite(result["elbo"]):
            raise TrainingDiverged(
                f"the held-out ELBO became {result['elbo']} after epoch {epoch} (step {step}). {plan.advice}",
                step=step, history=history,
            )
        record.update(test_elbo=result["elbo"], test_recon=result["recon"], test_kl=result["kl"])
    return record
