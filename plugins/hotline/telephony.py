"""Telephony: the signed PBX webhook, call adapters, screen pops and the call log.

A PBX (or cloud call centre) posts call events to
`POST /hooks/hotline/pbx/<integration id>`, signed with the integration's
secret:

    X-Courtyard-Timestamp: <unix seconds>
    X-Courtyard-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

The timestamp is signed with the body, so an old request cannot be re-dated.
Answers (always JSON):

* 200 `{"processed": [...], "ignored": [...]}`: done. An event id already
  processed is listed under "ignored" and changes nothing (a PBX retrying
  after a lost answer must not get an error, and a replay does nothing).
* 400 `{"error": ...}`: the body cannot be read (malformed JSON, unknown
  event kind, missing fields); nothing was changed.
* 401 `{"error": ...}`: signature missing or wrong, or the timestamp is
  further than the integration's `max_skew_seconds` from our clock.
* 404: no such active integration.

The body is read by the integration's adapter (hook `register_call_adapters`);
the built-in "generic" adapter takes one event object or `{"events": [...]}`:

    {"event_id": "e-1", "event": "ringing", "call_id": "c-9", "caller": "138 0013 8000",
     "extension": "8001", "timestamp": "2026-11-23T09:30:00+08:00"}

On "ringing" the caller is looked up by normalised phone number within the
integration's estate (all estates for a head-office line) and the agent whose
`User.extension` rang gets a screen pop in every open tab, whichever app
process it is connected to (`core.realtime`). Missed calls (and calls that
ended unanswered) become callback tasks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
from datetime import datetime, timezone
from typing import Any, Mapping
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from core.api import (
    CallEvent,
    CallEventError,
    Column,
    Filter,
    ListView,
    ctx,
    gettext,
    lazy_gettext as _,
    realtime,
    render,
    timeline,
    transaction,
    unscoped,
    now,
)
from core.models import Customer, CustomerPhone, CustomerUnit, Membership, Project, User
from core.people import display_phone, try_normalize_phone
from core.plugins import current_host
from plugins.hotline.call_models import Call, CallStatus, PbxEventReceipt, PbxIntegration

SIGNATURE_HEADER = "x-courtyard-signature"
TIMESTAMP_HEADER = "x-courtyard-timestamp"
MAX_BODY_BYTES = 256 * 1024
MAX_EVENTS = 100
# Receipts of processed event ids are kept this long; older requests are refused by their timestamp anyway.
RECEIPT_DAYS = 7


# Core's clock, so the test kit's frozen time reaches these pages too.
clock = now


# Signatures ---------------------------------------------------------------------


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The `X-Courtyard-Signature` value for `body` sent at `timestamp` (what a PBX computes)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def check_signature(integration: PbxIntegration, headers: Mapping[str, str], body: bytes, now: datetime) -> str | None:
    """None when the request is authentic and fresh, else the reason it is refused."""
    timestamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
    signature = (headers.get(SIGNATURE_HEADER) or "").strip()
    if not timestamp or not signature:
        return gettext("Signature headers missing: send X-Courtyard-Timestamp and X-Courtyard-Signature.")
    if not timestamp.isdigit() or len(timestamp) > 12:
        return gettext("X-Courtyard-Timestamp must be a Unix time in seconds.")
    if not hmac.compare_digest(sign(integration.secret, timestamp, body), signature):
        return gettext("Bad signature.")
    if abs(now.timestamp() - int(timestamp)) > integration.max_skew_seconds:
        return gettext("Timestamp too old or in the future: check the PBX clock; replays are refused.")
    return None


# Adapters -----------------------------------------------------------------------


KINDS = ("ringing", "answered", "ended", "missed")


def _parse_time(value: Any) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed.astimezone(timezone.utc)
    raise CallEventError(gettext("timestamp must be Unix seconds or an ISO 8601 time with its UTC offset."))


def _text(item: Mapping[str, Any], key: str, *, required: bool = True, max_length: int = 128) -> str:
    value = item.get(key)
    if value is None or value == "":
        if required:
            raise CallEventError(gettext("Field %(field)s is missing.", field=key))
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise CallEventError(gettext("Field %(field)s must be text.", field=key))
    text = str(value).strip()
    if len(text) > max_length:
        raise CallEventError(gettext("Field %(field)s is longer than %(n)s characters.", field=key, n=max_length))
    return text


class GenericJsonAdapter:
    """Courtyard's own JSON event format (see the module documentation)."""

    name = "generic"
    label = _("Generic JSON")

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[CallEvent]:
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise CallEventError(gettext("The body is not valid JSON.")) from None
        items = data.get("events") if isinstance(data, dict) and "events" in data else [data]
        if not isinstance(items, list) or not items:
            raise CallEventError(gettext("Send one event object or {\"events\": [...]}."))
        events = []
        for item in items:
            if not isinstance(item, dict):
                raise CallEventError(gettext("Each event must be a JSON object."))
            kind = _text(item, "event", max_length=16)
            if kind not in KINDS:
                raise CallEventError(gettext("Unknown event %(kind)s: use ringing, answered, ended or missed.", kind=kind))
            events.append(
                CallEvent(
                    event_id=_text(item, "event_id"),
                    kind=kind,  # type: ignore[arg-type]
                    call_id=_text(item, "call_id"),
                    caller=_text(item, "caller", max_length=32),
                    at=_parse_time(item.get("timestamp")),
                    extension=_text(item, "extension", required=False, max_length=16),
                )
            )
        return events


