"""The JSON API for integrations: tokens, the guard every endpoint goes through, pages, idempotency, OpenAPI.

Plugins declare endpoints through the `register_api_routes` hook with
`core.api.api_route(...)`; core mounts them under `/api/v1/` (project
endpoints at `/api/v1/projects/{project}/<plugin>/...`, mirroring the pages'
`/p/{project}/<plugin>/`). Before a handler runs, `_serve` (one place, for
every endpoint of every plugin):

1. reads the language from `Accept-Language` (error messages follow it);
2. authenticates `Authorization: Bearer <token>` (401: unknown, revoked, expired);
3. counts the request against the token's rate limit (429 with `Retry-After`);
   the counter is one UPSERT on a row per token and minute in the database,
   so every app process on PostgreSQL or SQLite counts the same requests
   (no Redis needed);
4. records when the token was last used (at most one write a minute);
5. resolves the project in the URL: 404 unless it is active, in the token's
   list of estates and has the endpoint's module enabled;
6. sets the data scope (`core.scope`) to that project, exactly as for a user;
7. checks the endpoint's scope ("hotline:write"; write includes read): 403;
8. validates path, query and JSON body with the endpoint's pydantic models:
   422 with one entry per field;
9. runs the handler; a create with an `Idempotency-Key` header runs in one
   transaction with the key's record, so a retry (even a concurrent one)
   replays the stored response instead of creating twice;
10. validates the result against the response model and answers JSON.

Errors are always `{"error": {"status", "code", "message", "fields"}}`
(`ErrorBody`); messages follow the request's language, `code` is stable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from tortoise import fields
from tortoise.exceptions import DoesNotExist, IntegrityError
from tortoise.expressions import Q
from tortoise.models import Model

from core import clock, i18n
from core.db import connection, transaction
from core.kit import ApiRoute
from core.models import Project, User
from core.plugins import PluginError, PluginHost
from core.scope import NOTHING, OutOfScope, Scope, set_scope, unscoped, use_scope

log = logging.getLogger("courtyard.api")

PREFIX = "/api/v1"
TOKEN_PREFIX = "cy_"
MAX_ID = 2**31 - 1  # path ids beyond an INTEGER column's range do not exist
SCOPE_RE = re.compile(r"^[a-z][a-z0-9_]*:(read|write)$")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


# Models ------------------------------------------------------------------------


class ApiToken(Model):
    """A token an integration sends as `Authorization: Bearer ...`, stored as its SHA-256 only."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=100)
    note = fields.TextField(default="")
    prefix = fields.CharField(max_length=16)  # the token's first characters, to recognise it in lists
    token_hash = fields.CharField(max_length=64, unique=True)
    scopes = fields.JSONField(default=list)  # ["hotline:write", "core:read"]
    project_ids = fields.JSONField(default=list)  # the estates it may touch
    rate_limit = fields.IntField(default=0)  # requests a minute, 0: the installation's default
    expires_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField()
    created_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    revoked_at = fields.DatetimeField(null=True)
    revoked_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.SET_NULL)
    last_used_at = fields.DatetimeField(null=True)
    last_used_ip = fields.CharField(max_length=64, default="")

    class Meta:
        table = "core_api_token"
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name

    def state(self, at: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= at:
            return "expired"
        return "active"

    def allows(self, scope: str) -> bool:
        """Has `scope`; "<area>:write" includes "<area>:read"."""
        area, _, level = scope.partition(":")
        return scope in self.scopes or (level == "read" and f"{area}:write" in self.scopes)


class ApiIdempotencyKey(Model):
    """The response of a create, kept under the client's `Idempotency-Key` to replay it to retries."""

    id = fields.BigIntField(primary_key=True)
    token = fields.ForeignKeyField("core.ApiToken", related_name=False, on_delete=fields.CASCADE)
    key = fields.CharField(max_length=255)
    fingerprint = fields.CharField(max_length=64)  # SHA-256 of method, path and body
    status = fields.IntField(default=0)
    body = fields.TextField(default="")
    created_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "core_api_idempotency_key"
        unique_together = (("token", "key"),)


class ApiRateWindow(Model):
    """Requests of one token in one minute (the rate limit's counter, shared by every app process)."""

    id = fields.BigIntField(primary_key=True)
    token = fields.ForeignKeyField("core.ApiToken", related_name=False, on_delete=fields.CASCADE)
    minute = fields.BigIntField()  # Unix time // 60
    count = fields.IntField(default=0)

    class Meta:
        table = "core_api_rate_window"
        unique_together = (("token", "minute"),)


# Tokens ------------------------------------------------------------------------


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    name: str, scopes: list[str], project_ids: list[int], *, expires_at: datetime | None = None,
    rate_limit: int = 0, note: str = "", created_by: int | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the secret, which is never stored or shown again."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = await ApiToken.create(
        name=name.strip()[:100], note=note.strip(), prefix=secret[:10], token_hash=digest(secret),
        scopes=sorted(set(scopes)), project_ids=sorted(set(project_ids)), expires_at=expires_at,
        rate_limit=max(0, rate_limit), created_at=clock.now(), created_by_id=created_by,
    )
    return row, secret


