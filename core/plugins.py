"""The plugin host: discovery, manifests, load order and calling hooks.

Discovery, step by step:

1. Core itself (`core.plugin`), always first and always on.
2. Every package under `plugins/` in this tree that has an `__init__.py`
   exposing `MANIFEST`.
3. Every installed distribution advertising the entry-point group
   `courtyard.plugins` (the value is the plugin's package).

Load order is deterministic: core, then plugins in topological order of
their `depends`, ties broken by name. Anything wrong with a plugin (import
error, missing `MANIFEST`, unknown dependency, cycle, incompatible hook API,
duplicate name) raises `PluginError` naming the plugin and the reason;
`run.py` prints it as one line and exits.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

import pluggy

from core import hookspecs
from core.kit import HOOK_API_VERSION, HookDeprecationWarning, Manifest

log = logging.getLogger("courtyard.plugins")

ENTRY_POINT_GROUP = "courtyard.plugins"
PLUGINS_DIR = Path(__file__).resolve().parent.parent / "plugins"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class PluginError(Exception):
    """A plugin cannot be loaded; str() is one line naming plugin and reason."""

    def __init__(self, plugin: str, reason: str):
        super().__init__(f"plugin {plugin!r}: {reason}")
        self.plugin = plugin
        self.reason = reason


@dataclass
class LoadedPlugin:
    manifest: Manifest
    module: ModuleType
    origin: str  # "core", "builtin" or the distribution name

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def path(self) -> Path:
        return Path(inspect.getfile(self.module)).parent

    @property
    def migrations_module(self) -> str:
        if self.manifest.migrations:
            return self.manifest.migrations
        if self.origin in ("core", "builtin"):
            return f"migrations.{self.name}"
        return f"{self.module.__name__}.migrations"


@dataclass
class HookResult:
    plugin: str
    value: Any = None
    error: BaseException | None = None


def _version_tuple(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def check_hook_api(manifest: Manifest) -> None:
    try:
        wanted = _version_tuple(manifest.hook_api)
    except ValueError:
        raise PluginError(manifest.name, f"hook_api {manifest.hook_api!r} is not a version like '1.0'")
    have = _version_tuple(HOOK_API_VERSION)
    if wanted[0] != have[0] or wanted[1] > have[1]:
        raise PluginError(
            manifest.name,
            f"written for hook API {manifest.hook_api}, this Courtyard provides {HOOK_API_VERSION}",
        )


def _import_plugin(module_name: str, label: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure is the plugin's, reported in one line
        raise PluginError(label, f"failed to import {module_name}: {type(exc).__name__}: {exc}") from exc


def _manifest_of(module: ModuleType, label: str) -> Manifest:
    manifest = getattr(module, "MANIFEST", None)
    if not isinstance(manifest, Manifest):
        raise PluginError(label, f"{module.__name__} has no MANIFEST = core.api.Manifest(...)")
    if not NAME_RE.match(manifest.name):
        raise PluginError(manifest.name, "name must be lowercase letters, digits and underscores")
    return manifest


def discover(
    builtin_dir: Path | None = PLUGINS_DIR,
    entry_points: bool = True,
    extra_modules: Iterable[str] = (),
) -> list[LoadedPlugin]:
    """Find and import every plugin; return them unordered (core first)."""
    found: list[LoadedPlugin] = []
    core_module = _import_plugin("core.plugin", "core")
    found.append(LoadedPlugin(_manifest_of(core_module, "core"), core_module, "core"))

    candidates: list[tuple[str, str, str]] = []  # (module, label, origin)
    if builtin_dir is not None and builtin_dir.is_dir():
        for child in sorted(builtin_dir.iterdir()):
            if (child / "__init__.py").is_file() and not child.name.startswith("_"):
                candidates.append((f"plugins.{child.name}", child.name, "builtin"))
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else ep.name
            candidates.append((ep.value, ep.name, dist))
    for module_name in extra_modules:
        candidates.append((module_name, module_name.rsplit(".", 1)[-1], "extra"))

    names: dict[str, str] = {"core": "core"}
    for module_name, label, origin in candidates:
        module = _import_plugin(module_name, label)
        manifest = _manifest_of(module, label)
        if manifest.name in names:
            raise PluginError(manifest.name, f"name already used by {names[manifest.name]}")
        names[manifest.name] = module_name
        found.append(LoadedPlugin(manifest, module, origin))
    return found


def order(plugins: list[LoadedPlugin]) -> list[LoadedPlugin]:
    """Core first, then dependencies before dependants, ties by name."""
    by_name = {p.name: p for p in plugins}
    for plugin in plugins:
        check_hook_api(plugin.manifest)
        for dep in plugin.manifest.depends:
            if dep not in by_name:
                raise PluginError(plugin.name, f"depends on {dep!r}, which is not installed")
    ordered: list[LoadedPlugin] = [by_name["core"]]
    placed = {"core"}
    remaining = sorted(n for n in by_name if n != "core")
    while remaining:
        ready = [n for n in remaining if all(d in placed for d in by_name[n].manifest.depends)]
        if not ready:
            cycle = ", ".join(remaining)
            raise PluginError(remaining[0], f"dependency cycle among: {cycle}")
        name = ready[0]
        ordered.append(by_name[name])
        placed.add(name)
        remaining.remove(name)
    return ordered


async def resolve(value: Any) -> Any:
    """A hook may return a value, a callable or an awaitable: get the value."""
    if callable(value) and not isinstance(value, type):
        value = value()
    if inspect.isawaitable(value):
        value = await value
    return value


def _report_deprecations(plugin: str, caught: list[warnings.WarningMessage]) -> None:
    """Log each deprecated hook a plugin implements with the plugin's name, and warn on as usual."""
    for item in caught:
        if issubclass(item.category, HookDeprecationWarning):
            log.warning("plugin %s: %s (%s:%s)", plugin, item.message, item.filename, item.lineno)
        warnings.warn_explicit(item.message, item.category, item.filename, item.lineno, source=item.source)


