"""The small value types that plugins hand to core through hooks.

Plugins import these through `core.api`, never from here directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal

HOOK_API_VERSION = "1.1"
"""Version of the hook API in `core/hookspecs.py`: major.minor.

Adding an argument to a hook or adding a hook bumps the minor version; renaming
or removing one bumps the major version (after a release of deprecation
warnings). A plugin declares the version it was written for in its manifest and
loads when the major versions match and its minor is not newer than core's.
"""


class HookDeprecationWarning(DeprecationWarning):
    """Warned (and logged with the plugin's name) when a plugin implements a deprecated hook or argument.

    Run your tests with ``-W error::core.api.HookDeprecationWarning`` to make them fail on it.
    """


@dataclass(frozen=True)
class Manifest:
    """What a plugin says about itself. A plugin package exposes one as `MANIFEST`."""

    name: str
    """Machine name: lowercase letters, digits, `_`. Also the Tortoise app label,
    the URL segment (`/p/<project>/<name>/`) and the prefix of its tables."""
    label: Any
    """Human name shown to admins (a lazy translatable string is fine)."""
    version: str
    hook_api: str
    """The `HOOK_API_VERSION` the plugin was written for, e.g. "1.0"."""
    description: Any = ""
    depends: tuple[str, ...] = ()
    """Other plugins that must be installed, loaded first, and enabled with this one."""
    per_project: bool = True
    """True: an admin enables it per project. False: always on (core)."""
    migrations: str | None = None
    """Module holding its migrations. Default: `migrations.<name>` for plugins
    in this tree, `<package>.migrations` for installed distributions."""


@dataclass(frozen=True)
class Permission:
    """A permission a plugin declares, e.g. `Permission("fees.post_payment", _("Post payments"))`.

    `roles` lists the built-in roles granted it by default; admins can change
    the grants later in the browser.
    """

    code: str
    label: Any
    roles: tuple[str, ...] = ("admin",)
    description: Any = ""


@dataclass(frozen=True)
class NavItem:
    """An entry in the navigation of a project page."""

    label: Any
    url: str
    icon: str = ""
    permission: str | None = None
    order: int = 100
    group: str = "main"
    """"main" (left navigation) or "admin" (administration menu)."""


@dataclass(frozen=True)
class DashboardTile:
    """A KPI tile or chart on a project's dashboard.

    `value` is shown big (a string or number); `chart` is optional data for
    the chart component: {"type": "bar"|"line"|"doughnut", "labels": [...],
    "datasets": [{"label": ..., "data": [...]}]}. `template` lets a plugin
    render the tile itself instead.
    """

    title: Any
    value: Any = None
    hint: Any = ""
    url: str | None = None
    chart: dict[str, Any] | None = None
    template: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    order: int = 100
    width: Literal[1, 2, 3] = 1
    permission: str | None = None


@dataclass(frozen=True)
class CustomerSection:
    """A section of the customer 360 page, rendered from the plugin's template."""

    title: Any
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    order: int = 100
    permission: str | None = None


@dataclass(frozen=True)
class SearchResult:
    """One hit of the global search."""

    kind: Any
    """What it is, shown as a badge ("work order", "bill")."""
    title: str
    url: str
    subtitle: str = ""
    project_id: int | None = None
    score: float = 0.0


JobRunner = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class JobSpec:
    """A scheduled job a plugin declares.

    `run(ctx)` receives a `core.jobs.JobContext` (project, slot time, progress
    reporting, checkpoint for resuming) and runs in its own transaction.
    """

    name: str
    """Unique, prefixed by the plugin: "fees.bill_run"."""
    cron: str
    """Cron expression in the project's time zone (global jobs: the default time zone)."""
    run: JobRunner
    label: Any = ""
    per_project: bool = True
    """True: one run per project where the plugin is enabled. False: one global run."""
    catch_up: Literal["once", "skip"] = "once"
    """After downtime: run the missed slot once ("once") or only the next one ("skip")."""
    timeout_seconds: int = 600
    max_attempts: int = 3
    retry_delay_seconds: int = 60
    transactional: bool = True
    """False for long resumable jobs (bill runs) that commit in chunks themselves."""


@dataclass(frozen=True)
class DomainEvent:
    """Something that happened, named in the past tense: "hotline.work_order_closed".

    Sent with `core.api.emit(...)` inside the transaction that made the change;
    handlers run in the same transaction, so a failing handler rolls the
    change back with it.
    """

    name: str
    project_id: int | None
    data: dict[str, Any] = field(default_factory=dict)
    actor_id: int | None = None


CallEventKind = Literal["ringing", "answered", "ended", "missed"]


@dataclass(frozen=True)
class CallEvent:
    """One event of a phone call, as a PBX adapter (hook `register_call_adapters`) reads it.

    `kind`: "ringing" (the agent's phone rings: screen pop), "answered",
    "ended" (hung up; never answered counts as missed) or "missed" (rang out,
    abandoned in the queue: becomes a callback task).
    """

    event_id: str
    """Unique per event at this PBX: the same id posted twice is processed once."""
    kind: CallEventKind
    call_id: str
    """The PBX's id of the call; ties the events of one call together."""
    caller: str
    """The calling number as the PBX sends it (any spelling)."""
    at: Any
    """When it happened: an aware datetime."""
    extension: str = ""
    """The agent's extension (`core.models.User.extension`), empty when no one was rung."""


@dataclass(frozen=True)
class EventSpec:
    """A domain event a plugin announces (hook `register_events`), offered to webhook subscribers.

    `EventSpec("hotline.work_order_closed", _("Work order closed"), _("After a satisfied callback."))`
    """

    name: str
    """"<plugin>.<what_happened>", the name given to `core.api.emit`."""
    label: Any
    description: Any = ""


@dataclass(frozen=True)
class ApiRoute:
    """An endpoint of the JSON API (hook `register_api_routes`); build it with `core.api.api_route`."""

    method: str
    path: str
    """Below the plugin's base: "/work-orders/{id:int}" (`{name}` is a string, `{name:int}` a positive integer)."""
    handler: Callable[..., Awaitable[Any]]
    """`async def handler(call: core.api.ApiCall)`, returning what `response` validates."""
    scope: str
    """"<plugin>:read" or "<plugin>:write"; a token needs it (write includes read)."""
    summary: str
    description: str = ""
    body: Any = None
    """pydantic model of the JSON request body (validated before the handler runs)."""
    query: Any = None
    """pydantic model of the query string (e.g. a subclass of `core.api.ListQuery`)."""
    response: Any = None
    """pydantic model of the response body (`core.api.Page[Item]` for lists)."""
    status: int = 200
    creates: bool = False
    """A create: an `Idempotency-Key` header makes retries of it safe."""
    in_project: bool = True
    """True: under /api/v1/projects/{project}/<plugin>/; False: /api/v1/<plugin>/."""
    errors: tuple[int, ...] = ()
    """Other error statuses the handler answers with `ApiError` (e.g. 409), listed in the OpenAPI document."""
    model: str | None = None
    """"plugin.Model" of the record named by the path's `{id:int}`: loaded within the token's
    scope into `call.record` before the handler runs (404 otherwise), like `route(model=...)`."""
    plugin: str = ""
    """Filled in by core (the plugin that registered it)."""


class CallEventError(ValueError):
    """An adapter could not read a request; str() is the message answered to the PBX (HTTP 400)."""
