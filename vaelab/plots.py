"""Figures for the book. The only vaelab module that imports matplotlib.

Every function draws on a given ``ax`` (or makes its own figure) and returns the axes,
so a chapter can compose panels and end the cell with ``;``.
"""
from __future__ import annotations

import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = [
    "image_grid",
    "plot_history",
    "plot_schedule",
    "latent_traversal",
    "rate_distortion_plane",
]


def _new_axes(ax, figsize):
    if ax is not None:
        return ax
    _, ax = plt.subplots(figsize=figsize)
    return ax


def image_grid(images, *, nrow: int = 8, ax=None, title: str | None = None, pad: int = 1):
    """Show a batch of images as one grid.

    Args:
        images: ``(n, C, H, W)`` tensor or array with values in [0, 1]; C is 1 or 3. Values
            outside [0, 1] are clipped, with a warning.
        nrow: images per row.
        ax: axes to draw on (default: a new figure).
        title: axes title.
        pad: pixels of white space between images.
    """
    images = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, float)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"images must have shape (n, 1 or 3, H, W); got {tuple(images.shape)}"
            + (" (flat MNIST vectors: images.reshape(-1, 1, 28, 28))" if images.ndim == 2 and images.shape[1] == 784 else "")
        )
    low, high = float(np.nanmin(images)), float(np.nanmax(images))
    if low < -1e-6 or high > 1 + 1e-6:
        warnings.warn(
            f"image_grid shows values in [0, 1], but the images range from {low:g} to {high:g}: values outside are "
            "clipped (saturated). Rescale them first, e.g. images / 255 for 8-bit grey levels, or show a decoder's "
            "mean rather than its raw outputs",
            UserWarning, stacklevel=2,
        )
    n, c, h, w = images.shape
    nrow = max(1, min(nrow, n))
    ncol = math.ceil(n / nrow)
    grid = np.ones((c, ncol * (h + pad) - pad, nrow * (w + pad) - pad))
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = images[i]
    ax = _new_axes(ax, (nrow * 0.5 + 1, ncol * 0.5 + 0.5))
    if c == 1:
        ax.imshow(np.clip(grid[0], 0, 1), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(grid.transpose(1, 2, 0), 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_history(history, *, axes=None, smooth: int | None = None, label: str | None = None,
                 show_weight: bool = True):
    """Training curves of a :class:`vaelab.History`: reconstruction, and KL with the KL weight.

    Left panel: ``-log p(x|z)`` per step (and held-out per epoch, if recorded). Right
    panel: the KL in nats, with the KL weight on a twin axis (dashed).

    Args:
        history: from :func:`vaelab.fit`.
        axes: a pair of axes (default: a new 1x2 figure).
        smooth: moving-average window over steps (default: about 1% of the run).
        label: legend label for this run (to overlay several runs on the same axes).
        show_weight: draw the KL weight on a twin axis. Runs whose objectives differ in
            their reductions, not their weight (chapter 1), all record a weight of 1: pass
            ``False`` and name their effective weights in the labels instead.

    Returns:
        ``(ax_recon, ax_kl, ax_weight)``; ``ax_weight`` is ``None`` without the weight.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    ax_recon, ax_kl = axes
    steps = history["step"]
    window = smooth if smooth is not None else max(1, len(steps) // 100)
    line = ax_recon.plot(steps, _smooth(history["recon"], window), label=label or "train")[0]
    if "test_recon" in history.epochs:
        ax_recon.plot(history.epochs["step"], history.epochs["test_recon"], "o", color=line.get_color(),
                      ms=3, label=None if label else "held-out")
    ax_recon.set_xlabel("step")
    ax_recon.set_ylabel(r"$-\log p(x\mid z)$ (nats)")
    ax_kl.plot(steps, _smooth(history["kl"], window), color=line.get_color(), label=label)
    ax_kl.set_xlabel("step")
    ax_kl.set_ylabel("KL (nats)")
    ax_weight = None
    if show_weight:
        ax_weight = getattr(ax_kl, "_vaelab_twin", None)
        if ax_weight is None:
            ax_weight = ax_kl.twinx()
            ax_kl._vaelab_twin = ax_weight
            ax_weight.set_ylabel("KL weight", color="0.4")
        ax_weight.plot(steps, history["weight"], "--", color=line.get_color(), alpha=0.6, lw=1)
    if label or "test_recon" in history.epochs:
        ax_recon.legend(frameon=False)
    return ax_recon, ax_kl, ax_weight


def plot_schedule(schedule, total_steps: int, *, ax=None, label: str | None = None, **style):
    """Draw ``schedule(step)`` for ``step = 0 .. total_steps - 1``."""
    ax = _new_axes(ax, (5, 2.6))
    steps = np.arange(total_steps)
    ax.plot(steps, schedule(steps), label=label or repr(schedule), **style)
    ax.set_xlabel("step")
    ax.set_ylabel("weight")
    return ax


@torch.no_grad()
def latent_traversal(model, x, *, dims=None, values=None, ax=None, title: str | None = None):
    """Decode the posterior mean of one example with one latent dimension varied at a time.

    Row ``i`` varies latent ``dims[i]`` over ``values`` (default ``-3 .. 3`` in 7 steps,
    prior standard deviations) and holds the others at the posterior mean of ``x``.

    Args:
        model: an image :class:`vaelab.VAE`.
        x: one example, ``(1, C, H, W)`` or ``(C, H, W)``.
        dims: latent dimensions to traverse (default: all).
        values: the values to set.
    """
    if x.dim() == 3:
        x = x.unsqueeze(0)
    device = next(model.parameters()).device
    mu, _ = model.encode(x.to(device))
    dims = list(range(model.latent_dim)) if dims is None else list(dims)
    values = torch.linspace(-3, 3, 7) if values is None else torch.as_tensor(values, dtype=torch.float32)
    z = mu.repeat(len(dims) * len(values), 1)
    for row, dim in enumerate(dims):
        z[row * len(values) : (row + 1) * len(values), dim] = values.to(device)
    images = model.head.mean(model.decode(z))
    ax = image_grid(images, nrow=len(values), ax=ax, title=title)
    h = images.shape[-2] + 1
    ax.set_yticks([h * r + h / 2 - 1 for r in range(len(dims))])
    ax.set_yticklabels([f"$z_{{{d}}}$" for d in dims])
    return ax


def rate_distortion_plane(points, *, ax=None, annotate: bool = True, connect: bool = True,
                          distortion: str = "nats", **style):
    """The rate-distortion plane (Alemi et al. 2018): one point per model.

    Rate ``R = KL(q(z|x) || p(z))`` on the x-axis, in nats per example, and distortion on
    the y-axis. With ``distortion="nats"`` it is ``D = -E log p(x|z)`` in nats, and the
    diagonal lines ``R + D = const`` are lines of equal ELBO. With ``distortion="sse"`` it
    is the squared error summed over pixels (squared data units, see
    :func:`vaelab.rate_distortion`), which compares decoders of different likelihoods; no
    diagonals are drawn, since ``R + D`` is then no ELBO.

    Args:
        points: iterable of ``(label, rate, distortion)``.
        annotate: write each label next to its point.
        connect: join the points in the given order.
        distortion: ``"nats"`` or ``"sse"``, the unit of the distortions given.
    """
    if distortion not in ("nats", "sse"):
        raise ValueError(f"distortion must be one of 'nats', 'sse'; got {distortion!r}")
    points = list(points)
    if not points:
        raise ValueError("points must contain at least one (label, rate, distortion) triple")
    labels = [str(p[0]) for p in points]
    unit = distortion
    rate = np.array([float(p[1]) for p in points])
    values = np.array([float(p[2]) for p in points])
    ax = _new_axes(ax, (5, 4))
    ax.plot(rate, values, "-o" if connect else "o", **style)
    if annotate:
        for label, r, d in zip(labels, rate, values):
            ax.annotate(label, (r, d), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if unit == "nats":
        total = rate + values
        lo, hi = total.min(), total.max()
        xs = np.array([0, max(rate.max(), 1e-9) * 1.1])
        for level in np.linspace(lo, hi, 3) if hi > lo else [lo]:
            ax.plot(xs, level - xs, color="0.85", lw=0.8, zorder=0)
    ax.set_xlim(left=0)
    ax.set_ylim(values.min() - 0.1 * (np.ptp(values) + 1), values.max() + 0.1 * (np.ptp(values) + 1))
    ax.set_xlabel("rate $R$ = KL (nats per example)")
    ax.set_ylabel(r"distortion $D = -\mathbb{E}\log p(x\mid z)$ (nats)" if unit == "nats"
                  else "distortion: squared error per example\n(summed over pixels, pixel units²)")
    return ax
