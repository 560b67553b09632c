"""The email outbox: queued in the caller's transaction, sent later with retries.

`queue_email(...)` renders the message from `templates/<plugin>/email/<name>.*`
in the recipient's language and writes it to `core_outbox_message` through
the caller's current connection, so it commits or rolls back with the change
that caused it. Each message gets its Message-ID at that moment; a retried
send keeps it, so a receiving server can spot a duplicate.

`send_pending()` (the global job "core.send_email" every minute, and shortly
after a message is queued in a process with a worker) claims due messages,
marking them `sending` with a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`;
SQLite: a compare-and-set UPDATE per message), and sends them over one SMTP
connection. Each message's outcome is its own: a temporary failure (4xx,
refused connection, timeout) retries with exponential backoff up to
`smtp.max_attempts` and then fails; a permanent 5xx fails that message only.
With no SMTP host configured messages stay queued for the Outbox page.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any
from weakref import WeakKeyDictionary

import aiosmtplib
import jinja2
from tortoise import fields
from tortoise.models import Model

from core import clock, i18n
from core.db import claim_rows
from core.plugins import PluginHost, current_host

log = logging.getLogger("courtyard.outbox")


class MailState:
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CHOICES = {
        QUEUED: i18n.lazy_gettext("Queued"),
        SENDING: i18n.lazy_gettext("Sending"),
        SENT: i18n.lazy_gettext("Sent"),
        FAILED: i18n.lazy_gettext("Failed"),
    }


class OutboxMessage(Model):
    """One email, rendered when queued, with its delivery attempts."""

    id = fields.BigIntField(primary_key=True)
    message_id = fields.CharField(max_length=255, unique=True)
    project = fields.ForeignKeyField("core.Project", related_name=False, null=True, on_delete=fields.SET_NULL)
    recipient = fields.CharField(max_length=320)
    subject = fields.CharField(max_length=500)
    body_text = fields.TextField()
    body_html = fields.TextField(default="")
    locale = fields.CharField(max_length=16, default=i18n.DEFAULT_LOCALE)
    template = fields.CharField(max_length=128)
    # What the message is about, e.g. "hotline.WorkOrder:42" (for finding it later).
    related = fields.CharField(max_length=128, default="", db_index=True)
    state = fields.CharField(max_length=16, default=MailState.QUEUED, db_index=True)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(db_index=True)
    lease_until = fields.DatetimeField(null=True)
    worker = fields.CharField(max_length=128, default="")
    last_error = fields.TextField(default="")
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "core_outbox_message"
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.recipient}: {self.subject}"


class EmailError(ValueError):
    """A message that cannot be queued (bad address, missing template)."""


# Rendering -------------------------------------------------------------------

_envs: "WeakKeyDictionary[PluginHost, jinja2.Environment]" = WeakKeyDictionary()


def _environment(host: PluginHost) -> jinja2.Environment:
    """Jinja2 for email: every plugin's templates, HTML escaped only in `.html` files."""
    env = _envs.get(host)
    if env is None:
        from core.app import _plugin_dirs

        dirs = [str(path) for _, path in _plugin_dirs(host, "register_template_dirs", "templates")]
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(dirs),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            extensions=[i18n.PluginCatalogs],  # `<plugin>/email/...` speaks the plugin's catalog
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
        )
        env.filters.update(
            money=i18n.format_money, number=i18n.format_number, percent=i18n.format_percent,
            datetime=i18n.format_datetime, date=i18n.format_date,
        )
        _envs[host] = env
    return env


@dataclass
class Rendered:
    subject: str
    text: str
    html: str


def render_email(template: str, context: dict[str, Any], locale: str, host: PluginHost | None = None) -> Rendered:
    """Render `<plugin>/<name>` from `<plugin>/email/<name>.subject.txt`, `.txt` and (optional) `.html`."""
    from core.settings import current

    plugin, _, name = template.partition("/")
    if not plugin or not name:
        raise EmailError(f"email template {template!r} must be named '<plugin>/<name>'")
    env = _environment(host or current_host())
    settings = current()
    data = {
        "base_url": settings["server"]["base_url"].rstrip("/"),
        "tz": settings["i18n"]["default_timezone"],
        "locale": locale,
        **context,
    }
    base = f"{plugin}/email/{name}"
    previous = i18n.get_locale()
    i18n.set_locale(locale)
    try:
        try:
            subject = env.get_template(f"{base}.subject.txt").render(data)
            text = env.get_template(f"{base}.txt").render(data)
        except jinja2.TemplateNotFound as exc:
            raise EmailError(f"email template {exc.name} not found") from exc
        try:
            html = env.get_template(f"{base}.html").render(data)
        except jinja2.TemplateNotFound:
            html = ""
    finally:
        i18n.set_locale(previous)
    # A header cannot span lines.
    subject = " ".join(subject.split())
    return Rendered(subject=subject, text=text.strip() + "\n", html=html)


