"""Aggregation expressions compiled once instead of parsed for every document.

mongomock's parser (``aggregate._Parser``) walks an expression anew for every document and
finds each operator by scanning a dozen lists. :func:`compile_expression` turns an
expression into a tree of closures, ``node(document, variables) -> value``, that restates
what the parser does for the operators the catalog's pipelines use - the same values, the
same handling of missing fields (``KeyError`` is "missing", as in the parser), the same
exceptions - and, for every other operator or argument shape, calls mongomock's parser on
that sub-expression. Variables (``$$name``) are those of ``$let``, ``$map`` and ``$filter``.
"""

from __future__ import annotations

import datetime
import math
import numbers
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from mongomock import aggregate as mm_aggregate
from mongomock import filtering as mm_filtering
from mongomock import helpers as mm_helpers
from pymongo.errors import OperationFailure
from sentinels import NOTHING

Node = Callable[[Any, dict], Any]

#: the variables of a top-level evaluation (never changed: nodes make new dicts)
NO_VARS: dict = {}

_get = mm_helpers.get_value_by_dot
_to_bool = mm_helpers.mongodb_to_bool

_UNARY = {"$abs": abs, "$ceil": math.ceil, "$exp": math.exp, "$floor": math.floor,
          "$ln": math.log, "$log10": math.log10, "$sqrt": math.sqrt, "$trunc": math.trunc}
_RANGES = mm_filtering.SORTING_OPERATOR_MAP


def compile_expression(expr: Any, ignore_missing_keys: bool = False) -> Node:
    """``node(doc, variables)`` = ``_Parser(doc, variables, ignore_missing_keys).parse(expr)``."""
    return _Compiler(ignore_missing_keys).compile(expr)


class _Compiler:
    def __init__(self, ignore: bool):
        self.ignore = ignore

    def fallback(self, expr: Any) -> Node:
        ignore = self.ignore
        parser = mm_aggregate._Parser
        return lambda doc, vs: parser(doc, vs, ignore_missing_keys=ignore).parse(expr)

    def compile(self, expr: Any) -> Node:
        if not isinstance(expr, dict):
            return self.basic(expr)
        if not all(isinstance(k, str) for k in expr):
            return self.fallback(expr)
        if len(expr) == 1:
            (op, arg), = expr.items()
            if op.startswith("$"):
                make = _OPERATORS.get(op)
                node = make(self, op, arg) if make is not None else None
                return node if node is not None else self.fallback(expr)
        elif any(k.startswith("$") for k in expr):
            return self.fallback(expr)  # the parser refuses it
        return self.literal(expr)

    def basic(self, expr: Any) -> Node:
        if isinstance(expr, str) and expr.startswith("$"):
            if expr.startswith("$$"):
                path = expr[2:]
                return lambda doc, vs: _get(dict({"ROOT": doc, "CURRENT": doc}, **vs), path,
                                            can_generate_array=True)
            path = expr[1:]
            if "." not in path:
                def field(doc: Any, vs: dict) -> Any:
                    if type(doc) is dict:
                        return doc[path]
                    return _get(doc, path, can_generate_array=True)
                return field
            return lambda doc, vs: _get(doc, path, can_generate_array=True)
        return lambda doc, vs: expr

    def literal(self, expr: dict) -> Node:
        parts = [(k, self.compile(v)) for k, v in expr.items()]
        ignore = self.ignore

        def obj(doc: Any, vs: dict) -> dict:
            out = {}
            for k, node in parts:
                try:
                    out[k] = node(doc, vs)
                except KeyError:
                    if ignore:
                        continue
                    raise
            return out
        return obj

    def boolean(self, expr: Any) -> Callable[[Any, dict], bool]:
        """The parser's ``_parse_to_bool``: missing is false."""
        node = self.compile(expr)

        def test(doc: Any, vs: dict) -> bool:
            try:
                return _to_bool(node(doc, vs))
            except KeyError:
                return False
        return test

    def many(self, exprs: list) -> Callable[[Any, dict], list]:
        """The parser's ``parse_many``, as a list: missing is None when ignored."""
        nodes = [self.compile(e) for e in exprs]
        ignore = self.ignore

        def values(doc: Any, vs: dict) -> list:
            out = []
            for node in nodes:
                try:
                    out.append(node(doc, vs))
                except KeyError:
                    if not ignore:
                        raise
                    out.append(None)
            return out
        return values


# --------------------------------------------------------------------------- operators
# each takes (compiler, operator, argument) and returns a node, or None when the argument's
# shape is not the one restated (the parser then evaluates it, raising where it raises)

