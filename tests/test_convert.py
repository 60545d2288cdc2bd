"""Tests for spine_docs.convert: one test per conversion rule, plus a property-style loop over
real HDF5 attributes (written with h5py, read back, converted, BSON round-tripped)."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import math

import bson
import h5py
import numpy as np
import pytest
import yaml
from bson import Binary, Decimal128

from spine_docs.convert import (
    TYPE_NAMES,
    bson_type_name,
    escape_key,
    read_attrs,
    safe_document,
    to_bson,
    unescape_key,
)

U64_MAX = 2**64 - 1


def rt(value):
    """BSON round trip of one value (proves it encodes)."""
    return bson.decode(bson.encode({"v": value}))["v"]


def restore(value):
    """Undo the lossless encodings (Decimal128 ints, complex dicts, Binary) for comparisons."""
    if isinstance(value, Decimal128):
        d = value.to_decimal()
        return int(d) if d == d.to_integral_value() else d
    if isinstance(value, list):
        return [restore(x) for x in value]
    if isinstance(value, dict):
        if set(value) == {"re", "im"}:
            return complex(value["re"], value["im"])
        return {unescape_key(k): restore(v) for k, v in value.items()}
    if isinstance(value, Binary):
        return bytes(value)
    return value


# ---------------------------------------------------------------------------------- scalars


def test_numpy_scalars_become_python_int_float_bool():
    for v in (np.int8(-5), np.int16(300), np.int32(-(2**31)), np.int64(2**63 - 1), np.uint8(255),
              np.uint16(65535), np.uint32(2**32 - 1), np.uint64(2**63 - 1)):
        out = to_bson(v)
        assert type(out) is int and out == int(v)
    for v in (np.float64(0.1), np.float32(0.1), np.float16(1.5)):
        out = to_bson(v)
        assert type(out) is float and out == float(v)
        assert type(v)(out) == v  # float32/16 come back exactly
    assert to_bson(np.bool_(True)) is True and to_bson(np.bool_(False)) is False
    assert to_bson(True) is True and to_bson(None) is None


def test_unsigned_above_int64_is_exact_decimal128():
    for n in (2**63, 2**63 + 1, U64_MAX):
        out = to_bson(np.uint64(n))
        assert isinstance(out, Decimal128)
        assert int(rt(out).to_decimal()) == n
    assert to_bson(np.uint64(2**63 - 1)) == 2**63 - 1  # still a plain int below the edge
    arr = to_bson(np.array([0, U64_MAX], dtype=np.uint64))
    assert arr[0] == 0 and isinstance(arr[1], Decimal128) and restore(rt(arr)) == [0, U64_MAX]


def test_nan_and_inf_are_kept():
    out = rt(to_bson(np.array([np.nan, np.inf, -np.inf, 1.0], dtype=np.float32)))
    assert math.isnan(out[0]) and out[1] == math.inf and out[2] == -math.inf and out[3] == 1.0
    assert math.isnan(rt(to_bson(np.float64("nan"))))
    assert rt(to_bson(float("-inf"))) == -math.inf


def test_float16_32_longdouble_become_float():
    ld = np.longdouble(1) / np.longdouble(3)
    out = to_bson(ld)
    assert type(out) is float and out == float(ld)
    arr = to_bson(np.array([1.5, 2.25], dtype=np.float16))
    assert arr == [1.5, 2.25] and all(type(x) is float for x in arr)
    arr = to_bson(np.array([ld, 2], dtype=np.longdouble))
    assert arr == [float(ld), 2.0] and all(type(x) is float for x in arr)


def test_complex_becomes_re_im():
    assert to_bson(np.complex64(1 + 2j)) == {"re": 1.0, "im": 2.0}
    assert to_bson(3 - 4j) == {"re": 3.0, "im": -4.0}
    assert to_bson(np.array([1j, 2], dtype=np.complex128)) == [{"re": 0.0, "im": 1.0}, {"re": 2.0, "im": 0.0}]
    out = rt(to_bson(np.clongdouble(complex(np.nan, 1))))
    assert math.isnan(out["re"]) and out["im"] == 1.0


# ---------------------------------------------------------------------------------- strings


def test_bytes_utf8_decoded_else_binary():
    assert to_bson(b"abc") == "abc"
    assert to_bson("é".encode()) == "é"
    out = to_bson(b"\xff\xfe")
    assert isinstance(out, Binary) and bytes(out) == b"\xff\xfe"
    assert rt(out) == b"\xff\xfe"
    assert to_bson(bytearray(b"xy")) == "xy"
    # h5py decodes invalid vlen ascii bytes with surrogateescape: the original bytes survive
    out = to_bson("\udcff")
    assert isinstance(out, Binary) and bytes(out) == b"\xff"
    # a string with a NUL is fine as a BSON value
    assert rt(to_bson("a\x00b")) == "a\x00b"


def test_numpy_bytes_and_str_scalars_and_arrays():
    assert to_bson(np.bytes_(b"hello")) == "hello"
    assert to_bson(np.str_("héllo")) == "héllo"
    assert to_bson(np.array([b"a", b"bb"])) == ["a", "bb"]
    assert to_bson(np.array(["x", "yy"])) == ["x", "yy"]
    vlen = np.array(["a", "bé"], dtype=h5py.string_dtype())
    assert to_bson(vlen) == ["a", "bé"]
    mixed = to_bson(np.array([b"ok", b"\xff"], dtype=object))
    assert mixed[0] == "ok" and bytes(mixed[1]) == b"\xff"


def test_long_string_and_bytes_are_summarized():
    s = "é" * 40  # 80 UTF-8 bytes
    out = to_bson(s, max_string_bytes=80)
    assert out == s  # at the limit: kept
    out = to_bson(s + "x", max_string_bytes=80)
    assert out["summarized"] is True and out["kind"] == "string"
    assert out["size"] == 81
    assert out["sha256"] == hashlib.sha256((s + "x").encode()).hexdigest()
    long = "abc" * 100
    assert to_bson(long, max_string_bytes=10)["preview"] == long[:200]
    raw = b"\xff" * 300
    out = to_bson(raw, max_string_bytes=100)
    assert out["kind"] == "bytes" and out["size"] == 300
    assert out["sha256"] == hashlib.sha256(raw).hexdigest()
    assert bson_type_name(out) == "summary"
    rt(out)


# ---------------------------------------------------------------------------------- arrays


def test_arrays_become_nested_lists():
    assert to_bson(np.arange(6).reshape(2, 3)) == [[0, 1, 2], [3, 4, 5]]
    assert to_bson(np.arange(8, dtype=np.int16).reshape(2, 2, 2)) == [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]
    out = to_bson(np.array([[1.5, 2], [3, 4]], dtype=np.float32))
    assert out == [[1.5, 2.0], [3.0, 4.0]] and type(out[0][0]) is float
    assert to_bson([1, (2, 3)]) == [1, [2, 3]]


def test_large_array_is_summarized_with_stats_hash_and_preview():
    arr = np.arange(1001, dtype=np.float64)
    assert isinstance(to_bson(arr[:1000]), list)  # exactly max_items: kept
    arr[0] = np.nan
    arr[5] = -7.5
    out = to_bson(arr)
    assert out["summarized"] is True and out["kind"] == "array"
    assert out["shape"] == [1001] and out["dtype"] == "float64" and out["size"] == 1001
    assert out["min"] == -7.5 and out["max"] == 1000.0  # NaN ignored
    assert type(out["min"]) is float
    assert out["sha256"] == hashlib.sha256(arr.tobytes()).hexdigest()
    assert len(out["preview"]) == 10 and math.isnan(out["preview"][0]) and out["preview"][5] == -7.5
    assert bson_type_name(out) == "summary"
    # all-NaN: no min/max, still encodable
    out = to_bson(np.full(2000, np.nan))
    assert out["min"] is None and out["max"] is None
    # ints as plain ints, uint64 beyond int64 as Decimal128
    out = to_bson(np.array([3, U64_MAX] * 600, dtype=np.uint64))
    assert out["min"] == 3 and type(out["min"]) is int and int(out["max"].to_decimal()) == U64_MAX
    # 2-D: size counts elements, shape kept
    out = to_bson(np.zeros((40, 30), dtype=np.int8), max_items=100)
    assert out["shape"] == [40, 30] and out["size"] == 1200 and out["min"] == 0


def test_max_items_counts_compound_fields_and_subarrays():
    dtype = np.dtype([("a", "i4"), ("v", "f4", (10,))])
    arr = np.zeros(50, dtype=dtype)  # 50 * 11 leaves
    assert isinstance(to_bson(arr, max_items=550), list)
    out = to_bson(arr, max_items=549)
    assert out["summarized"] is True and out["size"] == 50 and "min" not in out
    assert out["preview"][0] == {"a": 0, "v": [0.0] * 10}


def test_object_arrays_of_nested_arrays_and_long_strings_are_bounded():
    seqs = np.empty(3, dtype=object)
    for i in range(3):
        seqs[i] = np.arange(400, dtype=np.int32)
    out = to_bson(seqs)  # 1200 leaves in total > 1000
    assert out["summarized"] is True and out["size"] == 3
    strings = np.array(["x" * 5000] * 30, dtype=object)  # 150 kB > max_bytes
    out = to_bson(strings)
    assert out["summarized"] is True and len(bson.encode({"v": out})) < 5000
    assert out["preview"][0]["kind"] == "string"
    # fixed-length string arrays: few elements but too many bytes in total
    fixed = np.array(["x" * 5000] * 30)
    assert fixed.dtype.kind == "U" and fixed.size < 1000
    out = to_bson(fixed)
    assert out["summarized"] is True and out["size"] == 30 and len(bson.encode({"v": out})) < 5000
    out = to_bson(np.array([b"y" * 5000] * 30))
    assert out["summarized"] is True and out["dtype"] == "|S5000"
    # the explicit byte budget is honoured
    assert isinstance(to_bson(["ab"] * 10, max_bytes=1000), list)
    assert to_bson(["ab"] * 10, max_bytes=50)["summarized"] is True


def test_python_lists_are_summarized_too():
    out = safe_document({"inputs": [f"/data/f{i}.h5" for i in range(1500)]})
    s = out["inputs"]
    assert s["summarized"] is True and s["size"] == 1500 and s["preview"][0] == "/data/f0.h5"
    nums = to_bson([1, 5.5, float("nan"), -2] * 300)
    assert nums["min"] == -2 and nums["max"] == 5.5


# ---------------------------------------------------------------------------------- compound, enum, refs


def test_compound_becomes_dict_with_escaped_keys():
    dtype = np.dtype([("a", "i4"), ("b.c", "f8"), ("$s", "S3")])
    value = np.array((1, 2.5, b"abc"), dtype=dtype)[()]
    assert isinstance(value, np.void)
    assert to_bson(value) == {"a": 1, "b%2Ec": 2.5, "%24s": "abc"}
    arr = np.array([(1, 2.0, b"x"), (3, 4.0, b"y")], dtype=dtype)
    assert to_bson(arr) == [{"a": 1, "b%2Ec": 2.0, "%24s": "x"}, {"a": 3, "b%2Ec": 4.0, "%24s": "y"}]
    nested = np.zeros((), dtype=[("inner", dtype), ("v", "f4", (2,))])
    assert to_bson(nested) == {"inner": {"a": 0, "b%2Ec": 0.0, "%24s": ""}, "v": [0.0, 0.0]}
    assert bytes(to_bson(np.void(b"\x00\xff"))) == b"\x00\xff"  # opaque -> Binary


def test_enum_uses_the_dtype_mapping():
    edt = h5py.enum_dtype({"RED": 0, "GREEN": 1}, basetype="i1")
    assert to_bson(np.int8(1), dtype=edt) == {"enum": "GREEN", "value": 1}
    assert to_bson(np.int8(1)) == 1  # what h5py returns, without the dtype: the integer
    assert to_bson(np.int8(7), dtype=edt) == {"enum": None, "value": 7}
    assert to_bson(np.array([0, 1], dtype="i1"), dtype=edt) == [
        {"enum": "RED", "value": 0}, {"enum": "GREEN", "value": 1}]
    assert to_bson(np.array(0, dtype=edt)) == {"enum": "RED", "value": 0}  # dtype on the value
    cdt = np.dtype([("color", edt), ("n", "i4")])
    assert to_bson(np.zeros((), dtype=[("color", "i1"), ("n", "i4")])[()], dtype=cdt) == {
        "color": {"enum": "RED", "value": 0}, "n": 0}
    assert to_bson(np.zeros(2, "i1"), dtype=np.dtype(bool)) == [0, 0]  # bool dtype is no enum


def test_references_resolve_through_callback(tmp_path):
    with h5py.File(tmp_path / "r.h5", "w") as f:
        d = f.create_dataset("grp/data", data=np.arange(10))
        ref, rref = d.ref, d.regionref[2:5]
        seen = []

        def resolve(r):
            seen.append(r)
            return f[r].name

        assert to_bson(ref, resolve_ref=resolve) == {"ref": "/grp/data"}
        assert to_bson(ref) == {"ref": None}
        assert to_bson(rref, resolve_ref=resolve) == {"ref": "/grp/data", "region": True}
        assert to_bson(h5py.Reference(), resolve_ref=resolve) == {"ref": None}  # null ref
        assert len(seen) == 2

        def broken(r):
            raise KeyError("gone")

        assert to_bson(ref, resolve_ref=broken) == {"ref": None}
        arr = np.array([ref, ref], dtype=h5py.ref_dtype)
        assert to_bson(arr, resolve_ref=resolve) == [{"ref": "/grp/data"}] * 2


def test_empty_zero_length_and_zero_d():
    assert to_bson(h5py.Empty("f4")) is None
    assert to_bson(np.zeros((0,), "i4")) == []
    assert to_bson(np.zeros((2, 0), "f8")) == [[], []]
    assert to_bson(np.zeros((0,), dtype=[("a", "i4")])) == []
    out = to_bson(np.array(3.5))
    assert out == 3.5 and type(out) is float
    assert to_bson(np.array(b"x")) == "x"
    assert to_bson(np.array(U64_MAX, dtype=np.uint64)) == Decimal128(str(U64_MAX))


def test_datetime64_to_date_or_iso_string():
    out = to_bson(np.datetime64("2020-01-02T03:04:05.678"))
    assert out == dt.datetime(2020, 1, 2, 3, 4, 5, 678000)
    assert rt(out) == out
    # sub-millisecond precision is floored to BSON's milliseconds
    assert to_bson(np.datetime64(-1, "ns")) == dt.datetime(1969, 12, 31, 23, 59, 59, 999000)
    assert to_bson(np.datetime64("2020-05", "M")) == dt.datetime(2020, 5, 1)
    assert to_bson(np.datetime64("NaT")) is None
    assert to_bson(np.datetime64("12000-01-01")) == "12000-01-01"
    assert to_bson(np.array(["2021-03-04", "NaT"], dtype="M8[D]")) == [dt.datetime(2021, 3, 4), None]
    assert to_bson(np.timedelta64(3, "h")) == 10800.0
    out = to_bson(np.array(["2021-03-04", "NaT", "1999-01-01"] * 400, dtype="M8[D]"))
    assert out["min"] == dt.datetime(1999, 1, 1) and out["max"] == dt.datetime(2021, 3, 4)


def test_bool_arrays_and_mixed_object_arrays():
    out = to_bson(np.array([True, False]))
    assert out == [True, False] and all(type(x) is bool for x in out)
    mixed = np.array([1, "a", b"b", None, 2.5, np.arange(2), {"k.x": 1}, np.uint64(U64_MAX)], dtype=object)
    out = to_bson(mixed)
    assert out[:6] == [1, "a", "b", None, 2.5, [0, 1]]
    assert out[6] == {"k%2Ex": 1}
    assert out[7] == Decimal128(str(U64_MAX))
    rt(out)


def test_unexpected_values_fall_back_without_raising():
    class BadRepr:
        def __repr__(self):
            raise RuntimeError("no")

    out = to_bson(object())
    assert out["type"] == "object" and out["unconvertible"].startswith("<object object")
    assert to_bson(BadRepr()) == {"unconvertible": "<repr failed>", "type": "BadRepr"}
    out = to_bson(x for x in range(3))
    assert out["type"] == "generator"
    assert len(to_bson(type("Long", (), {"__repr__": lambda self: "z" * 999})())["unconvertible"]) == 200
    def depth(v):
        return 1 + max((depth(x) for x in v), default=0) if isinstance(v, list) else 0

    cyclic = []
    cyclic.append(cyclic)
    out = to_bson(cyclic)
    assert depth(out) <= 40  # bounded nesting (MongoDB allows 100 levels per document)
    rt(out)
    deep = 1
    for _ in range(200):
        deep = [deep]
    assert depth(to_bson(deep)) <= 40
    assert bson_type_name(to_bson(object())) == "object"
    # nonsense limits do not make it raise either
    assert to_bson([1, 2], max_items="x") == [1, 2]


# ---------------------------------------------------------------------------------- keys


def test_escape_key_examples_and_roundtrip():
    assert escape_key("a.b") == "a%2Eb"
    assert escape_key("$x") == "%24x"
    assert escape_key("x$") == "x$"
    assert escape_key("") == "%"
    assert escape_key("50%") == "50%25"
    assert escape_key("a\x00b") == "a%00b"
    assert escape_key("plain_key") == "plain_key"
    assert escape_key("bad\udcffname") == "bad%FFname"
    keys = ["", "%", "%%", "%2E", "%25", ".", "..", "$", "$$", "a.b.c", "$a.$b", "\x00", "é.ü",
            "%u0041", "\ud800", "x\udc80", "日本.語", "a%2", "%zz", " ", "$in"]
    for k in keys:
        e = escape_key(k)
        assert unescape_key(e) == k, k
        assert "." not in e and "\x00" not in e and not e.startswith("$") and e != ""
        bson.encode({e: 1})  # always a valid BSON key
    assert len({escape_key(k) for k in keys}) == len(keys)  # injective


# ---------------------------------------------------------------------------------- safe_document


def test_safe_document_escapes_keys_and_converts_odd_values():
    text = """
    run.number: 5
    $where: x
    when: 2024-01-02
    stamp: 2024-01-02 03:04:05
    1: int key
    null: none key
    nested: {a.b: {c.d: [1, 2, {e.f: 3}]}}
    tags: !!set {b, a}
    big: 18446744073709551615
    bigger: 100000000000000000000000000000000000000
    neg: -9223372036854775809
    blob: !!binary /w==
    """
    cfg = yaml.safe_load(text)
    out = safe_document(cfg)
    bson.encode(out)
    assert out["run%2Enumber"] == 5 and out["%24where"] == "x"
    assert out["when"] == dt.datetime(2024, 1, 2)
    assert out["stamp"] == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert out["1"] == "int key" and out["None"] == "none key"
    assert out["nested"] == {"a%2Eb": {"c%2Ed": [1, 2, {"e%2Ef": 3}]}}
    assert out["tags"] == ["a", "b"]
    assert out["big"] == Decimal128(str(U64_MAX))
    assert out["bigger"] == str(10**38)
    assert int(out["neg"].to_decimal()) == -(2**63) - 1
    assert bytes(out["blob"]) == b"\xff"
    assert safe_document({"t": (1, 2), "d": decimal.Decimal("1.5")}) == {"t": [1, 2], "d": Decimal128("1.5")}
    assert list({33, 2, 10}) != [2, 10, 33]  # premise: iteration order is not sorted
    assert safe_document({"s": {33, 2, 10}, "m": frozenset({1, "a"})}) == {"s": [2, 10, 33], "m": [1, "a"]}
    assert restore(rt(out))["nested"] == {"a.b": {"c.d": [1, 2, {"e.f": 3}]}}


# ---------------------------------------------------------------------------------- type names


def test_bson_type_name_labels():
    cases = [
        (None, "null"), (True, "bool"), (5, "int"), (2**31, "long"), (-(2**31) - 1, "long"),
        (Decimal128("1"), "decimal"), (1.5, "double"), ("s", "string"), (Binary(b"\xff"), "binary"),
        (dt.datetime(2020, 1, 1), "date"),
    ]
    for value, label in cases:
        assert bson_type_name(value) == label, value
    assert bson_type_name([1]) == "array"
    assert bson_type_name({"a": 1}) == "object"
    assert bson_type_name({"summarized": True, "kind": "array"}) == "summary"
    assert bson_type_name(2**31 - 1) == "int"
    # raw values are converted first
    assert bson_type_name(np.uint64(U64_MAX)) == "decimal"
    assert bson_type_name(np.float32(1)) == "double"
    assert bson_type_name(np.arange(5000)) == "summary"
    assert bson_type_name(b"\xff") == "binary"
    assert bson_type_name(object()) == "object"
    assert {label for _, label in cases} | {"array", "object", "summary"} == set(TYPE_NAMES)


# ---------------------------------------------------------------------------------- read_attrs


def _add_time_attribute(obj, name):
    """An attribute of HDF5 type H5T_TIME, which h5py cannot read."""
    space = h5py.h5s.create(h5py.h5s.SCALAR)
    h5py.h5a.create(obj.id, name.encode(), h5py.h5t.UNIX_D32LE, space).close()


def test_read_attrs_survives_unreadable_attributes_and_odd_names(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("data", data=np.arange(3))
        f.attrs["ok"] = 1
        f.attrs["a.b"] = "dotted"
        f.attrs["$x"] = np.float32(2.5)
        f.attrs.create("color", data=1, dtype=h5py.enum_dtype({"RED": 0, "BLUE": 1}, basetype="u1"))
        f.attrs["target"] = d.ref
        f.attrs["nothing"] = h5py.Empty("i4")
        f.attrs.create(b"bad\xffname", 7)
        _add_time_attribute(f, "when")
    with h5py.File(path, "r") as f:
        with pytest.raises(Exception):
            f.attrs["when"]  # the premise: h5py itself raises on this attribute
        attrs, types = read_attrs(f)
    bson.encode({"attrs": attrs, "attr_types": types})
    assert attrs["ok"] == 1 and types["ok"] == "int"
    assert attrs["a%2Eb"] == "dotted" and types["a%2Eb"] == "string"
    assert attrs["%24x"] == 2.5 and types["%24x"] == "double"
    assert attrs["color"] == {"enum": "BLUE", "value": 1} and types["color"] == "object"
    assert attrs["target"] == {"ref": "/data"}
    assert attrs["nothing"] is None and types["nothing"] == "null"
    assert attrs["bad%FFname"] == 7 and unescape_key("bad%FFname").encode("utf-8", "surrogateescape") == b"bad\xffname"
    assert "TypeError" in attrs["when"]["unreadable"] and types["when"] == "object"
    assert set(attrs) == set(types) == {"ok", "a%2Eb", "%24x", "color", "target", "nothing", "bad%FFname", "when"}


def test_read_attrs_limits_and_resolver_are_passed_through(tmp_path):
    with h5py.File(tmp_path / "b.h5", "w") as f:
        g = f.create_group("g")
        g.attrs["arr"] = np.arange(20)
        g.attrs["s"] = "x" * 50
        g.attrs["r"] = f.ref
        attrs, types = read_attrs(g, max_items=10, max_string_bytes=20, resolve_ref=lambda r: "/custom")
    assert types["arr"] == "summary" and attrs["arr"]["size"] == 20
    assert types["s"] == "summary" and attrs["s"]["kind"] == "string"
    assert attrs["r"] == {"ref": "/custom"}
    assert read_attrs(object()) == ({"%": {"unreadable": "AttributeError: 'object' object has no attribute 'attrs'"}},
                                    {"%": "object"})


# ---------------------------------------------------------------------------------- property loop


def _nan_equal(a, b):
    """Deep equality where NaN == NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_nan_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int) and isinstance(b, int):  # BSON decodes int64 as bson.Int64
        return int(a) == int(b)
    return type(a) is type(b) and a == b


