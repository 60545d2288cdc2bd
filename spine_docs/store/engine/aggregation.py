"""Aggregation pipelines over a stream of documents.

Per-document stages (``$match``, ``$project``, ``$addFields``/``$set``, ``$unwind``,
``$replaceRoot``, ``$limit``, ``$skip``) stay lazy; ``$group`` (keys and accumulators
compiled once), ``$count``, ``$sort`` (+ ``$limit``: top-k) and ``$facet`` consume it;
any other stage runs mongomock's own handler. Also ``distinct`` over a stream.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mongomock import aggregate as mm_aggregate
from mongomock import filtering as mm_filtering
from mongomock import helpers as mm_helpers
from pymongo.errors import OperationFailure
from sentinels import NOTHING

from . import rawbson
from .conditions import row_test
from .expressions import NO_VARS, compile_expression
from .keys import norm
from .sorting import bson_key, sort_list


PER_DOC_STAGES = frozenset({"$match", "$project", "$addFields", "$set", "$unwind", "$replaceRoot"})
_END = object()


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _vanilla_stage(docs: list, op: str, arg: Any, database: Any) -> list:
    return list(mm_aggregate.process_pipeline(docs, database, [{op: arg}], None))


def _unwind(in_collection: Iterable[dict], options: Any) -> list[dict]:
    """mongomock's $unwind, without deep-copying the unwound array once per element."""
    if not isinstance(options, dict):
        options = {"path": options}
    path = options["path"]
    if not isinstance(path, str) or path[0] != "$":
        raise ValueError("$unwind failed: exception: field path references must be prefixed "
                         "with a '$' '%s'" % path)
    path = path[1:]
    preserve = options.get("preserveNullAndEmptyArrays")
    index_field = options.get("includeArrayIndex")
    out = []
    for doc in in_collection:
        try:
            array_value = mm_helpers.get_value_by_dot(doc, path)
        except KeyError:
            if preserve:
                out.append(doc)
            continue
        if array_value is None:
            if preserve:
                out.append(doc)
            continue
        if array_value == []:
            if preserve:
                new_doc = copy.deepcopy(doc)
                mm_helpers.delete_value_by_dot(new_doc, path)
                out.append(new_doc)
            continue
        pairs = enumerate(array_value) if isinstance(array_value, list) else [(None, array_value)]
        top_level = "." not in path and type(doc) is dict
        for index, item in pairs:
            # deepcopy(doc) as mongomock does, but the memo makes it reuse the array itself
            # (replaced right after) and atomic values are not sent through deepcopy
            memo = {id(array_value): array_value}
            if top_level:
                new_doc = {k: item if k == path else v if type(v) in rawbson.ATOMIC_TYPES
                           else copy.deepcopy(v, memo) for k, v in doc.items()}
            else:
                new_doc = copy.deepcopy(doc, memo)
                new_doc = mm_helpers.set_value_by_dot(new_doc, path, item)
            if index_field:
                new_doc = mm_helpers.set_value_by_dot(new_doc, index_field, index)
            out.append(new_doc)
    return out


def _compile(expr: Any, ignore_missing_keys: bool = False):
    """doc -> mongomock's ``_parse_expression(expr, doc, ignore_missing_keys)``, with the
    parser's work done once for the common shapes (field paths, constants, object literals
    of those); anything else is handed to mongomock's parser for every document."""
    if isinstance(expr, str) and expr.startswith("$") and not expr.startswith("$$"):
        path = expr[1:]
        get = mm_helpers.get_value_by_dot
        if "." not in path:  # get_value_by_dot of one name in a dict is the dict's lookup
            return lambda doc: doc[path] if type(doc) is dict else get(doc, path, can_generate_array=True)
        return lambda doc: get(doc, path, can_generate_array=True)
    if not isinstance(expr, dict) and not (isinstance(expr, str) and expr.startswith("$")):
        return lambda doc: expr  # mongomock returns any other non-dict value as it is
    if type(expr) is dict and expr and not any(k.startswith("$") for k in expr):
        parts = [(k, _compile(v, ignore_missing_keys)) for k, v in expr.items()]

        def literal(doc):
            out = {}
            for k, fn in parts:
                try:
                    out[k] = fn(doc)
                except KeyError:
                    if ignore_missing_keys:
                        continue
                    raise
            return out
        return literal
    node = compile_expression(expr, ignore_missing_keys)
    return lambda doc: node(doc, NO_VARS)


