"""Engine benchmark: MNIST, Bernoulli MLP VAE 784-400-20, batch 128.

Run from the repository root (not part of the test suite):

    VAELAB_DATA=../shared/data .venv/bin/python bench/run.py
    VAELAB_DATA=../shared/data .venv/bin/python bench/run.py --device cuda --configs 8,32 --conv-configs 5,8,32

Five measurements, each taken in this one process:

1. ``vaelab.fit`` with its defaults (History, progress bar, NaN checks) against a minimal
   hand-written PyTorch loop of the same model, alternating hand, fit, hand, fit, ...;
   ratio = median hand time / median fit time (1 means no overhead). Both use the same
   optimizer (Adam, fused kernel as fit uses it), so the ratio measures the loop.
2. ``vaelab.sweep`` of 8 beta values against 8 sequential ``fit`` calls, same steps each,
   alternating; ratio = median sequential time / median sweep time.
3. Wall time of ``vaelab.iw_log_likelihood`` with k = 1000 on 1000 test images, for the
   model trained in part 1.
4. Text: the PTB sentence VAE of chapter 4 (256/256, latent 32, batch 32), trained by
   ``vaelab.fit`` on length-bucketed, trimmed batches, against a hand-written loop over
   batches padded to the corpus's longest sentence that scores every position with
   ``cross_entropy(ignore_index=pad)`` (the usual way, and vaelab's before buckets);
   alternating; ratio of real tokens (words and ``<eos>``) per second. Printed before the
   last three lines as ``text tokens/s, bucketed vs padded: <ratio>``.
5. Conv: the conv VAE of chapter 5, 5 configurations as sequential ``fit`` calls, as one
   ``vaelab.sweep`` with its defaults and as the vectorised ensemble forced; then its limit:
   the model's convolutions alone, timed at its own shapes, one after another and as
   grouped convolutions. Printed before the last three lines as
   ``conv sweep speedup, 5 configs: <ratio>`` (sequential / the default sweep).

The output ends with exactly three lines::

    fit/hand throughput ratio: <x.xx>
    sweep speedup, 8 configs: <x.xx>
    iw-nll k=1000, 1000 images: <seconds> s
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vaelab  # noqa: E402
from vaelab.data import Sentences, mnist, ptb  # noqa: E402
from vaelab.metrics.estimates import default_k_chunk  # noqa: E402

BATCH_SIZE, LR = 128, 1e-3


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_model(device):
    return vaelab.mlp_vae(hidden=(400,), latent_dim=20, likelihood="bernoulli", seed=0).to(device)


def hand_loop(model, x: torch.Tensor, *, steps: int, seed: int = 0) -> None:
    """What one would write by hand: shuffle, BCE-with-logits summed over pixels plus the KL, Adam."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=x.device.type in ("cpu", "cuda"))
    gen = torch.Generator(device=x.device).manual_seed(seed)
    n, step = x.shape[0], 0
    model.train()
    while step < steps:
        permutation = torch.randperm(n, device=x.device, generator=gen)
        for start in range(0, n, BATCH_SIZE):
            if step == steps:
                break
            batch = x[permutation[start : start + BATCH_SIZE]]
            mu, logvar = model.encoder(batch).chunk(2, dim=1)
            z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, device=x.device, generator=gen)
            logits = model.decoder(z)
            recon = F.binary_cross_entropy_with_logits(logits, batch, reduction="sum") / batch.shape[0]
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / batch.shape[0]
            optimizer.zero_grad(set_to_none=True)
            (recon + kl).backward()
            optimizer.step()
            step += 1


