"""Reproduction of the VAE of Burda, Grosse & Salakhutdinov (2016) on MNIST.

Run from the repository root (VAELAB_SCALE picks the scale, default ``book``):

    VAELAB_DATA=../shared/data VAELAB_SCALE=smoke .venv/bin/python bench/burda.py   # seconds: does it run
    VAELAB_DATA=../shared/data .venv/bin/python bench/burda.py                      # book: about 30 min, 2-core CPU
    VAELAB_DATA=../shared/data VAELAB_SCALE=paper .venv/bin/python bench/burda.py --device cuda

Settings of the paper (Sec. 5, "VAE, 1 stochastic layer, k = 1"; published test NLL 86.76):

* model: Bernoulli decoder, 784-200-200-50 MLP encoder and mirrored decoder, tanh;
* data: the 60,000 MNIST training images, dynamically binarised (each pixel re-sampled
  from Bernoulli(grey level) every pass);
* training: Adam with beta1 = 0.9, beta2 = 0.999, batch 20, in stages i = 0 .. 7 of 3^i
  passes at learning rate 1e-3 * 10^(-i/7): 3280 passes in all;
* evaluation: importance-weighted log-likelihood with k = 5000 on the 10,000 test images.

What this script does at each scale (epochs from ``vaelab.by_scale``):

* ``paper``: all of the above (batch 20, 3280 passes, 8 stages). Meant for a GPU.
* ``book``: the first 200 passes of the same schedule (stages 0-4, 1 + 3 + 9 + 27 + 81
  passes, then 79 of the 243 passes of stage 5 at 1e-3 * 10^(-5/7)), batch 100, then the
  full k = 5000 evaluation. Sized from timings on an idle 2-core CPU: 4.8 s per pass,
  3.6 s per 100 test images at k = 5000, so about 16 + 6 = 22 minutes.
* ``smoke``: 1 pass over 2,000 images and k = 100 on 200 test images, to check it runs.

Conventions and deviations (all recorded in the JSON result):

* The test images are binarised **once**, by sampling each pixel from Bernoulli(grey
  level) with a fixed generator (seed 0); every model is scored on that same binary set.
  (Burda et al.'s code re-samples the test binarisation at each evaluation.)
* Each stage is one ``vaelab.fit`` call, so Adam's moments restart at every stage, and
  Adam's epsilon is PyTorch's 1e-8 (``fit`` does not expose it; the paper uses 1e-4).
  The released code of the paper also differs from its text: beta1 = 0.99, second
  moments initialised to 1, learning rates rounded to 1e-4 * round(10^(1 - i/7), 1), and
  400 training images held out for validation.
* As in the released code, the decoder's output bias starts at the logit of the mean
  training image.

The result is printed as one summary line and written atomically to
``bench/results/burda_<scale>.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vaelab  # noqa: E402
from vaelab.batching import derive_seed, generator  # noqa: E402
from vaelab.data import binarize, mnist  # noqa: E402

PUBLISHED = {
    "burda2016_vae_k1_784-200-200-50": 86.76,
    "pythae_vae_1layer_iw200 (Rezende & Mohamed reproduction)": 89.78,
}


def stages(total_epochs: int) -> list[tuple[int, float]]:
    """``(passes, lr)`` per stage: 3^i passes at 1e-3 * 10^(-i/7), cut off after ``total_epochs`` passes."""
    plan, done, i = [], 0, 0
    while done < total_epochs:
        passes = min(3**i, total_epochs - done)
        plan.append((passes, 1e-3 * 10 ** (-i / 7)))
        done += passes
        i += 1
    return plan


def write_json_atomically(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description="Burda et al. (2016) VAE on MNIST: train, then test IW-NLL.")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: vaelab.pick_device())")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/burda_<scale>.json)")
    args = parser.parse_args()

    scale = vaelab.get_scale()
    epochs = vaelab.by_scale(smoke=1, book=200, paper=3280)
    batch_size = vaelab.by_scale(smoke=100, book=100, paper=20)
    n_train = vaelab.by_scale(smoke=2000, book=60000, paper=60000)
    k = vaelab.by_scale(smoke=100, book=5000, paper=5000)
    n_test = vaelab.by_scale(smoke=200, book=10000, paper=10000)
    device = vaelab.pick_device(args.device)
    out = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / f"burda_{scale}.json"

    train_x, _ = mnist("train", device=device)
    test_x, _ = mnist("test", device=device)
    train_x = train_x[:n_train]
    test_binary = binarize(test_x[:n_test], method="sample", generator=generator(0, "burda-test-binarisation", device=device))

    model = vaelab.mlp_vae(hidden=(200, 200), latent_dim=50, activation="tanh", likelihood="bernoulli", seed=args.seed)
    with torch.no_grad():
        mean = train_x.mean(0).flatten().clamp(1e-3, 1 - 1e-3)
        model.decoder[0][-1].bias.copy_(torch.log(mean) - torch.log1p(-mean))

    print(f"burda 784-200-200-50 ({scale}): {epochs} passes over {n_train} images, batch {batch_size}, "
          f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    start = time.perf_counter()
    plan, stage_records = stages(epochs), []
    for i, (passes, lr) in enumerate(plan):
        history = vaelab.fit(
            model, train_x, epochs=passes, batch_size=batch_size, lr=lr, binarize="dynamic",
            seed=derive_seed(args.seed, "burda-stage", i), device=device, progress=scale != "smoke",
        )
        last = history["elbo"][-min(len(history), 100):].mean()
        stage_records.append({"stage": i, "passes": passes, "lr": lr, "train_elbo_last_steps": float(last)})
        print(f"  stage {i}: {passes} passes at lr {lr:.2e}, train ELBO (last steps) {last:.2f}, "
              f"{(time.perf_counter() - start) / 60:.1f} min", flush=True)
    train_minutes = (time.perf_counter() - start) / 60

    heldout = vaelab.elbo(model, test_binary, seed=0)
    iw = vaelab.iw_log_likelihood(model, test_binary, k=k, seed=0)
    units = vaelab.active_units(model, test_binary)
    minutes = (time.perf_counter() - start) / 60
    record = {
        "scale": scale,
        "model": "Bernoulli MLP VAE 784-200-200-50, tanh",
        "epochs": epochs,
        "stages": stage_records,
        "batch_size": batch_size,
        "train_images": n_train,
        "train_binarisation": "dynamic (Bernoulli sample of each pixel, every pass)",
        "optimizer": "torch.optim.Adam (vaelab.fit), betas (0.9, 0.999), eps 1e-8, state reset at each stage",
        "test_images": n_test,
        "test_binarisation": "one Bernoulli sample of each grey level, generator seed 0 (fixed)",
        "k": k,
        "test_iw_nll": iw["nll"],
        "test_bits_per_dim": iw["bits_per_dim"],
        "test_elbo": heldout["elbo"],
        "test_recon": heldout["recon"],
        "test_kl": heldout["kl"],
        "active_units": units["count"],
        "train_minutes": train_minutes,
        "eval_minutes": minutes - train_minutes,
        "minutes": minutes,
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "seed": args.seed,
        "published_nll": PUBLISHED,
    }
    write_json_atomically(out, record)
    print(f"  test ELBO {heldout['elbo']:.2f} nats, {units['count']} active units, evaluation "
          f"{minutes - train_minutes:.1f} min; result written to {out}")
    print(f"burda 784-200-200-50 ({scale}): test IW-NLL k={k} = {iw['nll']:.2f} nats "
          f"({epochs} epochs, {minutes:.1f} min)")


if __name__ == "__main__":
    main()
