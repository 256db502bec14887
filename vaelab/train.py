"""The training loop: :func:`fit` returns a :class:`History` of every step.

Design points a reader may rely on:

* **Everything stays on the device.** Minibatches are index slices of whole tensors, and
  per-step statistics are reduced in a few batched ops and copied to the host every
  ``sync_every`` steps (one synchronisation, and no statistics ops on the hot path).
* **Counter-based randomness.** The noise of step ``t``, the shuffle of epoch ``e`` and
  its dynamic binarisation come from generators seeded by ``(seed, purpose, t or e)``.
  The same seed gives bit-identical results on the CPU, and a run resumed from a
  checkpoint continues exactly as the uninterrupted run would have.
* **Divergence is caught.** Non-finite values stop training with a message naming the
  step and the term that went bad; a checkpoint is only written after the values it
  covers were checked, so the last one on disk is a good one.
* **Checkpoints are atomic.** Written to a temporary file, read back, then renamed over
  ``latest.pt``, and loaded with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ._checks import check_choice, check_positive, check_positive_int, no_validation
from .batching import as_tensors, batch_slices, derive_seed, generator, pick_device
from .metrics import elbo as heldout_elbo
from .objective import training_loss
from .schedules import Schedule, constant

__all__ = ["History", "TrainingDiverged", "fit", "load_checkpoint", "save_checkpoint"]

_STEP_COLUMNS = ("step", "epoch", "weight", "recon", "kl", "objective", "elbo", "time")
_CHECKPOINT_FORMAT = "vaelab-checkpoint-1"


class TrainingDiverged(FloatingPointError):
    """Training produced NaN or inf. ``.step`` is the first bad step, ``.history`` the good part."""

    def __init__(self, message: str, *, step: int, history: "History"):
        super().__init__(message)
        self.step, self.history = step, history


class History:
    """What :func:`fit` recorded.

    Per optimiser step (``history["recon"]`` etc., NumPy arrays of length ``steps``):

    * ``step``, ``epoch``;
    * ``weight``: the KL weight used;
    * ``recon``: ``-mean log p(x|z)`` over the batch, nats per example;
    * ``kl``: ``mean KL(q(z|x) || p(z))`` summed over latents, nats per example;
    * ``objective``: the loss that was minimised (differs from ``-elbo`` under weights,
      free bits or capacity);
    * ``elbo``: the ELBO at weight 1, ``-(recon + kl)``;
    * ``time``: wall-clock seconds since training began (the only field that is not
      reproducible).

    ``history.kl_per_dim`` is ``(steps, latent)``. Per epoch, ``history.epochs`` holds
    ``epoch``, ``step`` and, when test data was given, ``test_elbo``, ``test_recon``,
    ``test_kl`` (nats per example, held-out).
    """

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim
        self._chunks = [np.zeros((0, len(_STEP_COLUMNS) + latent_dim))]
        self.epochs: dict[str, list] = {"epoch": [], "step": []}

    @property
    def _steps(self) -> np.ndarray:
        """All rows, ``(steps, columns)``; appended chunks are joined on first read (linear, not quadratic, in steps)."""
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0]

    @_steps.setter
    def _steps(self, rows: np.ndarray) -> None:
        self._chunks = [rows]

    def __len__(self) -> int:
        return self._steps.shape[0]

    def __getitem__(self, column: str) -> np.ndarray:
        check_choice("column", column, _STEP_COLUMNS)
        return self._steps[:, _STEP_COLUMNS.index(column)]

    @property
    def kl_per_dim(self) -> np.ndarray:
        """``(steps, latent)``, nats per example."""
        return self._steps[:, len(_STEP_COLUMNS):]

    def _append_steps(self, rows: np.ndarray) -> None:
        self._chunks.append(rows)

    def _append_epoch(self, record: dict) -> None:
        for key, value in record.items():
            self.epochs.setdefault(key, []).append(value)

    def state_dict(self) -> dict:
        return {"latent_dim": self.latent_dim, "steps": torch.from_numpy(self._steps.copy()), "epochs": self.epochs}

    @classmethod
    def from_state_dict(cls, state: dict) -> "History":
        history = cls(int(state["latent_dim"]))
        history._steps = state["steps"].numpy().astype(np.float64)
        history.epochs = {k: list(v) for k, v in state["epochs"].items()}
        return history

    def same_as(self, other: "History") -> bool:
        """Equal in every recorded value except wall time."""
        if self._steps.shape != other._steps.shape or self.epochs.keys() != other.epochs.keys():
            return False
        keep = [i for i, c in enumerate(_STEP_COLUMNS) if c != "time"] + list(range(len(_STEP_COLUMNS), self._steps.shape[1]))
        return np.array_equal(self._steps[:, keep], other._steps[:, keep]) and all(
            self.epochs[k] == other.epochs[k] for k in self.epochs if k != "time"
        )

    def plot(self, **kwargs):
        """Reconstruction and KL against steps, with the KL weight on a twin axis (see :func:`vaelab.plots.plot_history`)."""
        from .plots import plot_history

        return plot_history(self, **kwargs)

    def __repr__(self) -> str:
        last = f", last elbo {self['elbo'][-1]:.2f}" if len(self) else ""
        return f"History({len(self)} steps, {len(self.epochs['epoch'])} epochs{last})"


# ----------------------------------------------------------------- checkpoints


def _fingerprint(model) -> dict:
    return {
        "class": type(model).__name__,
        "likelihood": getattr(model, "likelihood", None),
        "parameters": {name: list(p.shape) for name, p in model.state_dict().items()},
    }


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: temporary file, read back, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        torch.load(tmp, map_location="cpu", weights_only=True)  # verify before it replaces the last good one
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path, model=None, *, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`fit` (``weights_only=True``) and check it fits ``model``."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"checkpoint {path} could not be read ({error}); delete it to start afresh") from error
    if not isinstance(state, dict) or state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} is not a vaelab checkpoint (format {_CHECKPOINT_FORMAT})")
    if model is not None:
        expected, found = _fingerprint(model), state["fingerprint"]
        if expected != found:
            differences = [k for k in expected if expected[k] != found.get(k)]
            raise ValueError(
                f"checkpoint {path} was saved from a different model (differs in {', '.join(differences)}: "
                f"checkpoint has {found['class']} with {found['likelihood']!r} likelihood and "
                f"{len(found['parameters'])} tensors, this model is {expected['class']} with "
                f"{expected['likelihood']!r} and {len(expected['parameters'])}); use another checkpoint_dir"
            )
    return state


# ------------------------------------------------------------------- the loop


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        import ipywidgets  # noqa: F401  (widgets present: the notebook bar works)
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm
    return tqdm(total=total, initial=initial, unit="step", file=sys.stderr, dynamic_ncols=True)


def _weights(schedule, total_steps: int, *, name: str = "schedule") -> np.ndarray:
    if not isinstance(schedule, Schedule) and not callable(schedule):
        raise ValueError(f"{name} must be a vaelab schedule or a callable step -> weight; got {schedule!r}")
    values = np.asarray(schedule(np.arange(total_steps)), dtype=np.float64)
    if values.shape != (total_steps,) or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{name} must give one finite weight >= 0 per step")
    return values


def _adam(parameters, lr: float) -> torch.optim.Adam:
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


@dataclasses.dataclass
class _Plan:
    """The checked data and step counts of a run, shared by :func:`fit` and :func:`vaelab.sweep`."""

    device: torch.device
    tensors: tuple
    test_tensors: tuple | None
    batch_size: int
    lr: float
    binarize: str | None
    steps_per_epoch: int
    total_steps: int

    @property
    def n(self) -> int:
        return self.tensors[0].shape[0]


def _plan(model, data, *, test_data, epochs, batch_size, lr, likelihood, binarize, device, max_steps, sync_every) -> _Plan:
    """Check the arguments common to every training run and move model and data to the device."""
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    check_positive_int("sync_every", sync_every)
    if likelihood is not None and likelihood != getattr(model, "likelihood", None):
        raise ValueError(
            f"likelihood={likelihood!r} does not match the model's decoder head, which is "
            f"{getattr(model, 'likelihood', None)!r}; build the model with likelihood={likelihood!r}"
        )
    check_choice("binarize", binarize, (None, "dynamic"))
    device = pick_device(device)
    model.to(device)
    tensors = tuple(t.to(device) for t in as_tensors(data, "data"))
    model.check_input(*tensors)
    test_tensors = None if test_data is None else tuple(t.to(device) for t in as_tensors(test_data, "test_data"))
    if test_tensors is not None:
        model.check_input(*test_tensors)
    steps_per_epoch = math.ceil(tensors[0].shape[0] / batch_size)
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, check_positive_int("max_steps", max_steps))
    return _Plan(device, tensors, test_tensors, batch_size, lr, binarize, steps_per_epoch, total_steps)


def _batches(plan: _Plan, *, seed: int, start_step: int, latent_dim: int):
    """Yield ``(step, epoch, batch, eps, step_generator)`` for every step from ``start_step`` on.

    The data order, the binarisation and the noise depend only on ``(seed, epoch, step)``:
    this is what makes resumed runs, and each configuration of a sweep, equal to a
    single uninterrupted :func:`fit`.
    """
    if plan.binarize == "dynamic":
        from .data import binarize as _binarize
    step_generator = torch.Generator(device=plan.device)
    step = start_step
    while step < plan.total_steps:
        epoch, position = divmod(step, plan.steps_per_epoch)
        permutation = torch.randperm(plan.n, generator=generator(seed, "shuffle", epoch)).to(plan.device)
        epoch_tensors = plan.tensors
        if plan.binarize == "dynamic":
            gen = generator(seed, "binarize", epoch, device=plan.device)
            epoch_tensors = (_binarize(plan.tensors[0], method="sample", generator=gen),) + plan.tensors[1:]
        slices = list(batch_slices(plan.n, plan.batch_size, permutation=permutation))
        for index in slices[position:]:
            if step >= plan.total_steps:
                return
            # index_select copies whole rows: about twice as fast on a CPU as t[index]
            batch = tuple(t[index] if isinstance(index, slice) else t.index_select(0, index) for t in epoch_tensors)
            step_generator.manual_seed(derive_seed(seed, "step", step))
            eps = torch.randn(batch[0].shape[0], latent_dim, generator=step_generator, device=plan.device)
            yield step, epoch, batch, eps, step_generator
            step += 1


class _StepLog:
    """Per-step statistics of one or more runs, reduced and checked every ``sync_every`` steps.

    A step only keeps references to its per-example ``log p(x|z)`` and KL and to its
    loss; no device op runs on the hot path. Every ``sync_every`` steps the buffered
    steps are reduced over the batch in a few batched ops, copied to the host in one
    synchronisation, checked for NaN/inf and appended to the histories.
    """

    _TERMS = ("weight", "reconstruction term", "KL term", "objective", "ELBO")

    def __init__(self, histories, *, sync_every: int, bar, start_time: float, kept: str, labels=None):
        self.histories, self.bar, self.start_time, self.kept = histories, bar, start_time, kept
        self.labels = labels or [""] * len(histories)
        self.sync_every = sync_every
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.weights = np.zeros((sync_every, len(histories)))  # known on the host: never copied to the device
        self.steps: list[tuple[int, int]] = []

    @property
    def full(self) -> bool:
        return len(self.steps) == self.sync_every

    def record(self, step: int, epoch: int, weight, log_px: torch.Tensor, kl_per_dim: torch.Tensor, loss: torch.Tensor) -> None:
        """One step: ``weight`` is the KL weight (a float, or a host array with one per run);
        ``log_px`` ``([runs,] batch)``, ``kl_per_dim`` ``([runs,] batch, latent)`` and ``loss``
        ``([runs])`` are that step's tensors, kept by reference until :meth:`sync`."""
        self.pending.append((log_px, kl_per_dim, loss))
        self.weights[len(self.steps)] = weight
        self.steps.append((step, epoch))

    def _reduce(self) -> np.ndarray:
        """``(steps, runs, 2 + latent)`` float64: recon, objective, then the batch-mean KL per latent."""
        parts = []
        with torch.no_grad():
            # Steps of one batch size are stacked and reduced together; only an epoch's last
            # batch may be shorter, and it ends a group.
            for _, group in itertools.groupby(self.pending, key=lambda tensors: tuple(tensors[0].shape)):
                log_px, kl_per_dim, loss = (torch.stack(column) for column in zip(*group))
                if loss.dim() == 1:  # a single run: add the run axis
                    log_px, kl_per_dim, loss = log_px.unsqueeze(1), kl_per_dim.unsqueeze(1), loss.unsqueeze(1)
                parts.append(torch.cat([-log_px.mean(-1, keepdim=True), loss.unsqueeze(-1), kl_per_dim.mean(-2)], dim=-1))
            return torch.cat(parts).cpu().double().numpy()

    def sync(self) -> None:
        """Copy buffered statistics to the host, check them, extend the histories."""
        if not self.steps:
            return
        n = len(self.steps)
        raw = self._reduce()
        self.pending.clear()
        recon, objective, kl_dims = raw[..., 0], raw[..., 1], raw[..., 2:]
        kl = kl_dims.sum(axis=2)
        # (steps, runs, 5 + latent): weight, recon, kl, objective, elbo, then the KL per latent
        stats = np.concatenate(
            [np.stack([self.weights[:n], recon, kl, objective, -(recon + kl)], axis=2), kl_dims], axis=2
        )
        bad = ~np.isfinite(stats).all(axis=2)
        if bad.any():
            row, run = np.unravel_index(int(np.argmax(bad)), bad.shape)
            values = stats[row, run]
            term = next((self._TERMS[j] for j in range(5) if not np.isfinite(values[j])), "per-dimension KL")
            value = values[self._TERMS.index(term)] if term in self._TERMS else "non-finite"
            bad_step, bad_epoch = self.steps[row]
            raise TrainingDiverged(
                f"training diverged at step {bad_step} (epoch {bad_epoch}){self.labels[run]}: the {term} became "
                f"{value}; {self.kept}. Try a lower lr, clip_grad_norm, or a likelihood whose scale parameter "
                "is bounded",
                step=bad_step, history=self.histories[run],
            )
        now = time.perf_counter() - self.start_time
        meta = np.array(self.steps, dtype=np.float64)
        clock = np.full((len(self.steps), 1), now)
        for run, history in enumerate(self.histories):
            history._append_steps(np.concatenate([meta, stats[:, run, :5], clock, stats[:, run, 5:]], axis=1))
        if self.bar is not None:
            self.bar.update(len(self.steps))
            if len(self.histories) == 1:
                last = stats[-1, 0]
                self.bar.set_postfix(recon=f"{last[1]:.1f}", kl=f"{last[2]:.2f}", w=f"{last[0]:.3g}")
        self.steps.clear()