def _sender(settings) -> str:
    return settings["smtp"]["sender"]


def _domain(settings) -> str:
    address = parseaddr(_sender(settings))[1]
    return address.rpartition("@")[2] or "courtyard.local"


async def queue_email(
    *,
    to: str,
    template: str,
    context: dict,
    locale: str = "zh_CN",
    project_id: int | None = None,
    related: str = "",
) -> OutboxMessage:
    """Queue an email in the caller's transaction; it is sent only if that transaction commits.

    to: one address ("name@example.com" or "Name <name@example.com>").
    template: "<plugin>/<name>" for templates/<plugin>/email/<name>.subject.txt, .txt and .html.
    context: template variables (plus base_url, tz and locale).
    locale: the recipient's language ("zh_CN" or "en").
    related: what the message is about, e.g. "hotline.WorkOrder:42".
    """
    from core.jobs import kick_mail
    from core.settings import current

    address = parseaddr(to or "")[1]
    if "@" not in address or any(c.isspace() for c in address):
        raise EmailError(i18n.gettext("%(address)s is not a valid email address.", address=to))
    if locale not in i18n.LOCALES:
        locale = i18n.DEFAULT_LOCALE
    rendered = render_email(template, context, locale)
    settings = current()
    now = clock.now()
    message = await OutboxMessage.create(
        # Not email.utils.make_msgid: its random part comes from the shared `random` module, which other
        # code may seed (tests, libraries), so two messages queued in the same 1/100 s got the same id.
        message_id=f"<{secrets.token_hex(16)}@{_domain(settings)}>",
        project_id=project_id,
        recipient=to.strip(),
        subject=rendered.subject[:500],
        body_text=rendered.text,
        body_html=rendered.html,
        locale=locale,
        template=template,
        related=related[:128],
        state=MailState.QUEUED,
        next_attempt_at=now,
        created_at=now,
    )
    kick_mail()
    return message


# Sending ---------------------------------------------------------------------


@dataclass
class SendReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def attempted(self) -> int:
        return self.sent + self.retrying + self.failed


def backoff(settings, attempts: int, section: str = "smtp") -> timedelta:
    """Delay before the next attempt after `attempts` failed ones: base, 2×base, 4×base … at most 6 hours.

    The base is `retry_base_seconds` of the settings' `section` (webhooks use theirs).
    """
    base = max(1.0, float(settings[section]["retry_base_seconds"]))  # > 0, so one pass never retries a message
    return timedelta(seconds=min(base * 2 ** max(0, attempts - 1), 6 * 3600))


def _due(now: datetime):
    from tortoise.expressions import Q

    return Q(state=MailState.QUEUED, next_attempt_at__lte=now) | Q(state=MailState.SENDING, lease_until__lt=now)


async def _claim(now: datetime, lease_until: datetime, worker: str, limit: int) -> list[OutboxMessage]:
    """Mark up to `limit` due messages `sending` for this worker; no other process gets the same ones."""
    claim = {"state": MailState.SENDING, "lease_until": lease_until, "worker": worker}
    rows = await claim_rows(OutboxMessage, _due(now), order_by=("next_attempt_at", "id"), limit=limit, values=claim)
    return [row for row in rows if row.worker == worker and row.state == MailState.SENDING]


def build_message(settings, message: OutboxMessage) -> EmailMessage:
    email = EmailMessage()
    email["From"] = _sender(settings)
    email["To"] = message.recipient
    email["Subject"] = message.subject
    email["Message-ID"] = message.message_id
    email["Date"] = format_datetime(message.created_at.astimezone(timezone.utc))
    email["Content-Language"] = message.locale.replace("_", "-")
    email.set_content(message.body_text)
    if message.body_html:
        email.add_alternative(message.body_html, subtype="html")
    return email


