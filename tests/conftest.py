"""Shared pytest configuration.

``--book-html=PATH`` points the render checks of tests/test_book.py at a built book
(``python3 dev.py test`` builds it and passes ``--book-html=_build/html``); without it the
tests marked ``book`` are skipped.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for `from tools import nbmeta`


def pytest_addoption(parser):
    parser.addoption(
        "--book-html",
        metavar="PATH",
        default=None,
        help="built HTML book (e.g. _build/html): run the render checks in headless Chromium",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "book: needs the built HTML book (--book-html=PATH) and Chromium"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--book-html"):
        return
    skip = pytest.mark.skip(reason="needs a built book: pass --book-html=_build/html (python3 dev.py test does)")
    for item in items:
        if item.get_closest_marker("book") is not None:
            item.add_marker(skip)


@pytest.fixture
def training_inputs():
    """``watch(model) -> list``: the list fills with a copy of every batch the model trains on."""

    def watch(model) -> list:
        seen, real_forward = [], model.forward

        def spy(x, eps, **kwargs):
            if model.training:
                seen.append(x.clone())
            return real_forward(x, eps, **kwargs)

        model.forward = spy
        return seen

    return watch
