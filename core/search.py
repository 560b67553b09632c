"""Global search: one box for customers, units and whatever plugins find.

Every provider, core included, answers the `search` hook. The guard has set
the scope to the user's estates, so providers only ever see those; results of
a plugin for an estate where it is disabled are dropped here.
"""

from __future__ import annotations

import re
from collections import defaultdict

from starlette.requests import Request
from starlette.responses import Response
from tortoise.expressions import Q

from core.customers import customer_lookup_q
from core.i18n import lazy_gettext as _l
from core.kit import SearchResult
from core.models import Customer, Project, ProjectModule, Unit
from core.people import display_phone, mask_phone, try_normalize_phone
from core.scope import unscoped
from core.templating import may_see_personal_data, render
from core.web import ctx

PER_KIND = 8
MAX_QUERY = 100


async def newest_matches(model, project_ids: list[int], *, related: tuple[str, ...] = (), limit: int = PER_KIND,
                         **filters):
    """The newest `limit` records of `project_ids` matching `filters` (exact values: numbers, serials).

    The matching ids are read first through the (estate, number) index and the newest chosen here: given
    ORDER BY id LIMIT, or the model's default ordering, PostgreSQL walks a whole table instead. That read
    names the estates once: the scope's copy of the same list on top made the planner scan all 10 M bills
    (0.5 s). The records themselves are read in the caller's scope.
    """
    with unscoped():
        ids = await model.filter(project_id__in=project_ids, **filters).order_by("id").values_list("id", flat=True)
    newest = sorted(ids, reverse=True)[:limit]
    if not newest:
        return []
    return await model.filter(id__in=newest).select_related(*related).order_by("-id")


async def core_results(request: Request, query: str, project_ids: list[int]) -> list[SearchResult]:
    """Core's provider: customers by name (from its start), pinyin or phone; units by code (from its start).

    Every condition is answered by an index, so the search stays fast for a
    head-office user of every estate (docs/benchmarks.md).
    """
    projects = {p.id: p for p in await Project.filter(id__in=project_ids)}
    several = len(projects) > 1
    results: list[SearchResult] = []
    normalized = try_normalize_phone(query)
    customers = (
        await Customer.filter(customer_lookup_q(query), project_id__in=project_ids)
        .prefetch_related("phones")
        .order_by("name", "id")
        .limit(PER_KIND)
    )
    for customer in customers:
        project = projects[customer.project_id]
        numbers = [p.number for p in customer.phones]
        visible = may_see_personal_data(request, project.id)
        details = [(display_phone(n) if visible else mask_phone(n)) for n in numbers[:2]]
        if several:
            details.insert(0, project.name)
        results.append(
            SearchResult(
                kind=_l("Customer"),
                title=customer.name,
                url=f"/p/{project.code}/customers/{customer.id}",
                subtitle=" · ".join(details),
                project_id=project.id,
                score=100.0 if normalized and normalized in numbers else 50.0,
            )
        )
    if re.fullmatch(r"[\w\-]+", query):
        units = (
            await Unit.filter(Q(code__startswith=query) | Q(code__startswith=query.upper()), project_id__in=project_ids)
            .select_related("building")
            .order_by("code", "id")
            .limit(PER_KIND)
        )
        for unit in units:
            project = projects[unit.project_id]
            subtitle = f"{project.name} · {unit.building.name}" if several else unit.building.name
            results.append(
                SearchResult(
                    kind=_l("Unit"),
                    title=unit.code,
                    url=f"/p/{project.code}/units/{unit.id}",
                    subtitle=subtitle,
                    project_id=project.id,
                    score=100.0 if unit.code.lower() == query.lower() else 40.0,
                )
            )
    return results


async def _modules_by_project(project_ids: list[int]) -> dict[str, set[int]]:
    rows = await ProjectModule.filter(project_id__in=project_ids, enabled=True).values_list("module", "project_id")
    enabled: dict[str, set[int]] = defaultdict(set)
    for module, project_id in rows:
        enabled[module].add(project_id)
    return enabled


async def run_search(request: Request, query: str) -> tuple[list[tuple[str, list[SearchResult]]], list[str]]:
    """Results grouped by kind (in plugin order, best first), and the plugins that failed."""
    context = ctx(request)
    project_ids = context.project_ids
    if not project_ids:
        return [], []
    host = request.app.state.host
    enabled = await _modules_by_project(project_ids)
    results = await host.call(
        "search", enabled=set(enabled), request=request, query=query, project_ids=list(project_ids)
    )
    groups: dict[str, list[SearchResult]] = {}
    failed: list[str] = []
    for result in results:
        if result.error is not None:  # logged by host.call; the other providers still answer
            failed.append(result.plugin)
            continue
        plugin = host.by_name[result.plugin]
        for hit in result.value or []:
            if plugin.manifest.per_project and hit.project_id is not None and hit.project_id not in enabled[plugin.name]:
                continue
            groups.setdefault(str(hit.kind), []).append(hit)
    ordered = [(kind, sorted(hits, key=lambda h: -h.score)) for kind, hits in groups.items()]
    return ordered, failed


async def search_page(request: Request) -> Response:
    """`/search?q=`: the dropdown under the top bar's box (htmx) or a full results page."""
    query = re.sub(r"\s+", " ", request.query_params.get("q", "")).strip()[:MAX_QUERY]
    groups, failed = (await run_search(request, query)) if query else ([], [])
    return await render(
        request,
        "core/search.html",
        {"q": query, "groups": groups, "failed": failed, "total": sum(len(h) for _, h in groups)},
        block="results",
    )
