"""Fee pages: overview and reports, bills, unit accounts with the payment form, receipts, setup."""

from __future__ import annotations

import io
import re
import secrets
from datetime import date, timedelta

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from core.api import (
    Building, Column, Customer, CustomerUnit, DashboardTile, Filter, ListView, SearchResult, Unit, UnitUse,
    ctx, gettext, lazy_gettext as _, project_url, queue_run, redirect, render, route, timeline, transaction, unscoped,
    local_today,
)
from plugins.fees import billing, dunning, metered, payments, reports
from plugins.fees.models import (
    Basis, Bill, BillLine, BillRun, BillRunState, BillStatus, BillTo, Discount, DunningAction, DunningRecord, DunningStep,
    FeeItem, FeeRate, MeterCharge, MeterImport, MeterImportState, Method, Payment, PaymentKind, PromiseToPay,
)
from plugins.fees.money import (
    ZERO, InputError, add_months, month_start, parse_amount, parse_date, parse_period, period_label,
)

VIEW, PAY, APPROVE, MANAGE, RUN = "fees.view", "fees.post_payment", "fees.approve", "fees.manage", "fees.run_bills"

DEFINITION = _(
    "Collection rate = amount collected on the bills of a month ÷ amount billed for that month. "
    "Void bills count in neither; money paid late still counts for the month it was billed."
)


def _base(request: Request) -> str:
    return project_url(request, "fees/")


def _today(request: Request) -> date:
    return local_today(ctx(request).project.timezone)


def _can(request: Request, permission: str) -> bool:
    context = ctx(request)
    return context.principal.can(permission, context.project.id)


def _period_param(request: Request, default: date) -> date:
    try:
        return parse_period(request.query_params.get("period", ""))
    except InputError:
        return default


def _recent_periods(request: Request, months: int = 24) -> list[tuple[str, str]]:
    this = month_start(_today(request))
    return [(period_label(p), period_label(p)) for p in (add_months(this, -i) for i in range(-1, months))]


# Lists ---------------------------------------------------------------------------


def _bill_link(bill, request) -> str:
    return f"{_base(request)}bills/{bill.id}"


def _unit_link(row, request) -> str:
    return f"{_base(request)}units/{row.unit_id}"


def _billed_to(bill) -> str:
    if bill.customer is None:
        return ""
    if bill.customer_relation == BillTo.TENANT:
        return f"{bill.customer.name} ({BillTo.CHOICES[BillTo.TENANT]})"
    return bill.customer.name


BILLS = ListView(
    "fees-bills", _("Bills"), model=Bill,
    columns=[
        Column("number", _("Bill"), sort=True, link=_bill_link),
        Column("period", _("Month"), value=lambda b: period_label(b.period), sort=True),
        Column("unit", _("Unit"), field="unit.code", sort="unit__code", link=_unit_link),
        Column("customer", _("Billed to"), value=lambda b: _billed_to(b)),
        Column("total", _("Amount"), format="money", sort=True),
        Column("paid", _("Paid"), format="money"),
        Column("balance", _("Balance"), value=lambda b: b.balance, format="money"),
        Column("due_date", _("Due"), format="date", sort=True),
        Column("status", _("Status"), format="choice", choices=BillStatus.CHOICES, sort=True),
    ],
    filters=[
        Filter.choice("status", _("Status"), BillStatus.CHOICES),
        Filter.choice("period", _("Month"), _recent_periods, apply=lambda q, v: q.filter(period=parse_period(v))),
    ],
    search=["number", "unit__code", "customer__name"],
    select_related=["unit", "customer"],
    default_sort="-period",
)


def _bucket_filter(queryset, key: str, request: Request):
    # Days overdue count in the estate's time zone, as the arrears report does.
    today = _today(request)
    for name, first, last in dunning.BUCKETS:
        if name == key:
            queryset = queryset.filter(due_date__lte=today - timedelta(days=first))
            if last is not None:
                queryset = queryset.filter(due_date__gte=today - timedelta(days=last))
    return queryset


def _arrears_query(request: Request):
    return Bill.filter(status=BillStatus.OPEN, due_date__lt=_today(request))


async def _buildings(request: Request):
    return [(str(b.id), b.name) for b in await Building.all()]


ARREARS = ListView(
    "fees-arrears", _("Arrears"), query=_arrears_query,
    columns=[
        Column("unit", _("Unit"), field="unit.code", sort="unit__code", link=_unit_link),
        Column("customer", _("Billed to"), field="customer.name"),
        Column("number", _("Bill"), sort=True, link=_bill_link),
        Column("period", _("Month"), value=lambda b: period_label(b.period)),
        Column("due_date", _("Due"), format="date", sort=True),
        Column("days", _("Days overdue"), value=lambda b, r: dunning.days_overdue(b.due_date, _today(r)), format="number"),
        Column("bucket", _("Ageing"), value=lambda b, r: dunning.bucket_of(dunning.days_overdue(b.due_date, _today(r)))),
        Column("balance", _("Balance"), value=lambda b: b.balance, format="money"),
    ],
    filters=[
        Filter.choice("bucket", _("Ageing"), [(k, k) for k, _f, _l in dunning.BUCKETS], apply=_bucket_filter),
        Filter.choice("building", _("Building"), _buildings, field="unit__building_id"),
    ],
    search=["unit__code", "customer__name", "number"],
    select_related=["unit", "customer"],
    default_sort="due_date",
)

