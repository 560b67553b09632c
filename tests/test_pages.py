"""Every page of every module renders, in both languages, on the demo estates.

The walk takes the routes from the running app, so pages that plugins add
later are covered without touching this test. A GET route whose only path
parameters are the project and a declared record gets the first record of
that model in the estate.
"""

import re

import pytest
from starlette.routing import Mount, Route

from core.db import model_by_label
from core.demo import DEMO_PASSWORD, load_demo
from core.scope import unscoped

PROJECT = "CUIHU"
# Pages that exist only once the record reached a certain state (the walk takes the first record).
ONLY_IN_SOME_STATES = {"/p/{project}/handover/handovers/{id:int}/key-receipt": "after the keys were handed over"}


def walk(routes, prefix=""):
    for r in routes:
        if isinstance(r, Mount):
            if r.path.startswith("/static"):
                continue
            yield from walk(r.routes, prefix + r.path)
        elif isinstance(r, Route) and "GET" in (r.methods or ()):
            yield prefix + r.path, r


async def first_record(label, project_id):
    model = model_by_label(label)
    with unscoped():
        query = model.all()
        if "project" in model._meta.fields_map:
            query = query.filter(project_id=project_id)
        return await query.order_by("id").first()


async def page_urls(app):
    from core.models import Project

    with unscoped():
        project = await Project.get(code=PROJECT)
    urls = []
    for path, r in walk(app.router.routes):
        info = r.courtyard
        # Public pages need a signed link; the event stream never ends by design.
        if info.public or info.webhook or r.name == "events" or path in ONLY_IN_SOME_STATES:
            continue
        params = set(re.findall(r"{(\w+)(?::\w+)?}", path))
        values = {"project": PROJECT} if "project" in params else {}
        if info.model and info.id_param in params:
            record = await first_record(info.model, project.id)
            if record is None:
                continue
            values[info.id_param] = record.id
        if set(values) != params:
            continue
        url = re.sub(r"{(\w+)(?::\w+)?}", lambda m: str(values[m.group(1)]), path)
        urls.append(url)
    return sorted(set(urls))


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
async def test_every_page_renders_for_the_head_office_admin(client, app, host, locale):
    await load_demo(host)
    await client.login("admin", DEMO_PASSWORD)
    await client.form("/lang", {"locale": locale, "next": "/"})
    urls = await page_urls(app)
    assert len(urls) > 20
    failures = []
    for url in urls:
        response = await client.get(url)
        # A form endpoint opened without its query may send the user on (3xx); never an error.
        if response.status_code >= 400:
            failures.append(f"{url}: {response.status_code}")
    assert not failures, "pages that do not render:\n" + "\n".join(failures)