def adapters() -> dict[str, Any]:
    """Every registered call adapter by name (hook `register_call_adapters`)."""
    found: dict[str, Any] = {}
    for result in current_host().call_sync("register_call_adapters"):
        for adapter in result.value or []:
            found[adapter.name] = adapter
    return found


def _check_events(events: Any) -> list[CallEvent]:
    """A third-party adapter's output, held to the same rules as ours."""
    if not isinstance(events, list) or not events:
        raise CallEventError(gettext("The request holds no call events."))
    if len(events) > MAX_EVENTS:
        raise CallEventError(gettext("At most %(n)s events per request.", n=MAX_EVENTS))
    for event in events:
        if not isinstance(event, CallEvent) or event.kind not in KINDS:
            raise CallEventError(gettext("The adapter returned something that is not a call event."))
        if not isinstance(event.at, datetime) or event.at.tzinfo is None:
            raise CallEventError(gettext("Event times must carry their UTC offset."))
        if not (event.event_id and event.call_id and event.caller):
            raise CallEventError(gettext("Each event needs an event id, a call id and the caller."))
    return events


# Processing ---------------------------------------------------------------------


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": str(message)}, status_code=status)


async def pbx_webhook(request: Request) -> Response:
    """`POST /hooks/hotline/pbx/<id>`: call events from a PBX."""
    now = clock()
    with unscoped():  # a machine caller: access is the signature, checked below
        integration = await PbxIntegration.get_or_none(id=request.path_params["id"], is_active=True)
    if integration is None:
        return _error(404, gettext("No such PBX integration."))
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return _error(413, gettext("The request is too large."))
    problem = check_signature(integration, request.headers, body, now)
    if problem:
        return _error(401, problem)
    adapter = adapters().get(integration.adapter)
    if adapter is None:
        return _error(400, gettext("The adapter %(name)s of this integration is not installed.", name=integration.adapter))
    try:
        events = _check_events(adapter.parse(request.headers, body))
    except CallEventError as exc:
        return _error(400, str(exc))
    processed, ignored = [], []
    with unscoped():
        async with transaction():
            for event in events:
                if await _handle(integration, event, now):
                    processed.append(event.event_id)
                else:
                    ignored.append(event.event_id)
    return JSONResponse({"processed": processed, "ignored": ignored})


