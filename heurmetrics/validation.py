"""Value rules for everything ingested, written once and shared by the SDK and the HTTP API.

Every check raises :class:`~heurmetrics.errors.InvalidEvent` naming the field. The checks are
cheap on purpose: ``check_execution`` runs on the SDK hot path.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any, Final

from heurmetrics.canonical import canonical_json
from heurmetrics.errors import InvalidEvent
from heurmetrics.metrics import definitions as d

_LABEL_RE: Final = re.compile(d.LABEL_VALUE_PATTERN)
_STATUSES: Final = frozenset(d.EXECUTION_STATUSES)
_MODES: Final = frozenset(d.EXECUTION_MODES)
#: Events may be stamped at most this far in the future (clock skew allowance).
MAX_FUTURE_SKEW_SECONDS: Final = 300.0
#: Nothing before 2000-01-01 is a plausible execution or bar time.
MIN_TIMESTAMP: Final = 946_684_800.0
#: Longest execution accepted: a rule that runs for more than a day is a bug, not a measurement.
MAX_EXECUTION_SECONDS: Final = 86_400.0
#: Largest rule source accepted (1 MB of text).
MAX_SOURCE_LENGTH: Final = 1_000_000
#: A name without its anchors, to build composite patterns (``rule@version``).
NAME_BODY: Final = d.LABEL_VALUE_PATTERN.removeprefix("^").removesuffix("$")
#: Free text: anything but NUL (PostgreSQL text cannot hold it). The same regex in Python, in
#: pydantic-core (the HTTP API) and in JSON Schema (ECMA 262).
NO_NUL_PATTERN: Final = r"^[^\x00]*$"
#: Free text that says something: at least one character that is neither NUL nor ASCII
#: whitespace. Spelled out instead of ``\s``, whose meaning differs between regex dialects.
NON_BLANK_PATTERN: Final = r"^[^\x00]*[^\x00\t\n\v\f\r ][^\x00]*$"
_ASCII_WHITESPACE: Final = "\t\n\v\f\r "
#: Label values already validated: the set is bounded by the cardinality of valid labels.
_valid_labels: set[str] = set()


def check_label_value(field: str, value: object) -> str:
    """A value that becomes a Prometheus label: bounded alphabet and length (no injection)."""
    if value in _valid_labels:
        return value
    if not isinstance(value, str):
        raise InvalidEvent(field, f"must be a string, got {type(value).__name__}")
    if not _LABEL_RE.fullmatch(value):  # fullmatch: Python's $ would let a trailing newline in
        raise InvalidEvent(
            field,
            f"{value[:80]!r} is not a valid name: 1-{d.LABEL_VALUE_MAX_LENGTH} characters of "
            "letters, digits and _ . : + - , starting with a letter or digit",
        )
    if len(_valid_labels) < 100_000:
        _valid_labels.add(value)
    return value


def check_finite(field: str, value: object, *, low: float | None = None, high: float | None = None) -> float:
    """A finite number, optionally within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(field, f"must be a number, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:
        raise InvalidEvent(field, "is too large to be a number") from None
    if not math.isfinite(v):
        raise InvalidEvent(field, f"must be finite, got {value!r}")
    if low is not None and v < low:
        raise InvalidEvent(field, f"must be >= {low}, got {value!r}")
    if high is not None and v > high:
        raise InvalidEvent(field, f"must be <= {high}, got {value!r}")
    return v


def check_timestamp(field: str, epoch_seconds: float, *, now: float | None = None) -> float:
    """A plausible event time: after 2000 and not more than five minutes in the future."""
    now = time.time() if now is None else now
    if not math.isfinite(epoch_seconds) or epoch_seconds < MIN_TIMESTAMP:
        raise InvalidEvent(field, f"{epoch_seconds!r} is before 2000-01-01 or not a time")
    if epoch_seconds > now + MAX_FUTURE_SKEW_SECONDS:
        raise InvalidEvent(
            field, f"is {epoch_seconds - now:.0f} s in the future (at most {MAX_FUTURE_SKEW_SECONDS:.0f} s allowed)"
        )
    return epoch_seconds


def check_execution(
    *,
    status: str,
    mode: str,
    duration_seconds: float,
    outcome: str | None,
    signal: float | None,
    confidence: float | None,
    error_type: str | None,
) -> None:
    """All value rules of one execution (``heuristic.execution``)."""
    check_execution_values(status, mode, duration_seconds, outcome, signal, confidence, error_type)


def check_execution_values(
    status: str,
    mode: str,
    duration_seconds: float,
    outcome: str | None,
    signal: float | None,
    confidence: float | None,
    error_type: str | None,
) -> None:
    """:func:`check_execution` with positional arguments (the hot path: no keyword binding)."""
    if status not in _STATUSES:
        raise InvalidEvent("status", f"{status!r} is not one of {', '.join(d.EXECUTION_STATUSES)}")
    if mode not in _MODES:
        raise InvalidEvent("mode", f"{mode!r} is not one of {', '.join(d.EXECUTION_MODES)}")
    if duration_seconds.__class__ is not float or not 0.0 <= duration_seconds <= MAX_EXECUTION_SECONDS:
        check_finite("duration_seconds", duration_seconds, low=0.0, high=MAX_EXECUTION_SECONDS)
    if outcome is not None:
        check_label_value("outcome", outcome)
    if signal is not None and (signal.__class__ is not float or not -math.inf < signal < math.inf):
        check_finite("signal", signal)
    if confidence is not None and (confidence.__class__ is not float or not 0.0 <= confidence <= 1.0):
        check_finite("confidence", confidence, low=0.0, high=1.0)
    if error_type is not None:
        check_text("error_type", error_type, 128)


def check_text(field: str, value: object, max_length: int) -> str:
    """A free-text value: a string of bounded length without NUL (Postgres text cannot hold it)."""
    if not isinstance(value, str):
        raise InvalidEvent(field, f"must be a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise InvalidEvent(field, f"is {len(value)} characters long; at most {max_length} allowed")
    if "\x00" in value:
        raise InvalidEvent(field, "must not contain NUL characters")
    if not value.isascii() and not _is_utf8_encodable(value):
        raise InvalidEvent(field, "must be valid Unicode text (a lone surrogate cannot be stored)")
    return value


def check_non_blank(field: str, value: object, max_length: int, what: str) -> str:
    """Free text (see :func:`check_text`) that is not only ASCII whitespace, stripped of it."""
    text = check_text(field, value, max_length)
    stripped = text.strip(_ASCII_WHITESPACE)  # NON_BLANK_PATTERN without its backtracking
    if not stripped:
        raise InvalidEvent(field, f"must {what} (a non-empty string)")
    return stripped


def _is_utf8_encodable(text: str) -> bool:
    """False for strings with lone surrogates (e.g. from a bad decode): no database can store them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_json_object(field: str, value: object) -> dict[str, Any]:
    """A JSON object a store can hold everywhere: no NaN/inf, no NUL characters."""
    if not isinstance(value, dict):
        raise InvalidEvent(field, f"must be a JSON object, got {type(value).__name__}")
    try:
        text = canonical_json(value)
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(field, f"must be JSON-serialisable without NaN/inf: {exc}") from None
    except RecursionError:
        raise InvalidEvent(field, "is nested too deeply") from None
    if "\\u0000" in text:
        raise InvalidEvent(field, "must not contain NUL characters")
    if not text.isascii() and not _is_utf8_encodable(text):
        raise InvalidEvent(field, "must be valid Unicode text (a lone surrogate cannot be stored)")
    return value
