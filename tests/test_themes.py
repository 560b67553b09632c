"""A theme override changes pages of the estates that chose it, and only those."""

from core.testing import make_project, make_user


async def test_theme_override_applies_to_one_estate_only(client, app, host):
    plain = await make_project("PLAIN", host=host)
    branded = await make_project("BRAND", host=host, theme="harbour")
    user = await make_user("both", "manager", plain)
    from core.accounts import add_membership

    await add_membership(user, "manager", branded)
    await client.login("both")

    branded_page = (await client.get("/p/BRAND/")).text
    plain_page = (await client.get("/p/PLAIN/")).text
    assert "港湾生活" in branded_page and "/static/themes/harbour/theme.css" in branded_page
    assert "港湾生活" not in plain_page and "theme.css" not in plain_page
    # The override extends the template it replaces: the rest of the layout is still there.
    assert 'id="global-search"' in branded_page
    css = await client.get("/static/themes/harbour/theme.css")
    assert css.status_code == 200 and "--brand" in css.text