async def _first_time(integration: PbxIntegration, event_id: str, now: datetime) -> bool:
    """Records the event id; False when it was processed before (a replay or a retry)."""
    try:
        async with transaction():  # a savepoint: the duplicate must not abort the whole request
            await PbxEventReceipt.create(integration_id=integration.id, event_id=event_id, received_at=now)
    except IntegrityError:
        return False
    return True


async def matching_customers(number: str, project_ids: list[int] | None) -> list[Customer]:
    """Customers having `number` (E.164) on file, in `project_ids` (None: every estate)."""
    query = CustomerPhone.filter(number=number)
    if project_ids is not None:
        query = query.filter(project_id__in=project_ids)
    ids = list(dict.fromkeys(await query.order_by("id").values_list("customer_id", flat=True)))
    customers = {c.id: c for c in await Customer.filter(id__in=ids)}
    return [customers[i] for i in ids if i in customers]


async def agent_for(extension: str, project_id: int | None) -> User | None:
    """The active user with this extension; the integration's own staff first when several share it."""
    if not extension:
        return None
    users = await User.filter(extension=extension, is_active=True).order_by("id")
    if len(users) > 1:
        members = set(
            await Membership.filter(user_id__in=[u.id for u in users], project_id=project_id).values_list("user_id", flat=True)
        )
        users = [u for u in users if u.id in members] or users
    return users[0] if users else None


async def _handle(integration: PbxIntegration, event: CallEvent, now: datetime) -> bool:
    if not await _first_time(integration, event.event_id, now):
        return False
    call = await Call.get_or_none(integration_id=integration.id, external_id=event.call_id)
    if call is None:
        call = await _new_call(integration, event)
    if call.status in (CallStatus.ENDED, CallStatus.MISSED):
        return True  # late events of a finished call change nothing
    agent = await agent_for(event.extension, integration.project_id)
    if agent is not None:
        call.agent_id, call.extension = agent.id, event.extension
    elif event.extension:
        call.extension = event.extension
    if event.kind == "ringing":
        await call.save()
        if agent is not None:
            await _pop(call, agent.id, "screen_pop")
        return True
    if event.kind == "answered":
        call.status, call.answered_at = CallStatus.ANSWERED, event.at
        await call.save()
    elif event.kind == "ended" and call.answered_at is not None:
        call.status, call.ended_at = CallStatus.ENDED, event.at
        call.duration_seconds = max(0, int((event.at - call.answered_at).total_seconds()))
        await call.save()
        await _log_on_customer(call)
    else:  # missed, or ended without anyone answering
        call.status, call.ended_at = CallStatus.MISSED, event.at
        await call.save()
        await _callback_for_missed(call, now)
        await _log_on_customer(call)
    if call.agent_id is not None:
        await _pop(call, call.agent_id, "call_update")
    return True


async def _new_call(integration: PbxIntegration, event: CallEvent) -> Call:
    number = try_normalize_phone(event.caller)
    caller = number or event.caller[:32]
    project_ids = [integration.project_id] if integration.project_id else None
    matches = await matching_customers(number, project_ids) if number else []
    # A head-office call belongs to an estate once the caller is known to exactly one.
    estates = {c.project_id for c in matches}
    project_id = integration.project_id or (estates.pop() if len(estates) == 1 else None)
    customer = matches[0] if len(matches) == 1 else None
    return await Call.create(
        project_id=project_id, integration_id=integration.id, external_id=event.call_id, caller=caller,
        customer_id=customer.id if customer else None, started_at=event.at, status=CallStatus.RINGING,
    )


async def _pop(call: Call, user_id: int, event: str) -> None:
    """Tell the agent's open tabs to show (or refresh) the call's screen pop."""
    payload: dict[str, Any] = {"call": call.id, "status": call.status, "fragment": f"/hotline/calls/{call.id}/pop"}
    if event == "call_update":
        # Only refreshes a pop that is still open: a closed one stays closed.
        payload.update(target=f"#call-pop-{call.id}", swap="outerHTML")
    await realtime.publish(realtime.user_channel(user_id), event, payload)


