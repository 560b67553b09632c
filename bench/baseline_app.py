"""The ceiling of this stack: a bare Starlette + asyncpg + Jinja2 handler for the work-order list.

It runs the same statement as Courtyard's work-order list (one page of rows
joined with category, customer and unit, filtered by estate and status, newest
first, with the list's total as a scalar subquery) and renders the same rows and columns into a page,
without sessions, permissions, scoping, navigation or translations. The
benchmark serves it with uvicorn and the same number of workers as Courtyard:

    BENCH_DATABASE_URL=postgres://... uvicorn bench.baseline_app:app --workers 2

`GET /orders?project=<code>&status=<status>&per=50` and `GET /orders/<id>`.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import asyncpg
import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

TEMPLATE = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>工单 · {{ project.name }}</title>
<link rel="stylesheet" href="/static/core/courtyard.css"></head>
<body><main><h1>工单</h1><p class="count">{{ total }} 条记录</p>
<table class="table"><thead><tr><th>编号</th><th>受理时间</th><th>类型</th><th>分类</th><th>摘要</th><th>客户</th>
<th>房号</th><th>紧急程度</th><th>状态</th><th>解决时限</th><th>时效</th></tr></thead><tbody>
{% for row in rows %}<tr><td><a href="/p/{{ project.code }}/hotline/orders/{{ row.id }}">{{ row.number }}</a></td>
<td>{{ local(row.received_at) }}</td><td>{{ kinds.get(row.kind, row.kind) }}</td><td>{{ row.category }}</td>
<td class="wrap">{{ row.subject }}</td><td>{{ row.customer }}</td><td>{{ row.unit or "" }}</td>
<td>{{ urgencies.get(row.urgency, row.urgency) }}</td><td>{{ statuses.get(row.status, row.status) }}</td>
<td>{{ local(row.resolution_due) }}</td><td>{{ "超时" if row.resolution_due < now and row.status in open else "" }}</td></tr>
{% endfor %}</tbody></table></main></body></html>""")

DETAIL = jinja2.Environment(autoescape=True).from_string("""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{{ order.number }}</title></head>
<body><main><h1>{{ order.number }} {{ order.subject }}</h1><dl>
<dt>客户</dt><dd>{{ order.customer }}</dd><dt>房号</dt><dd>{{ order.unit or "" }}</dd>
<dt>分类</dt><dd>{{ order.category }}</dd><dt>状态</dt><dd>{{ order.status }}</dd>
<dt>受理时间</dt><dd>{{ local(order.received_at) }}</dd></dl>
<ol>{% for entry in entries %}<li>{{ local(entry.created_at) }} {{ entry.body }}</li>{% endfor %}</ol>
</main></body></html>""")

KINDS = {"consultation": "咨询", "repair": "报修", "complaint": "投诉", "suggestion": "建议", "praise": "表扬", "other": "其他"}
URGENCIES = {"low": "低", "normal": "普通", "high": "高", "emergency": "紧急"}
STATUSES = {"new": "新建", "dispatched": "已派单", "in_progress": "处理中", "done": "已完成待回访", "callback": "已回访",
            "closed": "已关闭"}
OPEN = ("new", "dispatched", "in_progress")

LIST_SQL = """
SELECT o.id, o.number, o.received_at, o.kind, o.subject, o.urgency, o.status, o.resolution_due,
       c.name AS category, cu.name AS customer, u.code AS unit,
       (SELECT count(*) FROM hotline_work_order WHERE project_id = $1 AND status = $2) AS total
FROM hotline_work_order o
JOIN hotline_category c ON c.id = o.category_id
JOIN core_customer cu ON cu.id = o.customer_id
LEFT JOIN core_unit u ON u.id = o.unit_id
WHERE o.project_id = $1 AND o.status = $2
ORDER BY o.received_at DESC, o.id DESC
LIMIT $3 OFFSET $4
"""


def _dsn() -> str:
    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/courtyard_bench_small")
    return "postgresql://" + url.split("://", 1)[1]


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    app.state.pool = await asyncpg.create_pool(_dsn(), min_size=1, max_size=5)
    yield
    await app.state.pool.close()


async def orders(request: Request) -> HTMLResponse:
    pool: asyncpg.Pool = request.app.state.pool
    code = request.query_params.get("project", "")
    status = request.query_params.get("status", "closed")
    per = int(request.query_params.get("per", "50"))
    page = max(1, int(request.query_params.get("page", "1")))
    async with pool.acquire() as conn:
        project = await conn.fetchrow("SELECT id, code, name, timezone FROM core_project WHERE code = $1", code)
        if project is None:
            return PlainTextResponse("no such estate", status_code=404)
        rows = await conn.fetch(LIST_SQL, project["id"], status, per, (page - 1) * per)
    total = rows[0]["total"] if rows else 0
    zone = ZoneInfo(project["timezone"])
    html = TEMPLATE.render(
        project=project, rows=rows, total=total, kinds=KINDS, urgencies=URGENCIES, statuses=STATUSES, open=OPEN,
        now=datetime.now(timezone.utc), local=lambda value: value.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
    )
    return HTMLResponse(html)


async def order(request: Request) -> HTMLResponse:
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT o.*, c.name AS category, cu.name AS customer, u.code AS unit, p.timezone
               FROM hotline_work_order o JOIN hotline_category c ON c.id = o.category_id
               JOIN core_customer cu ON cu.id = o.customer_id LEFT JOIN core_unit u ON u.id = o.unit_id
               JOIN core_project p ON p.id = o.project_id WHERE o.id = $1""",
            int(request.path_params["id"]),
        )
        if row is None:
            return PlainTextResponse("no such order", status_code=404)
        entries = await conn.fetch(
            "SELECT created_at, body FROM core_timeline_entry WHERE subject = 'hotline.WorkOrder' AND subject_id = $1 "
            "ORDER BY id DESC", row["id"],
        )
    zone = ZoneInfo(row["timezone"])
    return HTMLResponse(DETAIL.render(order=row, entries=entries,
                                      local=lambda value: value.astimezone(zone).strftime("%Y-%m-%d %H:%M")))


app = Starlette(routes=[Route("/orders", orders), Route("/orders/{id:int}", order)], lifespan=lifespan)
