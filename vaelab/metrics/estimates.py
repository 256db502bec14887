"""Likelihood estimates of trained VAEs, in nats per example: the held-out ELBO and the
importance-weighted bound on ``log p(x)`` (Burda et al. 2016), the number to compare across
models and papers."""
from __future__ import annotations

import math
import warnings

import torch

from .._checks import check_flag, check_positive_int, no_validation, validation_enabled
from ..batching import as_tensors, generator, is_text
from ..data.images import on_level_grid
from .posterior import checked_images, checked_inputs, evaluating, example_batches, model_device

__all__ = ["bits_per_dim", "elbo", "iw_log_likelihood", "perplexity", "rate_distortion"]

#: Decoders that are densities on [0, 1] (their nats depend on the pixel scale): 8-bit images
#: are scored with them after dequantisation, with ``levels=256``.
DENSITIES = ("gaussian", "beta", "continuous_bernoulli")


def warn_if_bernoulli_on_grey(model, named_images: dict, *, allowed: bool, function: str, stacklevel: int = 3) -> None:
    """Warn when a Bernoulli decoder meets grey levels (values strictly between 0 and 1).

    A Bernoulli distribution is over binary pixels: on grey levels its "log-likelihood" is
    a binary cross-entropy, not a log-probability, so an ELBO, ``nll`` or bits/dim computed
    from it are not what their names say. ``named_images`` maps an argument name to its
    images (``None`` to skip one); ``allowed`` is the caller's ``bernoulli_on_grey``.
    """
    allowed = check_flag("bernoulli_on_grey", allowed)
    likelihood = getattr(model, "likelihood", None)
    if allowed:
        if likelihood != "bernoulli":
            raise ValueError(
                f"bernoulli_on_grey=True allows a Bernoulli decoder on grey levels; this model's decoder is "
                f"{likelihood!r}, which needs no such permission: leave bernoulli_on_grey=False"
            )
        return
    if likelihood != "bernoulli":
        return
    grey = [name for name, images in named_images.items()
            if images is not None and bool(((images > 0) & (images < 1)).any())]
    if not grey:
        return
    names = " and ".join(grey)
    if function == "fit":
        consequence = ("its loss is a binary cross-entropy, not a log-likelihood, and the recorded ELBOs bound no "
                       "probability. Pass binarize=\"dynamic\" to train on binary images (test_data are then "
                       "binarised once, as vaelab.prepare_heldout does)")
    else:
        consequence = (f"the numbers {function} returns are not a log-likelihood, whatever their names say. Score "
                       "binary images: vaelab.prepare_heldout(test_images, binarize=\"dynamic\", seed=...) "
                       "binarises them as fit does")
    warnings.warn(
        f"{names} hold grey levels (values strictly between 0 and 1), but the model's decoder is Bernoulli, a "
        f"distribution over binary pixels: {consequence}; or use a decoder for grey levels (continuous_bernoulli, "
        "beta or gaussian with dequantised data, or discretized_logistic). To use grey levels on purpose (the "
        "naive BCE of chapter 3), pass bernoulli_on_grey=True",
        UserWarning, stacklevel=stacklevel,
    )

_LOG_2PI = math.log(2 * math.pi)
# Importance samples are drawn in blocks of this many, each from its own seeded generator,
# so the samples do not depend on k_chunk (how many are scored at once).
_NOISE_BLOCK = 64


