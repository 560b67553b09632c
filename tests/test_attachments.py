"""Files on records: type from the bytes, size limit, safe download headers, estates kept apart."""

import hashlib
from pathlib import Path

import pytest

from core import attachments
from core.attachments import Attachment, AttachmentError
from core.people import create_customer
from core.scope import unscoped
from core.testing import make_project, make_user
from core.timeline import TimelineEntry

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"\x00" * 2000
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 500
PDF = b"%PDF-1.7\n" + b"1 0 obj\n<<>>\nendobj\n" * 20
HTML = b"<html><script>alert(document.cookie)</script></html>"


@pytest.fixture
def settings(settings):
    settings.data["storage"]["max_upload_mb"] = 1
    return settings


@pytest.fixture
async def estates(app, host):
    east = await make_project("EAST", host=host)
    west = await make_project("WEST", host=host)
    agent = await make_user("east_agent", "agent", east, display_name="王客服")
    with unscoped():
        zhang = await create_customer(east, "张三", ["13800138000"])
        li = await create_customer(west, "李四", ["13900139000"])
    return east, west, agent, zhang, li


def stored_files(settings) -> list[Path]:
    root = settings.storage_path
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def upload(client, path, name, content, content_type="application/octet-stream", htmx=True):
    return await client.form(path, {}, htmx=htmx, files={"file": (name, content, content_type)})


async def test_upload_is_stored_under_a_random_name_and_noted_in_the_timeline(client, estates, settings):
    east, west, agent, zhang, li = estates
    await client.login("east_agent")
    response = await upload(client, f"/p/EAST/files/core.Customer/{zhang.id}", "../../门口裂缝.jpg", JPEG, "text/plain")
    assert response.status_code == 200, response.text
    assert "门口裂缝.jpg" in response.text and "timelineChanged" in response.headers["HX-Trigger"]

    with unscoped():
        item = await Attachment.get(subject="core.Customer", subject_id=zhang.id)
        entry = await TimelineEntry.get(subject="core.Customer", subject_id=zhang.id)
    assert (item.filename, item.content_type, item.size) == ("门口裂缝.jpg", "image/jpeg", len(JPEG))
    assert item.sha256 == hashlib.sha256(JPEG).hexdigest() and item.uploaded_by_id == agent.id
    files = stored_files(settings)
    assert len(files) == 1 and files[0].read_bytes() == JPEG
    relative = files[0].relative_to(settings.storage_path).parts
    assert relative[0] == str(east.id) and len(relative) == 4 and "裂缝" not in relative[3]
    assert (entry.kind, entry.body, entry.author_id, entry.data["attachment_id"]) == ("attachment", "门口裂缝.jpg", agent.id, item.id)

    listed = await client.get(f"/p/EAST/timeline/core.Customer/{zhang.id}")
    assert f'href="/p/EAST/files/{item.id}"' in listed.text


async def test_type_is_detected_from_the_content_not_the_name(client, estates, settings):
    east, west, agent, zhang, li = estates
    await client.login("east_agent")
    response = await upload(client, f"/p/EAST/files/core.Customer/{zhang.id}", "photo.jpg", HTML, "image/jpeg")
    assert response.status_code == 422
    assert "This type of file is not accepted. Allowed: JPEG, PNG, WebP, PDF." in response.text
    empty = await upload(client, f"/p/EAST/files/core.Customer/{zhang.id}", "empty.pdf", b"", "application/pdf")
    assert empty.status_code == 422 and "The file is empty." in empty.text
    missing = await client.form(f"/p/EAST/files/core.Customer/{zhang.id}", {"note": "x"}, htmx=True)
    assert missing.status_code == 422 and "Choose a file to upload." in missing.text
    with unscoped():
        assert await Attachment.all().count() == 0 and await TimelineEntry.all().count() == 0
    assert stored_files(settings) == []

    # A plain form post goes back to the page with the message instead.
    plain = await upload(client, f"/p/EAST/files/core.Customer/{zhang.id}?next=/p/EAST/customers/{zhang.id}", "x.jpg", HTML, htmx=False)
    assert plain.status_code == 303 and plain.headers["location"] == f"/p/EAST/customers/{zhang.id}"


