"""What training records: the :class:`History` of a run, and the :class:`StepLog` that fills it.

Per-step statistics stay on the device until the log synchronises every ``sync_every``
steps, reduces the buffered steps in a few batched ops, checks them for NaN/inf, and
appends them to the histories (one history per run; a sweep has several).
"""
from __future__ import annotations

import itertools
import time

import numpy as np
import torch

from ._checks import check_choice

__all__ = ["DIVERGENCE_ADVICE", "History", "StepLog", "TrainingDiverged", "STEP_COLUMNS"]

#: What a divergence message advises when nothing points at a cause in the data.
DIVERGENCE_ADVICE = "Try a lower lr, clip_grad_norm, or a likelihood whose scale parameter is bounded"

#: The per-step columns of a :class:`History`, in order; the KL per latent follows them.
STEP_COLUMNS = ("step", "epoch", "weight", "recon", "kl", "objective", "elbo", "time")


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
    ``epoch``, ``step``; ``sigma`` for a Gaussian decoder with a fixed or learned scale
    (:attr:`vaelab.VAE.sigma` at the end of the epoch, in data units; the geometric mean
    over pixels for a per-pixel sigma); and, when test data was given, ``test_elbo``,
    ``test_recon``, ``test_kl`` (nats per example, held-out).
    """

    def __init__(self, latent_dim: int):
        self.latent_dim = latent_dim
        self._chunks = [np.zeros((0, len(STEP_COLUMNS) + latent_dim))]
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
        check_choice("column", column, STEP_COLUMNS)
        return self._steps[:, STEP_COLUMNS.index(column)]

    @property
    def kl_per_dim(self) -> np.ndarray:
        """``(steps, latent)``, nats per example."""
        return self._steps[:, len(STEP_COLUMNS):]

    def append_steps(self, rows: np.ndarray) -> None:
        self._chunks.append(rows)

    def append_epoch(self, record: dict) -> None:
        for key, value in record.items():
            self.epochs.setdefault(key, []).append(value)

    def state_dict(self) -> dict:
        return {"latent_dim": self.latent_dim, "steps": torch.from_numpy(self._steps.copy()), "epochs": self.epochs}

    @classmethod
    def from_state_dict(cls, state: dict) -> "History":
        history = cls(int(state["latent_dim"]))
        history._steps = state["steps"].cpu().numpy().astype(np.float64)  # loaded onto the training device
        history.epochs = {k: list(v) for k, v in state["epochs"].items()}
        return history

    def same_as(self, other: "History") -> bool:
        """Equal in every recorded value except wall time."""
        if self._steps.shape != other._steps.shape or self.epochs.keys() != other.epochs.keys():
            return False
        keep = [i for i, c in enumerate(STEP_COLUMNS) if c != "time"] + list(range(len(STEP_COLUMNS), self._steps.shape[1]))
        return np.array_equal(self._steps[:, keep], other._steps[:, keep]) and all(
            self.epochs[k] == other.epochs[k] for k in self.epochs if k != "time"
        )

    def plot(self, **kwargs):
        """Reconstruction and KL against steps, with the KL weight on a twin axis (see :func:`vaelab.plots.plot_history`)."""
        from .plots import plot_history

        return plot_history(self, **kwargs)

    def __repr__(self) -> str:
        """``History(469 steps, 1 epoch, ...)``; a run that stopped inside an epoch says how far it got."""
        steps, done = len(self), len(self.epochs["epoch"])
        if not steps:
            return "History(0 steps)"
        epoch_column = self["epoch"]
        partial = int((epoch_column == epoch_column[-1]).sum()) if int(epoch_column[-1]) >= done else 0
        span = f"{done} epoch{'s' if done != 1 else ''}" if done else ""
        if partial:
            span = (f"{span} + " if done else "") + f"{partial} step{'s' if partial != 1 else ''} of epoch {done + 1}"
        scored = f", {len(self.epochs['test_elbo'])} held-out scores" if "test_elbo" in self.epochs else ""
        return f"History({steps} steps: {span}{scored}, last elbo {self['elbo'][-1]:.2f})"


class StepLog:
    """Per-step statistics of one or more runs, reduced and checked every ``sync_every`` steps.

    A step only keeps references to its per-example ``log p(x|z)`` and KL and to its
    loss; no device op runs on the hot path. Every ``sync_every`` steps the buffered
    steps are reduced over the batch in a few batched ops, copied to the host in one
    synchronisation, checked for NaN/inf and appended to the histories.
    """

    _TERMS = ("weight", "reconstruction term", "KL term", "objective", "ELBO")

    def __init__(self, histories, *, sync_every: int, bar, start_time: float, kept: str, labels=None,
                 advice: str = DIVERGENCE_ADVICE):
        self.histories, self.bar, self.start_time, self.kept, self.advice = histories, bar, start_time, kept, advice
        self.labels = labels or [""] * len(histories)
        self.sync_every = sync_every
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.weights = np.zeros((sync_every, len(histories)))  # known on the host: never copied to the device
        self.device_weights: list[tuple[int, torch.Tensor]] = []  # a controller's, copied at the sync
        self.steps: list[tuple[int, int]] = []

    @property
    def full(self) -> bool:
        return len(self.steps) == self.sync_every

    def record(self, step: int, epoch: int, weight, log_px: torch.Tensor, kl_per_dim: torch.Tensor, loss: torch.Tensor) -> None:
        """One step: ``weight`` is the KL weight (a float, or a host array with one per run, or
        a device tensor of either shape when a controller set it); ``log_px`` ``([runs,] batch)``,
        ``kl_per_dim`` ``([runs,] batch, latent)`` and ``loss`` ``([runs])`` are that step's
        tensors, kept by reference until :meth:`sync`."""
        self.pending.append((log_px, kl_per_dim, loss))
        if isinstance(weight, torch.Tensor):
            self.device_weights.append((len(self.steps), weight))
        else:
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
        if self.device_weights:
            rows = [row for row, _ in self.device_weights]
            self.weights[rows] = torch.stack([w for _, w in self.device_weights]).cpu().double().numpy().reshape(len(rows), -1)
            self.device_weights.clear()
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
                f"{value}; {self.kept}. {self.advice}",
                step=bad_step, history=self.histories[run],
            )
        now = time.perf_counter() - self.start_time
        meta = np.array(self.steps, dtype=np.float64)
        clock = np.full((len(self.steps), 1), now)
        for run, history in enumerate(self.histories):
            history.append_steps(np.concatenate([meta, stats[:, run, :5], clock, stats[:, run, 5:]], axis=1))
        if self.bar is not None:
            self.bar.update(len(self.steps))
            if len(self.histories) == 1:
                last = stats[-1, 0]
                self.bar.set_postfix(recon=f"{last[1]:.1f}", kl=f"{last[2]:.2f}", w=f"{last[0]:.3g}")
        self.steps.clear()
