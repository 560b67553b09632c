"""Each plugin's text comes from its own catalog (then core's): one English word, two meanings.

The sample plugins `cashier` and `keydesk` both say "Receipt"; in Chinese the
cash desk's is a payment receipt (收款收据), the key desk's a key hand-over
slip (钥匙签收单). `cashier` also translates core's "Search" its own way,
which must not leak into core's layout around its page.
"""

import re

import pytest

from core import i18n, i18n_tools
from core.outbox import render_email
from core.testing import make_project, translated

CASHIER = "tests.sample_plugins.cashier"
KEYDESK = "tests.sample_plugins.keydesk"


@pytest.fixture
def plugin_modules():
    return [CASHIER, KEYDESK]


@pytest.fixture
async def estate(app, host):
    return await make_project("EAST", host=host)


def shown(html: str, element_id: str) -> str:
    found = re.search(rf'<p id="{element_id}">(.*?)</p>', html, re.S)
    assert found, f"#{element_id} not on the page"
    return found.group(1).strip()


async def test_two_plugins_show_their_own_translation_of_the_same_word(estate, login_as):
    client = await login_as("agent", estate, locale="zh_CN")
    cash = (await client.get("/p/EAST/cashier/")).text
    keys = (await client.get("/p/EAST/keydesk/")).text
    # In templates, in {% trans %}, and from Python code of the plugin (also a submodule).
    for element in ("template", "trans", "python", "submodule"):
        assert shown(cash, element) == "收款收据", element
    for element in ("template", "python"):
        assert shown(keys, element) == "钥匙签收单", element
    # A template of another plugin included in the page speaks its own plugin's language.
    assert shown(cash, "included") == "钥匙签收单"
    # Plurals and msgctxt: "Drawer" of the till is not any drawer.
    assert shown(cash, "plural") == "3 张收据"
    assert shown(cash, "context") == "钱箱" and shown(cash, "python-context") == "钱箱 / 钱箱"


async def test_core_text_still_translates_in_plugin_pages_and_stays_cores(estate, login_as):
    client = await login_as("agent", estate, locale="zh_CN")
    cash = (await client.get("/p/EAST/cashier/")).text
    # A core string the plugin's catalog lacks falls back to core's translation.
    assert shown(cash, "core-only") == "退出登录"
    # The plugin's own "Search" is its own; the layout's (core/base.html) keeps core's.
    assert shown(cash, "own-search") == "查收据"
    assert '<label for="global-search" class="visually-hidden">搜索</label>' in cash and "查收据" not in cash.replace(
        '<p id="own-search">查收据</p>', ""
    )
    # A label made at import time (its navigation entry) is translated by its plugin's catalog when shown.
    assert '<span class="nav-label">收款收据</span>' in cash


async def test_english_users_see_the_source_text(estate, login_as):
    client = await login_as("agent", estate, locale="en")
    cash = (await client.get("/p/EAST/cashier/")).text
    assert shown(cash, "template") == "Receipt" and shown(cash, "context") == "Drawer"
    assert shown(cash, "plural") == "3 receipts"


async def test_plugin_emails_use_the_plugins_catalog(estate, host):
    mail = render_email("cashier/paid", {"number": "R-7"}, "zh_CN", host)
    assert mail.subject == "收款收据 R-7"
    assert mail.text.splitlines() == ["收款收据 R-7", "2 张收据", "退出登录"]
    assert render_email("cashier/paid", {"number": "R-7"}, "en", host).subject == "Receipt R-7"


async def test_python_side_lookup_by_plugin_and_the_test_helper(estate):
    with i18n.use_locale("zh_CN"):
        assert i18n.dgettext("cashier", "Receipt") == "收款收据"
        assert i18n.dgettext("keydesk", "Receipt") == "钥匙签收单"
        # Core's catalog first for core, then any plugin's for words core lacks.
        assert i18n.gettext("Search") == "搜索"
        assert i18n.dgettext("keydesk", "Search") == "搜索"
    assert translated("Receipt", "zh_CN", plugin="keydesk") == "钥匙签收单"
    assert translated("See receipts", "zh_CN") == "查看收据"


def test_template_names_map_to_their_plugin():
    assert i18n.plugin_of_template("hotline/orders.html") == "hotline"
    assert i18n.plugin_of_template("default:core/base.html") == "core"
    assert i18n.plugin_of_template("fees/email/reminder.subject.txt") == "fees"
    assert i18n.plugin_of_template(None) == "core" and i18n.plugin_of_template("loose.html") == "core"


def test_extraction_keeps_the_context_and_completeness_checks_it(host):
    cashier = host.by_name["cashier"]
    extracted = {(m.context, m.id if isinstance(m.id, str) else m.id[0]) for m in i18n_tools.extract(cashier) if m.id}
    assert ("till", "Drawer") in extracted and (None, "Receipt") in extracted
    gaps = [g.message for g in i18n_tools.untranslated(host) if g.plugin == "cashier"]
    # "Drawer" of the till is translated (with its context); "Log out" is left to core on purpose.
    assert gaps == ["Log out"]
