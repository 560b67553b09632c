"""The email outbox against a real SMTP server (aiosmtpd) that fails, goes down and comes back."""

import asyncio
from datetime import datetime, timedelta, timezone
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller

from core.db import transaction
from core.jobs import run_job_now
from core.outbox import EmailError, OutboxMessage, queue_email, send_pending
from core.testing import free_port, make_project, make_user

CHORES = "tests.sample_plugins.chores"


@pytest.fixture
def plugin_modules():
    return [CHORES]


class Mailbox:
    """An SMTP handler that can answer 4xx for a while and refuse some recipients for good."""

    def __init__(self):
        self.received = []
        self.busy = 0  # answer this many DATA commands with 451
        self.unknown: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.unknown:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.busy > 0:
            self.busy -= 1
            return "451 4.3.0 Mailbox busy, try again later"
        self.received.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted"

    def ids(self) -> list[str]:
        return [m["Message-ID"] for m in self.received]


class SmtpServer:
    def __init__(self, port: int):
        self.port = port
        self.box = Mailbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.box, hostname="127.0.0.1", port=self.port, ready_timeout=5)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp(settings):
    server = SmtpServer(free_port())
    server.start()
    settings["smtp"].update(host="127.0.0.1", port=server.port, timeout_seconds=5, retry_base_seconds=60)
    yield server
    server.stop()


@pytest.fixture
async def people(app, host):
    east = await make_project("EAST", host=host)
    await make_user("boss", "admin", None, email="boss@example.com", locale="en")
    await make_user("east_admin", "admin", east)
    return east


def now() -> datetime:
    return datetime.now(timezone.utc)


async def queue(count: int, start: int = 0, **kw) -> list[OutboxMessage]:
    return [
        await queue_email(to=f"owner{i}@example.com", template="chores/reminder", context={"name": f"Owner {i}"}, locale="en", **kw)
        for i in range(start, start + count)
    ]


async def test_a_rolled_back_transaction_queues_no_email(people):
    with pytest.raises(RuntimeError):
        async with transaction():
            await queue(2)
            raise RuntimeError("the change failed")
    assert await OutboxMessage.all().count() == 0
    async with transaction():
        await queue(1)
    assert await OutboxMessage.all().count() == 1


async def test_message_ids_stay_unique_when_someone_seeds_the_random_module(people, monkeypatch):
    # Hypothesis, for one, reseeds `random` before every example: queued in the same 1/100 s, two
    # messages had the same Message-ID and the second one's request answered 500.
    import random
    import time

    monkeypatch.setattr(time, "time", lambda: 1_795_000_000.0)
    messages = []
    for _ in range(3):
        random.seed(0)
        messages += await queue(1)
    assert len({m.message_id for m in messages}) == 3


async def test_email_is_rendered_in_the_recipients_language_with_text_and_html(people, smtp):
    chinese = await queue_email(
        to="张三 <zhang@example.com>", template="chores/reminder", context={"name": "<b>张三</b>"}, locale="zh_CN",
        project_id=people.id, related="hotline.WorkOrder:7",
    )
    english = await queue_email(to="lee@example.com", template="chores/reminder", context={"name": "Lee"}, locale="en")
    assert chinese.subject == "<b>张三</b>的提醒" and english.subject == "Reminder for Lee"

    report = await send_pending()
    assert (report.sent, report.retrying, report.failed) == (2, 0, 0)
    first, second = smtp.box.received
    assert first["Message-ID"] == chinese.message_id and second["Message-ID"] == english.message_id
    assert first["Subject"] == "<b>张三</b>的提醒" and first["To"].addresses[0].username == "zhang"
    text = first.get_body(("plain",)).get_content()
    html = first.get_body(("html",)).get_content()
    assert "尊敬的" in text and "<b>张三</b>" in text and "您的预约在明天。" in text and "http://127.0.0.1:8000/appointments" in text
    assert "&lt;b&gt;张三&lt;/b&gt;" in html  # escaped in HTML only
    assert "Your appointment is tomorrow." in second.get_body(("plain",)).get_content()
    assert {m.state for m in await OutboxMessage.all()} == {"sent"}


async def test_temporary_refusals_are_retried_with_backoff_and_each_email_arrives_once(people, smtp):
    messages = await queue(3)
    smtp.box.busy = 2
    start = now()
    report = await send_pending(now=start)
    assert (report.sent, report.retrying) == (1, 2)
    waiting = await OutboxMessage.filter(state="queued").order_by("id")
    assert [m.attempts for m in waiting] == [1, 1] and "451" in waiting[0].last_error
    assert waiting[0].next_attempt_at == start + timedelta(seconds=60)

    assert (await send_pending(now=start + timedelta(seconds=30))).attempted == 0  # not due yet
    report = await send_pending(now=start + timedelta(seconds=61))
    assert report.sent == 2
    assert sorted(smtp.box.ids()) == sorted(m.message_id for m in messages)  # a retry keeps its Message-ID
    assert (await send_pending(now=start + timedelta(days=1))).attempted == 0
    assert len(smtp.box.received) == 3


