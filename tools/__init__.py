"""Helpers shared by dev.py and tests/test_book.py (stdlib only)."""
