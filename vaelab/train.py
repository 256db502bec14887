"""The training loop: :func:`fit` trains one model and returns a :class:`~vaelab.history.History` of every step.

Design points a reader may rely on:

* **Everything stays on the device.** Minibatches are index slices of whole tensors, and
  per-step statistics are reduced in a few batched ops and copied to the host every
  ``sync_every`` steps (one synchronisation, and no statistics ops on the hot path).
* **Counter-based randomness.** The noise of step ``t``, the shuffle of epoch ``e`` and
  its dynamic binarisation come from generators seeded by ``(seed, purpose, t or e)``
  (:mod:`vaelab.engine`). The same seed gives bit-identical results on the CPU, and a run
  resumed from a checkpoint continues exactly as the uninterrupted run would have.
* **A checkpoint never mixes two runs.** It records everything that determined its steps,
  and ``fit`` refuses to continue it with a call that differs (:mod:`vaelab.checkpoints`).
* **Divergence is caught.** Non-finite values stop training with a message naming the
  step and the term that went bad; a checkpoint is only written after the values it
  covers were checked, so the last one on disk is a good one.
"""
from __future__ import annotations

import difflib
import inspect
import time
import warnings
from pathlib import Path

import torch

from ._checks import check_positive, check_positive_int, no_validation
from .checkpoints import (
    FORMAT,
    check_same_run,
    fixed_settings,
    load_checkpoint,
    model_fingerprint,
    save_checkpoint,
    tensor_digest,
    values_digest,
)
from .engine import epoch_record, init_scales, make_adam, minibatches, plan_run, progress_bar
from .history import History, StepLog, TrainingDiverged
from .objective import Objective

__all__ = ["fit"]