async def _callback_for_missed(call: Call, now: datetime) -> None:
    if call.project_id is None or call.callback_task_id is not None:
        return  # an unknown number on a head-office line: the head-office call log lists it as missed
    from plugins.hotline.workorders import request_callback

    task = await request_callback(
        call.project_id, customer_id=call.customer_id, unit_id=None,
        reason=gettext("Missed call from %(number)s", number=display_phone(call.caller)),
        due_at=now, source=f"hotline.Call:{call.id}", phone=call.caller if call.caller.startswith("+") else "",
    )
    call.callback_task_id = task.id
    await call.save(update_fields=["callback_task_id"])


async def _log_on_customer(call: Call) -> None:
    if call.customer_id is None:
        return
    customer = await Customer.get(id=call.customer_id)
    if call.status == CallStatus.MISSED:
        body = gettext("Missed call from %(number)s", number=display_phone(call.caller))
    else:
        body = gettext("Call of %(duration)s", duration=format_duration(call.duration_seconds))
    await timeline.post(
        customer, "call", body, author=call.agent_id,
        data={"call": call.id, "status": call.status, "duration": call.duration_seconds},
    )


def format_duration(seconds: int | None) -> str:
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


async def link_call(call_id: int, *, project_id: int, customer_id: int | None = None, work_order_id: int | None = None) -> bool:
    """Record what came of a call (intake calls this with `?call=<id>`): its estate, caller and work order.

    Only a call of `project_id`, or a not yet identified head-office call, is
    linked; returns False (and changes nothing) for any other call id.
    """
    with unscoped():
        call = await Call.get_or_none(id=call_id)
        if call is None or call.project_id not in (None, project_id):
            return False
        call.project_id = project_id
        if customer_id is not None and call.customer_id is None:
            call.customer_id = customer_id
        if work_order_id is not None:
            call.work_order_id = work_order_id
        await call.save(update_fields=["project_id", "customer_id", "work_order_id"])
        return True


async def cleanup_receipts(ctx) -> None:
    from datetime import timedelta

    deleted = await PbxEventReceipt.filter(received_at__lt=clock() - timedelta(days=RECEIPT_DAYS)).delete()
    ctx.log(f"deleted {deleted} PBX event receipts")


# Screen pop ---------------------------------------------------------------------


async def load_call(request: Request, call_id: int) -> Call:
    """The call if the user may see it: theirs, of one of their estates, or a head-office call for head office."""
    principal = ctx(request).principal
    with unscoped():
        call = await Call.get_or_none(id=call_id)
    if call is None:
        raise HTTPException(404)
    if call.agent_id == principal.id:
        return call
    if call.project_id is None:
        if principal.is_head_office:
            return call
    elif principal.member_of(call.project_id) and principal.can("hotline.view", call.project_id):
        return call
    raise HTTPException(404)


async def _customer_cards(customers: list[Customer], call: Call) -> list[dict[str, Any]]:
    from plugins.hotline.models import Status, WorkOrder

    if not customers:
        return []
    ids = [c.id for c in customers]
    with unscoped():  # the customers were found within what the user may see (see screen_pop)
        projects = {p.id: p for p in await Project.filter(id__in=list({c.project_id for c in customers}))}
        links = await CustomerUnit.filter(customer_id__in=ids, end_date__isnull=True).select_related("unit")
        open_orders = await WorkOrder.filter(customer_id__in=ids, status__in=Status.OPEN).values_list("customer_id", flat=True)
    cards = []
    for customer in customers:
        project = projects[customer.project_id]
        base = f"/p/{project.code}/"
        cards.append({
            "customer": customer,
            "project": project,
            "units": [link for link in links if link.customer_id == customer.id],
            "open_orders": sum(1 for cid in open_orders if cid == customer.id),
            "url": f"{base}customers/{customer.id}",
            "intake_url": f"{base}hotline/intake?" + urlencode({"customer": customer.id, "call": call.id}),
        })
    return cards


