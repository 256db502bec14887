"""Vectorised sweeps: several configurations of one VAE trained as one ensemble.

A beta sweep, a KL-schedule sweep or a sweep over a fixed Gaussian ``sigma`` trains
models that share their architecture and differ only in the weights of the objective.
:func:`sweep` stacks their parameters into tensors with a leading configuration axis,
runs the forward pass of every configuration at once with
:func:`torch.func.functional_call` under :func:`torch.vmap`, and updates all of them with
one Adam over the stacked tensors. On a CPU this removes most of the per-step overhead
of separate runs; on a GPU, where a small model cannot fill the device, it also fills it.

Every configuration sees the minibatches, the binarisation and the noise that
:func:`vaelab.fit` with the same ``seed`` would give it, so each result equals a separate
``fit`` of that configuration up to floating-point rounding (tests/test_sweep.py).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch.func import functional_call, vmap

from ._checks import no_validation
from .models import VAE
from .objective import training_loss
from .schedules import constant
from .train import (
    History,
    _StepLog,
    _adam,
    _batches,
    _epoch_record,
    _fingerprint,
    _plan,
    _progress_bar,
    _weights,
)

__all__ = ["sweep"]


def _architecture(model) -> dict:
    """Everything that must agree between the configurations of a sweep (no weights, no fixed sigma)."""
    head = model.head
    return {
        **_fingerprint(model),
        "layers": repr(model),
        "head": (type(head).__name__, getattr(head, "sigma", None), getattr(head, "squeeze", None)),
        "data_shape": model.data_shape,
        "latent_dim": model.latent_dim,
        "dtype": sorted({str(p.dtype) for p in model.parameters()}),
    }


def _check_models(models) -> list:
    if not isinstance(models, (list, tuple, torch.nn.ModuleList)) or len(models) == 0:
        raise ValueError(
            "models must be a non-empty list of vaelab VAEs, one per configuration (build each with the same "
            f"arguments and seed); got {type(models).__name__}"
        )
    models = list(models)
    for i, model in enumerate(models):
        if not isinstance(model, VAE):
            raise ValueError(f"models[{i}] must be a vaelab image VAE (mlp_vae or conv_vae); got {type(model).__name__}")
        for j in range(i):
            if models[j] is model:
                raise ValueError(
                    f"models[{j}] and models[{i}] are the same object; a sweep trains each configuration in place, "
                    "so build one model per configuration"
                )
    reference = _architecture(models[0])
    for i, model in enumerate(models[1:], start=1):
        found = _architecture(model)
        differences = [key for key in reference if reference[key] != found[key]]
        if differences:
            raise ValueError(
                f"models must share one architecture and differ only in the weights of the objective (beta, "
                f"KL schedule, fixed Gaussian sigma); models[{i}] differs from models[0] in "
                f"{', '.join(differences)}. Train configurations with different architectures with separate fit calls"
            )
    return models


def _schedules(betas, schedules, count: int) -> list:
    if betas is not None and schedules is not None:
        raise ValueError("pass betas (constant KL weights) or schedules (KL weight per step), not both")
    if betas is not None:
        betas = list(betas)
        if len(betas) != count:
            raise ValueError(f"betas must give one KL weight per model: {count} models but {len(betas)} betas")
        return [constant(beta) for beta in betas]
    if schedules is not None:
        schedules = list(schedules)
        if len(schedules) != count:
            raise ValueError(f"schedules must give one schedule per model: {count} models but {len(schedules)} schedules")
        return schedules
    return [constant(1.0)] * count


class _Stack:
    """The parameters of C identical models as tensors with a leading configuration axis.

    Each model's parameters are re-pointed to views of the stacked tensors for the
    duration of the sweep, so the models always hold the current weights (the held-out
    ELBO is computed on them directly); :meth:`release` gives them their own storage back.
    Matrices are stored transposed because that is the layout in which their batched
    gradients arrive: Adam then reads them without a transposing copy per step.
    """

    def __init__(self, models):
        self.models = models
        self.leaves: dict[str, torch.Tensor] = {}
        for name, parameter in models[0].named_parameters():
            stacked = torch.stack([dict(m.named_parameters())[name].detach() for m in models])
            if stacked.dim() == 3:
                stacked = stacked.transpose(1, 2)
            self.leaves[name] = stacked.contiguous().requires_grad_(parameter.requires_grad)
        views = self.parameters()
        for c, model in enumerate(models):
            for name, parameter in model.named_parameters():
                parameter.data = views[name].detach()[c]
        self.buffers = {
            name: torch.stack([dict(m.named_buffers())[name] for m in models]) for name, _ in models[0].named_buffers()
        }

    def parameters(self) -> dict:
        """``{name: (C, *shape)}``, views of the stored tensors."""
        return {name: leaf.transpose(1, 2) if leaf.dim() == 3 else leaf for name, leaf in self.leaves.items()}

    def release(self) -> None:
        for model in self.models:
            for parameter in model.parameters():
                parameter.data = parameter.data.clone(memory_format=torch.contiguous_format)


def sweep(
    models,
    data,
    *,
    betas=None,
    schedules=None,
    test_data=None,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    likelihood: str | None = None,
    recon_dims: str = "sum",
    kl_dims: str = "sum",
    free_bits: float | None = None,
    free_bits_per_dimension: bool = True,
    capacity=None,
    gamma: float = 1.0,
    binarize: str | None = None,
    seed: int = 0,
    device=None,
    max_steps: int | None = None,
    sync_every: int = 50,
    progress: bool = True,
) -> list[History]:
    """Train one model per configuration as one vectorised ensemble; one :class:`History` each.

    Configuration ``c`` is ``models[c]`` trained with KL weight ``betas[c]`` (or schedule
    ``schedules[c]``). A sweep over a fixed Gaussian sigma passes models built with
    different ``log_sigma`` (a buffer of the head, not an architecture). Everything else,
    and every keyword argument, is shared; ``sweep(models, data, betas=betas, seed=s)``
    gives, up to rounding, what ``[fit(m, data, schedule=constant(b), seed=s) for m, b in
    zip(models, betas)]`` gives, in a fraction of the time.

    Args:
        models: ``C`` image VAEs (:func:`vaelab.mlp_vae` or :func:`vaelab.conv_vae`) with one
            architecture; trained in place. Build them with the same ``seed`` to start all
            configurations from the same weights.
        data: training images ``(N, C, H, W)``.
        betas: ``C`` constant KL weights, or
        schedules: ``C`` KL-weight schedules (e.g. :func:`vaelab.linear`); neither means weight 1.
        test_data, epochs, batch_size, lr, likelihood, recon_dims, kl_dims, free_bits,
            free_bits_per_dimension, capacity, gamma, binarize, seed, device, max_steps,
            sync_every, progress: as in :func:`vaelab.fit`, shared by all configurations.
            (No checkpoints and no gradient clipping: use ``fit`` for those.)

    Returns:
        A list of ``C`` :class:`History`, in the order of ``models``; the models end in eval
        mode on ``device``.

    Raises:
        ValueError: models that differ in architecture (layers, likelihood, sigma mode), the
            same model twice, ``betas``/``schedules`` of the wrong length, or any bad argument
            :func:`vaelab.fit` rejects.
        TrainingDiverged: a configuration produced NaN or inf (the message names it).
    """
    models = _check_models(models)
    schedules = _schedules(betas, schedules, len(models))
    template = models[0]
    plan = _plan(
        template, data, test_data=test_data, epochs=epochs, batch_size=batch_size, lr=lr, likelihood=likelihood,
        binarize=binarize, device=device, max_steps=max_steps, sync_every=sync_every,
    )
    for model in models[1:]:
        model.to(plan.device)
    host_weights = np.stack(
        [_weights(s, plan.total_steps, name=f"schedules[{c}]") for c, s in enumerate(schedules)], axis=1
    )  # (steps, C), float64
    weights = torch.as_tensor(host_weights, device=plan.device)
    loss_weights = weights.to(next(template.parameters()).dtype)  # fit multiplies the KL by a float in the model's precision
    targets = None if capacity is None else _weights(capacity, plan.total_steps, name="capacity")

    # Heads whose scoring is the same elementwise function for every configuration (no
    # parameters, no buffers such as a fixed sigma) score all configurations in one call
    # outside vmap, on (C * batch) examples: the fused kernels have no batching rule, and
    # their vmap fallback costs several times more.
    score_stacked = not any(True for _ in template.head.parameters()) and not any(True for _ in template.head.buffers())
    count = len(models)

    def one_forward(parameters, buffers, x, eps):
        out = functional_call(template, (parameters, buffers), (x, eps), {"score": not score_stacked})
        return (out.params if score_stacked else out.log_px), out.kl_per_dim

    def one_loss(log_px, kl_per_dim, weight, target):
        return training_loss(
            log_px, kl_per_dim, data_dim=template.data_dim, weight=weight, recon_dims=recon_dims,
            kl_dims=kl_dims, free_bits=free_bits, free_bits_per_dimension=free_bits_per_dimension,
            capacity=target, gamma=gamma,
        )

    all_forwards = vmap(one_forward, in_dims=(0, 0, None, None))
    all_losses = vmap(one_loss, in_dims=(0, 0, 0, None))

    def all_configurations(parameters, buffers, weight, target, x, eps):
        scores, kl_per_dim = all_forwards(parameters, buffers, x, eps)
        if score_stacked:  # (C, batch, ...) decoder parameters against the batch repeated C times
            repeated = x.expand(count, *x.shape).flatten(0, 1)
            flat = {name: value.flatten(0, 1) for name, value in scores.items()}
            scores = template.head.log_prob(repeated, flat).view(count, x.shape[0])
        return all_losses(scores, kl_per_dim, weight, target), scores, kl_per_dim

    histories = [History(template.latent_dim) for _ in models]
    stack, bar = _Stack(models), None
    try:
        optimizer = _adam(stack.leaves.values(), plan.lr)
        bar = _progress_bar(plan.total_steps, 0, progress)
        log = _StepLog(
            histories, sync_every=sync_every, bar=bar, start_time=time.perf_counter(),
            kept="no checkpoint was written", labels=[f" in configuration {c}" for c in range(len(models))],
        )
        template.train()
        with no_validation():
            for step, epoch, batch, eps, _ in _batches(plan, seed=seed, start_step=0, latent_dim=template.latent_dim):
                target = None if targets is None else float(targets[step])
                losses, log_px, kl_per_dim = all_configurations(
                    stack.parameters(), stack.buffers, loss_weights[step], target, batch[0], eps
                )
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()  # the configurations share no parameters: each gets its own gradient
                optimizer.step()
                log.record(step, epoch, host_weights[step], log_px, kl_per_dim, losses)
                step += 1
                if step % plan.steps_per_epoch == 0:
                    log.sync()
                    for model, history in zip(models, histories):
                        history._append_epoch(
                            _epoch_record(model, plan.test_tensors, seed=seed, epoch=epoch, step=step, history=history)
                        )
                elif log.full:
                    log.sync()
        log.sync()
    finally:
        if bar is not None:
            bar.close()
        stack.release()
    for model in models:
        model.eval()
    return histories
