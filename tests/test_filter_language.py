"""The filter language, through the CLI's entry point (``spine_docs.cli.main``).

Property: any string given to ``--attr``, ``--where``, ``--sort``, ``--status``,
``--version-min`` or ``--run-min`` either means what is documented (the query document has
the documented shape for that kind of input; a sort gives the documented order) or is refused
in one line: exit 2, one stderr line starting "spine-docs: ", no traceback. Never a traceback,
never another meaning.

Hostile arguments: every command (``spine-docs --help`` and ``spine-docs migrate --help``)
given wrong types, unknown options, bad JSON, missing files or a ``--db`` that is a file says
so in one line and exits 2.

The expectations are written here from the documentation (README, ``Filter`` and
``AttrFilter.parse_expr`` docstrings), not taken from the code under test.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from datetime import datetime, timedelta, timezone

import bson
import pytest
import typer.main
from bson import json_util
from hypothesis import HealthCheck, event, given, settings, strategies as st
from hypothesis.errors import InvalidArgument

from spine_docs import cli, convert, store

UTC = timezone.utc
DB = "mongomock://filter-language"
PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
FEW = settings(PROPERTY, max_examples=100)

# ---- what the documentation says ------------------------------------------------------------

STATUSES = ("ok", "incomplete", "error")
# the attribute operators and their spellings (README "Querying from the command line")
SPELLINGS = {"$eq": ("==", "="), "$ne": ("!=",), "$gte": (">=",), "$lte": ("<=",), "$gt": (">",),
             "$lt": ("<",), "$regex": ("~",), "$in": ("in",)}
OPERATOR_CHARS = "=!<>~"
QUOTES = "'\""
SORT_FIELDS = {  # name -> the document field it orders by (the sorts an index serves)
    "mtime": "mtime", "path": "path", "size": "size", "spine_version": "spine_version_key",
    "run": "run", "num_events": "num_events", "first_seen": "ingest.first_seen",
    "last_seen": "ingest.last_seen", "_id": "_id",
}
SORT_WORDS = {"asc": 1, "ascending": 1, "1": 1, "desc": -1, "descending": -1, "-1": -1}
SERVER_SIDE_JAVASCRIPT = {"$where", "$function", "$accumulator"}

# ---- the catalog: every sort field distinct and not null, typed attributes ----------------


def _doc(i: int) -> dict:
    when = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=7 * ((i * 5) % 11))
    words = ["kiwi", "apple", "fig", "date", "cherry", "banana", "grape", "lemon"]
    w = words[i]
    return {
        "_id": f"site{i % 3}:/data/{w}/{i}.h5", "site": f"site{i % 3}",
        "path": f"/data/{w}/{i}.h5", "name": f"{w}.h5", "dir": f"/d/{words[-1 - i]}",
        "size": (i * 37) % 101, "mtime": when, "status": STATUSES[i % 3],
        "spine_version": f"0.{i}", "spine_version_key": f"{(i * 3) % 8:04d}",
        "prod_version": f"p{(i * 5) % 8}", "model": w[::-1], "dataset": f"ds{(i * 7) % 8}",
        "detector": f"det{(i * 3) % 8}", "config": f"c{(i * 5) % 8}", "run": (i * 3) % 8,
        "run_max": None, "subrun": (i * 5) % 8, "event_min": 10 - i, "event_max": 20 + i % 3,
        "num_events": (i * 7) % 8,
        "ingest": {"first_seen": when - timedelta(days=i), "last_seen": when + timedelta(days=i % 3),
                   "times_seen": i % 4},
        "attrs": {"n": i, "x": i / 2, "s": w, "b": i % 2 == 0, "when": when, "weird key": w,
                  convert.escape_key("a.b"): i},
        "attr_types": {"n": "int", "x": "double", "s": "string", "b": "bool", "when": "date",
                       "weird key": "string", convert.escape_key("a.b"): "int"},
    }


DOCS = [_doc(i) for i in range(8)]


@pytest.fixture(scope="module", autouse=True)
def catalog():
    db = store.connect(DB)
    db.files.delete_many({})
    db.files.insert_many([dict(d) for d in DOCS])
    # Typer builds its click command on every call (about two thirds of a run here); one built
    # command serves every call of this module (click contexts are per call)
    built = typer.main.get_command(cli.app)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.main, "get_command",
                   lambda app: built if app is cli.app else _get_command(app))
        yield db
    db.client.drop_database(db.name)


_get_command = typer.main.get_command

# ---- running the CLI ------------------------------------------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    """``spine-docs ARGS`` in-process: (exit code, stdout, stderr). Any exception other than
    the exit escapes: a traceback fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def assert_one_line(code: int, err: str) -> None:
    assert code == 2, (code, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spine-docs: "), err


REFUSED = object()


def query_of(*options: str, extended: bool = True) -> tuple[object, str]:
    """``query OPTIONS -f paths``: (the query document of its header, stdout), or REFUSED
    after checking the refusal is one line. ``extended=False`` reads the header as plain JSON
    (Extended JSON reads ``{"$regex": "x"}`` as a regular expression)."""
    code, out, err = run("query", "--db", DB, *options, "-f", "paths")
    with contextlib.suppress(InvalidArgument):  # outside @given: no statistics to keep
        event("refused" if code else "a query")  # --hypothesis-show-statistics shows the mix
    if code != 0:
        assert_one_line(code, err)
        return REFUSED, out
    assert "Traceback" not in err and not err.strip(), err
    header = out.split("\n")
    assert header[0].startswith("# spine-docs export: "), out
    assert header[1].startswith("# query: "), out
    text = header[1][len("# query: "):]
    return (_loads(text) if extended else json.loads(text)), out


def _loads(text: str):
    return json_util.loads(text, json_options=json_util.JSONOptions(tz_aware=True, tzinfo=UTC))


def same(a, b) -> bool:
    """Equal as BSON (NaN equals itself; 1 and 1.0 differ)."""
    return bson.encode({"v": a}) == bson.encode({"v": b})


# ---- --attr ---------------------------------------------------------------------------------

KEYS = ["n", "x", "s", "b", "when", "weird key", "a.b", "$k", "k", "!k", "k?", "made in"]
SYMBOLS = ["=", "==", "!=", ">", ">=", "<", "<=", "~", " in ", "?", "!", "=>", ">>", "<>", ""]
VALUES = ["5", "-1.5", "abc", "", " ", "'>5'", '">5"', '""', "''", ">5", "=x", "!x", "~x",
          "null", "true", "2024-01-02", "a,b", "'a', 'b'", "x in y", "what?", "1e999", "nan",
          "9" * 40, "'", '"abc', "a\\,b", "(", "[", "\n", "\x00", "a\nb", "x\ry"]


def _attr_expression():
    composed = st.builds(lambda k, sym, v, pad: f"{pad}{k}{sym}{v}{pad}",
                         st.sampled_from(KEYS) | st.text(max_size=4),
                         st.sampled_from(SYMBOLS),
                         st.sampled_from(VALUES) | st.text(max_size=6),
                         st.sampled_from(["", " "]))
    return st.one_of(st.text(max_size=20), composed)


def _check_value_text(text: str, value) -> None:
    """A condition's value is the text after the operator: quoted, exactly the text inside;
    unquoted, never empty and never starting with an operator character."""
    quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in QUOTES
    if quoted and isinstance(value, str) and value == text[1:-1]:
        return
    assert text and text[0] not in OPERATOR_CHARS, (text, value)
    assert not quoted, (text, value)
    if isinstance(value, str):
        assert value == text, (text, value)


def _check_attr_meaning(expr: str, query: dict) -> None:
    assert len(query) == 1, query
    (field, condition), = query.items()
    assert field.startswith("attrs."), query
    key = convert.unescape_key(field[len("attrs."):])
    assert key, "never an empty key"
    assert isinstance(condition, dict) and len(condition) == 1, query
    (op, value), = condition.items()
    s = expr.strip()
    if op == "$exists":
        if value is True:
            assert s.endswith("?") and s[:-1].strip() == key, (expr, query)
        else:
            assert value is False and s.startswith("!") and s[1:].strip() == key, (expr, query)
        assert not any(sym in s for spell in SPELLINGS.values() for sym in spell if sym != "in")
        return
    assert op in SPELLINGS, query
    assert s.startswith(key), (expr, query)
    rest = s[len(key):].lstrip()
    spelling = next((sp for sp in SPELLINGS[op] if rest.startswith(sp)), None)
    assert spelling is not None, (expr, query)
    # the key is what precedes the first operator
    assert not any(sp in key for spells in SPELLINGS.values() for sp in spells if sp != "in")
    text = rest[len(spelling):].strip()
    if op == "$in":
        assert isinstance(value, list) and value, (expr, query)
        return
    _check_value_text(text, value)
    if op == "$regex":
        assert isinstance(value, str), query


@PROPERTY
@given(_attr_expression())
def test_attr_means_what_is_documented_or_is_refused(expr):
    query, _ = query_of(f"--attr={expr}", extended=False)
    if query is REFUSED:
        return
    _check_attr_meaning(expr, query)


def test_attr_examples_of_both_outcomes():
    assert query_of("--attr=x>'>5'")[0] == {"attrs.x": {"$gt": ">5"}}
    assert query_of("--attr=n>=3")[0] == {"attrs.n": {"$gte": 3}}
    assert query_of("--attr=s=a\nb\rc")[0] == {"attrs.s": {"$eq": "a\nb\rc"}}  # one header line
    for refused in ("x>>5", "k>=", "!", "n=abc", "k in ,"):
        assert query_of(f"--attr={refused}")[0] is REFUSED


# ---- --where --------------------------------------------------------------------------------

OPERATOR_NAMES = ["$eq", "$gt", "$in", "$nin", "$and", "$or", "$nor", "$not", "$exists", "$type",
                  "$expr", "$mod", "$regex", "$options", "$text", "$search", "$size", "$all",
                  "$elemMatch", "$comment", "$geoWithin", "$box", "$bitsAllSet", "$jsonSchema",
                  "$where", "$function", "$foo", "$oid", "$date", "$numberLong", "$add"]
_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
            | st.text(max_size=5))
