"""Test plugin: a key desk whose "Receipt" is the slip signed when keys are handed over."""

from core.api import HOOK_API_VERSION, Manifest, Permission, gettext, hookimpl, lazy_gettext, render, route

MANIFEST = Manifest(name="keydesk", label=lazy_gettext("Receipt"), version="1.0", hook_api=HOOK_API_VERSION)


async def page(request):
    return await render(request, "keydesk/page.html", {"said": gettext("Receipt")})


@hookimpl
def register_permissions():
    return [Permission("keydesk.view", lazy_gettext("See key receipts"), roles=("admin", "manager", "agent"))]


@hookimpl
def register_routes():
    return [route("/", page, permission="keydesk.view")]
