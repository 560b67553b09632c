"""Telephony, duty log and FAQ models of the hotline (the work-order models are in `models.py`)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from core.api import ProjectScopedModel, lazy_gettext as _


class PbxIntegration(Model):
    """A PBX or cloud call centre that posts call events to us, signed with its own secret.

    Belongs to one estate (its front desk's lines) or, with no project, to
    head office (the 400 hotline serving every estate).
    """

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    project = fields.ForeignKeyField("core.Project", related_name=False, null=True, on_delete=fields.CASCADE)
    secret = fields.CharField(max_length=128)
    # Which registered adapter reads this PBX's event format (hook `register_call_adapters`).
    adapter = fields.CharField(max_length=32, default="generic")
    # Events whose timestamp is further than this from our clock are refused (replays, wrong clocks).
    max_skew_seconds = fields.IntField(default=300)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "hotline_pbx_integration"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PbxEventReceipt(Model):
    """An event id already processed: the same event posted again is ignored (replay protection)."""

    id = fields.BigIntField(primary_key=True)
    integration = fields.ForeignKeyField("hotline.PbxIntegration", related_name=False, on_delete=fields.CASCADE)
    event_id = fields.CharField(max_length=128)
    received_at = fields.DatetimeField(db_index=True)

    class Meta:
        table = "hotline_pbx_event_receipt"
        unique_together = (("integration", "event_id"),)


class CallStatus:
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"
    MISSED = "missed"
    CHOICES = {RINGING: _("Ringing"), ANSWERED: _("Answered"), ENDED: _("Ended"), MISSED: _("Missed")}
    BADGES = {RINGING: "new", ANSWERED: "progress", ENDED: "done", MISSED: "danger"}


class Call(ProjectScopedModel):
    """A phone call as the PBX reported it, linked to the caller and what came of it.

    The project is empty for a call to head office from a number no estate
    knows, until intake records whom it was from.
    """

    id = fields.BigIntField(primary_key=True)
    project = fields.ForeignKeyField("core.Project", related_name=False, null=True, on_delete=fields.RESTRICT)
    integration = fields.ForeignKeyField("hotline.PbxIntegration", related_name=False, null=True, on_delete=fields.SET_NULL)
    external_id = fields.CharField(max_length=128)  # the PBX's call id
    caller = fields.CharField(max_length=32, db_index=True)  # E.164 when it is a phone number, else as sent
    customer = fields.ForeignKeyField("core.Customer", related_name=False, null=True, on_delete=fields.SET_NULL)
    agent = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    extension = fields.CharField(max_length=16, default="")
    status = fields.CharField(max_length=16, default=CallStatus.RINGING)
    started_at = fields.DatetimeField(db_index=True)
    answered_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)
    # Talk time in seconds (answered to ended); 0 for calls nobody answered.
    duration_seconds = fields.IntField(default=0)
    # The work order recorded for this call and the callback task of a missed call (plugin-internal ids).
    work_order_id = fields.BigIntField(null=True)
    callback_task_id = fields.BigIntField(null=True)

    class Meta:
        table = "hotline_call"
        unique_together = (("integration", "external_id"),)
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return self.caller

    @property
    def status_label(self) -> str:
        return str(CallStatus.CHOICES.get(self.status, self.status))

    @property
    def status_badge(self) -> str:
        return CallStatus.BADGES.get(self.status, "muted")


class DutyShift(ProjectScopedModel):
    """One agent's shift at an estate's service desk (值班), ended with a handover note."""

    id = fields.IntField(primary_key=True)
    agent = fields.ForeignKeyField("core.User", related_name=False, on_delete=fields.RESTRICT)
    started_at = fields.DatetimeField(db_index=True)
    ended_at = fields.DatetimeField(null=True)
    handover_note = fields.TextField(default="")
    # The incoming agent confirms having read the note.
    acknowledged_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    acknowledged_at = fields.DatetimeField(null=True)

    class Meta:
        table = "hotline_duty_shift"
        ordering = ["-started_at", "-id"]


class DutyEntryKind:
    VISIT = "visit"
    CALL = "call"
    OTHER = "other"
    CHOICES = {VISIT: _("Visit"), CALL: _("Call"), OTHER: _("Other reception")}


class DutyLogEntry(ProjectScopedModel):
    """A line of the duty log (值班记录表) written by hand: a walk-in, a call outside the PBX, anything else."""

    id = fields.BigIntField(primary_key=True)
    shift = fields.ForeignKeyField("hotline.DutyShift", related_name="entries", on_delete=fields.RESTRICT)
    kind = fields.CharField(max_length=16, default=DutyEntryKind.VISIT)
    at = fields.DatetimeField()
    visitor = fields.CharField(max_length=64, default="")
    customer = fields.ForeignKeyField("core.Customer", related_name=False, null=True, on_delete=fields.SET_NULL)
    summary = fields.TextField()
    author = fields.ForeignKeyField("core.User", related_name=False, on_delete=fields.RESTRICT)

    class Meta:
        table = "hotline_duty_log_entry"
        ordering = ["at", "id"]

    @property
    def kind_label(self) -> str:
        return str(DutyEntryKind.CHOICES.get(self.kind, self.kind))


class DutyReview(ProjectScopedModel):
    """The manager's daily check of the duty log (客户主任每日抽查《值班记录》)."""

    id = fields.IntField(primary_key=True)
    day = fields.DateField()  # the estate's local date
    reviewer = fields.ForeignKeyField("core.User", related_name=False, on_delete=fields.RESTRICT)
    note = fields.TextField(default="")
    reviewed_at = fields.DatetimeField()

    class Meta:
        table = "hotline_duty_review"
        unique_together = (("project", "day"),)


class FaqArticle(Model):
    """An entry of the FAQ (《答客问》): of one estate, or for every estate when it has no project."""

    id = fields.IntField(primary_key=True)
    project = fields.ForeignKeyField("core.Project", related_name=False, null=True, on_delete=fields.CASCADE)
    question = fields.CharField(max_length=255)
    answer = fields.TextField()
    tags = fields.CharField(max_length=255, default="")  # comma-separated
    # Lowercase text agents may type: the words, their full pinyin and initials ("tingche", "tc" for 停车).
    search_keys = fields.TextField(default="")
    is_active = fields.BooleanField(default=True)
    created_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "hotline_faq_article"
        ordering = ["question"]

    def __str__(self) -> str:
        return self.question

    @property
    def tag_list(self) -> list[str]:
        return [t.strip() for t in self.tags.split(",") if t.strip()]


class FaqQuestionStatus:
    OPEN = "open"
    ANSWERED = "answered"
    CHOICES = {OPEN: _("Waiting for an answer"), ANSWERED: _("Answered")}


class FaqQuestion(ProjectScopedModel):
    """A question the FAQ had no answer for: a task for the manager until answered (补充《答客问》)."""

    id = fields.IntField(primary_key=True)
    question = fields.TextField()
    asked_by = fields.ForeignKeyField("core.User", related_name=False, on_delete=fields.RESTRICT)
    asked_at = fields.DatetimeField()
    call = fields.ForeignKeyField("hotline.Call", related_name=False, null=True, on_delete=fields.SET_NULL)
    status = fields.CharField(max_length=16, default=FaqQuestionStatus.OPEN, db_index=True)
    answered_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    answered_at = fields.DatetimeField(null=True)
    article = fields.ForeignKeyField("hotline.FaqArticle", related_name=False, null=True, on_delete=fields.SET_NULL)

    class Meta:
        table = "hotline_faq_question"
        ordering = ["-asked_at", "-id"]

    @property
    def status_label(self) -> str:
        return str(FaqQuestionStatus.CHOICES.get(self.status, self.status))
