"""What every API endpoint enforces: estates, modules, scopes, validation, rate limits; and the core/hotline endpoints."""

from __future__ import annotations

import re

import pytest

from core.models import ProjectModule
from core.rest import declared_routes, full_path
from core.scope import unscoped
from core.testing import make_record
from tests.api_helpers import api_estate, order_body

ORDERS = "/api/v1/projects/{code}/hotline/work-orders"


@pytest.fixture
async def estates(app, host):
    return await api_estate(host, "EAST", "13800138000"), await api_estate(host, "WEST", "13900139000")


def url_of(route, code: str, record_id: int = 1) -> str:
    path = "/api/v1" + full_path(route)
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: code if m.group(1) == "project" else str(record_id), path)


async def test_a_token_of_estate_a_cannot_read_estate_b(app, host, estates, api_client):
    east, west = estates
    every_scope = sorted({r.scope.split(":")[0] + ":write" for r in declared_routes(host)})
    api = await api_client([east.project], every_scope)
    # B's estate code: every project endpoint of every module answers 404.
    for route in declared_routes(host):
        if route.in_project:
            answer = await api.request(route.method, url_of(route, west.code), json={})
            assert answer.status_code == 404, f"{route.method} {url_of(route, west.code)}: {answer.status_code}"
            assert answer.json()["error"]["code"] == "not_found"
    # A's code with B's records: every endpoint that loads a record answers 404.
    checked = 0
    for route in declared_routes(host):
        if route.model:
            record = await make_record(route.model, west.project)
            answer = await api.request(route.method, url_of(route, east.code, record.pk), json={})
            assert answer.status_code == 404, f"{route.method} {url_of(route, east.code, record.pk)} ({route.model} of B)"
            checked += 1
    assert checked >= 3
    # B's customer is not found by B's phone number through A either.
    found = await api.get("/api/v1/projects/EAST/customers", params={"phone": "13900139000"})
    assert found.status_code == 200 and found.json()["items"] == []
    # A work order cannot be given B's customer.
    answer = await api.post(ORDERS.format(code="EAST"), json=order_body(east, customer_id=west.customer.id))
    assert answer.status_code == 422
    assert [f["field"] for f in answer.json()["error"]["fields"]] == ["customer_id"]
    listed = await api.get("/api/v1/projects")
    assert [p["code"] for p in listed.json()["items"]] == ["EAST"]


async def test_an_endpoint_of_a_module_switched_off_answers_404(app, estates, api_client):
    east, _west = estates
    api = await api_client([east.project], ["hotline:read", "core:read"])
    assert (await api.get(ORDERS.format(code="EAST"))).status_code == 200
    with unscoped():
        await ProjectModule.filter(project_id=east.project.id, module="hotline").update(enabled=False)
    assert (await api.get(ORDERS.format(code="EAST"))).status_code == 404
    assert (await api.get("/api/v1/projects/EAST/customers", params={"phone": "13800138000"})).status_code == 200
    modules = (await api.get("/api/v1/projects")).json()["items"][0]["modules"]
    assert "hotline" not in modules


async def test_a_token_without_the_scope_gets_403_naming_it(app, estates, api_client):
    east, _west = estates
    reader = await api_client([east.project], ["hotline:read"])
    answer = await reader.post(ORDERS.format(code="EAST"), json=order_body(east))
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert error["code"] == "missing_scope" and error["required_scope"] == "hotline:write"
    assert "hotline:write" in error["message"]
    assert (await reader.get("/api/v1/projects/EAST/customers", params={"phone": "1"})).status_code == 403
    # Write includes read.
    writer = await api_client([east.project], ["hotline:write"])
    assert (await writer.get(ORDERS.format(code="EAST"))).status_code == 200