async def revoke_token(token: ApiToken, by: int | None = None) -> bool:
    """Revoke at once (every process checks the row on each request); False if it already was."""
    return bool(
        await ApiToken.filter(id=token.id, revoked_at__isnull=True).update(revoked_at=clock.now(), revoked_by_id=by)
    )


def available_scopes(host: PluginHost) -> dict[str, list[str]]:
    """Areas (plugins with API endpoints) and the levels their endpoints use: {"hotline": ["read", "write"]}."""
    areas: dict[str, set[str]] = {}
    for route in declared_routes(host):
        area, _, level = route.scope.partition(":")
        areas.setdefault(area, set()).add(level)
    return {area: sorted(levels) for area, levels in sorted(areas.items())}


# The kit for plugins -------------------------------------------------------------


class ApiModel(BaseModel):
    """Base for request and response models: unknown body fields are refused, ORM objects are read by attribute."""

    model_config = ConfigDict(from_attributes=True, extra="forbid", json_schema_serialization_defaults_required=True)


class ListQuery(BaseModel):
    """Query parameters of every list endpoint; subclass it to add filters."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(50, ge=1, le=200, description="Items per page (1–200).")
    cursor: str | None = Field(None, max_length=200, description="`next_cursor` of the previous page.")
    updated_since: AwareDatetime | None = Field(
        None, description="Only records changed at or after this instant (ISO 8601 with offset), for incremental sync."
    )

    def sent(self, *names: str) -> dict[str, Any]:
        """The named filters the client sent, as equality filters: `Model.filter(**query.sent("unit_id", "state"))`."""
        return {name: value for name in names if (value := getattr(self, name)) is not None}


Item = TypeVar("Item")


class Page(ApiModel, Generic[Item]):
    """One page of a list, in order of last change (oldest first), then id."""

    items: list[Item]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class FieldError(BaseModel):
    location: str = Field(description='"body", "query" or "path".')
    field: str = Field(description="Dotted name of the field, empty for the whole body.")
    message: str
    type: str = Field(description="Machine-readable kind, e.g. missing, string_too_long, not_found.")


class ErrorDetail(BaseModel):
    status: int
    code: str = Field(description="Stable machine-readable code, e.g. invalid_request, missing_scope, not_found.")
    message: str = Field(description="What went wrong, in the request's language (Accept-Language).")
    fields: list[FieldError] = Field(default_factory=list)
    required_scope: str | None = None


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    error: ErrorDetail


class ApiError(Exception):
    """Raise from a handler to answer an error: `raise ApiError(409, "already_paid", message)`.

    `ApiError.invalid({"category_id": message})` is a 422 naming the fields at
    fault; `ApiError.not_found()` the 404 of a record this token cannot see.
    """

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
        required_scope: str | None = None, errors: list[FieldError] | None = None,
    ):
        super().__init__(str(message))
        self.status = status
        self.code = code
        self.message = str(message)
        self.headers = headers or {}
        self.required_scope = required_scope
        self.errors = list(errors or [])

    @classmethod
    def not_found(cls) -> "ApiError":
        """404: the record does not exist for this token (another estate's ids do not exist either)."""
        return cls(404, "not_found", i18n.gettext("Not found. The record does not exist, or this token has no access to it."))

    @classmethod
    def invalid(cls, fields: dict[str, str], *, location: str = "body", kind: str = "invalid") -> "ApiError":
        """422 naming the fields at fault: `ApiError.invalid({"category_id": _("Choose a category.")})`."""
        errors = [
            FieldError(location=location, field="" if name == "__all__" else name, message=str(text), type=kind)
            for name, text in fields.items()
        ]
        return cls(422, "invalid_request", i18n.gettext("The request is not valid."), errors=errors)

    def response(self) -> Response:
        detail = ErrorDetail(
            status=self.status, code=self.code, message=self.message, fields=self.errors,
            required_scope=self.required_scope,
        )
        return JSONResponse(
            ErrorBody(error=detail).model_dump(mode="json"), status_code=self.status, headers=self.headers
        )


@dataclass
class ApiCall:
    """What a handler gets: the validated input and who is calling.

    `call.project` (the estate of a project endpoint), `call.path` (path
    parameters), `call.query` and `call.body` (instances of the route's
    models), `call.record` (the record of a route declared with `model=`), `call.token` (the `ApiToken`; `call.token.name` says which
    integration), `call.request` (the Starlette request); `await call.user_id()` for a record that needs
    a staff member (a receipt's cashier).
    """

    request: Request
    route: ApiRoute
    token: ApiToken
    project: Project | None = None
    modules: set[str] = field(default_factory=set)
    path: dict[str, Any] = field(default_factory=dict)
    query: Any = None
    body: Any = None
    record: Any = None

    async def user_id(self) -> int:
        """The staff record standing for this token where a record needs a person (a receipt's cashier).

        One per token, named like it, inactive and without a password: nobody can log in with it. A colon
        cannot be part of a username made on the user form, so no staff account can be taken for it.
        """
        username = f"api:token:{self.token.id}"
        with unscoped():
            user = await User.get_or_none(username=username)
            if user is None:
                try:
                    async with transaction():
                        user = await User.create(username=username, display_name=self.token.name[:64], is_active=False)
                except IntegrityError:  # made by a concurrent request of the same token
                    user = await User.get(username=username)
        return user.id


def api_route(
    method: str,
    path: str,
    handler,
    *,
    scope: str,
    summary: str,
    description: str = "",
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int | None = None,
    creates: bool = False,
    in_project: bool = True,
    model: str | None = None,
    errors: tuple[int, ...] = (),
) -> ApiRoute:
    """An endpoint of the JSON API, for the `register_api_routes` hook.

        api_route("POST", "/work-orders", create_work_order, scope="hotline:write",
                  summary="Record a work order", body=WorkOrderIn, response=WorkOrderOut, creates=True)

    `handler(call: ApiCall)` returns what `response` validates (a model, a dict
    or an ORM object read by attribute; for `Page[...]` use `paginate`).
    `creates=True` answers 201 and honours `Idempotency-Key`. `model="hotline.WorkOrder"`
    loads the record named by `{id:int}` within the token's scope into `call.record` (404 otherwise).
    `errors=(409,)`: other statuses the handler raises with `ApiError`, for the OpenAPI document.
    """
    method = method.upper()
    if method not in METHODS:
        raise ValueError(f"api_route {path!r}: method must be one of {', '.join(METHODS)}")
    if not path.startswith("/"):
        raise ValueError(f"api_route {path!r}: the path must start with /")
    if not SCOPE_RE.match(scope):
        raise ValueError(f"api_route {path!r}: scope {scope!r} must look like '<plugin>:read' or '<plugin>:write'")
    if model and not re.search(r"\{id(:int)?\}", path):
        raise ValueError(f"api_route {path!r}: model= needs an {{id:int}} path parameter")
    for model_class in (body, query, response):
        if model_class is not None and not (isinstance(model_class, type) and issubclass(model_class, BaseModel)):
            raise ValueError(f"api_route {path!r}: body, query and response must be pydantic models, got {model_class!r}")
    return ApiRoute(
        method=method, path=path, handler=handler, scope=scope, summary=summary, description=description,
        body=body, query=query, response=response, creates=creates,
        status=status or (201 if creates else 200 if response is not None else 204),
        in_project=in_project, model=model, errors=tuple(errors),
    )


def _encode_cursor(values: list[Any]) -> str:
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str, tracked: bool) -> tuple[datetime | None, int]:
    bad = ApiError.invalid({"cursor": i18n.gettext("This cursor is not one this list gave out.")}, location="query", kind="invalid_cursor")
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if tracked:
            at, last_id = datetime.fromisoformat(values[0]), int(values[1])
            if at.tzinfo is None:
                raise ValueError
            return at, last_id
        return None, int(values[0])
    except (ValueError, TypeError, IndexError, KeyError, binascii.Error, json.JSONDecodeError, UnicodeDecodeError):
        raise bad from None


