"""Shared by the JSON API and webhook tests: a small estate with a customer, and a real HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import date

from core.models import Building, Unit
from core.people import create_customer, link_unit
from core.scope import unscoped
from core.testing import free_port, make_project


@dataclass
class Estate:
    project: object
    customer: object
    unit: object
    category: object
    code: str


async def api_estate(host, code: str = "EAST", phone: str = "13800138000") -> Estate:
    """An estate with every module on, a unit with its owner (who has `phone`) and a repair category."""
    from plugins.hotline.models import Category

    project = await make_project(code, host=host)
    with unscoped():
        building = await Building.create(project=project, code="3", name="3栋")
        unit = await Unit.create(project=project, building=building, code="3-2-1502", floor=15, area="120.50")
        customer = await create_customer(project, f"业主{code}", [phone], email=f"owner-{code.lower()}@example.com",
                                         preferred_channel="email")
        await link_unit(customer, unit, "owner", date(2024, 1, 1))
        category = await Category.create(project=project, name="水电")
    return Estate(project, customer, unit, category, code)


def order_body(estate: Estate, **changes) -> dict:
    body = {
        "customer_id": estate.customer.id, "category_id": estate.category.id, "unit_id": estate.unit.id,
        "kind": "repair", "urgency": "normal", "channel": "online", "subject": "厨房水龙头漏水",
    }
    body.update(changes)
    return body


@dataclass
class Received:
    headers: dict
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server on a free local port that records what is posted to it.

    `fail_next` answers that many requests with HTTP 503 first (a subscriber that is down, then recovers).
    """

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0
    answered: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    async def app(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.received.append(Received(headers, body))
        status = 503 if self.fail_next > 0 else 200
        self.fail_next = max(0, self.fail_next - 1)
        self.answered.append(status)
        text = b"busy" if status == 503 else b'{"ok": true}'
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": text})


@contextlib.asynccontextmanager
async def running(receiver: Receiver):
    """Serve `receiver` with uvicorn in this event loop for the block."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(receiver.app, host="127.0.0.1", port=receiver.port, log_level="warning",
                                           lifespan="off", access_log=False, interface="asgi3"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task
