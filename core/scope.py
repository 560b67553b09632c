"""Project scoping: the one mechanism that keeps estates apart.

Every request (and every per-project job run) sets a `Scope`: the set of
project ids whose data may be read or written. Models derived from
`ProjectScopedModel` use `ScopedManager`, so `Model.filter(...)`,
`Model.get(...)`, `.update()` and `.delete()` only ever see rows of those
projects, and saving a row of another project raises `OutOfScope`. Views and
plugins therefore cannot forget the filter: they never write it.

Outside any scope (CLI, migrations, start-up) queries are unrestricted. Code
that must cross the fence on purpose (a signed public link, the login page)
says so with `with unscoped():`.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Iterable, Iterator

from tortoise import fields
from tortoise.manager import Manager
from tortoise.models import Model
from tortoise.queryset import QuerySet


class OutOfScope(LookupError):
    """A write or lookup touched a project outside the current scope (answered as 404)."""


@dataclass(frozen=True)
class Scope:
    project_ids: frozenset[int] | None
    """None means every project (system work); an empty set means none."""

    def allows(self, project_id: int | None) -> bool:
        return self.project_ids is None or project_id in self.project_ids

    @classmethod
    def of(cls, project_ids: Iterable[int]) -> "Scope":
        return cls(frozenset(project_ids))


EVERYTHING = Scope(None)
NOTHING = Scope(frozenset())

_current: ContextVar[Scope | None] = ContextVar("courtyard_scope", default=None)


def current_scope() -> Scope:
    return _current.get() or EVERYTHING


@contextlib.contextmanager
def use_scope(scope: Scope) -> Iterator[Scope]:
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


def unscoped():
    """Lift the project filter for a block: only after checking access another way."""
    return use_scope(EVERYTHING)


def set_scope(scope: Scope) -> None:
    """Set the scope for the rest of the current task (the request middleware uses this)."""
    _current.set(scope)


class ScopedManager(Manager):
    """Default manager of project-scoped models: filters every query by the current scope."""

    def __init__(self, field: str = "project_id", model=None) -> None:
        super().__init__(model)
        self.field = field

    def get_queryset(self) -> QuerySet:
        queryset = getattr(self._model, "queryset_class", QuerySet)(self._model)
        ids = current_scope().project_ids
        if ids is not None:
            queryset = queryset.filter(**{f"{self.field}__in": sorted(ids)})
        return queryset


class _Manager(Manager):
    """The manager of an unscoped model with its own `queryset_class` (e.g. `core.models.ChangeTracked`)."""

    def get_queryset(self) -> QuerySet:
        return self._model.queryset_class(self._model)


def install_scoped_managers(models: Iterable[type[Model]]) -> None:
    """Give every concrete project-scoped model the scoped manager, and a model that declares a
    `queryset_class` a manager that uses it.

    Done once after Tortoise has registered the models, because a model's own
    `Meta` does not inherit the abstract base's manager.
    """
    for model in models:
        if model._meta.abstract:
            continue
        if issubclass(model, ProjectScopedModel):
            model._meta.manager = ScopedManager(model=model)
        elif hasattr(model, "queryset_class"):
            model._meta.manager = _Manager(model=model)


class ProjectScopedModel(Model):
    """Base for every record that belongs to one project (estate)."""

    project = fields.ForeignKeyField("core.Project", related_name=False, on_delete=fields.RESTRICT)

    class Meta:
        abstract = True

    async def save(self, *args, **kwargs) -> None:
        if not current_scope().allows(self.project_id):
            raise OutOfScope(f"{type(self).__name__} of project {self.project_id} is out of scope")
        await super().save(*args, **kwargs)

    async def delete(self, *args, **kwargs) -> None:
        if not current_scope().allows(self.project_id):
            raise OutOfScope(f"{type(self).__name__} of project {self.project_id} is out of scope")
        await super().delete(*args, **kwargs)
