"""The one switch between CI, the rendered book and the published settings.

``VAELAB_SCALE`` selects how much compute a chapter spends:

* ``smoke``: seconds per notebook, for CI (nbval executes every chapter this way);
* ``book`` (the default when the variable is unset): what the rendered book shows,
  minutes per chapter on a 2-core CPU (chapter 4's eight LSTM runs take about half an
  hour);
* ``paper``: the published settings, meant for a GPU.
"""
from __future__ import annotations

import os
from typing import TypeVar

SCALES = ("smoke", "book", "paper")
T = TypeVar("T")


def get_scale() -> str:
    """Return the active scale from ``$VAELAB_SCALE`` (default ``"book"``)."""
    value = os.environ.get("VAELAB_SCALE", "").strip()
    if value == "":
        return "book"
    if value not in SCALES:
        raise ValueError(
            f"VAELAB_SCALE must be one of {', '.join(SCALES)} (or unset for 'book'); got {value!r}"
        )
    return value


def by_scale(*, smoke: T, book: T, paper: T) -> T:
    """Pick the value for the active scale, e.g. ``epochs = by_scale(smoke=1, book=10, paper=3280)``."""
    return {"smoke": smoke, "book": book, "paper": paper}[get_scale()]
