"""Audit a VAE loss function as written: call it on inputs we control and read off its KL weight.

:func:`vaelab.check_loss` needs the loss described in its terms (which reductions, which
weights). :func:`audit_loss` finds that description itself. It calls the function on
synthetic inputs: the reconstruction term alone (the posterior at the prior, so the KL is
0), the KL term alone (a reconstruction as good as the output allows), both together,
several batch sizes, and a second latent size and data size where the function accepts
them. For each batch size it fits the loss exactly as ``a * R + b * KL + c``, with ``R``
the per-dimension reconstruction loss and ``KL`` the Gaussian KL to the prior (chapter 1),
each summed over everything. How ``a`` and ``b`` scale with the
batch, latent and data sizes gives the reductions; the result is then read by
:func:`vaelab.check_loss`, so the two give the same numbers and the same paragraph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from .ledger import LossReport, check_loss

__all__ = ["ARGUMENT_NAMES", "LossAudit", "audit_loss"]

#: The inputs a loss function may take, in the order given by ``arguments``.
ARGUMENT_NAMES = ("x_hat", "x", "mu", "logvar", "std", "sigma", "log_sigma")
OUTPUTS = ("mean", "logits")
_BATCH_SIZES = (2, 3, 5)  # small: the fits are exact, and each call costs the student function a full pass
_SIGMAS = (1.0, 0.5)  # the decoder sigma probed when the function takes one
_KIND_TEXT = {"squared_error": "a squared error", "bce": "a binary cross-entropy",
              "gaussian_nll": "a Gaussian negative log-likelihood with the decoder's own σ"}


class _Misfit(Exception):
    """The loss at one size is not a * R + b * KL + c for any recognised R."""


class _CallFailed(Exception):
    """The loss function raised on the probes."""


@dataclass(frozen=True)
class _Fit:
    batch_size: int
    latent_dim: int
    data_dim: int
    recon: float  # a
    kl: float  # b
    constant: float  # c


@dataclass(frozen=True, repr=False)
class LossAudit:
    """What :func:`audit_loss` found; its ``repr`` says it in words, then prints :attr:`report`.

    Attributes:
        report: the :class:`vaelab.LossReport` of the convention found, from
            :func:`vaelab.check_loss` (``beta_eff``, ``beta_norm``, ``sigma2``, ``sigma``).
        recon: the reconstruction loss recognised: ``"squared_error"``, ``"bce"`` or
            ``"gaussian_nll"``.
        call: the :func:`vaelab.check_loss` call that describes the same loss.
        batch_dependent: whether the KL weight depends on the batch size (the two terms
            reduce the batch differently).
        fits: per probed size, ``(batch_size, latent_dim, data_dim, a, b, c)`` of the
            exact fit ``loss = a * R + b * KL + c`` (``R`` and ``KL`` summed over everything).
        notes: what the probes could not tell apart, in words.
    """

    report: LossReport
    recon: str
    call: str
    batch_dependent: bool
    fits: tuple
    notes: tuple

    @property
    def beta_eff(self) -> float:
        return self.report.beta_eff

    @property
    def beta_norm(self) -> float:
        return self.report.beta_norm

    @property
    def sigma2(self) -> float | None:
        return self.report.sigma2

    @property
    def sigma(self) -> float | None:
        return self.report.sigma

    def __repr__(self) -> str:
        base = {}
        for f in self.fits:
            if f[1:3] == self.fits[0][1:3]:
                base.setdefault(f[0], f)
        base = base.values()
        per_batch = "; ".join(f"B = {f[0]}: a = {f[3]:.4g}, b = {f[4]:.4g}" for f in base)
        text = [f"Probed the loss: the reconstruction term is {_KIND_TEXT[self.recon]}, and the loss is exactly "
                f"a·R + b·KL + c with R and KL summed over everything ({per_batch})."]
        if self.batch_dependent:
            text.append("The two terms reduce the batch differently, so the KL weight depends on the batch size.")
        text.extend(self.notes)
        text.append(f"As a check_loss call: {self.call}.")
        return " ".join(text) + "\n\n" + repr(self.report)

    __str__ = __repr__


def _features(output: str, x_hat, x, bce_possible: bool) -> dict:
    mean = torch.sigmoid(x_hat) if output == "logits" else x_hat
    features = {"squared_error": ((x - mean) ** 2).sum().item()}
    if bce_possible:
        bce = (F.binary_cross_entropy_with_logits(x_hat, x, reduction="sum") if output == "logits"
               else F.binary_cross_entropy(x_hat, x, reduction="sum"))
        features["bce"] = bce.item()
    return features


def _scalar(value) -> float:
    if isinstance(value, dict):
        value = value.get("loss", next(iter(value.values())))
    elif isinstance(value, (tuple, list)):
        value = value[0]
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"the loss function returned a tensor of shape {tuple(value.shape)}, not one number: "
                             "reduce it to a scalar as your training loop does before backward()")
        value = value.item()
    return float(value)


class _Prober:
    def __init__(self, loss_fn, arguments, output, data_range, dtype, output_shapes):
        self.loss_fn, self.arguments, self.output, self.dtype = loss_fn, arguments, output, dtype
        self.output_shapes = output_shapes  # the shape of one x_hat, by data size
        self.low, self.high = data_range
        self.bce_possible = 0.0 <= self.low and self.high <= 1.0
        self.gen = torch.Generator().manual_seed(0)
        self.calls = 0

    def _rand(self, *shape):
        return torch.rand(*shape, generator=self.gen, dtype=self.dtype)

    def _randn(self, *shape):
        return torch.randn(*shape, generator=self.gen, dtype=self.dtype)

    def _x_hat(self, mean):
        if self.output == "logits":
            return torch.logit(mean)
        return mean

    def call(self, x_hat, x, mu, logvar, sigma) -> float:
        values = {"x_hat": x_hat, "x": x, "mu": mu, "logvar": logvar, "std": (0.5 * logvar).exp(),
                  "sigma": torch.tensor(sigma, dtype=self.dtype),
                  "log_sigma": torch.tensor(math.log(sigma), dtype=self.dtype)}
        values["x_hat"] = x_hat.reshape(x_hat.shape[0], *self.output_shape)
        self.calls += 1
        try:
            loss = _scalar(self.loss_fn(*[values[name].clone() for name in self.arguments]))
        except Exception as error:  # whatever the student's code raises, it is reported with its inputs
            raise _CallFailed(error) from error
        if not math.isfinite(loss):
            raise _Misfit(f"the loss is {loss} on valid inputs (x_hat {'logits' if self.output == 'logits' else 'in the data range'})")
        return loss

    def probes(self, batch, latent, shape, sigma):
        self.output_shape = self.output_shapes[math.prod(shape)]
        """(loss, features, KL) for each probe at one size; probe 7 (both terms) is repeated last."""
        span, rows = self.high - self.low, []
        eps = 1e-4 * span
        for kind, scale in [("recon", 0.05), ("recon", 0.2), ("recon", 0.5), ("recon", None),
                            ("kl", 0.3), ("kl", 1.0), ("kl", 2.0), ("both", 0.5), ("both", 1.5)]:
            if kind == "kl":  # binary data and an output as close to them as it may be
                x = self.low + span * (self._rand(batch, *shape) < 0.5).to(self.dtype)
                mean = x.clamp(self.low + eps, self.high - eps)
            else:
                x = self.low + span * self._rand(batch, *shape).clamp(0.01, 0.99)
                noise = self._randn(batch, *shape) * span * (scale if scale is not None else 0.3)
                mean = (x + noise).clamp(self.low + eps, self.high - eps)
                if scale is None:
                    mean = self.low + span * self._rand(batch, *shape).clamp(0.01, 0.99)
            if kind == "recon":
                mu = torch.zeros(batch, latent, dtype=self.dtype)
                logvar = torch.zeros(batch, latent, dtype=self.dtype)
            else:
                s = scale
                mu, logvar = self._randn(batch, latent) * s, self._randn(batch, latent) * s
            rows.append((x, self._x_hat(mean), mu, logvar))
        rows.append(rows[7])  # both terms: a weight that changes from call to call shows here
        out = []
        for x, x_hat, mu, logvar in rows:
            kl = (0.5 * (mu ** 2 + logvar.exp() - logvar - 1)).sum().item()
            out.append((self.call(x_hat, x, mu, logvar, sigma), _features(self.output, x_hat, x, self.bce_possible),
                        kl))
        return out

    def fit(self, batch, latent, shape, sigma, tol):
        probes = self.probes(batch, latent, shape, sigma)
        first, again = probes[7][0], probes[-1][0]
        if not math.isclose(first, again, rel_tol=tol, abs_tol=tol):
            raise _Misfit(f"the loss changed between two calls with the same inputs ({first:.6g}, then {again:.6g}): "
                          "a weight that changes inside the function, such as an annealing schedule or a step "
                          "counter. Audit the loss at one fixed weight")
        probes = probes[:-1]
        losses = torch.tensor([p[0] for p in probes], dtype=torch.float64)
        scale = losses.abs().max().item() or 1.0
        found = {}
        for kind in probes[0][1]:
            design = torch.tensor([[p[1][kind], p[2], 1.0] for p in probes], dtype=torch.float64)
            solution = torch.linalg.lstsq(design, losses.unsqueeze(1)).solution.squeeze(1)
            residual = (design @ solution - losses).abs().max().item()
            if residual <= tol * scale:
                found[kind] = tuple(solution.tolist())
        if not found:
            recon_only = [p for p in probes[:4]]
            recon_fits = []
            for kind in recon_only[0][1]:
                design = torch.tensor([[p[1][kind], 1.0] for p in recon_only], dtype=torch.float64)
                target = torch.tensor([p[0] for p in recon_only], dtype=torch.float64)
                sol = torch.linalg.lstsq(design, target.unsqueeze(1)).solution.squeeze(1)
                if (design @ sol - target).abs().max().item() <= tol * max(target.abs().max().item(), 1e-12):
                    recon_fits.append(kind)
            if not recon_fits:
                raise _Misfit(
                    "with the KL at 0 (posterior at the prior) the loss is no fixed multiple of a squared error or "
                    "of a binary cross-entropy of x_hat and x, plus a constant. It is none of the losses the audit "
                    "recognises (a squared error, a BCE on probabilities or logits, a Gaussian NLL with a fixed "
                    "or given σ); if x_hat is a logit, say output='logits'; if the function takes its inputs in "
                    "another order, say arguments=(...)")
            raise _Misfit(
                f"the reconstruction term is {_KIND_TEXT[recon_fits[0]]}, but the loss is not of the form "
                "a·R + b·KL + c: its KL part is no fixed multiple of the Gaussian KL of (mu, logvar) to N(0, I). "
                "That is what a clamped KL (free bits), a KL weight computed from the KL itself, or another "
                "divergence does; such a loss has no single KL weight")
        if len(found) > 1:
            raise _Misfit(f"the probes could not tell {' from '.join(found)} apart")
        kind, (a, b, c) = next(iter(found.items()))
        if a <= 0:
            raise _Misfit(f"the reconstruction term enters with weight {a:.4g} <= 0: does the function return the "
                          "ELBO rather than the loss (the negative ELBO)?")
        if b < -tol * abs(a):
            raise _Misfit(f"the KL enters with a negative weight ({b:.4g}): the sign of the KL is wrong")
        if abs(b) <= tol * abs(a):
            b = 0.0
        return kind, b, a, c


def _exponent(values: dict, name: str, size_name: str) -> str | None:
    """'sum' if ``values[size]`` does not change with the size, 'mean' if it goes as 1/size."""
    sizes = sorted(values)
    ref = values[sizes[0]]
    if all(math.isclose(values[s], ref, rel_tol=1e-6) for s in sizes):
        return "sum"
    if all(math.isclose(values[s] * s, ref * sizes[0], rel_tol=1e-6) for s in sizes):
        return "mean"
    listed = ", ".join(f"{values[s]:.4g} at {size_name} = {s}" for s in sizes)
    raise ValueError(f"the {name} weight changes with the {size_name} as neither a sum nor a mean ({listed}), "
                     "so the loss has no one KL weight the audit can name")


def audit_loss(
    loss_fn: Callable,
    *,
    data_shape,
    latent_dim: int,
    output: str = "mean",
    output_shape=None,
    arguments: tuple = ("x_hat", "x", "mu", "logvar"),
    batch_size: int | None = None,
    binary: bool | None = None,
    data_std: float | None = None,
    data_range: tuple = (0.0, 1.0),
) -> LossAudit:
    """Read a VAE loss function as written: its effective beta, beta_norm and implied sigma.

    Pass the function you train with. It is called on synthetic inputs that the audit
    controls (the reconstruction term alone with the posterior at the prior, the KL alone,
    several batch sizes, a second latent and data size), and must return the loss as one number (a 0-dim tensor; a tuple or a dict
    whose first item or ``"loss"`` is the loss also works). The audit recognises a squared
    error, a binary cross-entropy on probabilities or logits, and a Gaussian negative
    log-likelihood with the decoder's own σ, each reduced by sums and means, plus a
    Gaussian KL with any weight and reductions. It fits the loss exactly; when it cannot
    (another reconstruction loss, a clamped or annealed KL, a weight that changes with the
    batch size as neither a sum nor a mean), it raises ``ValueError`` saying why instead
    of guessing. The result is read by :func:`vaelab.check_loss`, so its numbers and its
    paragraph are check_loss's.

    The mean squared error of many tutorials, ``F.mse_loss`` (a mean over pixels *and*
    batch) plus ``0.001`` times the KL summed over latents, averaged over the batch:

    >>> import torch, torch.nn.functional as F
    >>> def loss(x_hat, x, mu, logvar):
    ...     kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)
    ...     return F.mse_loss(x_hat, x) + 0.001 * kl.mean()
    >>> audit = audit_loss(loss, data_shape=(1, 28, 28), latent_dim=20)
    >>> audit.recon, round(audit.beta_eff, 4), round(audit.sigma, 3)
    ('squared_error', 0.784, 0.626)

    PyTorch's ``examples/vae`` (the decoder ends in a sigmoid; both terms summed over the
    batch), on grey-level MNIST:

    >>> def loss(recon_x, x, mu, logvar):
    ...     bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    ...     return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    >>> audit = audit_loss(loss, data_shape=(1, 28, 28), output_shape=784, latent_dim=20,
    ...                    binary=False)
    >>> audit.recon, round(audit.beta_eff, 6), audit.batch_dependent
    ('bce', 1.0, False)

    A decoder that returns logits, with ``F.binary_cross_entropy_with_logits``: pass
    ``output="logits"``. A function that takes ``(x, x_hat, mu, log_var)``: pass
    ``arguments=("x", "x_hat", "mu", "logvar")``. A learned decoder σ passed in:
    ``arguments=("x_hat", "x", "mu", "logvar", "log_sigma")``. Print the result for the
    explanation.

    Args:
        loss_fn: the loss function, called positionally with the inputs named in
            ``arguments``.
        data_shape: the shape of one example, e.g. ``(1, 28, 28)`` or ``784``; the probes
            have shape ``(batch, *data_shape)``. A second data size (the last dimension
            doubled) is tried too, to tell a mean over the data dimensions from a weight
            of ``1/N``.
        latent_dim: ``M``; ``2 M`` is tried too, to tell a mean over latents from a sum.
        output: what ``x_hat`` is: ``"mean"`` (the decoder's output in data units; for a
            BCE the probabilities, after the sigmoid) or ``"logits"`` (before a sigmoid).
        output_shape: the shape of one ``x_hat`` if it differs from ``data_shape``, e.g.
            ``784`` for a decoder that returns flat rows (PyTorch's ``examples/vae``).
        arguments: the order of the function's arguments, names from
            ``ARGUMENT_NAMES``: ``x_hat``, ``x`` ``(batch, *data_shape)``; ``mu``,
            ``logvar`` (the posterior's log-variance) or ``std`` (its standard deviation)
            ``(batch, latent_dim)``; ``sigma`` or ``log_sigma``, the decoder's own σ (a
            0-dim tensor), for a Gaussian NLL.
        batch_size: ``B`` you train with; needed only when the KL weight depends on it.
        binary: whether your data are binary (0/1); see :func:`vaelab.check_loss`.
        data_std: your data's standard deviation, for a squared error's σ.
        data_range: ``(low, high)`` of the data (``(-1, 1)`` for images scaled so).

    Returns:
        A :class:`LossAudit`; print it for the explanation.

    Raises:
        ValueError: the function fails on the probes, is not of the form
            ``a * R + b * KL + c`` with a recognised ``R``, changes between two calls
            with the same inputs, or its KL weight depends on the batch size and
            ``batch_size`` was not given.
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be the loss function itself, got {type(loss_fn).__name__}")
    shape = (data_shape,) if isinstance(data_shape, int) else tuple(data_shape)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"data_shape must be the shape of one example, e.g. (1, 28, 28) or 784; got {data_shape!r}")
    if not isinstance(latent_dim, int) or isinstance(latent_dim, bool) or latent_dim < 1:
        raise ValueError(f"latent_dim must be an integer >= 1, got {latent_dim!r}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(map(repr, OUTPUTS))}; got {output!r}")
    arguments = tuple(arguments)
    unknown = [a for a in arguments if a not in ARGUMENT_NAMES]
    if unknown or len(set(arguments)) != len(arguments):
        raise ValueError(f"arguments must name each input once, from {ARGUMENT_NAMES}; got {arguments!r}")
    for needed in ("x_hat", "x", "mu"):
        if needed not in arguments:
            raise ValueError(f"arguments must include {needed!r}; got {arguments!r}")
    if "logvar" not in arguments and "std" not in arguments:
        raise ValueError(f"arguments must include 'logvar' or 'std' (the posterior's spread); got {arguments!r}")
    low, high = (float(v) for v in data_range)
    if not high > low:
        raise ValueError(f"data_range must be (low, high) with high > low, got {data_range!r}")
    takes_sigma = "sigma" in arguments or "log_sigma" in arguments

    out_shape = shape if output_shape is None else (
        (output_shape,) if isinstance(output_shape, int) else tuple(output_shape))
    if math.prod(out_shape) != math.prod(shape):
        raise ValueError(f"output_shape {out_shape} must hold as many values as data_shape {shape}")
    shapes = {math.prod(shape): out_shape, 2 * math.prod(shape): out_shape[:-1] + (out_shape[-1] * 2,)}
    settings = (loss_fn, shape, latent_dim, output, arguments, (low, high), takes_sigma, shapes, batch_size,
                binary, data_std)
    try:
        return _audit(*settings, torch.float64, 1e-6)
    except _Misfit as misfit:
        raise ValueError(f"audit_loss cannot read this loss: {misfit}.") from None
    except _CallFailed as failed:
        error = failed.args[0]
    try:  # some code mixes in float32 tensors of its own; a float32 fit is looser
        return _audit(*settings, torch.float32, 2e-4)
    except (_Misfit, _CallFailed):
        pass
    raise ValueError(
        f"audit_loss could not call the loss with x_hat of shape (batch, {', '.join(map(str, out_shape))}), x of "
        f"shape (batch, {', '.join(map(str, shape))}) and (batch, {latent_dim}) for the posterior, in the order "
        f"{arguments}: {type(error).__name__}: {error}. Check data_shape, output_shape, latent_dim and "
        "arguments") from None