def _literal(c: _Compiler, op: str, arg: Any) -> Node:
    return lambda doc, vs: arg


def _cond(c: _Compiler, op: str, arg: Any) -> Node | None:
    if isinstance(arg, list) and len(arg) == 3:
        cond, yes, no = arg
    elif isinstance(arg, dict) and {"if", "then", "else"} <= set(arg):
        cond, yes, no = arg["if"], arg["then"], arg["else"]
    else:
        return None
    test, a, b = c.boolean(cond), c.compile(yes), c.compile(no)
    return lambda doc, vs: a(doc, vs) if test(doc, vs) else b(doc, vs)


def _if_null(c: _Compiler, op: str, arg: Any) -> Node | None:
    if not isinstance(arg, list) or len(arg) != 2:
        return None
    first, other = c.compile(arg[0]), c.compile(arg[1])

    def if_null(doc: Any, vs: dict) -> Any:
        try:
            v = first(doc, vs)
            if v is not None:
                return v
        except KeyError:
            pass
        return other(doc, vs)
    return if_null


def _logic(c: _Compiler, op: str, arg: Any) -> Node | None:
    if op == "$not":
        test = c.boolean(arg)
        return lambda doc, vs: not test(doc, vs)
    if not isinstance(arg, list):
        return None
    tests = [c.boolean(a) for a in arg]
    if op == "$and":  # the parser evaluates every operand (a list, not a generator)
        return lambda doc, vs: all([t(doc, vs) for t in tests])
    return lambda doc, vs: any(t(doc, vs) for t in tests)


def _compare(c: _Compiler, op: str, arg: Any) -> Node | None:
    if not isinstance(arg, list) or len(arg) != 2:
        return None
    a, b = c.compile(arg[0]), c.compile(arg[1])
    if op == "$eq":
        return lambda doc, vs: a(doc, vs) == b(doc, vs)
    if op == "$ne":
        return lambda doc, vs: a(doc, vs) != b(doc, vs)
    cmp = _RANGES[op]
    compare = mm_filtering.bson_compare

    def ordered(doc: Any, vs: dict) -> bool:
        x, y = a(doc, vs), b(doc, vs)
        tx, ty = type(x), type(y)
        # bson_compare of two numbers, or two strings: their own comparison
        if (tx is int or tx is float) and (ty is int or ty is float) or tx is str is ty:
            return cmp(x, y)
        return compare(cmp, x, y)
    return ordered


def _in(c: _Compiler, op: str, arg: Any) -> Node | None:
    if not isinstance(arg, list) or len(arg) != 2:
        return None
    a, b = c.compile(arg[0]), c.compile(arg[1])
    return lambda doc, vs: a(doc, vs) in b(doc, vs)


def _is_number(c: _Compiler, op: str, arg: Any) -> Node:
    node = c.compile(arg)

    def is_number(doc: Any, vs: dict) -> bool:
        try:
            v = node(doc, vs)
        except KeyError:
            return False
        t = type(v)
        if t is int or t is float:
            return True
        return False if isinstance(v, bool) else isinstance(v, numbers.Number)
    return is_number


def _unary(c: _Compiler, op: str, arg: Any) -> Node:
    node = c.compile(arg)
    fn = _UNARY[op]

    def unary(doc: Any, vs: dict) -> Any:
        try:
            number = node(doc, vs)
        except KeyError:
            return None
        if number is None:
            return None
        t = type(number)
        if t is not int and t is not float and not isinstance(number, numbers.Number):
            raise OperationFailure("Parameter to %s must evaluate to a number, got '%s'"
                                   % (op, type(number)))
        return fn(number)
    return unary


def _binary(c: _Compiler, op: str, arg: Any) -> Node | None:
    if not isinstance(arg, list) or len(arg) != 2:
        return None
    both = c.many(arg)

    def binary(doc: Any, vs: dict) -> Any:
        n0, n1 = both(doc, vs)
        if n0 is None or n1 is None:
            return None
        if op == "$divide":
            return n0 / n1
        if op == "$log":
            return math.log(n0, n1)
        if op == "$mod":
            return math.fmod(n0, n1)
        if op == "$pow":
            return math.pow(n0, n1)
        if isinstance(n0, datetime.datetime) and isinstance(n1, (int, float)):
            n1 = datetime.timedelta(milliseconds=n1)
        res = n0 - n1
        if isinstance(res, datetime.timedelta):
            return round(res.total_seconds() * 1000)
        return res
    return binary


