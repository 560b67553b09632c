"""Member club, activities and return visits (会员活动 / 客户关系维护).

Seats are protected by the database: `Activity.seats_taken` only ever changes
through a conditional UPDATE (`seats_taken + n <= capacity`), so two people
racing for the last seat cannot both get it, whatever process they reach.
A person registers once per activity (unique activity + customer), and a
household is called once per call list (unique round + unit).

Group-wide activities (an owners' club event for several estates): the
activity is hosted by one estate, which invites other estates whose
activities the creating manager also manages. Each invited estate gets its own
`Activity` row in that estate, pointing at the host's row (`host_activity`),
so the ordinary project scope keeps estates apart: staff of an invited estate
see the activity, register and check in their own owners, and see only their
own registrations; an estate not invited sees nothing. What the host decides
(title, times, place, cost, capacity, window, status) is copied onto the
invited rows; each estate chooses its own audience (buildings, levels) on its
row. Seats are shared: they are taken on the host's row only (the "pool",
`pool_id`) with the same conditional UPDATE, then mirrored onto the invited
rows, so the last seat goes to exactly one person whichever estate they
belong to, and the waitlist is one queue across the estates.

Activities and registrations are synced by integrations (`ChangeTracked`,
the JSON API's `updated_since`; `QuerySet.update()` moves `updated_at` too),
and a change of the waitlist touches the activity's rows, whose waitlist
length changes with it.
"""

from __future__ import annotations

from tortoise import fields

from core.api import ChangeTracked, ProjectScopedModel, lazy_gettext as _


# Club ------------------------------------------------------------------------


class Club(ProjectScopedModel):
    """The owners' club of one estate: whether it keeps points, and how many an attendance earns."""

    id = fields.IntField(primary_key=True)
    points_enabled = fields.BooleanField(default=False)
    points_per_attendance = fields.SmallIntField(default=10)

    class Meta:
        table = "activities_club"
        unique_together = (("project",),)


class MemberLevel(ProjectScopedModel):
    """A membership level of an estate's club (e.g. 普通会员, 银卡, 金卡), ordered by rank."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=64)
    rank = fields.SmallIntField(default=0)
    min_points = fields.IntField(default=0)  # informative when the club keeps points
    description = fields.CharField(max_length=255, default="")

    class Meta:
        table = "activities_member_level"
        unique_together = (("project", "name"),)
        ordering = ["rank", "id"]

    def __str__(self) -> str:
        return self.name


class MemberStatus:
    ACTIVE = "active"
    LEFT = "left"
    CHOICES = {ACTIVE: _("Active"), LEFT: _("Left the club")}


class Member(ProjectScopedModel):
    """An owner who joined the club: one membership per customer and estate."""

    id = fields.IntField(primary_key=True)
    customer = fields.ForeignKeyField("core.Customer", related_name=False, on_delete=fields.RESTRICT)
    number = fields.CharField(max_length=32)
    level = fields.ForeignKeyField("activities.MemberLevel", related_name="members", null=True, on_delete=fields.RESTRICT)
    joined_on = fields.DateField()
    # Invitations and reminders go only to members who agreed to be contacted.
    consent_to_contact = fields.BooleanField(default=False)
    consent_changed_at = fields.DatetimeField(null=True)
    points = fields.IntField(default=0)
    status = fields.CharField(max_length=16, default=MemberStatus.ACTIVE)
    left_on = fields.DateField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "activities_member"
        unique_together = (("project", "number"), ("project", "customer"))
        ordering = ["number"]

    def __str__(self) -> str:
        return self.number


# Activities --------------------------------------------------------------------


class ActivityStatus:
    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"
    CHOICES = {DRAFT: _("Draft"), PUBLISHED: _("Open for registration"), CANCELLED: _("Cancelled")}


class Activity(ProjectScopedModel, ChangeTracked):
    """A community event, owners' gathering or open day with a limited number of seats (`updated_at`: API syncs)."""

    id = fields.IntField(primary_key=True)
    title = fields.CharField(max_length=120)
    description = fields.TextField(default="")
    place = fields.CharField(max_length=200, default="")
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    capacity = fields.IntField()
    # Seats of confirmed registrations. Changed only by conditional UPDATEs (see `registration.py`).
    seats_taken = fields.IntField(default=0)
    registration_opens_at = fields.DatetimeField(null=True)  # empty: open as soon as published
    registration_closes_at = fields.DatetimeField(null=True)  # empty: until the start
    cost = fields.DecimalField(max_digits=14, decimal_places=2, default=0)  # per seat, 0 when free
    max_family = fields.SmallIntField(default=4)
    # Audience: empty lists mean everyone of the estate. Levels imply members only.
    members_only = fields.BooleanField(default=False)
    audience_buildings = fields.JSONField(default=list)
    audience_levels = fields.JSONField(default=list)
    status = fields.CharField(max_length=16, default=ActivityStatus.DRAFT, db_index=True)
    invitations_sent_at = fields.DatetimeField(null=True)
    created_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)
    # Set on the row of an invited estate: the host estate's activity, which holds the shared seats.
    host_activity = fields.ForeignKeyField("activities.Activity", related_name="guest_activities", null=True,
                                           on_delete=fields.RESTRICT)

    class Meta:
        table = "activities_activity"
        ordering = ["-starts_at"]
        unique_together = (("host_activity", "project"),)

    def __str__(self) -> str:
        return self.title

    @property
    def seats_left(self) -> int:
        return max(self.capacity - self.seats_taken, 0)

    @property
    def pool_id(self) -> int:
        """The row whose `seats_taken` counts the seats: the host's for an invited estate's row."""
        return self.host_activity_id or self.id

    @property
    def is_guest(self) -> bool:
        return self.host_activity_id is not None