async def paginate(call: ApiCall, queryset, *, query: ListQuery | None = None, convert=None) -> dict[str, Any]:
    """One page of `queryset` for a list endpoint whose query model is a `ListQuery`.

    Records of a `core.api.ChangeTracked` model come in order of `updated_at`
    then id, so a client that keeps `updated_since` (or the cursor) misses
    nothing that changes while it pages; other models come in id order and
    refuse `updated_since`. `convert(rows)` (optional, may be async) turns the
    rows into the response's items, e.g. after loading related records.
    """
    import inspect

    q = query or call.query
    model = queryset.model
    tracked = "updated_at" in model._meta.fields_map
    if q.updated_since is not None:
        if not tracked:
            raise ApiError.invalid(
                {"updated_since": i18n.gettext("This list cannot be filtered by time of change.")}, location="query",
                kind="unsupported",
            )
        queryset = queryset.filter(updated_at__gte=q.updated_since)
    if q.cursor:
        at, last_id = _decode_cursor(q.cursor, tracked)
        if tracked:
            queryset = queryset.filter(Q(updated_at__gt=at) | Q(updated_at=at, id__gt=last_id))
        else:
            queryset = queryset.filter(id__gt=last_id)
    order = ("updated_at", "id") if tracked else ("id",)
    rows = list(await queryset.order_by(*order).limit(q.limit + 1))
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = _encode_cursor([last.updated_at.isoformat(), last.id] if tracked else [last.id])
    items = rows
    if convert is not None:
        items = convert(rows)
        if inspect.isawaitable(items):
            items = await items
    return {"items": items, "next_cursor": next_cursor}