@torch.no_grad()
def elbo(model, data, *, batch_size: int = 1000, seed: int = 0, per_example: bool = False,
         bernoulli_on_grey: bool = False) -> dict:
    """Single-sample held-out ELBO, with its two terms.

    One ``z`` per example, drawn from a generator seeded by ``seed`` and the batch index,
    so the estimate is reproducible. The model is put in eval mode and restored.

    Args:
        model: a :class:`vaelab.VAE` or :class:`vaelab.SentenceVAE`.
        data: held-out examples (images, or :class:`vaelab.data.Sentences`).
        batch_size: examples per forward pass (memory only; the result does not depend on it
            beyond the noise draw).
        seed: noise seed.
        per_example: also return each example's terms, for paired comparisons
            (:func:`vaelab.compare`).
        bernoulli_on_grey: ``True`` scores a Bernoulli model on grey levels without the
            warning that its ELBO is then no log-likelihood (chapter 3's naive BCE). Held-out
            images binarised as :func:`vaelab.fit` does come from :func:`vaelab.prepare_heldout`.

    Returns:
        ``{"elbo", "recon", "kl"}`` as floats: ``elbo = -(recon + kl)``, where ``recon`` is
        ``-E log p(x|z)`` and ``kl`` is ``KL(q(z|x) || p(z))``, each averaged over ``data``
        (nats per example: per image, or per sentence). For sentences also ``"perplexity"``,
        the bound :func:`perplexity` gives from ``-elbo``. With ``per_example=True`` also
        ``"per_example"``: ``{"elbo", "recon", "kl"}``, each a ``(N,)`` float64 CPU tensor
        in the order of ``data`` (nats per image, or per sentence), whose mean is the float
        of the same name.
    """
    per_example = check_flag("per_example", per_example)
    tensors = checked_inputs(model, data)
    if not is_text(model) and validation_enabled():  # fit scores its test data unchecked: it warned once
        warn_if_bernoulli_on_grey(model, {"data": tensors[0]}, allowed=bernoulli_on_grey, function="elbo")
    device = model_device(model)
    n = tensors[0].shape[0]
    recon_total = torch.zeros((), dtype=torch.float64, device=device)
    kl_total = torch.zeros((), dtype=torch.float64, device=device)
    if per_example:
        recon_each = torch.empty(n, dtype=torch.float64)
        kl_each = torch.empty(n, dtype=torch.float64)
    with evaluating(model):
        for index, _, out in _single_samples(model, tensors, batch_size=batch_size, seed=seed):
            recon_total += -out.log_px.double().sum()
            kl_total += out.kl_per_dim.double().sum()
            if per_example:
                recon_each[index] = -out.log_px.double().cpu()
                kl_each[index] = out.kl_per_dim.double().sum(1).cpu()
    recon, kl = float(recon_total) / n, float(kl_total) / n
    result = {"elbo": -(recon + kl), "recon": recon, "kl": kl}
    if is_text(model):
        result["perplexity"] = perplexity(-result["elbo"], tensors)
    if per_example:
        result["per_example"] = {"elbo": -(recon_each + kl_each), "recon": recon_each, "kl": kl_each}
    return result


def perplexity(nll: float, data) -> float:
    """Per-word perplexity of sentences from a negative log-likelihood per sentence.

    ``exp(N * nll / T)`` for ``N`` sentences holding ``T`` tokens in all, where the tokens
    of a sentence are its words and its ``<eos>`` (``lengths - 1``: not ``<sos>``, which is
    given, and not padding), the convention of Bowman et al. (2016) and Fu et al. (2019).
    From ``-elbo`` it is an upper bound on the model's perplexity, from the importance-
    weighted NLL (:func:`iw_log_likelihood`) a tighter one. The ELBO bound alone misleads:
    it charges a model the KL of the code it uses, so a model that ignores its latent
    scores better on it than on the tighter bound.

    Args:
        nll: mean ``-log p(sentence)`` over ``data``, nats per sentence.
        data: the sentences it was measured on (:class:`vaelab.data.Sentences` or ``(tokens, lengths)``).
    """
    tensors = as_tensors(data, "data")
    if len(tensors) != 2:
        raise ValueError("data must be sentences (vaelab.data.Sentences, or (tokens, lengths)), the ones nll was measured on")
    lengths = tensors[1]
    tokens = float((lengths.double() - 1).sum())
    if tokens <= 0:
        raise ValueError("data must hold at least one word or <eos> (lengths >= 2)")
    return math.exp(float(nll) * lengths.shape[0] / tokens)