def timed(function, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def operator_calls(run, device) -> int:
    """How many operators ``run()`` dispatches: on CUDA its kernel launches, elsewhere its
    top-level ATen calls (an ``aten::`` event whose parent is not one), from the profiler."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profile:
        run()
        synchronize(device)
    events = profile.events()
    if device.type == "cuda":
        return sum(e.device_type == torch.autograd.DeviceType.CUDA for e in events)
    return sum(e.name.startswith("aten::") and not (e.cpu_parent and e.cpu_parent.name.startswith("aten::"))
               for e in events)


def ops_per_step(train, device, *, short: int = 20, long: int = 70) -> float:
    """Operators per training step of ``train(model, steps)``: the difference between a long
    and a short run, per extra step, so that set-up (data checks, the optimiser) cancels."""
    counts = [operator_calls(lambda: train(make_model(device), steps), device) for steps in (short, long)]
    return (counts[1] - counts[0]) / (long - short)


def padded_text_loop(model, data: Sentences, *, steps: int, seed: int = 0) -> None:
    """Random batches at the corpus's full width, every position scored (padding ignored by the loss)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        index = torch.randint(0, len(data), (32,), generator=gen).to(data.tokens.device)
        tokens, lengths = data.tokens[index], data.lengths[index]
        mu, logvar = model.encode(tokens, lengths)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=gen).to(mu.device)
        logits = model.decode_logits(z, tokens[:, :-1])
        recon = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                                ignore_index=model.pad_id, reduction="sum") / tokens.shape[0]
        loss = recon + vaelab.gaussian_kl(mu, logvar).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()


def text_throughput(device, *, steps: int, repeats: int) -> float:
    """Real tokens per second of fit's bucketed batches over the padded hand loop's (median of alternating runs)."""
    corpus = ptb(device=device)
    data = corpus.train
    build = lambda: vaelab.SentenceVAE(len(corpus.vocab), embed_dim=256, hidden_dim=256, latent_dim=32,  # noqa: E731
                                       seed=0).to(device)
    mean_tokens = float((data.lengths - 1).double().mean())  # per sentence, either way (random or bucketed)
    padded_loop = lambda: padded_text_loop(build(), data, steps=steps)  # noqa: E731
    bucketed = lambda: vaelab.fit(build(), data, max_steps=steps, batch_size=32, clip_grad_norm=5.0,  # noqa: E731
                                  progress=False, device=device)
    padded_loop(), bucketed()  # warm-up
    padded_times, bucketed_times = [], []
    for _ in range(repeats):
        padded_times.append(timed(padded_loop, device))
        bucketed_times.append(timed(bucketed, device))
    padded, bucket = statistics.median(padded_times), statistics.median(bucketed_times)
    tokens = steps * 32 * mean_tokens
    print(f"PTB sentence VAE, {steps} steps of 32 sentences: padded to width {data.tokens.shape[1]} "
          f"{padded:.2f} s ({tokens / padded:.0f} tokens/s), bucketed {bucket:.2f} s ({tokens / bucket:.0f} tokens/s)",
          flush=True)
    return padded / bucket


#: (in, out) of the four dense layers of the 784-400-20 MLP VAE: encoder 784-400-(2 x 20), decoder 20-400-784.
MLP_LAYERS = ((784, 400), (400, 40), (20, 400), (400, 784))


def step_flops(batch: int, count: int = 1) -> float:
    """Floating-point operations of the matrix products of one training step of ``count`` MLP VAEs.

    Forward ``2 B in out`` per layer; backward the same for each weight gradient, and again for
    each input gradient except the first layer's (the data need none).
    """
    forward = sum(2 * batch * i * o for i, o in MLP_LAYERS)
    return count * (2 * forward + sum(2 * batch * i * o for i, o in MLP_LAYERS[1:]))


def iw_flops(images: int, k: int) -> float:
    """Products of the IW estimate: the encoder once per image, the decoder once per sample."""
    (e1, e2), (d1, d2) = MLP_LAYERS[:2], MLP_LAYERS[2:]
    return images * 2 * (e1[0] * e1[1] + e2[0] * e2[1]) + images * k * 2 * (d1[0] * d1[1] + d2[0] * d2[1])


def best_seconds(step, device, *, repeats: int, blocks: int, warmup: int = 5) -> float:
    """Seconds per call of ``step``: the best of ``blocks`` timed blocks of ``repeats`` calls,
    after ``warmup`` calls. The best, because a limit is what the machine can do, and a block
    that another process interrupted says nothing about that."""
    for _ in range(warmup):
        step()
    return min(timed(lambda: [step() for _ in range(repeats)], device) for _ in range(blocks)) / repeats