async def screen_pop(request: Request) -> Response:
    """The screen pop of a call (fetched by the agent's browser when the realtime message arrives)."""
    call = await load_call(request, request.path_params["id"])
    principal = ctx(request).principal
    visible = await principal.project_ids()
    if call.project_id is not None:
        visible = [call.project_id] if call.project_id in visible or principal.is_head_office else []
    customers = await _visible_customers(call, visible)
    cards = await _customer_cards(customers, call)
    new_customer_links = []
    if not cards:
        with unscoped():
            projects = await Project.filter(id__in=visible, is_active=True).order_by("code")
        for project in projects:
            query = {"call": call.id}
            if call.caller.startswith("+"):
                query["phone"] = call.caller
            new_customer_links.append((project, f"/p/{project.code}/hotline/intake?" + urlencode(query)))
    return await render(
        request, "hotline/telephony/pop.html",
        {"call": call, "cards": cards, "new_customer_links": new_customer_links, "duration": format_duration(call.duration_seconds)},
    )


async def _visible_customers(call: Call, project_ids: list[int]) -> list[Customer]:
    if not call.caller.startswith("+") or not project_ids:
        return []
    with unscoped():
        return await matching_customers(call.caller, project_ids)


# Call log -----------------------------------------------------------------------


def _call_query(request: Request):
    """A project's calls; on the head-office log also the calls no estate has claimed yet."""
    context = ctx(request)
    if context.project is not None:
        return Call.all()
    ids = context.project_ids
    with unscoped():
        condition = Q(project_id__in=ids)
        if context.principal.is_head_office:
            condition |= Q(project_id__isnull=True)
        return Call.filter(condition)


def _customer_link(call: Call, request: Request) -> str | None:
    if call.customer_id is None or call.project is None:
        return None
    return f"/p/{call.project.code}/customers/{call.customer_id}"


def _order_link(call: Call, request: Request) -> str | None:
    if call.work_order_id is None or call.project is None:
        return None
    return f"/p/{call.project.code}/hotline/orders/{call.work_order_id}"


def _callback_link(call: Call, request: Request) -> str | None:
    if call.callback_task_id is None or call.project is None:
        return None
    return f"/p/{call.project.code}/hotline/callbacks/{call.callback_task_id}"


def _caller_search(text: str) -> Q | None:
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) < 4:
        return None
    return Q(caller__contains=digits[-11:]) | Q(customer__name__icontains=text)


call_log = ListView(
    "calls", _("Call log"),
    query=_call_query,
    columns=[
        Column("started_at", _("Time"), format="datetime", sort=True),
        Column("caller", _("Caller"), template="hotline/telephony/_caller_cell.html"),
        Column("customer", _("Customer"), field="customer.name", link=_customer_link),
        Column("project", _("Estate"), field="project.name"),
        Column("agent", _("Agent"), field="agent.display_name"),
        Column("status", _("Outcome"), format="choice", choices=CallStatus.CHOICES, sort=True),
        Column("duration_seconds", _("Duration"), value=lambda call: format_duration(call.duration_seconds), sort="duration_seconds"),
        Column("work_order", _("Work order"), value=lambda call: call.work_order_id and gettext("Open"), link=_order_link),
        Column("callback", _("Callback"), value=lambda call: call.callback_task_id and gettext("Task"), link=_callback_link),
    ],
    filters=[
        Filter.choice("status", _("Outcome"), CallStatus.CHOICES),
        Filter.date_range("started", _("Date"), field="started_at"),
    ],
    search_q=_caller_search,
    search_placeholder=_("Number or name"),
    select_related=["customer", "agent", "project"],
    default_sort="-started_at",
)


async def call_log_page(request: Request) -> Response:
    return await call_log.response(request)


# Routes (added to the plugin's hooks in plugins/hotline/__init__.py) --------------


def project_routes() -> list:
    from core.api import route

    return [route("/calls", call_log_page, name="hotline_calls", permission="hotline.view")]


