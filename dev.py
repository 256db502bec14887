#!/usr/bin/env python3
"""Build, test and refresh the vaelab book. Standard library only: run it with plain `python3`.

    python3 dev.py book               strict HTML build (any warning fails) -> _build/html/index.html
    python3 dev.py test [PYTEST ARG]  strict build, then ONE pytest run: tests/, every chapter at
                                      smoke scale (nbval), and the rendered-page checks in Chromium
    python3 dev.py execute [NB ...]   re-run chapters at book scale and store their outputs
    python3 dev.py sync-install       regenerate every chapter's Colab install cell from _config.yml

Every command first creates or updates .venv (pinned requirements.txt plus an editable vaelab;
skipped while a stamp records the same requirements) and then re-runs itself inside it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_BIN = VENV / "bin"
STAMP = VENV / "vaelab-requirements.sha256"
HTML = ROOT / "_build" / "html"
BUILD_STATUS = ROOT / "_build" / "build-status.json"  # read by tests/test_book.py
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
sys.path.insert(0, str(ROOT))
from tools import nbmeta  # noqa: E402  (stdlib only)


def run(cmd, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kwargs)


def ensure_venv() -> None:
    """Create .venv and install the pinned stack, unless the stamp says it is current."""
    inputs = b"".join((ROOT / name).read_bytes() for name in ("requirements.txt", "pyproject.toml"))
    digest = hashlib.sha256(inputs).hexdigest()
    if (VENV_BIN / "python").exists() and STAMP.is_file() and STAMP.read_text().strip() == digest:
        return
    if not (VENV_BIN / "python").exists():
        run([sys.executable, "-m", "venv", VENV])
    pip = [VENV_BIN / "python", "-m", "pip", "install", "--disable-pip-version-check"]
    run(pip + ["-r", "requirements.txt"])
    run(pip + ["--no-deps", "-e", "."])
    STAMP.write_text(digest + "\n")


def load_yaml(name: str) -> dict:
    import yaml  # inside .venv

    return yaml.safe_load((ROOT / name).read_text())


def toc_notebooks() -> list[Path]:
    paths = [nbmeta.toc_path(ROOT, name) for name in nbmeta.toc_files(load_yaml("_toc.yml"))]
    return [p for p in paths if p is not None and p.suffix == ".ipynb"]


def write_atomically(path: Path, nb) -> None:
    import nbformat

    tmp = path.with_name(path.name + ".tmp")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)


def sync_install_cell(nb, config: dict) -> bool:
    """Make the first code cell the generated install cell; True when ``nb`` changed."""
    from nbformat.v4 import new_code_cell

    wanted = nbmeta.install_cell(config)
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    if code and nbmeta.INSTALL_TAG in nb.cells[code[0]].metadata.get("tags", []):
        cell = nb.cells[code[0]]
        if cell.source == wanted["source"] and cell.metadata.get("tags") == wanted["metadata"]["tags"]:
            return False
        cell.source, cell.metadata["tags"] = wanted["source"], wanted["metadata"]["tags"]
    else:
        cell = new_code_cell(wanted["source"], metadata=wanted["metadata"])
        nb.cells.insert(code[0] if code else len(nb.cells), cell)
    return True


def cmd_sync_install(_args) -> int:
    import nbformat

    config = load_yaml("_config.yml")
    for path in toc_notebooks():
        nb = nbformat.read(str(path), as_version=4)
        if sync_install_cell(nb, config):
            write_atomically(path, nb)
            print(f"updated the install cell of {path.relative_to(ROOT)}")
    return 0


def cmd_execute(args) -> int:
    import nbformat
    from nbclient import NotebookClient

    scale = "paper" if os.environ.get("VAELAB_SCALE") == "paper" else "book"
    os.environ["VAELAB_SCALE"] = scale
    paths = [Path(a).resolve() for a in args] or toc_notebooks()
    config, failed = load_yaml("_config.yml"), 0
    for path in paths:
        name, start = path.relative_to(ROOT), time.monotonic()
        print(f"executing {name} at VAELAB_SCALE={scale} ...", flush=True)
        nb = nbformat.read(str(path), as_version=4)
        sync_install_cell(nb, config)
        client = NotebookClient(nb, timeout=3600, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
            problems = nbmeta.error_outputs(nb)
        except Exception as error:  # CellExecutionError, timeouts, a dead kernel
            problems = [str(error)]
        if problems:
            failed += 1
            print(f"FAILED {name}: left untouched\n" + "\n".join(problems), file=sys.stderr)
            continue
        nb.metadata["vaelab"] = {"scale": scale, "code_sha256": nbmeta.code_sha256(nb)}
        write_atomically(path, nb)
        print(f"wrote {name} ({time.monotonic() - start:.0f} s)")
    return 1 if failed else 0


def build_book() -> int:
    """Strict build; records the outcome in _build/build-status.json for tests/test_book.py."""
    start = time.monotonic()
    shutil.rmtree(HTML, ignore_errors=True)  # no stale pages of removed chapters
    HTML.parent.mkdir(exist_ok=True)
    notebooks = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    # execute_notebooks is off, and a plain build renders a stored traceback without a warning.
    problems = [f"{nb.relative_to(ROOT)}: {problem}" for nb in notebooks
                for problem in nbmeta.error_outputs(json.loads(nb.read_text()))]
    if problems:
        returncode = 1
        print("\n".join(problems), file=sys.stderr)
    else:
        cmd = [VENV_BIN / "jupyter-book", "build", ROOT, "--all", "--warningiserror", "--nitpick", "--keep-going"]
        print("+", " ".join(map(str, cmd)), flush=True)
        proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:  # echo, and keep the warnings for the status file
            print(line, end="", flush=True)
            if "WARNING" in line or "ERROR" in line:
                problems.append(re.sub(r"\x1b\[[0-9;]*m", "", line).strip())
        returncode = proc.wait()
    seconds = time.monotonic() - start
    BUILD_STATUS.write_text(json.dumps({"returncode": returncode, "problems": problems, "seconds": seconds}))
    outcome = "passed" if returncode == 0 else "FAILED"
    where = f"; HTML: {(HTML / 'index.html').relative_to(ROOT)}" if (HTML / "index.html").is_file() else ""
    print(f"strict book build {outcome} in {seconds:.0f} s{where}")
    return returncode


def cmd_book(_args) -> int:
    return build_book()


def ensure_chromium() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"The render checks need Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}).\n"
                 "Install them as root: apt-get update && apt-get install -y chromium chromium-driver")
    run(["apt-get", "update"])
    run(["apt-get", "install", "-y", "chromium", "chromium-driver"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def cmd_test(args) -> int:
    build_returncode = build_book()
    ensure_chromium()
    os.environ["VAELAB_SCALE"] = "smoke"
    notebooks = [str(p.relative_to(ROOT)) for p in toc_notebooks()]
    cmd = [VENV_BIN / "python", "-m", "pytest", "-p", "no:cacheprovider", "tests", *notebooks,
           "--nbval-lax", "--nbval-current-env", f"--book-html={HTML}", *args]
    print("+", " ".join(map(str, cmd)), flush=True)
    # The strict build's outcome is one of the tests, so pytest's summary is the last word.
    return subprocess.run([str(c) for c in cmd], cwd=ROOT).returncode or build_returncode


COMMANDS = {"book": cmd_book, "test": cmd_test, "execute": cmd_execute, "sync-install": cmd_sync_install}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        return 2
    if os.environ.get("_VAELAB_DEV_IN_VENV") != "1":
        ensure_venv()
        os.environ["_VAELAB_DEV_IN_VENV"] = "1"
        os.execv(VENV_BIN / "python", [str(VENV_BIN / "python"), __file__, *sys.argv[1:]])
    os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    data = ROOT.parent / "shared" / "data"
    if "VAELAB_DATA" not in os.environ and data.is_dir():
        os.environ["VAELAB_DATA"] = str(data)
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
