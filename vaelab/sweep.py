"""Vectorised sweeps: several configurations of one VAE trained as one ensemble.

A beta sweep, a KL-schedule sweep or a sweep over a fixed Gaussian ``sigma`` trains
models that share their architecture and differ only in the weights of the objective.
:func:`sweep` stacks their parameters into tensors with a leading configuration axis,
runs the forward pass of every configuration at once with
:func:`torch.func.functional_call` under :func:`torch.vmap`, and updates all of them with
one Adam over the stacked tensors. On a CPU this removes most of the per-step overhead
of separate runs; on a GPU, where a small model cannot fill the device, it also fills it.

Every configuration sees the minibatches, the binarisation and the noise that
:func:`vaelab.fit` with the same ``seed`` (or, given ``seeds``, with its own seed) would
give it, so each result equals a separate ``fit`` of that configuration up to
floating-point rounding (tests/test_sweep.py).
"""
from __future__ import annotations

import dataclasses
import inspect
import time

import numpy as np
import torch
from torch.func import functional_call, vmap

from ._checks import check_positive_int, no_validation
from .batching import pick_device, training_tensors
from .checkpoints import model_fingerprint
from .engine import Plan, epoch_record, heldout_tensors, init_scales, make_adam, minibatches, plan_run, progress_bar
from .history import History, StepLog
from .models import VAE
from .objective import Objective
from .train import fit

__all__ = ["sweep"]

#: The keyword arguments of :func:`vaelab.fit` that a sweep does not take: it writes no
#: checkpoints and clips no gradients (use ``fit`` for those), and takes one objective
#: per configuration instead of one.
_FIT_ONLY = ("objective", "clip_grad_norm", "checkpoint_dir", "checkpoint_every", "resume")


def _architecture(model) -> dict:
    """Everything that must agree between the configurations of a sweep (no weights, no fixed sigma)."""
    head = model.head
    return {
        **model_fingerprint(model),
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


def _objectives(objectives, betas, count: int) -> list[Objective]:
    if objectives is not None and betas is not None:
        raise ValueError("pass objectives (one vaelab.Objective per model) or betas (one KL weight per model), not both")
    if betas is not None:
        betas = list(betas)
        if len(betas) != count:
            raise ValueError(f"betas must give one KL weight per model: {count} models but {len(betas)} betas")
        return [Objective(beta=beta) for beta in betas]
    if objectives is None:
        return [Objective()] * count
    objectives = list(objectives)
    if len(objectives) != count:
        raise ValueError(f"objectives must give one per model: {count} models but {len(objectives)} objectives")
    for c, objective in enumerate(objectives):
        if not isinstance(objective, Objective):
            raise ValueError(f"objectives[{c}] must be a vaelab.Objective, e.g. vaelab.Objective(beta=4.0); got {objective!r}")
    return objectives


def _seeds(seeds, count: int, options: dict) -> list[int] | None:
    """``seeds`` checked: ``None``, or one non-negative int per configuration (and then no ``seed=``)."""
    if seeds is None:
        return None
    if "seed" in options:
        raise ValueError("pass seed= (one seed shared by every configuration) or seeds= (one per configuration), not both")
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__"):
        raise ValueError(f"seeds must be a list of non-negative ints, one per model; got {seeds!r}")
    if len(seeds) != count:
        raise ValueError(f"seeds must give one seed per model: {count} models but {len(seeds)} seeds")
    return [check_positive_int(f"seeds[{c}]", seed, minimum=0) for c, seed in enumerate(seeds)]


#: fit's keyword arguments that a sweep shares between its configurations, as Parameters.
_SHARED = [p for p in inspect.signature(fit).parameters.values() if p.kind is p.KEYWORD_ONLY and p.name not in _FIT_ONLY]


def _options(options: dict) -> dict:
    """The keyword arguments of :func:`vaelab.fit` that a sweep shares between its configurations."""
    allowed = [p.name for p in _SHARED]
    for name in options:
        if name in _FIT_ONLY:
            raise ValueError(
                f"sweep does not take {name}=: "
                + ("give one vaelab.Objective per model as objectives=[...]" if name == "objective"
                   else "it writes no checkpoints and clips no gradients; use vaelab.fit per configuration for that")
            )
        if name not in allowed:
            raise TypeError(f"sweep() got an unexpected keyword argument {name!r}; it takes {', '.join(allowed)}")
    return {**{p.name: p.default for p in _SHARED}, **options}


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


def _vectorised_pays(model, device: torch.device) -> bool:
    """Whether one vectorised ensemble beats separate fits for this model on this device.

    Measured by ``bench/run.py`` on a 2-core CPU at chapter 5's shapes (64 x 64, channels
    32-32-64-64, batch 64, 5 configurations): grouped convolutions (``groups = C``, what
    vmap's batching rule for a convolution runs) took 1.7-1.9 times as long as the same
    convolutions run separately, forward and backward, and the ensemble ran at 0.52-0.55x
    of separate fits, while MLP sweeps gain about 1.5-1.7x. The convolutions are 78-88% of
    a fit step there, so no sweep that runs the same kernels could gain more than about 1.2x.
    On a GPU, where a small model cannot fill the device, both are expected to gain; that is
    not measured here.
    """
    convolutional = any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in model.modules())
    return not (convolutional and device.type == "cpu")


