"""The error of a plan that cannot be loaded: a message, where (file, line, column, key path) and a hint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .model import Location


class PlanError(Exception):
    """A plan that cannot be loaded, with where and how to fix it."""

    def __init__(self, message: str, file: Path | str, line: int | None = None, column: int | None = None,
                 keypath: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = Location(Path(file), line, column, keypath)
        self.hint = hint

    def __str__(self) -> str:
        where = str(self.location.file)
        if self.location.line is not None:
            where += f":{self.location.line}"
            if self.location.column is not None:
                where += f":{self.location.column}"
        text = f"{where}: "
        if self.location.keypath:
            text += f"{self.location.keypath}: "
        text += self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.location.file), "line": self.location.line, "column": self.location.column,
            "keypath": self.location.keypath, "message": self.message, "hint": self.hint,
        }
