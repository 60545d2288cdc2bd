"""Values: text typed by a user -> the BSON value to compare with (:func:`coerce_value`,
:func:`parse_datetime`), and the relaxed Extended JSON and date text every query module writes
(URL parameters, cursors, export lines)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timezone
from typing import Any

import bson
from bson import json_util

from .errors import QueryError

UTC = timezone.utc

_INT_RE = re.compile(r"^[+-]?\d+$")
_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.I)
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_datetime(text: str | date | datetime) -> datetime:
    """ISO 8601 text (``Z`` allowed, date-only allowed) -> aware UTC datetime (ms precision)."""
    if isinstance(text, datetime):
        dt = text
    elif isinstance(text, date):
        dt = datetime.combine(text, time(), UTC)
    else:
        s = str(text).strip()
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise QueryError(f"not an ISO date/time: {text!r}") from None
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def _int_or_decimal(text: str) -> Any:
    """An integer's text -> int, or Decimal128 beyond 64 bits (QueryError beyond 34 digits)."""
    try:
        n = int(text)
        return n if -(2**63) <= n < 2**63 else bson.Decimal128(str(n))
    except (ValueError, ArithmeticError):  # too many digits for int() or for a decimal
        raise QueryError(f"{text.strip()[:40]!r} has more digits than a BSON decimal holds "
                         "(34)") from None


def coerce_value(text: Any, type_label: str | None = None) -> Any:
    """Text typed by the user -> the BSON value to compare with.

    ``type_label`` is the attribute's type from the attribute dictionary (``int long double
    decimal bool string date null``...). Without one (or for array/object/summary types) the
    text is parsed: ``null``, ``true``/``false``, integers, floats, otherwise a string; quote it
    (``"12"``) to force a string. Non-string input is returned unchanged.
    """
    if not isinstance(text, str):
        return text
    s = text.strip()
    try:
        if type_label == "string":
            return text
        if type_label in ("int", "long", "decimal", "double"):
            if _INT_RE.match(s) and type_label != "double":
                return _int_or_decimal(s)
            if _INT_RE.match(s) or _FLOAT_RE.match(s):
                value = float(s)
                if type_label != "double" and value.is_integer() and abs(value) < 2**63:
                    return int(value)
                return value
            raise ValueError
        if type_label == "bool":
            if s.lower() in _TRUE:
                return True
            if s.lower() in _FALSE:
                return False
            raise ValueError
        if type_label == "date":
            return parse_datetime(s)
        if type_label == "null":
            if s.lower() in ("", "null", "none"):
                return None
            raise ValueError
    except (ValueError, QueryError):
        raise QueryError(f"{text!r} is not a valid {type_label} value") from None
    # untyped: guess
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    low = s.lower()
    if low in ("null", "none"):
        return None
    if low == "true":
        return True
    if low == "false":
        return False
    if _INT_RE.match(s):
        return _int_or_decimal(s)
    if _FLOAT_RE.match(s):
        return float(s)
    return text


def _to_json(value: Any, ascii: bool = False) -> str:
    return json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS,
                           separators=(",", ":"), ensure_ascii=ascii)


def _from_json(text: str) -> Any:
    return json_util.loads(text, json_options=json_util.JSONOptions(tz_aware=True, tzinfo=UTC))


def _format_when(value: date | datetime) -> str:
    if isinstance(value, datetime):
        v = parse_datetime(value)
        text = v.strftime("%Y-%m-%dT%H:%M:%S")
        if v.microsecond:
            text += f".{v.microsecond // 1000:03d}"
        return text + "Z"
    return value.isoformat()
