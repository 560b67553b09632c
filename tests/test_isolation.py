"""Estates are isolated: a user of estate A never reaches estate B's pages or records.

The tests walk every registered route, so routes that plugins add later are
covered without touching this file. A route naming a model gets a record of
that model created in estate B (`core.testing.make_record`; a plugin whose
model needs special values registers a `record_factory`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from starlette.routing import Mount, Route

from core.testing import make_project, make_record, make_user

HELLO = "tests.sample_plugins.hello"

# Models shared by every estate, so they have no "record of estate B".
SHARED_MODELS = {"core.Role"}
# Methods a browser form or htmx sends that change data.
CHANGING = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def plugin_modules():
    return [HELLO]


@dataclass
class Endpoint:
    path: str  # full path template, e.g. /p/{project}/hello/orders/{id:int}
    route: Route

    @property
    def info(self):
        return self.route.courtyard

    @property
    def methods(self) -> list[str]:
        return sorted(m for m in (self.route.methods or {"GET"}) if m != "HEAD")

    def url(self, **values) -> str:
        """The path with parameters filled: given values first, then a harmless placeholder."""

        def fill(match: re.Match) -> str:
            name, _, kind = match.group(1).partition(":")
            if name in values:
                return str(values[name])
            return "1" if kind == "int" else "x"

        return re.sub(r"{([^}]+)}", fill, self.path)


def walk(routes, prefix: str = "") -> list[Endpoint]:
    endpoints = []
    for r in routes:
        if isinstance(r, Mount):
            endpoints.extend(walk(r.routes or [], prefix + r.path))
        elif isinstance(r, Route) and hasattr(r, "courtyard"):
            endpoints.append(Endpoint(prefix + r.path, r))
    return endpoints


async def request(client, method: str, url: str):
    if method == "GET":
        return await client.get(url)
    return await client.request(method, url, data={"csrftoken": client.csrf}, headers={"x-csrftoken": client.csrf})


@pytest.fixture
async def estates(app, host):
    a = await make_project("ESTA", host=host)
    b = await make_project("ESTB", host=host)
    # An admin of A holds every permission there, so a 403 never hides a leak.
    await make_user("a_admin", "admin", a)
    return a, b


def test_the_walk_finds_plugin_and_core_routes(app):
    paths = {e.path for e in walk(app.router.routes)}
    assert "/p/{project}/hello/" in paths and "/p/{project}/modules" in paths
    assert "/admin/users/{id:int}" in paths


def estate_models() -> list[str]:
    from core.db import all_models
    from core.scope import ProjectScopedModel

    return sorted(
        f"{m._meta.app}.{m.__name__}" for m in all_models() if issubclass(m, ProjectScopedModel) and not m._meta.abstract
    )


def cases(endpoint: Endpoint) -> list[tuple[str, str]]:
    """(model label, id parameter) pairs a route addresses a record by.

    A route names its model with `model=`; generic routes (timeline, files)
    take the model label as the `{label}` parameter, so any estate model fits.
    """
    info = endpoint.info
    if info.public:
        return []
    if info.model:
        return [] if info.model in SHARED_MODELS else [(info.model, info.id_param)]
    if "{label}" in endpoint.path and re.search(r"{id(:int)?}", endpoint.path):
        return [(label, "id") for label in estate_models()]
    return []


async def test_records_of_another_estate_answer_404_on_every_route(client, app, estates):
    a, b = estates
    await client.login("a_admin")
    checked = []
    records: dict[str, object] = {}
    for endpoint in walk(app.router.routes):
        for label, id_param in cases(endpoint):
            if label not in records:
                records[label] = await make_record(label, b)
            values = {id_param: records[label].pk, "label": label}
            for code in [a.code, b.code] if endpoint.info.in_project else [None]:
                url = endpoint.url(project=code, **values)
                for method in endpoint.methods:
                    response = await request(client, method, url)
                    assert response.status_code == 404, f"{method} {url} ({label} of estate B): {response.status_code}"
                    checked.append((method, url))
    assert any("/admin/users/" in url for _, url in checked)


async def test_every_page_of_another_estate_answers_404(client, app, estates):
    a, b = estates
    await client.login("a_admin")
    project_routes = [e for e in walk(app.router.routes) if e.info.in_project and not e.info.public]
    assert len(project_routes) >= 3
    for endpoint in project_routes:
        url = endpoint.url(project=b.code)
        for method in endpoint.methods:
            response = await request(client, method, url)
            assert response.status_code == 404, f"{method} {url}: {response.status_code}"
    # ...while the same pages exist in the user's own estate.
    assert (await client.get("/p/ESTA/hello/")).status_code == 200


async def test_a_record_of_every_estate_model_can_be_made(estates):
    """Keeps the walk above honest: a model route it could not fill would fail there."""
    from core.db import model_by_label
    from core.scope import unscoped

    _, b = estates
    for label in estate_models():
        record = await make_record(label, b)
        with unscoped():
            assert (await model_by_label(label).get(pk=record.pk)).project_id == b.id, label