_current_host: "PluginHost | None" = None


def current_host() -> "PluginHost":
    """The plugin host of this process (set by the app factory and the CLI)."""
    if _current_host is None:
        raise RuntimeError("no plugin host: create the app (core.app.create_app) first")
    return _current_host


def use_host(host: "PluginHost") -> "PluginHost":
    global _current_host
    _current_host = host
    return host


class PluginHost:
    """Holds the ordered plugins and the pluggy manager, and calls hooks."""

    def __init__(self, plugins: list[LoadedPlugin], specs: Iterable[Any] = ()):
        """`specs`: more hook-spec modules or classes besides core's (tests of the hook machinery)."""
        self.plugins = order(plugins)
        self.by_name = {p.name: p for p in self.plugins}
        self.pm = pluggy.PluginManager("courtyard")
        self.pm.add_hookspecs(hookspecs)
        for spec in specs:
            self.pm.add_hookspecs(spec)
        for plugin in self.plugins:
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", HookDeprecationWarning)
                    self.pm.register(plugin.module, name=plugin.name)
            except pluggy.PluginValidationError as exc:
                raise PluginError(plugin.name, f"invalid hook implementation: {exc}") from exc
            _report_deprecations(plugin.name, caught)
        try:
            # An implementation of a hook that does not exist is a typo or a
            # plugin written for another version: refuse it instead of ignoring it.
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or "?"
            raise PluginError(name, f"implements an unknown hook: {exc}") from exc
        self._rank = {p.name: i for i, p in enumerate(self.plugins)}

    @classmethod
    def discover(cls, specs: Iterable[Any] = (), **kwargs) -> "PluginHost":
        return cls(discover(**kwargs), specs=specs)

    def apply_settings(self, settings) -> None:
        """Give each plugin's `register_settings` defaults their section (values set in settings.toml win)."""
        for result in self.call_sync("register_settings"):
            settings.add_defaults(result.plugin, result.value or {})

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.plugins]

    def toggleable(self) -> list[LoadedPlugin]:
        return [p for p in self.plugins if p.manifest.per_project]

    def dependants(self, name: str) -> list[str]:
        return [p.name for p in self.plugins if name in p.manifest.depends]

    def _impls(self, hook_name: str, only: set[str] | None):
        hook = getattr(self.pm.hook, hook_name)
        impls = [
            impl
            for impl in hook.get_hookimpls()
            if only is None or impl.plugin_name in only or not self.by_name[impl.plugin_name].manifest.per_project
        ]
        return sorted(impls, key=lambda impl: self._rank[impl.plugin_name])

    def call_sync(self, hook_name: str, **kwargs) -> list[HookResult]:
        """Call a global registration hook in load order; errors propagate as PluginError."""
        results = []
        for impl in self._impls(hook_name, None):
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                value = impl.function(**args)
            except Exception as exc:
                raise PluginError(impl.plugin_name, f"{hook_name} failed: {type(exc).__name__}: {exc}") from exc
            results.append(HookResult(impl.plugin_name, value))
        return results

    async def call(
        self, hook_name: str, *, enabled: set[str] | None = None, contain: bool = True, **kwargs
    ) -> list[HookResult]:
        """Call a hook for each plugin in load order, resolving awaitables.

        `enabled`: the plugin names enabled in the project concerned (plugins
        that are always on are always called); None calls every plugin.
        `contain`: a plugin that raises gets a HookResult with `error` set and
        is logged with its name, instead of breaking the caller.
        """
        results = []
        for impl in self._impls(hook_name, enabled):
            args = {name: kwargs[name] for name in impl.argnames}
            try:
                value = await resolve(impl.function(**args))
            except Exception as exc:
                if not contain:
                    raise
                log.exception("plugin %s: hook %s failed", impl.plugin_name, hook_name)
                results.append(HookResult(impl.plugin_name, error=exc))
                continue
            results.append(HookResult(impl.plugin_name, value))
        return results
