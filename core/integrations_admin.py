"""Administration pages for integrations: API tokens and webhook subscriptions with their deliveries.

Tokens and subscriptions span estates (an ERP sees several), so like jobs and
the outbox they are for head-office users holding `core.manage_integrations`.
Secrets (a token, a subscription's signing secret) are shown once, in the
answer to the form that made them, and never again.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from tortoise.functions import Count

from core import clock, rest, webhooks
from core.access import record
from core.i18n import gettext as _, lazy_gettext
from core.kit import NavItem
from core.models import Project
from core.scope import unscoped
from core.templating import render
from core.web import ctx, redirect

PERMISSION = "core.manage_integrations"
DELIVERY_PAGE_SIZE = 50
URL_RE = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)
TOKEN_STATES = {"active": lazy_gettext("Active"), "revoked": lazy_gettext("Revoked"), "expired": lazy_gettext("Expired")}
TOKEN_BADGES = {"active": "done", "revoked": "danger", "expired": "muted"}
LEVELS = {"": lazy_gettext("No access"), "read": lazy_gettext("Read"), "write": lazy_gettext("Read and write")}


def navigation_items(request: Request) -> list[NavItem]:
    principal = ctx(request).principal
    if principal is None or PERMISSION not in principal.head_office:
        return []
    return [
        NavItem(_("API tokens"), "/admin/api-tokens", icon="shield", group="admin", order=960, permission=PERMISSION),
        NavItem(_("Webhooks"), "/admin/webhooks", icon="bell", group="admin", order=970, permission=PERMISSION),
    ]


def _require(request: Request) -> None:
    if PERMISSION not in ctx(request).principal.head_office:
        raise HTTPException(403)


async def _projects() -> list[Project]:
    with unscoped():
        return list(await Project.filter(is_active=True).order_by("code"))


def _chosen_projects(form: FormData, projects: list[Project]) -> list[int]:
    known = {str(p.id): p.id for p in projects}
    return sorted({known[v] for v in form.getlist("projects") if v in known})


def _area_labels(request: Request) -> dict[str, str]:
    host = request.app.state.host
    return {p.name: str(p.manifest.label) for p in host.plugins}


# API tokens -----------------------------------------------------------------------


async def tokens_page(request: Request) -> Response:
    _require(request)
    tokens = await rest.ApiToken.all().select_related("created_by").order_by("-id")
    projects = {p.id: p for p in await _projects()}
    now = clock.now()
    return await render(request, "core/integrations/tokens.html", {
        "tokens": [(t, t.state(now)) for t in tokens], "projects": projects, "states": TOKEN_STATES,
        "badges": TOKEN_BADGES,
    })


async def _token_form(request: Request, values: dict[str, Any], errors: dict[str, str], status: int = 200) -> Response:
    return await render(request, "core/integrations/token_new.html", {
        "values": values, "errors": errors, "projects": await _projects(),
        "areas": rest.available_scopes(request.app.state.host), "area_labels": _area_labels(request), "levels": LEVELS,
        "default_limit": request.app.state.settings["api"]["rate_limit_per_minute"],
    }, status_code=status)


async def token_new(request: Request) -> Response:
    _require(request)
    return await _token_form(request, {"projects": [], "scopes": {}}, {})


def _expiry(raw: str, tz: str, errors: dict[str, str]) -> datetime | None:
    """A date typed in the form: the token works through that day (the installation's time zone)."""
    if not raw.strip():
        return None
    try:
        day = datetime.strptime(raw.strip(), "%Y-%m-%d").date()
    except ValueError:
        errors["expires_on"] = _("Enter a date like 2027-12-31, or leave it empty.")
        return None
    at = datetime.combine(day + timedelta(days=1), time(0), tzinfo=ZoneInfo(tz))
    if at <= clock.now():
        errors["expires_on"] = _("The expiry date must be today or later.")
    return at


async def token_create(request: Request) -> Response:
    _require(request)
    form = await request.form()
    projects = await _projects()
    areas = rest.available_scopes(request.app.state.host)
    values: dict[str, Any] = {
        "name": (form.get("name") or "").strip(), "note": (form.get("note") or "").strip(),
        "expires_on": (form.get("expires_on") or "").strip(), "rate_limit": (form.get("rate_limit") or "").strip(),
        "projects": _chosen_projects(form, projects),
        "scopes": {area: form.get(f"scope_{area}") or "" for area in areas},
    }
    errors: dict[str, str] = {}
    if not values["name"] or len(values["name"]) > 100:
        errors["name"] = _("Name the integration (at most %(n)s characters), e.g. WeChat mini-program.", n=100)
    if not values["projects"]:
        errors["projects"] = _("Choose at least one estate.")
    scopes = [f"{area}:{level}" for area, level in values["scopes"].items() if level and level in areas[area]]
    if not scopes:
        errors["scopes"] = _("Give the token access to at least one module.")
    expires_at = _expiry(values["expires_on"], request.app.state.settings["i18n"]["default_timezone"], errors)
    limit = 0
    if values["rate_limit"]:
        try:
            limit = int(values["rate_limit"])
            if not 1 <= limit <= 100_000:
                raise ValueError
        except ValueError:
            errors["rate_limit"] = _("Enter requests per minute between 1 and 100000, or leave it empty for the default.")
    if errors:
        return await _token_form(request, values, errors, 422)
    user_id = ctx(request).principal.id
    token, secret = await rest.issue_token(
        values["name"], scopes, values["projects"], expires_at=expires_at, rate_limit=limit, note=values["note"],
        created_by=user_id,
    )
    await record(request, "api_token.created", token.name, token=token.id, scopes=scopes, projects=values["projects"])
    return await render(
        request, "core/integrations/secret.html",
        {"kind": "token", "secret": secret, "name": token.name, "next_url": f"/admin/api-tokens/{token.id}"},
        headers={"Cache-Control": "no-store"},
    )


async def _token(request: Request) -> rest.ApiToken:
    token = await rest.ApiToken.get_or_none(id=request.path_params["id"]).select_related("created_by", "revoked_by")
    if token is None:
        raise HTTPException(404)
    return token


async def token_detail(request: Request) -> Response:
    _require(request)
    token = await _token(request)
    projects = {p.id: p for p in await _projects()}
    state = token.state(clock.now())
    return await render(request, "core/integrations/token.html", {
        "token": token, "state": state, "states": TOKEN_STATES, "badges": TOKEN_BADGES, "projects": projects,
        "area_labels": _area_labels(request), "default_limit": request.app.state.settings["api"]["rate_limit_per_minute"],
    })


async def token_revoke(request: Request) -> Response:
    _require(request)
    token = await _token(request)
    if await rest.revoke_token(token, ctx(request).principal.id):
        await record(request, "api_token.revoked", token.name, token=token.id)
        return redirect(request, f"/admin/api-tokens/{token.id}", _("Token %(name)s revoked. It stops working at once.", name=token.name))
    return redirect(request, f"/admin/api-tokens/{token.id}", _("This token was already revoked."), level="warning")


# Webhook subscriptions ----------------------------------------------------------------


async def subscriptions_page(request: Request) -> Response:
    _require(request)
    subscriptions = await webhooks.WebhookSubscription.all()
    counts: dict[tuple[int, str], int] = {
        (row["subscription_id"], row["state"]): row["n"]
        for row in await webhooks.WebhookDelivery.all().group_by("subscription_id", "state")
        .annotate(n=Count("id")).values("subscription_id", "state", "n")
    }
    return await render(request, "core/integrations/webhooks.html", {
        "subscriptions": subscriptions, "counts": counts, "projects": {p.id: p for p in await _projects()},
        "states": webhooks.DeliveryState.CHOICES, "badges": webhooks.DeliveryState.BADGES,
    })


def _event_groups(request: Request) -> list[dict[str, Any]]:
    labels = _area_labels(request)
    groups: dict[str, list[Any]] = {}
    for name, spec in webhooks.known_events(request.app.state.host).items():
        groups.setdefault(name.partition(".")[0], []).append(spec)
    return [{"plugin": plugin, "label": labels.get(plugin, plugin), "events": specs} for plugin, specs in groups.items()]


async def _subscription_form(
    request: Request, values: dict[str, Any], errors: dict[str, str], subscription=None, status: int = 200
) -> Response:
    context: dict[str, Any] = {
        "values": values, "errors": errors, "subscription": subscription, "projects": await _projects(),
        "event_groups": _event_groups(request),
    }
    if subscription is None:
        return await render(request, "core/integrations/webhook_new.html", context, status_code=status)
    context.update(await _deliveries_context(request, subscription))
    return await render(request, "core/integrations/webhook.html", context, status_code=status)


def _subscription_values(form: FormData, projects: list[Project], request: Request) -> tuple[dict[str, Any], dict[str, str]]:
    known = webhooks.known_events(request.app.state.host)
    values = {
        "name": (form.get("name") or "").strip(), "url": (form.get("url") or "").strip(),
        "note": (form.get("note") or "").strip(), "is_active": form.get("is_active") == "1",
        "events": sorted({e for e in form.getlist("events") if e in known}),
        "projects": _chosen_projects(form, projects),
    }
    errors: dict[str, str] = {}
    if not values["name"] or len(values["name"]) > 100:
        errors["name"] = _("Name the subscriber (at most %(n)s characters).", n=100)
    if not URL_RE.match(values["url"]) or len(values["url"]) > 500:
        errors["url"] = _("Enter the receiver's address, starting with http:// or https://.")
    if not values["events"]:
        errors["events"] = _("Choose at least one event.")
    if not values["projects"]:
        errors["projects"] = _("Choose at least one estate.")
    return values, errors


async def subscription_new(request: Request) -> Response:
    _require(request)
    return await _subscription_form(request, {"events": [], "projects": [], "is_active": True}, {})


async def subscription_create(request: Request) -> Response:
    _require(request)
    values, errors = _subscription_values(await request.form(), await _projects(), request)
    if errors:
        return await _subscription_form(request, values, errors, status=422)
    secret = webhooks.new_secret()
    subscription = await webhooks.WebhookSubscription.create(
        name=values["name"], url=values["url"], note=values["note"], is_active=values["is_active"],
        events=values["events"], project_ids=values["projects"], secret=secret, created_at=clock.now(),
        created_by_id=ctx(request).principal.id,
    )
    await record(request, "webhook.created", subscription.name, subscription=subscription.id, url=subscription.url,
                 events=values["events"], projects=values["projects"])
    return await render(
        request, "core/integrations/secret.html",
        {"kind": "webhook", "secret": secret, "name": subscription.name, "next_url": f"/admin/webhooks/{subscription.id}"},
        headers={"Cache-Control": "no-store"},
    )


async def _subscription(request: Request) -> webhooks.WebhookSubscription:
    subscription = await webhooks.WebhookSubscription.get_or_none(id=request.path_params["id"])
    if subscription is None:
        raise HTTPException(404)
    return subscription


async def _deliveries_context(request: Request, subscription) -> dict[str, Any]:
    state = request.query_params.get("state", "")
    if state not in webhooks.DeliveryState.CHOICES:
        state = ""
    query = webhooks.WebhookDelivery.filter(subscription_id=subscription.id)
    if state:
        query = query.filter(state=state)
    deliveries = await query.select_related("project").order_by("-id").limit(DELIVERY_PAGE_SIZE)
    counts = {
        row["state"]: row["n"]
        for row in await webhooks.WebhookDelivery.filter(subscription_id=subscription.id).group_by("state")
        .annotate(n=Count("id")).values("state", "n")
    }
    return {"deliveries": deliveries, "state": state, "counts": counts, "states": webhooks.DeliveryState.CHOICES,
            "badges": webhooks.DeliveryState.BADGES}


async def subscription_detail(request: Request) -> Response:
    _require(request)
    subscription = await _subscription(request)
    values = {"name": subscription.name, "url": subscription.url, "note": subscription.note,
              "is_active": subscription.is_active, "events": subscription.events, "projects": subscription.project_ids}
    return await _subscription_form(request, values, {}, subscription)


async def subscription_update(request: Request) -> Response:
    _require(request)
    subscription = await _subscription(request)
    values, errors = _subscription_values(await request.form(), await _projects(), request)
    if errors:
        return await _subscription_form(request, values, errors, subscription, status=422)
    subscription.name, subscription.url, subscription.note = values["name"], values["url"], values["note"]
    subscription.is_active, subscription.events, subscription.project_ids = (
        values["is_active"], values["events"], values["projects"]
    )
    await subscription.save()
    await record(request, "webhook.changed", subscription.name, subscription=subscription.id, url=subscription.url,
                 events=values["events"], projects=values["projects"], active=values["is_active"])
    if subscription.is_active:
        await webhooks.kick_delivery()
    return redirect(request, f"/admin/webhooks/{subscription.id}", _("Subscription saved."))


async def subscription_secret(request: Request) -> Response:
    """A new signing secret (the old one stops at once: update the receiver right away)."""
    _require(request)
    subscription = await _subscription(request)
    subscription.secret = webhooks.new_secret()
    await subscription.save(update_fields=["secret"])
    await record(request, "webhook.secret_changed", subscription.name, subscription=subscription.id)
    return await render(
        request, "core/integrations/secret.html",
        {"kind": "webhook", "secret": subscription.secret, "name": subscription.name,
         "next_url": f"/admin/webhooks/{subscription.id}"},
        headers={"Cache-Control": "no-store"},
    )


async def subscription_test(request: Request) -> Response:
    _require(request)
    subscription = await _subscription(request)
    delivery = await webhooks.send_test(subscription, ctx(request).principal.id)
    return redirect(request, f"/admin/webhooks/deliveries/{delivery.id}", _("Test event queued; it is sent within seconds."))


async def subscription_replay_failed(request: Request) -> Response:
    _require(request)
    subscription = await _subscription(request)
    failed = await webhooks.WebhookDelivery.filter(subscription_id=subscription.id, state=webhooks.DeliveryState.FAILED)
    user_id = ctx(request).principal.id
    for delivery in failed:
        await webhooks.replay(delivery, user_id)
    await record(request, "webhook.replayed", subscription.name, subscription=subscription.id, count=len(failed))
    if not failed:
        return redirect(request, f"/admin/webhooks/{subscription.id}", _("There was no failed delivery to replay."), level="warning")
    return redirect(request, f"/admin/webhooks/{subscription.id}",
                    _("%(count)s delivery(ies) queued to be sent again.", count=len(failed)))


# Deliveries ------------------------------------------------------------------------


async def _delivery(request: Request) -> webhooks.WebhookDelivery:
    delivery = await webhooks.WebhookDelivery.get_or_none(id=request.path_params["id"]).select_related(
        "subscription", "project", "replayed_by"
    )
    if delivery is None:
        raise HTTPException(404)
    return delivery


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, indent=2)
    except ValueError:
        return text


async def delivery_detail(request: Request) -> Response:
    _require(request)
    delivery = await _delivery(request)
    replays = await webhooks.WebhookDelivery.filter(replay_of_id=delivery.id).order_by("id")
    return await render(request, "core/integrations/delivery.html", {
        "delivery": delivery, "payload": _pretty(delivery.payload), "replays": replays,
        "states": webhooks.DeliveryState.CHOICES, "badges": webhooks.DeliveryState.BADGES,
        "max_attempts": request.app.state.settings["webhooks"]["max_attempts"],
    })


async def delivery_replay(request: Request) -> Response:
    _require(request)
    delivery = await _delivery(request)
    copy = await webhooks.replay(delivery, ctx(request).principal.id)
    await record(request, "webhook.replayed", delivery.subscription.name, delivery=delivery.id, replay=copy.id)
    return redirect(request, f"/admin/webhooks/deliveries/{copy.id}", _("Delivery queued to be sent again."))
