"""What a chapter needs beside its computations: quoting a computed number in the text.

The book quotes numbers with myst-nb's ``glue``, so that no number in the prose is typed
by hand. Readers who run a chapter on Colab have no myst-nb there, and need none:
:func:`glue` stores the value for the book where myst-nb is installed, and otherwise
shows it under its name, so the reader sees the number the text quotes.
"""
from __future__ import annotations

import numbers

__all__ = ["glue"]


def _shown(value) -> str:
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
