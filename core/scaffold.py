"""`run.py new-plugin NAME`: a ready-to-install plugin package, outside this tree.

    python3 run.py new-plugin parcels --dir ~/src

writes `~/src/courtyard-parcels/`: a distribution `courtyard-parcels` whose
package `courtyard_parcels` is the plugin `parcels` (manifest, a model, a list
page, a permission, a navigation entry, a daily job, templates and the zh_CN
catalog), its first migration written by core's own makemigrations machinery
(so it matches the models), and tests that pass once the package is
installed into Courtyard's environment.

The files come from `core/scaffold_template/`: every `*.tmpl` file is
rendered with `string.Template` ($name, $package, $dist, $label,
$description) and `{name}`/`{package}` in paths are replaced.
"""

from __future__ import annotations

import asyncio
import importlib
import keyword
import re
import shutil
import sys
from pathlib import Path
from string import Template

from core.plugins import NAME_RE, PluginError, PluginHost

TEMPLATE_DIR = Path(__file__).resolve().parent / "scaffold_template"


class ScaffoldError(ValueError):
    """The plugin cannot be created; str() says why, in one line."""


def names_for(name: str) -> dict[str, str]:
    return {"name": name, "package": f"courtyard_{name}", "dist": f"courtyard-{name.replace('_', '-')}"}


def check_name(name: str, taken: set[str] = frozenset()) -> None:
    if not NAME_RE.match(name) or len(name) > 40:
        raise ScaffoldError(f"{name!r} is not a plugin name: use lowercase letters, digits and '_', starting with a letter")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is a Python keyword")
    if name in taken:
        raise ScaffoldError(f"a plugin named {name!r} is already installed")


def render_files(target: Path, values: dict[str, str]) -> list[Path]:
    """Copy the template tree to `target`, rendering `*.tmpl` files; returns the files written."""
    written = []
    for source in sorted(TEMPLATE_DIR.rglob("*")):
        if not source.is_file() or "__pycache__" in source.parts:
            continue
        relative = str(source.relative_to(TEMPLATE_DIR))
        relative = relative.replace("{package}", values["package"]).replace("{name}", values["name"])
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".tmpl":
            destination = destination.with_suffix("")
            text = Template(source.read_text(encoding="utf-8")).substitute(values)
            destination.write_text(text, encoding="utf-8")
        else:
            shutil.copyfile(source, destination)
        written.append(destination)
    return written


async def write_first_migration(host: PluginHost, name: str) -> Path:
    """Let core's makemigrations machinery write the plugin's `0001_initial`."""
    from core import db

    config = await db.init(host, "sqlite://:memory:")
    try:
        writers = [w for w in await db.pending_model_changes(config) if w.app_label == name]
        if len(writers) != 1:
            raise ScaffoldError(f"expected one initial migration for {name}, got {len(writers)}")
        path = Path(writers[0].write())
    finally:
        await db.close()
    # The scaffold's models refer only to core's projects and units, which core's
    # first migration creates: depending on just that keeps the plugin working
    # on Courtyard versions with other (or squashed) later core migrations.
    text = path.read_text(encoding="utf-8")
    path.write_text(
        re.sub(r"dependencies = \[.*\]\n", "dependencies = [('core', '0001_initial')]\n", text, count=1), encoding="utf-8"
    )
    return path


def create(name: str, directory: Path, *, label: str | None = None, description: str | None = None) -> Path:
    """Write the plugin distribution `courtyard-<name>/` into `directory`; returns its path."""
    host = PluginHost.discover()
    check_name(name, set(host.names))
    values = {
        **names_for(name),
        "label": label or name.replace("_", " ").capitalize(),
        "description": description or f"{label or name.replace('_', ' ').capitalize()} for Courtyard",
    }
    for key in ("label", "description"):
        if any(c in values[key] for c in '"\\$\n'):
            raise ScaffoldError(f"the {key} may not contain quotes, backslashes, '$' or line breaks")
    target = Path(directory).expanduser().resolve() / values["dist"]
    if target.exists():
        raise ScaffoldError(f"{target} already exists")
    try:
        target.relative_to(Path(__file__).resolve().parent.parent)
    except ValueError:
        pass
    else:
        raise ScaffoldError("create third-party plugins outside Courtyard's own tree (use --dir)")
    render_files(target, values)
    try:
        sys.path.insert(0, str(target))
        importlib.invalidate_caches()
        plugin_host = PluginHost.discover(extra_modules=[values["package"]])
        asyncio.run(write_first_migration(plugin_host, name))
        from core import i18n_tools

        i18n_tools.update(plugin_host.by_name[name])
    except (PluginError, ScaffoldError):
        shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        sys.path.remove(str(target))
    return target