def _group(docs: Iterable[dict], options: Mapping) -> list[dict]:
    """mongomock's $group (same grouping, order and accumulators), consuming a stream and
    keeping only the accumulated values, not the documents."""
    _id = options["_id"]
    key_of = _compile(_id, ignore_missing_keys=True)
    accs = [(field, operator, _compile(expr)) for field, operator, expr in accumulators(options)]
    groups: dict = {}
    if not _id:
        groups[None] = [None, [[] for _a in accs]]
    for doc in docs:
        if _id:
            try:
                key = key_of(doc)
            except KeyError:
                key = None
            hk = norm(key)
            g = groups.get(hk)
            if g is None:
                g = groups[hk] = [key, [[] for _a in accs]]
        else:
            g = groups[None]
        for i, (_f, _op, value_of) in enumerate(accs):
            try:
                g[1][i].append(value_of(doc))
            except KeyError:
                pass
    return group_rows(groups, [(f, op) for f, op, _v in accs], bool(_id))


def accumulators(options: Mapping) -> list[tuple[str, str, Any]]:
    """(output field, operator, expression) of each accumulator of a ``$group``."""
    return [(field, operator, expr) for field, value in options.items() if field != "_id"
            for operator, expr in value.items()]


class Finished:
    """An accumulator's result that the caller of :func:`group_rows` computed itself."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def group_rows(groups: dict, accs: list[tuple[str, str]], keyed: bool,
               sort_keys: list | None = None) -> list[dict]:
    """``$group``'s output from its groups (hashable key -> [the ``_id`` value, one list of
    input values - or a :class:`Finished` result - per accumulator]), ordered by ``_id``
    unless not ``keyed`` (``_id: null``): the same rows and order as mongomock's.
    ``sort_keys``: :func:`.sorting.bson_key` of each group's ``_id``, when known already."""
    ordered = list(groups.values())
    if keyed:
        keys = sort_keys if sort_keys is not None else [bson_key(g[0]) for g in ordered]
        if None in keys:
            ordered.sort(key=lambda g: mm_filtering.BsonComparable(g[0]))
        else:
            ordered = [ordered[j] for j in sorted(range(len(ordered)), key=keys.__getitem__)]
    out = []
    ops = mm_aggregate._GROUPING_OPERATOR_MAP
    for key, values in ordered:
        doc_dict: dict = {}
        for (field, operator), vals in zip(accs, values):
            if type(vals) is Finished:
                doc_dict[field] = vals.value
            elif operator in ops:
                doc_dict[field] = ops[operator](vals)
            elif operator == "$addToSet":
                value = []
                for elt in (v or None for v in vals):
                    if elt not in value:
                        value.append(elt)
                doc_dict[field] = value
            elif operator == "$push":
                if field not in doc_dict:
                    doc_dict[field] = vals
                else:
                    doc_dict[field].extend(vals)
            elif operator in mm_aggregate.group_operators:
                raise NotImplementedError(
                    "Although %s is a valid group operator for the aggregation pipeline, it is "
                    "currently not implemented in Mongomock." % operator)
            else:
                raise NotImplementedError(
                    "%s is not a valid group operator for the aggregation pipeline. See "
                    "http://docs.mongodb.org/manual/meta/aggregation-quick-reference/ for a "
                    "complete list of valid operators." % operator)
        doc_dict["_id"] = key
        out.append(doc_dict)
    return out


def _count(docs: Iterable[dict], options: Any) -> list[dict]:
    if not isinstance(options, str) or options == "":
        raise OperationFailure("the count field must be a non-empty string")
    if options.startswith("$"):
        raise OperationFailure("the count field cannot be a $-prefixed path")
    if "." in options:
        raise OperationFailure("the count field cannot contain '.'")
    return [{options: sum(1 for _d in docs)}]


def _facet(docs: list[dict], options: Mapping, database: Any) -> list[dict]:
    out = {}
    for title, pipeline in options.items():
        stages = [(op, arg) for stage in pipeline for op, arg in stage.items()]
        out[title] = list(run_stages(docs, stages, database))
    return [out]


def _per_doc(docs: Iterable[dict], op: str, arg: Any, database: Any) -> Iterator[dict]:
    if op == "$match":
        yield from _match(docs, arg)
        return
    if op == "$project":
        computed = _computed_only(arg)
        if computed is not None:
            yield from _project_computed(docs, computed)
            return
    for doc in docs:
        if op == "$unwind":
            yield from _unwind((doc,), arg)
        else:
            yield from mm_aggregate.process_pipeline([doc], database, [{op: arg}], None)