def limit_gflops(device, *, batch: int, count: int, repeats: int = 20, blocks: int = 5) -> float:
    """What this machine does at the shapes of one training step of ``count`` stacked MLP VAEs.

    Times only the step's matrix products (each layer's forward product and its two backward
    products, stacked over configurations as batched products when ``count > 1``) and the fused
    Adam pass over parameters of the same sizes, back to back with nothing else in between,
    and returns :func:`step_flops` over the best time of ``blocks`` blocks of ``repeats`` steps:
    the speed a step could reach if it did nothing but its arithmetic.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (count,) if count > 1 else ()
    layers = [(torch.randn(*shape, batch, i, device=device, generator=gen),
               torch.randn(*shape, i, o, device=device, generator=gen, requires_grad=True),
               torch.randn(*shape, batch, o, device=device, generator=gen)) for i, o in MLP_LAYERS]
    weights = [w for _, w, _ in layers]
    for w in weights:
        w.grad = torch.randn_like(w)
    optimizer = torch.optim.Adam(weights, lr=LR, fused=device.type in ("cpu", "cuda"))
    mm = torch.bmm if count > 1 else torch.mm

    def one_step():
        with torch.no_grad():
            for index, (x, w, g) in enumerate(layers):
                mm(x, w)  # forward
                mm(x.transpose(-1, -2), g)  # weight gradient
                if index:
                    mm(g, w.transpose(-1, -2))  # input gradient
        optimizer.step()

    return step_flops(batch, count) / best_seconds(one_step, device, repeats=repeats, blocks=blocks) / 1e9


def measure_limits(limits: dict, device) -> None:
    """Measure the limit of each configuration count in ``limits`` once more; keep the best."""
    for count in limits:
        limits[count] = max(limits[count], limit_gflops(device, batch=BATCH_SIZE, count=count, blocks=1))


def iw_limit_gflops(device, *, rows: int, images: int = 100, repeats: int = 20, blocks: int = 5) -> float:
    """The same for the IW estimate's forward products: the decoder on ``rows`` samples at once."""
    gen = torch.Generator(device=device).manual_seed(0)
    (e1, e2), (d1, d2) = MLP_LAYERS[:2], MLP_LAYERS[2:]
    pairs = [(torch.randn(images, e1[0], device=device, generator=gen), torch.randn(*e1, device=device, generator=gen)),
             (torch.randn(images, e2[0], device=device, generator=gen), torch.randn(*e2, device=device, generator=gen)),
             (torch.randn(rows, d1[0], device=device, generator=gen), torch.randn(*d1, device=device, generator=gen)),
             (torch.randn(rows, d2[0], device=device, generator=gen), torch.randn(*d2, device=device, generator=gen))]
    flops = sum(2 * x.shape[0] * w.shape[0] * w.shape[1] for x, w in pairs)
    seconds = best_seconds(lambda: [torch.mm(x, w) for x, w in pairs], device, repeats=repeats, blocks=blocks)
    return flops / seconds / 1e9


def conv_kernels(model, x: torch.Tensor, *, count: int, device):
    """``model``'s convolutions alone, forward and backward as in a training step (weight
    gradients always, input gradients except for the first layer, which sees the data), at
    its own shapes, for ``count`` configurations: two functions that run them once, one
    after another and as ``groups=count`` convolutions over the stacked configurations
    (what vmap runs)."""
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    inputs = []
    hooks = [m.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach())) for m in convs]
    with torch.no_grad():
        model(x, torch.zeros(x.shape[0], model.latent_dim, device=device))
    for hook in hooks:
        hook.remove()

    def call(conv, weight, groups):
        function = F.conv2d if isinstance(conv, torch.nn.Conv2d) else F.conv_transpose2d
        return lambda inp: function(inp, weight, stride=conv.stride, padding=conv.padding, groups=groups)

    separate, grouped = [], []
    for i, (conv, inp) in enumerate(zip(convs, inputs)):
        needs = i > 0
        w = conv.weight.detach().clone().requires_grad_()
        separate.append((call(conv, w, 1), inp.clone().requires_grad_(needs)))
        wide = torch.cat([w.detach()] * count).requires_grad_()  # (count * out, in, k, k) or (count * in, out, k, k)
        stacked = torch.cat([inp] * count, dim=1).requires_grad_(needs)  # (batch, count * channels, H, W)
        grouped.append((call(conv, wide, count), stacked))
    separate = [(f, inp, torch.randn_like(f(inp))) for f, inp in separate]
    grouped = [(f, inp, torch.randn_like(f(inp))) for f, inp in grouped]

    def run(layers, times):
        for _ in range(times):
            for f, inp, g in layers:
                torch.autograd.backward(f(inp), g)
    return (lambda: run(separate, count)), (lambda: run(grouped, 1))