async def test_bad_input_gets_a_clear_422(app, estates, api_client):
    east, _west = estates
    api = await api_client([east.project], ["hotline:write", "core:read"])
    answer = await api.post(ORDERS.format(code="EAST"), json={"kind": "leak", "subject": "", "colour": "red"})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    problems = {f["field"]: f for f in error["fields"]}
    assert set(problems) == {"customer_id", "category_id", "kind", "subject", "colour"}
    assert problems["customer_id"]["type"] == "missing" and problems["colour"]["type"] == "extra_forbidden"
    assert all(f["location"] == "body" for f in error["fields"])

    not_json = await api.post(ORDERS.format(code="EAST"), content=b"{oops", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["error"]["fields"][0]["type"] == "json_invalid"

    blank = await api.post(ORDERS.format(code="EAST"), json=order_body(east, subject="   "))
    assert blank.status_code == 422
    assert blank.json()["error"]["fields"] == [
        {"location": "body", "field": "subject", "message": "Write a short summary of the request.", "type": "invalid"}
    ]

    query = await api.get(ORDERS.format(code="EAST"), params={"limit": "0", "updated_since": "yesterday"})
    assert query.status_code == 422
    assert {(f["location"], f["field"]) for f in query.json()["error"]["fields"]} == {("query", "limit"), ("query", "updated_since")}
    phone = await api.get("/api/v1/projects/EAST/customers", params={"phone": "call me"})
    assert phone.json()["error"]["fields"][0]["field"] == "phone"

    chinese = await api.post(ORDERS.format(code="EAST"), json={}, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert chinese.json()["error"]["message"] == "请求无效。"
    assert (await api.get("/api/v1/nothing/here")).json()["error"]["code"] == "not_found"
    assert (await api.get(ORDERS.format(code="EAST") + "/99999999999")).status_code == 404
    assert nothing_created(await api.get(ORDERS.format(code="EAST")))


def nothing_created(answer) -> bool:
    return answer.status_code == 200 and answer.json()["items"] == []


@pytest.mark.frozen_time("2026-05-01T09:00:10+08:00")
async def test_too_many_requests_get_429_with_retry_after(app, estates, api_client, frozen_time):
    east, _west = estates
    api = await api_client([east.project], ["core:read"], rate_limit=3)
    for remaining in ("2", "1", "0"):
        answer = await api.get("/api/v1/projects")
        assert answer.status_code == 200 and answer.headers["ratelimit-remaining"] == remaining
    answer = await api.get("/api/v1/projects")
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "50"
    assert answer.json()["error"]["code"] == "rate_limited"
    other = await api_client([east.project], ["core:read"], rate_limit=3)
    assert (await other.get("/api/v1/projects")).status_code == 200  # counted per token
    frozen_time.tick(seconds=50)
    assert (await api.get("/api/v1/projects")).status_code == 200


async def test_customers_by_any_spelling_of_their_phone_and_units_by_code(app, estates, api_client):
    east, _west = estates
    api = await api_client([east.project], ["core:read"])
    for spelling in ("138 0013 8000", "+86 138-0013-8000", "008613800138000"):
        answer = await api.get("/api/v1/projects/EAST/customers", params={"phone": spelling})
        assert [c["name"] for c in answer.json()["items"]] == ["业主EAST"], spelling
    customer = answer.json()["items"][0]
    assert customer["phones"] == [{"number": "+8613800138000", "label": ""}]
    assert customer["units"][0]["unit_code"] == "3-2-1502" and customer["units"][0]["relation"] == "owner"
    assert "id_number" not in customer
    assert (await api.get(f"/api/v1/projects/EAST/customers/{customer['id']}")).json()["name"] == "业主EAST"

    unit = (await api.get("/api/v1/projects/EAST/units", params={"code": "3-2-1502"})).json()["items"][0]
    assert unit["area"] == "120.50" and unit["building"]["code"] == "3"
    assert unit["occupants"] == [{"customer_id": customer["id"], "name": "业主EAST", "relation": "owner", "current": True}]
    assert (await api.get("/api/v1/projects/EAST/units", params={"code": "9-9-999"})).json()["items"] == []


async def test_work_orders_are_recorded_like_at_intake(app, estates, api_client, login_as, outbox):
    east, _west = estates
    api = await api_client([east.project], ["hotline:write"], name="WeChat mini-program")
    answer = await api.post(ORDERS.format(code="EAST"), json=order_body(east, caller_phone="138 0013 8000",
                                                                        description="水一直在滴"))
    assert answer.status_code == 201
    order = answer.json()
    assert re.fullmatch(r"GD-\d{4}-000001", order["number"])
    assert order["status"] == "new" and order["channel"] == "online" and order["caller_phone"] == "+8613800138000"
    assert order["category"] == {"id": east.category.id, "name": "水电"}
    assert order["response_due"] > order["received_at"]
    # The same order staff see in the browser, with its history and the customer's acknowledgement.
    agent = await login_as("agent", east.project)
    page = await agent.get(order["web_path"])
    assert page.status_code == 200 and order["number"] in page.text and "Request received by" in page.text
    assert (await api.get(f"{ORDERS.format(code='EAST')}/{order['id']}")).json() == order


@pytest.mark.frozen_time("2026-05-01T09:00+08:00")
async def test_lists_page_in_order_of_change_and_sync_what_changed(app, estates, api_client, frozen_time):
    from plugins.hotline import workorders as wo
    from plugins.hotline.models import WorkOrder

    east, _west = estates
    api = await api_client([east.project], ["hotline:write"])
    ids = []
    for n in range(5):
        answer = await api.post(ORDERS.format(code="EAST"), json=order_body(east, subject=f"第{n}单"))
        ids.append(answer.json()["id"])
        frozen_time.tick(minutes=1)

    seen, cursor = [], None
    while True:
        page = (await api.get(ORDERS.format(code="EAST"), params={"limit": 2, **({"cursor": cursor} if cursor else {})})).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids

    last_sync = frozen_time.now()
    frozen_time.tick(minutes=5)
    with unscoped():
        first = await WorkOrder.get(id=ids[0])
        await wo.resolve_on_spot(first, "已远程指导关闭阀门", customer_confirmed=True)
    changed = (await api.get(ORDERS.format(code="EAST"), params={"updated_since": last_sync.isoformat()})).json()
    assert [o["id"] for o in changed["items"]] == [ids[0]]
    assert changed["items"][0]["status"] == "closed"
    # A changed record moves to the end of the order.
    everything = (await api.get(ORDERS.format(code="EAST"))).json()["items"]
    assert [o["id"] for o in everything] == ids[1:] + ids[:1]
    closed = (await api.get(ORDERS.format(code="EAST"), params={"status": "closed"})).json()["items"]
    assert [o["id"] for o in closed] == [ids[0]]
    bad = await api.get(ORDERS.format(code="EAST"), params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "cursor"


async def test_the_openapi_document_covers_every_endpoint(app, host, client):
    document = (await client.get("/api/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    declared = {(r.method, "/api/v1" + re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", full_path(r))) for r in declared_routes(host)}
    assert declared and operations == declared
    assert ("POST", "/api/v1/projects/{project}/hotline/work-orders") in operations
    create = document["paths"]["/api/v1/projects/{project}/hotline/work-orders"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in create["parameters"]]
    assert create["x-scope"] == "hotline:write" and set(create["responses"]) >= {"201", "401", "403", "404", "422", "429"}
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"

    page = await client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "/static/core/vendor/swagger-ui/swagger-ui-bundle.js" in page.text and "//cdn" not in page.text
    asset = await client.get("/static/core/vendor/swagger-ui/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000
