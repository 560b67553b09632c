"""API tokens: made by a head-office admin in the browser, shown once, stored hashed, revocable, expiring."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone

import pytest

from core.rest import ApiToken
from core.testing import make_project
from tests.api_helpers import api_estate


def shown_token(html: str) -> str:
    match = re.search(r'value="(cy_[A-Za-z0-9_\-]+)"', html)
    assert match, "the new token is shown on the page"
    return match.group(1)


async def test_an_admin_makes_a_token_that_is_shown_once_and_stored_hashed(app, host, login_as, make_client):
    east = await api_estate(host, "EAST")
    west = await make_project("WEST", host=host)
    admin = await login_as("admin", None)
    form = await admin.get("/admin/api-tokens/new")
    assert form.status_code == 200 and "Hotline" in form.text and "WEST" in form.text

    response = await admin.form("/admin/api-tokens/new", {
        "name": "WeChat mini-program", "projects": str(east.project.id), "scope_hotline": "write", "scope_core": "read",
        "expires_on": "", "rate_limit": "",
    })
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    secret = shown_token(response.text)
    assert "shown only this once" in response.text

    token = await ApiToken.get(name="WeChat mini-program")
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(token.__dict__.values()) and secret.startswith(token.prefix)
    assert token.scopes == ["core:read", "hotline:write"] and token.project_ids == [east.project.id]
    assert west.id not in token.project_ids

    # Never shown again: neither in the list nor on the token's page.
    for page in ("/admin/api-tokens", f"/admin/api-tokens/{token.id}"):
        text = (await admin.get(page)).text
        assert secret not in text and token.prefix in text and "WeChat mini-program" in text

    api = make_client()
    answer = await api.get("/api/v1/projects/EAST/customers", params={"phone": "13800138000"},
                           headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200 and answer.json()["items"][0]["name"] == "业主EAST"


async def test_the_form_says_what_is_missing(app, host, login_as):
    await api_estate(host, "EAST")
    admin = await login_as("admin", None)
    response = await admin.form("/admin/api-tokens/new", {"name": "", "expires_on": "2001-01-01", "rate_limit": "many"})
    assert response.status_code == 422
    for message in ("Name the integration", "Choose at least one estate", "at least one module",
                    "The expiry date must be today or later", "requests per minute between"):
        assert message in response.text
    assert await ApiToken.all().count() == 0


async def test_only_head_office_admins_manage_tokens(app, host, login_as):
    east = await api_estate(host, "EAST")
    estate_admin = await login_as("admin", east.project)
    assert (await estate_admin.get("/admin/api-tokens")).status_code == 403
    assert (await estate_admin.form("/admin/api-tokens/new", {"name": "x"})).status_code == 403
    agent = await login_as("agent", None)
    assert (await agent.get("/admin/api-tokens")).status_code == 403


async def test_a_revoked_token_stops_at_once(app, host, login_as, api_client):
    east = await api_estate(host, "EAST")
    api = await api_client([east.project], ["core:read"])
    assert (await api.get("/api/v1/projects")).status_code == 200
    admin = await login_as("admin", None)
    response = await admin.form(f"/admin/api-tokens/{api.token.id}/revoke", {})
    assert response.status_code == 303
    answer = await api.get("/api/v1/projects")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "token_revoked"
    assert "Revoked" in (await admin.get("/admin/api-tokens")).text


@pytest.mark.frozen_time("2026-05-01T09:00+08:00")
async def test_a_token_expires(app, host, api_client, frozen_time):
    east = await api_estate(host, "EAST")
    api = await api_client([east.project], ["core:read"], expires_at=frozen_time.now() + timedelta(days=1))
    assert (await api.get("/api/v1/projects")).status_code == 200
    frozen_time.tick(days=1)
    answer = await api.get("/api/v1/projects")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "token_expired"
    assert "expired" in answer.json()["error"]["message"]


async def test_an_expiry_date_means_through_that_day(app, host, login_as):
    east = await api_estate(host, "EAST")
    admin = await login_as("admin", None)
    await admin.form("/admin/api-tokens/new", {
        "name": "ERP", "projects": str(east.project.id), "scope_hotline": "read", "expires_on": "2099-12-31",
    })
    token = await ApiToken.get(name="ERP")
    # Shanghai midnight after 31 December.
    assert token.expires_at == datetime(2099, 12, 31, 16, 0, tzinfo=timezone.utc)


@pytest.mark.frozen_time("2026-05-01T09:00+08:00")
async def test_last_use_is_recorded_and_shown(app, host, api_client, login_as, frozen_time):
    east = await api_estate(host, "EAST")
    api = await api_client([east.project], ["core:read"], name="Call centre")
    assert (await ApiToken.get(id=api.token.id)).last_used_at is None
    await api.get("/api/v1/projects")
    token = await ApiToken.get(id=api.token.id)
    assert token.last_used_at == frozen_time.now()
    admin = await login_as("admin", None)
    page = await admin.get("/admin/api-tokens")
    assert "Never used" not in page.text


async def test_unknown_or_missing_tokens_are_refused(app, client, login_as):
    answer = await client.get("/api/v1/projects")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["error"]["code"] == "unauthenticated"
    answer = await client.get("/api/v1/projects", headers={"Authorization": "Bearer cy_nonsense"})
    assert answer.json()["error"]["code"] == "invalid_token"
    # A logged-in browser session is no API credential (so a forged cross-site request has none).
    admin = await login_as("admin", None)
    assert (await admin.get("/api/v1/projects")).status_code == 401