async def test_mail_queued_while_the_server_is_down_is_delivered_when_it_is_back(people, smtp):
    smtp.stop()
    messages = await queue(3)
    start = now()
    report = await send_pending(now=start)
    assert report.retrying == 3
    report = await send_pending(now=start + timedelta(seconds=61))
    assert report.retrying == 3
    waiting = await OutboxMessage.all().order_by("id")
    assert all(m.state == "queued" and m.attempts == 2 for m in waiting)
    assert "Connect" in waiting[0].last_error or "refused" in waiting[0].last_error.lower()
    # Backoff doubles: the third attempt waits two minutes.
    assert waiting[0].next_attempt_at == start + timedelta(seconds=61 + 120)

    smtp.start()
    assert (await send_pending(now=start + timedelta(seconds=150))).attempted == 0
    report = await send_pending(now=start + timedelta(seconds=182))
    assert report.sent == 3
    assert sorted(smtp.box.ids()) == sorted(m.message_id for m in messages)
    assert (await send_pending(now=start + timedelta(days=1))).attempted == 0
    assert len(smtp.box.received) == 3


async def test_a_permanent_refusal_fails_only_that_message(people, smtp):
    await queue(1, 0)
    rejected = await queue_email(to="nobody@example.com", template="chores/reminder", context={"name": "x"}, locale="en")
    await queue(1, 1)
    smtp.box.unknown.add("nobody@example.com")
    report = await send_pending()
    assert (report.sent, report.failed, report.retrying) == (2, 1, 0)
    rejected = await OutboxMessage.get(id=rejected.id)
    assert rejected.state == "failed" and "550" in rejected.last_error and rejected.attempts == 1
    assert [m["To"] for m in smtp.box.received] == ["owner0@example.com", "owner1@example.com"]


async def test_after_the_last_attempt_an_admin_sees_the_failure_and_retries_it(people, smtp, settings, client):
    settings["smtp"]["max_attempts"] = 2
    [message] = await queue(1)
    smtp.box.busy = 100
    start = now()
    await send_pending(now=start)
    report = await send_pending(now=start + timedelta(seconds=61))
    assert report.failed == 1

    await client.login("boss")
    page = await client.get("/outbox?state=failed")
    assert page.status_code == 200 and "Reminder for Owner 0" in page.text and "451" in page.text
    detail = await client.get(f"/outbox/{message.id}")
    assert "Dear Owner 0," in detail.text and "2 / 2" in detail.text and message.message_id.strip("<>") in detail.text

    response = await client.form(f"/outbox/{message.id}/retry")
    assert response.status_code == 303
    retried = await OutboxMessage.get(id=message.id)
    assert retried.state == "queued" and retried.attempts == 0
    smtp.box.busy = 0
    report = await send_pending(now=now() + timedelta(seconds=1))
    assert report.sent == 1 and smtp.box.ids() == [message.message_id]


async def test_without_an_smtp_server_mail_waits_in_the_outbox_page(people, client, make_client):
    [message] = await queue(1)
    assert (await send_pending()).attempted == 0
    assert (await OutboxMessage.get(id=message.id)).state == "queued"
    await client.login("boss")
    page = await client.get("/outbox")
    assert "No SMTP server is configured" in page.text and "Reminder for Owner 0" in page.text
    assert 'href="/outbox"' in page.text  # in the administration menu
    detail = await client.get(f"/outbox/{message.id}")
    assert "Your appointment is tomorrow." in detail.text and "srcdoc=" in detail.text
    estate_admin = make_client()
    await estate_admin.login("east_admin")
    assert (await estate_admin.get(f"/outbox/{message.id}")).status_code == 403


async def test_concurrent_senders_deliver_each_message_once(people, smtp):
    messages = await queue(12)
    reports = await asyncio.gather(*(send_pending(worker_id=f"w{i}") for i in range(3)))
    assert sum(r.sent for r in reports) == 12
    assert sorted(smtp.box.ids()) == sorted(m.message_id for m in messages)


async def test_the_send_email_job_delivers_the_queue(people, smtp):
    await queue(2)
    run = await run_job_now("core.send_email")
    assert run.state == "done" and "Sent 2" in run.log
    assert len(smtp.box.received) == 2


async def test_bad_addresses_and_templates_are_refused_when_queued(people):
    with pytest.raises(EmailError, match="not a valid email address"):
        await queue_email(to="not an address", template="chores/reminder", context={"name": "x"})
    with pytest.raises(EmailError, match="not found"):
        await queue_email(to="a@example.com", template="chores/missing", context={})
    assert await OutboxMessage.all().count() == 0