_keys = st.sampled_from(["run", "path", "attrs.n", "status", "", "a.b"] + OPERATOR_NAMES) \
    | st.text(max_size=4)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_keys, inner, max_size=3), max_leaves=8)


_conditions = st.one_of(
    _scalars,
    st.builds(lambda op, v: {op: v}, st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]),
              _scalars),
    st.builds(lambda op, v: {op: v}, st.sampled_from(["$in", "$nin", "$all"]),
              st.lists(_scalars, max_size=3)),
    st.builds(lambda v: {"$exists": v}, st.booleans()),
    st.builds(lambda v: {"$regex": v}, st.sampled_from(["^/data", "kiwi$", "a.c", "(", "[x"])),
    st.builds(lambda v: {"$not": {"$gt": v}}, _scalars),
)
_fields = st.sampled_from(["run", "path", "attrs.n", "status", "size", "model"])
_queries = st.recursive(
    st.dictionaries(_fields, _conditions, min_size=1, max_size=2),
    lambda inner: st.builds(lambda op, qs: {op: qs}, st.sampled_from(["$and", "$or", "$nor"]),
                            st.lists(inner, min_size=1, max_size=2)),
    max_leaves=4)


def _where_text():
    return st.one_of(st.text(max_size=20), _json.map(json.dumps),
                     st.dictionaries(_keys, _json, max_size=3).map(json.dumps),
                     _queries.map(json.dumps))


