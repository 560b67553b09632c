"""One list component for every list page: filters, search, sorting, paging, export.

A plugin declares a list once, at module level, and answers the page with it:

    units = ListView(
        "units", _("Units"), model=Unit,
        columns=[
            Column("code", _("Unit"), sort=True, link=lambda unit: f"units/{unit.id}"),
            Column("building", _("Building"), field="building.name", sort="building__code"),
            Column("area", _("Area (m²)"), format="number", digits=2, sort=True),
            Column("use", _("Use"), format="choice", choices=UnitUse.CHOICES),
        ],
        filters=[Filter.choice("use", _("Use"), UnitUse.CHOICES)],
        search=["code"],
        select_related=["building"],
        default_sort="code",
    )

    async def unit_list(request):
        return await units.response(request)

Everything comes from the query string (`q`, each filter, `sort`, `page`,
`per`), so a list's URL can be bookmarked and the browser's back button works.
The same URL with `export=xlsx` or `export=csv` downloads the whole filtered,
sorted list with the values as shown (labels, dates in the project's time
zone). The base query runs in the request's scope like every other query.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import inspect
import io
import re
import tempfile
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from tortoise import fields as orm_fields
from tortoise.expressions import Q, Subquery
from tortoise.models import Model
from tortoise.queryset import QuerySet

from core import i18n
from core.i18n import gettext

FORMATS = ("text", "number", "money", "date", "datetime", "choice", "boolean")
NUMERIC_FORMATS = ("number", "money")
EXPORT_FORMATS = ("xlsx", "csv")
EXPORT_BATCH = 500


def _accepts_request(func: Callable, arity: int = 2) -> bool:
    """Callables may take (row) or (row, request); decided once, when the list is declared."""
    try:
        return len(inspect.signature(func).parameters) >= arity
    except (TypeError, ValueError):
        return False


def _call(func: Callable, takes_request: bool, row: Any, request: Request) -> Any:
    return func(row, request) if takes_request else func(row)


def _attr_path(obj: Any, path: str | tuple[str, ...]) -> Any:
    for part in path.split(".") if isinstance(path, str) else path:
        if obj is None:
            return None
        obj = getattr(obj, part, None)
    return obj


@dataclasses.dataclass
class Column:
    """One column of a list.

    key: name in the URL (`sort=key`) and the default `field`.
    field: attribute path on the row, e.g. "building.name" (declare the relation in
        `select_related`). `value(row)` or `value(row, request)` computes it instead.
    format: text, number, money, date, datetime, choice (with `choices`), boolean.
    sort: True to sort by `field`, or the ORM path to sort by ("building__code").
        Only sortable columns can be sorted: the URL cannot order by anything else.
    link: `link(row)` or `link(row, request)` -> URL (or None) the cell links to.
    template: a template snippet rendered in the cell with `row` and `value`
        (the export still uses the formatted value).
    """

    key: str
    label: Any
    field: str | None = None
    value: Callable[..., Any] | None = None
    format: str = "text"
    choices: Mapping[Any, Any] | None = None
    digits: int | None = None
    sort: bool | str = False
    link: Callable[..., str | None] | None = None
    template: str | None = None
    export: bool = True
    wrap: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"column {self.key}: unknown format {self.format!r}; use one of {FORMATS}")
        if self.format == "choice" and self.choices is None:
            raise ValueError(f"column {self.key}: a choice column needs `choices`")
        self.field = self.field or self.key
        self.css = ("num" if self.numeric else "") + (" wrap" if self.wrap else "")  # the cells' class
        self._path = tuple(self.field.split("."))
        self._choice_texts: dict[str, dict[Any, str]] = {}
        self._td = f'<td class="{escape(self.css)}">'
        self._value_request = bool(self.value) and _accepts_request(self.value)
        self._link_request = bool(self.link) and _accepts_request(self.link)

    @property
    def numeric(self) -> bool:
        return self.format in NUMERIC_FORMATS

    @property
    def order_field(self) -> str | None:
        if not self.sort:
            return None
        return self.sort if isinstance(self.sort, str) else self.field.replace(".", "__")

    def raw(self, row: Any, request: Request) -> Any:
        if self.value is not None:
            return _call(self.value, self._value_request, row, request)
        return _attr_path(row, self._path)

    def url(self, row: Any, request: Request) -> str | None:
        return _call(self.link, self._link_request, row, request) if self.link else None

    def text(self, raw: Any, tz: str) -> str:
        """The value as the user sees it (also what the export writes)."""
        if raw is None or raw == "":
            return ""
        if self.format == "money":
            return i18n.format_money(raw)
        if self.format == "number":
            return i18n.format_number(raw, self.digits)
        if self.format == "datetime":
            return i18n.format_datetime(raw, tz)
        if self.format == "date":
            return i18n.format_date(raw, tz)
        if self.format == "choice":
            # Labels are lazy translations: resolved once per language, not once per cell.
            texts = self._choice_texts.get(locale := i18n.get_locale())
            if texts is None:
                texts = self._choice_texts[locale] = {key: str(label) for key, label in self.choices.items()}
            return texts[raw] if raw in texts else str(raw)
        if self.format == "boolean":
            return gettext("Yes") if raw else gettext("No")
        if isinstance(raw, (list, tuple, set)):
            return ", ".join(str(item) for item in raw if item not in (None, ""))
        return str(raw)

    def sheet_value(self, raw: Any, tz: str) -> Any:
        """Numbers stay numbers in a spreadsheet (so they add up); everything else is the shown text."""
        if self.numeric and isinstance(raw, (int, Decimal, float)) and not isinstance(raw, bool):
            return raw
        return self.text(raw, tz)


# Filters ---------------------------------------------------------------------


def _field_is_datetime(model: type[Model], path: str) -> bool:
    """Whether an ORM path ("created_at", "customer__created_at") ends at a datetime column."""
    parts = path.split("__")
    for part in parts[:-1]:
        field = model._meta.fields_map.get(part)
        if field is None or not getattr(field, "related_model", None):
            return False
        model = field.related_model
    return isinstance(model._meta.fields_map.get(parts[-1]), orm_fields.DatetimeField)


@dataclasses.dataclass
class Filter:
    """A filter of a list; its value comes from the query string.

    Build with `Filter.choice`, `Filter.date_range` or `Filter.boolean`.
    field: the ORM path filtered on (default: the name). `apply(queryset, value)`
    filters differently (e.g. with a subquery); value is the chosen string for a
    choice, True/False for a boolean, (start, end) dates for a date range.
    `apply(queryset, value, request)` also gets the request (e.g. for the
    estate's today in "overdue" filters).
    """

    name: str
    label: Any
    kind: str = "choice"
    field: str | None = None
    choices: Mapping[Any, Any] | Sequence[tuple[Any, Any]] | Callable[..., Any] | None = None
    apply: Callable[[QuerySet, Any], QuerySet] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("choice", "date_range", "boolean"):
            raise ValueError(f"filter {self.name}: unknown kind {self.kind!r}")
        if self.kind == "choice" and self.choices is None:
            raise ValueError(f"filter {self.name}: a choice filter needs `choices`")
        self.field = self.field or self.name

    @classmethod
    def choice(cls, name: str, label: Any, choices, *, field: str | None = None, apply=None) -> "Filter":
        """choices: a dict or (value, label) pairs, or `choices(request)` returning (an awaitable of) them."""
        return cls(name, label, "choice", field, choices, apply)

    @classmethod
    def date_range(cls, name: str, label: Any, *, field: str | None = None, apply=None) -> "Filter":
        """Two date boxes, `<name>_from` and `<name>_to`, both inclusive, in the project's time zone."""
        return cls(name, label, "date_range", field, None, apply)

    @classmethod
    def boolean(cls, name: str, label: Any, *, field: str | None = None, apply=None) -> "Filter":
        return cls(name, label, "boolean", field, None, apply)

    @property
    def keys(self) -> tuple[str, ...]:
        return (f"{self.name}_from", f"{self.name}_to") if self.kind == "date_range" else (self.name,)

    async def options(self, request: Request) -> list[tuple[str, str]]:
        """The choices as (value, label) strings. Choices that a callable reads (from the database) are
        read once per request: the page that also shows them elsewhere (a form) gets the same list."""
        if self.kind == "boolean":
            return [("1", gettext("Yes")), ("0", gettext("No"))]
        choices = self.choices
        if not callable(choices):
            items = choices.items() if isinstance(choices, Mapping) else choices
            return [(str(value), str(label)) for value, label in items]
        memo = request.scope.setdefault("courtyard.filter_options", {})
        if id(self) not in memo:
            choices = choices(request)
            if inspect.isawaitable(choices):
                choices = await choices
            items = choices.items() if isinstance(choices, Mapping) else choices
            memo[id(self)] = [(str(value), str(label)) for value, label in items]
        return list(memo[id(self)])


@dataclasses.dataclass
class FilterState:
    """A filter as this request uses it: the raw values, options and error shown in the toolbar."""

    filter: Filter
    values: dict[str, str]
    options: list[tuple[str, str]]
    error: str | None = None
    parsed: Any = None

    @property
    def active(self) -> bool:
        return self.error is None and self.parsed is not None

    @property
    def value(self) -> str:
        return self.values.get(self.filter.name, "")


def _parse_date(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


async def _filter_state(flt: Filter, request: Request) -> FilterState:
    values = {key: request.query_params.get(key, "").strip() for key in flt.keys}
    options = await flt.options(request) if flt.kind != "date_range" else []
    state = FilterState(flt, values, options)
    if flt.kind == "date_range":
        try:
            start, end = _parse_date(values[flt.keys[0]]), _parse_date(values[flt.keys[1]])
        except ValueError:
            state.error = gettext("Enter dates as YYYY-MM-DD.")
            return state
        if start and end and start > end:
            state.error = gettext("The start date is after the end date.")
        elif start or end:
            state.parsed = (start, end)
        return state
    value = values[flt.name]
    if not value:
        return state
    if value not in dict(options):
        state.error = gettext("Choose one of the listed options.")
    else:
        state.parsed = (value == "1") if flt.kind == "boolean" else value
    return state


def _apply_filter(queryset: QuerySet, state: FilterState, tz: str, request: Request | None = None) -> QuerySet:
    flt = state.filter
    if flt.apply is not None:
        if _accepts_request(flt.apply, 3):
            return flt.apply(queryset, state.parsed, request)
        return flt.apply(queryset, state.parsed)
    if flt.kind != "date_range":
        return queryset.filter(**{flt.field: state.parsed})
    start, end = state.parsed
    if _field_is_datetime(queryset.model, flt.field):
        # Whole local days of the project: from its midnight to the next midnight.
        zone = ZoneInfo(tz)
        if start:
            queryset = queryset.filter(
                **{f"{flt.field}__gte": datetime.combine(start, time(), zone).astimezone(timezone.utc)}
            )
        if end:
            next_day = datetime.combine(end + timedelta(days=1), time(), zone).astimezone(timezone.utc)
            queryset = queryset.filter(**{f"{flt.field}__lt": next_day})
        return queryset
    if start:
        queryset = queryset.filter(**{f"{flt.field}__gte": start})
    if end:
        queryset = queryset.filter(**{f"{flt.field}__lte": end})
    return queryset


# One page of a list ----------------------------------------------------------------


@dataclasses.dataclass
class Cell:
    column: Column
    raw: Any
    text: str
    url: str | None

    @property
    def html(self) -> Markup:
        """The cell's content as shown (a link when it has a URL)."""
        return Markup(_cell_html(self.text, self.url))


def _cell_html(text: str, url: str | None) -> str:
    # Built here rather than in the template: a page has hundreds of cells, and each
    # template lookup, or Markup's %-formatting, costs more than these concatenations.
    if url and text:
        return f'<a href="{escape(url)}">{escape(text)}</a>'
    return f"{escape(text)}"  # a plain str: adding str to Markup would escape the str


@dataclasses.dataclass
class Row:
    obj: Any
    cells: list[Cell]
    html: Markup | None = None  # every <td> of the row, when no column renders a template


@dataclasses.dataclass
class ListPage:
    """What `core/_list.html` renders (available to templates as `listing`)."""

    view: "ListView"
    request: Request
    q: str
    filters: list[FilterState]
    sort: str
    per: int
    page: int
    total: int
    rows: list[Row] = dataclasses.field(default_factory=list)

    @property
    def title(self) -> str:
        return str(self.view.title)

    @property
    def id(self) -> str:
        return f"list-{self.view.name}"

    @property
    def columns(self) -> list[Column]:
        return self.view.columns

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per))

    @property
    def first_index(self) -> int:
        return (self.page - 1) * self.per + 1 if self.total else 0

    @property
    def last_index(self) -> int:
        return min(self.page * self.per, self.total)

    @property
    def errors(self) -> dict[str, str]:
        return {state.filter.name: state.error for state in self.filters if state.error}

    @property
    def filtered(self) -> bool:
        return bool(self.q) or any(state.active for state in self.filters)

    def params(self) -> dict[str, str]:
        """The list's state as query parameters (only the ones that differ from the defaults)."""
        params: dict[str, str] = {}
        if self.q:
            params["q"] = self.q
        for state in self.filters:
            params.update({key: value for key, value in state.values.items() if value})
        if self.sort and self.sort != self.view.default_sort:
            params["sort"] = self.sort
        if self.per != self.view.per_page:
            params["per"] = str(self.per)
        if self.page > 1:
            params["page"] = str(self.page)
        return params

    def url(self, **changes: Any) -> str:
        """This list's URL with some parameters changed (None removes one)."""
        params = self.params()
        for key, value in changes.items():
            if value is None or value == "":
                params.pop(key, None)
            else:
                params[key] = str(value)
        query = urlencode(params)
        return self.request.url.path + (f"?{query}" if query else "")

    def sort_state(self, column: Column) -> str:
        """"asc", "desc" or "" for a column header."""
        if self.sort == column.key:
            return "asc"
        if self.sort == f"-{column.key}":
            return "desc"
        return ""

    def sort_url(self, column: Column) -> str:
        target = f"-{column.key}" if self.sort == column.key else column.key
        return self.url(sort=target, page=None)

    def page_url(self, number: int) -> str:
        return self.url(page=number if number > 1 else None)

    def export_url(self, kind: str) -> str:
        return self.url(export=kind, page=None)

    def page_numbers(self) -> list[int | None]:
        """Page links to show: the first, the last, and two around the current one (None = gap)."""
        shown = sorted({1, self.pages, *range(max(1, self.page - 2), min(self.pages, self.page + 2) + 1)})
        numbers: list[int | None] = []
        for number in shown:
            if numbers and number - numbers[-1] > 1:
                numbers.append(None)
            numbers.append(number)
        return numbers


