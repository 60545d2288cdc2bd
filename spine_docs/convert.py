"""HDF5 / numpy values -> BSON-safe values, and MongoDB-safe keys (pure functions).

This is the part of spine-docs that must never crash: :func:`to_bson` accepts whatever h5py
returns for an attribute (and the plain Python values of parsed YAML/JSON) and always returns
a value that ``bson.encode`` accepts. Anything it does not understand becomes
``{"unconvertible": repr(value)[:200], "type": type name}`` instead of an exception.

Value rules
-----------
===============================  ==========================================================
input                            stored as
===============================  ==========================================================
``None``, ``h5py.Empty``         ``None`` (null dataspace)
bool, ``np.bool_``               bool
signed ints, unsigned ints       int (BSON int32/int64)
ints outside int64               ``bson.Decimal128`` -- exact for every integer of up to 34
                                 digits, so ``np.uint64`` up to 2**64-1 round-trips without
                                 loss and MongoDB compares it numerically with ints; larger
                                 Python ints (only from YAML/JSON) become a decimal string
float16/32/64, longdouble        float (BSON double; NaN and +-inf kept; longdouble is
                                 rounded to the nearest double)
complex                          ``{"re": float, "im": float}``
str, ``np.str_``                 str; strings that cannot be UTF-8 encoded (h5py decodes
                                 invalid bytes with surrogateescape) are treated as bytes
bytes, ``np.bytes_`` ('S')       str when the bytes are valid UTF-8, else ``bson.Binary``
opaque ``np.void``               ``bson.Binary``
compound ``np.void``             dict (field names escaped with :func:`escape_key`)
enum (``dtype=`` carries the     ``{"enum": name, "value": int}`` (name None when the value
h5py enum mapping)               is not in the mapping)
``h5py.Reference``               ``{"ref": "/path/of/target"}`` via ``resolve_ref(ref)``,
                                 ``{"ref": None}`` when unresolved / null; region
                                 references add ``"region": True``
datetime64                       naive UTC ``datetime`` (truncated to ms, BSON's
                                 resolution) for years 1..9999, else an ISO string; NaT -> None
timedelta64, timedelta           float seconds (NaT -> None)
``datetime.date`` / ``time``     ``datetime`` at midnight / ISO string
``decimal.Decimal``              ``Decimal128`` when exact, else str
0-d array                        its scalar
array, list, tuple, set          (nested) list; sets sorted when possible
dict / Mapping                   dict with escaped keys (non-str keys become ``str(key)``)
anything else                    ``{"unconvertible": repr[:200], "type": name}``
===============================  ==========================================================

Bounds (so that one attribute never blows the 16 MB document limit)
--------------------------------------------------------------------
* An array whose number of scalar leaves (``size`` times the fields/sub-array elements of its
  dtype) exceeds ``max_items`` is replaced by a summary.
* A string longer than ``max_string_bytes`` (UTF-8 bytes) is replaced by a summary.
* An array/list whose converted value would still encode to more than ``max_bytes``
  (default ``max_string_bytes + 64 * max_items``) is replaced by a summary.

Summaries are dicts with ``"summarized": True`` and ``"kind"`` (``"array"``, ``"string"``,
``"bytes"``), plus where they apply: ``shape``, ``dtype``, ``size`` (elements, or bytes for
strings), ``min``/``max`` (numeric, bool and datetime arrays; NaN-aware; None when there is
no non-NaN value), ``sha256`` (hex of the raw data bytes; for object arrays and lists, of a
length-framed canonical encoding of the elements) and ``preview`` (the first 10 elements
converted with tight bounds / the first 200 characters).

Dicts are never summarised (their values are); the caller bounds whole documents.

Keys
----
:func:`escape_key` percent-escapes ``%`` (``%25``), ``.`` (``%2E``), NUL (``%00``) and a
leading ``$`` (``%24``); the empty key becomes ``%``. Lone surrogates (HDF5 names that are not
valid UTF-8, decoded with surrogateescape) become ``%80``..``%FF`` (the original byte) or
``%uXXXX``. :func:`unescape_key` inverts it exactly.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import math
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import bson
import h5py
import numpy as np
from bson import Binary, Decimal128

__all__ = [
    "to_bson",
    "bson_type_name",
    "escape_key",
    "unescape_key",
    "safe_document",
    "read_attrs",
    "TYPE_NAMES",
    "DEFAULT_MAX_ITEMS",
    "DEFAULT_MAX_STRING_BYTES",
]

DEFAULT_MAX_ITEMS = 1000
DEFAULT_MAX_STRING_BYTES = 65536
PREVIEW_ITEMS = 10
PREVIEW_CHARS = 200
UNCONVERTIBLE_REPR = 200
# BSON documents nest at most 100 levels on a server; attrs/cfg values sit a few levels deep.
MAX_DEPTH = 32

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DECIMAL128_MAX_INT = 10**34 - 1  # every integer with <= 34 digits is exact in Decimal128

TYPE_NAMES = (
    "null", "bool", "int", "long", "decimal", "double", "string",
    "binary", "array", "object", "summary", "date",
)

_EPOCH = _dt.datetime(1970, 1, 1)
_MIN_DATE_MS = -62135596800000  # 0001-01-01T00:00:00
_MAX_DATE_MS = 253402300799999  # 9999-12-31T23:59:59.999

# BSON-native values that need no conversion.
_BSON_PASSTHROUGH = (
    bson.ObjectId,
    bson.Decimal128,
    bson.Timestamp,
    bson.Regex,
    bson.Code,
    bson.MinKey,
    bson.MaxKey,
    bson.DBRef,
)
_BSON_NATIVE_NAMES = {
    bson.ObjectId: "objectId",
    bson.Timestamp: "timestamp",
    bson.Regex: "regex",
    bson.Code: "javascript",
    bson.MinKey: "minKey",
    bson.MaxKey: "maxKey",
    bson.DBRef: "object",
}


@dataclass(frozen=True)
class _Limits:
    max_items: int
    max_string_bytes: int
    max_bytes: int
    resolve_ref: Callable[[Any], str | None] | None


def _limits(max_items: int, max_string_bytes: int, max_bytes: int | None, resolve_ref) -> _Limits:
    max_items = max(0, int(max_items))
    max_string_bytes = max(0, int(max_string_bytes))
    if max_bytes is None:
        max_bytes = max_string_bytes + 64 * max_items
    return _Limits(max_items, max_string_bytes, max(0, int(max_bytes)), resolve_ref)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def to_bson(
    value: Any,
    *,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES,
    resolve_ref: Callable[[Any], str | None] | None = None,
    dtype: Any = None,
    max_bytes: int | None = None,
) -> Any:
    """Convert an h5py/numpy/Python value to a value ``bson.encode`` accepts. Never raises.

    ``dtype`` is the HDF5 attribute's dtype when known (``attrs.get_id(name).dtype``): h5py
    returns enum values as plain integers, the enum mapping lives only on that dtype.
    ``resolve_ref(ref) -> str | None`` maps an ``h5py.Reference`` to the target's path.
    See the module docstring for the rules and bounds.
    """
    try:
        lim = _limits(max_items, max_string_bytes, max_bytes, resolve_ref)
    except Exception:
        lim = _limits(DEFAULT_MAX_ITEMS, DEFAULT_MAX_STRING_BYTES, None, resolve_ref)
    return _top(value, lim, _as_dtype(dtype))


def safe_document(
    obj: Any,
    *,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES,
    max_bytes: int | None = None,
    depth: int = 0,
) -> Any:
    """Make a parsed YAML/JSON value (or any nested structure) BSON-safe. Never raises.

    Every dict key at any depth is escaped with :func:`escape_key` (non-str keys become
    ``str(key)``, bytes keys are decoded), values follow :func:`to_bson` (dates, sets, tuples,
    huge ints, ...). ``depth`` is where ``obj`` sits in a larger value converted part by
    part: nesting beyond :data:`MAX_DEPTH` is cut exactly where it would be in the whole.
    """
    try:
        lim = _limits(max_items, max_string_bytes, max_bytes, None)
    except Exception:
        lim = _limits(DEFAULT_MAX_ITEMS, DEFAULT_MAX_STRING_BYTES, None, None)
    return _top(obj, lim, None, depth)


def bson_type_name(value: Any) -> str:
    """Type label for ``attr_types``: null bool int long decimal double string binary array
    object summary date (MongoDB ``$type`` names, plus ``summary`` for summarised values).

    Meant for values returned by :func:`to_bson`; any other value is converted first.
    Never raises.
    """
    try:
        return _type_name(value, convert=True)
    except Exception:
        return "object"


_ESCAPE_RE = re.compile("[%.\x00\ud800-\udfff]|^\\$")
_UNESCAPE_RE = re.compile(r"%(u[0-9A-Fa-f]{4}|[0-9A-Fa-f]{2})")


def _escape_char(m: re.Match) -> str:
    ch = m.group(0)
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape'd byte 0x80..0xFF
        return "%%%02X" % (code - 0xDC00)
    if 0xD800 <= code <= 0xDFFF:
        return "%%u%04X" % code
    return "%%%02X" % code


def escape_key(k: str) -> str:
    """Lossless, MongoDB-safe field name: ``"a.b" -> "a%2Eb"``, ``"$x" -> "%24x"``, ``"" -> "%"``.

    Escapes ``%``, ``.``, NUL, a leading ``$`` and lone surrogates (so the result always
    encodes as UTF-8). Non-str input is turned into a str first.
    """
    if not isinstance(k, str):
        k = _key_str(k)
    if k == "":
        return "%"
    return _ESCAPE_RE.sub(_escape_char, k)


def _unescape_char(m: re.Match) -> str:
    code = m.group(1)
    if code[0] in "uU":
        return chr(int(code[1:], 16))
    value = int(code, 16)
    return chr(value) if value < 0x80 else chr(0xDC00 + value)


def unescape_key(k: str) -> str:
    """Inverse of :func:`escape_key` (``unescape_key(escape_key(k)) == k`` for every str)."""
    if k == "%":
        return ""
    if "%" not in k:
        return k
    return _UNESCAPE_RE.sub(_unescape_char, k)


def read_attrs(
    h5obj: Any,
    *,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_string_bytes: int = DEFAULT_MAX_STRING_BYTES,
    max_bytes: int | None = None,
    resolve_ref: Callable[[Any], str | None] | None = None,
    raw: dict | None = None,
) -> tuple[dict, dict]:
    """All attributes of an h5py File/Group/Dataset -> ``(attrs, types)``, keys escaped.

    ``attrs`` maps escaped name -> :func:`to_bson` value, ``types`` escaped name ->
    :func:`bson_type_name`. An attribute that cannot be read (unsupported HDF5 type such as
    H5T_TIME, corrupt data, ...) becomes ``{"unreadable": "<Error>: reason"}`` (type
    ``object``) instead of failing the whole object. References are resolved against
    ``h5obj.file`` unless ``resolve_ref`` is given. When ``raw`` is a dict, it receives
    ``name -> value as h5py reads it`` for every readable attribute, so a caller that also
    needs the unconverted values does not read the file twice. Never raises.
    """
    attrs_out: dict = {}
    types_out: dict = {}
    try:
        lim = _limits(max_items, max_string_bytes, max_bytes, resolve_ref or _FileResolver(h5obj))
    except Exception:
        lim = _limits(DEFAULT_MAX_ITEMS, DEFAULT_MAX_STRING_BYTES, None, None)
    try:
        attrs = h5obj.attrs
    except Exception as exc:  # not an h5py object, closed file, ...
        return {"%": {"unreadable": _reason(exc)}}, {"%": "object"}
    for name in _attr_names(h5obj, attrs):
        key = escape_key(_key_str(name))
        try:
            dtype = None
            try:
                aid = attrs.get_id(name)
                dtype = aid.dtype
                value = _read_attr(aid)
            except Exception:  # what the low level cannot read, h5py's own reader may
                value = attrs[name]
            if raw is not None:
                raw[name] = value
            value = _top(value, lim, _as_dtype(dtype))
        except Exception as exc:
            value = {"unreadable": _reason(exc)}
        attrs_out[key] = value
        types_out[key] = bson_type_name(value)
    return attrs_out, types_out


# --------------------------------------------------------------------------------------------
# conversion core
# --------------------------------------------------------------------------------------------


def _top(value: Any, lim: _Limits, dtype: np.dtype | None, depth: int = 0) -> Any:
    """Convert and prove the result encodes; the last line of defence."""
    try:
        out = _conv(value, lim, dtype, depth)
        if not _surely_encodes(out):
            bson.encode({"v": out})
        return out
    except Exception:
        return _unconvertible(value)


def _surely_encodes(value: Any) -> bool:
    """A converted value that ``bson.encode`` always takes (the common scalars), so
    :func:`_top` need not prove it by encoding."""
    t = type(value)
    if t is bool or t is float or value is None:
        return True
    if t is int:
        return INT64_MIN <= value <= INT64_MAX
    if t is str:
        return value.isascii()
    return False


def _conv(value: Any, lim: _Limits, dtype: np.dtype | None, depth: int) -> Any:
    try:
        if depth > MAX_DEPTH:
            return _unconvertible(value)
        return _conv_inner(value, lim, dtype, depth)
    except Exception:
        return _unconvertible(value)


def _conv_inner(value: Any, lim: _Limits, dtype: np.dtype | None, depth: int) -> Any:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, h5py.Reference):
        return _ref(value, lim)
    if isinstance(value, np.ndarray):
        return _array(value, lim, dtype, depth)
    if isinstance(value, np.generic):
        return _np_scalar(value, lim, dtype, depth)
    if isinstance(value, int):  # includes bson.Int64
        return _enum_or_int(value, dtype)
    if isinstance(value, float):
        return value
    if isinstance(value, complex):
        return {"re": value.real, "im": value.imag}
    if isinstance(value, str):
        return _str(value, lim)
    if isinstance(value, Binary) and value.subtype != 0:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes(bytes(value), lim)
    if isinstance(value, _dt.datetime):
        return value
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day)
    if isinstance(value, _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return _decimal(value)
    if isinstance(value, _BSON_PASSTHROUGH):
        return value
    if isinstance(value, Mapping):
        return _mapping(value, lim, depth)
    if isinstance(value, (list, tuple)):
        return _sequence(list(value), lim, depth)
    if isinstance(value, (set, frozenset)):
        return _sequence(_sorted_set(value), lim, depth)
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        return _str(path, lim) if isinstance(path, str) else _bytes(bytes(path), lim)
    return _unconvertible(value)


def _unconvertible(value: Any) -> dict:
    try:
        text = repr(value)
    except Exception:
        text = "<repr failed>"
    text = text[:UNCONVERTIBLE_REPR].encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        tname = type(value).__name__
    except Exception:  # pragma: no cover - type() always works
        tname = "?"
    return {"unconvertible": text, "type": str(tname)}


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"[:UNCONVERTIBLE_REPR]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# ---- scalars --------------------------------------------------------------------------------


def _int(i: int) -> Any:
    i = int(i)
    if INT64_MIN <= i <= INT64_MAX:
        return i
    if -DECIMAL128_MAX_INT <= i <= DECIMAL128_MAX_INT:
        return Decimal128(str(i))
    return str(i)


def _enum_or_int(i: Any, dtype: np.dtype | None) -> Any:
    mapping = _enum_map(dtype)
    if mapping is not None:
        return _enum_value(int(i), mapping)
    return _int(i)


def _enum_value(i: int, mapping: dict) -> dict:
    name = mapping.get(i)
    return {"enum": None if name is None else _str_plain(name), "value": _int(i)}


def _decimal(d: decimal.Decimal) -> Any:
    try:
        return Decimal128(d)
    except Exception:
        return str(d)


def _str_plain(s: Any) -> str:
    """A str that surely encodes as UTF-8 (for labels, previews)."""
    s = str(s)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _str(s: str, lim: _Limits) -> Any:
    s = str(s)
    try:
        raw = s.encode("utf-8")
    except UnicodeEncodeError:
        try:  # h5py decodes invalid bytes with surrogateescape: get the original bytes back
            return _bytes(s.encode("utf-8", "surrogateescape"), lim)
        except UnicodeEncodeError:
            s = s.encode("utf-8", "backslashreplace").decode("utf-8")
            raw = s.encode("utf-8")
    if len(raw) > lim.max_string_bytes:
        return _text_summary("string", raw, s[:PREVIEW_CHARS])
    return s


def _bytes(b: bytes, lim: _Limits) -> Any:
    try:
        text = b.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return _str(text, lim)
    return _bytes_opaque(b, lim)


def _datetime64(v: np.datetime64) -> Any:
    if np.isnat(v):
        return None
    unit, _count = np.datetime_data(v.dtype)
    if unit == "generic":
        return str(v)
    year = int(v.astype("datetime64[Y]").astype(np.int64)) + 1970
    if 1 <= year <= 9999:
        ms = int(v.astype("datetime64[ms]").astype(np.int64))
        if _MIN_DATE_MS <= ms <= _MAX_DATE_MS:
            return _EPOCH + _dt.timedelta(milliseconds=ms)
    return str(np.datetime_as_string(v))


def _timedelta64(v: np.timedelta64) -> Any:
    if np.isnat(v):
        return None
    try:
        return float(v / np.timedelta64(1, "s"))
    except Exception:  # years/months have no fixed length
        return str(v)


def _complex(z: Any) -> dict:
    z = complex(z)
    return {"re": float(z.real), "im": float(z.imag)}


def _np_scalar(v: np.generic, lim: _Limits, dtype: np.dtype | None, depth: int) -> Any:
    if isinstance(v, np.void):
        return _void(v, lim, dtype, depth)
    if isinstance(v, np.datetime64):
        return _datetime64(v)
    if isinstance(v, np.timedelta64):
        return _timedelta64(v)
    if isinstance(v, np.integer):
        return _enum_or_int(int(v), dtype if dtype is not None else v.dtype)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.complexfloating):
        return _complex(v)
    if isinstance(v, np.bytes_):
        return _bytes(bytes(v), lim)
    if isinstance(v, np.str_):
        return _str(str(v), lim)
    item = v.item()
    if isinstance(item, np.generic):
        return _unconvertible(v)
    return _conv(item, lim, None, depth + 1)


def _void(v: np.void, lim: _Limits, dtype: np.dtype | None, depth: int) -> Any:
    names = v.dtype.names
    if not names:
        return _bytes_opaque(v.tobytes(), lim)
    fdt = dtype if (dtype is not None and dtype.names == names) else v.dtype
    out = {}
    for i, name in enumerate(names):
        field_dtype = fdt.fields[fdt.names[i]][0]
        out[escape_key(name)] = _conv(v[name], lim, field_dtype, depth + 1)
    return out


def _text_summary(kind: str, raw: bytes, preview: str) -> dict:
    """The summary of a string or bytes value over ``max_string_bytes``."""
    return {"summarized": True, "kind": kind, "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(), "preview": preview}


def _bytes_opaque(b: bytes, lim: _Limits) -> Any:
    if len(b) > lim.max_string_bytes:
        return _text_summary("bytes", b, b[:PREVIEW_CHARS].decode("utf-8", "backslashreplace"))
    return Binary(b)


def _ref(ref: Any, lim: _Limits) -> dict:
    region = isinstance(ref, h5py.RegionReference)
    path = None
    try:
        if ref and lim.resolve_ref is not None:
            target = lim.resolve_ref(ref)
            if isinstance(target, bytes):
                target = target.decode("utf-8", "surrogateescape")
            if target is not None:
                path = _str_plain(target)
    except Exception:
        path = None
    out: dict = {"ref": path}
    if region:
        out["region"] = True
    return out


# ---- containers -----------------------------------------------------------------------------


def _key_str(k: Any) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, (bytes, bytearray)):
        return bytes(k).decode("utf-8", "surrogateescape")
    try:
        return str(k)
    except Exception:
        return _unconvertible(k)["unconvertible"]


def _mapping(m: Mapping, lim: _Limits, depth: int) -> dict:
    out = {}
    for k, v in m.items():
        out[escape_key(_key_str(k))] = _conv(v, lim, None, depth + 1)
    return out


def _sorted_set(s: Any) -> list:
    try:
        return sorted(s)
    except Exception:
        return sorted(s, key=lambda x: (type(x).__name__, repr(x)))


def _sequence(items: list, lim: _Limits, depth: int) -> Any:
    if len(items) > lim.max_items:
        return _summary_sequence(items, lim, depth)
    out = [_conv(x, lim, None, depth + 1) for x in items]
    if out and _encoded_size(out) > lim.max_bytes:
        return _summary_sequence(items, lim, depth)
    return out


def _encoded_size(value: Any) -> int:
    return len(bson.encode({"v": value}))


# ---- numpy arrays ---------------------------------------------------------------------------


def _as_dtype(dtype: Any) -> np.dtype | None:
    if dtype is None:
        return None
    try:
        return np.dtype(dtype)
    except Exception:
        return None


def _enum_map(dtype: np.dtype | None) -> dict | None:
    """{int value: name} when ``dtype`` (or its sub-array base) is an h5py enum."""
    if dtype is None:
        return None
    try:
        base = dtype.subdtype[0] if dtype.subdtype is not None else dtype
        if base.kind not in "iu":
            return None
        mapping = h5py.check_enum_dtype(base)
    except Exception:
        return None
    if not mapping:
        return None
    return {int(v): k for k, v in mapping.items()}


def _leaves(dt: np.dtype) -> int:
    """Scalar values per element of ``dt`` (fields and sub-arrays multiply)."""
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return int(math.prod(shape)) * _leaves(base)
    if dt.names:
        return max(1, sum(_leaves(dt.fields[n][0]) for n in dt.names))
    return 1


def _nest(flat: list, shape: tuple) -> list:
    if len(shape) <= 1:
        return flat
    step = int(math.prod(shape[1:]))
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _array(arr: np.ndarray, lim: _Limits, dtype: np.dtype | None, depth: int) -> Any:
    arr = np.asarray(arr)
    if dtype is not None and dtype.subdtype is not None:
        dtype = dtype.subdtype[0]  # an attribute of array dtype reads as a plain array
    elem_dtype = dtype if dtype is not None else arr.dtype  # arr.dtype may carry enum metadata
    if arr.ndim == 0:
        return _conv(arr[()], lim, elem_dtype, depth + 1)
    if arr.size * _leaves(arr.dtype) > lim.max_items:
        return _summary_array(arr, lim, elem_dtype, depth)
    if arr.size == 0:
        return arr.tolist()  # [] / nested empty lists, never contains values
    kind = arr.dtype.kind
    if kind == "O" and _object_too_big(arr, lim):
        return _summary_array(arr, lim, elem_dtype, depth)
    flat = _flat_values(arr, lim, elem_dtype, depth)
    out = _nest(flat, arr.shape)
    if kind in "OSUV" and _encoded_size(out) > lim.max_bytes:
        return _summary_array(arr, lim, elem_dtype, depth)
    return out


def _flat_values(arr: np.ndarray, lim: _Limits, dtype: np.dtype | None, depth: int) -> list:
    kind = arr.dtype.kind
    flat = arr.reshape(-1)
    mapping = _enum_map(dtype) if kind in "iu" else None
    if mapping is not None:
        return [_enum_value(int(x), mapping) for x in flat.tolist()]
    if kind == "b":
        return [bool(x) for x in flat.tolist()]
    if kind == "i":
        return flat.astype(np.int64).tolist()
    if kind == "u":
        return [_int(x) for x in flat.tolist()]
    if kind == "f":
        return flat.astype(np.float64).tolist()
    if kind == "c":
        return [_complex(z) for z in flat.astype(np.complex128).tolist()]
    if kind == "M":
        return [_datetime64(x) for x in flat]
    if kind == "m":
        return [_timedelta64(x) for x in flat]
    if kind == "S":
        return [_bytes(x, lim) for x in flat.tolist()]
    if kind == "U":
        return [_str(x, lim) for x in flat.tolist()]
    if kind == "V":
        return [_conv(x, lim, dtype, depth + 1) for x in flat]
    # object arrays: vlen strings, references, vlen sequences, mixed things
    return [_conv(x, lim, None, depth + 1) for x in flat]


def _object_too_big(arr: np.ndarray, lim: _Limits) -> bool:
    """Cheap bound for object arrays before converting them (nested arrays, long strings)."""
    items = 0
    nbytes = 0
    for x in arr.reshape(-1):
        if isinstance(x, np.ndarray):
            items += x.size * _leaves(x.dtype)
            nbytes += x.nbytes
        elif isinstance(x, (str, bytes)):
            items += 1
            nbytes += len(x)
        elif isinstance(x, (list, tuple)):
            items += len(x)
        else:
            items += 1
        if items > lim.max_items or nbytes > lim.max_bytes:
            return True
    return False


# ---- summaries ------------------------------------------------------------------------------


def _preview_limits(lim: _Limits) -> _Limits:
    return _Limits(PREVIEW_ITEMS, PREVIEW_CHARS, 4 * PREVIEW_CHARS * PREVIEW_ITEMS, lim.resolve_ref)


def _summary_array(arr: np.ndarray, lim: _Limits, dtype: np.dtype | None, depth: int) -> dict:
    out: dict = {
        "summarized": True,
        "kind": "array",
        "shape": [int(n) for n in arr.shape],
        "dtype": _dtype_label(dtype if dtype is not None else arr.dtype),
        "size": int(arr.size),
    }
    lo, hi = _min_max(arr)
    if lo is not _NO_MINMAX:
        out["min"], out["max"] = lo, hi
    try:
        out["sha256"] = _hash_array(arr)
    except Exception:
        out["sha256"] = None
    plim = _preview_limits(lim)
    flat = arr.reshape(-1)[:PREVIEW_ITEMS]
    out["preview"] = [_preview_item(x, plim, dtype, depth) for x in flat]
    return out


def _preview_item(x: Any, plim: _Limits, dtype: np.dtype | None, depth: int) -> Any:
    return _conv(x, plim, dtype, depth + 1)


def _dtype_label(dt: np.dtype) -> str:
    try:
        info = h5py.check_string_dtype(dt)
        if info is not None and info.length is None:
            return "vlen-str"
        if h5py.check_vlen_dtype(dt) is not None:
            return "vlen-" + str(h5py.check_vlen_dtype(dt))
        if h5py.check_ref_dtype(dt) is not None:
            return "ref"
        if _enum_map(dt) is not None:
            return "enum-" + str(dt)
    except Exception:
        pass
    return str(dt)[:200]


_NO_MINMAX = object()


def _min_max(arr: np.ndarray) -> tuple[Any, Any]:
    kind = arr.dtype.kind
    if arr.size == 0 or arr.dtype.names or kind not in "biufM":
        return _NO_MINMAX, _NO_MINMAX
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if kind == "b":
                return bool(arr.min()), bool(arr.max())
            if kind in "iu":
                return _int(int(arr.min())), _int(int(arr.max()))
            if kind == "f":
                lo, hi = np.nanmin(arr), np.nanmax(arr)
                if np.isnan(lo):
                    return None, None
                return float(lo), float(hi)
            valid = arr[~np.isnat(arr)]
            if valid.size == 0:
                return None, None
            return _datetime64(valid.min()), _datetime64(valid.max())
    except Exception:
        return None, None


def _hash_array(arr: np.ndarray) -> str:
    h = hashlib.sha256()
    if not arr.dtype.hasobject:
        data = np.ascontiguousarray(arr)
        try:
            h.update(memoryview(data).cast("B"))
        except Exception:
            h.update(data.tobytes())
        return h.hexdigest()
    for x in arr.reshape(-1):
        _hash_element(h, x)
    return h.hexdigest()


def _hash_element(h: Any, x: Any) -> None:
    """Length-framed, type-tagged canonical bytes of one element (object arrays, lists)."""
    if isinstance(x, np.ndarray) and not x.dtype.hasobject:
        data = np.ascontiguousarray(x).tobytes()
        tag = b"a"
    elif isinstance(x, str):
        data = x.encode("utf-8", "surrogateescape")
        tag = b"s"
    elif isinstance(x, (bytes, bytearray)):
        data = bytes(x)
        tag = b"b"
    elif x is None or isinstance(x, (bool, int, float, complex, np.generic)):
        data = repr(x).encode("utf-8", "backslashreplace")
        tag = b"n"
    else:
        try:
            data = bson.encode({"v": _conv(x, _limits(DEFAULT_MAX_ITEMS, DEFAULT_MAX_STRING_BYTES, None, None), None, 0)})
        except Exception:
            data = _unconvertible(x)["unconvertible"].encode("utf-8")
        tag = b"o"
    h.update(tag + len(data).to_bytes(8, "little") + data)


def _summary_sequence(items: list, lim: _Limits, depth: int) -> dict:
    out: dict = {
        "summarized": True,
        "kind": "array",
        "shape": [len(items)],
        "dtype": "list",
        "size": len(items),
    }
    try:
        reals = [x for x in items if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if len(reals) == len(items):  # numeric lists get NaN-aware min/max
            valid = [x for x in reals if not (isinstance(x, float) and math.isnan(x))]
            lo = min(valid) if valid else None
            hi = max(valid) if valid else None
            out["min"] = _int(lo) if isinstance(lo, int) else lo
            out["max"] = _int(hi) if isinstance(hi, int) else hi
    except Exception:
        pass
    h = hashlib.sha256()
    try:
        for x in items:
            _hash_element(h, x)
        out["sha256"] = h.hexdigest()
    except Exception:
        out["sha256"] = None
    plim = _preview_limits(lim)
    out["preview"] = [_conv(x, plim, None, depth + 1) for x in items[:PREVIEW_ITEMS]]
    return out


# ---- type labels ----------------------------------------------------------------------------


def _type_name(value: Any, convert: bool) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, bson.Int64):
        return "long"
    if isinstance(value, int):
        if INT32_MIN <= value <= INT32_MAX:
            return "int"
        if INT64_MIN <= value <= INT64_MAX:
            return "long"
    elif isinstance(value, float):
        return "double"
    elif isinstance(value, Decimal128):
        return "decimal"
    elif isinstance(value, str):
        return "string"
    elif isinstance(value, (bytes, Binary)):
        return "binary"
    elif isinstance(value, _dt.datetime):
        return "date"
    elif isinstance(value, list):
        return "array"
    elif isinstance(value, dict):
        return "summary" if value.get("summarized") is True else "object"
    else:
        for cls, label in _BSON_NATIVE_NAMES.items():
            if isinstance(value, cls):
                return label
    if convert:
        return _type_name(to_bson(value), convert=False)
    return "object"


# ---- h5py helpers ---------------------------------------------------------------------------


def _attr_names(h5obj: Any, attrs: Any) -> list:
    try:
        return list(attrs.keys())
    except Exception:
        pass
    names = []
    try:  # low level: survives names the high-level iterator chokes on
        for i in range(h5py.h5a.get_num_attrs(h5obj.id)):
            try:
                names.append(h5py.h5a.open(h5obj.id, index=i).get_name())
            except Exception:
                continue
    except Exception:
        pass
    return names


class _FileResolver:
    """``ref -> path`` against ``h5obj.file``, opened on the first reference only (most
    objects have none, and building ``h5obj.file`` costs as much as reading an attribute)."""

    def __init__(self, h5obj: Any):
        self._obj = h5obj
        self._file: Any = None

    def __call__(self, ref: Any) -> str | None:
        if self._file is None:
            self._file = self._obj.file
        return self._file[ref].name


def _read_attr(aid: Any) -> Any:
    """An attribute's value from its open low-level id, as ``AttributeManager[name]`` returns
    it (h5py 3.x: ``Empty`` for a null dataspace, top-level array types unfolded into the
    shape, variable-length strings as ``str``, a 0-d array as its scalar), without opening
    the attribute a second time."""
    shape = aid.shape
    if shape is None:
        return h5py.Empty(aid.dtype)
    dtype = aid.dtype
    htype = h5py.h5t.py_create(dtype)
    if dtype.subdtype is not None:
        subdtype, subshape = dtype.subdtype
        shape = shape + subshape
        dtype = subdtype
    arr = np.zeros(shape, dtype=dtype, order="C")
    aid.read(arr, mtype=htype)
    string_info = h5py.h5t.check_string_dtype(dtype)
    if string_info and string_info.length is None:
        arr = np.array([b.decode("utf-8", "surrogateescape") for b in arr.flat],
                       dtype=dtype).reshape(arr.shape)
    if arr.ndim == 0:
        return arr[()]
    return arr
