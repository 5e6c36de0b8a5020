"""The WHERE clause of a filtered listing, built one filter at a time: a filter that is not given (None or
"") adds nothing, so a listing writes each of its criteria once instead of an ``if value:`` per column."""
from __future__ import annotations


def given(value: object) -> bool:
    return value is not None and value != ""


class Where:
    """Conditions joined with AND, and their parameters in the order of the placeholders."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.params: list[object] = []

    def add(self, condition: str, *params: object) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    def when(self, condition: str, value: object) -> None:
        """``condition`` (with one ``?``) bound to ``value``, if the value is given."""
        if given(value):
            self.add(condition, value)

    def equal(self, *columns: tuple[str, object]) -> None:
        """``column = ?`` for each (column, value) whose value is given."""
        for column, value in columns:
            self.when(f"{column} = ?", value)

    @property
    def joined(self) -> str:
        return " AND ".join(self.conditions)

    @property
    def clause(self) -> str:
        """`` WHERE ...`` (with its leading space), or "" without conditions."""
        return f" WHERE {self.joined}" if self.conditions else ""