# The list ------------------------------------------------------------------------


def _timezone(request: Request) -> str:
    from core.web import ctx

    project = ctx(request).project
    return project.timezone if project else request.app.state.settings["i18n"]["default_timezone"]


_TOTAL = "courtyard_list_total"


def _counts_inline(queryset: QuerySet) -> bool:
    """Whether the list's count can ride along with its rows as a scalar subquery.

    Not for grouped or annotated lists (their count is one row per group) nor for a base query that is
    itself limited (Tortoise applies limit and offset to a count in Python).
    """
    return not (queryset._annotations or queryset._group_bys or queryset._limit is not None or queryset._offset)


class ListView:
    """A declared list page. Safe to share between requests: all request state lives in `ListPage`.

    name: short ASCII name (URL-safe): the htmx target id and the export file name.
    model / query: the rows; `query(request)` returns a QuerySet when the base set
        depends on the request. Scoping to the user's estates is automatic.
    search: ORM paths matched with "contains" (case-insensitive) by the search box;
        `search_q(text)` returns an extra `Q` (or None) OR-ed with them, for smarter
        matching (pinyin, phone numbers: see `core.customers.customer_search_q`).
    select_related / prefetch_related: relations the columns read, fetched with
        the page instead of one query per row. A prefetch entry may be a
        callable returning a `Prefetch`, evaluated per request.
    default_sort: a column key, "-key" for descending.
    """

    def __init__(
        self,
        name: str,
        title: Any,
        *,
        columns: Sequence[Column],
        model: type[Model] | None = None,
        query: Callable[[Request], QuerySet] | None = None,
        filters: Sequence[Filter] = (),
        search: Sequence[str] = (),
        search_q: Callable[[str], Q | None] | None = None,
        search_placeholder: Any = None,
        select_related: Sequence[str] = (),
        prefetch_related: Sequence[Any] = (),
        default_sort: str | None = None,
        page_sizes: Sequence[int] = (25, 50, 100, 200),
        per_page: int | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
            raise ValueError(f"list name {name!r}: use lowercase letters, digits, '-' and '_'")
        if model is None and query is None:
            raise ValueError(f"list {name}: give `model` or `query`")
        self.name = name
        self.title = title
        self.columns = list(columns)
        self.model = model
        self.query = query
        self.filters = list(filters)
        self.search = list(search)
        self.search_q = search_q
        self.search_placeholder = search_placeholder
        self.select_related = list(select_related)
        self.prefetch_related = list(prefetch_related)
        self.page_sizes = list(page_sizes)
        self.per_page = per_page or self.page_sizes[0]
        self.sortable = {c.key: c.order_field for c in self.columns if c.order_field}
        if default_sort and default_sort.lstrip("-") not in self.sortable:
            raise ValueError(f"list {name}: default_sort {default_sort!r} is not a sortable column")
        self.default_sort = default_sort or ""

    async def options(self, request: Request, name: str) -> list[tuple[str, str]]:
        """The (value, label) choices of the filter `name` for this request, read once per request:
        a page that shows them in its own form too asks here instead of reading them again."""
        for flt in self.filters:
            if flt.name == name:
                return await flt.options(request)
        raise KeyError(f"list {self.name}: no filter {name!r}")

    @property
    def searchable(self) -> bool:
        return bool(self.search or self.search_q)

    @property
    def _templated(self) -> bool:
        return any(column.template for column in self.columns)

    def base_query(self, request: Request) -> QuerySet:
        return self.query(request) if self.query else self.model.all()

    def _search(self, queryset: QuerySet, text: str) -> QuerySet:
        conditions = [Q(**{f"{path}__icontains": text}) for path in self.search]
        if self.search_q is not None:
            extra = self.search_q(text)
            if extra is not None:
                conditions.append(extra)
        if not conditions:
            return queryset
        return queryset.filter(Q(*conditions, join_type="OR"))

    def _ordering(self, sort: str) -> list[str]:
        key = sort.lstrip("-")
        if key not in self.sortable:
            return ["id"]
        prefix = "-" if sort.startswith("-") else ""
        # id breaks ties, so paging through equal values neither repeats nor skips rows
        return [prefix + self.sortable[key], prefix + "id"]

    def _with_relations(self, queryset: QuerySet) -> QuerySet:
        if self.select_related:
            queryset = queryset.select_related(*self.select_related)
        if self.prefetch_related:
            queryset = queryset.prefetch_related(
                *[item() if callable(item) else item for item in self.prefetch_related]
            )
        return queryset

    async def _filtered(self, request: Request) -> tuple[QuerySet, str, list[FilterState], str]:
        """The filtered, sorted query for this request and the state the toolbar shows."""
        tz = _timezone(request)
        queryset = self.base_query(request)
        q = request.query_params.get("q", "").strip()[:100]
        if q and self.searchable:
            queryset = self._search(queryset, q)
        states = [await _filter_state(flt, request) for flt in self.filters]
        for state in states:
            if state.active:
                queryset = _apply_filter(queryset, state, tz, request)
        sort = request.query_params.get("sort", "") or self.default_sort
        if sort.lstrip("-") not in self.sortable:
            sort = self.default_sort
        return queryset, q, states, sort

    def _row(self, obj: Any, request: Request, tz: str) -> Row:
        cells = []
        for column in self.columns:
            raw = column.raw(obj, request)
            cells.append(Cell(column, raw, column.text(raw, tz), column.url(obj, request)))
        row = Row(obj, cells)
        if not self._templated:
            row.html = Markup("".join(
                cell.column._td + _cell_html(cell.text, cell.url) + "</td>" for cell in cells
            ))
        return row

    async def page(self, request: Request) -> ListPage:
        """One page of the list for this request."""
        queryset, q, states, sort = await self._filtered(request)
        try:
            per = int(request.query_params.get("per", ""))
        except ValueError:
            per = self.per_page
        if per not in self.page_sizes:
            per = self.per_page
        try:
            number = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            number = 1
        ordered = self._with_relations(queryset.order_by(*self._ordering(sort)))
        objs = None
        if _counts_inline(queryset):
            # The total comes with the rows (a subquery the database runs once): one statement, not two.
            objs = await ordered.annotate(**{_TOTAL: Subquery(queryset.count())}).offset((number - 1) * per).limit(per)
            if objs:
                total = getattr(objs[0], _TOTAL)
            elif number == 1:
                total = 0
            else:
                objs = None  # a page past the end: count, then show the last page
        if objs is None:
            total = await queryset.count()
            number = min(number, max(1, -(-total // per)))
            objs = await ordered.offset((number - 1) * per).limit(per)
        listing = ListPage(self, request, q, states, sort, per, number, total)
        tz = _timezone(request)
        listing.rows = [self._row(obj, request, tz) for obj in objs]
        return listing

    async def response(
        self,
        request: Request,
        template: str = "core/list_page.html",
        context: dict[str, Any] | None = None,
        *,
        actions: Iterable[tuple[Any, str]] = (),
    ) -> Response:
        """The list page (the `list` block only for htmx), or the export when `export=xlsx|csv`.

        template: a page that extends core/base.html and has
            `{% block list %}{% include "core/_list.html" %}{% endblock %}`;
            the default shows the title, `actions` ((label, url) buttons) and the list.
        """
        from core.templating import render

        kind = request.query_params.get("export", "")
        if kind in EXPORT_FORMATS:
            return await self.export(request, kind)
        listing = await self.page(request)
        data = {"listing": listing, "actions": list(actions), **(context or {})}
        return await render(request, template, data, block="list", status_code=422 if listing.errors else 200)

    # Export -------------------------------------------------------------------

    async def rows_for_export(self, request: Request):
        """Every row of the current filtered, sorted list, in batches (constant memory)."""
        queryset, _q, states, sort = await self._filtered(request)
        ordered = self._with_relations(queryset.order_by(*self._ordering(sort)))
        offset = 0
        while True:
            batch = await ordered.offset(offset).limit(EXPORT_BATCH)
            if not batch:
                return
            yield batch
            if len(batch) < EXPORT_BATCH:
                return
            offset += EXPORT_BATCH

    def _export_columns(self) -> list[Column]:
        return [c for c in self.columns if c.export]

    async def export(self, request: Request, kind: str) -> Response:
        columns = self._export_columns()
        tz = _timezone(request)
        spool = tempfile.TemporaryFile()
        if kind == "xlsx":
            await self._write_xlsx(spool, columns, request, tz)
            media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        else:
            await self._write_csv(spool, columns, request, tz)
            media = "text/csv; charset=utf-8"
        spool.seek(0)
        today = i18n.local_today(tz).isoformat()  # the estate's date, on core's clock
        filename = f"{self.name}-{today}.{kind}"
        title = f"{self.title}-{today}.{kind}"
        disposition = f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(title)}"
        return StreamingResponse(
            iter(lambda: spool.read(64 * 1024), b""),
            media_type=media,
            headers={"Content-Disposition": disposition},
            background=BackgroundTask(spool.close),
        )

    async def _write_xlsx(self, out, columns: list[Column], request: Request, tz: str) -> None:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.styles import Font

        book = Workbook(write_only=True)  # rows go straight to disk: memory stays flat for any length
        sheet = book.create_sheet(re.sub(r"[\[\]:*?/\\]", " ", str(self.title))[:31] or self.name)
        bold = Font(bold=True)
        header = []
        for column in columns:
            cell = WriteOnlyCell(sheet, value=str(column.label))
            cell.font = bold
            header.append(cell)
        sheet.append(header)
        async for batch in self.rows_for_export(request):
            for obj in batch:
                values = []
                for column in columns:
                    value = column.sheet_value(column.raw(obj, request), tz)
                    cell = WriteOnlyCell(sheet, value=value)
                    if isinstance(value, str) and value.startswith("="):
                        cell.data_type = "s"  # text, never a formula someone typed into a name
                    elif column.format == "money":
                        cell.number_format = "#,##0.00"
                    values.append(cell)
                sheet.append(values)
        await asyncio.to_thread(book.save, out)

    async def _write_csv(self, out, columns: list[Column], request: Request, tz: str) -> None:
        text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=True)
        writer = csv.writer(text)
        writer.writerow([str(column.label) for column in columns])
        async for batch in self.rows_for_export(request):
            writer.writerows([[_csv_value(column, column.raw(obj, request), tz) for column in columns] for obj in batch])
        text.flush()
        text.detach()  # keep the spooled file open for the response


def _csv_value(column: Column, raw: Any, tz: str) -> str:
    value = column.sheet_value(raw, tz)
    if isinstance(value, Decimal):
        return format(value, "f")
    value = str(value)
    # Excel runs cells starting with these as formulas: keep them text.
    if value[:1] in ("=", "@") or (value[:1] in ("+", "-") and not re.fullmatch(r"[+-][\d.,]+", value)):
        return "'" + value
    return value
