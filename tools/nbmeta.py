"""What a chapter notebook must record about its stored run (stdlib only).

The rendered book shows the outputs stored in each notebook; it does not execute them.
So every notebook records, in ``metadata.vaelab``, the scale it was run at and a hash of
its code, and these functions check that the stored outputs are a complete, error-free,
top-to-bottom run of exactly the code that is in the file. ``python3 dev.py execute``
writes that metadata; ``tests/test_book.py`` checks it.

Notebooks are plain dicts as ``json.load`` (or ``nbformat``) returns them.
"""
from __future__ import annotations

import hashlib

INSTALL_TAG = "colab-install"
HIDE_TAG = "remove-cell"
RECORDED_SCALES = ("book", "paper")
_CELL_SEPARATOR = "\n# ---- next cell ----\n"


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _tags(cell: dict) -> list:
    return cell.get("metadata", {}).get("tags", [])


def code_cells(nb: dict) -> list[dict]:
    return [cell for cell in nb.get("cells", []) if cell.get("cell_type") == "code"]


def code_sha256(nb: dict) -> str:
    """sha256 (hex) of the code cells' sources in order, without the install cell.

    The install cell is left out so that changing the install source in ``_config.yml``
    (and regenerating the cell) does not invalidate the stored run.
    """
    sources = [_source(c) for c in code_cells(nb) if INSTALL_TAG not in _tags(c)]
    return hashlib.sha256(_CELL_SEPARATOR.join(sources).encode("utf-8")).hexdigest()


def error_outputs(nb: dict) -> list[str]:
    """One line per stored error output: ``cell <i>: <ename>: <evalue>``."""
    problems = []
    for index, cell in enumerate(nb.get("cells", [])):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") == "error":
                problems.append(
                    f"cell {index}: stored error output {output.get('ename')}: {output.get('evalue')}"
                )
    return problems


def check_stored_run(nb: dict) -> list[str]:
    """Problems with the stored run of ``nb``; an empty list means it is complete and current."""
    problems = []
    previous_count = 0
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code" or not _source(cell).strip():
            continue
        count = cell.get("execution_count")
        if not isinstance(count, int):
            problems.append(f"cell {index}: not executed (no execution_count)")
            continue
        if count <= previous_count:
            problems.append(
                f"cell {index}: execution_count {count} after {previous_count} (not run top to bottom)"
            )
        previous_count = count
    problems += error_outputs(nb)

    record = nb.get("metadata", {}).get("vaelab")
    if not isinstance(record, dict):
        problems.append("metadata.vaelab missing: run `python3 dev.py execute <notebook>`")
        return problems
    if record.get("scale") not in RECORDED_SCALES:
        problems.append(
            f"metadata.vaelab.scale is {record.get('scale')!r}, expected one of {RECORDED_SCALES}"
        )
    if record.get("code_sha256") != code_sha256(nb):
        problems.append(
            "code changed since the stored run (metadata.vaelab.code_sha256 does not match): "
            "run `python3 dev.py execute <notebook>`"
        )
    return problems


def install_cell_source(config: dict) -> str:
    """Source of the install cell, from ``repository.url`` and ``repository.branch`` of ``_config.yml``."""
    repository = config["repository"]
    url = str(repository["url"]).rstrip("/")
    branch = str(repository.get("branch", "main"))
    return (
        "try:\n"
        "    import vaelab\n"
        "except ImportError:  # on Colab: install the companion package from the book's repository\n"
        f'    %pip install -q "vaelab @ git+{url}@{branch}"'
    )


def install_cell(config: dict) -> dict:
    """The complete install cell (unexecuted), tagged so that the rendered page hides it."""
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": [INSTALL_TAG, HIDE_TAG]},
        "outputs": [],
        "source": install_cell_source(config),
    }


def toc_files(toc: dict) -> list[str]:
    """Every ``file:`` named in a parsed ``_toc.yml`` (root first), in reading order."""
    files = [toc["root"]] if "root" in toc else []

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    for key in ("parts", "chapters", "sections"):
        walk(toc.get(key))
    return files


def toc_path(root, name: str):
    """The file a ``_toc.yml`` entry names (``book/intro`` -> ``book/intro.md``), or None."""
    from pathlib import Path

    base = Path(root) / name
    candidates = [base] if base.suffix in (".md", ".ipynb") else [base.with_name(base.name + s) for s in (".ipynb", ".md")]
    return next((c for c in candidates if c.is_file()), None)
