"""Checkpoints: an atomic file format, and the record that decides whether a run may continue from one.

A checkpoint holds the model, the optimiser, the :class:`~vaelab.history.History` and a
*run record*: everything that determined the steps done so far (the objective and the
values its schedules gave, the optimiser and its settings, the seed, the batch size,
binarisation, the model's architecture and fixed decoder settings, a digest of the
weights it started from (so a model built with another seed is refused), and digests of
the training and test data). :func:`vaelab.fit` continues from a checkpoint only when the
call it is given would have done exactly those steps, so a resumed run always equals
the uninterrupted one and two different runs are never mixed. Extending a finished run
to more epochs is such a continuation.

Files are written to a temporary file, read back, then renamed over ``latest.pt``
(:func:`save_checkpoint`), and loaded with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "FORMAT",
    "check_same_run",
    "fixed_settings",
    "load_checkpoint",
    "model_fingerprint",
    "save_checkpoint",
    "tensor_digest",
    "values_digest",
]

#: The format tag stored in every checkpoint; :func:`load_checkpoint` refuses a file with another.
FORMAT = "vaelab-checkpoint-3"


def model_fingerprint(model) -> dict:
    """The architecture: class, likelihood, and every tensor's name and shape."""
    return {
        "class": type(model).__name__,
        "likelihood": getattr(model, "likelihood", None),
        "parameters": {name: list(p.shape) for name, p in model.state_dict().items()},
    }


def fixed_settings(model) -> dict:
    """Buffers that configure the model rather than being trained (e.g. a fixed Gaussian ``log_sigma``)."""
    settings = {}
    head = getattr(model, "head", None)
    if head is not None:
        if hasattr(head, "sigma") and isinstance(head.sigma, str):
            settings["sigma"] = head.sigma
        if getattr(head, "sigma", "fixed") == "fixed":  # an "optimal" sigma's buffer is fitted, not configured
            for name, buffer in head.named_buffers():
                settings[f"head.{name}"] = buffer.tolist() if buffer.numel() <= 16 else tensor_digest((buffer,))
    return settings


def tensor_digest(tensors) -> str:
    """A digest of the shapes, dtypes and exact bytes of ``tensors`` (copied to the CPU to hash)."""
    hasher = hashlib.blake2b(digest_size=16)
    for tensor in tensors:
        hasher.update(repr((tuple(tensor.shape), str(tensor.dtype))).encode())
        data = tensor.detach().cpu().contiguous()
        hasher.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    return hasher.hexdigest()


def values_digest(values: np.ndarray | None) -> str | None:
    """A digest of per-step float64 values (a schedule's weights over the steps done)."""
    if values is None:
        return None
    return hashlib.blake2b(np.ascontiguousarray(values, dtype=np.float64).tobytes(), digest_size=16).hexdigest()


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


def _architecture_differences(expected: dict, found: dict) -> list[str]:
    """Readable differences between two fingerprints, naming tensors and shapes."""
    differences = []
    for key in ("class", "likelihood"):
        if expected[key] != found.get(key):
            differences.append(f"{key}: checkpoint {found.get(key)!r}, this model {expected[key]!r}")
    mine, theirs = expected["parameters"], found.get("parameters", {})
    for name in mine:
        if name not in theirs:
            differences.append(f"tensor {name} {tuple(mine[name])} is not in the checkpoint")
        elif mine[name] != theirs[name]:
            differences.append(f"tensor {name}: checkpoint {tuple(theirs[name])}, this model {tuple(mine[name])}")
    differences += [f"the checkpoint has tensor {name} {tuple(theirs[name])}, this model has none"
                    for name in theirs if name not in mine]
    return differences


def load_checkpoint(path, model=None, *, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`vaelab.fit` (``weights_only=True``); with ``model``,
    check that it has the same architecture and name every difference.

    ``path`` is the file, or the ``checkpoint_dir`` given to ``fit`` (its ``latest.pt`` is
    read). The model is only checked, not loaded: ``model.load_state_dict(state["model"])``
    loads the weights (``fit(..., resume=True)`` does both and continues the run)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "latest.pt").is_file():
            raise ValueError(f"{path} is a folder with no latest.pt: pass the checkpoint_dir that fit wrote to, "
                             "or the checkpoint file itself")
        path = path / "latest.pt"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"checkpoint {path} could not be read ({error}); delete it to start afresh") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(
            f"checkpoint {path} is not a vaelab checkpoint of format {FORMAT} (an older vaelab, or another "
            "program, wrote it); delete it, or pass another checkpoint_dir"
        )
    if model is not None:
        differences = _architecture_differences(model_fingerprint(model), state["fingerprint"])
        if differences:
            shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
            raise ValueError(
                f"checkpoint {path} was saved from a different model ({shown}). Build the model with the "
                "arguments the checkpoint was made with, or use another checkpoint_dir"
            )
    return state


def check_same_run(path, saved: dict, current: dict, *, steps_done: int) -> None:
    """Refuse to continue the run recorded as ``saved`` with the call described by ``current``.

    Both are run records (plain dicts). Entries whose name ends in ``" values"`` are digests
    of per-step values over the ``steps_done`` steps; the entry of the same name without
    that suffix is their readable description, shown in the message.
    """
    differences = []
    for key in sorted(set(saved) | set(current)):
        if key.endswith(" values"):
            continue
        values = f"{key} values"
        if values in saved or values in current:  # 1.0 and constant(1.0) are the same run; two lambdas may not be
            same = saved.get(values) == current.get(values)
            shown = f" (its values over the {steps_done} steps done differ)"
        else:
            same, shown = saved.get(key) == current.get(key), ""
        if not same:
            differences.append(f"{key}: checkpoint {saved.get(key)!r}, this call {current.get(key)!r}{shown}")
    if differences:
        raise ValueError(
            f"checkpoint {path} holds {steps_done} steps of a different run, so continuing it would mix two runs. "
            f"It differs in {'; '.join(differences)}. Use another checkpoint_dir for this run, or pass "
            "resume=False to start afresh and overwrite it"
        )
