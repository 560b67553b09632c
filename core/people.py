"""Customers: phone normalisation, pinyin search keys, creation."""

from __future__ import annotations

import re

import phonenumbers

from core.models import Customer, CustomerPhone, CustomerUnit, Project


class PhoneError(ValueError):
    pass


def normalize_phone(raw: str, region: str = "CN") -> str:
    """`138 0013 8000`, `+86 13800138000`, `0086-138-0013-8000` -> `+8613800138000`.

    Raises PhoneError for text that is not a possible phone number.
    """
    text = (raw or "").strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise PhoneError(str(exc)) from None
    if not phonenumbers.is_possible_number(number):
        raise PhoneError(f"not a possible phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def try_normalize_phone(raw: str) -> str | None:
    digits = re.sub(r"\D", "", raw or "")
    if len(digits) < 5:
        return None
    try:
        return normalize_phone(raw)
    except PhoneError:
        return None


def display_phone(e164: str) -> str:
    try:
        number = phonenumbers.parse(e164, "CN")
    except phonenumbers.NumberParseException:
        return e164
    if number.country_code == 86:
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def mask_phone(e164: str) -> str:
    shown = display_phone(e164).replace(" ", "")
    if len(shown) <= 7:
        return shown[:2] + "*" * max(len(shown) - 2, 0)
    return shown[:3] + "****" + shown[-4:]


def mask_id_number(value: str) -> str:
    if not value:
        return ""
    if len(value) <= 8:
        return value[:1] + "*" * (len(value) - 1)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def pinyin_keys(name: str) -> tuple[str, str]:
    """("zhangsan", "zs") for 张三; non-Chinese characters are kept, lowercased."""
    # Imported here: pypinyin's dictionaries take a large part of start-up, and only new names need them.
    from pypinyin import lazy_pinyin

    syllables = [s.lower() for s in lazy_pinyin(name, errors="default") if s.strip()]
    full = "".join(re.sub(r"[^a-z0-9]", "", s) for s in syllables)
    initials = "".join(s[0] for s in (re.sub(r"[^a-z0-9]", "", x) for x in syllables) if s)
    return full, initials


async def create_customer(
    project: Project | int,
    name: str,
    phones: list[str] = (),
    *,
    email: str = "",
    preferred_channel: str = "phone",
    id_number: str = "",
    locale: str = "zh_CN",
    note: str = "",
) -> Customer:
    project_id = project if isinstance(project, int) else project.id
    full, initials = pinyin_keys(name)
    customer = await Customer.create(
        project_id=project_id,
        name=name,
        name_pinyin=full,
        name_initials=initials,
        email=email,
        preferred_channel=preferred_channel,
        id_number=id_number,
        locale=locale,
        note=note,
    )
    seen = set()
    for raw in phones:
        number = normalize_phone(raw)
        if number not in seen:
            seen.add(number)
            await CustomerPhone.create(project_id=project_id, customer=customer, number=number)
    return customer


async def link_unit(customer: Customer, unit, relation: str = "owner", start_date=None) -> CustomerUnit:
    return await CustomerUnit.create(
        project_id=customer.project_id, customer=customer, unit=unit, relation=relation, start_date=start_date
    )


async def upsert_customer(
    project: Project | int,
    name: str,
    phones: list[str],
    *,
    email: str = "",
    id_number: str = "",
) -> tuple[Customer, bool]:
    """The estate's customer having any of `phones` (any spelling), updated; or a new one.

    Given non-empty values replace the stored ones; numbers not on file yet
    are added. Returns (customer, created). Imports use this so that loading
    the same list twice creates no duplicates.
    """
    project_id = project if isinstance(project, int) else project.id
    numbers = list(dict.fromkeys(normalize_phone(raw) for raw in phones))
    link = (
        await CustomerPhone.filter(project_id=project_id, number__in=numbers).order_by("id").first()
        if numbers
        else None
    )
    if link is None:
        customer = await create_customer(project_id, name, numbers, email=email, id_number=id_number)
        return customer, True
    customer = await Customer.get(id=link.customer_id)
    changed = []
    if name and name != customer.name:
        customer.name = name
        customer.name_pinyin, customer.name_initials = pinyin_keys(name)
        changed += ["name", "name_pinyin", "name_initials"]
    for attr, value in (("email", email), ("id_number", id_number)):
        if value and value != getattr(customer, attr):
            setattr(customer, attr, value)
            changed.append(attr)
    if changed:
        await customer.save(update_fields=changed)
    known = set(await CustomerPhone.filter(customer_id=customer.id).values_list("number", flat=True))
    for number in numbers:
        if number not in known:
            await CustomerPhone.create(project_id=project_id, customer=customer, number=number)
    return customer, False
