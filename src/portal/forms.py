"""One form shape for every POST handler (see `Form`), and one result shape for every
service call that answers a form (see `Result`). No HTTP objects here: a form is read
from anything with an async `form()` (the request), and services take forms as data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self


class Form:
    """A posted form, parsed once: each field trimmed (passwords kept exactly as typed),
    checkboxes as True/False, `values` to show again after a failed submit (never a
    password) and `errors` by field name for the templates' alerts.

    A form lists its fields; a handler reads it with `await SomeForm.read(request)` and
    passes `form` to a service, which fills `form.errors` or does the work."""

    fields: ClassVar[tuple[str, ...]] = ()
    passwords: ClassVar[tuple[str, ...]] = ()
    checkboxes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        data = data or {}
        answers: dict[str, Any] = {name: data.get(name, "").strip() for name in self.fields}
        answers.update({name: data.get(name, "") for name in self.passwords})
        answers.update({name: name in data for name in self.checkboxes})
        self.__dict__["data"] = answers
        self.errors: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["data"][name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    async def read(cls, request: Any) -> Self:
        form = await request.form()
        data: dict[str, str] = {}
        for key, value in form.multi_items():  # a repeated field keeps its first value
            if isinstance(value, str) and key not in data:
                data[key] = value
        return cls(data)

    @property
    def values(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k not in self.passwords}

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class Result:
    """What a service did. `outcome` is "ok" or names what stopped it ("invalid",
    "locked", "expired" ...); `errors` are messages by field name for a form's alerts;
    `value` is what the caller needs next (a session id, a checkout URL ...)."""

    outcome: str = "ok"
    errors: dict[str, str] = field(default_factory=dict)
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @classmethod
    def invalid(cls, errors: Mapping[str, str]) -> Result:
        return cls("invalid", dict(errors))