async def test_files_over_the_size_limit_are_refused_and_leave_nothing(client, estates, settings):
    east, west, agent, zhang, li = estates
    await client.login("east_agent")
    # Just over 1 MB gets past the declared length check and is stopped while streaming;
    # a much larger body is refused before it is read.
    for size in (1024 * 1024 + 10, 3 * 1024 * 1024):
        response = await upload(client, f"/p/EAST/files/core.Customer/{zhang.id}", "big.jpg", JPEG + b"\x00" * size)
        assert response.status_code == 422 and "The file is larger than 1 MB." in response.text
    with unscoped():
        assert await Attachment.all().count() == 0
    assert stored_files(settings) == []


async def test_download_headers(client, estates):
    east, west, agent, zhang, li = estates
    with unscoped():
        photo = await attachments.attach(zhang, JPEG, "门口.jpg", author=agent)
        receipt = await attachments.attach(zhang, PDF, 'receipt "May".pdf', author=None)
        assert [a.id for a in await attachments.list_for(zhang)] == [receipt.id, photo.id]
    await client.login("east_agent")

    shown = await client.get(f"/p/EAST/files/{photo.id}")
    assert shown.status_code == 200 and shown.content == JPEG
    assert shown.headers["content-type"] == "image/jpeg"
    assert shown.headers["content-disposition"].startswith("inline;")
    assert "filename*=UTF-8''%E9%97%A8%E5%8F%A3.jpg" in shown.headers["content-disposition"]
    assert shown.headers["x-content-type-options"] == "nosniff"

    saved = await client.get(f"/p/EAST/files/{receipt.id}")
    assert saved.headers["content-type"] == "application/pdf"
    assert saved.headers["content-disposition"].startswith('attachment; filename="receipt May.pdf"')
    assert "sandbox" in saved.headers["content-security-policy"]


async def test_other_estates_files_answer_404(client, estates, settings):
    east, west, agent, zhang, li = estates
    with unscoped():
        theirs = await attachments.attach(li, PNG, "west.png", author=None)
    await client.login("east_agent")
    assert (await client.get(f"/p/EAST/files/{theirs.id}")).status_code == 404
    assert (await client.get(f"/p/WEST/files/{theirs.id}")).status_code == 404
    response = await upload(client, f"/p/EAST/files/core.Customer/{li.id}", "x.png", PNG)
    assert response.status_code == 404
    with unscoped():
        assert await Attachment.filter(subject_id=li.id).count() == 1
    assert len(stored_files(settings)) == 1


async def test_attach_api_refuses_bad_files(client, estates, settings):
    east, west, agent, zhang, li = estates
    with unscoped(), pytest.raises(AttachmentError):
        await attachments.attach(zhang, HTML, "page.pdf", author=agent)
    settings.data["storage"]["allowed_types"] = ["application/pdf"]
    with unscoped(), pytest.raises(AttachmentError, match="Allowed: PDF"):
        await attachments.attach(zhang, PNG, "photo.png", author=agent)
    assert stored_files(settings) == []


async def test_upload_forms_need_the_csrf_token_before_the_file(client, estates, settings):
    east, west, agent, zhang, li = estates
    await client.login("east_agent")
    path = f"/p/EAST/files/core.Customer/{zhang.id}"
    no_token = await client.post(path, files={"file": ("a.jpg", JPEG, "image/jpeg")})
    wrong_token = await client.post(path, data={"csrftoken": "forged"}, files={"file": ("a.jpg", JPEG, "image/jpeg")})
    assert no_token.status_code == 403 and wrong_token.status_code == 403
    # htmx sends the token as a header instead.
    with_header = await client.post(
        path, files={"file": ("a.jpg", JPEG, "image/jpeg")}, headers={"x-csrftoken": client.csrf, "HX-Request": "true"}
    )
    assert with_header.status_code == 200
    with unscoped():
        assert await Attachment.all().count() == 1