def _audit(loss_fn, shape, latent_dim, output, arguments, data_range, takes_sigma, output_shapes, batch_size,
           binary, data_std, dtype, tol) -> LossAudit:
    prober = _Prober(loss_fn, arguments, output, data_range, dtype, output_shapes)
    n = math.prod(shape)
    fits, notes = [], []

    def fit(batch, latent, shp, sigma=1.0):
        kind, b, a, c = prober.fit(batch, latent, shp, sigma, tol)
        fits.append((batch, latent, math.prod(shp), a, b, c))
        return kind, a, b, c

    kind, a0, b0, c0 = fit(_BATCH_SIZES[0], latent_dim, shape)
    recon_by_batch, kl_by_batch = {_BATCH_SIZES[0]: a0}, {_BATCH_SIZES[0]: b0}
    for batch in _BATCH_SIZES[1:]:
        k, a, b, _ = fit(batch, latent_dim, shape)
        if k != kind:
            raise _Misfit(f"the reconstruction term reads as {k} at batch size {batch} but {kind} at "
                          f"{_BATCH_SIZES[0]}")
        recon_by_batch[batch], kl_by_batch[batch] = a, b
    recon_batch = _exponent(recon_by_batch, "reconstruction", "batch size")
    no_kl = all(b == 0 for b in kl_by_batch.values())
    kl_batch = recon_batch if no_kl else _exponent(kl_by_batch, "KL", "batch size")

    if takes_sigma:
        if kind != "squared_error":
            raise _Misfit("the function takes the decoder's σ but its reconstruction term is no squared error")
        by_sigma = {}
        for sigma in _SIGMAS:
            _, a, _, _ = fit(_BATCH_SIZES[0], latent_dim, shape, sigma)
            by_sigma[sigma] = a * 2 * sigma ** 2
        if not all(math.isclose(v, by_sigma[1.0], rel_tol=1e-5) for v in by_sigma.values()):
            raise _Misfit("the loss takes σ, but its squared error is not weighted by 1/(2σ²) as a Gaussian "
                          "NLL's is")
        kind = "gaussian_nll"
        a0 = by_sigma[1.0]  # the weight of the summed Gaussian NLL
        notes.append("The function takes the decoder's σ and weights the squared error by 1/(2σ²): a Gaussian "
                     "NLL, so β_eff below is measured against that NLL, at any σ.")
    elif kind == "squared_error" and abs(c0) > 1e-5 * a0 * n * _BATCH_SIZES[0]:
        notes.append(f"Besides the squared error the loss holds a constant ({c0:.4g} at B = {_BATCH_SIZES[0]}), "
                     "such as a Gaussian normaliser with a fixed σ inside the function; a constant changes no "
                     "gradient, so the σ below is the one this loss trains with.")

    def vary(alternatives):
        for size, args in alternatives:
            try:
                k, a, b, _ = fit(*args)
            except (_Misfit, _CallFailed):
                continue
            if k in (kind, "squared_error"):
                return size, a, b
        return None

    # a mean over the data dimensions or latents shows as a weight that goes with 1/N or 1/M
    bigger_shape = shape[:-1] + (shape[-1] * 2,)
    data_probe = vary([(n * 2, (_BATCH_SIZES[0], latent_dim, bigger_shape))])
    latent_probe = vary([(latent_dim * 2, (_BATCH_SIZES[0], latent_dim * 2, shape))])
    recon_by_n = None if data_probe is None else {n: fits[0][3], data_probe[0]: data_probe[1]}
    kl_by_m = None if latent_probe is None else {latent_dim: fits[0][4], latent_probe[0]: latent_probe[2]}

    def choose(weight_sum, size, by_size, name, size_name, symbol):
        if by_size is not None and weight_sum != 0:
            dims = _exponent(by_size, name, size_name)
        else:
            # one size only: a mean over the dimensions and a weight of 1/size read the same
            dims = "mean" if weight_sum and abs(math.log(weight_sum * size)) < abs(math.log(weight_sum)) else "sum"
            if weight_sum:
                notes.append(f"The function accepted only one {size_name}, so a mean over the {size} {symbol} "
                             f"and a weight of 1/{size} cannot be told apart; β_eff, β_norm and σ are the same "
                             "either way.")
        return dims, weight_sum * (size if dims == "mean" else 1)

    batch0 = _BATCH_SIZES[0]
    a_per = a0 * (batch0 if recon_batch == "mean" else 1)
    b_per = b0 * (batch0 if kl_batch == "mean" else 1)
    recon_dims, recon_weight = choose(a_per, n, recon_by_n, "reconstruction", "data size", "data dimensions")
    if no_kl:
        kl_dims, kl_weight = "sum", 0.0
    else:
        kl_dims, kl_weight = choose(b_per, latent_dim, kl_by_m, "KL", "latent size", "latents")
    convention = dict(data_dim=shape if len(shape) > 1 else n, latent_dim=latent_dim,
                      recon_weight=_tidy(recon_weight), kl_weight=_tidy(kl_weight), recon_dims=recon_dims,
                      recon_batch=recon_batch, kl_dims=kl_dims, kl_batch=kl_batch)
    batch_dependent = recon_batch != kl_batch
    if batch_dependent:
        if batch_size is None:
            to_nll = 2.0 if kind == "gaussian_nll" else 1.0  # the squared error's weight at sigma = 1 is a / 2
            betas = ", ".join(f"{kl_by_batch[s] / (recon_by_batch[s] * to_nll):.4g} at B = {s}" for s in _BATCH_SIZES)
            raise ValueError(
                f"audit_loss cannot name one KL weight for this loss without the batch size: the reconstruction "
                f"term is {'summed' if recon_batch == 'sum' else 'averaged'} over the batch and the KL "
                f"{'summed' if kl_batch == 'sum' else 'averaged'}, so β_eff depends on it (b/a = {betas}). "
                "Pass batch_size=B, the minibatch size you train with")
        convention["batch_size"] = batch_size
    report = check_loss(recon=kind, binary=binary, data_std=data_std, **convention)
    shown = {k: v for k, v in convention.items() if not (k in _DEFAULTS and _DEFAULTS[k] == v)}
    call = "check_loss(" + ", ".join([f"recon={kind!r}"] + (["binary=" + repr(binary)] if binary is not None else [])
                                     + [f"{k}={v!r}" for k, v in shown.items()]) + ")"
    return LossAudit(report=report, recon=kind, call=call, batch_dependent=batch_dependent, fits=tuple(fits),
                     notes=tuple(notes))


_DEFAULTS = dict(recon_weight=1.0, kl_weight=1.0, recon_dims="sum", recon_batch="mean", kl_dims="sum",
                 kl_batch="mean")


def _tidy(weight: float) -> float:
    """A fitted weight, rounded to the nearest 'round' number within fitting error (10 digits)."""
    return float(f"{weight:.10g}")
