"""What a chapter needs beside its computations: quoting a computed number in the text.

The book quotes numbers with myst-nb's ``glue``, so that no number in the prose is typed
by hand. Readers who run a chapter on Colab have no myst-nb there, and need none:
:func:`glue` stores the value for the book where myst-nb is installed, and otherwise
shows it under its name, so the reader sees the number the text quotes.
"""
from __future__ import annotations

import ast
import json
import numbers
import urllib.request
from pathlib import Path

__all__ = ["glue", "stored_glue"]

#: Where :func:`stored_glue` reads a chapter that is not on disk (on Colab, only the open
#: chapter is): the committed notebooks of the book's repository.
BOOK_URL = "https://raw.githubusercontent.com/vaelab/vaelab/main/book/"


def _shown(value) -> str:
    if hasattr(value, "_repr_pretty_"):  # vaelab.compare / spread results: the text a chapter quotes
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value)}"
    if isinstance(value, numbers.Real):
        return f"{float(value):.6g}"
    return repr(value)


def glue(name: str, value, *, display: bool = False) -> None:
    """Make ``value`` available to the text as ``{glue:text}`name```.

    Args:
        name: the key the text uses; a non-empty string.
        value: the number (or any object) to quote; a NumPy or torch scalar is stored as the
            Python number it holds, so that a format such as ``:.2f`` applies to it.
        display: as in myst-nb's ``glue``: also show the value in the cell's output.

    Where myst-nb is installed (the book's build and tests) this is ``myst_nb.glue``, so the
    rendered book is the same; where it is not (Colab), it prints ``name = value``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, the key the text quotes; got {name!r}")
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        # a NumPy or torch scalar: its repr (np.float64(0.27)) is not a number a format spec reads
        value = value.item()
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        print(f"{name} = {_shown(value)}")
        return
    myst_glue(name, value, display=display)


def _value(text: str):
    """A stored glue value: the Python literal its repr spells, or the text itself."""
    for candidate in (text, text.replace("np.float64(", "(").replace("np.int64(", "(")):
        try:
            return ast.literal_eval(candidate)
        except (ValueError, SyntaxError):
            continue
    return text


def stored_glue(notebook, *, book_url: str = BOOK_URL) -> dict:
    """The numbers another chapter glued, read from its stored outputs.

    A chapter that builds on an earlier one's results (chapter 5's rate-distortion planes)
    reads them from the committed notebook instead of training the models again, so
    the numbers are the ones that chapter shows. The notebook is read from disk where it
    exists (a clone of the repository); otherwise, as on Colab, from ``book_url``.

    Args:
        notebook: a path to an ``.ipynb`` file, e.g. ``"02_gaussian_precision.ipynb"``.
        book_url: where to read a notebook that is not on disk; its file name is appended.

    Returns:
        ``{key: value}`` for every glued value, numbers as Python numbers, lists and
        dicts as such, anything else as its text.

    Raises:
        FileNotFoundError: the notebook is neither on disk nor readable at ``book_url``.
        ValueError: the file is not a notebook, or stores no glued value.
    """
    path = Path(notebook)
    if path.suffix != ".ipynb":
        raise ValueError(f"notebook must be the path of a .ipynb file; got {notebook!r}")
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        url = book_url + path.name
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                text = response.read().decode("utf-8")
        except OSError as error:
            raise FileNotFoundError(
                f"{notebook} is not on disk (looked in {Path.cwd()}) and could not be read from {url}: {error}. "
                "Run this from the book/ folder of a clone of the repository"
            ) from None
    try:
        cells = json.loads(text)["cells"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{notebook} is not a Jupyter notebook (no JSON with cells)") from None
    values = {}
    for cell in cells:
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("scrapbook")
            if not record:
                continue
            data = output.get("data", {})
            plain = data.get(record.get("mime_prefix", "") + "text/plain", data.get("text/plain"))
            if plain is not None:
                values[record["name"]] = _value("".join(plain) if isinstance(plain, list) else plain)
    if not values:
        raise ValueError(f"{notebook} stores no glued value: run it (python3 dev.py execute {notebook}) first")
    return values
