"""A test plugin whose customer 360 section and search provider always fail."""

from core.api import HOOK_API_VERSION, Manifest, hookimpl

MANIFEST = Manifest(name="broken_sections", label="Broken sections", version="1.0", hook_api=HOOK_API_VERSION)


@hookimpl
async def customer_sections(request, customer):
    raise RuntimeError("the plugin's database is down")


@hookimpl
def search(query):
    raise RuntimeError("the search index is down")
