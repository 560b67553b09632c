"""The hook reference in docs/ matches core/hookspecs.py exactly."""

import inspect

from core import hookdoc


def test_every_hook_is_documented_with_its_signature():
    for name, fn in hookdoc.hook_functions():
        assert inspect.cleandoc(fn.__doc__ or "").strip(), f"hook {name} has no documentation"
    committed = hookdoc.REFERENCE.read_text(encoding="utf-8")
    assert committed == hookdoc.render(), (
        "docs/hooks.md is out of date with core/hookspecs.py: run `python3 run.py hookdoc` and review the diff"
    )


def test_reference_lists_each_hook_signature():
    committed = hookdoc.REFERENCE.read_text(encoding="utf-8")
    for name, fn in hookdoc.hook_functions():
        assert f"## `{hookdoc.signature(fn)}`" in committed