def conv_sweep_speedup(device, *, count: int, steps: int, repeats: int) -> float:
    """The conv VAE of chapter 5 (64 x 64 dSprites-like, Bernoulli, 10 latents, batch 64):
    ``count`` sequential fits against one ``vaelab.sweep`` with its defaults and against the
    vectorised ensemble forced (``vectorize=True``), in an order that turns each repeat
    (medians); and the bound on any sweep that runs the same convolution kernels, its
    kernels timed for 5 steps between the runs (the best of them)."""
    from vaelab.data import dsprites_like

    images, _ = dsprites_like(n=4096, seed=0, device=device)
    build = lambda: vaelab.conv_vae(data_shape=(1, 64, 64), channels=(32, 32, 64, 64), hidden=256,  # noqa: E731
                                    latent_dim=10, seed=0).to(device)
    betas = [2.0 ** i for i in range(count)]
    common = dict(max_steps=steps, batch_size=64, lr=5e-4, progress=False, device=device)
    x = images[:64].to(torch.get_default_dtype())
    separate, grouped = conv_kernels(build(), x, count=count, device=device)
    kernel_steps = 5
    runs = {
        "sequential": lambda: [vaelab.fit(m, images, objective=vaelab.Objective(beta=b), **common)
                               for m, b in zip([build() for _ in betas], betas)],
        "sweep": lambda: vaelab.sweep([build() for _ in betas], images, betas=betas, **common),
        "forced": lambda: vaelab.sweep([build() for _ in betas], images, betas=betas, vectorize=True, **common),
        "separate": lambda: [separate() for _ in range(kernel_steps)],
        "grouped": lambda: [grouped() for _ in range(kernel_steps)],
    }
    vaelab.fit(build(), images, **dict(common, max_steps=3))  # warm-up
    for vectorize in ("auto", True):
        vaelab.sweep([build() for _ in betas], images, betas=betas, vectorize=vectorize, **dict(common, max_steps=3))
    separate(), grouped()
    times = {name: [] for name in runs}
    order = list(runs)
    for repeat in range(repeats):
        for name in order[repeat % len(order):] + order[:repeat % len(order)]:
            times[name].append(timed(runs[name], device))
    seq, swept, vectorised = (statistics.median(times[name]) for name in ("sequential", "sweep", "forced"))
    one_by_one, as_groups = (min(times[name]) / kernel_steps for name in ("separate", "grouped"))  # s per step
    print(f"conv VAE 64x64 (dSprites-like, batch 64), {count} configs x {steps} steps: sequential fits {seq:.2f} s, "
          f"sweep {swept:.2f} s, vectorised ensemble forced {vectorised:.2f} s ({seq / vectorised:.2f}x)", flush=True)
    step = seq / (count * steps)
    print(f"conv limit: the convolutions alone take {one_by_one / count * 1e3:.1f} ms of a {step * 1e3:.1f} ms fit "
          f"step ({one_by_one / count / step:.0%}), so a sweep that runs the same convolution kernels gains at most "
          f"{step * count / one_by_one:.2f}x; as {count}-group convolutions (vmap's) they take "
          f"{as_groups / one_by_one:.2f}x as long as separately", flush=True)
    return seq / swept


