"""Run chapters without Jupyter: each notebook's code cells in order, in one namespace.

    python tools/run_bare.py [--json OUT.json] NOTEBOOK [NOTEBOOK ...]

For a bare machine (a GPU server with torch and vaelab's dependencies but no Jupyter, no
IPython): the scale and device come from ``VAELAB_SCALE`` and ``VAELAB_DEVICE`` as usual.

* The install cell (tag ``colab-install``) is skipped, and so is every line magic or shell
  line (``%pip ...``, ``!ls``): the package must be importable already.
* Where IPython is missing, a stand-in ``IPython.display`` (``display``, ``Markdown``,
  ``HTML``) prints what a cell shows, ``IPython.get_ipython()`` returns ``None``, and
  ``IPython.version_info`` reads as a recent release (matplotlib asks for both once an
  ``IPython`` module exists). Figures go to the Agg backend.
* Every value a chapter glues is recorded and printed next to the value stored in the
  committed notebook (``vaelab.stored_glue``), with the chapter's time, so that a run on
  another device can be compared with the stored CPU run line by line.

Exits 1 if a chapter raises; the others still run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import types
from pathlib import Path

INSTALL_TAG = "colab-install"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository's vaelab, installed or not


def _stand_in_ipython() -> None:
    """Install a minimal ``IPython`` / ``IPython.display`` where the real one is missing."""
    try:
        import IPython  # noqa: F401
        return
    except ImportError:
        pass

    class _Shown:
        def __init__(self, data=None, **_):
            self.data = data

        def __str__(self):
            return str(self.data)

    def display(*objects, **_):
        for obj in objects:
            print(obj)

    package = types.ModuleType("IPython")
    package.get_ipython = lambda: None
    # matplotlib reads IPython.version_info once an IPython module is present; a recent one
    # means "nothing to patch"
    package.version_info = (9, 0, 0)
    shown = types.ModuleType("IPython.display")
    shown.display, shown.Markdown, shown.HTML = display, type("Markdown", (_Shown,), {}), type("HTML", (_Shown,), {})
    package.display = shown
    sys.modules["IPython"], sys.modules["IPython.display"] = package, shown


def code_cells(path: Path) -> list[str]:
    """The notebook's code cells as Python source, without the install cell and magics."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = []
    for cell in cells:
        if cell["cell_type"] != "code" or INSTALL_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        text = "".join(cell["source"])
        lines = [("pass  # skipped: " + line.strip()) if line.lstrip().startswith(("%", "!")) else line
                 for line in text.splitlines()]
        sources.append("\n".join(lines))
    return sources


def run_chapter(path: Path) -> tuple[dict, float, str | None]:
    """Run one chapter; ``(glued values, seconds, error text or None)``."""
    import vaelab.notebook

    glued: dict = {}
    original = vaelab.notebook.glue

    def recording_glue(name, value, *, display=False):  # printed by report(), beside the stored value
        glued[name] = value.item() if hasattr(value, "item") and getattr(value, "ndim", None) == 0 else value

    vaelab.notebook.glue = vaelab.glue = recording_glue
    namespace = {"__name__": "__main__"}
    start, error = time.perf_counter(), None
    cwd = os.getcwd()
    os.chdir(path.parent)  # chapters read sibling notebooks (stored_glue) by relative path
    try:
        for i, source in enumerate(code_cells(path)):
            exec(compile(source, f"{path.name}[code cell {i}]", "exec"), namespace)
            _close_figures()
    except BaseException:  # noqa: BLE001  (report and go on with the next chapter)
        error = traceback.format_exc()
    finally:
        os.chdir(cwd)
        vaelab.notebook.glue = vaelab.glue = original
    return glued, time.perf_counter() - start, error


def _close_figures() -> None:
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def _short(value) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def report(path: Path, glued: dict) -> None:
    """Print each glued value beside the committed notebook's."""
    from vaelab import stored_glue

    try:
        stored = stored_glue(path)
    except (FileNotFoundError, ValueError):
        stored = {}
    for name, value in glued.items():
        print(f"  {name}: {_short(value)}  (stored: {_short(stored[name]) if name in stored else '-'})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, help="write {chapter: {seconds, glue, error}} here")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    _stand_in_ipython()
    results, failed = {}, 0
    for path in args.notebooks:
        glued, seconds, error = run_chapter(path.resolve())
        scale, device = os.environ.get("VAELAB_SCALE", "book"), os.environ.get("VAELAB_DEVICE", "auto")
        print(f"{'FAILED' if error else 'ran'} {path.name} at scale {scale} on device {device} in {seconds:.0f} s",
              flush=True)
        if error:
            print(error, file=sys.stderr)
            failed += 1
        report(path.resolve(), glued)
        results[path.name] = {"seconds": seconds, "error": error, "glue": {k: _short(v) for k, v in glued.items()}}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
