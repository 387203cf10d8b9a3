"""Small integer codes for an execution's ``status`` and ``mode`` (leaner rows, same Python values).

``heuristic_executions`` and ``execution_rollups`` store ``status`` and ``mode`` as ``smallint``
(2 bytes instead of a text value with its length header). The codes are fixed here, never derived
from the order of :mod:`heurmetrics.metrics.definitions` (reordering a tuple there must not remap
stored history); a test checks both name the same values. The lookup tables ``execution_statuses``
and ``execution_modes`` carry the same mapping for SQL readers (Grafana, auditors).

:class:`CodeType` makes the ORM speak names: ``ExecutionRow.status == "ok"`` binds ``1`` and a
selected ``status`` comes back as ``"ok"``.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import SmallInteger, TypeDecorator
from sqlalchemy.engine import Dialect

STATUS_CODES: Final[dict[str, int]] = {"ok": 1, "error": 2, "timeout": 3}
MODE_CODES: Final[dict[str, int]] = {"live": 1, "paper": 2, "backtest": 3}
STATUS_NAMES: Final[dict[int, str]] = {code: name for name, code in STATUS_CODES.items()}
MODE_NAMES: Final[dict[int, str]] = {code: name for name, code in MODE_CODES.items()}


class CodeType(TypeDecorator[str]):
    """A name stored as its ``smallint`` code (unknown names are refused, never stored as NULL)."""

    impl = SmallInteger
    cache_ok = True

    def __init__(self, codes: dict[str, int]) -> None:
        super().__init__()
        # The statement cache keys types on their __init__ arguments' attributes: keep it hashable.
        self.codes = tuple(sorted(codes.items()))
        self._to_code = dict(codes)
        self._to_name = {code: name for name, code in codes.items()}

    def process_bind_param(self, value: str | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        try:
            return self._to_code[value]
        except KeyError:
            raise ValueError(f"unknown value {value!r}: expected one of {sorted(self._to_code)}") from None

    def process_result_value(self, value: int | None, dialect: Dialect) -> str | None:
        return None if value is None else self._to_name[value]