RECEIPTS = ListView(
    "fees-receipts", _("Receipts"), model=Payment,
    columns=[
        Column("receipt_number", _("Receipt"), sort=True, link=lambda p, r: f"{_base(r)}payments/{p.id}"),
        Column("received_at", _("Received"), format="datetime", sort=True),
        Column("unit", _("Unit"), field="unit.code", sort="unit__code", link=_unit_link),
        Column("payer", _("Payer"), value=lambda p: p.payer or (p.customer.name if p.customer else "")),
        Column("method", _("Method"), format="choice", choices=Method.CHOICES),
        Column("kind", _("Kind"), format="choice", choices=PaymentKind.CHOICES),
        Column("amount", _("Amount"), format="money", sort=True),
        Column("cashier", _("Cashier"), value=lambda p: str(p.cashier)),
    ],
    filters=[
        Filter.choice("method", _("Method"), Method.CHOICES),
        Filter.choice("kind", _("Kind"), PaymentKind.CHOICES),
        Filter.date_range("received_at", _("Received")),
    ],
    search=["receipt_number", "unit__code", "reference", "payer"],
    select_related=["unit", "customer", "cashier"],
    default_sort="-receipt_number",
)


async def bill_list(request: Request) -> Response:
    return await BILLS.response(request)


async def arrears_list(request: Request) -> Response:
    return await ARREARS.response(request)


async def receipt_list(request: Request) -> Response:
    actions = [(gettext("Daily cash summary"), _base(request) + "cash")]
    return await RECEIPTS.response(request, actions=actions)


# Overview and reports ---------------------------------------------------------------


async def overview(request: Request) -> Response:
    project = ctx(request).project
    this = month_start(_today(request))
    period = _period_param(request, this)
    months = await reports.rate_by_month(project.id, period, 12)
    if request.query_params.get("export") == "xlsx":
        return await _export_rates(project, period, months)
    buildings = await reports.rate_by_building(project.id, period)
    buckets = await dunning.ageing(project.id, _today(request))
    run = await BillRun.get_or_none(project_id=project.id, period=period)
    chart = {
        "type": "bar",
        "labels": [m.label for m in months],
        "datasets": [
            {"label": gettext("Collection rate (%)"), "data": [float(m.rate * 100) if m.rate is not None else None for m in months]},
        ],
    }
    return await render(request, "fees/overview.html", {
        "period": period, "period_label": period_label(period), "months": months, "buildings": buildings,
        "current": months[-1], "buckets": buckets, "arrears": sum(buckets.values(), ZERO), "run": run,
        "chart": chart, "definition": DEFINITION, "base": _base(request), "periods": _recent_periods(request),
        "can_run": _can(request, RUN), "unit_code": request.query_params.get("unit", ""),
    })


