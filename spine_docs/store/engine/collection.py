"""The engine's Collection: find, count, distinct, aggregate, writes and indexes.

Reads scan the stored BSON (an ``_id`` or unique-key lookup when the filter allows) and
decode only the fields the query needs; updates take the fast paths of :mod:`.updates`
and splice re-encoded fields into the stored bytes; everything else is mongomock's.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import bson
import pymongo
from bson.objectid import ObjectId
from bson.raw_bson import RawBSONDocument
from mongomock import collection as mm_collection
from mongomock import filtering as mm_filtering
from mongomock import helpers as mm_helpers
from mongomock import results as mm_results
from mongomock.command_cursor import CommandCursor
from mongomock.not_implemented import raise_for_feature as _raise_not_implemented
from mongomock.results import BulkWriteResult
from pymongo.errors import DuplicateKeyError, OperationFailure, WriteError

from . import collector, columns, rawbson
from .aggregation import PER_DOC_STAGES, distinct_values, primed, run_stages
from .bulk import BulkBuilder
from .cursor import Cursor
from .deps import filter_fields, pipeline_fields, projection_fields, top, union, update_fields
from .keys import is_simple
from .sorting import sort_list
from .stores import CollectionStore
from .updates import fast_apply, leaf_plan, patch_update, plain_field, update_plan


_MISSING = object()  # a leaf plan not made yet (see _update_with_plan)


def _first(entry: tuple) -> Any:
    return entry[0]


def _exact_id_spec(spec: Mapping) -> bool:
    """``{"_id": v}`` or ``{"_id": {"$in": [v, ...]}}`` of hashable simple values: the
    candidates :func:`_candidates` returns for it are exactly the matches."""
    if len(spec) != 1 or "_id" not in spec:
        return False
    v = spec["_id"]
    if is_simple(v):
        return True
    if isinstance(v, Mapping) and len(v) == 1 and "$in" in v:
        arg = v["$in"]
        return isinstance(arg, (list, tuple)) and all(is_simple(x) for x in arg)
    return False


def _candidates(store: CollectionStore, spec: Mapping, ordered: bool = True
                ) -> list[tuple[Any, bytes]]:
    """The (key, raw) pairs a filter can possibly match, in natural order (with
    ``ordered=False``, for callers that visit every match, ``{_id: {$in: [...]}}`` is a
    lookup per value instead of a pass over the collection)."""
    docs = store._documents
    if "_id" in spec:
        v = spec["_id"]
        if isinstance(v, Mapping) and len(v) == 1:
            (op, arg), = v.items()
            if op == "$eq" and is_simple(arg):
                v = arg
            elif op == "$in" and isinstance(arg, (list, tuple)) and all(is_simple(x) for x in arg):
                if not ordered:
                    return [(k, docs[k]) for k in dict.fromkeys(arg) if k in docs]
                wanted = set(arg)
                return [(k, r) for k, r in list(docs.items()) if k in wanted]
        if is_simple(v):
            raw = docs.get(v)
            return [] if raw is None else [(v, raw)]
    hit = store.unique_candidates(spec)
    if hit is not None:
        return hit
    return list(docs.items())


class Collection(mm_collection.Collection):
    """mongomock's Collection over a BSON-bytes store; what it changes and why is listed in
    the docstring of :mod:`spine_docs.store.engine`."""

    # ------------------------------------------------------------------ scanning
    def _scan(self, spec: Mapping | None, needed: set | None, *, patched: bool = False,
              ordered: bool = True, reading: bool = True) -> Iterator[tuple[Any, bytes, dict]]:
        """(key, raw, doc) of the documents matching ``spec``; ``doc`` holds at least the
        top-level fields ``needed`` (None: the whole document). ``ordered=False``: in any
        order (see :func:`_candidates`). ``reading=False`` (a write's scan): the column
        cache is used when current, never built (see :mod:`.columns`)."""
        store = self._store
        store._remove_expired_documents()
        if not spec:
            spec = {}
        elif not patched:
            spec = rawbson.patch_dt(spec)
        if not store._documents:
            if spec:
                mm_filtering.filter_applies(spec, {})  # validate the filter, as mongomock does
            return
        from_columns = columns.scan(store, spec, needed, build=reading)
        if from_columns is not None:
            yield from from_columns
            return
        items = _candidates(store, spec, ordered)
        if not spec or _exact_id_spec(spec):
            # no filter, or {"_id": v} / {"_id": {"$in": [...]}} whose hash lookup is the match
            id_only = needed is not None and needed <= {"_id"} and bool(spec)
            decode = rawbson.fields_decoder(needed)
            for key, raw in items:
                if id_only and type(key) is str:  # a string key is the _id itself
                    yield key, raw, {"_id": key}
                else:
                    yield key, raw, decode(raw)
            return
        match = mm_filtering.filter_applies
        ffields = filter_fields(spec)
        text = None
        if len(spec) == 1:
            (field, want), = spec.items()
            if type(want) is str and type(field) is str and not field.startswith("$") \
                    and "." not in field:
                # {field: "text"} (e.g. one site's documents): a string field equal to it
                # matches, a string field not equal does not; anything else (arrays, other
                # types, missing) is mongomock's to decide
                text = field, want
                real = match

                def match(spec, doc, _f=field, _w=want):  # noqa: F811
                    v = doc.get(_f)
                    if type(v) is str:
                        return v == _w
                    return real(spec, doc)
        if needed is None and ffields is not None:
            decode = rawbson.fields_decoder(ffields)
            for key, raw in items:  # filter on a partial decode, decode whole only matches
                if match(spec, decode(raw)):
                    yield key, raw, rawbson.decode_full(raw)
            return
        decode = rawbson.fields_decoder(union(needed, ffields))
        if text is not None:  # the same test as match(), without a call per document
            field, want = text
            for key, raw in items:
                doc = decode(raw)
                v = doc.get(field)
                if v == want if type(v) is str else real(spec, doc):
                    yield key, raw, doc
            return
        for key, raw in items:
            doc = decode(raw)
            if match(spec, doc):
                yield key, raw, doc

    def _iter_documents(self, filter):  # noqa: A002 - mongomock's name
        return (doc for _k, _r, doc in self._scan(filter, None))

    def _get_dataset(self, spec, sort, fields, as_class):
        return self._find_stream(spec, sort, fields)

    def _ensure_uniques(self, new_data):  # the store enforces unique indexes
        return None

    def _shaper(self, projection: Any):
        """doc -> what find() returns for it (``doc`` is a fresh partial decode)."""
        if projection is None or (isinstance(projection, Mapping) and not projection):
            return lambda doc: doc
        proj = (dict(projection) if isinstance(projection, Mapping)
                else mm_helpers.fields_list_to_dict(projection))
        plain = {k: v for k, v in proj.items() if k != "_id"}
        if plain and all(not isinstance(v, Mapping) and "." not in k and "$" not in k
                         for k, v in plain.items()) \
                and len(set(plain.values())) == 1 and next(iter(plain.values())):
            # a plain inclusion of top-level fields: mongomock's result (included fields in
            # document order, then _id unless excluded) without copying fresh values again
            include = set(plain)
            keep_id = bool(proj.get("_id", 1))

            def shape(doc):
                if doc.keys() <= include:  # nothing to drop, no _id to move last
                    return doc
                out = {k: v for k, v in doc.items() if k in include}
                if keep_id and "_id" in doc:
                    out["_id"] = doc["_id"]
                return out
            return shape
        return lambda doc: self._copy_only_fields(doc, proj, dict)

    def _find_stream(self, spec, sort, projection, skip: int = 0, limit: int = 0) -> Iterator[dict]:
        fields = projection_fields(projection)
        shape = self._shaper(projection)
        if not sort:
            it = self._scan(spec, fields)
            if skip or limit:
                it = itertools.islice(it, skip, skip + limit if limit else None)
            for _k, _r, doc in it:
                yield shape(doc)
            return
        sort = list(sort.items()) if isinstance(sort, Mapping) else list(sort)
        sort_fields = set()
        for key, _direction in sort:
            if key == "$natural":
                continue
            if key.startswith("$"):
                raise NotImplementedError(f"Sorting by {key} is not implemented in mongomock yet")
            sort_fields.add(top(key))
        raws = columns.sorted_raws(self._store, spec, sort, skip, limit)
        if raws is not None:  # sorted on the column cache
            decode = rawbson.fields_decoder(fields)
            for raw in raws:
                yield shape(decode(raw))
            return
        entries = [(doc, raw) for _k, raw, doc in self._scan(spec, sort_fields)]
        if any(key == "$natural" for key, _d in sort):
            for key, direction in reversed(sort):
                if key == "$natural":
                    if direction < 0:
                        entries.reverse()
                    continue
                entries = sort_list(entries, _first, [(key, direction)])
        else:
            entries = sort_list(entries, _first, sort, skip + limit if limit else 0)
        selected = entries[skip:(skip + limit) if limit else None]
        del entries
        decode = rawbson.fields_decoder(fields)
        for _doc, raw in selected:
            yield shape(decode(raw))

    # ------------------------------------------------------------------ reads
    def find(self, filter=None, projection=None, skip=0, limit=0, no_cursor_timeout=False,
             cursor_type=None, sort=None, allow_partial_results=False, oplog_replay=False,
             modifiers=None, batch_size=0, manipulate=True, collation=None, session=None,
             max_time_ms=None, allow_disk_use=False, hint=None, comment=None, **kwargs):
        spec = {} if filter is None else filter
        mm_collection.validate_is_mapping("filter", spec)
        for kwarg, value in kwargs.items():
            if value:
                raise OperationFailure("Unrecognized field '%s'" % kwarg)
        return Cursor(self, spec, sort, projection, skip, limit, collation=collation) \
            .max_time_ms(max_time_ms).allow_disk_use(allow_disk_use)

    def count_documents(self, filter, **kwargs):
        kwargs.pop("comment", None)
        if kwargs.pop("collation", None):
            _raise_not_implemented("collation", "The collation argument of count_documents is "
                                   "valid but has not been implemented in mongomock yet")
        if kwargs.pop("session", None):
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        skip = kwargs.pop("skip", 0)
        if "limit" in kwargs:
            limit = kwargs.pop("limit")
            if not isinstance(limit, (int, float)):
                raise OperationFailure("the limit must be specified as a number")
            if limit <= 0:
                raise OperationFailure("the limit must be positive")
            limit = int(limit)
        else:
            limit = None
        unknown = set(kwargs) - {"maxTimeMS", "hint"}
        if unknown:
            raise OperationFailure("unrecognized field '%s'" % unknown.pop())
        if not filter:
            self._store._remove_expired_documents()
            n = len(self._store._documents)
        else:
            n = sum(1 for _x in self._scan(filter, set()))
        count = max(n - skip, 0)
        return count if limit is None else min(count, limit)

    def distinct(self, key, filter=None, session=None, comment=None, hint=None, **kwargs):
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        if not isinstance(key, str):
            raise TypeError("cursor.distinct key must be a string")
        return distinct_values(key, (doc for _k, _r, doc in self._scan(filter or {}, {top(key)})))

    def aggregate(self, pipeline, session=None, **unused_kwargs):
        if session:
            raise NotImplementedError("Mongomock does not handle sessions yet")
        stages = [(op, arg) for stage in pipeline for op, arg in stage.items()]
        needed = pipeline_fields(stages)
        spec: Mapping = {}
        if stages and stages[0][0] == "$match" and isinstance(stages[0][1], Mapping):
            spec = stages[0][1]
            stages = stages[1:]
        leading = columns.leading(self._store, spec, stages, needed)  # on the column cache
        if leading is not None:
            source, stages = leading
        else:
            source = (doc for _k, _r, doc in self._scan(spec, needed))
        out = run_stages(source, stages, self.database)
        if all(op in PER_DOC_STAGES or op in ("$limit", "$skip") for op, _a in stages):
            return CommandCursor(primed(out))  # documents flow out one by one
        with collector.paused():  # many short-lived objects (see .collector)
            return CommandCursor(list(out))

    def options(self, session=None, comment=None):
        if not self._store.is_created:
            return {}
        return copy.deepcopy(self._store.options)

    # ------------------------------------------------------------------ writes
    def _insert(self, data, session=None, ordered=True):
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        if not isinstance(data, Mapping):
            return super()._insert(data, session, ordered=ordered)
        if isinstance(data, RawBSONDocument) and data.raw[5:9] == b"_id\x00" \
                and data.raw[4] in (0x02, 0x07):
            # a string or ObjectId _id first (what ingest inserts): no inflating the document
            raw = data.raw
            object_id = key = rawbson.raw_id(raw)
        else:
            if not isinstance(data, RawBSONDocument):
                if not all(isinstance(k, str) for k in data):
                    raise ValueError("Document keys must be strings")
                for k in data:  # nested keys with NUL: bson.encode raises the same InvalidDocument
                    if k.startswith("$") or "\0" in k:
                        raise bson.errors.InvalidDocument(
                            f'Top-level field names cannot start with the "$" sign nor contain '
                            f'the null character (found: {k})')
                if "_id" not in data:
                    data["_id"] = ObjectId()
            elif "_id" not in data:
                raise ValueError("a RawBSONDocument to insert must have an _id")
            object_id = data["_id"]
            key = rawbson.store_key(rawbson.materialize(object_id))
            raw = rawbson.encode(data)
        store = self._store
        if key in store._documents:
            raise DuplicateKeyError(
                f"E11000 duplicate key error collection: {self.name} index: _id_ dup key: "
                f"{{ _id: {object_id!r} }}", 11000)
        store.put(key, raw)
        return object_id

    # pymongo inserts a RawBSONDocument as it is (ingest sends new files' documents so);
    # mongomock refuses anything but a mutable mapping
    def insert_one(self, document, bypass_document_validation=False, session=None, comment=None):
        if isinstance(document, RawBSONDocument):
            return mm_results.InsertOneResult(self._insert(document, session), acknowledged=True)
        return super().insert_one(document, bypass_document_validation=bypass_document_validation,
                                  session=session)

    def insert_many(self, documents, ordered=True, bypass_document_validation=False, session=None,
                    comment=None):
        if isinstance(documents, Iterable) and not isinstance(documents, Mapping):
            documents = list(documents)
            if documents and any(isinstance(d, RawBSONDocument) for d in documents):
                for d in documents:
                    if not isinstance(d, RawBSONDocument):
                        mm_collection.validate_is_mutable_mapping("document", d)
                return mm_results.InsertManyResult(self._insert(documents, session, ordered=ordered),
                                                   acknowledged=True)
        return super().insert_many(documents, ordered=ordered,
                                   bypass_document_validation=bypass_document_validation,
                                   session=session)

    def update_one(self, filter, update, upsert=False, bypass_document_validation=False,
                   collation=None, array_filters=None, hint=None, session=None, let=None,
                   sort=None, comment=None):
        if sort is not None:
            raise NotImplementedError("update_one(sort=...) is not supported by the mongomock shim")
        return super().update_one(filter, update, upsert=upsert,
                                  bypass_document_validation=bypass_document_validation,
                                  collation=collation, array_filters=array_filters, hint=hint,
                                  session=session, let=let)

    def update_many(self, filter, update, upsert=False, array_filters=None,
                    bypass_document_validation=False, collation=None, hint=None, session=None,
                    let=None, comment=None):
        return super().update_many(filter, update, upsert=upsert, array_filters=array_filters,
                                   bypass_document_validation=bypass_document_validation,
                                   collation=collation, hint=hint, session=session, let=let)

    def replace_one(self, filter, replacement, upsert=False, bypass_document_validation=False,
                    session=None, hint=None, collation=None, let=None, sort=None, comment=None):
        if sort is not None:
            raise NotImplementedError("replace_one(sort=...) is not supported by the mongomock shim")
        if collation:
            _raise_not_implemented("collation", "collation is not implemented in mongomock")
        return super().replace_one(filter, replacement, upsert=upsert,
                                   bypass_document_validation=bypass_document_validation,
                                   session=session, hint=hint)

    def delete_one(self, filter, collation=None, hint=None, session=None, let=None, comment=None):
        return super().delete_one(filter, collation=collation, hint=hint, session=session)

    def delete_many(self, filter, collation=None, hint=None, session=None, let=None, comment=None):
        return super().delete_many(filter, collation=collation, hint=hint, session=session)

    def _update(self, spec, document, upsert=False, manipulate=False, multi=False,
                check_keys=False, hint=None, session=None, collation=None, let=None,
                array_filters=None, **kwargs):
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        if hint:
            raise NotImplementedError("The hint argument of update is valid but has not been "
                                      "implemented in mongomock yet")
        if collation:
            _raise_not_implemented("collation", "The collation argument of update is valid but "
                                   "has not been implemented in mongomock yet")
        if array_filters:
            _raise_not_implemented("array_filters", "Array filters are not implemented in "
                                   "mongomock yet.")
        if let:
            _raise_not_implemented("let", "The let argument of update is valid but has not been "
                                   "implemented in mongomock yet")
        spec = rawbson.patch_dt(spec)
        document = patch_update(document)
        mm_collection.validate_is_mapping("spec", spec)
        mm_collection.validate_list_or_mapping("document", document)
        if isinstance(document, list):
            mm_collection._validate_document_stages(document)
        if self.database.client.server_info()["versionArray"] < [5]:
            for operator in mm_collection._updaters:
                if not document.get(operator, True):
                    raise WriteError("'%s' is empty. You must specify a field like so: "
                                     "{%s: {<field>: ...}}" % (operator, operator))
        self._plan_for = None if isinstance(document, list) else (document, update_plan(document))
        try:
            return self._update_with_plan(spec, document, upsert, multi, session)
        finally:
            self._plan_for = None

    def _update_with_plan(self, spec, document, upsert, multi, session):
        updated_existing = False
        upserted_id = None
        num_updated = 0
        num_matched = 0
        touched = update_fields(document)
        needed = None if touched is None else union({"_id"}, filter_fields(spec))
        if needed is not None:
            wanted = {f.encode("utf-8", "surrogatepass") for f in touched}
        memo = self._plan_for
        leaves: Any = _MISSING  # made at the first match (an upsert may match nothing)
        for key, raw, doc in self._scan(spec, needed, patched=True, ordered=not multi,
                                        reading=False):
            num_matched += 1
            updated_existing = True
            if leaves is _MISSING:
                leaves = leaf_plan(memo[1]) if memo is not None and memo[0] is document else None
            if leaves is not None:  # e.g. a re-scan's "seen again": a few leaves, in place
                new_raw = rawbson.patch_leaves(raw, leaves)
                if new_raw is not None:
                    if new_raw != raw:
                        self._store.put(key, new_raw, touched, in_place=True)
                        num_updated += 1
                    if not multi:
                        break
                    continue
            if needed is not None:  # add the fields the update touches to the filter's
                spans = rawbson.locate(raw, wanted)
                if spans:
                    for k, v in rawbson.decode_spans(raw, spans.values()).items():
                        if k not in doc:
                            doc[k] = v
            original_id = doc.get("_id")
            if isinstance(document, list):
                self._apply_update_pipeline(doc, document, session)
            else:
                self._apply_update_document(doc, spec, document, False)
            if needed is None:
                new_raw = rawbson.encode(doc)
            else:  # re-encode only the fields the update can change, keep the others' bytes
                new_raw = rawbson.splice(raw, {k: v for k, v in doc.items() if k in touched}, touched,
                                  spans)
            if new_raw != raw:
                if doc.get("_id") != original_id:
                    raise WriteError("After applying the update, the (immutable) field '_id' was "
                                     "found to have been altered to _id: {}".format(doc.get("_id")))
                self._store.put(key, new_raw, touched if needed is not None else None)
                num_updated += 1
            if not multi:
                break
        if upsert and not num_matched:
            if spec.get("_id") is not None:
                _id = spec["_id"]
            elif not isinstance(document, list) and document.get("_id") is not None:
                _id = document["_id"]
            else:
                _id = ObjectId()
            to_insert = self._expand_dots(dict(spec, _id=_id))
            to_insert, _unused = self._discard_operators(to_insert)
            if isinstance(document, list):
                self._apply_update_pipeline(to_insert, document, session)
            else:
                self._apply_update_document(to_insert, spec, document, True)
            upserted_id = self._insert(to_insert)
            num_matched += 1
            num_updated += 1
        return {
            "connectionId": self.database.client._id,
            "err": None,
            "n": num_matched,
            "nModified": num_updated if updated_existing else 0,
            "ok": 1,
            "upserted": upserted_id,
            "updatedExisting": updated_existing,
        }

    _plan_for: Any = None  # (update document, its update_plan) while _update runs

    def _apply_update_document(self, existing_document, spec, document, was_insert):
        """mongomock's, except that ``$set``/``$setOnInsert``/``$inc``/``$push`` of fields
        reached through embedded documents only (``a``, ``a.b.c``; see :func:`fast_apply`)
        are applied here directly (mongomock encoded and copied every value one by one; here
        the whole document is encoded once afterwards, which validates the values the same
        way), and ``$set``/``$setOnInsert`` of plain top-level fields are plain assignments
        in any case. Operators are still applied in the order given. The plan is made once
        per update document (``update_many`` applies one update to many documents)."""
        memo = self._plan_for
        plan = memo[1] if memo is not None and memo[0] is document else update_plan(document)
        if plan is None:
            return super()._apply_update_document(existing_document, spec, document, was_insert)
        chunk: dict = {}
        for op, arg, targets in plan:
            if targets is not None:
                if chunk:
                    super()._apply_update_document(existing_document, spec, chunk, was_insert)
                    chunk = {}
                if fast_apply(existing_document, op, targets, was_insert):
                    continue
            if op in ("$set", "$setOnInsert") and isinstance(arg, Mapping):
                fast = [(k, v) for k, v in arg.items() if plain_field(k)]
                if fast:
                    if chunk:
                        super()._apply_update_document(existing_document, spec, chunk, was_insert)
                        chunk = {}
                    if op == "$set" or was_insert:
                        for k, v in fast:
                            existing_document[k] = v
                    slow = {k: v for k, v in arg.items() if not plain_field(k)}
                    if slow:
                        chunk[op] = slow
                    continue
            chunk[op] = arg
        if chunk:
            super()._apply_update_document(existing_document, spec, chunk, was_insert)
        return None

    def _delete(self, filter, collation=None, hint=None, multi=False, session=None):
        if hint:
            raise NotImplementedError("The hint argument of delete is valid but has not been "
                                      "implemented in mongomock yet")
        if collation:
            _raise_not_implemented("collation", "The collation argument of delete is valid but "
                                   "has not been implemented in mongomock yet")
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        filter = rawbson.patch_dt(filter)
        if filter is None:
            filter = {}
        if not isinstance(filter, Mapping):
            filter = {"_id": filter}
        deleted = 0
        for key, _raw, _doc in self._scan(filter, {"_id"}, reading=False):
            del self._store[key]
            deleted += 1
            if not multi:
                break
        return {"connectionId": self.database.client._id, "n": deleted, "ok": 1.0, "err": None}

    def bulk_write(self, requests, ordered=True, bypass_document_validation=None, session=None,
                   comment=None, let=None):
        # bypass_document_validation: validators are recorded, never enforced, so it is moot
        if session:
            _raise_not_implemented("session", "Sessions are valid in MongoDB 3.6 and newer; "
                                   "however Mongomock does not support them yet.")
        if let is not None:
            raise NotImplementedError("bulk_write(let=...) is not supported by the mongomock shim")
        bulk = BulkBuilder(self, ordered=ordered)
        for operation in requests:
            operation._add_to_bulk(bulk)
        return BulkWriteResult(bulk.execute(), True)

    # ------------------------------------------------------------------ indexes
    def create_index(self, key_or_list, cache_for=300, session=None, **kwargs):
        if session:
            _raise_not_implemented("session", "Mongomock does not handle sessions yet")
        if isinstance(key_or_list, Mapping):
            index_list = list(key_or_list.items())
        else:
            index_list = [tuple(kv) for kv in mm_helpers.create_index_list(key_or_list)]
        for k in ("background", "comment", "maxTimeMS", "commitQuorum", "ns", "v"):
            kwargs.pop(k, None)
        unique = kwargs.pop("unique", False)
        sparse = kwargs.pop("sparse", False)
        name = kwargs.pop("name", None) or mm_helpers.gen_index_name(index_list)
        index_dict: dict = {"key": index_list}
        if sparse:
            index_dict["sparse"] = True
        if unique:
            index_dict["unique"] = True
        for k, v in kwargs.items():
            if v is not None:
                index_dict[k] = copy.deepcopy(v)
        rawbson.encode({k: v for k, v in index_dict.items() if k != "key"})  # options must be BSON
        store = self._store
        existing = store.indexes.get(name)
        if existing is not None:
            if existing == index_dict:
                return name
            raise OperationFailure("An existing index has the same name as the requested index. "
                                   "Requested index: %s, existing index: %s"
                                   % (dict(index_dict, name=name), dict(existing, name=name)), 86)
        for other_name, other in store.indexes.items():
            if list(other["key"]) == index_list and \
                    {k: v for k, v in other.items() if k != "key"} == \
                    {k: v for k, v in index_dict.items() if k != "key"}:
                raise OperationFailure("Index already exists with a different name: %s"
                                       % other_name, 85)
        if unique:
            store.create_unique_index(name, index_dict)
        else:
            store.create_index(name, index_dict)
        return name

    def create_indexes(self, indexes, session=None, comment=None, **kwargs):
        names = []
        for index in indexes:
            if not isinstance(index, pymongo.operations.IndexModel):
                raise TypeError("%s is not an instance of pymongo.operations.IndexModel" % index)
            doc = dict(index.document)
            key = list(doc.pop("key").items())
            names.append(self.create_index(key, session=session, **doc))
        return names

    def with_options(self, codec_options=None, read_preference=None, write_concern=None,
                     read_concern=None):
        other = super().with_options(codec_options, read_preference, write_concern, read_concern)
        if other is self:
            return self
        return Collection(other.database, other.name, other._db_store,
                           write_concern=other._write_concern, read_concern=other._read_concern,
                           read_preference=other._read_preference,
                           codec_options=other._codec_options)