def global_routes() -> list:
    from core.api import route

    return [
        route("/pbx/{id:int}", pbx_webhook, methods=["POST"], name="hotline_pbx_webhook", webhook=True),
        route("/calls", call_log_page, name="hotline_calls_all", permission="hotline.view"),
        route("/calls/{id:int}/pop", screen_pop, name="hotline_screen_pop"),
        *admin_routes(),
    ]


# PBX integrations (administration) ------------------------------------------------

MANAGE = "hotline.manage_telephony"


def _manageable_q(request: Request) -> Q:
    """Integrations of estates where the user has the permission; head-office ones for head office."""
    principal = ctx(request).principal
    project_ids = [pid for pid in ctx(request).project_ids if principal.can(MANAGE, pid)]
    condition = Q(project_id__in=project_ids)
    if MANAGE in principal.head_office:
        condition |= Q(project_id__isnull=True)
    return condition


async def integrations_page(request: Request, *, errors: dict | None = None, values: dict | None = None,
                            secret: tuple[PbxIntegration, str] | None = None, status_code: int = 200) -> Response:
    principal = ctx(request).principal
    with unscoped():
        integrations = await PbxIntegration.filter(_manageable_q(request)).select_related("project")
        projects = await Project.filter(id__in=[p for p in ctx(request).project_ids if principal.can(MANAGE, p)], is_active=True)
    base_url = request.app.state.settings["server"]["base_url"].rstrip("/")
    return await render(request, "hotline/telephony/integrations.html", {
        "integrations": integrations,
        "project_options": ([("", gettext("Head office (every estate)"))] if MANAGE in principal.head_office else [])
        + [(str(p.id), p.name) for p in projects],
        "adapter_options": [(name, str(getattr(a, "label", name))) for name, a in adapters().items()],
        "hook_url": lambda integration: f"{base_url}/hooks/hotline/pbx/{integration.id}",
        "errors": errors or {},
        "values": values or {},
        "secret": secret,
    }, status_code=status_code)


async def integrations_view(request: Request) -> Response:
    return await integrations_page(request)


async def integration_create(request: Request) -> Response:
    from core.api import form_data

    values = await form_data(request)
    principal = ctx(request).principal
    errors: dict[str, str] = {}
    name = (values.get("name") or "").strip()
    if not name or len(name) > 64:
        errors["name"] = gettext("Name the PBX (at most %(n)s characters).", n=64)
    project_id = int(values["project"]) if values.get("project", "").isdigit() else None
    if project_id is None and MANAGE not in principal.head_office:
        errors["project"] = gettext("Choose the estate.")
    elif project_id is not None and (project_id not in ctx(request).project_ids or not principal.can(MANAGE, project_id)):
        errors["project"] = gettext("Choose the estate.")
    if values.get("adapter") not in adapters():
        errors["adapter"] = gettext("Choose the PBX's event format.")
    if errors:
        return await integrations_page(request, errors=errors, values=values, status_code=422)
    with unscoped():
        integration = await PbxIntegration.create(name=name, project_id=project_id, adapter=values["adapter"], secret=new_secret())
    return await integrations_page(request, secret=(integration, integration.secret))


async def integration_rotate(request: Request) -> Response:
    """A new secret (the old one stops working at once), shown this one time."""
    with unscoped():
        integration = await PbxIntegration.filter(_manageable_q(request), id=request.path_params["id"]).first()
        if integration is None:
            raise HTTPException(404)
        integration.secret = new_secret()
        await integration.save(update_fields=["secret"])
    return await integrations_page(request, secret=(integration, integration.secret))


def admin_routes() -> list:
    from core.api import route

    return [
        route("/pbx", integrations_view, name="hotline_pbx", permission=MANAGE),
        route("/pbx", integration_create, methods=["POST"], name="hotline_pbx_create", permission=MANAGE),
        route("/pbx/{id:int}/secret", integration_rotate, methods=["POST"], name="hotline_pbx_secret", permission=MANAGE),
    ]
