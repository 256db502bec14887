"""tools/run_bare.py: chapters run without Jupyter or IPython (the GPU machine's runner)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CELLS = [
    ("try:\n    import vaelab\nexcept ImportError:\n    %pip install -q vaelab", ["colab-install", "remove-cell"]),
    ("import matplotlib.pyplot as plt\nfrom IPython.display import Markdown, display\n"
     "from vaelab import glue\n%env SOMETHING=1\nx = 21", []),
    ("display(Markdown('| a |'))\nglue('answer', 2 * x, display=False)\nplt.plot([1, 2]); plt.show()", []),
]


def notebook(path: Path, cells=CELLS, stored_answer=None) -> Path:
    outputs = []
    if stored_answer is not None:
        outputs = [{"output_type": "display_data", "metadata": {"scrapbook": {"name": "answer", "mime_prefix": ""}},
                    "data": {"text/plain": str(stored_answer)}}]
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": tags}, "source": source, "outputs": outputs,
                     "execution_count": None} for source, tags in cells],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


def run_bare(*args, block_ipython: bool):
    # Without IPython, as on a bare machine: a None entry in sys.modules makes the import fail.
    prelude = "import sys; sys.modules['IPython'] = None; " if block_ipython else ""
    code = prelude + f"sys.path.insert(0, {str(ROOT)!r}); from tools.run_bare import main; sys.exit(main({list(args)!r}))"
    if not block_ipython:
        code = "import sys; " + code
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})


def test_runs_cells_skips_magics_and_reports_glue_beside_stored(tmp_path):
    path = notebook(tmp_path / "chapter.ipynb", stored_answer=41)
    out = tmp_path / "out.json"
    result = run_bare(str(path), "--json", str(out), block_ipython=True)
    assert result.returncode == 0, result.stderr
    assert "ran chapter.ipynb" in result.stdout
    assert "| a |" in result.stdout  # the stand-in display printed the table
    assert "answer: 42  (stored: 41)" in result.stdout
    saved = json.loads(out.read_text())["chapter.ipynb"]
    assert saved["glue"] == {"answer": "42"} and saved["error"] is None


def test_a_failing_chapter_is_reported_and_the_next_still_runs(tmp_path):
    bad = notebook(tmp_path / "bad.ipynb", cells=[("raise RuntimeError('boom')", [])])
    good = notebook(tmp_path / "good.ipynb")
    result = run_bare(str(bad), str(good), block_ipython=False)
    assert result.returncode == 1
    assert "FAILED bad.ipynb" in result.stdout and "RuntimeError: boom" in result.stderr
    assert "ran good.ipynb" in result.stdout and "answer: 42  (stored: -)" in result.stdout
