"""The fees JSON API: bills, a unit's balance and payments, for the finance/ERP system and online payment channels.

Payments are posted through `payments.post_payment`, exactly as the cashier
page posts them (gapless receipt numbers, allocation to the chosen or oldest
open bills, overpayment kept as credit, `fees.payment_posted`). Balances come
from `reports.unit_account`, the figures of the unit page.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from core.api import (
    MAX_ID, ApiCall, ApiError, ApiModel, ListQuery, Page, Unit, api_route, gettext as _, local_today, paginate,
)
from plugins.fees import payments, reports
from plugins.fees.models import Allocation, Bill, BillLine, BillStatus, FeeItem, Method, Payment, PaymentKind
from plugins.fees.money import InputError, parse_amount, parse_period, period_label

MONTH = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])$"

StatusName = Literal[tuple(BillStatus.CHOICES)]  # type: ignore[valid-type]
MethodName = Literal[tuple(Method.CHOICES)]  # type: ignore[valid-type]
KindName = Literal[tuple(PaymentKind.CHOICES)]  # type: ignore[valid-type]


# Models ---------------------------------------------------------------------------------


class ItemRef(ApiModel):
    id: int
    code: str
    name: str


class BillLineOut(ApiModel):
    id: int
    item: ItemRef
    description: str
    quantity: Decimal = Field(description="m², months or 1, as a decimal string.")
    unit_price: Decimal = Field(description="Four decimals, as a decimal string.")
    gross: Decimal = Field(description="quantity × unit_price, half-up to the fen.")
    discount: Decimal
    amount: Decimal = Field(description="gross − discount.")


class BillPaymentOut(ApiModel):
    payment_id: int
    receipt_number: str
    amount: Decimal = Field(description="Negative for a reversal's.")
    at: datetime


class BillOut(ApiModel):
    id: int
    number: str = Field(description="B<yyyymm>-<nnnnnn>, per estate.")
    unit_id: int
    unit_code: str
    customer_id: int | None = Field(description="Whom the bill was issued to.")
    billed_as: str = Field(description="owner or tenant (empty for older bills).")
    period: str = Field(description="The month billed, YYYY-MM.")
    due_date: date
    total: Decimal = Field(description="Decimal string, e.g. \"88.50\".")
    paid: Decimal = Field(description="Sum of the payments allocated to it.")
    balance: Decimal = Field(description="total − paid.")
    status: StatusName
    void_reason: str
    issued_at: datetime
    updated_at: datetime | None
    web_path: str = Field(description="The bill's page in Courtyard, relative to the server.")


class BillDetailOut(BillOut):
    lines: list[BillLineOut]
    payments: list[BillPaymentOut] = Field(description="Allocations of payments (and reversals) to this bill.")


class BillQuery(ListQuery):
    unit_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only this unit's bills.")
    customer_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only bills issued to this customer.")
    period: str | None = Field(None, pattern=MONTH, description="Only this month's bills, YYYY-MM.")
    status: StatusName | None = Field(None, description="open, paid or void.")


class PaymentRef(ApiModel):
    id: int
    receipt_number: str
    amount: Decimal
    method: str
    received_at: datetime


class BalanceOut(ApiModel):
    unit_id: int
    unit_code: str
    as_of: date = Field(description="Today in the estate's time zone: overdue means due before this day.")
    outstanding: Decimal = Field(description="What the unit's open bills still owe.")
    overdue: Decimal = Field(description="Of it, on bills past their due date.")
    open_bills: int
    credit: Decimal = Field(description="Money received and not yet allocated; later bills use it.")
    balance: Decimal = Field(description="outstanding − credit (negative: paid in advance).")
    last_payment: PaymentRef | None


class AllocationOut(ApiModel):
    bill_id: int
    bill_number: str
    amount: Decimal


class PaymentOut(ApiModel):
    id: int
    receipt_number: str = Field(description="R<nnnnnnnn>, per estate, without gaps.")
    kind: str = Field(description="payment, or reversal (negative amount) of the payment in `reverses_id`.")
    unit_id: int
    unit_code: str
    customer_id: int | None
    amount: Decimal = Field(description="Decimal string, e.g. \"1280.50\".")
    method: str = Field(description="cash, transfer, card or online.")
    reference: str
    payer: str
    received_at: datetime
    allocations: list[AllocationOut] = Field(description="What it paid of which bills; the rest is credit.")
    unallocated: Decimal = Field(description="amount − allocations: credit left on the unit's account.")
    reverses_id: int | None
    reversed: bool = Field(description="A reversal cancels this payment.")
    reversed_by_id: int | None = Field(description="The reversal's id.")
    updated_at: datetime | None
    web_path: str = Field(description="The receipt's page in Courtyard, relative to the server.")


class PaymentQuery(ListQuery):
    unit_id: int | None = Field(None, ge=1, le=MAX_ID, description="Only this unit's payments.")
    kind: KindName | None = Field(None, description="payment or reversal.")


class PaymentIn(ApiModel):
    """Money received for a unit through another channel (online payment, bank, ERP)."""

    unit_id: int = Field(ge=1, le=MAX_ID, description="From GET /units?code=...")
    amount: str = Field(
        min_length=1, max_length=32,
        description="Decimal string, e.g. \"1280.50\": more than zero, at most 2 decimals.",
    )
    method: MethodName = Field("online", description="cash, transfer, card or online.")
    reference: str = Field("", max_length=64, description="The channel's transaction number, for reconciliation.")
    payer: str = Field("", max_length=64, description="Who paid, if not the billed customer.")
    bill_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default_factory=list, max_length=120,
        description="Open bills of the unit to pay, oldest first; none: the oldest open bills. The rest is credit.",
    )


# Handlers -------------------------------------------------------------------------------


def _base(call: ApiCall) -> str:
    return f"/p/{call.project.code}/fees/"


async def _bills_out(call: ApiCall, bills: list[Bill]) -> list[dict]:
    codes = dict(await Unit.filter(id__in=list({b.unit_id for b in bills})).values_list("id", "code"))
    return [
        {
            "id": b.id, "number": b.number, "unit_id": b.unit_id, "unit_code": codes.get(b.unit_id, ""),
            "customer_id": b.customer_id, "billed_as": b.customer_relation, "period": period_label(b.period),
            "due_date": b.due_date, "total": b.total, "paid": b.paid, "balance": b.balance, "status": b.status,
            "void_reason": b.void_reason, "issued_at": b.issued_at, "updated_at": b.updated_at,
            "web_path": f"{_base(call)}bills/{b.id}",
        }
        for b in bills
    ]


async def list_bills(call: ApiCall) -> dict:
    query: BillQuery = call.query
    bills = Bill.filter(**query.sent("unit_id", "customer_id", "status"))
    if query.period:
        try:
            bills = bills.filter(period=parse_period(query.period))
        except InputError as exc:
            raise ApiError.invalid(exc.errors, location="query") from None
    return await paginate(call, bills, convert=lambda rows: _bills_out(call, rows))


async def get_bill(call: ApiCall) -> dict:
    bill: Bill = call.record
    out = (await _bills_out(call, [bill]))[0]
    lines = await BillLine.filter(bill_id=bill.id).order_by("id")
    items = {i.id: i for i in await FeeItem.filter(id__in=list({line.item_id for line in lines}))}
    out["lines"] = [
        {"id": line.id, "item": items[line.item_id], "description": line.description, "quantity": line.quantity,
         "unit_price": line.unit_price, "gross": line.gross, "discount": line.discount, "amount": line.amount}
        for line in lines
    ]
    allocations = await Allocation.filter(bill_id=bill.id).order_by("id").select_related("payment")
    out["payments"] = [
        {"payment_id": a.payment_id, "receipt_number": a.payment.receipt_number, "amount": a.amount,
         "at": a.created_at}
        for a in allocations
    ]
    return out


async def get_balance(call: ApiCall) -> dict:
    unit: Unit = call.record
    today = local_today(call.project.timezone)
    account = await reports.unit_account(unit.id, today)
    return {
        "unit_id": unit.id, "unit_code": unit.code, "as_of": today, "outstanding": account.outstanding,
        "overdue": account.overdue, "open_bills": account.open_bills, "credit": account.credit,
        "balance": account.balance, "last_payment": account.last_payment,
    }


async def _payments_out(call: ApiCall, rows: list[Payment]) -> list[dict]:
    ids = [p.id for p in rows]
    codes = dict(await Unit.filter(id__in=list({p.unit_id for p in rows})).values_list("id", "code"))
    allocations: dict[int, list[Allocation]] = {}
    for a in await Allocation.filter(payment_id__in=ids).order_by("id").select_related("bill"):
        allocations.setdefault(a.payment_id, []).append(a)
    reversals = dict(await Payment.filter(reverses_id__in=ids).values_list("reverses_id", "id"))
    out = []
    for p in rows:
        mine = allocations.get(p.id, [])
        out.append({
            "id": p.id, "receipt_number": p.receipt_number, "kind": p.kind, "unit_id": p.unit_id,
            "unit_code": codes.get(p.unit_id, ""), "customer_id": p.customer_id, "amount": p.amount,
            "method": p.method, "reference": p.reference, "payer": p.payer, "received_at": p.received_at,
            "allocations": [{"bill_id": a.bill_id, "bill_number": a.bill.number, "amount": a.amount} for a in mine],
            "unallocated": p.amount - sum((a.amount for a in mine), Decimal("0.00")),
            "reverses_id": p.reverses_id, "reversed": p.id in reversals, "reversed_by_id": reversals.get(p.id),
            "updated_at": p.updated_at, "web_path": f"{_base(call)}payments/{p.id}",
        })
    return out


async def list_payments(call: ApiCall) -> dict:
    query: PaymentQuery = call.query
    rows = Payment.filter(**query.sent("unit_id", "kind"))
    return await paginate(call, rows, convert=lambda found: _payments_out(call, found))


async def get_payment(call: ApiCall) -> dict:
    return (await _payments_out(call, [call.record]))[0]


FIELDS = {"unit": "unit_id", "bills": "bill_ids", "form": "__all__"}


def _same_payment(payment: Payment, body: PaymentIn) -> bool:
    """The payment posted earlier under this Idempotency-Key is what the body asks for (a late retry)."""
    try:
        return (payment.unit_id, payment.amount) == (body.unit_id, parse_amount(body.amount))
    except InputError:
        return False


async def create_payment(call: ApiCall) -> dict:
    body: PaymentIn = call.body
    header = call.request.headers.get("idempotency-key", "").strip()
    # The payment's own key: a retry with the same Idempotency-Key posts once even after core forgot the key.
    key = (f"api:{call.token.id}:{call.project.id}:{hashlib.sha256(header.encode()).hexdigest()[:32]}" if header
           else f"api:{secrets.token_hex(24)}")
    try:
        payment, created = await payments.post_payment(
            project_id=call.project.id, unit_id=body.unit_id, amount=body.amount, method=body.method,
            cashier_id=await call.user_id(), idempotency_key=key, reference=body.reference,
            payer=body.payer, bill_ids=body.bill_ids,
        )
    except InputError as exc:
        raise ApiError.invalid({FIELDS.get(name, name): text for name, text in exc.errors.items()}) from None
    if not created and not _same_payment(payment, body):
        raise ApiError(
            422, "idempotency_key_reused",
            _("This Idempotency-Key was used for a different payment. Use a new key for a new payment."),
        )
    return (await _payments_out(call, [payment]))[0]


def routes():
    read, write = "fees:read", "fees:write"
    return [
        api_route("GET", "/bills", list_bills, scope=read, query=BillQuery, response=Page[BillOut],
                  summary="Bills, in order of change",
                  description="A bill changes when it is issued, paid (in part), reversed or voided. Keep the "
                              "`updated_at` of the last item (or the cursor) and pass it as `updated_since` next time."),
        api_route("GET", "/bills/{id:int}", get_bill, scope=read, response=BillDetailOut, model="fees.Bill",
                  summary="A bill with its lines and payments"),
        api_route("GET", "/units/{id:int}/balance", get_balance, scope=read, response=BalanceOut, model="core.Unit",
                  summary="A unit's account: owed, overdue, credit, last payment",
                  description="The figures of the unit's account page in Courtyard."),
        api_route("GET", "/payments", list_payments, scope=read, query=PaymentQuery, response=Page[PaymentOut],
                  summary="Payments and reversals, in order of change",
                  description="A payment changes when it is posted, reversed, or its credit is used by a later bill."),
        api_route("GET", "/payments/{id:int}", get_payment, scope=read, response=PaymentOut, model="fees.Payment",
                  summary="A payment (receipt)"),
        api_route("POST", "/payments", create_payment, scope=write, body=PaymentIn, response=PaymentOut, creates=True,
                  summary="Post a payment",
                  description="Given a receipt number and allocated to the chosen (or oldest) open bills exactly like "
                              "a payment posted at the cashier's desk; money left over is credit. The receipt names "
                              "the token as cashier. Send an Idempotency-Key so a retry cannot post it twice."),
    ]