def _epoch_record(model, test_tensors, *, seed: int, epoch: int, step: int, history: History) -> dict:
    """What :class:`History` keeps per epoch: the held-out ELBO when there is test data."""
    record = {"epoch": epoch, "step": step}
    if test_tensors is not None:
        with no_validation():
            result = heldout_elbo(model, test_tensors, seed=seed)
        if not math.isfinite(result["elbo"]):
            raise TrainingDiverged(
                f"the held-out ELBO became {result['elbo']} after epoch {epoch} (step {step})",
                step=step, history=history,
            )
        record.update(test_elbo=result["elbo"], test_recon=result["recon"], test_kl=result["kl"])
    return record


def fit(
    model,
    data,
    *,
    test_data=None,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    likelihood: str | None = None,
    schedule=None,
    recon_dims: str = "sum",
    kl_dims: str = "sum",
    free_bits: float | None = None,
    free_bits_per_dimension: bool = True,
    capacity=None,
    gamma: float = 1.0,
    binarize: str | None = None,
    seed: int = 0,
    device=None,
    clip_grad_norm: float | None = None,
    checkpoint_dir=None,
    checkpoint_every: int | None = None,
    resume: bool = True,
    max_steps: int | None = None,
    sync_every: int = 50,
    progress: bool = True,
) -> History:
    """Train a VAE with Adam (the fused kernel where the device has one) and return its :class:`History`.

    The objective per step is ``R + w(step) * K`` (:func:`vaelab.objective.training_loss`),
    where ``w`` comes from ``schedule`` and ``K`` is the summed KL, free bits, or a capacity
    target.

    Args:
        model: a :class:`vaelab.VAE` or :class:`vaelab.SentenceVAE`; trained in place.
        data: training examples on any device: an image tensor ``(N, C, H, W)``, or a
            tuple/dataclass of tensors (``Sentences`` for text).
        test_data: held-out examples; their ELBO is recorded after every epoch.
        epochs, batch_size, lr: the usual; the last batch of an epoch may be short.
        likelihood: if given, must equal the model's decoder likelihood (a guard against
            training, say, a Gaussian model while believing it is Bernoulli).
        schedule: KL weight per step, e.g. :func:`vaelab.linear`; default constant 1.
        recon_dims, kl_dims: ``"sum"`` (the ELBO) or ``"mean"`` over pixels / latents,
            the conventions of the loss-scale ledger (chapter 1).
        free_bits: free-bits threshold in nats (Kingma et al. 2016); per dimension
            unless ``free_bits_per_dimension=False``.
        capacity: a schedule of the KL target ``C`` in nats (:func:`vaelab.capacity`), with
            weight ``gamma`` (Burgess et al. 2018).
        binarize: ``"dynamic"`` re-samples binary images from the grey levels every epoch
            (Burda et al. 2016); ``None`` uses ``data`` as given.
        seed: the one seed for shuffling, noise and binarisation. Model weights are not
            re-initialised: build the model with its own ``seed``.
        device: ``None`` picks CUDA, then MPS, then CPU.
        clip_grad_norm: clip the global gradient norm to this value.
        checkpoint_dir: where ``latest.pt`` is written every ``checkpoint_every`` steps and
            at the end; with ``resume=True`` an existing one is continued from.
        max_steps: stop after this many optimiser steps in total (a budget; also what a
            test uses to stop part-way). Held-out ELBOs are recorded at epoch ends only.
        sync_every: steps between host synchronisations (statistics, divergence check,
            progress bar).
        progress: show a progress bar.

    Returns:
        The :class:`History`; the model ends in eval mode on ``device``.

    Raises:
        ValueError: bad arguments, mismatched likelihood or checkpoint, data the model
            cannot score.
        TrainingDiverged: a NaN or inf appeared (the message names the step and term).
    """
    if clip_grad_norm is not None:
        clip_grad_norm = check_positive("clip_grad_norm", clip_grad_norm)
    if checkpoint_every is not None:
        checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
        if checkpoint_dir is None:
            raise ValueError("checkpoint_every needs a checkpoint_dir to write to")
    plan = _plan(
        model, data, test_data=test_data, epochs=epochs, batch_size=batch_size, lr=lr, likelihood=likelihood,
        binarize=binarize, device=device, max_steps=max_steps, sync_every=sync_every,
    )
    weights = _weights(constant(1.0) if schedule is None else schedule, plan.total_steps)
    targets = None if capacity is None else _weights(capacity, plan.total_steps, name="capacity")

    optimizer = _adam(model.parameters(), plan.lr)
    history = History(model.latent_dim)
    step = 0
    config = {"seed": seed, "batch_size": plan.batch_size, "n": plan.n, "lr": plan.lr}
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / "latest.pt"
    if path is not None and resume and path.exists():
        state = load_checkpoint(path, model, map_location=plan.device)
        if state["config"] != config:
            raise ValueError(
                f"checkpoint {path} was made with {state['config']}, but this call has {config}; "
                "resuming would not reproduce the run (use another checkpoint_dir or resume=False)"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = History.from_state_dict(state["history"])
        step = int(state["step"])

    def checkpoint():
        if path is None:
            return
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise TrainingDiverged(
                f"parameters became non-finite by step {step}; the last good checkpoint {path} was kept",
                step=step, history=history,
            )
        save_checkpoint(path, {
            "format": _CHECKPOINT_FORMAT, "fingerprint": _fingerprint(model), "config": config, "step": step,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "history": history.state_dict(),
        })

    bar = _progress_bar(plan.total_steps, step, progress)
    log = _StepLog(
        [history], sync_every=sync_every, bar=bar,
        start_time=time.perf_counter() - (history["time"][-1] if len(history) else 0.0),
        kept=f"the last good checkpoint {path} was kept" if path is not None else "no checkpoint was written",
    )
    model.train()
    try:
        with no_validation():
            for step, epoch, batch, eps, step_generator in _batches(
                plan, seed=seed, start_step=step, latent_dim=model.latent_dim
            ):
                out = model(*batch, eps, generator=step_generator)
                loss = training_loss(
                    out.log_px, out.kl_per_dim, data_dim=model.data_dim, weight=float(weights[step]),
                    recon_dims=recon_dims, kl_dims=kl_dims, free_bits=free_bits,
                    free_bits_per_dimension=free_bits_per_dimension,
                    capacity=None if targets is None else float(targets[step]), gamma=gamma,
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
                optimizer.step()
                log.record(step, epoch, weights[step], out.log_px, out.kl_per_dim, loss)
                step += 1
                if step % plan.steps_per_epoch == 0:
                    log.sync()
                    history._append_epoch(
                        _epoch_record(model, plan.test_tensors, seed=seed, epoch=epoch, step=step, history=history)
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
    return history
