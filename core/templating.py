"""Templates: theme -> plugin -> core resolution, partial rendering for htmx.

Each theme gets its own Jinja2 environment whose loader looks in
`themes/<theme>/templates`, then every plugin's template directories, then
core's. `default:core/base.html` always names the un-themed template, so a
theme's override can extend the template it replaces.

`render(request, "hotline/orders.html", ctx, block="rows")` renders the
whole page, or only the named block for an htmx request (jinja2-fragments),
so one template serves both.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jinja2
from jinja2_fragments import render_block
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from core import i18n
from core.people import display_phone, mask_id_number, mask_phone
from core.settings import ROOT

log = logging.getLogger("courtyard.templates")

THEMES_DIR = ROOT / "themes"


def list_themes(themes_dir: Path = THEMES_DIR) -> list[str]:
    if not themes_dir.is_dir():
        return ["default"]
    return sorted(p.name for p in themes_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _json_attr(value: Any) -> Markup:
    """JSON for an HTML attribute (data-chart='...'); autoescape still applies to the result."""
    return json.dumps(value, ensure_ascii=False, default=str)


PERSONAL_DATA = "core.view_personal_data"


def may_see_personal_data(request: Request | None, project=None) -> bool:
    """Whether the current user sees ID-card and phone numbers in `project` (default: the page's project).

    On pages outside a project only a head-office grant counts, since the
    record shown may belong to any estate.
    """
    from core.web import ctx

    if request is None:
        return False
    context = ctx(request)
    if context.principal is None:
        return False
    if project is None:
        project = context.project
    project_id = getattr(project, "id", project)
    if project_id is None:
        return PERSONAL_DATA in context.principal.head_office
    return context.principal.can(PERSONAL_DATA, project_id)


@jinja2.pass_context
def _mask_id(context, value, project=None) -> str:
    """`{{ mask_id(customer.id_number, customer.project_id) }}`: shown in full only to those allowed."""
    value = value or ""
    return value if may_see_personal_data(context.get("request"), project) else mask_id_number(value)


@jinja2.pass_context
def _mask_phone(context, value, project=None) -> str:
    """`{{ mask_phone(phone.number) }}`: a stored E.164 number, readable or masked (138****8000)."""
    if not value:
        return ""
    return display_phone(value) if may_see_personal_data(context.get("request"), project) else mask_phone(value)


class Templates:
    def __init__(self, template_dirs: list[Path], themes_dir: Path = THEMES_DIR):
        self.template_dirs = [Path(p) for p in template_dirs]
        self.themes_dir = themes_dir
        self._envs: dict[str, jinja2.Environment] = {}
        self.globals: dict[str, Any] = {}
        self.filters: dict[str, Any] = {}

    def env(self, theme: str = "default") -> jinja2.Environment:
        if theme not in self._envs:
            if theme not in list_themes(self.themes_dir):
                theme = "default"
            base = jinja2.FileSystemLoader([str(p) for p in self.template_dirs])
            theme_dirs = [self.themes_dir / theme / "templates"]
            if theme != "default":
                theme_dirs.append(self.themes_dir / "default" / "templates")
            loader = jinja2.ChoiceLoader(
                [
                    jinja2.FileSystemLoader([str(p) for p in theme_dirs if p.is_dir()]),
                    base,
                    jinja2.PrefixLoader({"default": base}, delimiter=":"),
                ]
            )
            env = jinja2.Environment(
                loader=loader,
                autoescape=True,
                extensions=[i18n.PluginCatalogs, "jinja2.ext.do"],
                trim_blocks=True,
                lstrip_blocks=True,
                undefined=jinja2.ChainableUndefined,
            )
            env.globals.update(self.globals)
            env.globals.update(mask_id=_mask_id, mask_phone=_mask_phone)
            env.filters.update(self.filters)
            env.filters.update(
                money=i18n.format_money,
                number=i18n.format_number,
                percent=i18n.format_percent,
                tojson_attr=_json_attr,
                mask_id=_mask_id,
                mask_phone=_mask_phone,
            )
            self._envs[theme] = env
        return self._envs[theme]

    def render_string(self, name: str, context: dict[str, Any], theme: str = "default", block: str | None = None) -> str:
        env = self.env(theme)
        if block:
            return render_block(env, name, block, context)
        return env.get_template(name).render(context)


async def base_context(request: Request) -> dict[str, Any]:
    """What every page's layout needs: user, project, navigation, language, CSRF."""
    from core.web import ctx

    context = ctx(request)
    project = context.project
    tz = project.timezone if project else request.app.state.settings["i18n"]["default_timezone"]
    toasts = []
    raw = request.cookies.get("courtyard_toast")
    if raw:
        try:
            toasts.append(json.loads(unquote(raw)))
        except ValueError:
            pass
    csrf = request.scope.get("csrftoken")
    data: dict[str, Any] = {
        "request": request,
        "user": context.principal,
        "project": project,
        "locale": i18n.get_locale(),
        "locales": i18n.LOCALE_NAMES,
        "csrf_token": csrf() if csrf else "",
        "toasts": toasts,
        "tz": tz,
        "datetime": lambda value, fmt="short": i18n.format_datetime(value, tz, fmt),
        "date": lambda value: i18n.format_date(value, tz),
        "nav": [],
        "projects": [],
        "theme_css": None,
    }
    if context.principal is not None and not _is_fragment(request):
        from core.shell import navigation, projects_for

        data["projects"] = await projects_for(context.principal)
        data["nav"] = await navigation(request, data["projects"])
    if project is not None and project.theme != "default":
        data["theme_css"] = f"/static/themes/{project.theme}/theme.css"
    return data


def _is_fragment(request: Request) -> bool:
    return bool(request.headers.get("hx-request")) and not request.headers.get("hx-boosted")


async def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render a page, or only `block` of it when htmx asks for a fragment."""
    from core.web import ctx

    templates: Templates = request.app.state.templates
    data = await base_context(request)
    data.update(context or {})
    project = ctx(request).project
    theme = project.theme if project else "default"
    fragment = block if block and _is_fragment(request) else None
    html = templates.render_string(name, data, theme=theme, block=fragment)
    response = HTMLResponse(html, status_code=status_code, headers=headers)
    if data["toasts"]:
        response.delete_cookie("courtyard_toast")
    return response
