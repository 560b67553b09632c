"""An in-tree test plugin that implements every hook in core/hookspecs.py.

tests/test_containment.py checks that it covers every hook (add an
implementation here when you add a hook) and uses it to prove that a plugin
failing at request time breaks only its own slot. Any hook named in `FAIL`
raises; tests add names and the `everything` fixture clears them.
"""

from pathlib import Path

from starlette.responses import PlainTextResponse

from core.api import (
    HOOK_API_VERSION, ApiModel, CallEvent, CustomerSection, DashboardTile, EventSpec, JobSpec, Manifest, NavItem,
    Permission, SearchResult, api_route, hookimpl, route,
)

MANIFEST = Manifest(name="everything", label="Everything", version="1.0", hook_api=HOOK_API_VERSION)

HERE = Path(__file__).resolve().parent
FAIL: set[str] = set()
CALLS: dict[str, list] = {}


def _called(hook: str, *args):
    CALLS.setdefault(hook, []).append(args)
    if hook in FAIL:
        raise RuntimeError(f"everything.{hook} is broken on purpose")


async def page(request):
    return PlainTextResponse(f"everything in {request.state.ctx.project.code}")


async def ping(request):
    return PlainTextResponse("pong")


async def chore(ctx):
    _called("job", ctx.project_id)


class EchoAdapter:
    """A PBX format where the body is "<kind> <caller>"."""

    name = "everything"

    def parse(self, headers, body):
        kind, caller = body.decode().split()
        from datetime import datetime, timezone

        return [CallEvent(event_id=f"{kind}-{caller}", kind=kind, call_id=caller, caller=caller, at=datetime.now(timezone.utc))]


# Global hooks -------------------------------------------------------------------


@hookimpl
def register_models():
    _called("register_models")
    return []  # no tables: the containment tests need none


@hookimpl
def register_routes():
    _called("register_routes")
    return [route("/", page, permission="everything.view")]


@hookimpl
def register_global_routes():
    _called("register_global_routes")
    return [route("/ping", ping)]


@hookimpl
def register_permissions():
    _called("register_permissions")
    return [Permission("everything.view", "See everything", roles=("admin", "manager", "agent"))]


@hookimpl
def register_jobs():
    _called("register_jobs")
    return [JobSpec("everything.chore", "*/5 * * * *", chore, label="Everything's chore", max_attempts=1)]


@hookimpl
def register_settings():
    _called("register_settings")
    return {"greeting": "hello from settings"}


@hookimpl
def register_template_dirs():
    _called("register_template_dirs")
    return [str(HERE / "more_templates")]


@hookimpl
def register_static_dirs():
    _called("register_static_dirs")
    return [str(HERE / "more_static")]


@hookimpl
def register_call_adapters():
    _called("register_call_adapters")
    return [EchoAdapter()]


class Pong(ApiModel):
    project: str


async def api_ping(call):
    return {"project": call.project.code}


@hookimpl
def register_api_routes():
    _called("register_api_routes")
    return [api_route("GET", "/ping", api_ping, scope="everything:read", response=Pong, summary="Ping")]


@hookimpl
def register_events():
    _called("register_events")
    return [EventSpec("everything.happened", "Something happened")]


@hookimpl
def startup(app):
    _called("startup", app)


# Project hooks ------------------------------------------------------------------


@hookimpl
def navigation(request, project):
    _called("navigation", project)
    if project is None:
        return []
    return [NavItem("Everything nav", f"/p/{project.code}/everything/", permission="everything.view")]


@hookimpl
async def dashboard_tiles(request, project):
    _called("dashboard_tiles", project)
    return [DashboardTile("Everything tile", value=7)]


@hookimpl
def customer_sections(request, customer):
    _called("customer_sections", customer)
    return [CustomerSection("Everything section", "everything/section.html", {"greeting": f"everything knows {customer.name}"})]


@hookimpl
def search(request, query, project_ids):
    _called("search", query)
    return [SearchResult("Everything", f"EV {query}", "/everything/ping", project_id=pid) for pid in project_ids]


@hookimpl
def domain_event(event):
    _called("domain_event", event.name)


@hookimpl
def demo_data(project, rng):
    _called("demo_data", project)


@hookimpl
def dunning_holds(project, unit_ids):
    _called("dunning_holds", project, unit_ids)
    return set()


@hookimpl
def callback_task_requested(project, customer_id, unit_id, reason, due_at, source):
    _called("callback_task_requested", customer_id, reason)
    return None