def betas_for(count: int) -> list[float]:
    """``count`` KL weights spread log-uniformly over [0.1, 10]."""
    return [10 ** (-1 + 2 * i / max(count - 1, 1)) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: vaelab.pick_device())")
    parser.add_argument("--configs", default="8", help="comma-separated sweep sizes, e.g. 8,32 (8 is always measured)")
    parser.add_argument("--fit-steps", type=int, default=469, help="steps per timed fit / hand run (469 = one epoch)")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs of each of fit and hand")
    parser.add_argument("--sweep-steps", type=int, default=200, help="steps per configuration in the sweep comparison")
    parser.add_argument("--sweep-repeats", type=int, default=5, help="timed runs of each of sweep and sequential fits")
    parser.add_argument("--iw-k", type=int, default=1000)
    parser.add_argument("--iw-images", type=int, default=1000)
    parser.add_argument("--text-steps", type=int, default=40, help="steps per timed text run")
    parser.add_argument("--text-repeats", type=int, default=3)
    parser.add_argument("--conv-steps", type=int, default=30, help="steps per configuration in the conv sweep comparison")
    parser.add_argument("--conv-repeats", type=int, default=3)
    parser.add_argument("--conv-configs", default="5", help="comma-separated conv sweep sizes, e.g. 5,8,32 (5 always)")
    args = parser.parse_args()
    configs = sorted({8, *(int(c) for c in args.configs.split(","))})
    conv_configs = sorted({5, *(int(c) for c in args.conv_configs.split(","))})

    device = vaelab.pick_device(args.device)
    train_x, _ = mnist("train", device=device)
    test_x, _ = mnist("test", device=device)
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"MNIST train {tuple(train_x.shape)}, Bernoulli MLP VAE 784-400-20, batch {BATCH_SIZE}, Adam lr {LR}")

    # 1. fit against a hand-written loop ------------------------------------------------
    steps = args.fit_steps
    # Warm-up of both: the first steps of a process build kernels and the thread pool, and the
    # step time settles only after about 100 steps on this CPU.
    hand_loop(make_model(device), train_x, steps=100)
    vaelab.fit(make_model(device), train_x, max_steps=100, device=device)
    hand_times, fit_times = [], []
    # The limits are measured between the runs, and the best of them kept, so that a slow
    # spell of this shared machine cannot lower them.
    limits = {count: 0.0 for count in sorted({1, *configs})}
    for repeat in range(args.repeats):
        model = make_model(device)
        hand_times.append(timed(lambda: hand_loop(model, train_x, steps=steps), device))
        model = make_model(device)
        fit_times.append(timed(lambda: vaelab.fit(model, train_x, max_steps=steps, device=device), device))
        print(f"  run {repeat + 1}: hand {hand_times[-1]:.2f} s, fit {fit_times[-1]:.2f} s ({steps} steps each)", flush=True)
        measure_limits(limits, device)
    trained = model
    hand, fit = statistics.median(hand_times), statistics.median(fit_times)
    paired = statistics.median(f - h for h, f in zip(hand_times, fit_times)) / steps * 1e3
    print(f"fit minus hand, median of the paired runs: {paired:+.2f} ms/step ({paired / (hand / steps * 1e3):+.1%})")
    print(f"hand loop: {steps / hand:.1f} steps/s; fit: {steps / fit:.1f} steps/s; "
          f"fit epoch ({len(range(0, train_x.shape[0], BATCH_SIZE))} steps): {fit / steps * 469:.2f} s")

    # operator calls per step: on a GPU each is a kernel launch, the cost a small model pays
    fit_ops = ops_per_step(lambda m, n: vaelab.fit(m, train_x, max_steps=n, progress=False, device=device), device)
    hand_ops = ops_per_step(lambda m, n: hand_loop(m, train_x, steps=n), device)

    # 2. a sweep against sequential fits -------------------------------------------------
    speedups, swept = {}, {}
    sweep_steps = args.sweep_steps
    for count in configs:
        betas = betas_for(count)
        vaelab.sweep([make_model(device) for _ in betas], train_x, betas=betas, max_steps=5, progress=False, device=device)
        sweep_times, sequential_times = [], []
        for _ in range(args.sweep_repeats):
            measure_limits(limits, device)
            models = [make_model(device) for _ in betas]
            sequential_times.append(timed(lambda: [
                vaelab.fit(m, train_x, objective=vaelab.Objective(beta=b), max_steps=sweep_steps, progress=False, device=device)
                for m, b in zip(models, betas)
            ], device))
            models = [make_model(device) for _ in betas]
            sweep_times.append(timed(
                lambda: vaelab.sweep(models, train_x, betas=betas, max_steps=sweep_steps, progress=False, device=device),
                device,
            ))
        sweep, sequential = statistics.median(sweep_times), statistics.median(sequential_times)
        speedups[count] = sequential / sweep
        swept[count] = (sequential, sweep)
        print(f"{count} configs x {sweep_steps} steps: sequential fits {sequential:.2f} s, sweep {sweep:.2f} s "
              f"({count * sweep_steps / sweep:.0f} model-steps/s), speedup {speedups[count]:.2f}", flush=True)

    # the limits, measured between the runs of parts 1 and 2, and what the runs reached of them
    print("limit at the model's shapes (its step's matrix products and the fused Adam pass, nothing else; the best "
          "of the measurements between the runs): "
          + ", ".join(f"{count} config{'s' if count > 1 else ''} {gflops:.0f} GFLOP/s" for count, gflops in limits.items()))
    achieved = step_flops(BATCH_SIZE) * steps / fit / 1e9
    print(f"single model (fit): {achieved:.0f} GFLOP/s, {achieved / limits[1]:.0%} of its limit")
    for count, (sequential, sweep) in swept.items():
        achieved = step_flops(BATCH_SIZE, count) * sweep_steps / sweep / 1e9
        at_limit = step_flops(BATCH_SIZE, count) * sweep_steps / limits[count] / 1e9
        print(f"sweep, {count} configs: {achieved:.0f} GFLOP/s, {achieved / limits[count]:.0%} of its limit; a sweep "
              f"at its limit would take {at_limit:.2f} s, a speedup of at most {sequential / at_limit:.2f}", flush=True)

    # 3. importance-weighted NLL ---------------------------------------------------------
    images = test_x[: args.iw_images]
    vaelab.iw_log_likelihood(trained, images[:10], k=10)
    result = {}
    iw_time = timed(lambda: result.update(vaelab.iw_log_likelihood(trained, images, k=args.iw_k, seed=0)), device)
    print(f"iw-nll of the model of part 1 ({steps} steps, grey-level test images): {result['nll']:.2f} nats; "
          f"load average {os.getloadavg()[0]:.2f}")
    iw_limit = iw_limit_gflops(device, rows=100 * default_k_chunk(device))  # the estimate's chunk of 100 images
    achieved = iw_flops(images.shape[0], args.iw_k) / iw_time / 1e9
    print(f"iw-nll: {achieved:.0f} GFLOP/s, {achieved / iw_limit:.0%} of its limit ({iw_limit:.0f} GFLOP/s, "
          "its forward products at the estimate's chunk shapes)")

    # 4. text: bucketed against padded batches -------------------------------------------
    text_ratio = text_throughput(device, steps=args.text_steps, repeats=args.text_repeats)
    print(f"text tokens/s, bucketed vs padded: {text_ratio:.2f}")

    print(f"ops per step, fit vs hand: {fit_ops:.0f} / {hand_ops:.0f}"
          + (" (CUDA kernel launches)" if device.type == "cuda" else " (top-level ATen calls)"))

    # 5. the conv VAE of chapter 5: a sweep against sequential fits ------------------------
    conv_speedups = {count: conv_sweep_speedup(device, count=count, steps=args.conv_steps, repeats=args.conv_repeats)
                     for count in conv_configs}
    for count in conv_configs:
        print(f"conv sweep speedup, {count} configs: {conv_speedups[count]:.2f}")

    print(f"fit/hand throughput ratio: {hand / fit:.2f}")
    print(f"sweep speedup, 8 configs: {speedups[8]:.2f}")
    print(f"iw-nll k={args.iw_k}, {args.iw_images} images: {iw_time:.2f} s")


if __name__ == "__main__":
    main()