def _date_to_string(c: _Compiler, op: str, arg: Any) -> Node | None:
    if not isinstance(arg, dict) or set(arg) != {"format", "date"}:
        return None
    fmt = arg["format"]
    if not isinstance(fmt, str) or fmt.startswith("$") or "%L" in fmt:
        return None
    date = c.compile(arg["date"])  # missing: KeyError, ignored or not (the parser's too)
    return lambda doc, vs: date(doc, vs).strftime(fmt)


def _to_string(c: _Compiler, op: str, arg: Any) -> Node:
    node = c.compile(arg)

    def to_string(doc: Any, vs: dict) -> Any:
        try:
            v = node(doc, vs)
        except KeyError:
            return None
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, datetime.datetime):
            return v.isoformat()[:-3] + "Z"
        return str(v)
    return to_string


def _object_to_array(c: _Compiler, op: str, arg: Any) -> Node:
    node = c.compile(arg)

    def object_to_array(doc: Any, vs: dict) -> Any:
        try:
            v = node(doc, vs)
        except KeyError:
            return None
        if v is None:
            return None
        if not isinstance(v, (dict, OrderedDict)):
            raise OperationFailure(f"$objectToArray requires an object input, found: {type(v)}")
        return [{"k": k, "v": x} for k, x in v.items()]
    return object_to_array


def _array_elem_at(c: _Compiler, op: str, arg: Any) -> Node | None:
    if not isinstance(arg, list) or len(arg) != 2:
        return None
    array, index = c.compile(arg[0]), c.compile(arg[1])

    def elem_at(doc: Any, vs: dict) -> Any:
        a = array(doc, vs)
        i = index(doc, vs)
        try:
            return a[i]
        except IndexError as error:
            raise KeyError("Array have length less than index value") from error
    return elem_at


def _let(c: _Compiler, op: str, arg: Any) -> Node | None:
    if not isinstance(arg, dict) or "vars" not in arg or "in" not in arg \
            or not isinstance(arg["vars"], dict) or not all(isinstance(k, str) for k in arg["vars"]):
        return None
    names = [(k, c.compile(v)) for k, v in arg["vars"].items()]
    body = c.compile(arg["in"])

    def let(doc: Any, vs: dict) -> Any:
        new = {k: node(doc, vs) for k, node in names}
        return body(doc, dict(vs, **new))
    return let


def _map(c: _Compiler, op: str, arg: Any) -> Node | None:
    if not isinstance(arg, dict) or "input" not in arg or "in" not in arg \
            or not set(arg) <= {"input", "as", "in"} or not isinstance(arg.get("as", "this"), str):
        return None
    source, body, name = c.compile(arg["input"]), c.compile(arg["in"]), arg.get("as", "this")

    def map_(doc: Any, vs: dict) -> Any:
        try:
            items = source(doc, vs)
        except KeyError:
            items = NOTHING
        if items is None or items is NOTHING:
            return None
        if not isinstance(items, (list, tuple)):
            raise OperationFailure("input to $map must be an array not %s" % type(items))
        return [body(doc, dict(vs, **{name: item})) for item in items]
    return map_


def _filter(c: _Compiler, op: str, arg: Any) -> Node | None:
    if not isinstance(arg, dict) or not {"input", "cond"} <= set(arg) \
            or not set(arg) <= {"input", "cond", "as"} or not isinstance(arg.get("as", "this"), str):
        return None
    source, cond, name = c.compile(arg["input"]), c.compile(arg["cond"]), arg.get("as", "this")

    def filter_(doc: Any, vs: dict) -> Any:
        items = source(doc, vs)
        return [item for item in items if cond(doc, dict(vs, **{name: item}))]
    return filter_


_OPERATORS: dict[str, Callable[[_Compiler, str, Any], Node | None]] = {
    "$literal": _literal, "$cond": _cond, "$ifNull": _if_null,
    "$and": _logic, "$or": _logic, "$not": _logic,
    "$eq": _compare, "$ne": _compare, "$gt": _compare, "$gte": _compare, "$lt": _compare,
    "$lte": _compare, "$in": _in, "$isNumber": _is_number,
    **{op: _unary for op in _UNARY},
    "$divide": _binary, "$log": _binary, "$mod": _binary, "$pow": _binary, "$subtract": _binary,
    "$dateToString": _date_to_string, "$toString": _to_string,
    "$objectToArray": _object_to_array, "$arrayElemAt": _array_elem_at,
    "$let": _let, "$map": _map, "$filter": _filter,
}