# Collecting the endpoints ----------------------------------------------------------


def declared_routes(host: PluginHost) -> list[ApiRoute]:
    """Every endpoint the installed plugins declare, checked, with its plugin filled in (cached per host)."""
    cached = getattr(host, "_api_routes", None)
    if cached is not None:
        return cached
    found: list[ApiRoute] = []
    seen: dict[tuple[str, str], str] = {}
    for result in host.call_sync("register_api_routes"):
        for item in result.value or []:
            if not isinstance(item, ApiRoute):
                raise PluginError(result.plugin, f"register_api_routes must return core.api.api_route(...) objects, got {item!r}")
            area = item.scope.partition(":")[0]
            if area != result.plugin:
                raise PluginError(result.plugin, f"API endpoint {item.method} {item.path}: scope {item.scope!r} must start with '{result.plugin}:'")
            routed = ApiRoute(**{**item.__dict__, "plugin": result.plugin})
            full = full_path(routed)
            key = (routed.method, _openapi_path(full))
            if key in seen:
                raise PluginError(result.plugin, f"API endpoint {routed.method} {full} is already declared by {seen[key]}")
            seen[key] = result.plugin
            found.append(routed)
    host._api_routes = found  # type: ignore[attr-defined]
    return found


def full_path(route: ApiRoute) -> str:
    """The path below /api/v1 (Starlette syntax)."""
    base = "/projects/{project}" if route.in_project else ""
    if route.plugin != "core":
        base += f"/{route.plugin}"
    return (base + route.path).rstrip("/") or "/"


