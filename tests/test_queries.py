"""spine_docs.queries: filters, facets, keyset pages, exports, analytics, attribute dictionary,
replicas and saved queries, checked against expectations computed in plain Python."""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from unittest import mock

import bson
import mongomock
import pymongo
import pytest
from bson import json_util
from pymongo.errors import ExecutionTimeout

from spine_docs import convert, queries as q, spine, store
from spine_docs.queries import AttrFilter, Filter

UTC = timezone.utc
MONDAY = datetime(2024, 3, 4, 9, 30, tzinfo=UTC)  # ISO week 2024-W10


# ---------------------------------------------------------------------------------------------
# documents of the design.md shape
# ---------------------------------------------------------------------------------------------


def make_doc(path: str, *, site: str = "nersc", size: int | None = 1000,
             mtime: datetime | None = MONDAY, status: str = "ok",
             spine_version: str | None = "0.5.0", model: str | None = "uresnet",
             dataset: str | None = "mpvmpr", detector: str | None = None,
             run: int | None = None, run_max: int | None = None, subrun: int | None = None,
             subrun_max: int | None = None, num_events: int | None = None,
             attrs: dict | None = None, fingerprint: str | None = None,
             sha256: str | None = None) -> dict:
    """A file document as extract writes it (promoted fields always present)."""
    attrs = dict(attrs or {})
    if mtime is not None:
        mtime = mtime.replace(microsecond=mtime.microsecond // 1000 * 1000)
    return {
        "_id": f"{site}:{path}", "site": site, "path": path,
        "name": os.path.basename(path), "dir": os.path.dirname(path),
        "size": size, "mtime": mtime,
        "checksum": {"sha256": sha256} if sha256 else None,
        "status": status, "error": None if status == "ok" else "boom",
        "spine_version": spine_version, "spine_version_key": spine.semver_key(spine_version),
        "prod_version": None, "model": model, "dataset": dataset, "detector": detector,
        "config": None, "run": run, "run_max": run_max, "subrun": subrun,
        "subrun_max": subrun_max, "event_min": None, "event_max": None,
        "num_events": num_events, "inputs": [], "inputs_count": 0,
        "format": None, "format_version": None, "complete": status == "ok",
        "attrs": {convert.escape_key(k): v for k, v in attrs.items()},
        "attr_types": {convert.escape_key(k): convert.bson_type_name(v) for k, v in attrs.items()},
        "info": {}, "cfg": None, "cfg_error": None, "sidecar": None, "job": None,
        "structure": {"items": [], "count": 0, "truncated": False},
        "provenance": {}, "fingerprint": fingerprint,
        "ingest": {"first_seen": MONDAY, "last_seen": MONDAY, "times_seen": 1,
                   "extractor_version": "test", "run_id": "r1", "history": []},
    }


SITES = ["nersc", "s3df"]
DATASETS = ["mpvmpr", "bnb", None]
MODELS = ["uresnet", "full_chain", "uresnet", None]
VERSIONS = ["0.4.2", "0.5.0", "0.5.0rc1", "0.6.1", None]
STATUSES = ["ok", "ok", "ok", "incomplete", "ok", "error"]


def catalog_docs(n: int = 37) -> list[dict]:
    """A catalog with ties and nulls in every sortable field."""
    docs = []
    for i in range(n):
        docs.append(make_doc(
            f"/data/{DATASETS[i % 3] or 'misc'}/file_{i:03d}.h5",
            site=SITES[i % 2],
            size=None if i % 11 == 10 else 1000 * (i % 6) + 7,
            mtime=None if i % 7 == 6 else MONDAY + timedelta(hours=13 * (i % 9)),
            status=STATUSES[i % 6],
            spine_version=VERSIONS[i % 5],
            model=MODELS[i % 4],
            dataset=DATASETS[i % 3],
            run=None if i % 3 == 2 else 1 + (i // 3) % 4,
            subrun=None if i % 3 == 2 else i % 5,
            num_events=None if i % 4 == 3 else 10 * (i % 5),
            attrs={"version": VERSIONS[i % 5] or "?", "index": i,
                   "weight": i / 4, "a.b": i % 2 == 0},
            fingerprint=f"fp{i % 12:02d}",
        ))
    return docs


@pytest.fixture
def catalog_db(db):
    """conftest's ``db``: a fresh catalog on every backend (mongomock, embedded, server)."""
    return db


def load(db, docs):
    with store.writing(db):
        db["files"].insert_many([dict(d) for d in docs])
    return docs


@pytest.fixture
def cat(catalog_db):
    return catalog_db, load(catalog_db, catalog_docs())


def ids(docs):
    return sorted(d["_id"] for d in docs)


def found(db, flt):
    return sorted(d["_id"] for d in db["files"].find(flt.to_mongo(), {"_id": 1}))


# ---------------------------------------------------------------------------------------------
# values and the Filter model
# ---------------------------------------------------------------------------------------------


def test_coerce_value_typed_and_guessed():
    assert q.coerce_value("12", "int") == 12 and isinstance(q.coerce_value("12", "int"), int)
    assert q.coerce_value("12", "double") == 12.0 and isinstance(q.coerce_value("12", "double"), float)
    assert q.coerce_value("1e3", "long") == 1000
    assert q.coerce_value("2.5", "int") == 2.5
    assert q.coerce_value("12", "string") == "12"
    assert q.coerce_value("yes", "bool") is True and q.coerce_value("0", "bool") is False
    assert q.coerce_value("2024-03-05", "date") == datetime(2024, 3, 5, tzinfo=UTC)
    assert q.coerce_value(str(2**64 - 1), "decimal") == bson.Decimal128(str(2**64 - 1))
    assert q.coerce_value("null", "null") is None
    assert q.coerce_value("12") == 12 and q.coerce_value("1.5") == 1.5
    assert q.coerce_value("true") is True and q.coerce_value("null") is None
    assert q.coerce_value('"12"') == "12" and q.coerce_value("abc") == "abc"
    for text, label in [("x", "int"), ("maybe", "bool"), ("3rd", "date"), ("1", "null")]:
        with pytest.raises(q.QueryError):
            q.coerce_value(text, label)


def test_attr_filter_parse_and_escaping():
    f = AttrFilter.parse_expr("a.b>=0.5")
    assert (f.key, f.op, f.value) == ("a.b", "gte", 0.5)
    assert f.to_mongo() == {"attrs.a%2Eb": {"$gte": 0.5}}
    assert AttrFilter(key="$x", op="exists").to_mongo() == {"attrs.%24x": {"$exists": True}}
    assert AttrFilter(key="", op="eq", value=1).field == "attrs.%"
    assert AttrFilter.parse_expr("v in 1, 2,x").value == [1, 2, "x"]
    assert AttrFilter.parse_expr("v=12", types={"v": "string"}).value == "12"
    assert AttrFilter.parse_expr("v~^a").to_mongo() == {"attrs.v": {"$regex": "^a"}}
    assert AttrFilter.parse_expr("v?").to_mongo() == {"attrs.v": {"$exists": True}}
    assert AttrFilter.parse_expr("!v").to_mongo() == {"attrs.v": {"$exists": False}}
    assert AttrFilter.parse_expr("v != x").op == "ne"
    with pytest.raises(q.QueryError):
        AttrFilter.parse_expr("no operator here")
    with pytest.raises(ValueError):
        AttrFilter(key="v", op="regex", value="(")
    with pytest.raises(ValueError):
        AttrFilter(key="v", op="between", value=1)


# What each expression means: quoting gives exactly the text inside; nothing is read as
# another condition than the one written.
EXPR_MEANINGS = [
    ("x>'>5'", {"attrs.x": {"$gt": ">5"}}),
    ('x>">5"', {"attrs.x": {"$gt": ">5"}}),
    ('k=""', {"attrs.k": {"$eq": ""}}),
    ("k=''", {"attrs.k": {"$eq": ""}}),
    ('k="12"', {"attrs.k": {"$eq": "12"}}),
    ("k~'=x'", {"attrs.k": {"$regex": "=x"}}),
    ('k~"a"', {"attrs.k": {"$regex": "a"}}),
    ("k in '>5', 6, \"a\\,b\"", {"attrs.k": {"$in": [">5", 6, "a,b"]}}),
    ("comment=made in Italy", {"attrs.comment": {"$eq": "made in Italy"}}),
    ("title = what?", {"attrs.title": {"$eq": "what?"}}),
    ("k>-5", {"attrs.k": {"$gt": -5}}),
    ("k==5", {"attrs.k": {"$eq": 5}}),
    ("my key <= 3", {"attrs.my key": {"$lte": 3}}),
    ("!k=1", {"attrs.!k": {"$eq": 1}}),
    ("  k?  ", {"attrs.k": {"$exists": True}}),
    ("k=a\nb", {"attrs.k": {"$eq": "a\nb"}}),
]


@pytest.mark.parametrize("expr,query", EXPR_MEANINGS)
def test_attr_expression_meanings(expr, query):
    assert AttrFilter.parse_expr(expr).to_mongo() == query


def test_a_quoted_value_is_text_whatever_the_keys_type():
    assert AttrFilter.parse_expr('n="12"', {"n": "int"}).value == "12"
    assert AttrFilter.parse_expr("n=12", {"n": "int"}).value == 12
    with pytest.raises(q.QueryError, match="not a valid int"):
        AttrFilter.parse_expr("n=twelve", {"n": "int"})


@pytest.mark.parametrize("expr,needle", [
    ("x>>5", "the value '>5' starts with '>'; quote it (x>'>5')"),
    ("k===5", "the value '=5' starts with '='"),
    ("k=>5", "the value '>5' starts with '>'"),
    ("k<>5", "the value '>5'"),
    ("k=!x", "the value '!x' starts with '!'"),
    ("k~=x", "the value '=x'"),
    ("k in >5,6", "quote it (k in '>5')"),
    ("k>=", "has no value after '>='"),
    ("k=", 'write k="" for the empty string'),
    ("k~", "has no value after '~'"),
    ("k in ,", "has no values after 'in'"),
    ("!", "has no key"),
    ("?", "has no key"),
    ("=5", "has no key"),
    (" >= 5", "has no key"),
    ("!k?", "cannot parse"),
    ("k", "cannot parse"),
    ("", "cannot parse"),
])
def test_attr_expressions_that_would_be_misread_are_refused(expr, needle):
    with pytest.raises(q.QueryError) as err:
        AttrFilter.parse_expr(expr)
    assert needle in str(err.value) and "\n" not in str(err.value)


# Every attribute operator as a user types it, with the query document and the summary expected
# (written out here, independently of ATTR_OP_TABLE).
OP_ROUND_TRIPS = [
    ("eq", "k=5", {"attrs.k": {"$eq": 5}}, "k = 5"),
    ("eq", "k == x", {"attrs.k": {"$eq": "x"}}, "k = x"),
    ("ne", "k!=x", {"attrs.k": {"$ne": "x"}}, "k != x"),
    ("gt", "k>1.5", {"attrs.k": {"$gt": 1.5}}, "k > 1.5"),
    ("gte", "a.b >= 2", {"attrs.a%2Eb": {"$gte": 2}}, "a.b >= 2"),
    ("lt", "k<-1", {"attrs.k": {"$lt": -1}}, "k < -1"),
    ("lte", "k<=true", {"attrs.k": {"$lte": True}}, "k <= true"),
    ("in", "k in 1, x,null", {"attrs.k": {"$in": [1, "x", None]}}, 'k in [1,"x",null]'),
    ("regex", "k~^a.b$", {"attrs.k": {"$regex": "^a.b$"}}, "k ~ ^a.b$"),
    ("exists", "k?", {"attrs.k": {"$exists": True}}, "has k"),
    ("exists", "!k", {"attrs.k": {"$exists": False}}, "no k"),
]


def test_every_attr_op_round_trips():
    assert {op for op, *_ in OP_ROUND_TRIPS} == set(q.ATTR_OPS), "a new operator needs a line here"
    for op, expr, query, text in OP_ROUND_TRIPS:
        f = AttrFilter.parse_expr(expr)
        assert f.op == op, expr
        assert f.to_mongo() == query, expr
        assert f.describe() == text, expr
        flt = Filter(attr_filters=[f])
        assert flt.to_mongo() == query and flt.describe() == text
        assert Filter.from_params(flt.to_params()) == flt


def test_every_spelling_in_the_operator_table_parses():
    for op in q.ATTR_OP_TABLE:
        if op.takes == "flag":
            true_mark, false_mark = op.symbols
            assert AttrFilter.parse_expr(f"k{true_mark}") == AttrFilter(key="k", op=op.name, value=True)
            assert AttrFilter.parse_expr(f"{false_mark}k") == AttrFilter(key="k", op=op.name, value=False)
            continue
        for sym in op.symbols:
            space = " " if sym.isalpha() else ""
            f = AttrFilter.parse_expr(f"k{space}{sym}{space}7")
            assert (f.key, f.op) == ("k", op.name), sym


def test_operator_labels():
    # the explorer's picker (app/explorer_ui.py ATTR_OP_LABELS); the attribute page lists them
    # reversed, so that "exists" is its default
    labels = {op.name: op.label for op in q.ATTR_OP_TABLE}
    assert list(labels.items()) == [
        ("eq", "="), ("ne", "≠"), ("gt", ">"), ("gte", "≥"), ("lt", "<"), ("lte", "≤"),
        ("in", "in (a, b, ...)"), ("regex", "matches regex"), ("exists", "exists")]


WEIRD_KEYS = ["a.b", "$x", "%", "", "nul\x00key", "ünï cødé", "comma,key", "x%2Ey", "[0]"]


@pytest.mark.parametrize("flt", [
    Filter(),
    Filter(model=["uresnet", None], dataset=["a,b", "back\\slash", "(none)", ""], site=["nersc"]),
    Filter(version_min="0.5", version_max="0.6.1rc2", run_min=1, run_max=1, subrun_min=0,
           events_min=0, events_max=10**12),
    Filter(mtime_from=date(2024, 3, 1), mtime_to=datetime(2024, 3, 5, 12, 30, 1, 250000, tzinfo=UTC)),
    Filter(mtime_from=datetime(2024, 3, 1, 8, tzinfo=timezone(timedelta(hours=2)))),
    Filter(path_contains="file_0[1]", path_regex=r"^/data/(bnb|mpvmpr)/"),
    Filter(attr_filters=[AttrFilter(key=k, op="eq", value=v) for k, v in zip(
        WEIRD_KEYS, [1, 2.0, 2**40, "12", True, None, datetime(2024, 3, 5, tzinfo=UTC),
                     bson.Decimal128("18446744073709551615"), [1, "x"]])]),
    Filter(attr_filters=[AttrFilter(key="k", op="in", value=[1, "1", 1.5]),
                         AttrFilter(key="k", op="exists", value=False),
                         AttrFilter(key="r", op="regex", value="^a,b\\.")]),
    Filter(where={"size": {"$gt": 5}, "checksum.sha256": {"$exists": True},
                  "mtime": {"$lt": datetime(2024, 1, 1, tzinfo=UTC)}}),
])
def test_filter_params_round_trip(flt):
    params = flt.to_params()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())
    assert set(params) <= q.PARAM_KEYS
    back = Filter.from_params(params)
    assert back == flt
    assert back.to_mongo() == flt.to_mongo()
    assert back.to_params() == params
    # the URL may carry other state, and repeated parameters come as lists
    noisy = {**{k: [v] for k, v in params.items()}, "page": "3", "sort": "-mtime"}
    assert Filter.from_params(noisy) == flt
    assert isinstance(flt.describe(), str) and "\n" not in flt.describe()


def test_filter_from_params_text():
    f = Filter.from_params({"model": "uresnet,(none)", "run_min": "3", "mtime_to": "2024-03-05",
                            "attr": '[["a.b","gte",1]]', "where": '{"size": {"$gt": 1}}'})
    assert f.model == ["uresnet", None]
    assert f.run_min == 3 and f.mtime_to == date(2024, 3, 5)
    assert f.attr_filters == [AttrFilter(key="a.b", op="gte", value=1)]
    assert f.where == {"size": {"$gt": 1}}
    assert Filter.from_params({"model": "", "path_regex": ""}) == Filter()


def test_filter_describe():
    assert Filter().describe() == "all files"
    text = Filter(model=["uresnet"], dataset=["a", None], version_min="0.5", run_min=3,
                  attr_filters=[AttrFilter(key="a.b", op="gte", value=1)]).describe()
    assert text == ("model = uresnet; dataset in {a, (none)}; spine_version >= 0.5; runs 3..; "
                    "a.b >= 1")


@pytest.mark.parametrize("bad", [
    {"path_regex": "("},
    {"where": "[1, 2]"},
    {"where": "{not json"},
    {"where": {"$where": "this.size > 1"}},
    {"where": {"$expr": {"$function": {"body": "x", "args": [], "lang": "js"}}}},
    {"run_min": 5, "run_max": 4},
    {"events_min": 5, "events_max": 4},
    {"version_min": "0.6", "version_max": "0.5"},
    {"version_min": "not a version"},
    {"mtime_from": "2024-03-05", "mtime_to": "2024-03-04"},
    {"mtime_from": "yesterday"},
    {"attr_filters": [["k", "regex", 3]]},
    {"unknown_field": 1},
])
def test_filter_validation(bad):
    with pytest.raises(ValueError):
        Filter(**bad)


# ---- statuses: a known set ----


def test_status_is_one_of_the_known_set():
    assert Filter(status=["ok", "incomplete", "error", None]).to_mongo() == \
        {"status": {"$in": ["ok", "incomplete", "error", None]}}
    for bad in (["bogus"], ["ok", "OK"], "okay"):
        with pytest.raises(ValueError, match=r"choose from ok, incomplete, error, missing, changed, corrupt"):
            Filter(status=bad)
    with pytest.raises(ValueError, match="'bogus'"):
        Filter.from_params({"status": "ok,bogus"})


# ---- where: a JSON object of MongoDB query operators ----


# MongoDB 6.0's query operators, from https://www.mongodb.com/docs/v6.0/reference/operator/query/
MONGODB_6_QUERY_OPERATORS = {
    "$eq", "$gt", "$gte", "$in", "$lt", "$lte", "$ne", "$nin",             # comparison
    "$and", "$not", "$nor", "$or",                                         # logical
    "$exists", "$type",                                                    # element
    "$expr", "$jsonSchema", "$mod", "$regex", "$text", "$where",           # evaluation
    "$geoIntersects", "$geoWithin", "$near", "$nearSphere",                # geospatial
    "$box", "$center", "$centerSphere", "$geometry", "$maxDistance", "$minDistance", "$polygon",
    "$all", "$elemMatch", "$size",                                         # array
    "$bitsAllClear", "$bitsAllSet", "$bitsAnyClear", "$bitsAnySet",        # bitwise
    "$comment", "$rand",                                                   # miscellaneous
}
SERVER_SIDE_JAVASCRIPT = {"$where", "$function", "$accumulator"}

# one sample per operator, as a user would write it (each valid on MongoDB 6.0)
WHERE_SAMPLES = {
    "$eq": {"run": {"$eq": 1}}, "$gt": {"run": {"$gt": 1}}, "$gte": {"run": {"$gte": 1}},
    "$in": {"run": {"$in": [1, 2]}}, "$lt": {"run": {"$lt": 1}}, "$lte": {"run": {"$lte": 1}},
    "$ne": {"run": {"$ne": 1}}, "$nin": {"run": {"$nin": [1]}},
    "$and": {"$and": [{"run": 1}, {"subrun": 2}]}, "$not": {"run": {"$not": {"$gt": 1}}},
    "$nor": {"$nor": [{"run": 1}]}, "$or": {"$or": [{"run": 1}, {"path": "x"}]},
    "$exists": {"run": {"$exists": True}}, "$type": {"run": {"$type": "int"}},
    "$expr": {"$expr": {"$gt": ["$run", "$subrun"]}},
    "$jsonSchema": {"$jsonSchema": {"required": ["run"]}},
    "$mod": {"run": {"$mod": [4, 0]}},
    "$regex": {"path": {"$regex": "^/data", "$options": "i"}},
    "$text": {"$text": {"$search": "bnb", "$caseSensitive": False}},
    "$geoIntersects": {"loc": {"$geoIntersects": {"$geometry": {
        "type": "Point", "coordinates": [0, 0]}}}},
    "$geoWithin": {"loc": {"$geoWithin": {"$box": [[0, 0], [1, 1]]}}},
    "$near": {"loc": {"$near": {"$geometry": {"type": "Point", "coordinates": [0, 0]},
                                "$maxDistance": 10, "$minDistance": 1}}},
    "$nearSphere": {"loc": {"$nearSphere": [0, 0], "$maxDistance": 0.1}},
    "$center": {"loc": {"$geoWithin": {"$center": [[0, 0], 1]}}},
    "$centerSphere": {"loc": {"$geoWithin": {"$centerSphere": [[0, 0], 0.1]}}},
    "$polygon": {"loc": {"$geoWithin": {"$polygon": [[0, 0], [1, 0], [0, 1]]}}},
    "$all": {"inputs": {"$all": ["a"]}}, "$elemMatch": {"inputs": {"$elemMatch": {"$eq": "a"}}},
    "$size": {"inputs": {"$size": 2}},
    "$bitsAllClear": {"run": {"$bitsAllClear": 3}}, "$bitsAllSet": {"run": {"$bitsAllSet": [0]}},
    "$bitsAnyClear": {"run": {"$bitsAnyClear": 3}}, "$bitsAnySet": {"run": {"$bitsAnySet": 3}},
    "$comment": {"run": 1, "$comment": "why"},
    "$rand": {"$expr": {"$lt": [0.5, {"$rand": {}}]}},
}


def test_every_mongodb_query_operator_is_known():
    from spine_docs.queries.filters import QUERY_OPERATORS
    assert (QUERY_OPERATORS - {"$options"}) | {"$where"} == MONGODB_6_QUERY_OPERATORS
    assert not QUERY_OPERATORS & SERVER_SIDE_JAVASCRIPT


@pytest.mark.parametrize("op", sorted(MONGODB_6_QUERY_OPERATORS - SERVER_SIDE_JAVASCRIPT))
def test_where_takes_every_mongodb_query_operator(op):
    where = WHERE_SAMPLES.get(op) or next(w for w in WHERE_SAMPLES.values() if op in repr(w))
    assert op in repr(where)
    flt = Filter(where=where)
    assert flt.where == where
    assert flt.to_mongo() in (where, {"$and": [where]})
    Filter(where=json_util.dumps(where))  # as the CLI's and the URL's JSON text


@pytest.mark.parametrize("text,needle", [
    ("null", "must be a JSON object (a MongoDB query document), not null"),
    ('"str"', "not a string"),
    ("[1]", "not an array"),
    ("5", "not a number"),
    ("true", "not a boolean"),
    ("{not json", "where is not valid JSON"),
    ('{"$foo": 1}', "unknown query operator in where: $foo"),
    ('{"a": {"$bar": 1, "$baz": 2}}', "unknown query operators in where: $bar, $baz"),
    ('{"$or": [{"a": 1}, {"b": {"$nope": 1}}]}', "$nope"),
    ('{"a": {"$elemMatch": {"$gtt": 1}}}', "$gtt"),
    ('{"$or": []}', "$or needs a non-empty list of query documents"),
    ('{"$and": 5}', "$and needs a non-empty list"),
    ('{"$nor": [5]}', "$nor needs a non-empty list"),
    ('{"a": {"$in": 5}}', "$in needs a list"),
    ('{"a": {"$regex": 5}}', "$regex needs a string or a regular expression"),
    ('{"a": {"$not": 5}}', "$not needs a document or a regular expression"),
    ('{"a": {"$size": "2"}}', "$size needs a whole number"),
    ('{"a": {"$mod": [2]}}', "$mod needs a list [divisor, remainder]"),
    ('{"a": {"$elemMatch": 1}}', "$elemMatch needs a document"),
    ('{"$where": "sleep(1)"}', "$where (server-side JavaScript)"),
    ('{"$expr": {"$function": {"body": "x", "args": [], "lang": "js"}}}', "$function"),
])
def test_where_is_refused_in_one_line(text, needle):
    with pytest.raises(ValueError) as err:
        Filter(where=text)
    message = err.value.errors()[0]["msg"]
    assert needle in message and "\n" not in message


def test_where_does_not_read_the_arguments_of_expr_or_text_as_query_operators():
    for where in ({"$expr": {"$add": ["$run", 1]}}, {"$text": {"$search": "x", "$language": "en"}},
                  {"a": {"$eq": {"$literal_looking": 1}}}, {"a": {"$in": [{"$x": 1}]}}):
        assert Filter(where=where).where == where


def test_filter_without_and_merge():
    f = Filter(model=["uresnet"], dataset=["bnb"], path_contains="x", path_regex="y")
    assert f.without("model") == Filter(dataset=["bnb"], path_contains="x", path_regex="y")
    with pytest.raises(q.QueryError):
        f.without("nope")
    m = f.to_mongo()
    # the two path conditions cannot share one key: the second goes to $and
    assert m["path"] == {"$regex": "x"} and m["$and"] == [{"path": {"$regex": "y"}}]
    assert Filter().to_mongo() == {} and Filter().is_empty()


# ---------------------------------------------------------------------------------------------
# counts and filter narrowing
# ---------------------------------------------------------------------------------------------

ALL_NARROWING = [
    (Filter(model=["uresnet"]), lambda d: d["model"] == "uresnet"),
    (Filter(model=[None]), lambda d: d["model"] is None),
    (Filter(site=["s3df"], status=["ok", "error"]),
     lambda d: d["site"] == "s3df" and d["status"] in ("ok", "error")),
    (Filter(spine_version=["0.5.0"]), lambda d: d["spine_version"] == "0.5.0"),
    # 0.5.0rc1 < 0.5 <= 0.5.0 < 0.6.1
    (Filter(version_min="0.5"), lambda d: d["spine_version"] in ("0.5.0", "0.6.1")),
    (Filter(version_min="0.5.0rc1", version_max="0.5"),
     lambda d: d["spine_version"] in ("0.5.0", "0.5.0rc1")),
    (Filter(version_max="0.4.9"), lambda d: d["spine_version"] == "0.4.2"),
    (Filter(run_min=2, run_max=3), lambda d: d["run"] is not None and 2 <= d["run"] <= 3),
    (Filter(run_min=4), lambda d: d["run"] is not None and d["run"] >= 4),
    (Filter(subrun_max=1), lambda d: d["subrun"] is not None and d["subrun"] <= 1),
    (Filter(events_min=20, events_max=30),
     lambda d: d["num_events"] is not None and 20 <= d["num_events"] <= 30),
    (Filter(mtime_from=MONDAY + timedelta(hours=26)),
     lambda d: d["mtime"] is not None and d["mtime"] >= MONDAY + timedelta(hours=26)),
    (Filter(mtime_to=date(2024, 3, 5)),  # the whole day of 2024-03-05
     lambda d: d["mtime"] is not None and d["mtime"] < datetime(2024, 3, 6, tzinfo=UTC)),
    (Filter(mtime_to=MONDAY + timedelta(hours=13)),  # inclusive instant
     lambda d: d["mtime"] is not None and d["mtime"] <= MONDAY + timedelta(hours=13)),
    (Filter(path_contains="file_01"), lambda d: "file_01" in d["path"]),
    (Filter(path_contains="."), lambda d: True),  # a literal dot, not "any character"
    (Filter(path_regex=r"/bnb/file_0[0-2]\d"), lambda d: "/bnb/file_0" in d["path"]
     and int(d["path"][-6:-3]) < 30),
    (Filter(attr_filters=[AttrFilter(key="a.b", op="eq", value=True)]),
     lambda d: d["attrs"]["a%2Eb"] is True),
    (Filter(attr_filters=[AttrFilter.parse("index", "gte", "30", "int")]),
     lambda d: d["attrs"]["index"] >= 30),
    (Filter(attr_filters=[AttrFilter.parse("weight", "lt", "2", "double"),
                          AttrFilter.parse("version", "in", "0.4.2,?", "string")]),
     lambda d: d["attrs"]["weight"] < 2 and d["attrs"]["version"] in ("0.4.2", "?")),
    (Filter(attr_filters=[AttrFilter(key="version", op="regex", value=r"^0\.5")]),
     lambda d: d["attrs"]["version"].startswith("0.5")),
    (Filter(attr_filters=[AttrFilter(key="missing", op="exists", value=False)]), lambda d: True),
    (Filter(attr_filters=[AttrFilter(key="version", op="ne", value="?")]),
     lambda d: d["attrs"]["version"] != "?"),
    (Filter(where={"size": {"$gte": 3000}}), lambda d: (d["size"] or 0) >= 3000),
    (Filter(model=["uresnet"], dataset=["bnb", None], run_min=1, where={"status": "ok"}),
     lambda d: d["model"] == "uresnet" and d["dataset"] in ("bnb", None)
     and d["run"] is not None and d["status"] == "ok"),
]


@pytest.mark.parametrize("flt,pred", ALL_NARROWING)
def test_filters_select_exactly(cat, flt, pred):
    db, docs = cat
    expected = ids([d for d in docs if pred(d)])
    assert 0 < len(expected) or flt.where  # every case selects something
    assert found(db, flt) == expected
    assert q.count(db, flt) == len(expected)


LITERAL_PATHS = ["/d/a.b/f.h5", "/d/axb/f.h5", "/d/a*b/f.h5", "/d/aab/f.h5", "/d/b/f.h5",
                 "/d/x(1)/f.h5", "/d/x1/f.h5", "/d/g[1]/f.h5", "/d/g1/f.h5", "/d/p+q/f.h5",
                 "/d/ppq/f.h5", "/d/u?v/f.h5", "/d/uv/f.h5", "/d/e$/f.h5", "/d/back\\slash/f.h5"]


@pytest.mark.parametrize("text,expected", [
    ("a.b", ["/d/a.b/f.h5"]),            # "." is a dot, not any character
    ("a*b", ["/d/a*b/f.h5"]),            # "*" is a star (a*b as a regex matches "b")
    ("x(1)", ["/d/x(1)/f.h5"]),          # parentheses are not a group
    ("(", ["/d/x(1)/f.h5"]),             # ... nor an unbalanced one (an invalid regex)
    ("g[1]", ["/d/g[1]/f.h5"]),          # brackets are not a class
    ("[", ["/d/g[1]/f.h5"]),
    ("p+q", ["/d/p+q/f.h5"]),
    ("u?v", ["/d/u?v/f.h5"]),
    ("e$/", ["/d/e$/f.h5"]),
    ("^/d", []),                         # no anchors either
    ("k\\s", ["/d/back\\slash/f.h5"]),
    ("/f.h5", LITERAL_PATHS),
])
def test_path_contains_is_literal_text(catalog_db, text, expected):
    load(catalog_db, [make_doc(p) for p in LITERAL_PATHS])
    assert found(catalog_db, Filter(path_contains=text)) == sorted(f"nersc:{p}" for p in expected)
    assert q.count(catalog_db, Filter(path_contains=text)) == len(expected)


def test_run_range_overlap(catalog_db):
    docs = load(catalog_db, [
        make_doc("/a", run=1), make_doc("/b", run=5, run_max=9), make_doc("/c", run=10),
        make_doc("/d", run=None), make_doc("/e", run=3, run_max=4),
    ])
    assert found(catalog_db, Filter(run_min=6, run_max=7)) == ["nersc:/b"]
    assert found(catalog_db, Filter(run_min=9)) == ["nersc:/b", "nersc:/c"]
    assert found(catalog_db, Filter(run_max=3)) == ["nersc:/a", "nersc:/e"]
    assert q.count(catalog_db) == q.total(catalog_db) == len(docs)


def test_count_total(cat):
    db, docs = cat
    assert q.total(db) == q.count(db) == q.count(db, Filter()) == len(docs)
    assert q.count(db, {"model": "uresnet"}) == sum(d["model"] == "uresnet" for d in docs)


# ---------------------------------------------------------------------------------------------
# facets
# ---------------------------------------------------------------------------------------------


def expected_facet(docs, field):
    c = Counter(d[field] for d in docs)
    return sorted(({"value": v, "count": n} for v, n in c.items()),
                  key=lambda x: (-x["count"], x["value"] is not None, str(x["value"])))


def test_facets_counts(cat):
    db, docs = cat
    got = q.facets(db)
    assert list(got) == list(q.DEFAULT_FACETS)
    for f in q.DEFAULT_FACETS:
        assert got[f] == expected_facet(docs, f)
    assert {"value": None, "count": sum(d["model"] is None for d in docs)} in got["model"]


def test_facets_ignore_own_selection(cat):
    db, docs = cat
    flt = Filter(model=["full_chain"], site=["s3df"], run_min=2)
    got = q.facets(db, flt, fields=["model", "site", "dataset", "detector"])
    base = [d for d in docs if d["run"] is not None and d["run"] >= 2]
    assert got["model"] == expected_facet([d for d in base if d["site"] == "s3df"], "model")
    assert got["site"] == expected_facet([d for d in base if d["model"] == "full_chain"], "site")
    both = [d for d in base if d["site"] == "s3df" and d["model"] == "full_chain"]
    assert both
    assert got["dataset"] == expected_facet(both, "dataset")
    assert got["detector"] == [{"value": None, "count": len(both)}]


def test_facets_limit_keeps_selection(cat):
    db, docs = cat
    full = expected_facet(docs, "spine_version")
    assert q.facets(db, fields=["spine_version"], limit=2)["spine_version"] == full[:2]
    rare = full[-1]["value"]
    got = q.facets(db, Filter(spine_version=[rare]), fields=["spine_version"], limit=2)
    values = [v["value"] for v in got["spine_version"]]
    assert len(values) == 2 and rare in values
    with pytest.raises(q.QueryError):
        q.facets(db, fields=["path"])


def test_timeline_counts_missing_and_null_groups_as_one(db):
    day = datetime(2024, 3, 1, 12, 0)
    docs = [{"_id": "a", "mtime": day, "dataset": None, "size": 1, "num_events": 1},
            {"_id": "b", "mtime": day, "size": 2, "num_events": 2},          # no dataset at all
            {"_id": "c", "mtime": day, "dataset": "bnb", "size": 4, "num_events": 4}]
    with store.writing(db):
        db.files.insert_many(docs)
    rows = q.timeline(db, group="dataset")
    assert [(r["group"], r["files"], r["bytes"]) for r in rows] == [(None, 2, 3), ("bnb", 1, 4)]


def test_each_facet_is_one_index_friendly_aggregation_never_a_facet_stage():
    # nothing selected: each facet walks its own field's index ($sort first) and groups, with
    # no $match (the retired files' counts are subtracted after, from their partial index:
    # a $match here would fetch every document)
    hidden = {"retired": {"$exists": False}}
    plans = dict((tuple(f), p) for f, p in q.facets_pipelines(Filter(), q.DEFAULT_FACETS))
    assert list(plans) == [(f,) for f in q.DEFAULT_FACETS]
    for (f,), p in plans.items():
        assert p == [{"$sort": {f: 1}}, {"$group": {"_id": "$" + f, "count": {"$sum": 1}}}]
        assert q.retired_pipeline(f) == [{"$match": {"retired": {"$exists": True}}},
                                         {"$group": {"_id": "$" + f, "count": {"$sum": 1}}}]
    # retired files included: no $match at all
    plans = dict((tuple(f), p) for f, p in q.facets_pipelines(Filter(include_retired=True), q.DEFAULT_FACETS))
    for (f,), p in plans.items():
        assert p[0] == {"$sort": {f: 1}} and p[1] == {"$group": {"_id": "$" + f, "count": {"$sum": 1}}}
    # a selection: the facet of that field ignores it, the others match on it
    plans = dict((tuple(f), p) for f, p in q.facets_pipelines(Filter(model=["x"], site=["y"]), q.DEFAULT_FACETS))
    assert plans[("model",)][0] == {"$match": {"site": {"$in": ["y"]}, **hidden}}
    assert plans[("site",)][0] == {"$match": {"model": {"$in": ["x"]}, **hidden}}
    assert plans[("dataset",)][0] == {"$match": {"site": {"$in": ["y"]}, "model": {"$in": ["x"]}, **hidden}}
    # a selected value is a literal, even when it looks like a field path
    # (under another condition: with none, the selection is put first in Python, after the
    # retired files' counts are subtracted)
    sel = q.facets_pipelines(Filter(dataset=["$oops"], model=["x"]), ["dataset"])[0][1]
    assert {"$addFields": {"selected": {"$in": ["$_id", {"$literal": ["$oops"]}]}}} in sel


def _expression_strings(expr, out):
    """Every string an aggregation expression evaluates (not inside $literal)."""
    if isinstance(expr, list):
        for item in expr:
            _expression_strings(item, out)
    elif isinstance(expr, dict):
        for key, value in expr.items():
            if key != "$literal":
                _expression_strings(value, out)
    elif isinstance(expr, str):
        out.add(expr)
    return out


def test_facet_selection_is_a_literal_in_expressions():
    # MongoDB reads "$oops" in an expression as a field path (mongomock does not)
    odd = ["$oops", "$$ROOT", "plain"]
    # (under another condition: with none, the selection is put first in Python)
    for _fields, pipeline in q.facets_pipelines(Filter(dataset=odd, site=["s"]), ["dataset"]):
        stages = [s for s in pipeline if "$addFields" in s]
        assert stages and not set(odd) & _expression_strings(stages, set()), stages


def test_facets_keep_a_selection_that_looks_like_a_field_path(catalog_db):
    docs = load(catalog_db, [make_doc(f"/{i}", dataset="big" if i < 5 else "$oops")
                             for i in range(7)])
    assert len(docs) == 7
    got = q.facets(catalog_db, Filter(dataset=["$oops"]), fields=["dataset"], limit=1)
    assert got == {"dataset": [{"value": "$oops", "count": 2}]}


# ---------------------------------------------------------------------------------------------
# keyset pages
# ---------------------------------------------------------------------------------------------


def reference_order(docs, sort):
    name, direction = q.parse_sort(sort)
    field = q.SORT_FIELDS[name]

    tie = "site" if field == "path" else "_id"   # path and site are unique together

    def key(d):
        v = d
        for part in field.split("."):
            v = v.get(part) if isinstance(v, dict) else None
        return ((0,) if v is None else (1, v), d[tie])

    return [d["_id"] for d in sorted(docs, key=key, reverse=direction < 0)]


SORTS = [("mtime", -1), ("mtime", 1), ("size", 1), ("size", -1), ("spine_version", -1),
         ("run", -1), ("num_events", 1), ("path", 1), ("path", -1), ("_id", -1),
         ("last_seen", 1), ("first_seen", -1)]


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("size", [1, 4, 37, 50])
def test_keyset_pages_visit_everything_once(cat, sort, size):
    db, docs = cat
    expected = reference_order(docs, sort)
    pages, after = [], None
    while True:
        p = q.page(db, sort=sort, size=size, after=after)
        assert 0 < len(p.rows) <= size
        pages.append([r["_id"] for r in p.rows])
        assert (p.prev_before is None) == (len(pages) == 1)
        if p.next_after is None:
            break
        assert len(p.rows) == size
        after = p.next_after
    assert [i for pg in pages for i in pg] == expected
    assert len(pages) == -(-len(docs) // size)
    # and back from the last page to the first, page by page
    back, before = [pages[-1]], p.prev_before
    while before:
        p = q.page(db, sort=sort, size=size, before=before)
        back.append([r["_id"] for r in p.rows])
        assert p.next_after is not None
        before = p.prev_before
    assert back[::-1] == pages


@pytest.mark.parametrize("direction", [1, -1])
def test_path_pages_break_ties_by_site(db, direction):
    # the same paths at three sites (replicas): ties of the path sort cross page boundaries
    sites = ["a", "a-b", "b"]          # _id order ("a-b:" < "a:") differs from site order
    docs = [{"_id": f"{s}:/d/f{i}.h5", "site": s, "path": f"/d/f{i}.h5", "status": "ok"}
            for i in range(4) for s in sites]
    with store.writing(db):
        db.files.insert_many(docs)
    expected = sorted(((d["path"], d["site"]) for d in docs), reverse=direction < 0)
    for size in (1, 2, 5):
        rows = [(r["path"], r["site"]) for p in q.iter_pages(db, sort=("path", direction), size=size)
                for r in p.rows]
        assert rows == expected, size
    assert q.sort_spec(("path", direction)) == [("path", direction), ("site", direction)]


def test_keyset_pages_with_filter_and_columns(cat):
    db, docs = cat
    flt = Filter(dataset=["mpvmpr", None], status=["ok"])
    expected = reference_order([d for d in docs if d["dataset"] in ("mpvmpr", None)
                                and d["status"] == "ok"], ("size", -1))
    rows = [r for p in q.iter_pages(db, flt, sort="-size", size=3, columns=("path",))
            for r in p.rows]
    assert [r["_id"] for r in rows] == expected
    assert all(set(r) <= {"_id", "path", "size"} for r in rows)
    first = q.page(db, flt, sort="-size", size=3)
    assert set(first.rows[0]) <= {"_id", "size", *q.TABLE_COLUMNS}


def test_keyset_page_before_near_start_returns_first_page(cat):
    db, docs = cat
    p1 = q.page(db, size=5)
    p2 = q.page(db, size=5, after=p1.next_after)
    p3 = q.page(db, size=5, after=p2.next_after)
    # a cursor two rows into page 2: "before" it there are 6 rows, so a full page of 5
    cursor = q.encode_cursor(("mtime", -1), p2.rows[1]["mtime"], p2.rows[1]["_id"])
    back = q.page(db, size=5, before=cursor)
    assert [r["_id"] for r in back.rows] == [r["_id"] for r in (p1.rows + p2.rows)[1:6]]
    cursor = q.encode_cursor(("mtime", -1), p1.rows[2]["mtime"], p1.rows[2]["_id"])
    assert [r["_id"] for r in q.page(db, size=5, before=cursor).rows] == \
        [r["_id"] for r in p1.rows]
    assert p3.prev_before and p3.rows


def test_page_errors(cat):
    db, _ = cat
    p = q.page(db, size=2)
    with pytest.raises(q.QueryError):
        q.page(db, after="garbage!")
    with pytest.raises(q.QueryError):
        q.page(db, sort="size", after=p.next_after)  # cursor of another sort order
    with pytest.raises(q.QueryError):
        q.page(db, size=0)
    with pytest.raises(q.QueryError):
        q.page(db, sort="attrs.x")
    with pytest.raises(q.QueryError):
        q.page(db, after=p.next_after, before=p.next_after)
    empty = q.page(db, Filter(model=["nope"]))
    assert empty.rows == [] and empty.next_after is None and empty.prev_before is None
    # a cursor past the end (its rows were deleted since): an empty page that leads back
    everything = [r for p in q.iter_pages(db, size=10) for r in p.rows]
    end = q.encode_cursor(("mtime", -1), everything[-1]["mtime"], everything[-1]["_id"])
    past = q.page(db, size=10, after=end)
    assert past.rows == [] and past.next_after is None and past.prev_before == end
    assert q.page(db, size=10, before=end).rows == everything[-11:-1]


def test_parse_sort():
    assert q.parse_sort("-mtime") == ("mtime", -1)
    assert q.parse_sort("size") == ("size", 1)
    assert q.parse_sort("run:desc") == ("run", -1)
    assert q.parse_sort(None) == q.DEFAULT_SORT
    assert q.format_sort(("mtime", -1)) == "-mtime"
    with pytest.raises(q.QueryError):
        q.parse_sort(("size", 0))
    assert q.parse_sort("+run:ASC") == q.parse_sort("run:1") == ("run", 1)
    assert q.parse_sort("-run:descending") == ("run", -1)
    # never a silent ascending: an unknown direction, two directions, a bad tuple
    for bad in ("run:garbage", "run:", "-run:asc", "+run:desc", ("run", "x"), ("run",), 5,
                "-", " ", "run :desc"):
        with pytest.raises(q.QueryError):
            q.parse_sort(bad)


# ---------------------------------------------------------------------------------------------
# one file, exports
# ---------------------------------------------------------------------------------------------


def test_get_file(catalog_db):
    load(catalog_db, [make_doc("/x/a.h5", site="s3df", attrs={"a.b": 1, "$c": "x"}),
                      make_doc("/x/a.h5", site="nersc"), make_doc("/x/b.h5")])
    assert q.get_file(catalog_db, "s3df:/x/a.h5")["site"] == "s3df"
    assert q.get_file(catalog_db, "/x/a.h5")["_id"] == "nersc:/x/a.h5"
    assert q.get_file(catalog_db, "/x/a.h5", site="s3df")["_id"] == "s3df:/x/a.h5"
    assert q.get_file(catalog_db, "/nope") is None
    raw = q.get_file(catalog_db, "s3df:/x/a.h5")
    assert raw["attrs"] == {"a%2Eb": 1, "%24c": "x"}
    nice = q.get_file(catalog_db, "s3df:/x/a.h5", unescape=True)
    assert nice["attrs"] == {"a.b": 1, "$c": "x"} and nice["attr_types"] == {"a.b": "int", "$c": "string"}


def test_export_jsonl_equals_query(cat):
    db, docs = cat
    flt = Filter(model=["uresnet"])
    lines = list(q.export(db, flt, "jsonl", batch_size=3))
    expected = sorted((d for d in docs if d["model"] == "uresnet"), key=lambda d: d["_id"])
    assert all(line.endswith("\n") and "\n" not in line[:-1] for line in lines)
    got = [json_util.loads(line, json_options=json_util.JSONOptions(tz_aware=True, tzinfo=UTC))
           for line in lines]
    assert got == expected
    assert '"$date"' in lines[0]  # relaxed Extended JSON


def test_export_header_stays_two_comment_lines(cat):
    db, docs = cat
    flt = Filter(path_contains="a\nb\rc", attr_filters=[AttrFilter(key="k\n", op="eq", value="x\r\ny")])
    for fmt in ("paths", "csv"):
        lines = "".join(q.export(db, flt, fmt)).split("\n")
        assert lines[0].startswith("# spine-docs export: ") and "\r" not in lines[0]
        assert lines[1].startswith("# query: ")
        assert "\\n" in lines[0] and "\\r" in lines[0]
        assert not lines[2].startswith("#")


def test_export_csv_and_paths(cat):
    db, docs = cat
    flt = Filter(dataset=["bnb"], status=["ok"])
    expected = sorted((d for d in docs if d["dataset"] == "bnb" and d["status"] == "ok"),
                      key=lambda d: d["_id"])
    text = "".join(q.export(db, flt, "csv"))
    head = text.splitlines()[:2]
    assert head[0] == f"# spine-docs export: {flt.describe()}"
    assert head[1].startswith("# query: ")
    assert json.loads(head[1][len("# query: "):]) == json.loads(json_util.dumps(flt.to_mongo()))
    rows = list(csv.DictReader(io.StringIO("\n".join(text.splitlines()[2:]))))
    assert [r["_id"] for r in rows] == [d["_id"] for d in expected]
    assert list(rows[0]) == list(q.EXPORT_COLUMNS)
    d0, r0 = expected[0], rows[0]
    assert r0["size"] == ("" if d0["size"] is None else str(d0["size"]))
    assert r0["mtime"] == ("" if d0["mtime"] is None else d0["mtime"].strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert r0["complete"] == "true" and r0["run_max"] == ""
    paths = list(q.export(db, flt, "paths", sort="path"))
    assert paths[:2] == [h + "\n" for h in head]
    assert paths[2:] == [p + "\n" for p in sorted(d["path"] for d in expected)]
    cols = list(q.export(db, flt, "csv", columns=["path", "checksum.sha256"], limit=2))
    assert cols[2] == "path,checksum.sha256\n" and len(cols) == 5
    with pytest.raises(q.QueryError):
        q.export(db, flt, "xml")


def test_export_streams_lazily():
    class Cursor:
        def __init__(self):
            self.taken = 0

        def __iter__(self):
            for i in range(10**9):
                self.taken += 1
                yield {"_id": i, "path": f"/p/{i}"}

    cursor = Cursor()
    coll = mock.MagicMock(spec=mongomock.Collection)
    coll.name = "files"
    coll.find.return_value = cursor
    lines = q.export(coll, Filter(), "paths", batch_size=7)
    first = [next(lines) for _ in range(5)]
    assert first[2:] == ["/p/0\n", "/p/1\n", "/p/2\n"] and cursor.taken == 3
    assert coll.find.call_args.kwargs["batch_size"] == 7


# ---------------------------------------------------------------------------------------------
# analytics
# ---------------------------------------------------------------------------------------------


def period_of(d, by):
    day = d["mtime"].date()
    if by == "week":
        day = day - timedelta(days=day.weekday())
    elif by == "month":
        day = day.replace(day=1)
    return day.isoformat()


@pytest.mark.parametrize("by", ["day", "week", "month"])
@pytest.mark.parametrize("group", [None, "dataset", "model"])
def test_timeline(cat, by, group):
    db, docs = cat
    flt = Filter(status=["ok", "incomplete"])
    acc: dict = {}
    for d in docs:
        if d["mtime"] is None or d["status"] not in ("ok", "incomplete"):
            continue
        k = (period_of(d, by), d[group] if group else None)
        a = acc.setdefault(k, {"files": 0, "events": 0, "bytes": 0})
        a["files"] += 1
        a["events"] += d["num_events"] or 0
        a["bytes"] += d["size"] or 0
    expected = [{"period": p, "group": g, **v} for (p, g), v in acc.items()]
    expected.sort(key=lambda r: (r["period"], r["group"] is not None, str(r["group"])))
    assert q.timeline(db, flt, by=by, group=group) == expected


def test_timeline_week_crosses_year():
    # 2024-12-30 (Monday) belongs to ISO week 2025-W01; 2021-01-03 (Sunday) to 2020-W53
    db = mongomock.MongoClient().db
    load(db, [make_doc("/a", mtime=datetime(2024, 12, 31, tzinfo=UTC)),
              make_doc("/b", mtime=datetime(2021, 1, 3, 23, tzinfo=UTC))])
    assert [r["period"] for r in q.timeline(db, by="week")] == ["2020-12-28", "2024-12-30"]
    with pytest.raises(q.QueryError):
        q.timeline(db, by="hour")


def test_histogram_linear(catalog_db):
    sizes = [0, 3, 9, 10, 11, 19, 20, 47, None]
    load(catalog_db, [make_doc(f"/f{i}", size=s) for i, s in enumerate(sizes)] +
         [make_doc("/other", size=1000, model="other")])
    h = q.histogram(catalog_db, Filter(model=["uresnet"]), "size", bins=5)
    # (47 - 0) / 5 = 9.4 -> round width 10
    assert h["bins"] == [{"lo": 0, "hi": 10, "count": 3}, {"lo": 10, "hi": 20, "count": 3},
                         {"lo": 20, "hi": 30, "count": 1}, {"lo": 30, "hi": 40, "count": 0},
                         {"lo": 40, "hi": 50, "count": 1}]
    assert h["missing"] == 1 and h["total"] == 9 and h["log"] is False
    one = q.histogram(catalog_db, Filter(model=["other"]), "size")
    assert one["bins"] == [{"lo": 1000, "hi": 1001, "count": 1}]
    none = q.histogram(catalog_db, Filter(model=["nope"]), "num_events")
    assert none == {"field": "num_events", "log": False, "bins": [], "missing": 0, "total": 0}
    with pytest.raises(q.QueryError):
        q.histogram(catalog_db, None, "path")


def test_histogram_log(catalog_db):
    sizes = [0, 1, 5, 12, 150, 999, 1000, 20000, None]
    load(catalog_db, [make_doc(f"/f{i}", size=s) for i, s in enumerate(sizes)])
    h = q.histogram(catalog_db, None, "size", bins=3, log=True)
    # log10 from 0 (floor of log10(1)) to log10(20000) = 4.30..., 3 equal bins
    edges = [10 ** (i * 4.301029995663981 / 3) for i in range(4)]
    assert [b["lo"] for b in h["bins"]] == pytest.approx(edges[:3])
    assert [b["count"] for b in h["bins"]] == [3, 1, 3]  # [1, 27) [27, 736) [736, 20000]
    assert h["bins"][-1]["hi"] == pytest.approx(20000)
    assert h["missing"] == 2 and h["total"] == 9


def test_run_coverage(catalog_db):
    load(catalog_db, [
        make_doc("/a1", dataset="A", run=1, subrun=0, num_events=5),
        make_doc("/a2", dataset="A", run=1, subrun=1, subrun_max=2, num_events=5),
        make_doc("/a3", dataset="A", run=1, subrun=5, num_events=5),
        make_doc("/a3b", dataset="A", run=1, subrun=5, num_events=1, site="s3df"),
        make_doc("/a4", dataset="A", run=2, subrun=0),
        make_doc("/a5", dataset="A", run=6, run_max=7, subrun=3),
        make_doc("/a6", dataset="A", run=10),
        make_doc("/a7", dataset="A", run=None),
        make_doc("/b1", dataset="B", run=100, subrun=4),
        make_doc("/n1", dataset=None, run=3, subrun=0),
    ])
    cov = {c["dataset"]: c for c in q.run_coverage(catalog_db)}
    assert list(cov) == [None, "A", "B"]
    a = cov["A"]
    assert (a["files"], a["no_run"], a["run_min"], a["run_max"], a["run_count"]) == (8, 1, 1, 10, 5)
    assert a["runs"] == [[1, 2], [6, 7], [10, 10]]
    assert a["gaps"] == [[3, 5], [8, 9]] and a["missing_runs"] == 5
    run1 = a["per_run"][0]
    assert run1 == {"run": 1, "files": 4, "events": 16, "subruns": [[0, 2], [5, 5]],
                    "subrun_count": 4, "subrun_gaps": [[3, 4]], "missing_subruns": 2}
    assert [r["run"] for r in a["per_run"]] == [1, 2, 6, 7, 10]
    assert a["per_run"][2]["subruns"] == []  # a two-run file says nothing about subruns
    assert cov["B"]["gaps"] == [] and cov["B"]["runs"] == [[100, 100]]
    only = q.run_coverage(catalog_db, Filter(site=["nersc"]), dataset="A")
    assert len(only) == 1 and only[0]["per_run"][0]["files"] == 3


# ---------------------------------------------------------------------------------------------
# attribute dictionary
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def attr_db(catalog_db):
    long_text = "x" * 500
    docs = load(catalog_db, [
        make_doc("/1", attrs={"version": "0.5.0", "n": 3, "flag": True, "a.b": [1, 2],
                              "mixed": 1, "$weird": None}),
        make_doc("/2", attrs={"version": "0.5.0", "n": 7, "flag": False, "mixed": "one"}),
        make_doc("/3", attrs={"version": "0.4.1", "n": 2.5, "mixed": 5,
                              "when": datetime(2024, 1, 2, tzinfo=UTC), "txt": long_text}),
        make_doc("/4", attrs={"n": 0, "mixed": "zzz", "sum": {"summarized": True,
                                                             "kind": "array", "size": 5}},
                 model="other"),
        make_doc("/5", attrs={}),
    ])
    return catalog_db, docs


def test_attribute_keys(attr_db):
    db, _ = attr_db
    keys = {e["key"]: e for e in q.attribute_keys(db)}
    assert sorted(keys) == sorted(["version", "n", "flag", "a.b", "mixed", "$weird", "when",
                                   "txt", "sum"])
    assert keys["a.b"]["field"] == "attrs.a%2Eb" and keys["$weird"]["field"] == "attrs.%24weird"
    assert keys["n"]["files"] == 4 and keys["n"]["types"] == {"int": 3, "double": 1}
    assert keys["n"]["type"] == "int"
    assert keys["mixed"]["types"] == {"int": 2, "string": 2}
    assert keys["sum"]["types"] == {"summary": 1}
    assert q.attribute_types(db, Filter(model=["other"])) == {"mixed": "string", "n": "int",
                                                              "sum": "summary"}


def test_attribute_dictionary(attr_db):
    db, _ = attr_db
    d = {e["key"]: e for e in q.attribute_dictionary(db)}
    assert list(d) == sorted(d)
    v = d["version"]
    assert (v["files"], v["distinct"], v["types"], v["min"], v["max"]) == \
        (3, 2, {"string": 3}, "0.4.1", "0.5.0")
    assert v["examples"] == ["0.5.0", "0.4.1"]  # most common first
    n = d["n"]
    assert (n["files"], n["distinct"], n["min"], n["max"]) == (4, 4, 0, 7)
    # most common int (ties: the smallest), most common double, then the int maximum
    assert n["examples"] == [0, 2.5, 7]
    assert d["flag"]["min"] is False and d["flag"]["max"] is True
    # across types: MongoDB order numbers < strings
    m = d["mixed"]
    assert (m["distinct"], m["min"], m["max"]) == (4, 1, "zzz")
    assert d["a.b"]["types"] == {"array": 1} and d["a.b"]["min"] is None
    assert d["a.b"]["examples"] == [[1, 2]]
    assert d["$weird"]["types"] == {"null": 1} and d["$weird"]["examples"] == [None]
    assert d["when"]["min"] == d["when"]["max"]
    assert d["when"]["min"].replace(tzinfo=UTC) == datetime(2024, 1, 2, tzinfo=UTC)
    assert len(d["txt"]["examples"][0]) == 200 and d["txt"]["max"].endswith("…")
    assert d["sum"]["type"] == "summary" and d["sum"]["min"] is None
    assert d["sum"]["examples"][0]["summarized"] is True
    assert all(len(e["examples"]) <= 3 for e in d.values())
    one = q.attribute_dictionary(db, Filter(model=["other"]), examples=1)
    assert {e["key"]: e["examples"] for e in one} == {
        "mixed": ["zzz"], "n": [0], "sum": [{"summarized": True, "kind": "array", "size": 5}]}


def test_attribute_dictionary_newest_docs_only(attr_db):
    db, docs = attr_db
    with store.writing(db):
        db["files"].update_one({"_id": "nersc:/4"}, {"$set": {"mtime": MONDAY + timedelta(days=1)}})
    d = {e["key"]: e for e in q.attribute_dictionary(db, max_docs=1)}
    assert set(d) == {"n", "mixed", "sum"}
    assert {e["key"] for e in q.attribute_keys(db, max_docs=1)} == {"n", "mixed", "sum"}


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 1000, 70_000])
def test_positional_indices_expression(catalog_db, n):
    from spine_docs.queries.dictionary import _indices_expr
    with store.writing(catalog_db):
        catalog_db["files"].insert_one({"_id": "x", "n": n})
    out = list(catalog_db["files"].aggregate([{"$project": {"_id": 0, "ix": {"$let": {
        "vars": {"n": "$n"}, "in": _indices_expr("$$n")}}}}]))
    assert out == [{"ix": list(range(n))}]


def _attr_doc(path, attrs, types):
    doc = make_doc(path)
    doc["attrs"], doc["attr_types"] = dict(attrs), dict(types)
    return doc


def _expected_dictionary(docs):
    """key -> (files, {type: files}, distinct (type, value) pairs), in plain Python."""
    out = {}
    for d in docs:
        for k, v in d["attrs"].items():
            files, types, values = out.setdefault(k, [0, Counter(), set()])
            t = d["attr_types"].get(k) or "unknown"
            out[k][0] = files + 1
            types[t] += 1
            values.add((t, v))
    return {k: (f, dict(t), len(v)) for k, (f, t, v) in out.items()}


def test_attribute_dictionary_many_attributes_and_misordered_types(catalog_db):
    many = 600  # past the first doublings of the positional indices
    labels = ["int", "double", "string", "long"]
    docs = load(catalog_db, [
        # the extractor's shape: the same keys in the same order
        _attr_doc("/many", {f"a{i}": i for i in range(many)},
                  {f"a{i}": "int" for i in range(many)}),
        # the types in another order, one missing, one extra: paired by key, not position
        _attr_doc("/shuffled", {f"a{i}": 1000 + i for i in range(10)},
                  {f"a{i}": labels[i % 4] for i in reversed(range(10)) if i != 3} | {"zz": "bool"}),
        _attr_doc("/fewer", {"x": 1, "y": 2}, {"y": "int"}),
        _attr_doc("/none", {"x": 3}, {}),
        _attr_doc("/empty", {}, {}),
    ])
    expected = _expected_dictionary(docs)
    got = {e["key"]: e for e in q.attribute_dictionary(catalog_db)}
    assert {k: (e["files"], e["types"], e["distinct"]) for k, e in got.items()} == expected
    assert got["a3"]["types"] == {"int": 1, "unknown": 1}
    assert got["a5"]["types"] == {"int": 1, "double": 1}
    assert (got["a599"]["min"], got["a599"]["max"]) == (599, 599)
    assert (got["x"]["types"], got["x"]["distinct"]) == ({"unknown": 2}, 2)


@pytest.mark.parametrize("aligned", [True, False])
def test_attribute_dictionary_work_is_linear_when_aligned(monkeypatch, aligned):
    """Counted, not timed: the expressions mongomock evaluates for one file of K attributes
    grow like K when attr_types is in the attrs' order (like K^2 otherwise). Plain mongomock
    runs the pipeline (every expression through its parser, which is counted); the engine
    compiles some expressions itself, which this count would not see."""
    from mongomock import aggregate as mm_aggregate
    calls = Counter()
    parse = mm_aggregate._Parser.parse

    def counting(self, expression):
        calls["n"] += 1
        return parse(self, expression)

    monkeypatch.setattr(mm_aggregate._Parser, "parse", counting)
    work, keys_work = {}, {}
    for k in (300, 600):
        db = mongomock.MongoClient().db
        types = {f"a{i}": "int" for i in range(k)}
        db["files"].insert_one({"_id": k, "attrs": {f"a{i}": i for i in range(k)},
                                "attr_types": types if aligned else dict(reversed(types.items()))})
        calls.clear()
        assert len(q.attribute_dictionary(db)) == k
        work[k] = calls["n"]
        calls.clear()
        assert len(q.attribute_keys(db)) == k
        keys_work[k] = calls["n"]
    ratio = work[600] / work[300]
    assert ratio < 2.5 if aligned else ratio > 3.5, work
    assert keys_work[600] / keys_work[300] < 2.5, keys_work  # attribute_keys reads attr_types only


def _reorder_types(db):
    """Reverse every document's attr_types (same pairs, another order)."""
    docs = list(db["files"].find({}, {"attr_types": 1}))
    with store.writing(db):
        for d in docs:
            types = d.get("attr_types") or {}
            db["files"].update_one({"_id": d["_id"]}, {"$set": {
                "attr_types": dict(reversed(list(types.items())))}})


def test_attribute_dictionary_same_by_position_and_by_key(attr_db, real_docs):
    db, _ = attr_db
    load(db, real_docs[0])
    by_position = q.attribute_dictionary(db)
    _reorder_types(db)
    same = bson.encode({"r": q.attribute_dictionary(db)}) == bson.encode({"r": by_position})
    assert same  # compared as BSON: NaN equals itself there
    assert len(by_position) > 20


# ---------------------------------------------------------------------------------------------
# replicas
# ---------------------------------------------------------------------------------------------


def test_replicas(catalog_db):
    load(catalog_db, [
        make_doc("/a/1.h5", site="nersc", fingerprint="f1", sha256="c1"),
        make_doc("/b/1.h5", site="nersc", fingerprint="f1", sha256="c1"),
        make_doc("/a/1.h5", site="s3df", fingerprint="f1", sha256="c9"),
        make_doc("/a/2.h5", site="nersc", fingerprint="f2"),
        make_doc("/a/2.h5", site="s3df", fingerprint="f2", model="other"),
        make_doc("/a/3.h5", site="nersc", fingerprint="f3"),
        make_doc("/a/4.h5", site="nersc", fingerprint=None),
        make_doc("/a/5.h5", site="nersc", fingerprint=None),
    ])
    reps = q.replicas(catalog_db)
    assert [(r["key"], r["count"], r["sites"]) for r in reps] == [
        ("f1", 3, ["nersc", "s3df"]), ("f2", 2, ["nersc", "s3df"])]
    assert [f["_id"] for f in reps[0]["files"]] == ["nersc:/a/1.h5", "nersc:/b/1.h5", "s3df:/a/1.h5"]
    assert set(reps[0]["files"][0]) == set(q.REPLICA_COLUMNS)
    assert [r["key"] for r in q.replicas(catalog_db, limit=1)] == ["f1"]
    assert [r["key"] for r in q.replicas(catalog_db, Filter(model=["uresnet"]))] == ["f1"]
    by_sum = q.replicas(catalog_db, key="checksum")
    assert [(r["key"], r["count"], r["sites"]) for r in by_sum] == [("c1", 2, ["nersc"])]
    assert q.replicas(catalog_db, Filter(model=["nope"])) == []


# ---------------------------------------------------------------------------------------------
# saved queries
# ---------------------------------------------------------------------------------------------


def test_saved_queries_round_trip(catalog_db):
    flt = Filter(model=["uresnet", None], version_min="0.5",
                 attr_filters=[AttrFilter(key="a.b", op="gte", value=2**40)],
                 mtime_from=datetime(2024, 3, 1, 12, tzinfo=UTC))
    doc = q.save_query(catalog_db, "  recent uresnet ", flt, extra={"sort": "-size", "model": "x"})
    assert doc["name"] == "recent uresnet" and doc["description"] == flt.describe()
    assert q.load_query(catalog_db, "recent uresnet") == flt
    q.save_query(catalog_db, "b", Filter(dataset=["bnb"]))
    listed = q.list_queries(catalog_db)
    assert [x["name"] for x in listed] == ["b", "recent uresnet"]
    assert listed[1]["params"]["sort"] == "-size" and listed[1]["params"]["model"] == "uresnet,(none)"
    created = listed[1]["created"]
    q.save_query(catalog_db, "recent uresnet", Filter(model=["full_chain"]))
    assert q.load_query(catalog_db, "recent uresnet") == Filter(model=["full_chain"])
    assert q.list_queries(catalog_db)[1]["created"] == created
    with pytest.raises(q.QueryError):
        q.save_query(catalog_db, "b", Filter(), overwrite=False)
    with pytest.raises(q.QueryError):
        q.save_query(catalog_db, "   ", Filter())
    assert q.delete_query(catalog_db, "b") is True
    assert q.delete_query(catalog_db, "b") is False
    with pytest.raises(KeyError):
        q.load_query(catalog_db, "b")
    assert [x["name"] for x in q.list_queries(catalog_db)] == ["recent uresnet"]


def test_saved_queries_accept_the_files_collection(catalog_db):
    q.save_query(catalog_db["files"], "x", Filter(site=["s3df"]))
    assert q.load_query(catalog_db, "x") == Filter(site=["s3df"])


# ---------------------------------------------------------------------------------------------
# time limits
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def server_files():
    """A pymongo collection that never connects (its methods are patched in the test)."""
    client = pymongo.MongoClient("mongodb://127.0.0.1:9", connect=False,
                                 serverSelectionTimeoutMS=1)
    yield client["spine_docs"]["files"]
    client.close()


def test_max_time_ms_goes_to_the_server_only(server_files, cat):
    db, _ = cat
    seen = {}

    def aggregate(self, pipeline, **kwargs):
        seen["aggregate"] = kwargs
        return iter([])

    def count_documents(self, query, **kwargs):
        seen["count"] = kwargs
        return 0

    def find(self, *args, **kwargs):
        seen["find"] = kwargs
        return iter([])

    with mock.patch.object(pymongo.collection.Collection, "aggregate", aggregate), \
         mock.patch.object(pymongo.collection.Collection, "count_documents", count_documents), \
         mock.patch.object(pymongo.collection.Collection, "find", find):
        q.facets(server_files, max_time_ms=1234)
        q.count(server_files, Filter(model=["m"]), max_time_ms=1234)
        q.page(server_files, max_time_ms=1234)
    assert seen["aggregate"] == {"maxTimeMS": 1234, "allowDiskUse": True}
    assert seen["count"] == {"maxTimeMS": 1234}
    assert seen["find"]["max_time_ms"] == 1234
    # mongomock never receives the option (and never times out)
    with mock.patch.object(mongomock.Collection, "aggregate",
                           side_effect=lambda p, **kw: iter([]) if not kw else 1 / 0):
        q.facets(db, max_time_ms=1234)


def test_timeout_becomes_query_timeout(server_files):
    def boom(self, *args, **kwargs):
        raise ExecutionTimeout("operation exceeded time limit", code=50)

    with mock.patch.object(pymongo.collection.Collection, "aggregate", boom), \
         mock.patch.object(pymongo.collection.Collection, "count_documents", boom):
        with pytest.raises(q.QueryTimeout) as err:
            q.timeline(server_files, max_time_ms=50)
        assert err.value.max_time_ms == 50 and "50 ms" in str(err.value)
        with pytest.raises(q.QueryTimeout):
            q.count(server_files, Filter(site=["x"]), max_time_ms=50)
        with pytest.raises(q.QueryTimeout):
            q.attribute_dictionary(server_files, max_time_ms=50)


# ---------------------------------------------------------------------------------------------
# real documents: samples -> extract -> queries
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_docs(tmp_path_factory):
    from spine_docs import extract, samples
    root = tmp_path_factory.mktemp("real")
    samples.write_prod_tree(root / "prod", 10, seed=3)
    strange = samples.write_strange_files(root / "strange", big_elements=1000, wide=20, deep=4)
    paths = sorted(str(p) for p in root.rglob("*.h5"))
    return [extract.extract(p, site="test") for p in paths], strange


def test_every_function_on_extracted_documents(catalog_db, real_docs):
    from spine_docs import samples
    docs, strange = real_docs
    load(catalog_db, docs)
    n = len(docs)
    assert q.count(catalog_db) == n
    for field, values in q.facets(catalog_db, fields=q.FACET_FIELDS, limit=100).items():
        assert sum(v["count"] for v in values) == n, field
    seen = [r["_id"] for p in q.iter_pages(catalog_db, sort="-spine_version", size=7)
            for r in p.rows]
    assert sorted(seen) == ids(docs) and len(seen) == n
    assert len(list(q.export(catalog_db, None, "jsonl"))) == n
    assert len(list(q.export(catalog_db, None, "csv"))) == n + 3
    assert sum(r["files"] for r in q.timeline(catalog_db, by="week", group="model")) == \
        sum(d["mtime"] is not None for d in docs)
    assert sum(c["files"] for c in q.run_coverage(catalog_db)) == n
    h = q.histogram(catalog_db, None, "size", log=True)
    assert sum(b["count"] for b in h["bins"]) + h["missing"] == n
    keys = {e["key"]: e for e in q.attribute_dictionary(catalog_db)}
    assert set(samples.STRANGE_ATTR_NAMES) <= set(keys)
    assert keys["a.b.c"]["field"] == "attrs.a%2Eb%2Ec"
    big = keys["uint64_max"]
    assert big["type"] == "decimal" and big["examples"] == [bson.Decimal128(str(2**64 - 1))]
    assert {e["key"] for e in q.attribute_keys(catalog_db)} == set(keys)
    strange_id = f"test:{strange['strange_attrs']}"
    for name in samples.STRANGE_ATTR_NAMES:
        value = q.get_file(catalog_db, strange_id, unescape=True)["attrs"][name]
        flt = Filter(attr_filters=[AttrFilter(key=name, op="eq", value=value)])
        assert found(catalog_db, flt) == [strange_id], name
        assert Filter.from_params(flt.to_params()) == flt
    with_version = Filter(version_min="0.11")
    expected = [d["_id"] for d in docs if d["spine_version_key"] is not None
                and d["spine_version_key"] >= spine.semver_key("0.11")]
    assert found(catalog_db, with_version) == sorted(expected) and expected


# ---------------------------------------------------------------------------------------------
# queries the database refuses: the filter's error (QueryError), not a traceback
# ---------------------------------------------------------------------------------------------


def _every_executor(db, flt):
    """Run each executor that takes a filter; -> {name: the exception it raised (or None)}."""
    calls = {
        "count": lambda: q.count(db, flt),
        "facets": lambda: q.facets(db, flt),
        "page": lambda: q.page(db, flt),
        "export": lambda: list(q.export(db, flt, "paths")),
        "timeline": lambda: q.timeline(db, flt),
        "histogram": lambda: q.histogram(db, flt, "size"),
        "run_coverage": lambda: q.run_coverage(db, flt),
        "attribute_keys": lambda: q.attribute_keys(db, flt),
        "attribute_dictionary": lambda: q.attribute_dictionary(db, flt),
        "replicas": lambda: q.replicas(db, flt),
    }
    out = {}
    for name, call in calls.items():
        try:
            call()
            out[name] = None
        except Exception as exc:  # noqa: BLE001 - the test looks at what it is
            out[name] = exc
    return out


@pytest.mark.skip_backends("server")  # a server runs them
@pytest.mark.parametrize("where,op", [
    ({"$text": {"$search": "x"}}, "$text"),
    ({"loc": {"$geoWithin": {"$box": [[0, 0], [1, 1]]}}}, "$geoWithin"),
    ({"loc": {"$near": [0, 0]}}, "$near"),
    ({"$jsonSchema": {"required": ["run"]}}, "$jsonSchema"),
    ({"run": {"$bitsAllSet": 1}}, "$bitsAllSet"),
    ({"run": {"$mod": [2, 0]}}, "$mod"),
])
def test_operators_the_embedded_catalog_lacks_are_one_line(cat, where, op):
    db, _ = cat
    raised = _every_executor(db, Filter(where=where))
    for name, exc in raised.items():
        assert isinstance(exc, q.QueryError), (name, exc)
        assert str(exc) == f"{op} is not supported by the embedded catalog (a MongoDB server runs it)"


@pytest.mark.skip_backends("server")
@pytest.mark.parametrize("where", [
    {"$expr": {"$split": [1, 2]}},        # mongomock: TypeError while evaluating
    {"inputs": {"$type": []}},            # TypeError (unhashable)
    {"$expr": {"$add": "x"}},             # mongomock: AssertionError
    {"$expr": {"$divide": [1, 0]}},       # ZeroDivisionError
    {"$expr": {"$nosuch": 1}},            # mongomock: OperationFailure
])
def test_what_the_embedded_catalog_cannot_evaluate_is_one_line(cat, where):
    db, _ = cat
    for name, exc in _every_executor(db, Filter(where=where)).items():
        assert isinstance(exc, q.QueryError), (name, exc)
        assert "\n" not in str(exc)


def test_limits_beyond_64_bits_are_refused_before_running(server_files):
    # a server's driver would fail to encode them (OverflowError, not a PyMongoError)
    with mock.patch.object(pymongo.collection.Collection, "aggregate", side_effect=AssertionError), \
         mock.patch.object(pymongo.collection.Collection, "find", side_effect=AssertionError):
        with pytest.raises(q.QueryError, match="too large"):
            q.facets(server_files, limit=2**63)
        with pytest.raises(q.QueryError, match="limit must be between"):
            q.export(server_files, None, "paths", limit=2**63)
        with pytest.raises(ValueError, match="cannot be stored in BSON"):
            Filter(run_min=2**63)


def test_a_refused_query_is_the_filters_error(server_files):
    """A server's OperationFailure (code 2 BadValue) is the filter's error with the server's
    message; not a time limit, not a lost connection."""
    from pymongo.errors import AutoReconnect, OperationFailure

    def refuse(self, *args, **kwargs):
        raise OperationFailure("$in needs an array", code=2,
                               details={"ok": 0, "errmsg": "$in needs an array", "code": 2})

    names = ("aggregate", "count_documents", "find")
    with mock.patch.multiple(pymongo.collection.Collection, **{n: refuse for n in names}):
        raised = _every_executor(server_files, Filter(where={"run": {"$gt": 1}}))
    for name, exc in raised.items():
        assert type(exc) is q.QueryError, (name, exc)
        assert str(exc) == "the database refused the query: $in needs an array", name

    def unauthorized(self, *args, **kwargs):
        raise OperationFailure("not authorized on spine_docs", code=13)

    def gone(self, *args, **kwargs):
        raise AutoReconnect("127.0.0.1:27017: connection closed")

    for fail, kind in ((unauthorized, OperationFailure), (gone, AutoReconnect)):
        with mock.patch.multiple(pymongo.collection.Collection, **{n: fail for n in names}):
            raised = _every_executor(server_files, Filter(model=["m"]))
        assert all(type(exc) is kind for exc in raised.values()), raised


def test_unfiltered_facets_leave_out_the_retired_files_by_subtracting_their_counts(catalog_db):
    # model a: 3 files, all retired; b: 2 files, 1 retired; c: 1 file; a retired file with no
    # model, and one with model True (a group apart from 1 on a server) - counted by hand
    retired = {"reason": "bad calibration", "by": "me@host", "at": MONDAY}
    docs = [make_doc(f"/d/a{i}.h5", model="a") for i in range(3)] + \
        [make_doc(f"/d/b{i}.h5", model="b") for i in range(2)] + [make_doc("/d/c.h5", model="c"),
                                                                  make_doc("/d/n.h5", model=None),
                                                                  make_doc("/d/t.h5", model=True),
                                                                  make_doc("/d/one.h5", model=1)]
    for d in docs:
        if d["path"] in ("/d/a0.h5", "/d/a1.h5", "/d/a2.h5", "/d/b0.h5", "/d/n.h5", "/d/t.h5"):
            d["retired"] = retired
    load(catalog_db, docs)
    got = q.facets(catalog_db, Filter(), ["model"])["model"]
    assert got == [{"value": "b", "count": 1}, {"value": "c", "count": 1}, {"value": 1, "count": 1}] \
        or sorted(map(str, got)) == sorted(map(str, [{"value": "b", "count": 1}, {"value": "c", "count": 1},
                                                      {"value": 1, "count": 1}]))
    # the limit counts the values left after the subtraction (a, all retired, takes no place)
    assert len(q.facets(catalog_db, Filter(), ["model"], limit=2)["model"]) == 2
    # a selected value survives the limit
    sel = q.facets(catalog_db, Filter(model=["c"]), ["model"], limit=1)["model"]
    assert sel == [{"value": "c", "count": 1}]
    # retired files included: every file counted
    every = q.facets(catalog_db, Filter(include_retired=True), ["model"])["model"]
    assert {(str(v["value"]), v["count"]) for v in every} == {
        ("a", 3), ("b", 2), ("c", 1), ("None", 1), ("True", 1), ("1", 1)}
