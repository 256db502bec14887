"""The README's student quickstart runs as written, on a small stand-in for MNIST, without a warning."""
import re
import warnings
from pathlib import Path

import torch

import vaelab
from vaelab import data as vdata

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart_code() -> str:
    section = README.read_text(encoding="utf-8").split("## Student quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the quickstart has one Python block"
    return blocks[0]


def small_mnist(split, **_):
    """Grey levels k / 255 shaped like MNIST: 256 training and 64 test images."""
    n = 256 if split == "train" else 64
    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
    strokes = torch.rand(n, 1, 28, 28, generator=generator) ** 4  # mostly dark, as digits are
    return (strokes * 255).round() / 255, torch.zeros(n, dtype=torch.int64)


def test_the_quickstart_runs_and_reproduces_the_recorded_test_elbo(monkeypatch, capsys):
    monkeypatch.setattr(vdata, "mnist", small_mnist)
    code = quickstart_code()
    assert 'pip install "vaelab @ git+' in README.read_text(encoding="utf-8")
    namespace = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # correctly prepared data: nothing to warn about
        exec(compile(code, str(README), "exec"), namespace)
    history = namespace["history"]
    assert namespace["heldout"]["elbo"] == history.epochs["test_elbo"][-1]
    assert repr(history).startswith("History(10 steps: 5 epochs, 5 held-out scores")
    assert 0 < namespace["iw"]["nll"] <= -namespace["heldout"]["elbo"] + 5  # the IW bound is about as tight or tighter
    assert 0 < namespace["bits"] < 9
    printed = capsys.readouterr().out
    assert "bits per binary pixel" in printed and "bits per 8-bit pixel" in printed