def _single_samples(model, tensors: tuple, *, batch_size: int, seed: int):
    """Yield ``(index, batch, out)``: one forward pass per batch (``index`` selects its examples,
    as in :func:`vaelab.metrics.posterior.example_batches`), with one ``z`` per example drawn from
    a generator seeded by ``(seed, batch index)``, the noise :func:`elbo` and
    :func:`rate_distortion` share (sentences come in batches of similar length, see
    :func:`vaelab.metrics.posterior.example_batches`)."""
    device = model_device(model)
    for i, (index, batch) in enumerate(example_batches(model, tensors, batch_size)):
        gen = generator(seed, "elbo", i, device=device)
        eps = torch.randn(batch[0].shape[0], model.latent_dim, generator=gen, device=device)
        yield index, batch, model(*batch, eps)


class _ImportanceNoise:
    """Standard-normal noise for the importance samples of one batch of examples.

    Sample ``s`` comes from block ``s // _NOISE_BLOCK``, whose generator is seeded by
    ``(seed, batch, block)``: the samples do not depend on how many are scored at once.
    The last block is kept, so consecutive chunks smaller than a block draw it once.
    """

    def __init__(self, seed: int, batch: int, shape: tuple, device):
        self.seed, self.batch, self.shape, self.device = seed, batch, shape, device
        self.index, self.block = None, None

    def _block(self, index: int) -> torch.Tensor:
        if index != self.index:
            gen = generator(self.seed, "importance", self.batch, index, device=self.device)
            self.block = torch.randn(_NOISE_BLOCK, *self.shape, generator=gen, device=self.device)
            self.index = index
        return self.block

    def take(self, start: int, stop: int) -> torch.Tensor:
        """Samples ``start .. stop - 1``: ``(stop - start, *shape)``."""
        parts = []
        while start < stop:
            index, offset = divmod(start, _NOISE_BLOCK)
            end = min(stop - index * _NOISE_BLOCK, _NOISE_BLOCK)
            parts.append(self._block(index)[offset:end])
            start = index * _NOISE_BLOCK + end
        return parts[0] if len(parts) == 1 else torch.cat(parts)


