"""SQL statements per page, for every list page of every plugin (in process, through the ASGI app).

A list page is any GET page of an estate (or head office) without record ids
in its path whose HTML holds the list component (`data-list=`). Each is asked
for at two page sizes; a page whose statement count grows with the rows it
shows loads something row by row (N+1). The counts include everything the
request does: session, user, estate, modules, navigation, the list itself.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from starlette.routing import Mount, Route

from bench.querycount import counting, repeated

# Never asked for: endless event streams, downloads, and pages that change state on GET.
SKIP = re.compile(r"(^/events$|\.(xlsx|csv|png|pdf|json)$|^/login|^/logout|^/account/|^/api/|^/lang)")
LIST_MARK = re.compile(r'data-list="([^"]+)"')
TOTAL = re.compile(r'data-total="(\d+)"')


@dataclass
class PageQueries:
    path: str
    list_name: str
    total: int
    rows: tuple[int, int]  # rows shown at the two page sizes
    queries: tuple[int, int]  # statements at the two page sizes
    most_repeated: int  # how often one statement shape ran (at the larger size)
    repeated_sql: str

    @property
    def grows(self) -> bool:
        """More statements for more rows: something is loaded row by row."""
        return self.rows[1] > self.rows[0] and self.queries[1] > self.queries[0]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["grows"] = self.grows
        data["repeated_sql"] = self.repeated_sql[:300]
        return data


def page_paths(app, project_code: str) -> list[str]:
    """GET paths of the app that name no record: estate pages of `project_code`, then head-office pages."""
    found: list[str] = []

    def walk(routes: Iterable, prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                if route.path.startswith(("/static", "/hooks")):
                    continue
                walk(route.routes, prefix + route.path)
            elif isinstance(route, Route) and "GET" in (route.methods or ()) and getattr(route, "courtyard", None):
                path = prefix + route.path
                params = set(re.findall(r"{(\w+)(?::\w+)?}", path))
                if params - {"project"} or route.courtyard.public or SKIP.search(path.replace("/p/{project}", "")):
                    continue
                found.append(path.replace("{project}", project_code))

    starlette = getattr(app, "starlette", app)
    walk(starlette.router.routes, "")
    return found


def _rows(html: str) -> int:
    start, end = html.find("<tbody>"), html.find("</tbody>")
    return html.count("<tr", start, end) if start >= 0 and end > start else 0


async def list_page_queries(client, project_code: str, sizes: tuple[int, int] = (25, 100)) -> list[PageQueries]:
    """Statement counts of every list page at two page sizes (the client is logged in and may see them all)."""
    results = []
    for path in page_paths(client._transport.app, project_code):
        response = await client.get(path)
        if response.status_code != 200 or not LIST_MARK.search(response.text):
            continue
        counts, rows = [], []
        queries: list[str] = []
        for size in sizes:
            with counting() as queries:
                response = await client.get(path, params={"per": size})
            assert response.status_code == 200, f"{path}?per={size}: {response.status_code}"
            counts.append(len(queries))
            rows.append(_rows(response.text))
        times, sql = repeated(queries)
        total = TOTAL.search(response.text)
        results.append(PageQueries(path, LIST_MARK.search(response.text).group(1), int(total.group(1)) if total else 0,
                                   (rows[0], rows[1]), (counts[0], counts[1]), times, sql))
    return results


async def page_queries(client, path: str) -> tuple[int, list[str]]:
    with counting() as queries:
        response = await client.get(path)
    assert response.status_code == 200, f"{path}: {response.status_code}"
    return len(queries), queries