def _configuration_plans(plan: Plan, model, test_data, seeds) -> list[Plan]:
    """One plan per seed, each holding the held-out set as a fit with that seed prepares it."""
    if plan.test_tensors is None:
        return [plan] * len(seeds)
    raw = tuple(t.to(plan.device) for t in training_tensors(model, test_data, "test_data"))
    return [dataclasses.replace(plan, test_tensors=heldout_tensors(
        raw, binarize=plan.binarize, dequantize=plan.dequantize, seed=seed)) for seed in seeds]


def _init_scales(models, plan: Plan, seeds: list[int]) -> None:
    """:func:`init_scales` for each model from the first epoch of its own seed, once per distinct seed."""
    for seed in dict.fromkeys(seeds):
        init_scales([m for m, s in zip(models, seeds) if s == seed], plan, seed=seed)


def _stream(plan: Plan, *, seed: int, seeds: list[int] | None, latent_dim: int):
    """Yield ``(step, epoch, x, eps)`` for every step.

    Without ``seeds``: the minibatch ``x`` (batch, ...) and noise ``eps`` (batch, latent_dim)
    of ``fit(..., seed=seed)``, shared by every configuration. With ``seeds``: each
    configuration's own, stacked, ``(C, batch, ...)`` and ``(C, batch, latent_dim)``; the C
    streams of :func:`minibatches` share one plan, so they run in lockstep.
    """
    if seeds is None:
        for step, epoch, batch, eps, _ in minibatches(plan, seed=seed, start_step=0, latent_dim=latent_dim):
            yield step, epoch, batch[0], eps
        return
    streams = [minibatches(plan, seed=s, start_step=0, latent_dim=latent_dim) for s in seeds]
    for draws in zip(*streams):
        step, epoch = draws[0][:2]
        x = torch.stack([batch[0] for _, _, batch, _, _ in draws])
        yield step, epoch, x, torch.stack([eps for _, _, _, eps, _ in draws])


