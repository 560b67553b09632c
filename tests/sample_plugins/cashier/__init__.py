"""Test plugin: a cash desk whose "Receipt" is a payment receipt (see keydesk for the other meaning).

Its catalog also translates core's "Search" its own way: only its own text may use that.
"""

from core.api import (
    HOOK_API_VERSION, Manifest, NavItem, Permission, gettext, hookimpl, lazy_gettext, lazy_pgettext, ngettext,
    pgettext, render, route,
)

from tests.sample_plugins.cashier import wording

MANIFEST = Manifest(name="cashier", label=lazy_gettext("Receipt"), version="1.0", hook_api=HOOK_API_VERSION)

DRAWER = lazy_pgettext("till", "Drawer")


async def page(request):
    return await render(request, "cashier/page.html", {
        "said": gettext("Receipt"),
        "counted": ngettext("%(num)s receipt", "%(num)s receipts", 3),
        "drawer": pgettext("till", "Drawer"),
        "lazy_drawer": DRAWER,
        "from_submodule": wording.receipt(),
    })


@hookimpl
def register_permissions():
    return [Permission("cashier.view", lazy_gettext("See receipts"), roles=("admin", "manager", "agent"))]


@hookimpl
def register_routes():
    return [route("/", page, permission="cashier.view")]


@hookimpl
def navigation(request, project):
    return [NavItem(lazy_gettext("Receipt"), f"/p/{project.code}/cashier/", permission="cashier.view")]