def _computed_only(options: Any) -> list[tuple[str, Any]] | None:
    """(field, compiled expression) of a ``$project`` that computes every field it keeps and
    drops ``_id`` (``{_id: 0, a: <expression>, ...}``); None for any other projection."""
    if type(options) is not dict or "_id" not in options:
        return None
    include_id = options["_id"]
    if not (include_id is False or (type(include_id) in (int, float) and include_id == 0)):
        return None
    fields = [(f, v) for f, v in options.items() if f != "_id"]
    # mongomock: a value in (0, 1, True, False) is an inclusion flag; a falsy first one
    # would make the projection an exclusion (which refuses computed fields)
    if not fields or not all(isinstance(f, str) and v and not _is_flag(v) for f, v in fields):
        return None
    return [(f, compile_expression(v, True)) for f, v in fields]


def _is_flag(v: Any) -> bool:
    try:
        return v in (0, 1, True, False)
    except Exception:  # noqa: BLE001 - a value that cannot be compared is no flag
        return False


def _project_computed(docs: Iterable[dict], computed: list[tuple[str, Any]]) -> Iterator[dict]:
    """mongomock's ``$project`` of computed fields only: each document becomes the computed
    fields whose expression gives a value (a missing one is left out)."""
    for doc in docs:
        out = {}
        for field, node in computed:
            try:
                out[field] = node(doc, NO_VARS)
            except KeyError:
                pass
        yield out


def _match(docs: Iterable[dict], options: Any) -> Iterator[dict]:
    """mongomock's $match (its filter on each document with dates made naive UTC), with the
    filter's dates made naive once, not once per document, and the rows whose values
    :func:`.conditions.row_test` decides (``{count: {$gt: 1}}`` after a $group) decided
    without mongomock's filter."""
    spec = rawbson.patch_dt(options)
    match = mm_filtering.filter_applies
    decide = row_test(spec)
    for doc in docs:
        verdict = decide(doc) if decide is not None else None
        if verdict is None:
            verdict = match(spec, rawbson.patch_dt(doc))
        if verdict:
            yield doc


def run_stages(docs: Iterable[dict], stages: list[tuple[str, Any]], database: Any) -> Iterator[dict]:
    """Run pipeline stages over a stream: per-document stages stay lazy, $group/$count
    consume the stream, anything else runs mongomock's own handler on a list."""
    it: Iterator[dict] = iter(docs)
    for i, (op, arg) in enumerate(stages):
        if op in PER_DOC_STAGES:
            it = _per_doc(it, op, arg, database)
        elif op == "$limit" and _is_count(arg):
            it = itertools.islice(it, arg)
        elif op == "$skip" and _is_count(arg):
            it = itertools.islice(it, arg, None)
        elif op == "$group" and isinstance(arg, Mapping):
            it = iter(_group(it, arg))
        elif op == "$count":
            it = iter(_count(it, arg))
        elif op == "$sort" and isinstance(arg, Mapping) and all(
                isinstance(d, (int, float)) and not isinstance(d, bool) for d in arg.values()):
            nxt = stages[i + 1] if i + 1 < len(stages) else (None, None)
            top = nxt[1] if nxt[0] == "$limit" and _is_count(nxt[1]) else 0
            it = iter(_sort_stage(it, arg, top))
        elif op == "$facet" and isinstance(arg, Mapping):
            it = iter(_facet(list(it), arg, database))
        else:
            it = iter(_vanilla_stage(list(it), op, arg, database))
    return it


def _identity(doc: Any) -> Any:
    return doc


def _sort_stage(docs: Iterable[dict], options: Mapping, top: int = 0) -> list[dict]:
    """mongomock's $sort (same order, same stability) with :func:`sort_list`; only the
    first ``top`` documents when ``top`` > 0 (a $limit follows)."""
    return sort_list(list(docs), _identity, list(options.items()), top)


def primed(it: Iterator) -> Iterator:
    """Evaluate the first item now, so that most errors surface at aggregate() time."""
    first = next(it, _END)
    if first is _END:
        return iter(())
    return itertools.chain((first,), it)


def distinct_values(key: str, docs: Iterable[dict]) -> list:
    """mongomock's Cursor.distinct over a stream (collections' and cursors' distinct())."""
    unique = set()
    for x in docs:
        for values in mm_filtering.iter_key_candidates(key, x):
            if values is NOTHING:
                continue
            if not isinstance(values, (tuple, list)):
                values = [values]
            for value in values:
                unique.add(mm_helpers.hashdict(value) if isinstance(value, dict) else value)
    return [dict(v) if isinstance(v, mm_helpers.hashdict) else v for v in unique]