def sweep(models, data, *, objectives=None, betas=None, seeds=None, vectorize="auto", **options) -> list[History]:
    """Train one model per configuration as one vectorised ensemble; one :class:`History` each.

    Configuration ``c`` is ``models[c]`` trained with ``objectives[c]`` (a
    :class:`vaelab.Objective`), or with ``Objective(beta=betas[c])``. A sweep over a fixed
    Gaussian ``sigma`` passes models built with different ``log_sigma`` (a buffer of the
    head, not an architecture). Everything else is shared: every other keyword argument is
    one of :func:`vaelab.fit`'s, with the same meaning and default, and
    ``sweep(models, data, betas=betas, seed=s)`` trains what
    ``[fit(m, data, objective=Objective(beta=b), seed=s) for m, b in zip(models, betas)]``
    trains, in a fraction of the time.

    What the configurations share. With one ``seed`` (the default), every configuration
    sees the same minibatch order, the same binarisation or dequantisation of each epoch,
    the same reparameterisation noise at every step, and the same held-out binarisation or
    dequantisation and held-out ELBO noise; only the objective and the initial weights differ. That is
    right for comparing objectives (the comparison is paired), but a spread over models
    built with different seeds then measures the initialisation alone and understates the
    run-to-run spread. With ``seeds``, configuration ``c`` draws all of these from
    ``seeds[c]``: ``sweep(models, data, seeds=seeds)`` trains what
    ``[fit(m, data, seed=s) for m, s in zip(models, seeds)]`` trains, and nothing is shared
    but the training data and the held-out images themselves. Models built as
    ``[vaelab.mlp_vae(..., seed=s) for s in seeds]`` are then independent runs of one
    configuration, and their spread is the seed spread of separate fits, for the price of
    one vectorised run. The cost in memory: with ``binarize="dynamic"`` or
    ``dequantize=True`` each configuration has its own copy of the training images every
    epoch (``C`` copies instead of one), and with ``test_data`` its own held-out copy.

    Equal up to rounding, not bit for bit: the batched kernels add in another order than
    the separate ones, and training amplifies such differences. The tests
    (``tests/test_sweep.py``: a small MLP, up to 15 steps) hold every recorded value to
    1e-4 relative; after 316 MNIST steps of a 784-400-20 model the KL of one configuration
    was measured to differ from its separate fit by up to 0.048 nats.

    Args:
        models: ``C`` image VAEs (:func:`vaelab.mlp_vae` or :func:`vaelab.conv_vae`) with one
            architecture; trained in place. Build them with the same ``seed`` to start all
            configurations from the same weights.
        data: training images, in the forms :func:`vaelab.fit` takes.
        objectives: ``C`` :class:`vaelab.Objective` values, one per model; they may differ
            in anything (weights, schedules, feedback controllers, reductions, free bits,
            capacity). Or
        betas: ``C`` KL weights (numbers or schedules), each the objective
            ``Objective(beta=...)``. Neither means the ELBO for every model.
        seeds: ``C`` non-negative ints, one per model, in place of ``seed``: each
            configuration's minibatch order, binarisation or dequantisation, noise and
            held-out preparation, as ``fit(..., seed=seeds[c])`` draws them. ``None`` (the
            default) shares ``seed`` between all configurations. Model weights are not
            re-initialised: build each model with its own ``seed`` as well.
        vectorize: ``"auto"`` (the default) trains the configurations as one vectorised
            ensemble where that is faster than separate fits, and otherwise one after
            another with :func:`vaelab.fit`, printing a line that says so (today: conv
            VAEs on a CPU, where the vectorised convolutions lose). ``True`` or ``False``
            forces one way; both give the same results up to rounding.
        **options: ``test_data``, ``epochs``, ``batch_size``, ``lr``, ``likelihood``,
            ``binarize``, ``dequantize``, ``seed``, ``device``, ``max_steps``, ``sync_every``, ``progress``:
            as in :func:`vaelab.fit`, shared by all configurations (``seed`` only without
            ``seeds``). (No checkpoints and no gradient clipping: use ``fit`` for those.)

    Returns:
        A list of ``C`` :class:`History`, in the order of ``models``; the models end in eval
        mode on ``device``.

    Raises:
        ValueError: models that differ in architecture (layers, likelihood, sigma mode), the
            same model twice, ``objectives``/``betas``/``seeds`` of the wrong length, a seed that is
            not an int >= 0, ``seeds`` together with ``seed``, or any bad argument :func:`vaelab.fit`
            rejects.
        TrainingDiverged: a configuration produced NaN or inf (the message names it).
    """
    models = _check_models(models)
    objectives = _objectives(objectives, betas, len(models))
    seeds = _seeds(seeds, len(models), options)  # before _options fills in seed's default
    options = _options(options)
    if vectorize not in ("auto", True, False):
        raise ValueError(f"vectorize must be 'auto', True or False; got {vectorize!r}")
    seed, sync_every = options["seed"], options["sync_every"]
    own_seeds = [seed] * len(models) if seeds is None else seeds
    template = models[0]
    # decided before anything else runs, so that the sequential path costs what separate fits cost
    device = pick_device(options["device"])
    if vectorize is False or (vectorize == "auto" and not _vectorised_pays(template, device)):
        if vectorize == "auto":
            print(f"sweep: {len(models)} configurations trained one after another with fit, which is faster "
                  f"than one vectorised ensemble for this model on {device.type}")
        return [fit(model, data, objective=objective, **dict(options, seed=s))
                for model, objective, s in zip(models, objectives, own_seeds)]
    plan = plan_run(
        template, data, test_data=options["test_data"], epochs=options["epochs"], batch_size=options["batch_size"],
        lr=options["lr"], likelihood=options["likelihood"], binarize=options["binarize"],
        dequantize=options["dequantize"], device=device, max_steps=options["max_steps"],
        sync_every=sync_every, seed=own_seeds[0], bucket_size=options["bucket_size"], steps=options["steps"],
        bernoulli_on_grey=options["bernoulli_on_grey"],
    )
    for model in models[1:]:
        model.to(plan.device)
    plans = [plan] * len(models) if seeds is None else _configuration_plans(plan, template, options["test_data"], seeds)
    _init_scales(models, plan, own_seeds)
    host_weights = np.stack([o.betas(plan.total_steps) for o in objectives], axis=1)  # (steps, C), float64
    dtype = next(template.parameters()).dtype
    loss_weights = torch.as_tensor(host_weights, device=plan.device).to(dtype)  # fit multiplies by a float in the model's precision
    targets = None
    if any(o.capacity is not None for o in objectives):
        targets = torch.as_tensor(
            np.stack([o.capacities(plan.total_steps) if o.capacity is not None else np.zeros(plan.total_steps)
                      for o in objectives], axis=1), device=plan.device,
        ).to(dtype)

    # Configurations whose objectives have one form (they differ only in beta and capacity
    # values) share one vmapped loss; a sweep of betas is a single group.
    groups: dict[tuple, list[int]] = {}
    for c, objective in enumerate(objectives):
        groups.setdefault(objective.form, []).append(c)
    groups = [(objectives[members[0]], torch.tensor(members, device=plan.device), members) for members in groups.values()]
    order = torch.tensor([c for _, _, members in groups for c in members], device=plan.device).argsort()

    # Heads whose scoring is the same elementwise function for every configuration (no
    # parameters, no buffers such as a fixed sigma) score all configurations in one call
    # outside vmap, on (C * batch) examples: the fused kernels have no batching rule, and
    # their vmap fallback costs several times more.
    score_stacked = not any(True for _ in template.head.parameters()) and not any(True for _ in template.head.buffers())
    count = len(models)

    def one_forward(parameters, buffers, x, eps):
        out = functional_call(template, (parameters, buffers), (x, eps), {"score": not score_stacked})
        return (out.params if score_stacked else out.log_px), out.kl_per_dim

    all_forwards = vmap(one_forward, in_dims=(0, 0, None, None) if seeds is None else 0)
    group_losses = [
        vmap(lambda log_px, kl, weight, target, objective=objective: objective.loss(
            log_px, kl, data_dim=template.data_dim, beta=weight,
            capacity=target if objective.capacity is not None else None,
        ), in_dims=(0, 0, 0, 0 if targets is not None else None))
        for objective, _, _ in groups
    ]

    # Configurations whose weight a feedback controller sets: each reads its own KL every step, on the device.
    controlled = [(c, o.controller, o.controller.initial_state(plan.device)) for c, o in enumerate(objectives)
                  if o.controller is not None]

    def adapt(weight, kl_per_dim):
        """This step's weights: the scheduled ones, with each controller's replaced by what it sets now."""
        if not controlled:
            return weight
        weight = weight.clone()
        kl = kl_per_dim.detach().sum(-1).mean(-1)
        for c, controller, state in controlled:
            weight[c] = controller.update(state, kl[c]).to(weight.dtype)
        return weight

    def all_configurations(parameters, buffers, weight, target, x, eps):
        scores, kl_per_dim = all_forwards(parameters, buffers, x, eps)
        weight = adapt(weight, kl_per_dim)
        if score_stacked:  # (C, batch, ...) decoder parameters against each configuration's batch, or the one repeated
            flat_x = x.flatten(0, 1) if seeds is not None else x.expand(count, *x.shape).flatten(0, 1)
            flat = {name: value.flatten(0, 1) for name, value in scores.items()}
            scores = template.head.log_prob(flat_x, flat).view(count, -1)
        if len(groups) == 1:
            return group_losses[0](scores, kl_per_dim, weight, target), scores, kl_per_dim, weight
        losses = [
            loss(scores[index], kl_per_dim[index], weight[index], None if target is None else target[index])
            for loss, (_, index, _) in zip(group_losses, groups)
        ]
        return torch.cat(losses)[order], scores, kl_per_dim, weight

    histories = [History(template.latent_dim) for _ in models]
    stack, bar = _Stack(models), None
    try:
        optimizer = make_adam(stack.leaves.values(), plan.lr)
        bar = progress_bar(plan.total_steps, 0, options["progress"])
        log = StepLog(
            histories, sync_every=sync_every, bar=bar, start_time=time.perf_counter(),
            kept="no checkpoint was written", labels=[f" in configuration {c}" for c in range(len(models))],
        )
        template.train()
        with no_validation():
            for step, epoch, x, eps in _stream(plan, seed=seed, seeds=seeds, latent_dim=template.latent_dim):
                losses, log_px, kl_per_dim, weight = all_configurations(
                    stack.parameters(), stack.buffers, loss_weights[step], None if targets is None else targets[step],
                    x, eps,
                )
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()  # the configurations share no parameters: each gets its own gradient
                optimizer.step()
                log.record(step, epoch, weight if controlled else host_weights[step], log_px, kl_per_dim, losses)
                step += 1
                if step % plan.steps_per_epoch == 0:
                    log.sync()
                    for model, own_plan, own_seed, history in zip(models, plans, own_seeds, histories):
                        history.append_epoch(
                            epoch_record(model, own_plan, seed=own_seed, epoch=epoch, step=step, history=history)
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


def _signature() -> inspect.Signature:
    """``sweep``'s signature with fit's shared keyword arguments spelled out, for help() and editors."""
    own = [p for p in inspect.signature(sweep).parameters.values() if p.kind is not p.VAR_KEYWORD]
    return inspect.Signature(own + _SHARED, return_annotation=inspect.signature(sweep).return_annotation)


sweep.__signature__ = _signature()
