"""Courtyard's core (see README.md and docs/plugins.md)."""

from __future__ import annotations

import functools
import sys


def _skip_comment_scan() -> None:
    """Start-up: Tortoise reads every model class's source for `#:` field comments, a noticeable part of
    starting a process (docs/benchmarks.md). Modules without any `#:` cannot have them: skip those."""
    try:
        from tortoise import models
    except ImportError:  # pragma: no cover
        return
    original = getattr(models, "_get_comments", None)
    if original is None or getattr(original, "courtyard", False):
        return

    @functools.lru_cache(maxsize=None)
    def has_marks(path: str) -> bool:
        try:
            with open(path, encoding="utf-8") as source:
                return "#:" in source.read()
        except OSError:
            return True

    def get_comments(cls):
        path = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if path and not has_marks(path):
            return {}
        return original(cls)

    get_comments.courtyard = True
    models._get_comments = get_comments


_skip_comment_scan()
