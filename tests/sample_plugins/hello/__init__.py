"""A test plugin that uses the extension points (registered by tests only)."""

from starlette.responses import HTMLResponse

from core.api import (
    HOOK_API_VERSION, CustomerSection, DashboardTile, JobSpec, Manifest, NavItem, Permission, hookimpl, route,
)

MANIFEST = Manifest(name="hello", label="Hello", version="1.0", hook_api=HOOK_API_VERSION, description="Greets")

RUNS: list = []


async def greet(request):
    project = request.state.ctx.project
    return HTMLResponse(f"<p>hello from {project.code}</p>")


async def greet_job(ctx):
    RUNS.append(ctx.project_id)


@hookimpl
def register_permissions():
    return [Permission("hello.view", "See greetings", roles=("admin", "manager", "agent"))]


@hookimpl
def register_routes():
    return [route("/", greet, permission="hello.view")]


@hookimpl
def navigation(request, project):
    return [NavItem("Hello nav", f"/p/{project.code}/hello/", permission="hello.view")]


@hookimpl
def dashboard_tiles(request, project):
    return [DashboardTile("Hello tile", value=42)]


@hookimpl
def customer_sections(request, customer):
    return [CustomerSection("Hello section", "hello/section.html", {"greeting": f"hi {customer.name}"})]


@hookimpl
def register_jobs():
    return [JobSpec("hello.greet", "*/5 * * * *", greet_job, label="Greet")]