def _lossless_numeric(original):
    """Checker: the BSON value restores to exactly the numpy values (NaN-aware)."""
    def check(decoded):
        expected = np.asarray(original)
        got = np.array(restore(decoded), dtype=expected.dtype).reshape(expected.shape)
        np.testing.assert_array_equal(got, expected)
    return check


def _equals(expected):
    def check(decoded):
        assert _nan_equal(restore(decoded), expected), (decoded, expected)
    return check


def _summary(size, dtype=None):
    def check(decoded):
        assert decoded["summarized"] is True and decoded["kind"] == "array" and decoded["size"] == size
        if dtype is not None:
            assert decoded["dtype"] == dtype
        assert len(decoded["preview"]) == 10 and len(decoded["sha256"]) == 64
    return check


def _build_cases(f):
    """(attribute name, writer, checker on the BSON-decoded converted value)."""
    data = f.create_dataset("data", data=np.arange(10))
    grp = f.create_group("group")
    cases = []

    def add(name, value, check, dtype=None):
        cases.append((name, value, dtype, check))

    for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        info = np.iinfo(t)
        arr = np.array([info.min, 0, info.max], dtype=t)
        add(f"{t.__name__}_arr", arr, _lossless_numeric(arr))
        add(f"{t.__name__}_max", t(info.max), _equals(int(info.max)))
    for t in (np.float16, np.float32, np.float64):
        info = np.finfo(t)
        arr = np.array([info.min, info.max, info.tiny, np.nan, np.inf, -np.inf, -0.0], dtype=t)
        add(f"{t.__name__}_arr", arr, _lossless_numeric(arr))
        add(f"{t.__name__}_scalar", t(0.1), _lossless_numeric(t(0.1)))
    ld = np.array([1 / 3, np.nan], dtype=np.longdouble)
    add("longdouble", ld, _equals([float(ld[0]), math.nan]))
    for t in (np.complex64, np.complex128):
        arr = np.array([1 + 2j, complex(np.nan, -np.inf)], dtype=t)
        add(f"{t.__name__}_arr", arr, _lossless_numeric(arr))
    add("bool_scalar", np.bool_(True), _equals(True))
    add("bool_arr", np.array([[True, False], [False, True]]), _equals([[True, False], [False, True]]))
    add("s_fixed", np.bytes_(b"fixed"), _equals("fixed"))
    add("s_fixed_arr", np.array([b"a", b"bcd"], dtype="S3"), _equals(["a", "bcd"]))
    add("s_fixed_utf8", np.bytes_("é".encode()), _equals("é"))
    add("s_fixed_binary", np.bytes_(b"\x80\xff"), _equals(b"\x80\xff"))
    add("vlen_str", "vlen é 日本", _equals("vlen é 日本"))
    add("vlen_str_arr", np.array(["a", "bé", ""], dtype=h5py.string_dtype()), _equals(["a", "bé", ""]))
    add("vlen_ascii_arr", np.array([b"ok", b"\xff"], dtype=h5py.string_dtype("ascii")), _equals(["ok", b"\xff"]))
    cdt = np.dtype([("id", "u8"), ("x.y", "f4"), ("name", "S4")])
    add("compound", np.array((U64_MAX, 1.5, b"ab"), dtype=cdt), _equals({"id": U64_MAX, "x.y": 1.5, "name": "ab"}))
    add("compound_arr", np.array([(1, 2.0, b"a"), (2, np.nan, b"b")], dtype=cdt),
        _equals([{"id": 1, "x.y": 2.0, "name": "a"}, {"id": 2, "x.y": math.nan, "name": "b"}]))
    ndt = np.dtype([("inner", cdt), ("v", "i2", (2, 2)), ("$flag", "?")])
    nested = np.zeros((), dtype=ndt)
    nested["v"] = [[1, 2], [3, 4]]
    add("nested_compound", nested,
        _equals({"inner": {"id": 0, "x.y": 0.0, "name": ""}, "v": [[1, 2], [3, 4]], "$flag": False}))
    edt = h5py.enum_dtype({"OFF": 0, "ON": 1, "UNKNOWN": 255}, basetype="u1")
    add("enum", np.array(255, dtype=edt), _equals({"enum": "UNKNOWN", "value": 255}), dtype=edt)
    add("enum_arr", np.array([0, 1], dtype=edt),
        _equals([{"enum": "OFF", "value": 0}, {"enum": "ON", "value": 1}]), dtype=edt)
    add("obj_ref", data.ref, _equals({"ref": "/data"}))
    add("obj_ref_arr", np.array([data.ref, grp.ref], dtype=h5py.ref_dtype),
        _equals([{"ref": "/data"}, {"ref": "/group"}]))
    add("null_ref", h5py.Reference(), _equals({"ref": None}))
    add("region_ref", data.regionref[1:4], _equals({"ref": "/data", "region": True}))
    add("region_ref_arr", np.array([data.regionref[0:2]], dtype=h5py.regionref_dtype),
        _equals([{"ref": "/data", "region": True}]))
    add("empty", h5py.Empty("f8"), _equals(None))
    add("zero_length", np.zeros((0,), dtype="i4"), _equals([]))
    add("zero_length_str", np.zeros((0,), dtype=h5py.string_dtype()), _equals([]))
    add("zero_d", np.array(42, dtype="i2"), _equals(42))
    add("two_d", np.arange(6, dtype="f8").reshape(2, 3), _equals([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]))
    add("vlen_int", np.array([np.arange(3, dtype="i4"), np.arange(1, dtype="i4")], dtype=object),
        _equals([[0, 1, 2], [0]]), dtype=h5py.vlen_dtype("i4"))
    times = np.array(["2020-01-01T00:00:00.5", "NaT"], dtype="M8[ms]")
    add("datetime", times, _equals([dt.datetime(2020, 1, 1, 0, 0, 0, 500000), None]),
        dtype=h5py.opaque_dtype(times.dtype))
    big = np.arange(5000, dtype=np.int32)
    add("huge_arr", big, _summary(5000, "int32"))
    add("huge_2d", np.ones((100, 100), dtype=np.float32), _summary(10000, "float32"))
    add("huge_vlen_str", np.array([str(i) for i in range(2000)], dtype=h5py.string_dtype()),
        _summary(2000, "vlen-str"))
    add("huge_compound", np.zeros(600, dtype=cdt), _summary(600))
    add("key.with.$dots%", 1, _equals(1))
    add("%", "percent name", _equals("percent name"))  # HDF5 forbids empty names
    add("$", "dollar name", _equals("dollar name"))
    return cases


