"""Settings: `settings.toml` at the project root, overridden by environment variables.

`COURTYARD_<SECTION>_<KEY>` overrides `[section] key`; plugins add their own
sections with defaults through the `register_settings` hook. The values are
read once at start-up into a `Settings` object (`core.settings.current()`).
"""

from __future__ import annotations

import copy
import os
import secrets
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "COURTYARD_"


def _coerce(raw: str, like: Any) -> Any:
    """Turn an environment string into the type of the value it replaces."""
    if isinstance(like, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected true/false, got {raw!r}")
    if isinstance(like, int):
        return int(raw)
    if isinstance(like, float):
        return float(raw)
    if isinstance(like, list):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


class Settings:
    """Nested settings with `settings["section"]["key"]` and `settings.get("section.key")`."""

    def __init__(self, data: dict[str, Any], path: Path | None = None):
        self.data = data
        self.path = path

    def __getitem__(self, section: str) -> dict[str, Any]:
        return self.data[section]

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def add_defaults(self, section: str, defaults: dict[str, Any], environ=None) -> None:
        """Merge a plugin's defaults under values already set, then apply the environment."""
        merged = copy.deepcopy(defaults)
        merged.update(self.data.get(section, {}))
        self.data[section] = merged
        _apply_environment({section: merged}, os.environ if environ is None else environ)

    @property
    def database_url(self) -> str:
        url = self.data["database"]["url"]
        if url.startswith("sqlite://") and not url.startswith("sqlite://:memory:"):
            # Relative SQLite paths are relative to the project root, not the cwd.
            path = Path(url[len("sqlite://"):])
            if not path.is_absolute():
                path = ROOT / path
            path.parent.mkdir(parents=True, exist_ok=True)
            url = f"sqlite://{path}"
        return url

    @property
    def storage_path(self) -> Path:
        path = Path(self.data["storage"]["path"])
        return path if path.is_absolute() else ROOT / path


def _apply_environment(data: dict[str, Any], environ) -> None:
    for section, values in data.items():
        if isinstance(values, dict):
            for key, value in values.items():
                name = f"{ENV_PREFIX}{section}_{key}".upper()
                if name in environ:
                    try:
                        values[key] = _coerce(environ[name], value)
                    except ValueError as exc:
                        raise SystemExit(f"Setting {name}: {exc}") from None
        else:
            name = f"{ENV_PREFIX}{section}".upper()
            if name in environ:
                data[section] = _coerce(environ[name], values)


def load(path: Path | None = None, environ=None) -> Settings:
    environ = os.environ if environ is None else environ
    path = Path(environ.get("COURTYARD_SETTINGS", path or ROOT / "settings.toml"))
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SystemExit(f"Settings file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(f"Settings file {path} is not valid TOML: {exc}") from None
    _apply_environment(data, environ)
    if not data["security"].get("secret_key"):
        data["security"]["secret_key"] = secrets.token_urlsafe(32)
    return Settings(data, path)


_current: Settings | None = None


def current() -> Settings:
    global _current
    if _current is None:
        _current = load()
    return _current


def use(settings: Settings) -> Settings:
    """Make `settings` the process-wide settings (the app factory and tests call this)."""
    global _current
    _current = settings
    return settings