def _keys_of(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _keys_of(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _keys_of(v)


@PROPERTY
@given(_where_text())
def test_where_means_what_is_documented_or_is_refused(text):
    query, _ = query_of("--where", text)
    if query is REFUSED:
        return
    if not text.strip():  # blank: no condition, as every blank filter option
        assert query == {}
        return
    # documented: a JSON object (Extended JSON), the MongoDB query document itself
    expected = _loads(text)
    assert isinstance(expected, dict), text
    assert not SERVER_SIDE_JAVASCRIPT & set(_keys_of(expected)), text
    if expected:
        # as the header writes it (relaxed Extended JSON: a small Int64 is a plain number)
        expected = _loads(json_util.dumps(expected, json_options=json_util.RELAXED_JSON_OPTIONS))
        assert same(query, expected) or same(query, {"$and": [expected]}), (text, query)
    else:
        assert query == {}


def test_where_examples_of_both_outcomes():
    assert query_of("--where", '{"run": {"$gte": 3}}')[0] == {"run": {"$gte": 3}}
    for refused in ("null", '"str"', "[1]", "{bad", '{"$where": "1"}', '{"$foo": 1}',
                    '{"$text": {"$search": "x"}}', '{"run": {"$mod": [2, 0]}}',
                    '{"path": {"$regex": "("}}'):
        assert query_of("--where", refused)[0] is REFUSED, refused


# ---- --sort ---------------------------------------------------------------------------------


def _documented_sort(text: str):
    """(field, direction) of a --sort text by the documentation, or None if it has none."""
    if text == "":
        return SORT_FIELDS["mtime"], -1
    s = text.strip()
    sign = {"-": -1, "+": 1}.get(s[:1])
    name, colon, word = (s[1:] if sign else s).partition(":")
    if name not in SORT_FIELDS:
        return None
    direction = sign or 1
    if colon:
        if word.lower() not in SORT_WORDS or (sign and sign != SORT_WORDS[word.lower()]):
            return None
        direction = SORT_WORDS[word.lower()]
    return SORT_FIELDS[name], direction


def _value(doc, dotted):
    for part in dotted.split("."):
        doc = doc[part]
    return doc


def _sort_text():
    names = st.sampled_from(sorted(SORT_FIELDS) + ["bogus", "", "attrs.n", "mtime "])
    words = st.sampled_from(sorted(SORT_WORDS) + ["DESC", "sideways", "", " asc"])
    composed = st.builds(lambda sign, name, colon, word: f"{sign}{name}{colon}{word}",
                         st.sampled_from(["", "-", "+", " -", "--"]), names,
                         st.sampled_from(["", ":"]), words)
    documented = st.builds(lambda sign, name, suffix: f"{sign}{name}{suffix}",
                           st.sampled_from(["", "-", "+"]), st.sampled_from(sorted(SORT_FIELDS)),
                           st.sampled_from([""] + [f":{w}" for w in SORT_WORDS]))
    return st.one_of(documented, composed, st.text(max_size=12))


@FEW
@given(_sort_text())
def test_sort_orders_as_documented_or_is_refused(text):
    query, out = query_of(f"--sort={text}")
    documented = _documented_sort(text)
    if query is REFUSED:
        assert documented is None, text
        return
    assert documented is not None, text
    field, direction = documented
    expected = sorted(DOCS, key=lambda d: (_value(d, field), d["_id"]), reverse=direction < 0)
    assert out.split("\n")[2:-1] == [d["path"] for d in expected], text


# ---- --status, --version-min, --run-min -----------------------------------------------------


@FEW
@given(st.sampled_from(STATUSES + ("OK", "bogus", "", " ok", "(none)")) | st.text(max_size=8))
def test_status_is_one_of_the_documented_set_or_is_refused(text):
    query, _ = query_of(f"--status={text}")
    if text in STATUSES:
        assert query == {"status": {"$in": [text]}}
    else:
        assert query is REFUSED, text


_VERSIONS = st.from_regex(r"\A\d{1,3}(\.\d{1,3}){0,3}(rc\d|a\d|b\d|\.dev\d|\.post\d)?\Z")


@FEW
@given(_VERSIONS | st.sampled_from(["", " ", "x", "0.5.", "v0.5", "1..2", "0.5-rc1"])
       | st.text(max_size=10))
def test_version_min_means_a_version_bound_or_is_refused(text):
    query, _ = query_of(f"--version-min={text}")
    if query is REFUSED:
        assert text.strip(), "a blank version means no bound"
        return
    if not text.strip():
        assert query == {}
        return
    assert re.search(r"\d", text), text
    assert set(query) == {"spine_version_key"}, query
    (op, key), = query["spine_version_key"].items()
    assert op == "$gte" and isinstance(key, str) and key, query


def _number(text):
    """The value of a decimal number literal (underscores allowed), else None."""
    from decimal import Decimal, InvalidOperation
    try:
        value = Decimal(text.strip().replace("_", ""))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


@FEW
@given(st.integers(-(2**70), 2**70).map(str)
       | st.sampled_from(["", " 5 ", "+5", "5.0", "5.5", "1e3", "x", "1_000", "\u0665"])
       | st.text(max_size=8))
def test_run_min_means_a_run_bound_or_is_refused(text):
    query, _ = query_of(f"--run-min={text}")
    plain = re.fullmatch(r"[+-]?[0-9]+", text.strip())
    if query is REFUSED:  # a plain integer in 64 bits is never refused
        assert not (plain and -(2**63) <= int(text) < 2**63), text
        return
    number = _number(text)
    assert number is not None and number == int(number), text
    n = int(number)
    assert query == {"$or": [{"run_max": {"$gte": n}}, {"run_max": None, "run": {"$gte": n}}]}


# ---- every command, hostile arguments ---------------------------------------------------------

M = "mongomock://hostile-args"
HOSTILE = [
    ("setup", ["--db", "{file}"]),
    ("setup", ["--db", M, "--schema-file", "{missing}"]),
    ("setup", ["--bogus"]),
    ("inject", ["--db", M]),
    ("inject", ["-s", "x", "--workers", "many"]),
    ("inject", ["-s", "x", "--batch-size", "0"]),
    ("inject", ["-s", "x", "--db", "{file}"]),
    ("runs", ["--limit", "0"]),
    ("runs", ["--db", "{file}"]),
    ("show", []),
    ("show", ["x", "--db", "{file}"]),
    ("query", ["--limit", "-1"]),
    ("query", ["--db", M, "--limit", "99999999999999999999", "-f", "jsonl"]),
    ("query", ["--db", M, "--sort", "bogus"]),
    ("query", ["--db", M, "--sort", "mtime:sideways", "-f", "paths"]),
    ("query", ["--db", M, "--format", "xml"]),
    ("query", ["--db", M, "--where", "{bad"]),
    ("query", ["--db", M, "--where", "null"]),
    ("query", ["--db", M, "--where", '{"$where": "1"}']),
    ("query", ["--db", M, "--where", '{"$text": {"$search": "x"}}']),
    ("query", ["--db", M, "--status", "bogus"]),
    ("query", ["--db", M, "--version-min", "x"]),
    ("query", ["--db", M, "--run-min", "x"]),
    ("query", ["--db", M, "--run-min", "99999999999999999999"]),
    ("query", ["--db", M, "--run-min", "5", "--run-max", "4"]),
    ("query", ["--db", M, "--attr", "x>>5"]),
    ("query", ["--db", M, "--attr", "n>=" + "9" * 40]),
    ("query", ["--db", M, "--saved", "nosuch"]),
    ("query", ["--db", M, "--as-of", "yesterday"]),
    ("query", ["--db", M, "--as-of", "2026-13-45", "-f", "jsonl"]),
    ("facets", ["--db", M, "--as-of", "not a date"]),
    ("query", ["--db", "{file}"]),
    ("query", ["--db", "mongomock://a/b/c"]),
    ("facets", ["--db", M, "--field", "bogus"]),
    ("facets", ["--db", M, "--limit", "0"]),
    ("facets", ["--db", M, "--limit", "99999999999999999999"]),
    ("facets", ["--limit", "x"]),
    ("facets", ["--db", M, "--where", "[1]"]),
    ("attrs", ["--db", M, "--where", '{"loc": {"$geoWithin": {"$box": [[0, 0], [1, 1]]}}}']),
    ("attrs", ["--db", M, "--attr", "!"]),
    ("attrs", ["extra"]),
    ("attrs", ["--db", M, "--as-of", "last tuesday"]),
    ("verify", ["--db", M, "--as-of", "2026-01-01"]),
    ("prune", ["--db", M, "--retired", "--as-of", "2026-01-01"]),
    ("restore-files", ["--db", M, "--all", "--as-of", "2026-01-01"]),
    ("retire", ["--db", M, "--reason", "r", "x", "--as-of", "2026-01-01"]),
    ("unretire", ["--db", M, "x", "--as-of", "2026-01-01"]),
    ("verify", ["--db", M, "--status", "bogus"]),
    ("verify", ["--workers", "0"]),
    ("verify", ["--db", "{file}"]),
    ("verify", ["--db", M, "--where", '{"$where": "1"}']),
    ("prune", ["--db", M]),
    ("prune", ["--db", M, "--missing-for", "forever"]),
    ("prune", ["--db", "{file}", "--retired"]),
    ("restore-files", ["--db", M]),
    ("restore-files", ["--db", M, "--status", "bogus"]),
    ("retire", ["--db", M, "x"]),
    ("retire", ["--db", M, "--reason", " ", "x"]),
    ("retire", ["--db", M, "--reason", "r"]),
    ("unretire", ["--db", M]),
    ("unretire", ["--db", "{file}", "x"]),
    ("lineage", []),
    ("lineage", ["--db", M, "x", "--format", "svg"]),
    ("lineage", ["--db", M, "x", "--up", "--down"]),
    ("lineage", ["--db", M, "x", "--depth", "0"]),
    ("query", ["--db", M, "--derived-from", "/nowhere.h5", "--include-retired", "--run-min", "x"]),
    ("verify", ["--db", M, "--derived-from", "/nowhere.h5", "--status", "bogus"]),
    ("verify", ["--db", M, "--parent-of"]),
    ("prune", ["--db", M, "--derived-from", "/nowhere.h5"]),
    ("prune", ["--db", M, "--retired", "--parent-of", "/nowhere.h5", "--where", "{bad"]),
    ("restore-files", ["--db", M, "--derived-from", "/nowhere.h5", "--status", "bogus"]),
    ("restore-files", ["--db", "{file}", "--parent-of", "/nowhere.h5"]),
    ("diff", []),
    ("diff", ["--db", M, "a"]),
    ("diff", ["--db", M, "a", "b", "--format", "xml"]),
    ("diff", ["--db", M, "--left", "x>>5", "--right", "dataset=a"]),
    ("diff", ["--db", M, "--left", "dataset=a", "--right", "dataset=b", "--match-on", "attrs.x"]),
    ("diff", ["--db", M, "--left", "dataset=a", "--right", "run_min=x"]),
    ("diff", ["--db", M, "--left", '{"$where": "1"}', "--right", "dataset=a"]),
    ("diff", ["--db", M, "a", "b", "--left", "dataset=a"]),
    ("diff", ["a", "b", "--db", "{file}"]),
    ("diff", ["--db", M, "a", "b", "--as-of", "2026-01-01"]),
    ("diff", ["--db", M, "--left", "dataset=a", "--right", "dataset=b", "--left-as-of", "soon"]),
    ("diff", ["--db", M, "--left", "dataset=a", "--right", "dataset=b", "--as-of", "2026-02-30"]),
    ("demo", ["--files", "0"]),
    ("demo", ["--files", "x"]),
    ("app", ["--port", "0"]),
    ("app", ["--db", "{file}"]),
    ("migrate", []),  # no sub-command: the usage, then exit 2 (below)
    ("migrate status", ["--db", "{file}"]),
    ("migrate check", ["--db", M, "--schema-file", "{missing}"]),
    ("migrate plan", ["--db", M, "--down"]),
    ("migrate up", ["--to", "x"]),
    ("migrate down", []),
    ("migrate stamp", ["x"]),
    ("migrate history", ["--limit", "-1"]),
    ("migrate new", []),
    ("migrate ack", ["x"]),
    ("migrate unlock", ["--bogus"]),
    ("migrate backup", ["--keep", "0"]),
    ("migrate restore", ["--db", M, "--from", "{missing}"]),
    ("migrate nosuch", []),
    ("backup", ["--keep", "0"]),
    ("backup", ["--db", "{file}"]),
    ("backup", ["--db", M, "--out", "{file}"]),
    ("doctor", ["--db", "{file}"]),
    ("doctor", ["--runs", "-1"]),
    ("roles", []),
    ("roles setup", ["--db", M]),
    ("roles show", ["--bogus"]),
    ("users", []),
    ("users add", ["bob", "--role", "reader", "--db", M]),
    ("users add", ["bob", "--role", "king", "--db", "mongodb://127.0.0.1:1/x"]),
    ("users add", ["bob", "--role", "reader", "--password", "secret", "--db", M]),
]


def _commands():
    group = _get_command(cli.app)
    out = set()
    for name, command in group.commands.items():
        out.add(name)
        out.update(f"{name} {sub}" for sub in getattr(command, "commands", {}))
    return out


def test_every_command_has_hostile_arguments():
    assert _commands() <= {command for command, _ in HOSTILE}


@pytest.mark.parametrize("command,args", HOSTILE, ids=lambda v: v if isinstance(v, str) else None)
def test_hostile_arguments_are_one_line(tmp_path, monkeypatch, command, args):
    monkeypatch.chdir(tmp_path)  # nothing is written in the checkout (.spine_docs/)
    for name in ("SPINE_DOCS_DB", "SPINE_DOCS_HOME"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "file").write_text("not a catalog")
    filled = [a.replace("{file}", str(tmp_path / "file")).replace("{missing}", str(tmp_path / "missing"))
              for a in args]
    code, out, err = run(*command.split(), *filled)
    if command in ("migrate", "roles", "users") and not args:  # a group alone: its usage
        assert code == 2 and "Usage" in out + err and "Traceback" not in err
        return
    assert_one_line(code, err)
    assert (tmp_path / "file").read_text() == "not a catalog"
