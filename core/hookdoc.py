"""The hook reference in docs/hooks.md, generated from core/hookspecs.py.

`python3 run.py hookdoc` rewrites the reference; the test suite fails when the
committed file differs from what the hook specs say (a hook added, renamed,
re-documented or given a new argument without updating the reference).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from core import hookspecs
from core.kit import HOOK_API_VERSION
from core.settings import ROOT

REFERENCE = ROOT / "docs" / "hooks.md"

HEADER = """# Hook reference

Generated from `core/hookspecs.py` by `python3 run.py hookdoc`; do not edit by hand.
Hook API version: **{version}**. Implement a hook with `@hookimpl` from `core.api`,
taking only the arguments you use (never with defaults). A hook may return a value,
a callable or an awaitable.

{intro}
"""


def hook_functions(module=hookspecs) -> list[tuple[str, object]]:
    return [
        (name, fn)
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if hasattr(fn, "courtyard_spec")
    ]


def deprecation_notice(fn) -> str:
    """The reference's notice for a hook marked with `core.hookspecs.deprecated`, or ""."""
    info = getattr(fn, "courtyard_deprecated", None)
    if not info:
        return ""
    lines = []
    if info["reason"] or not info["args"]:
        text = f"**Deprecated** since hook API {info['since']}"
        lines.append(f"{text}: {info['reason']}" if info["reason"] else text + ".")
    for name, why in info["args"].items():
        text = f"**Argument `{name}` deprecated** since hook API {info['since']}"
        lines.append(f"{text}: {why}" if why else text + ".")
    return "\n".join(f"> {line}" for line in lines) + "\n\n"


def signature(fn) -> str:
    sig = inspect.signature(fn)
    params = ", ".join(p.name for p in sig.parameters.values())
    return f"{fn.__name__}({params})"


def render(module=hookspecs) -> str:
    intro = inspect.cleandoc(module.__doc__ or "")
    parts = [HEADER.format(version=HOOK_API_VERSION, intro=intro)]
    source = inspect.getsource(module)
    # Keep the order of the source file: registration hooks first, then project hooks.
    ordered = sorted(
        hook_functions(module), key=lambda item: re.search(rf"^def {item[0]}\(", source, re.M).start()
    )
    for name, fn in ordered:
        doc = inspect.cleandoc(fn.__doc__ or "")
        parts.append(f"## `{signature(fn)}`\n\n{deprecation_notice(fn)}{doc}\n")
    return "\n".join(parts).rstrip() + "\n"


def write(path: Path = REFERENCE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path