def write_cases(path) -> list:
    """An HDF5 file whose root holds every attribute of :func:`_build_cases`; the cases."""
    with h5py.File(path, "w", libver="latest") as f:
        cases = _build_cases(f)
        for name, value, dtype, _ in cases:
            if dtype is not None:
                f.attrs.create(name, data=value, dtype=dtype)
            else:
                f.attrs[name] = value
    return cases


def test_property_loop_real_hdf5_attributes_are_bson_safe_and_lossless(tmp_path):
    path = tmp_path / "all.h5"
    cases = write_cases(path)
    assert len(cases) >= 55
    with h5py.File(path, "r") as f:
        attrs, types = read_attrs(f)
        for name, _value, _dtype, check in cases:
            key = escape_key(name)
            assert unescape_key(key) == name
            converted = attrs[key]
            assert "unreadable" not in (converted if isinstance(converted, dict) else {}), (name, converted)
            decoded = bson.decode(bson.encode({key: converted}))[key]
            try:
                check(decoded)
            except AssertionError as exc:
                raise AssertionError(f"attribute {name!r}: {converted!r}") from exc
            assert types[key] in TYPE_NAMES
            # direct to_bson (with the stored dtype) agrees with read_attrs
            direct = to_bson(f.attrs[name], dtype=f.attrs.get_id(name).dtype, resolve_ref=lambda r: f[r].name)
            assert bson.encode({"v": direct}) == bson.encode({"v": converted}), name
    # the whole attribute dictionary is one valid BSON document
    doc = bson.decode(bson.encode({"attrs": attrs, "attr_types": types}))
    assert {unescape_key(k) for k in doc["attrs"]} == {c[0] for c in cases}
    assert types[escape_key("uint64_max")] == "decimal"
    assert types[escape_key("int64_max")] == "long"
    assert types[escape_key("int32_max")] == "int"
    assert types[escape_key("huge_arr")] == "summary"
    assert types[escape_key("datetime")] == "array"


def test_ten_million_element_attribute_encodes_to_a_few_kb(tmp_path):
    path = tmp_path / "big.h5"
    arr = np.arange(10_000_000, dtype=np.float32)
    arr[3] = np.nan
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["big"] = arr
    with h5py.File(path, "r") as f:
        attrs, types = read_attrs(f)
    out = attrs["big"]
    encoded = bson.encode({"big": out})
    assert len(encoded) < 4096
    assert types["big"] == "summary"
    assert out["size"] == 10_000_000 and out["shape"] == [10_000_000]
    assert out["min"] == 0.0 and out["max"] == float(np.float32(9_999_999))
    assert out["sha256"] == hashlib.sha256(arr.tobytes()).hexdigest()
