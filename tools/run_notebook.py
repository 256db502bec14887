"""Execute notebooks top to bottom in *this* Python's kernel and report any error output.

    python tools/run_notebook.py NOTEBOOK [NOTEBOOK ...]

Used by tests/test_colab.py with the Python of a Colab-like environment: it needs only
nbclient, nbformat and ipykernel, which Colab has. The notebooks are not modified. Before
the notebook's own cells, one cell checks that the kernel runs in this environment and
that myst-nb is absent there, as on Colab. Exits 1 and prints the errors if a cell fails.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

GUARD = f"""import importlib.util, sys
assert sys.prefix == {sys.prefix!r}, f"the kernel runs in {{sys.prefix}}, not the Colab-like environment"
assert importlib.util.find_spec("myst_nb") is None, "myst-nb is installed, but Colab has none"
"""


def run(path: Path) -> list[str]:
    nb = nbformat.read(str(path), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(GUARD))
    client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as error:
        return [str(error)]
    return [f"{output.get('ename')}: {output.get('evalue')}" for cell in nb.cells for output in cell.get("outputs", [])
            if output.get("output_type") == "error"]


def main(paths: list[str]) -> int:
    failed = 0
    for name in paths:
        start = time.monotonic()
        problems = run(Path(name).resolve())
        print(f"{'FAILED' if problems else 'ran'} {name} in {time.monotonic() - start:.0f} s", flush=True)
        for problem in problems:
            print(problem, file=sys.stderr)
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
