"""The plugin host: discovery, load order, and clear refusals of broken plugins."""

import os
import subprocess
import sys

import pytest

from core.kit import Manifest
from core.plugins import LoadedPlugin, PluginError, PluginHost, order
from core.settings import ROOT

SAMPLES = "tests.sample_plugins"


def fake(name, depends=(), hook_api="1.0"):
    import types

    module = types.ModuleType(f"fake_{name}")
    return LoadedPlugin(Manifest(name=name, label=name, version="1", hook_api=hook_api, depends=depends), module, "builtin")


def test_load_order_is_core_then_dependencies_then_name():
    plugins = [fake("zeta"), fake("alpha", depends=("zeta",)), fake("beta"), fake("core")]
    assert [p.name for p in order(plugins)] == ["core", "beta", "zeta", "alpha"]


def test_builtin_plugins_load_in_a_stable_order():
    first = PluginHost.discover(entry_points=False).names
    second = PluginHost.discover(entry_points=False).names
    assert first == second and first[0] == "core"


@pytest.mark.parametrize(
    "module, expected",
    [
        ("needs_missing", "plugin 'needs_missing': depends on 'nonexistent', which is not installed"),
        ("future_api", "plugin 'future_api': written for hook API 2.0"),
        ("broken_import", "plugin 'broken_import': failed to import tests.sample_plugins.broken_import: ModuleNotFoundError"),
    ],
)
def test_broken_plugin_is_refused_with_one_clear_line(module, expected):
    with pytest.raises(PluginError) as info:
        PluginHost.discover(entry_points=False, extra_modules=[f"{SAMPLES}.{module}"])
    message = str(info.value)
    assert message.startswith(expected)
    assert "\n" not in message


def test_dependency_cycle_is_refused():
    with pytest.raises(PluginError, match="dependency cycle among: cycle_a, cycle_b"):
        PluginHost.discover(entry_points=False, extra_modules=[f"{SAMPLES}.cycle_a", f"{SAMPLES}.cycle_b"])


def test_start_up_with_a_broken_plugin_prints_one_line_and_stops(tmp_path):
    env = {
        **os.environ,
        "COURTYARD_NO_BOOTSTRAP": "1",
        "COURTYARD_PLUGINS_EXTRA": f"{SAMPLES}.future_api",
        "COURTYARD_DATABASE_URL": f"sqlite://{tmp_path}/x.sqlite3",
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "plugins"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["Courtyard cannot start: plugin 'future_api': written for hook API 2.0, this Courtyard provides 1.1"]
    assert "Traceback" not in result.stdout + result.stderr


def test_implementing_an_unknown_hook_is_refused():
    with pytest.raises(PluginError, match="plugin 'typo_hook': implements an unknown hook"):
        PluginHost.discover(entry_points=False, extra_modules=[f"{SAMPLES}.typo_hook"])
