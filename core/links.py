"""Signed links for people who never log in: survey answers, appointment confirmations.

A link carries its own facts (which record, for whom) signed with the
server's secret key, an expiry time and a random id. Nothing has to be stored
when the link is made; a link that may be used only once is remembered when
it is *used*, in `core_link_use`, whose UNIQUE id makes a second use fail even
when two requests race.

    from core.api import links

    token = links.make("complaints.survey", {"case": case.id}, expires_in=timedelta(days=30), now=at)
    url = f"{base_url}/complaints/survey/{token}"

    # the public page (route built with public=True):
    try:
        link = await links.check("complaints.survey", token)        # shows the form
        async with transaction():
            link = await links.redeem("complaints.survey", token)   # records the use
            ...                                                     # the change it allows
    except links.LinkError as exc:
        ... friendly page with exc.reason ("invalid", "expired", "used")

`purpose` is part of the signature, so a token made for one purpose is
refused for any other. Redeem inside the transaction of the change the link
allows: if the change fails, the link stays usable.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.models import Model

from core import clock


class LinkError(ValueError):
    """A link that cannot be used; `reason` is "invalid" (tampered, wrong purpose), "expired" or "used"."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LinkUse(Model):
    """The use of a single-use link: its id can be inserted only once."""

    id = fields.BigIntField(primary_key=True)
    link_id = fields.CharField(max_length=64, unique=True)
    purpose = fields.CharField(max_length=64)
    used_at = fields.DatetimeField()

    class Meta:
        table = "core_link_use"


@dataclass(frozen=True)
class Link:
    """A verified link: what it was made for and the facts it carries."""

    purpose: str
    data: dict[str, Any]
    link_id: str
    expires_at: datetime


def _utcnow() -> datetime:
    return clock.now()


def _serializer(purpose: str) -> URLSafeSerializer:
    from core.settings import current

    return URLSafeSerializer(current()["security"]["secret_key"], salt=f"courtyard.link.{purpose}")


def make(purpose: str, data: dict[str, Any], *, expires_in: timedelta, now: datetime | None = None) -> str:
    """A URL-safe token for `purpose` carrying `data` (JSON values), valid for `expires_in`."""
    expires_at = (now or _utcnow()) + expires_in
    payload = {"d": data, "i": secrets.token_urlsafe(12), "e": int(expires_at.timestamp())}
    return _serializer(purpose).dumps(payload)


def _decode(purpose: str, token: str, now: datetime | None) -> Link:
    try:
        payload = _serializer(purpose).loads(token or "")
        link = Link(
            purpose=purpose,
            data=dict(payload["d"]),
            link_id=str(payload["i"]),
            expires_at=datetime.fromtimestamp(int(payload["e"]), timezone.utc),
        )
    except (BadSignature, KeyError, TypeError, ValueError):
        raise LinkError("invalid") from None
    if (now or _utcnow()) >= link.expires_at:
        raise LinkError("expired")
    return link


async def check(purpose: str, token: str, *, now: datetime | None = None) -> Link:
    """The link's facts if it is genuine, unexpired and not used yet; raises `LinkError` otherwise."""
    link = _decode(purpose, token, now)
    if await LinkUse.filter(link_id=link.link_id).exists():
        raise LinkError("used")
    return link


async def redeem(purpose: str, token: str, *, now: datetime | None = None) -> Link:
    """Check the link and record its use (once only); call inside the transaction of the change."""
    from tortoise.transactions import in_transaction

    link = await check(purpose, token, now=now)
    try:
        async with in_transaction("default"):  # a savepoint: a lost race leaves the caller's transaction usable
            await LinkUse.create(link_id=link.link_id, purpose=purpose[:64], used_at=now or _utcnow())
    except IntegrityError:
        raise LinkError("used") from None
    return link