def _openapi_path(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", path)


def _path_params(path: str) -> list[tuple[str, str]]:
    return [(name, conv or "str") for name, conv in re.findall(r"\{(\w+)(?::(\w+))?\}", path)]


def build_api_routes(host: PluginHost) -> list[BaseRoute]:
    """Starlette routes for /api/v1: the document, its page and every declared endpoint."""
    from core.web import RouteInfo

    routes: list[BaseRoute] = [
        Route("/openapi.json", openapi_json, methods=["GET"], name="api_openapi"),
        Route("/docs", docs_page, methods=["GET"], name="api_docs"),
    ]
    for item in declared_routes(host):
        routes.append(Route(full_path(item), _endpoint(item), methods=[item.method]))
    for r in routes:
        # Public to the pages' guard (no session login): the API's own guard checks the token.
        r.courtyard = RouteInfo(public=True, plugin="core")  # type: ignore[attr-defined]
    return routes


def _endpoint(item: ApiRoute):
    async def endpoint(request: Request) -> Response:
        with use_scope(NOTHING), i18n.keep_locale():
            return await _serve(request, item)

    endpoint.__name__ = getattr(item.handler, "__name__", "api_endpoint")
    return endpoint


# The guard -----------------------------------------------------------------------


def _language(request: Request) -> str:
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh_CN"
        if tag.startswith("en"):
            return "en"
    return i18n.default_locale()


def _settings(request: Request):
    return request.app.state.settings


async def authenticate(request: Request) -> ApiToken:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="courtyard"'}
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "unauthenticated", i18n.gettext("Send an API token: Authorization: Bearer <token>."), headers=challenge)
    token = await ApiToken.get_or_none(token_hash=digest(secret.strip()))
    if token is None:
        raise ApiError(401, "invalid_token", i18n.gettext("This API token is not valid."), headers=challenge)
    state = token.state(clock.now())
    if state == "revoked":
        raise ApiError(401, "token_revoked", i18n.gettext("This API token has been revoked."), headers=challenge)
    if state == "expired":
        raise ApiError(401, "token_expired", i18n.gettext("This API token has expired."), headers=challenge)
    return token


