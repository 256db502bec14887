"""Every chapter runs where readers run it: a Colab-like environment with vaelab installed as a wheel.

Colab has torch, Jupyter (ipykernel, nbclient, nbformat), NumPy, matplotlib, tqdm and
ipywidgets, and nothing else from requirements.txt (no myst-nb, no Jupyter Book). The
chapters' hidden first cell installs vaelab from the repository, non-editable. This test
builds such an environment in ``.colab-venv`` (reused while its package list is the same),
builds a wheel of vaelab from the working tree, installs it there the way pip installs
it on Colab, and runs every chapter of ``_toc.yml`` top to bottom at smoke scale in it.
A chapter that imports a package Colab lacks, or a module missing from the wheel, fails.
"""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tools import nbmeta  # noqa: E402

VENV = ROOT / ".colab-venv"
# What Colab provides that the chapters rely on, at the versions of the book's own pins.
PINNED = ("torch", "ipykernel", "nbclient", "nbformat", "numpy", "matplotlib", "tqdm")
UNPINNED = ("ipywidgets",)


def colab_packages() -> list[str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if version:
            pins[name.strip().lower()] = version.strip()
    return [f"{name}=={pins[name]}" for name in PINNED] + list(UNPINNED)


def colab_python() -> Path:
    """The Colab-like environment's Python, created or re-created when its package list changed."""
    packages = colab_packages()
    digest = hashlib.sha256("\n".join(packages).encode()).hexdigest()
    stamp, python = VENV / "colab-packages.sha256", VENV / "bin" / "python"
    if not (python.exists() and stamp.is_file() and stamp.read_text().strip() == digest):
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)  # no access to .venv's packages
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages], check=True)
        stamp.write_text(digest + "\n")
    return python


def install_vaelab(python: Path, tmp_path: Path) -> None:
    """Build a wheel from a copy of the working tree and install it, as ``pip install git+...`` does."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".colab-venv", "_build", "*.egg-info", "__pycache__", "build", "book", "tests"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(wheels), str(source)], check=True)
    (wheel,) = wheels.glob("vaelab-*.whl")
    subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "vaelab"], check=True)
    # --no-index: every dependency must already be there, as torch, numpy, matplotlib and tqdm are on Colab
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check", str(wheel)],
                   check=True)


def chapters() -> list[Path]:
    import yaml

    paths = [nbmeta.toc_path(ROOT, name) for name in nbmeta.toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))]
    return [p for p in paths if p is not None and p.suffix == ".ipynb"]


@pytest.mark.skipif(os.environ.get("VAELAB_SCALE") != "smoke", reason="runs the chapters at smoke scale (dev.py test)")
def test_every_chapter_runs_in_a_colab_like_environment(tmp_path):
    python = colab_python()
    install_vaelab(python, tmp_path)
    jupyter = tmp_path / "jupyter"  # only the environment's own kernel, not one registered for .venv
    env = {**os.environ, "VAELAB_SCALE": "smoke", "JUPYTER_PATH": str(jupyter), "JUPYTER_DATA_DIR": str(jupyter),
           "JUPYTER_CONFIG_DIR": str(jupyter), "PYTHONPATH": "", "MPLBACKEND": "agg"}
    env.pop("_VAELAB_DEV_IN_VENV", None)
    result = subprocess.run([str(python), str(ROOT / "tools" / "run_notebook.py"), *map(str, chapters())],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
