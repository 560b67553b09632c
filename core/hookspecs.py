"""Courtyard hook specifications — the contract between core and plugins.

A plugin implements any of these with `@hookimpl` from `core.api`, taking
only the arguments it uses (pluggy passes arguments by name; never give them
defaults). A hook may return a value, a callable returning a value, or an
awaitable; core resolves all three (see `core.plugins.resolve`).

Two kinds of hook, kept apart on purpose:

* **Global hooks** (`register_*`, `startup`) are called once per process for
  every installed plugin, whatever projects have it enabled.
* **Project hooks** (`navigation`, `dashboard_tiles`, `customer_sections`,
  `search`, `domain_event`, `dunning_holds`, `callback_task_requested`, ...)
  are called only for plugins enabled in the project concerned. A plugin
  disabled for a project is never asked about it.

Core registers its own features through these same hooks. The hook API is
versioned by `core.kit.HOOK_API_VERSION`; hooks only ever gain arguments.
A hook or argument on its way out is marked with `deprecated(...)` instead of
`@hookspec`: it keeps working, and implementing it warns with a
`core.api.HookDeprecationWarning` naming the plugin (shown below as
**Deprecated**) until the next major version removes it.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("courtyard")


def deprecated(since: str, reason: str = "", *, args: dict[str, str] | None = None, **options: Any):
    """Mark a hook, or some of its arguments, deprecated (use instead of ``@hookspec``).

        @deprecated("1.3", "use customer_sections")
        def customer_panels(request, customer): ...

        @deprecated("1.3", args={"project": "use request.state.ctx.project"})
        def navigation(request, project): ...

    A plugin implementing it still works, and gets a ``HookDeprecationWarning``
    (pluggy's ``warn_on_impl``) at start-up, logged with the plugin's name.
    The hook reference shows the notice. Removal comes with the next major
    ``HOOK_API_VERSION`` at the earliest.
    """
    from core.kit import HookDeprecationWarning

    def warning(subject: str, why: str) -> HookDeprecationWarning:
        text = f"{subject} is deprecated since hook API {since}"
        return HookDeprecationWarning(f"{text}: {why}" if why else text)

    def mark(function):
        hook = function.__name__
        function = hookspec(
            warn_on_impl=warning(f"hook {hook!r}", reason) if reason or not args else None,
            warn_on_impl_args={
                name: warning(f"argument {name!r} of hook {hook!r}", why) for name, why in (args or {}).items()
            } or None,
            **options,
        )(function)
        function.courtyard_deprecated = {"since": since, "reason": reason, "args": dict(args or {})}
        return function

    return mark


# --------------------------------------------------------------------------
# Global hooks: register what a plugin brings
# --------------------------------------------------------------------------


@hookspec
def register_models() -> list[str]:
    """Model modules of this plugin, e.g. ``["plugins.fees.models"]``.

    Each plugin is one Tortoise app whose label is the plugin name; its table
    names must start with ``<plugin>_``. Relations to core use ``"core.Unit"``.
    Return: a list of importable module paths.
    """


@hookspec
def register_routes() -> list[Any]:
    """Project pages of this plugin.

    Return Starlette routes built with ``core.api.route``; core mounts them
    under ``/p/{project}/<plugin>/``, answers 404 where the plugin is disabled
    for the project, checks the route's declared permission and loads its
    declared record (scoped to the project, 404 otherwise).
    """


@hookspec
def register_global_routes() -> list[Any]:
    """Pages outside any project, mounted under ``/<plugin>/`` (core: ``/``).

    Login is required unless the route is built with ``public=True`` (pages
    opened from signed links in emails); the data scope is then every project
    the user belongs to, or nothing for public routes (use
    ``core.api.unscoped()`` only after verifying the link's signature).
    Routes built with ``webhook=True`` are mounted under ``/hooks/<plugin>/``,
    are public and skip the browser CSRF check: verify the caller's signature.
    Return: Starlette routes built with ``core.api.route``.
    """


@hookspec
def register_permissions() -> list[Any]:
    """Permissions this plugin declares.

    Return: ``core.api.Permission`` objects; codes are ``<plugin>.<action>``.
    """


@hookspec
def register_jobs() -> list[Any]:
    """Scheduled jobs of this plugin.

    Return: ``core.api.JobSpec`` objects; names are ``<plugin>.<job>``.
    """


@hookspec
def register_settings() -> dict[str, Any]:
    """Default settings for this plugin's section of ``settings.toml``.

    Return: a dict of defaults; the section is named after the plugin and each
    value is overridable by ``COURTYARD_<PLUGIN>_<KEY>``.
    """


@hookspec
def register_template_dirs() -> list[str]:
    """Extra template directories (the package's ``templates/`` is added by default).

    Return: a list of paths. Templates must live under ``<plugin>/`` inside them.
    """


@hookspec
def register_static_dirs() -> list[str]:
    """Extra static directories (the package's ``static/`` is added by default).

    Return: a list of paths, served under ``/static/``; put files under ``<plugin>/``.
    """


@hookspec
def register_call_adapters() -> list[Any]:
    """Readers of PBX and cloud call-centre event formats, for the hotline's call webhook.

    Return: objects with a ``name`` (chosen per PBX integration by an admin)
    and ``parse(headers, body) -> list[core.api.CallEvent]``, where
    ``headers`` is a case-insensitive mapping and ``body`` the raw request
    bytes, already checked against the integration's signature. Raise
    ``core.api.CallEventError`` with a message for a request that cannot be
    read (answered with HTTP 400, nothing changes). The hotline registers its
    generic JSON adapter ("generic") this way.
    """


@hookspec
def register_api_routes() -> list[Any]:
    """Endpoints of this plugin in the JSON API (integrations: mini-programs, ERP, call centres).

    Return: ``core.api.ApiRoute`` objects built with ``core.api.api_route``.
    Project endpoints are mounted under ``/api/v1/projects/{project}/<plugin>/``
    (core's under ``/api/v1/projects/{project}/``), others under
    ``/api/v1/<plugin>/``. Core's guard authenticates the token, answers 404
    for estates outside the token's list or where the plugin is disabled,
    sets the data scope, checks the route's ``scope`` (403), rate-limits,
    validates query and body with the route's pydantic models (422) and
    makes creates idempotent; the OpenAPI document at
    ``/api/v1/openapi.json`` lists every endpoint. Since hook API 1.1.
    """


@hookspec
def register_events() -> list[Any]:
    """Domain events this plugin emits, offered to webhook subscribers by name.

    Return: ``core.api.EventSpec`` objects (name, label, description); names
    are ``<plugin>.<what_happened>``, as given to ``core.api.emit``. Events a
    plugin emits without declaring them still reach ``domain_event`` hooks
    but cannot be chosen in a webhook subscription. Since hook API 1.1.
    """


@hookspec
def startup(app: Any) -> Any:
    """Called once when the app process has started and the database is ready.

    May return an awaitable. Do not do slow work here.
    """


# --------------------------------------------------------------------------
# Project hooks: add to what core renders (only where the plugin is enabled)
# --------------------------------------------------------------------------


@hookspec
def navigation(request: Any, project: Any) -> list[Any]:
    """Navigation entries for a project page.

    Return: ``core.api.NavItem`` objects; items whose ``permission`` the user
    lacks are hidden by core.
    """


@hookspec
def dashboard_tiles(request: Any, project: Any) -> list[Any]:
    """KPI tiles and charts for the project dashboard.

    Return: ``core.api.DashboardTile`` objects (or an awaitable of them). A
    failure shows "unavailable" in this plugin's place only.
    """


@hookspec
def customer_sections(request: Any, customer: Any) -> list[Any]:
    """Sections of the customer 360 page for ``customer`` (its project is ``customer.project_id``).

    Return: ``core.api.CustomerSection`` objects (or an awaitable of them). A
    failure shows "section unavailable" and is logged; the page still renders.
    """


@hookspec
def search(request: Any, query: str, project_ids: list[int]) -> list[Any]:
    """Global search results for ``query`` within ``project_ids``.

    Called for plugins enabled in at least one of the projects.
    Return: ``core.api.SearchResult`` objects (or an awaitable of them).
    """


@hookspec
def domain_event(event: Any) -> Any:
    """React to a domain event (``core.api.DomainEvent``) of the event's project.

    Runs inside the transaction that made the change; raising rolls it back.
    May return an awaitable. Return value is ignored. Core implements it too:
    it queues the event for the webhook subscribers that want it (declare
    your events with ``register_events`` so administrators can choose them).

    Known events (``event.data`` keys):

    * ``hotline.complaint_received``: a contact classified as a complaint was
      recorded as a work order: ``work_order_id``, ``number``, ``customer_id``,
      ``unit_id`` (or None), ``category`` (name), ``subject``, ``description``,
      ``channel``, ``urgency``, ``received_at`` (ISO 8601, UTC).
    * ``hotline.work_order_closed``: closed after a satisfied callback:
      ``work_order_id``, ``number``, ``customer_id``, ``unit_id``, ``kind``.
    * ``hotline.work_order_reopened``: an unsatisfied callback or a staff
      member re-opened it: ``work_order_id``, ``number``, ``reason``.
    * ``complaints.escalated``: an overdue case was escalated one level:
      ``case_id``, ``number``, ``level`` (1 supervisor, 2 manager, 3 head
      office), ``step`` (the step that is overdue), ``customer_id``,
      ``unit_id`` (or None), ``escalated_at`` (ISO 8601, UTC).
    * ``handover.key_checked_out``: a key set left the cabinet:
      ``keyset_id``, ``checkout_id``, ``unit_id``, ``tag``, ``holder_kind``
      ("owner", "contractor", "staff"), ``holder_name``, ``purpose``,
      ``out_at``, ``due_at`` (ISO 8601, UTC).
    * ``handover.keys_returned``: a checked-out key set came back:
      ``keyset_id``, ``checkout_id``, ``unit_id``, ``tag``, ``returned_by``,
      ``received_by`` (names), ``sealed``, ``returned_at`` (ISO 8601, UTC).
    * ``activities.return_visit_recorded``: a return-visit call (定期回访) was
      recorded: ``visit_id``, ``customer_id``, ``unit_id``, ``outcome``
      ("satisfied", "suggestion", "problem", "declined", "no_answer" after the
      last attempt), ``said`` (what the customer said), ``follow_up`` ("" or
      "work_order" for the hotline, "complaint" for complaints: the module
      named should open that record for the customer), ``channel`` (the
      customer's preferred channel), ``recorded_at`` (ISO 8601, UTC).
    * ``activities.registration_confirmed``: a person holds a seat at an
      activity, registered at once or moved up from the waitlist (sent in the
      person's own estate): ``registration_id``, ``activity_id`` (that estate's
      row of the activity), ``host_activity_id`` (the row holding the shared
      seats; equal to ``activity_id`` unless the activity is hosted by another
      estate), ``customer_id``, ``family_count``, ``seats`` (1 + family),
      ``source`` ("staff", "link": the invitation email, or "api": the
      JSON API, e.g. the owners' mini-program), ``promoted`` (True
      when moved up from the waitlist), ``confirmed_at`` (ISO 8601, UTC).
    * ``activities.registration_cancelled``: a sign-up (seat or waitlist
      place) ended: the same keys as above except ``promoted`` and
      ``confirmed_at``, plus ``previous_status`` ("confirmed" or
      "waitlisted"), ``cancelled_by`` ("staff", "owner" from the ticket link,
      "api" through the JSON API, or "activity_cancelled" when the whole
      activity was cancelled),
      ``cancelled_at`` (ISO 8601, UTC).
    * ``fees.bill_issued``: one per bill a bill run creates, sent in the
      run's batches (up to 2,000 units each, through ``core.api.emit_many``)
      and committed with the bills of that batch: a batch redone after a
      crash sends its events once, with its bills. ``bill_id``, ``number``,
      ``unit_id``, ``customer_id`` (or None), ``billed_as`` ("owner",
      "tenant" or "" without a customer), ``period`` ("2026-05"), ``total``
      (amount as text, "217.98"), ``due_date`` (ISO date), ``issued_at``
      (ISO 8601, UTC). Handlers run for every bill of runs over tens of
      thousands of units: keep them cheap (no query per event).
    * ``fees.bill_run_completed``: a bill run finished (also a run repeated
      with nothing left to bill): ``run_id``, ``period``, ``bills_created``
      (by this run), ``units`` (in the estate), ``bills`` and ``amount``
      (all bills of the period that are not void; amount as text),
      ``finished_at`` (ISO 8601, UTC).
    * ``fees.payment_posted``: a payment was recorded with its receipt:
      ``payment_id``, ``receipt_number``, ``unit_id``, ``unit_code``,
      ``customer_id`` (or None), ``amount`` (text, "100.00"), ``method``
      ("cash", "transfer", "card", "online"), ``reference``, ``posted_at``
      (ISO 8601, UTC), ``bills`` (``[{"bill_id", "amount"}]``: what it paid;
      the rest is credit). A resubmitted payment form sends nothing.
    * ``fees.payment_reversed``: a manager reversed a payment: the keys of
      ``fees.payment_posted`` for the reversal entry (its own
      ``payment_id`` and ``receipt_number``, negative ``amount`` and
      ``bills``), plus ``reverses_id``, ``reverses_receipt`` and ``reason``.
    """


@hookspec
def demo_data(project: Any, rng: Any) -> Any:
    """Add this plugin's sample records to a demo ``project`` (``run.py demo``).

    Called after core has created the estate's buildings, units, customers and
    staff, for plugins enabled in the project. ``rng`` is a seeded
    ``random.Random`` so the demo is the same on every machine. May return an
    awaitable.
    """


@hookspec
def dunning_holds(project: Any, unit_ids: list[int]) -> Any:
    """Units among ``unit_ids`` whose dunning (催缴) should pause, e.g. while a complaint is open.

    Called by the fees plugin before it applies dunning steps, for the other
    plugins enabled in ``project``. Return: a set (or list) of unit ids to hold,
    or an awaitable of it; units not returned are dunned as usual.
    """


@hookspec
def callback_task_requested(project: Any, customer_id: Any, unit_id: Any, reason: str, due_at: Any, source: str) -> Any:
    """Another plugin asks for a call to a customer (a dunning call, a follow-up).

    The plugin that keeps the callback queue (hotline) adds a task for
    ``customer_id`` (may be None when only the unit is known) about ``unit_id``,
    due at ``due_at`` (aware UTC); ``reason`` is shown to the agent and
    ``source`` names the asking record, e.g. "fees.Bill:42". Runs inside the
    caller's transaction. Return: the task's id (or an awaitable of it), or None.
    """