async def count_request(token: ApiToken, limit: int, at: datetime) -> tuple[int, int]:
    """Count one request in the token's current minute; returns (requests so far, seconds until the next minute)."""
    minute = int(at.timestamp() // 60)
    conn = connection()
    postgres = conn.capabilities.dialect == "postgres"
    mark = (lambda n: f"${n}") if postgres else (lambda n: "?")
    # One atomic statement on both databases, so concurrent processes never lose a count.
    sql = (
        f"INSERT INTO core_api_rate_window (token_id, minute, count) VALUES ({mark(1)}, {mark(2)}, 1) "
        "ON CONFLICT (token_id, minute) DO UPDATE SET count = core_api_rate_window.count + 1 RETURNING count"
    )
    rows = await conn.execute_query_dict(sql, [token.id, minute])
    count = int(rows[0]["count"])
    return count, max(1, math.ceil((minute + 1) * 60 - at.timestamp()))


async def _touch(token: ApiToken, request: Request, at: datetime) -> None:
    if token.last_used_at is None or at - token.last_used_at > timedelta(minutes=1):
        ip = request.client.host if request.client else ""
        await ApiToken.filter(id=token.id).update(last_used_at=at, last_used_ip=ip[:64])


def _validation_error(exc: ValidationError, location: str) -> ApiError:
    errors = []
    for item in exc.errors(include_url=False):
        loc = [str(part) for part in item.get("loc", ())]
        errors.append(FieldError(location=location, field=".".join(loc), message=item.get("msg", ""), type=item.get("type", "")))
    return ApiError(422, "invalid_request", i18n.gettext("The request is not valid."), errors=errors)


def _refuse_nul(data: Any, location: str, path: str = "") -> None:
    """Text with NUL characters cannot be stored (PostgreSQL refuses them): a 422, not a crash."""
    if isinstance(data, str):
        if "\x00" in data:
            raise ApiError.invalid({path: i18n.gettext("Text must not contain NUL characters.")}, location=location, kind="nul_character")
    elif isinstance(data, dict):
        for key, value in data.items():
            _refuse_nul(value, location, f"{path}.{key}" if path else str(key))
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            _refuse_nul(value, location, f"{path}.{index}" if path else str(index))


async def _project(code: str, token: ApiToken, item: ApiRoute, host: PluginHost) -> tuple[Project, set[str]]:
    from core.web import enabled_modules

    if not 0 < len(code) <= Project._meta.fields_map["code"].max_length:
        raise ApiError.not_found()
    with unscoped():
        project = await Project.get_or_none(code=code, is_active=True)
        if project is None or project.id not in (token.project_ids or []):
            raise ApiError.not_found()
        modules = await enabled_modules(project, host)
    if item.plugin not in modules:
        raise ApiError.not_found()
    return project, modules


async def _serve(request: Request, item: ApiRoute) -> Response:
    i18n.set_locale(_language(request))
    try:
        return await _guarded(request, item)
    except ApiError as exc:
        return exc.response()
    except (OutOfScope, DoesNotExist):
        return ApiError.not_found().response()


async def _guarded(request: Request, item: ApiRoute) -> Response:
    settings = _settings(request)
    host = request.app.state.host
    token = await authenticate(request)
    at = clock.now()
    limit = token.rate_limit or int(settings["api"]["rate_limit_per_minute"])
    count, retry_after = await count_request(token, limit, at)
    rate_headers = {"RateLimit-Limit": str(limit), "RateLimit-Remaining": str(max(0, limit - count))}
    if count > limit:
        raise ApiError(
            429, "rate_limited",
            i18n.gettext("Too many requests for this token: at most %(limit)s a minute. Try again in %(seconds)s seconds.",
                         limit=limit, seconds=retry_after),
            headers={**rate_headers, "Retry-After": str(retry_after)},
        )
    await _touch(token, request, at)

    call = ApiCall(request=request, route=item, token=token)
    params = dict(request.path_params)
    if any("\x00" in str(value) for value in params.values()):
        raise ApiError.not_found()  # no code or id contains a NUL character (and PostgreSQL cannot look for one)
    if item.in_project:
        call.project, call.modules = await _project(params.pop("project", ""), token, item, host)
        set_scope(Scope.of([call.project.id]))
    else:
        with unscoped():
            active = await Project.filter(id__in=list(token.project_ids or []), is_active=True).values_list("id", flat=True)
        set_scope(Scope.of(active))
    if not token.allows(item.scope):
        raise ApiError(
            403, "missing_scope",
            i18n.gettext("This API token lacks the scope %(scope)s.", scope=item.scope), required_scope=item.scope,
        )
    for name, kind in _path_params(item.path):
        if kind == "int" and not 0 < int(params.get(name, 0)) <= MAX_ID:
            raise ApiError.not_found()
    call.path = params
    if item.model:
        from core.db import model_by_label

        call.record = await model_by_label(item.model).get(id=params["id"])  # another estate's: 404
    if item.query is not None:
        try:
            # Unknown parameters are ignored (cache busters, future filters), declared ones validated.
            known = {k: v for k, v in request.query_params.items() if k in item.query.model_fields}
            call.query = item.query.model_validate(known)
        except ValidationError as exc:
            raise _validation_error(exc, "query") from None
        _refuse_nul(known, "query")
    raw = b""
    if item.body is not None:
        raw = await request.body()
        try:
            call.body = item.body.model_validate_json(raw or b"null")
        except ValidationError as exc:
            raise _validation_error(exc, "body") from None
        _refuse_nul(call.body.model_dump(), "body")

    key = request.headers.get("idempotency-key", "").strip()
    if item.creates and key:
        response = await _idempotent(call, key, raw)
    else:
        response = await _run(call)
    response.headers.update(rate_headers)
    return response


async def _run(call: ApiCall) -> Response:
    item = call.route
    result = await item.handler(call)
    if isinstance(result, Response):
        return result
    if item.response is None:
        return Response(status_code=item.status)
    try:
        value = item.response.model_validate(result, from_attributes=True)
    except ValidationError:
        log.exception("API %s %s: the handler's result does not match %s", item.method, item.path, item.response.__name__)
        raise
    return Response(value.model_dump_json(), status_code=item.status, media_type="application/json")


class _Refused(Exception):
    """The create answered an error: roll back its key so a corrected retry runs."""

    def __init__(self, response: Response):
        self.response = response


class _KeyTaken(Exception):
    pass


def _fingerprint(call: ApiCall, raw: bytes) -> str:
    try:
        body = json.dumps(json.loads(raw or b"null"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        body = raw.decode(errors="replace")
    return hashlib.sha256(f"{call.route.method} {call.request.url.path}\n{body}".encode()).hexdigest()


def _replay(record: ApiIdempotencyKey, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        raise ApiError(
            422, "idempotency_key_reused",
            i18n.gettext("This Idempotency-Key was used for a different request. Use a new key for a new request."),
        )
    return Response(
        record.body, status_code=record.status, media_type="application/json", headers={"Idempotent-Replayed": "true"}
    )


async def _idempotent(call: ApiCall, key: str, raw: bytes) -> Response:
    if len(key) > 255:
        raise ApiError(422, "invalid_request", i18n.gettext("The Idempotency-Key header is longer than 255 characters."))
    fingerprint = _fingerprint(call, raw)
    token_id = call.token.id
    existing = await ApiIdempotencyKey.get_or_none(token_id=token_id, key=key)
    if existing is not None:
        return _replay(existing, fingerprint)
    try:
        async with transaction():
            try:
                # A concurrent request with the same key waits here (the unique index) until
                # this transaction ends, then fails and replays what this one stored.
                record = await ApiIdempotencyKey.create(
                    token_id=token_id, key=key, fingerprint=fingerprint, created_at=clock.now()
                )
            except IntegrityError:
                raise _KeyTaken() from None
            try:
                response = await _run(call)
            except ApiError as exc:
                raise _Refused(exc.response()) from None
            if response.status_code >= 400:
                raise _Refused(response)
            await ApiIdempotencyKey.filter(id=record.id).update(status=response.status_code, body=response.body.decode())
    except _Refused as refused:
        return refused.response
    except _KeyTaken:
        existing = await ApiIdempotencyKey.get_or_none(token_id=token_id, key=key)
        if existing is None:  # the other request was refused and rolled back: nothing to replay
            return await _idempotent(call, key, raw)
        return _replay(existing, fingerprint)
    return response


async def cleanup_job(ctx) -> None:
    """The "core.api_cleanup" job: forget old idempotency keys and rate counters."""
    at = ctx.now()
    hours = float(ctx.settings["api"]["idempotency_hours"])
    keys = await ApiIdempotencyKey.filter(created_at__lt=at - timedelta(hours=hours)).delete()
    windows = await ApiRateWindow.filter(minute__lt=int(at.timestamp() // 60) - 60).delete()
    ctx.log(i18n.gettext("Deleted %(keys)s idempotency keys and %(windows)s rate counters.", keys=keys, windows=windows))


# OpenAPI ---------------------------------------------------------------------------


def _error_responses(item: ApiRoute) -> dict[str, Any]:
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    out = {
        "401": {"description": "Missing, unknown, revoked or expired token.", **ref},
        "403": {"description": f"The token lacks the scope `{item.scope}`.", **ref},
        "429": {
            "description": "Too many requests for this token; wait `Retry-After` seconds.",
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
            **ref,
        },
    }
    if item.in_project or _path_params(item.path):
        out["404"] = {"description": "Unknown estate or record, estate not in the token's list, or module off there.", **ref}
    if item.body is not None or item.query is not None or _path_params(item.path) or item.creates:
        out["422"] = {"description": "Invalid input; `fields` names each problem.", **ref}
    for status in item.errors:
        out.setdefault(str(status), {"description": "See `error.code` and `error.message`.", **ref})
    return out


def build_openapi(host: PluginHost) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every endpoint of the installed plugins."""
    from pydantic.json_schema import models_json_schema

    routes = declared_routes(host)
    wanted: list[tuple[type[BaseModel], str]] = [(ErrorBody, "serialization")]
    for item in routes:
        if item.body is not None:
            wanted.append((item.body, "validation"))
        if item.query is not None:
            wanted.append((item.query, "validation"))
        if item.response is not None:
            wanted.append((item.response, "serialization"))
    wanted = list(dict.fromkeys(wanted))
    with i18n.use_locale("en"):
        refs, top = models_json_schema(wanted, ref_template="#/components/schemas/{model}")
        components = top.get("$defs", {})
        paths: dict[str, dict[str, Any]] = {}
        operation_ids: set[str] = set()
        for item in routes:
            path = PREFIX + _openapi_path(full_path(item))
            parameters: list[dict[str, Any]] = []
            if item.in_project:
                parameters.append({
                    "name": "project", "in": "path", "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 32},
                    "description": "The estate's code.",
                })
            for name, kind in _path_params(item.path):
                schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID} if kind == "int" else {"type": "string", "minLength": 1}
                parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
            if item.query is not None:
                schema = _component(components, refs[(item.query, "validation")])
                required = set(schema.get("required", []))
                for name, prop in schema.get("properties", {}).items():
                    prop = dict(prop)
                    description = prop.pop("description", "")
                    prop.pop("title", None)
                    param = {"name": name, "in": "query", "required": name in required, "schema": prop}
                    if description:
                        param["description"] = description
                    parameters.append(param)
            if item.creates:
                parameters.append({
                    "name": "Idempotency-Key", "in": "header", "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    "description": "A unique key per create: a retry with the same key and body replays the first answer.",
                })
            operation_id = f"{item.plugin}_{getattr(item.handler, '__name__', 'endpoint')}"
            while operation_id in operation_ids:
                operation_id += "_"
            operation_ids.add(operation_id)
            operation: dict[str, Any] = {
                "operationId": operation_id,
                "summary": str(item.summary),
                "tags": [item.plugin],
                "security": [{"bearerAuth": []}],
                "parameters": parameters,
                "x-scope": item.scope,
            }
            if item.description:
                operation["description"] = str(item.description)
            if item.body is not None:
                operation["requestBody"] = {
                    "required": True, "content": {"application/json": {"schema": refs[(item.body, "validation")]}},
                }
            success: dict[str, Any] = {"description": "OK" if item.status < 300 else str(item.status)}
            if item.response is not None:
                success["content"] = {"application/json": {"schema": refs[(item.response, "serialization")]}}
            operation["responses"] = {str(item.status): success, **_error_responses(item)}
            if item.creates:
                operation["responses"][str(item.status)]["headers"] = {
                    "Idempotent-Replayed": {"schema": {"type": "string"}, "description": "true when this is a stored answer replayed."}
                }
            paths.setdefault(path, {})[item.method.lower()] = operation
        tags = [
            {"name": p.name, "description": str(p.manifest.label)}
            for p in host.plugins if any(r.plugin == p.name for r in routes)
        ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Courtyard API",
            "version": "1",
            "description": (
                "JSON API for integrations. Authenticate with `Authorization: Bearer <token>` (tokens are made by "
                "head-office administrators under Administration → API tokens). See docs/api.md for scopes, "
                "pagination, `updated_since`, idempotency, errors and webhooks."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
        "tags": tags,
    }


def _component(components: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    return components[ref["$ref"].rsplit("/", 1)[-1]]


def openapi_document(request: Request) -> dict[str, Any]:
    state = request.app.state
    if getattr(state, "openapi", None) is None:
        state.openapi = build_openapi(state.host)
    return state.openapi


async def openapi_json(request: Request) -> Response:
    """The OpenAPI document (public: it describes the API, not any estate's data)."""
    return JSONResponse(openapi_document(request))


async def docs_page(request: Request) -> Response:
    """A browsable page of the document (Swagger UI, served from this server)."""
    from core.templating import render
    from core.web import identify

    await identify(request)
    return await render(request, "core/api_docs.html", {"openapi_url": PREFIX + "/openapi.json"})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """Errors of paths under /api/ that no endpoint handled (unknown path, wrong method, crash, database away)."""
    codes = {404: "not_found", 405: "method_not_allowed", 422: "invalid_request", 500: "server_error",
             503: "unavailable"}
    return ApiError(status, codes.get(status, "error"), message, headers=headers).response()