def default_k_chunk(device: torch.device, *, text: bool = False, batch_size: int = 100) -> int:
    """How many importance samples :func:`iw_log_likelihood` scores at once when not told:
    25 on a CPU, where chunks that fit the cache run fastest, 500 on an accelerator; for
    sentences at most ``1000 // batch_size`` (about 1,000 sentences per chunk)."""
    k_chunk = 25 if device.type == "cpu" else 500
    return max(1, min(k_chunk, 1000 // batch_size)) if text else k_chunk


@torch.no_grad()
def iw_log_likelihood(
    model, data, *, k: int = 5000, batch_size: int = 100, k_chunk: int | None = None, seed: int = 0,
    levels: int | None = None, per_example: bool = False, bernoulli_on_grey: bool = False,
) -> dict:
    """Importance-weighted estimate of ``log p(x)`` (Burda, Grosse & Salakhutdinov 2016, Eq. 8).

    ``log p(x) ~ log (1/k) sum_i w_i`` with ``w_i = p(x | z_i) p(z_i) / q(z_i | x)`` and
    ``z_i ~ q(z | x)``. For ``k = 1`` its expectation is the ELBO; it increases with ``k``
    and tends to ``log p(x)`` as ``k -> infinity``. ``log p(x | z)`` is the model's own
    decoder head, ``p(z) = N(0, I)`` and ``q(z | x)`` the encoder's diagonal Gaussian.

    The ``k`` samples are scored ``k_chunk`` at a time and combined with a running
    log-sum-exp in float64, so memory is about ``batch_size * k_chunk * D`` floats (D data
    dimensions) for any ``k``. The samples depend on ``seed``, ``batch_size`` and the example's
    position, not on ``k_chunk``. The default ``k_chunk`` is 25 on a CPU, where chunks that
    stay in cache are twice as fast as large ones (2-core CPU, 784-200-200-50 decoder), and
    500 on an accelerator, where large chunks fill the device.

    **Units and dequantisation.** ``nll`` is in nats per example. It is a log *probability*
    only for binary data under a Bernoulli decoder (e.g. dynamically or statically
    binarised MNIST, the setting of Burda et al.); then ``bits_per_dim`` is
    ``nll / (D ln 2)``, bits per binary pixel. For data in [0, 1] under a Gaussian,
    continuous-Bernoulli or Beta decoder it is a log *density*: it depends on the pixel
    scale and can be negative, and a learned per-pixel sigma can drive it to -infinity on
    a constant pixel. The honest comparison scores *dequantised* 8-bit images
    (:func:`vaelab.data.dequantize`, ``y = (k + u) / 256``) and passes ``levels=256``:
    ``bits_per_dim`` is then ``nll / (D ln 2) + log2(256)``, bits per pixel of the
    discrete 8-bit image, an upper bound on its codelength by the dequantisation argument
    (Theis, van den Oord & Bethge 2016; a model uniform on [0, 1] scores exactly 8). Such
    figures compare across likelihoods and with discrete models. (A Bernoulli decoder on
    grey levels is not normalised at all.)

    **What is refused or warned about.** ``levels`` with data that sit exactly on the grid
    ``k / (levels - 1)`` (not dequantised: the offset would be added to a density at grid
    points) is an error, as is ``levels`` with a Bernoulli or discretised-logistic decoder
    (discrete already). A density decoder (Gaussian, Beta, continuous Bernoulli) without
    ``levels`` warns when its bits/dim come out negative or its data are 8-bit grey levels;
    a Bernoulli decoder on grey levels warns unless ``bernoulli_on_grey=True``.
    :func:`vaelab.prepare_heldout` prepares held-out images as :func:`vaelab.fit` does.

    **Sentences.** For a :class:`vaelab.SentenceVAE` and :class:`vaelab.data.Sentences`,
    ``nll`` is nats per sentence, and the result adds ``"perplexity"`` (:func:`perplexity`);
    ``bits_per_dim`` is then bits per token (words and ``<eos>``). Each importance sample
    is a decoder pass over the sentence, so ``k`` of a few hundred is the practical range
    on a CPU.

    **Per example.** With ``per_example=True`` the result adds ``"per_example"``, each
    example's share of the figures in the order of ``data``, for paired comparisons of two
    models on the same examples (:func:`vaelab.compare`): ``{"nll", "bits_per_dim"}`` for
    images, each a ``(N,)`` float64 CPU tensor whose mean is the float of the same name
    (``bits_per_dim`` of one example is its ``nll`` converted as above). For sentences only
    ``{"nll"}``, nats per sentence: the corpus's bits per token is total nats over total
    tokens, a ratio of sums, which the mean of per-sentence ratios is not (short sentences
    would weigh as much as long ones); compare ``nll`` per sentence instead, or weigh by
    length yourself.

    Args:
        model: an image :class:`vaelab.VAE` or a :class:`vaelab.SentenceVAE`.
        data: ``(N, *data_shape)`` images, or sentences, on any device.
        k: importance samples per example, >= 1.
        batch_size: examples per pass.
        k_chunk: samples scored at once (memory and speed only); ``None`` picks by device
            (and for sentences keeps ``k_chunk * batch_size`` to about 1,000 sentences).
        seed: noise seed.
        levels: the number of grey levels the dequantised ``data`` came from (256 for
            8-bit images), or ``None`` for binary data (or a density on its own scale).
        per_example: also return each example's ``nll`` (and, for images, ``bits_per_dim``).
        bernoulli_on_grey: ``True`` scores a Bernoulli model on grey levels without the
            warning (chapter 3's naive BCE, reported as no likelihood).

    Returns:
        ``{"nll": float, "bits_per_dim": float, "log_likelihood": (N,) float64 CPU tensor, "k": int}``:
        ``nll`` is the mean ``-log p(x)`` in nats per example; ``bits_per_dim`` as above;
        ``log_likelihood`` each example's estimate of ``log p(x)``, in the order of ``data``.
        With ``per_example=True`` also ``"per_example"``, as above.
    """
    per_example = check_flag("per_example", per_example)
    k = check_positive_int("k", k)
    batch_size = check_positive_int("batch_size", batch_size)
    if levels is not None:
        check_positive_int("levels", levels, minimum=2)
    tensors = checked_inputs(model, data)
    text = is_text(model)
    if text and levels is not None:
        raise ValueError("levels applies to dequantised images; sentences take none (leave levels=None)")
    if not text:
        _check_levels(model, tensors[0], levels)
        warn_if_bernoulli_on_grey(model, {"data": tensors[0]}, allowed=bernoulli_on_grey,
                                  function="iw_log_likelihood")
    device = model_device(model)
    if k_chunk is None:
        k_chunk = default_k_chunk(device, text=text, batch_size=batch_size)
    k_chunk = check_positive_int("k_chunk", k_chunk)
    n, latent = tensors[0].shape[0], model.latent_dim
    result = torch.empty(n, dtype=torch.float64)
    with evaluating(model), no_validation():
        for b, (index, batch) in enumerate(example_batches(model, tensors, batch_size)):
            mu, logvar = model.encode(*batch)
            rows = mu.shape[0]
            std = torch.exp(0.5 * logvar)
            # log q(z|x) = -(1/2) sum_j (eps_j^2 + logvar_j + log 2 pi), with z = mu + std * eps
            log_q_offset = -0.5 * (logvar.double().sum(1) + latent * _LOG_2PI)
            total = torch.full((rows,), -math.inf, dtype=torch.float64, device=device)
            noise = _ImportanceNoise(seed, b, tuple(mu.shape), device)
            for start in range(0, k, k_chunk):
                stop = min(start + k_chunk, k)
                eps = noise.take(start, stop)  # (s, batch, latent)
                z = mu + std * eps
                s = stop - start
                repeated = tuple(t.expand(s, *t.shape).reshape(s * rows, *t.shape[1:]) for t in batch)
                log_px = model.decoder_log_prob(z.reshape(s * rows, latent), *repeated).double().reshape(s, rows)
                log_pz = -0.5 * (z.double().square().sum(2) + latent * _LOG_2PI)
                log_qz = log_q_offset - 0.5 * eps.double().square().sum(2)
                total = torch.logaddexp(total, torch.logsumexp(log_px + log_pz - log_qz, dim=0))
            result[index] = (total - math.log(k)).cpu()
    nll = -float(result.mean())
    if text:
        per_word = perplexity(nll, tensors)  # exp(nats per token): bits per token is its log2
        estimate = {"nll": nll, "bits_per_dim": math.log2(per_word), "perplexity": per_word,
                    "log_likelihood": result, "k": k}
        if per_example:
            estimate["per_example"] = {"nll": -result}
        return estimate
    estimate = {"nll": nll, "bits_per_dim": bits_per_dim(nll, model.data_dim, levels=levels), "log_likelihood": result,
                "k": k}
    if levels is None and model.likelihood in DENSITIES:
        _warn_if_density_without_levels(model, tensors[0], estimate["bits_per_dim"])
    if per_example:
        estimate["per_example"] = {"nll": -result, "bits_per_dim": bits_per_dim(-result, model.data_dim, levels=levels)}
    return estimate


def _check_levels(model, images: torch.Tensor, levels: int | None) -> None:
    """``levels`` is for a density on dequantised images: refuse it on a discrete decoder or on grid data."""
    if levels is None:
        return
    if model.likelihood not in DENSITIES:
        raise ValueError(
            f"levels={levels} adds log2(levels) bits for dequantised data under a density decoder ({', '.join(DENSITIES)}); "
            f"this model's decoder, {model.likelihood!r}, gives probabilities of discrete pixels already: leave levels=None"
        )
    if on_level_grid(images, levels=levels):
        raise ValueError(
            f"data sit exactly on the {levels}-level grid k / {levels - 1}, so they were not dequantised, and "
            f"levels={levels} would add log2({levels}) bits to a density read at grid points (a meaningless "
            "number). Dequantise them first: vaelab.prepare_heldout(test_images, dequantize=True, seed=...) does it "
            "as fit does, or vaelab.dequantize(test_images, generator=...)"
        )


def _warn_if_density_without_levels(model, images: torch.Tensor, bits: float) -> None:
    """A density's nats are not a code length of 8-bit images: say so where the result shows it."""
    on_grid = on_level_grid(images, levels=256)
    if bits >= 0 and not on_grid:
        return
    what = (f"bits_per_dim = {bits:.4g} is negative, so it is no code length" if bits < 0 else
            "the data sit on the 256-level grid k / 255, where a density is no probability")
    warnings.warn(
        f"{what}: a {model.likelihood!r} decoder is a density, and without levels its nll is a log density on the "
        "pixels' own scale. For 8-bit images, dequantise them (vaelab.prepare_heldout(test_images, dequantize=True, "
        "seed=...)) and pass levels=256: bits_per_dim is then bits per pixel of the 8-bit image (8 = uniform)",
        UserWarning, stacklevel=3,
    )


def bits_per_dim(nll, data_dim: int, *, levels: int | None = None):
    """Bits per dimension of ``nll`` nats per example over ``data_dim`` dimensions.

    With ``levels`` (dequantised data of that many grey levels, in [0, 1]):
    ``nll / (D ln 2) + log2(levels)``, the bits per pixel of the discrete image; without:
    ``nll / (D ln 2)``.

    Args:
        nll: a float (nats per example), or a tensor of them, e.g. ``(N,)`` per example.
        data_dim: ``D``, the dimensions of one example (784 for MNIST).
        levels: as in :func:`iw_log_likelihood`.

    Returns:
        a float for a float; for a tensor, a tensor of its shape, element by element (the
        map is affine, so the mean of per-example bits per dimension is the bits per
        dimension of the mean ``nll``).
    """
    offset = 0.0 if levels is None else math.log2(check_positive_int("levels", levels, minimum=2))
    return nll / (check_positive_int("data_dim", data_dim) * math.log(2)) + offset


@torch.no_grad()
def rate_distortion(model, data, *, batch_size: int = 1000, seed: int = 0) -> dict:
    """The rate and the distortion of a model on held-out ``data``, one posterior sample each.

    Rate is ``KL(q(z|x) || p(z))`` in nats per example. Distortion is measured in two units:
    ``"sse"``, the squared error between ``x`` and the decoder's mean at ``z ~ q(z|x)``,
    summed over pixels (squared data units per example), which compares decoders of any
    likelihood; and ``"recon"``, ``-log p(x | z)`` in nats, the model's own term. The
    noise is that of :func:`elbo` with the same seed.

    Returns:
        ``{"rate": float, "sse": float, "recon": float}``, averages over ``data``.
    """
    tensors = (checked_images(model, data, function="rate_distortion"),)
    n = tensors[0].shape[0]
    totals = torch.zeros(3, dtype=torch.float64, device=model_device(model))
    with evaluating(model):
        for _, (x,), out in _single_samples(model, tensors, batch_size=batch_size, seed=seed):
            sse = (x - model.head.mean(out.params)).double().square().flatten(1).sum(1)
            totals += torch.stack([out.kl_per_dim.double().sum(), sse.sum(), -out.log_px.double().sum()])
    rate, sse, recon = (totals / n).tolist()
    return {"rate": rate, "sse": sse, "recon": recon}