async def _export_rates(project, period: date, months) -> Response:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = gettext("Collection rate")[:31]
    sheet.append([str(DEFINITION)])
    sheet.append([gettext("Month"), gettext("Billed"), gettext("Collected"), gettext("Outstanding"), gettext("Collection rate")])
    for month in months:
        sheet.append([month.label, month.billed, month.collected, month.outstanding, month.rate])
    buildings = book.create_sheet(gettext("By building")[:31])
    buildings.append([gettext("Building"), gettext("Billed"), gettext("Collected"), gettext("Collection rate"), period_label(period)])
    for row in await reports.rate_by_building(project.id, period):
        buildings.append([row.label, row.billed, row.collected, row.rate])
    out = io.BytesIO()
    book.save(out)
    name = f"collection-{project.code}-{period_label(period)}.xlsx"
    return StreamingResponse(
        iter([out.getvalue()]), media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def find_unit(request: Request) -> Response:
    code = request.query_params.get("unit", "").strip()
    unit = await Unit.get_or_none(project_id=ctx(request).project.id, code=code) if code else None
    if unit is None:
        return redirect(request, _base(request) + f"?unit={code}", gettext("No unit with code %(code)s.", code=code), level="error")
    return redirect(request, f"{_base(request)}units/{unit.id}")


async def cash_summary(request: Request) -> Response:
    project = ctx(request).project
    try:
        day = parse_date(request.query_params.get("day", ""), "day", required=False) or _today(request)
        error = None
    except InputError as exc:
        day, error = _today(request), exc.errors["day"]
    people, receipts, total = await reports.cash_summary(project.id, day, project.timezone)
    return await render(request, "fees/cash.html", {
        "day": day, "people": people, "receipts": receipts, "total": total, "methods": Method.CHOICES,
        "error": error, "base": _base(request),
    }, status_code=422 if error else 200)


# Bills -----------------------------------------------------------------------------


async def bill_detail(request: Request, *, errors: dict | None = None, status_code: int = 200) -> Response:
    bill: Bill = request.state.record
    await bill.fetch_related("unit", "customer")
    lines = await BillLine.filter(bill_id=bill.id).order_by("id")
    allocations = await bill.allocations.all().order_by("id").prefetch_related("payment")
    records = await DunningRecord.filter(bill_id=bill.id).order_by("id").prefetch_related("step")
    return await render(request, "fees/bill.html", {
        "bill": bill, "lines": lines, "allocations": allocations, "records": records,
        "billed_as": BillTo.CHOICES.get(bill.customer_relation, ""),
        "status_labels": BillStatus.CHOICES, "base": _base(request), "can_approve": _can(request, APPROVE),
        "can_pay": _can(request, PAY), "errors": errors or {},
        "days": dunning.days_overdue(bill.due_date, _today(request)),
        **await timeline.context(request, bill),
    }, status_code=status_code)


async def bill_void(request: Request) -> Response:
    form = await request.form()
    try:
        await payments.void_bill(request.state.record, form.get("reason", ""), approver_id=ctx(request).principal.id)
    except InputError as exc:
        return await bill_detail(request, errors=exc.errors, status_code=422)
    return redirect(request, f"{_base(request)}bills/{request.state.record.id}", gettext("The bill is void."))


async def bill_letter(request: Request) -> Response:
    bill: Bill = request.state.record
    await bill.fetch_related("unit", "customer")
    open_bills = await Bill.filter(unit_id=bill.unit_id, status=BillStatus.OPEN).order_by("period")
    return await render(request, "fees/letter.html", {
        "bill": bill, "open_bills": open_bills, "total": sum((b.balance for b in open_bills), ZERO),
        "today": _today(request), "days": dunning.days_overdue(bill.due_date, _today(request)),
    })


# Unit account ----------------------------------------------------------------------


async def _unit_context(request: Request, unit: Unit) -> dict:
    project = ctx(request).project
    lines, balance = await reports.statement(unit, project.timezone)
    open_bills = await Bill.filter(unit_id=unit.id, status=BillStatus.OPEN).order_by("period", "id")
    credit = (await payments.unit_credit([unit.id])).get(unit.id, ZERO)
    today = _today(request)
    links = await CustomerUnit.filter(unit_id=unit.id).prefetch_related("customer").order_by("relation", "id")
    return {
        "unit": unit, "statement": lines, "balance": balance, "open_bills": open_bills, "credit": credit,
        "due": reports.open_totals(open_bills, today)[0], "links": links, "today": today,
        "promises": await PromiseToPay.filter(unit_id=unit.id).order_by("-promised_date")[:5],
        "discounts": await Discount.filter(unit_id=unit.id).prefetch_related("item", "approved_by"),
        "items": await FeeItem.filter(project_id=project.id, is_active=True),
        "methods": list(Method.CHOICES.items()), "base": _base(request),
        "can_pay": _can(request, PAY), "can_approve": _can(request, APPROVE), "can_manage": _can(request, MANAGE),
        "use_label": UnitUse.CHOICES.get(unit.use, unit.use),
        **await _billing_context(unit, today),
    }


async def _billing_context(unit: Unit, today: date) -> dict:
    """Whom the unit's bills go to, and which fee items it is charged."""
    setting = await billing.billing_of(unit)
    customer_id, relation = await billing.billed_customer(unit, today)
    return {
        "unit_items": await billing.unit_items(unit, today), "billing": setting,
        "bill_to": setting.bill_to if setting else BillTo.OWNER, "bill_to_choices": list(BillTo.CHOICES.items()),
        "billed_customer": await Customer.get_or_none(id=customer_id) if customer_id else None,
        "billed_as": BillTo.CHOICES.get(relation, ""), "basis_labels": Basis.CHOICES,
        "no_tenant": bool(setting and setting.bill_to == BillTo.TENANT and relation != BillTo.TENANT),
    }


async def unit_account(request: Request, *, errors: dict | None = None, values: dict | None = None,
                       status_code: int = 200) -> Response:
    unit: Unit = request.state.record
    await unit.fetch_related("building")
    context = await _unit_context(request, unit)
    payment_values = {"method": "cash", "key": secrets.token_urlsafe(16), "bills": []}
    payment_values.update(values or {})
    context.update(errors=errors or {}, values=payment_values)
    return await render(request, "fees/unit.html", context, status_code=status_code)


async def payment_create(request: Request) -> Response:
    unit: Unit = request.state.record
    form = await request.form()
    values = {k: form.get(k, "") for k in ("amount", "method", "reference", "payer", "key")}
    values["bills"] = form.getlist("bills")
    try:
        bill_ids = [int(b) for b in values["bills"]]
        if any(not 0 < b < 2**31 for b in bill_ids):  # beyond any id the database can hold
            raise ValueError
    except ValueError:
        return await unit_account(request, errors={"bills": gettext("Choose bills from the list.")}, values=values, status_code=422)
    try:
        payment, created = await payments.post_payment(
            project_id=unit.project_id, unit_id=unit.id, amount=values["amount"], method=values["method"],
            cashier_id=ctx(request).principal.id, idempotency_key=values["key"], reference=values["reference"],
            payer=values["payer"], bill_ids=bill_ids,
        )
    except InputError as exc:
        return await unit_account(request, errors=exc.errors, values=values, status_code=422)
    message = (
        gettext("Payment recorded, receipt %(number)s.", number=payment.receipt_number) if created
        else gettext("This payment was already recorded as receipt %(number)s.", number=payment.receipt_number)
    )
    return redirect(request, f"{_base(request)}payments/{payment.id}", message)


async def unit_item_change(request: Request) -> Response:
    """Charge a fee item to the unit again, or stop charging it (with a reason)."""
    unit: Unit = request.state.record
    form = await request.form()
    values = {"item": form.get("item", ""), "reason": form.get("reason", ""), "charged": form.get("charged", "")}
    item = await FeeItem.get_or_none(id=int(values["item"])) if values["item"].isdigit() else None
    if item is None or item.project_id != unit.project_id:
        return await unit_account(request, errors={"item_change": gettext("Choose a fee item of this estate.")},
                                  values=values, status_code=422)
    charged = values["charged"] == "1"
    try:
        changed = await billing.set_item_charged(unit, item, charged, values["reason"], user_id=ctx(request).principal.id)
    except InputError as exc:
        return await unit_account(request, errors={"item_reason": exc.errors["reason"], "item_failed": item.id},
                                  values=values, status_code=422)
    if not changed:
        message = gettext("No change: %(item)s was already so.", item=item.name)
    elif charged:
        message = gettext("%(item)s is charged again from the next bill run.", item=item.name)
    else:
        message = gettext("%(item)s is no longer charged from the next bill run.", item=item.name)
    return redirect(request, f"{_base(request)}units/{unit.id}#billing", message)


async def unit_bill_to(request: Request) -> Response:
    unit: Unit = request.state.record
    form = await request.form()
    try:
        changed = await billing.set_bill_to(unit, form.get("bill_to", ""), user_id=ctx(request).principal.id)
    except InputError as exc:
        return await unit_account(request, errors=exc.errors, values={"bill_to": form.get("bill_to", "")},
                                  status_code=422)
    if not changed:
        message = gettext("No change.")
    elif form["bill_to"] == BillTo.TENANT:
        message = gettext("Saved: bills go to the tenant from the next bill run.")
    else:
        message = gettext("Saved: bills go to the owner from the next bill run.")
    return redirect(request, f"{_base(request)}units/{unit.id}#billing", message)


async def promise_create(request: Request) -> Response:
    unit: Unit = request.state.record
    form = await request.form()
    values = {"promised_date": form.get("promised_date", ""), "promise_amount": form.get("promise_amount", ""),
              "note": form.get("note", "")}
    try:
        promised = parse_date(values["promised_date"], "promised_date")
        await dunning.record_promise(unit, promised, values["promise_amount"], values["note"],
                                     user_id=ctx(request).principal.id, today=_today(request))
    except InputError as exc:
        errors = {("promise_amount" if k == "amount" else k): v for k, v in exc.errors.items()}
        return await unit_account(request, errors=errors, values=values, status_code=422)
    return redirect(request, f"{_base(request)}units/{unit.id}", gettext("Promise to pay recorded; dunning is paused until then."))


async def discount_create(request: Request) -> Response:
    unit: Unit = request.state.record
    form = await request.form()
    values = {k: form.get(k, "") for k in ("percent", "item", "valid_from", "valid_to", "reason")}
    errors: dict[str, str] = {}
    try:
        percent = parse_amount(values["percent"], "percent", maximum=parse_amount("100"))
    except InputError as exc:
        errors.update(exc.errors)
    item_id = None
    if values["item"]:
        item = await FeeItem.get_or_none(id=int(values["item"]) if values["item"].isdigit() else 0, project_id=unit.project_id)
        if item is None:
            errors["item"] = gettext("Choose a fee item of this estate.")
        else:
            item_id = item.id
    try:
        start = parse_date(values["valid_from"], "valid_from")
        end = parse_date(values["valid_to"], "valid_to", required=False)
        if end and start and end < start:
            errors["valid_to"] = gettext("The end date is before the start date.")
    except InputError as exc:
        errors.update(exc.errors)
    if not values["reason"].strip():
        errors["reason"] = gettext("Say why, e.g. hardship, staff housing.")
    if errors:
        return await unit_account(request, errors=errors, values=values, status_code=422)
    async with transaction():
        discount = await Discount.create(
            project_id=unit.project_id, unit=unit, item_id=item_id, percent=percent, valid_from=start, valid_to=end,
            reason=values["reason"].strip()[:255], approved_by_id=ctx(request).principal.id,
        )
        await timeline.post(unit, "discount", gettext("Discount of %(percent)s%% approved: %(reason)s",
                                                      percent=discount.percent, reason=discount.reason),
                            author=ctx(request).principal, data={"discount": discount.id})
    return redirect(request, f"{_base(request)}units/{unit.id}", gettext("Discount recorded."))


# Receipts --------------------------------------------------------------------------


async def receipt(request: Request, *, errors: dict | None = None, status_code: int = 200) -> Response:
    payment: Payment = request.state.record
    await payment.fetch_related("unit", "customer", "cashier", "approved_by", "reverses")
    allocations = await payment.allocations.all().order_by("id").prefetch_related("bill")
    reversal = await Payment.get_or_none(reverses_id=payment.id)
    allocated = sum((a.amount for a in allocations), ZERO)
    return await render(request, "fees/receipt.html", {
        "payment": payment, "allocations": allocations, "reversal": reversal, "allocated": allocated,
        "unallocated": payment.amount - allocated, "methods": Method.CHOICES, "base": _base(request),
        "can_approve": _can(request, APPROVE), "errors": errors or {},
    }, status_code=status_code)


async def payment_reverse(request: Request) -> Response:
    form = await request.form()
    try:
        reversal = await payments.reverse_payment(request.state.record, form.get("reason", ""),
                                                  approver_id=ctx(request).principal.id)
    except InputError as exc:
        return await receipt(request, errors=exc.errors, status_code=422)
    return redirect(request, f"{_base(request)}payments/{reversal.id}",
                    gettext("Reversed with receipt %(number)s.", number=reversal.receipt_number))


# Bill runs -------------------------------------------------------------------------


async def runs_page(request: Request, *, errors: dict | None = None, period: str = "", status_code: int = 200) -> Response:
    runs = await BillRun.all().order_by("-period").limit(24)
    default = add_months(month_start(_today(request)), 0)
    return await render(request, "fees/runs.html", {
        "runs": runs, "states": BillRunState.CHOICES, "errors": errors or {}, "period": period or period_label(default),
        "base": _base(request), "can_run": _can(request, RUN),
    }, status_code=status_code)


async def run_create(request: Request) -> Response:
    form = await request.form()
    text = form.get("period", "")
    try:
        period = parse_period(text)
    except InputError as exc:
        return await runs_page(request, errors=exc.errors, period=text, status_code=422)
    project = ctx(request).project
    run = await billing.start_bill_run(project.id, period, requested_by=ctx(request).principal.id)
    await queue_run(request.app.state.host, "fees.bill_run", project.id, ctx(request).principal.id)
    return redirect(request, f"{_base(request)}runs",
                    gettext("The bill run for %(period)s is queued.", period=period_label(run.period)))


async def run_progress(request: Request) -> Response:
    run: BillRun = request.state.record
    return await render(request, "fees/_run_row.html", {"run": run, "states": BillRunState.CHOICES})


# Pass-through amounts ----------------------------------------------------------------


async def _metered_items(request: Request) -> list[tuple[str, str]]:
    return [(str(i.id), i.name) for i in await FeeItem.filter(basis=Basis.METERED, is_active=True).order_by("order", "id")]


METERED = ListView(
    "fees-metered", _("Pass-through amounts"), model=MeterCharge,
    columns=[
        Column("unit", _("Unit"), field="unit.code", sort="unit__code", link=_unit_link),
        Column("item", _("Fee item"), field="item.name"),
        Column("period", _("Month"), value=lambda m: period_label(m.period), sort=True),
        Column("amount", _("Amount"), format="money", sort=True),
        Column("note", _("Note")),
        Column("entered_by", _("Entered by"), value=lambda m: str(m.updated_by or m.created_by or "")),
        Column("entered_at", _("Entered"), value=lambda m: m.updated_at or m.created_at, format="datetime"),
    ],
    filters=[
        Filter.choice("item", _("Fee item"), _metered_items, field="item_id"),
        Filter.choice("period", _("Month"), _recent_periods, apply=lambda q, v: q.filter(period=parse_period(v))),
    ],
    search=["unit__code", "note"],
    select_related=["unit", "item", "created_by", "updated_by"],
    default_sort="-period",
)


async def metered_page(request: Request, *, errors: dict | None = None, values: dict | None = None,
                       status_code: int = 200) -> Response:
    context = {
        "base": _base(request), "can_manage": _can(request, MANAGE), "items": await METERED.options(request, "item"),
        "errors": errors or {}, "values": {"period": period_label(month_start(_today(request))), **(values or {})},
        "imports": await MeterImport.all().order_by("-id").limit(5).prefetch_related("created_by"),
        "import_states": MeterImportState.CHOICES,
    }
    if not errors:
        return await METERED.response(request, "fees/metered.html", context)
    context["listing"] = await METERED.page(request)
    return await render(request, "fees/metered.html", context, status_code=status_code)


async def _chosen_item(value: str) -> FeeItem | None:
    return await FeeItem.get_or_none(id=int(value)) if (value or "").isdigit() else None


async def metered_create(request: Request) -> Response:
    form = await request.form()
    values = {k: form.get(k, "") for k in ("unit", "item", "period", "amount", "note")}
    try:
        charge = await metered.enter_amount(
            values["unit"], await _chosen_item(values["item"]), values["period"], values["amount"], values["note"],
            project_id=ctx(request).project.id, user_id=ctx(request).principal.id,
        )
    except InputError as exc:
        return await metered_page(request, errors=exc.errors, values=values, status_code=422)
    return redirect(request, _base(request) + "metered", gettext(
        "Saved: %(amount)s for %(unit)s, %(month)s.", amount=f"¥{charge.amount:,.2f}", unit=values["unit"].strip(),
        month=period_label(charge.period)))


async def metered_upload(request: Request) -> Response:
    from starlette.datastructures import UploadFile

    async with request.form(max_files=1, max_fields=10) as form:
        values = {"item": form.get("import_item", ""), "period": form.get("import_period", "")}
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await metered_page(request, errors={"file": gettext("Choose a file to upload.")}, values=values,
                                      status_code=422)
        period = None
        if values["period"].strip():
            period = metered.parse_month(values["period"])
            if period is None:
                return await metered_page(request, errors={"import_period": gettext(
                    "Enter a month as YYYY-MM, e.g. 2026-05.")}, values=values, status_code=422)
        try:
            batch = await metered.check_upload(ctx(request).project.id, upload, await _chosen_item(values["item"]),
                                               period, user_id=ctx(request).principal.id)
        except InputError as exc:
            return await metered_page(request, errors=exc.errors, values=values, status_code=422)
    return redirect(request, f"{_base(request)}metered/imports/{batch.id}")


async def metered_import(request: Request, *, errors: list | None = None, message: str = "",
                         status_code: int = 200) -> Response:
    batch: MeterImport = request.state.record
    await batch.fetch_related("created_by")
    return await render(request, "fees/metered_import.html", {
        "batch": batch, "errors": errors if errors is not None else batch.errors, "message": message,
        "base": _base(request), "states": MeterImportState.CHOICES,
        "changes": {"created": gettext("New"), "updated": gettext("Changed"), "unchanged": gettext("Unchanged")},
    }, status_code=status_code)


async def metered_commit(request: Request) -> Response:
    batch: MeterImport = request.state.record
    try:
        batch = await metered.commit_import(batch, user_id=ctx(request).principal.id)
    except metered.ImportChanged as exc:
        return await metered_import(request, errors=exc.result.errors, status_code=422, message=gettext(
            "Nothing was imported: since the upload, some rows are no longer valid (listed below). "
            "Correct the file and upload it again."))
    except InputError as exc:
        return await metered_import(request, status_code=422, message=next(iter(exc.errors.values())))
    summary = batch.summary
    return redirect(request, f"{_base(request)}metered/imports/{batch.id}", gettext(
        "Imported: %(created)s new, %(updated)s changed, %(unchanged)s unchanged.", created=summary.get("created", 0),
        updated=summary.get("updated", 0), unchanged=summary.get("unchanged", 0)))


async def metered_template(request: Request) -> Response:
    out = io.BytesIO()
    metered.template_workbook(out)
    return Response(out.getvalue(), media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": 'attachment; filename="pass-through-amounts.xlsx"'})


# Setup -----------------------------------------------------------------------------


async def setup_page(request: Request, *, errors: dict | None = None, values: dict | None = None,
                     status_code: int = 200) -> Response:
    project = ctx(request).project
    items = await FeeItem.filter(project_id=project.id).order_by("order", "id")
    rates = await FeeRate.filter(project_id=project.id).order_by("item_id", "use", "valid_from")
    return await render(request, "fees/setup.html", {
        "items": items, "rates": rates, "steps": await DunningStep.filter(project_id=project.id),
        "rate_items": [(item.id, item.name) for item in items if item.basis != Basis.METERED],
        "bases": list(Basis.CHOICES.items()), "uses": list(UnitUse.CHOICES.items()),
        "actions": list(DunningAction.CHOICES.items()), "basis_labels": Basis.CHOICES, "use_labels": UnitUse.CHOICES,
        "action_labels": DunningAction.CHOICES, "errors": errors or {}, "values": values or {}, "base": _base(request),
    }, status_code=status_code)


async def item_create(request: Request) -> Response:
    form = await request.form()
    values = {k: form.get(k, "") for k in ("code", "name", "basis")}
    try:
        await billing.create_item(ctx(request).project.id, values["code"], values["name"], values["basis"])
    except InputError as exc:
        return await setup_page(request, errors=exc.errors, values=values, status_code=422)
    return redirect(request, _base(request) + "setup", gettext("Fee item added."))


async def rate_create(request: Request) -> Response:
    form = await request.form()
    values = {k: form.get(k, "") for k in ("item", "use", "price", "valid_from", "valid_to")}
    errors: dict[str, str] = {}
    item = None
    if values["item"].isdigit():
        item = await FeeItem.get_or_none(id=int(values["item"]), project_id=ctx(request).project.id)
    if item is None:
        errors["item"] = gettext("Choose a fee item.")
    try:
        price = parse_amount(values["price"], "price", places=4)
    except InputError as exc:
        errors.update(exc.errors)
    try:
        start = parse_date(values["valid_from"], "valid_from")
        end = parse_date(values["valid_to"], "valid_to", required=False)
    except InputError as exc:
        errors.update(exc.errors)
    if not errors:
        try:
            await billing.add_rate(item, values["use"], price, start, end)
        except InputError as exc:
            errors.update(exc.errors)
    if errors:
        return await setup_page(request, errors=errors, values=values, status_code=422)
    return redirect(request, _base(request) + "setup", gettext("Rate added."))


async def step_create(request: Request) -> Response:
    form = await request.form()
    values = {k: form.get(k, "") for k in ("step_name", "days_overdue", "action")}
    try:
        await dunning.create_step(ctx(request).project.id, values["step_name"], values["days_overdue"], values["action"])
    except InputError as exc:
        errors = {("step_name" if k == "name" else k): v for k, v in exc.errors.items()}
        return await setup_page(request, errors=errors, values=values, status_code=422)
    return redirect(request, _base(request) + "setup", gettext("Dunning step added."))


# Hooks: dashboard, 360, search ----------------------------------------------------------


async def dashboard_tiles(request: Request, project) -> list[DashboardTile]:
    today = _today(request)
    months = await reports.rate_by_month(project.id, month_start(today), 6)
    buckets = await dunning.ageing(project.id, today)
    current = months[-1]
    from core.i18n import format_money, format_percent

    base = f"/p/{project.code}/fees/"
    return [
        DashboardTile(
            _("Collection rate this month"), value=format_percent(current.rate) if current.rate is not None else "—",
            hint=gettext("%(collected)s of %(billed)s", collected=format_money(current.collected),
                         billed=format_money(current.billed)),
            url=base, order=40, permission=VIEW,
        ),
        DashboardTile(
            _("Collection rate by month"), order=41, width=2, permission=VIEW, url=base,
            chart={"type": "bar", "labels": [m.label for m in months], "datasets": [
                {"label": gettext("Collection rate (%)"),
                 "data": [float(m.rate * 100) if m.rate is not None else None for m in months]}]},
        ),
        DashboardTile(
            _("Arrears by ageing"), value=format_money(sum(buckets.values(), ZERO)), order=42, permission=VIEW,
            url=base + "arrears", hint=gettext("days overdue"),
            chart={"type": "doughnut", "labels": list(buckets), "datasets": [
                {"label": gettext("Arrears"), "data": [float(v) for v in buckets.values()]}]},
        ),
    ]


async def customer_account(request: Request, customer: Customer) -> dict:
    today = _today(request)
    bills = await Bill.filter(customer_id=customer.id, status=BillStatus.OPEN).prefetch_related("unit")
    last = await reports.last_payment(customer_id=customer.id)
    unit_ids = sorted({b.unit_id for b in bills} | set(
        await CustomerUnit.filter(customer_id=customer.id).values_list("unit_id", flat=True)))
    units = await Unit.filter(id__in=unit_ids).order_by("code")
    balance, overdue = reports.open_totals(bills, today)
    return {
        "balance": balance, "overdue": overdue,
        "open_count": len(bills), "last_payment": last, "fee_units": units,
        "fees_base": f"/p/{ctx(request).project.code}/fees/",
    }


def _searched_numbers(text: str, today: date) -> tuple[list[str], list[str]]:
    """(bill numbers, receipt numbers) a query can mean: a full number, or a serial ("123", "000123").

    A bare serial is looked up in the bill numbers of the last thirteen months: exact values read through
    the (estate, number) index, one probe per month and estate (ten years of months made 24,000 probes for
    a head-office search, 0.5 s with a cold cache). Older bills are found by their full number.
    """
    if text.isdigit() and len(text) <= 8:
        serial = int(text)
        first = add_months(month_start(today), -12)
        bills = [billing.bill_number(add_months(first, i), serial) for i in range(13)] if serial < 10**6 else []
        return bills, [payments.receipt_number(serial)]
    if found := re.fullmatch(r"B(\d{4})(\d{2})-(\d{1,6})", text):
        year, month, serial = (int(g) for g in found.groups())
        return ([billing.bill_number(date(year, month, 1), serial)] if 1 <= month <= 12 else []), []
    if found := re.fullmatch(r"R(\d{1,8})", text):
        return [], [payments.receipt_number(int(found.group(1)))]
    return [], []


async def search_results(query: str, project_ids: list[int]) -> list[SearchResult]:
    """Bills and receipts by number (see `_searched_numbers`)."""
    from core.api import Project, newest_matches, now

    text = query.strip().upper()
    if len(text) < 3:
        return []
    bill_numbers, receipt_numbers = _searched_numbers(text, now().date())
    if not bill_numbers and not receipt_numbers:
        return []
    with unscoped():
        codes = dict(await Project.filter(id__in=project_ids).values_list("id", "code"))
    hits = []
    if bill_numbers:
        for bill in await newest_matches(Bill, project_ids, related=("unit",), number__in=bill_numbers):
            hits.append(SearchResult(
                kind=_("Bill"), title=bill.number, url=f"/p/{codes[bill.project_id]}/fees/bills/{bill.id}",
                subtitle=f"{bill.unit.code} · {period_label(bill.period)}", project_id=bill.project_id,
                score=100.0 if bill.number == text else 60.0,
            ))
    if receipt_numbers:
        for payment in await newest_matches(
            Payment, project_ids, related=("unit",), receipt_number__in=receipt_numbers
        ):
            hits.append(SearchResult(
                kind=_("Receipt"), title=payment.receipt_number,
                url=f"/p/{codes[payment.project_id]}/fees/payments/{payment.id}",
                subtitle=f"{payment.unit.code} · ¥{payment.amount:,.2f}", project_id=payment.project_id,
                score=100.0 if payment.receipt_number == text else 60.0,
            ))
    return hits


def routes():
    bill, payment, unit, run = "fees.Bill", "fees.Payment", "core.Unit", "fees.BillRun"
    return [
        route("/", overview, name="fees", permission=VIEW),
        route("/find", find_unit, name="fees_find_unit", permission=VIEW),
        route("/bills", bill_list, name="fees_bills", permission=VIEW),
        route("/bills/{id:int}", bill_detail, name="fees_bill", permission=VIEW, model=bill),
        route("/bills/{id:int}/void", bill_void, methods=["POST"], name="fees_bill_void", permission=APPROVE, model=bill),
        route("/bills/{id:int}/letter", bill_letter, name="fees_bill_letter", permission=VIEW, model=bill),
        route("/arrears", arrears_list, name="fees_arrears", permission=VIEW),
        route("/units/{id:int}", unit_account, name="fees_unit", permission=VIEW, model=unit),
        route("/units/{id:int}/payments", payment_create, methods=["POST"], name="fees_pay", permission=PAY, model=unit),
        route("/units/{id:int}/promises", promise_create, methods=["POST"], name="fees_promise", permission=PAY, model=unit),
        route("/units/{id:int}/discounts", discount_create, methods=["POST"], name="fees_discount", permission=APPROVE, model=unit),
        route("/units/{id:int}/items", unit_item_change, methods=["POST"], name="fees_unit_items", permission=MANAGE, model=unit),
        route("/units/{id:int}/bill-to", unit_bill_to, methods=["POST"], name="fees_unit_bill_to", permission=MANAGE, model=unit),
        route("/payments", receipt_list, name="fees_payments", permission=VIEW),
        route("/payments/{id:int}", receipt, name="fees_receipt", permission=VIEW, model=payment),
        route("/payments/{id:int}/reverse", payment_reverse, methods=["POST"], name="fees_reverse", permission=APPROVE, model=payment),
        route("/cash", cash_summary, name="fees_cash", permission=VIEW),
        route("/runs", runs_page, name="fees_runs", permission=RUN),
        route("/runs", run_create, methods=["POST"], name="fees_run_create", permission=RUN),
        route("/runs/{id:int}", run_progress, name="fees_run", permission=RUN, model=run),
        route("/metered", metered_page, name="fees_metered", permission=VIEW),
        route("/metered", metered_create, methods=["POST"], name="fees_metered_create", permission=MANAGE),
        route("/metered/template", metered_template, name="fees_metered_template", permission=VIEW),
        route("/metered/imports", metered_upload, methods=["POST"], name="fees_metered_upload", permission=MANAGE),
        route("/metered/imports/{id:int}", metered_import, name="fees_metered_import", permission=MANAGE,
              model="fees.MeterImport"),
        route("/metered/imports/{id:int}", metered_commit, methods=["POST"], name="fees_metered_commit",
              permission=MANAGE, model="fees.MeterImport"),
        route("/setup", setup_page, name="fees_setup", permission=MANAGE),
        route("/setup/items", item_create, methods=["POST"], name="fees_item_create", permission=MANAGE),
        route("/setup/rates", rate_create, methods=["POST"], name="fees_rate_create", permission=MANAGE),
        route("/setup/steps", step_create, methods=["POST"], name="fees_step_create", permission=MANAGE),
    ]