def fit(
    model,
    data,
    *,
    objective: Objective | None = None,
    test_data=None,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    likelihood: str | None = None,
    binarize: str | None = None,
    dequantize: bool = False,
    bernoulli_on_grey: bool = False,
    seed: int = 0,
    bucket_size: int | None = None,
    device=None,
    clip_grad_norm: float | None = None,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    sync_every: int = 50,
    progress: bool = True,
    **unknown,
) -> History:
    """Train a VAE with Adam (the fused kernel where the device has one) and return its :class:`History`.

    Each step minimises ``objective`` on one minibatch: by default the negative ELBO,
    ``R + K``; ``Objective(beta=4.0)`` is a beta-VAE, ``Objective(beta=vaelab.linear(10_000))``
    anneals the KL weight, ``Objective(recon_dims="mean")`` is the mean-over-pixels
    convention of chapter 1 (see :class:`vaelab.Objective`).

    Args:
        model: a :class:`vaelab.VAE` or :class:`vaelab.SentenceVAE`; trained in place.
        data: the whole training set, as tensors on any device (they are moved to
            ``device`` once, and minibatches are index slices of them):

            * images ``(N, C, H, W)``, floating point, in the dtype of the model
              (float32 unless you converted it);
            * ``(images, labels)`` as :func:`vaelab.data.mnist` returns it: the labels are
              ignored (a VAE is trained without them);
            * a :class:`vaelab.data.Sentences` (or a tuple ``(tokens, lengths)``) for text;
            * a ``TensorDataset``. A ``DataLoader`` is refused, with what to pass instead.
        objective: a :class:`vaelab.Objective`; ``None`` is the ELBO.
        test_data: held-out examples in the same forms; their ELBO is recorded after every
            epoch. With ``binarize="dynamic"`` they are binarised once, with a generator
            seeded by ``seed`` (a fixed binarisation, as in Burda et al. 2016), so the
            recorded ELBO is a log-likelihood of binary images; binary data stay as they are.
        epochs: passes over ``data`` (``None``: 1, unless ``steps`` is given).
        steps: train exactly this many optimiser steps instead (the last epoch may be
            partial, and only whole epochs score ``test_data``); pass ``steps`` or ``epochs``.
        batch_size, lr: the usual; the last batch of an epoch may be short.
        likelihood: if given, must equal the model's decoder likelihood (a guard against
            training, say, a Gaussian model while believing it is Bernoulli).
        binarize: ``"dynamic"`` re-samples binary images from the grey levels every epoch
            (Burda et al. 2016); ``None`` uses ``data`` as given.
        dequantize: ``True`` dequantises the 8-bit grey levels afresh every epoch,
            ``(k + u) / 256`` with ``u ~ U(0, 1)`` (:func:`vaelab.data.dequantize`), the
            honest input for a density model (Gaussian, Beta, continuous Bernoulli); held-out
            grey levels are dequantised once with a generator seeded by ``seed``.
            :func:`vaelab.prepare_heldout` prepares held-out images as both options do, to
            score the model afterwards.
        bernoulli_on_grey: ``True`` trains a Bernoulli model on grey levels without the
            warning that its loss is then a cross-entropy, not a likelihood (chapter 3's
            naive BCE). The usual Bernoulli set-up is ``binarize="dynamic"``.
        seed: the one seed for shuffling, noise and binarisation. Model weights are not
            re-initialised: build the model with its own ``seed``.
        bucket_size: for sentences only: each epoch, the shuffled sentences are taken
            ``bucket_size * batch_size`` at a time, sorted by length within that pool and
            cut into batches, whose order is then shuffled; each batch is trimmed to its
            longest sentence. It saves the work on padding (about threefold on PTB) and
            depends only on ``(seed, epoch)``. ``None`` is 50 for sentences; 1 shuffles
            without sorting (batches are still trimmed). Images take no ``bucket_size``.
        device: ``None`` picks ``$VAELAB_DEVICE`` if set, else CUDA, then MPS, then CPU
            (:func:`vaelab.pick_device`).
        clip_grad_norm: clip the global gradient norm to this value.
        checkpoint_dir: where ``latest.pt`` is written every ``checkpoint_every`` steps and
            at the end. With ``resume=True`` an existing one is continued from, but only
            if this call would have made exactly the steps it holds (same objective and
            schedule values, data, seed, optimiser settings, model; see
            :mod:`vaelab.checkpoints`); otherwise a ``ValueError`` names what differs.
            More epochs than the checkpoint's run extend it.
        resume: ``False`` ignores (and overwrites) an existing checkpoint.
        max_steps: stop after at most this many optimiser steps in total, a cap on
            ``epochs`` (a budget; also what a test uses to stop part-way): a cap beyond
            the epochs' steps is warned about. To ask for a number of steps, pass ``steps``.
            Held-out ELBOs are recorded at epoch ends only; a run that ends before its
            first epoch does warns that ``test_data`` were never scored.
        sync_every: steps between host synchronisations (statistics, divergence check,
            progress bar).
        progress: show a progress bar.

    Returns:
        The :class:`History`; the model ends in eval mode on ``device``.

    Raises:
        ValueError: bad arguments, mismatched likelihood or checkpoint, data the model
            cannot score (each message says what to pass instead).
        TrainingDiverged: a NaN or inf appeared (the message names the step and term).

    Warns:
        UserWarning: a Gaussian model given data that look like 8-bit grey levels in
            ``[0, 255]`` stored as floats; a Bernoulli model given grey levels without
            ``binarize`` (unless ``bernoulli_on_grey=True``); ``max_steps`` beyond the
            epochs' steps; ``test_data`` never scored.
    """
    if unknown:
        _refuse_unknown(unknown)
    if clip_grad_norm is not None:
        clip_grad_norm = check_positive("clip_grad_norm", clip_grad_norm)
    if checkpoint_every is not None:
        checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
        if checkpoint_dir is None:
            raise ValueError("checkpoint_every needs a checkpoint_dir to write to")
    objective = Objective() if objective is None else objective
    if not isinstance(objective, Objective):
        raise ValueError(
            f"objective must be a vaelab.Objective, e.g. vaelab.Objective(beta=4.0); got {objective!r}"
        )
    plan = plan_run(
        model, data, test_data=test_data, epochs=epochs,
        batch_size=batch_size, lr=lr, likelihood=likelihood, binarize=binarize, dequantize=dequantize, device=device,
        max_steps=max_steps, sync_every=sync_every, seed=seed, bucket_size=bucket_size, steps=steps,
        bernoulli_on_grey=bernoulli_on_grey,
    )
    # the weights the run starts from: a checkpoint is only continued by a model built the same way
    start_weights = tensor_digest(model.state_dict().values())
    betas = objective.betas(plan.total_steps)
    capacities = objective.capacities(plan.total_steps)
    controller = objective.controller
    control = None if controller is None else controller.initial_state(plan.device)

    init_scales([model], plan, seed=seed)  # before the optimiser; a resumed run overwrites it below
    optimizer = make_adam(model.parameters(), plan.lr)
    history = History(model.latent_dim)
    step = 0
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / "latest.pt"
    digests = None
    if path is not None:
        digests = {"data": tensor_digest(plan.tensors),
                   "test_data": None if plan.test_tensors is None else tensor_digest(plan.test_tensors)}

    def run_record(steps: int) -> dict:
        """Everything that determined the first ``steps`` steps (see :mod:`vaelab.checkpoints`)."""
        return {
            **digests, "examples": plan.n, "seed": seed, "batch_size": plan.batch_size, "lr": plan.lr,
            "optimizer": "Adam(betas=(0.9, 0.999), eps=1e-08)", "clip_grad_norm": clip_grad_norm,
            "binarize": plan.binarize, "dequantize": plan.dequantize, "bucket_size": plan.bucket_size, **{f"model {k}": v for k, v in fixed_settings(model).items()},
            **{f"objective.{k}": v for k, v in objective.describe().items()},
            "objective.beta values": None if controller is not None else values_digest(objective.betas(steps)),
            "objective.capacity values": None if capacities is None else values_digest(objective.capacities(steps)),
            START_WEIGHTS: start_weights,
        }

    if path is not None and resume and path.exists():
        state = load_checkpoint(path, model, map_location=plan.device)
        step = int(state["step"])
        if start_weights == tensor_digest(state["model"].values()):  # the checkpoint's own model, continued
            start_weights = state["run"].get(START_WEIGHTS)
        check_same_run(path, state["run"], run_record(step), steps_done=step)
        if step > plan.total_steps:
            raise ValueError(
                f"checkpoint {path} holds {step} steps, more than the {plan.total_steps} this call trains; pass "
                "more epochs (or max_steps) to continue it, resume=False to start afresh, or read the model "
                "with vaelab.load_checkpoint"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = History.from_state_dict(state["history"])
        if control is not None:
            control.load_state_dict(state["controller"])

    def checkpoint():
        if path is None:
            return
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise TrainingDiverged(
                f"parameters became non-finite by step {step}; the last good checkpoint {path} was kept. {plan.advice}",
                step=step, history=history,
            )
        save_checkpoint(path, {
            "format": FORMAT, "fingerprint": model_fingerprint(model), "run": run_record(step), "step": step,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history.state_dict(),
            **({} if control is None else {"controller": control.state_dict()}),
        })

    bar = progress_bar(plan.total_steps, step, progress)
    log = StepLog(
        [history], sync_every=sync_every, bar=bar,
        start_time=time.perf_counter() - (history["time"][-1] if len(history) else 0.0),
        kept=f"the last good checkpoint {path} was kept" if path is not None else "no checkpoint was written",
        advice=plan.advice,
    )
    model.train()
    try:
        with no_validation():
            for step, epoch, batch, eps, step_generator in minibatches(
                plan, seed=seed, start_step=step, latent_dim=model.latent_dim
            ):
                out = model(*batch, eps, generator=step_generator)
                weight = float(betas[step]) if control is None else controller.update(control, out.kl_per_dim.sum(1).mean())
                loss = objective.loss(
                    out.log_px, out.kl_per_dim, data_dim=model.data_dim,
                    beta=weight if control is None else weight.to(out.kl_per_dim.dtype),
                    capacity=None if capacities is None else float(capacities[step]),
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                optimizer.step()
                log.record(step, epoch, weight, out.log_px, out.kl_per_dim, loss)
                step += 1
                if step % plan.steps_per_epoch == 0:
                    log.sync()
                    history.append_epoch(
                        epoch_record(model, plan, seed=seed, epoch=epoch, step=step, history=history)
                    )
                elif log.full:
                    log.sync()
                if checkpoint_every is not None and step % checkpoint_every == 0:
                    log.sync()
                    checkpoint()
        log.sync()
        checkpoint()
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    if plan.test_tensors is not None and not history.epochs["epoch"]:
        warnings.warn(
            f"test_data were never scored: held-out ELBOs are recorded at the end of each epoch, and this run "
            f"stopped after {plan.total_steps} steps, before its first epoch ({plan.steps_per_epoch} steps) ended. "
            f"Train whole epochs (steps={plan.steps_per_epoch}, or epochs=...), or score the model now: "
            f"vaelab.elbo(model, vaelab.prepare_heldout(test_data, binarize=..., dequantize=..., seed={seed}))",
            UserWarning, stacklevel=2,
        )
    return history


#: The run record's entry for the model's weights before the first step (a digest).
START_WEIGHTS = "model weights at step 0 (the model's seed)"

#: Keywords of ``sweep`` and other libraries that a student may pass to ``fit``: what to pass instead.
_INSTEAD = {
    "beta": "fit takes the KL weight in an Objective: objective=vaelab.Objective(beta={value!r})",
    "betas": "fit trains one model; for several KL weights use vaelab.sweep(models, data, betas={value!r}), "
             "or fit(..., objective=vaelab.Objective(beta=...)) for one",
    "kl_weight": "fit takes the KL weight in an Objective: objective=vaelab.Objective(beta={value!r})",
    "schedule": "fit takes a schedule as the KL weight of an Objective: objective=vaelab.Objective(beta={value!r})",
    "free_bits": "free bits belong to the Objective: objective=vaelab.Objective(free_bits={value!r})",
    "num_epochs": "pass epochs={value!r}",
    "n_epochs": "pass epochs={value!r}",
    "learning_rate": "pass lr={value!r}",
}


def _refuse_unknown(unknown: dict) -> None:
    """A ``TypeError`` for keywords ``fit`` does not take, saying what to pass instead."""
    name, value = next(iter(unknown.items()))
    if name in _INSTEAD:
        hint = _INSTEAD[name].format(value=value)
    else:
        known = [p for p in inspect.signature(fit).parameters if p not in ("model", "data", "unknown")]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}=?" if close else "see help(vaelab.fit) for its keywords"
    raise TypeError(f"fit() got an unexpected keyword argument {name!r}: {hint}")