class RegistrationStatus:
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"
    CHOICES = {CONFIRMED: _("Confirmed"), WAITLISTED: _("On the waitlist"), CANCELLED: _("Cancelled")}


class RegistrationChannel:
    STAFF = "staff"
    LINK = "link"
    API = "api"  # another system through the JSON API, e.g. the owners' WeChat mini-program
    CHOICES = {STAFF: _("By staff"), LINK: _("Invitation link"), API: _("Mini-program or other system")}


class Registration(ProjectScopedModel, ChangeTracked):
    """One person's sign-up for an activity, with family members, check-in and feedback (`updated_at`: API syncs)."""

    id = fields.IntField(primary_key=True)
    activity = fields.ForeignKeyField("activities.Activity", related_name="registrations", on_delete=fields.RESTRICT)
    customer = fields.ForeignKeyField("core.Customer", related_name=False, on_delete=fields.RESTRICT)
    family_count = fields.SmallIntField(default=0)
    seats = fields.SmallIntField(default=1)  # 1 + family_count
    status = fields.CharField(max_length=16, db_index=True)
    channel = fields.CharField(max_length=16, default=RegistrationChannel.STAFF)
    # Shown on the invitation as text and QR code, typed or scanned at the check-in desk.
    code = fields.CharField(max_length=16, unique=True)
    registered_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    created_at = fields.DatetimeField(auto_now_add=True)
    waitlisted_at = fields.DatetimeField(null=True)  # the place in the queue
    confirmed_at = fields.DatetimeField(null=True)
    cancelled_at = fields.DatetimeField(null=True)
    checked_in_at = fields.DatetimeField(null=True)
    checked_in_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    reminded_at = fields.DatetimeField(null=True)
    feedback_sent_at = fields.DatetimeField(null=True)
    rating = fields.SmallIntField(null=True)  # 1 to 5 stars
    comment = fields.TextField(default="")
    feedback_at = fields.DatetimeField(null=True)

    class Meta:
        table = "activities_registration"
        unique_together = (("activity", "customer"),)
        ordering = ["id"]

    def __str__(self) -> str:
        return self.code


# Return visits -------------------------------------------------------------------


class VisitPlan(ProjectScopedModel):
    """A return-visit plan (定期回访): every household of the estate is called every N months."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=120)
    interval_months = fields.SmallIntField(default=6)
    next_run_on = fields.DateField()  # the next call list is generated on this local date
    days_to_complete = fields.SmallIntField(default=30)
    script = fields.TextField(default="")  # what to ask, shown to the caller
    buildings = fields.JSONField(default=list)  # empty: every building
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "activities_visit_plan"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class VisitRound(ProjectScopedModel):
    """One call list of a plan, generated once per period (unique plan + start date)."""

    id = fields.IntField(primary_key=True)
    plan = fields.ForeignKeyField("activities.VisitPlan", related_name="rounds", on_delete=fields.RESTRICT)
    starts_on = fields.DateField()
    due_on = fields.DateField()
    generated_at = fields.DatetimeField()
    total = fields.IntField(default=0)

    class Meta:
        table = "activities_visit_round"
        unique_together = (("plan", "starts_on"),)
        ordering = ["-starts_on"]


class VisitStatus:
    PENDING = "pending"
    DONE = "done"
    UNREACHABLE = "unreachable"
    CHOICES = {PENDING: _("To call"), DONE: _("Done"), UNREACHABLE: _("Not reached")}


class VisitOutcome:
    SATISFIED = "satisfied"
    SUGGESTION = "suggestion"
    PROBLEM = "problem"
    DECLINED = "declined"
    NO_ANSWER = "no_answer"
    CHOICES = {
        SATISFIED: _("Satisfied"),
        SUGGESTION: _("Made a suggestion"),
        PROBLEM: _("Raised a problem"),
        DECLINED: _("Declined the call"),
        NO_ANSWER: _("No answer"),
    }


class FollowUp:
    NONE = ""
    WORK_ORDER = "work_order"
    COMPLAINT = "complaint"
    CHOICES = {NONE: _("None"), WORK_ORDER: _("Open a work order"), COMPLAINT: _("Open a complaint")}
    # The module that handles each follow-up: offered only where it is enabled.
    MODULES = {WORK_ORDER: "hotline", COMPLAINT: "complaints"}


class Visit(ProjectScopedModel):
    """A household to call in a call list, assigned to a staff member, with what the customer said."""

    id = fields.IntField(primary_key=True)
    round = fields.ForeignKeyField("activities.VisitRound", related_name="visits", on_delete=fields.RESTRICT)
    unit = fields.ForeignKeyField("core.Unit", related_name=False, on_delete=fields.RESTRICT)
    customer = fields.ForeignKeyField("core.Customer", related_name=False, on_delete=fields.RESTRICT)
    agent = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)
    status = fields.CharField(max_length=16, default=VisitStatus.PENDING, db_index=True)
    outcome = fields.CharField(max_length=16, default="")
    said = fields.TextField(default="")
    follow_up = fields.CharField(max_length=16, default="")
    attempts = fields.SmallIntField(default=0)
    done_at = fields.DatetimeField(null=True)
    done_by = fields.ForeignKeyField("core.User", related_name=False, null=True, on_delete=fields.RESTRICT)

    class Meta:
        table = "activities_visit"
        unique_together = (("round", "unit"),)
        ordering = ["id"]
