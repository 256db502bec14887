"""The training loop: :func:`fit` returns a :class:`History` of every step.

Design points a reader may rely on:

* **Everything stays on the device.** Minibatches are index slices of whole tensors, and
  per-step statistics are written into a device buffer that is copied to the host every
  ``sync_every`` steps (one synchronisation, not one per step).
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
        self._steps = np.zeros((0, len(_STEP_COLUMNS) + latent_dim))
        self.epochs: dict[str, list] = {"epoch": [], "step": []}

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
        self._steps = np.concatenate([self._steps, rows])

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


def _weights(schedule, total_steps: int) -> np.ndarray:
    if not isinstance(schedule, Schedule) and not callable(schedule):
        raise ValueError(f"schedule must be a vaelab schedule or a callable step -> weight; got {schedule!r}")
    values = np.asarray(schedule(np.arange(total_steps)), dtype=np.float64)
    if values.shape != (total_steps,) or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("schedule must give one finite weight >= 0 per step")
    return values


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
    """Train a VAE with Adam and return its :class:`History`.

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
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    sync_every = check_positive_int("sync_every", sync_every)
    if likelihood is not None and likelihood != getattr(model, "likelihood", None):
        raise ValueError(
            f"likelihood={likelihood!r} does not match the model's decoder head, which is "
            f"{getattr(model, 'likelihood', None)!r}; build the model with likelihood={likelihood!r}"
        )
    check_choice("binarize", binarize, (None, "dynamic"))
    if clip_grad_norm is not None:
        clip_grad_norm = check_positive("clip_grad_norm", clip_grad_norm)
    if checkpoint_every is not None:
        checkpoint_every = check_positive_int("checkpoint_every", checkpoint_every)
        if checkpoint_dir is None:
            raise ValueError("checkpoint_every needs a checkpoint_dir to write to")

    device = pick_device(device)
    model.to(device)
    tensors = tuple(t.to(device) for t in as_tensors(data, "data"))
    model.check_input(*tensors)
    if binarize == "dynamic":
        from .data import binarize as _binarize
    test_tensors = None if test_data is None else tuple(t.to(device) for t in as_tensors(test_data, "test_data"))
    if test_tensors is not None:
        model.check_input(*test_tensors)

    n = tensors[0].shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, check_positive_int("max_steps", max_steps))
    weights = _weights(constant(1.0) if schedule is None else schedule, total_steps)
    targets = None if capacity is None else _weights(capacity, total_steps)

    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = History(model.latent_dim)
    step = 0
    config = {"seed": seed, "batch_size": batch_size, "n": n, "lr": lr}
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / "latest.pt"
    if path is not None and resume and path.exists():
        state = load_checkpoint(path, model, map_location=device)
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

    n_stats = 5 + model.latent_dim  # weight, recon, kl, objective, elbo, kl per dim
    buffer = torch.zeros(sync_every, n_stats, dtype=torch.float64, device=device)
    buffer_steps: list[tuple[int, int]] = []
    bar = _progress_bar(total_steps, step, progress)
    start_time = time.perf_counter() - (history["time"][-1] if len(history) else 0.0)

    def sync():
        """Copy buffered statistics to the host, check them, extend the history."""
        if not buffer_steps:
            return
        stats = buffer[: len(buffer_steps)].cpu().numpy()
        bad = ~np.isfinite(stats).all(axis=1)
        if bad.any():
            row = int(np.argmax(bad))
            names = ["weight", "reconstruction term", "KL term", "objective", "ELBO"]
            term = next((names[j] for j in range(5) if not np.isfinite(stats[row, j])), "per-dimension KL")
            bad_step = buffer_steps[row][0]
            kept = f"the last good checkpoint {path} was kept" if path is not None else "no checkpoint was written"
            raise TrainingDiverged(
                f"training diverged at step {bad_step} (epoch {buffer_steps[row][1]}): the {term} became "
                f"{stats[row, names.index(term)] if term in names else 'non-finite'}; {kept}. Try a lower lr, "
                "clip_grad_norm, or a likelihood whose scale parameter is bounded",
                step=bad_step, history=history,
            )
        now = time.perf_counter() - start_time
        meta = np.array([[s, e] for s, e in buffer_steps], dtype=np.float64)
        rows = np.concatenate([meta, stats[:, :5], np.full((len(stats), 1), now), stats[:, 5:]], axis=1)
        history._append_steps(rows)
        if bar is not None:
            bar.update(len(buffer_steps))
            bar.set_postfix(recon=f"{stats[-1, 1]:.1f}", kl=f"{stats[-1, 2]:.2f}", w=f"{stats[-1, 0]:.3g}")
        buffer_steps.clear()

    def end_epoch(epoch: int) -> None:
        record = {"epoch": epoch, "step": step}
        if test_tensors is not None:
            with no_validation():
                result = heldout_elbo(model, test_tensors, seed=seed)
            model.train()
            if not math.isfinite(result["elbo"]):
                raise TrainingDiverged(
                    f"the held-out ELBO became {result['elbo']} after epoch {epoch} (step {step})",
                    step=step, history=history,
                )
            record.update(test_elbo=result["elbo"], test_recon=result["recon"], test_kl=result["kl"])
        history._append_epoch(record)

    step_generator = torch.Generator(device=device)
    model.train()
    try:
        while step < total_steps:
            epoch, position = divmod(step, steps_per_epoch)
            permutation = torch.randperm(n, generator=generator(seed, "shuffle", epoch)).to(device)
            epoch_tensors = tensors
            if binarize == "dynamic":
                gen = generator(seed, "binarize", epoch, device=device)
                epoch_tensors = (_binarize(tensors[0], method="sample", generator=gen),) + tensors[1:]
            slices = list(batch_slices(n, batch_size, permutation=permutation))
            with no_validation():
                for index in slices[position:]:
                    if step >= total_steps:
                        break
                    batch = tuple(t[index] for t in epoch_tensors)
                    step_generator.manual_seed(derive_seed(seed, "step", step))
                    eps = torch.randn(batch[0].shape[0], model.latent_dim, generator=step_generator, device=device)
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
                    with torch.no_grad():
                        recon = -out.log_px.mean()
                        kl_dims_mean = out.kl_per_dim.mean(0)
                        kl = kl_dims_mean.sum()
                        row = buffer[len(buffer_steps)]
                        row[0] = weights[step]
                        row[1:5] = torch.stack([recon, kl, loss.detach(), -(recon + kl)])
                        row[5:] = kl_dims_mean
                    buffer_steps.append((step, epoch))
                    step += 1
                    if step % steps_per_epoch == 0:
                        sync()
                        end_epoch(epoch)
                    elif len(buffer_steps) == sync_every:
                        sync()
                    if checkpoint_every is not None and step % checkpoint_every == 0:
                        sync()
                        checkpoint()
        sync()
        checkpoint()
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return history
