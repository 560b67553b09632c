"""A test plugin for search and the customer 360 page: finds work orders, and has a section whose template fails."""

from core.api import HOOK_API_VERSION, CustomerSection, Manifest, SearchResult, hookimpl

MANIFEST = Manifest(name="lookup", label="Lookup", version="1.0", hook_api=HOOK_API_VERSION)


@hookimpl
def search(query, project_ids):
    # One made-up work order per estate, numbered like the hotline's: WO-<project id>.
    return [
        SearchResult("Work order", f"WO-{pid}", f"/orders/{pid}", subtitle="Leaking pipe", project_id=pid)
        for pid in project_ids
        if query.upper() == "WO"
    ]


@hookimpl
def customer_sections(customer):
    return [
        CustomerSection("Broken section", "lookup/broken.html", {"boom": lambda: 1 / 0}, order=50),
        CustomerSection("Secret section", "lookup/broken.html", permission="lookup.secret", order=60),
    ]