def _smtp_client(settings) -> aiosmtplib.SMTP:
    smtp = settings["smtp"]
    return aiosmtplib.SMTP(
        hostname=smtp["host"],
        port=int(smtp["port"]),
        username=smtp["username"] or None,
        password=smtp["password"] or None,
        use_tls=bool(smtp["use_tls"]),
        start_tls=bool(smtp["starttls"]) if not smtp["use_tls"] else False,
        timeout=float(smtp["timeout_seconds"]),
    )


def _classify(exc: BaseException) -> tuple[bool, str]:
    """(permanent?, error text) for a failed send."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        return all(500 <= code < 600 for code in codes), text
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return 500 <= exc.code < 600, f"{exc.code} {exc.message}"
    return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def send_pending(settings=None, *, now: datetime | None = None, worker_id: str = "") -> SendReport:
    """Send every message due now (each gets its own outcome); returns what happened."""
    from core.jobs import new_worker_id
    from core.settings import current

    settings = settings or current()
    report = SendReport()
    if not settings["smtp"]["host"]:
        return report  # no server configured: messages wait in the outbox
    now = now or clock.now()
    worker = worker_id or new_worker_id()
    smtp_settings = settings["smtp"]
    lease = timedelta(seconds=max(60.0, float(smtp_settings["timeout_seconds"]) * 4))
    batch = max(1, int(smtp_settings["batch_size"]))
    while True:
        messages = await _claim(now, now + lease, worker, batch)
        if not messages:
            return report
        await _send_batch(settings, messages, now, report)


async def _send_batch(settings, messages: list[OutboxMessage], now: datetime, report: SendReport) -> None:
    client: aiosmtplib.SMTP | None = None
    try:
        for index, message in enumerate(messages):
            if client is None:
                client = _smtp_client(settings)
                try:
                    await client.connect()
                except Exception as exc:  # server down or refusing: every message left waits
                    _permanent, text = _classify(exc)
                    log.warning("SMTP server unavailable: %s", text)
                    for waiting in messages[index:]:
                        await _record(settings, waiting, now, report, permanent=False, error=text)
                    return
            try:
                await client.send_message(build_message(settings, message))
            except Exception as exc:
                permanent, text = _classify(exc)
                log.warning("email %s to %s not sent: %s", message.id, message.recipient, text)
                await _record(settings, message, now, report, permanent=permanent, error=text)
                if isinstance(exc, (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused)):
                    # The server answered: the session continues after a reset.
                    try:
                        await client.rset()
                    except Exception:
                        client = _close(client)
                else:
                    client = _close(client)  # reconnect for the next one
                continue
            await _record(settings, message, now, report, sent=True)
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                await client.quit()


def _close(client: aiosmtplib.SMTP) -> None:
    """Drop a broken connection; returns None for `client = _close(client)`."""
    with contextlib.suppress(Exception):
        client.close()


async def _record(
    settings, message: OutboxMessage, now: datetime, report: SendReport, *, sent: bool = False,
    permanent: bool = False, error: str = "",
) -> None:
    """Store one message's outcome (only while we still hold its claim)."""
    mine = OutboxMessage.filter(id=message.id, worker=message.worker, state=MailState.SENDING)
    attempts = message.attempts + 1
    if sent:
        await mine.update(state=MailState.SENT, sent_at=clock.now(), attempts=attempts, lease_until=None)
        report.sent += 1
        return
    if permanent or attempts >= int(settings["smtp"]["max_attempts"]):
        await mine.update(state=MailState.FAILED, attempts=attempts, last_error=error, lease_until=None)
        report.failed += 1
        return
    await mine.update(
        state=MailState.QUEUED, attempts=attempts, last_error=error, lease_until=None,
        next_attempt_at=now + backoff(settings, attempts),
    )
    report.retrying += 1


async def retry(message_ids: list[int] | None = None) -> int:
    """An admin's retry: failed messages (all, or these) are queued again with fresh attempts."""
    query = OutboxMessage.filter(state=MailState.FAILED)
    if message_ids is not None:
        query = query.filter(id__in=message_ids)
    count = await query.update(state=MailState.QUEUED, attempts=0, next_attempt_at=clock.now())
    if count:
        from core.jobs import kick_mail

        kick_mail()
    return count


async def send_email_job(ctx) -> None:
    """The "core.send_email" job: deliver what is due."""
    report = await send_pending(ctx.settings, now=ctx.now())
    if report.attempted:
        ctx.log(
            i18n.gettext(
                "Sent %(sent)s, will retry %(retrying)s, failed %(failed)s.",
                sent=report.sent, retrying=report.retrying, failed=report.failed,
            )
        )
