"""Shared pieces of the spine-docs explorer, imported by ``explorer.py`` and ``views/*.py``.

The explorer only renders: every query is a function of :mod:`spine_docs.queries` (or of
``store``/``schema``/``runs`` for the connection, the version gate and the last run, and
:mod:`spine_docs.lineage` for a file's parents and children). This
module holds what every page needs:

* :func:`open_catalog` connects once per URL (``st.cache_resource``), picks up files other
  processes added (``store.refresh``), checks the schema version and stops the page with one
  clear message when the catalog is down, wrong, of another schema version, or empty;
* :func:`run` calls a query function through a short cache (``st.cache_data``) whose key is
  the catalog URL, a stamp that changes when files are added, the filter and the arguments;
  :func:`fetch` does the same but renders a time-limit warning instead of raising;
* the view state: one dict of URL query parameters (the filter as
  :meth:`queries.Filter.to_params` writes it, plus each page's own keys), kept in the session
  and mirrored into the URL on every run, so a view can be shared and reloaded
  (:func:`sync_url`, :func:`state`, :func:`current_filter`, :func:`set_filter`);
* the filter sidebar (:func:`filter_sidebar`): facets with counts, ranges, dates, path and
  attribute conditions, whether retired files are included and whether superseded ones are,
  and "as of" a date (the filter's ``as_of``: :func:`run` then answers from
  :mod:`spine_docs.asof`, the history, and :func:`as_of_banner` says which instant is shown);
* :func:`file_lineage`: a file's parents and children (:func:`spine_docs.lineage.neighbours`),
  :func:`file_lineage_graph`: its lineage graph as DOT (:func:`spine_docs.lineage.graph`);
* :func:`export_file`: the bytes of an export, streamed from the cursor to a temporary file.

It is a plain module beside ``explorer.py`` (Streamlit puts that directory on ``sys.path``
while the app runs), so it works from a checkout and from the installed wheel alike.
"""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Mapping

import streamlit as st
from bson import json_util
from pymongo.errors import OperationFailure, PyMongoError

from spine_docs import access, asof, history, lineage, queries, runs, schema, store
from spine_docs.settings import Settings

#: Seconds a query result is reused before it is asked again. Results are also keyed by a
#: stamp of the catalog (file count and last inject run), so new files show up on the next
#: interaction; the Refresh button forgets everything (e.g. after edits made with mongosh).
CACHE_TTL_S = 300
PAGE_SIZES = (25, 50, 100, 200, 500, 1000)
DEFAULT_PAGE_SIZE = 50
FACET_PILLS = 8          # facet values shown as pills; the rest go to a "more" list
FACET_LIMIT = 50         # facet values fetched per field

FACET_TITLES = {
    "site": "Site", "status": "Status", "spine_version": "SPINE version", "model": "Model",
    "dataset": "Dataset", "detector": "Detector", "config": "Configuration",
    "prod_version": "Production version",
}

#: URL query parameters of the filter (see queries.Filter.to_params).
FILTER_KEYS: frozenset[str] = queries.PARAM_KEYS
#: Each page's own URL query parameters.
PAGE_KEYS: dict[str, tuple[str, ...]] = {
    "files": ("sort", "size", "after", "before", "pg", "file"),
    "export": ("fmt",),
    "analytics": ("view", "by", "group", "metric", "hist", "log", "cov"),
    "attributes": ("docs",),
    "replicas": ("rkey",),
    "saved": (),
    "compare": ("mode", "a", "b", "all", "left", "right", "key"),
}
#: Keys that lose their meaning when the filter changes (page cursors, the selected file).
RESET_ON_FILTER = ("after", "before", "pg", "file")

_NULL = "\x00(none)"   # stands for a null facet value inside widgets


# --------------------------------------------------------------------------- the catalog

@dataclass
class Catalog:
    """The open catalog of this run."""

    url: str
    db: Any
    settings: Settings
    total: int
    stamp: str

    @property
    def timeout_ms(self) -> int:
        return int(self.settings.query_timeout_ms)

    @property
    def label(self) -> str:
        return store.describe(self.db)


@st.cache_resource(show_spinner=False, max_entries=16)
def _connect(url: str, timeout_ms: int) -> Any:
    """One connection per catalog URL, shared by every session (errors are not cached).
    The explorer creates no catalog: where there is none it says so. The credentials apart
    from the URL (SPINE_DOCS_USER, SPINE_DOCS_PASSWORD_FILE: a reader account, see
    spine_docs/access.py) are read here."""
    db = store.connect(url, timeout_ms=timeout_ms, create=False,
                       **access.credentials(Settings.load(db=url)))
    store.keep_columns(db)  # the next explorer's first view restores the column cache
    return db


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _stop(kind: str, message: str, command: str | None = None, note: str | None = None) -> None:
    getattr(st, kind)(message)
    if note:
        st.caption(note)
    if command:
        st.code(command, language="bash")
    st.stop()


def _stamp(db: Any, total: int) -> str:
    """Changes whenever files are added or an inject run starts or ends (cache key part)."""
    newest = runs.last(db, 1)  # TODO(queries): catalog_stamp(db) -> str
    last = newest[0] if newest else {}
    return f"{total}|{last.get('_id')}|{last.get('state')}|{last.get('finished')}"


def open_catalog() -> Catalog:
    """Connect to the catalog of ``SPINE_DOCS_DB`` and check it; when it cannot be used,
    render one message (never a traceback) and stop the page."""
    settings = Settings.load()
    url = settings.db_url
    shown = schema.display_url(url)
    try:
        db = _connect(url, int(settings.connect_timeout_ms))
        store.refresh(db)
        schema.check_version(db, db_url=url, allow_empty=True)
        total = queries.total(db)
        stamp = _stamp(db, total)
    except store.StoreError as exc:
        _stop("error", f"Cannot open the catalog: {_first_line(exc)}",
              note="Check the URL given with --db or SPINE_DOCS_DB, and that the database is running.")
        raise  # unreachable: st.stop() raises
    except schema.SchemaMismatch as exc:
        _stop("error", f"The catalog at {shown} cannot be used by this spine-docs: {_first_line(exc)}",
              command=exc.command)
        raise
    except schema.SchemaError as exc:
        _stop("error", f"Schema problem: {_first_line(exc)}")
        raise
    except OperationFailure as exc:  # it answers, but refuses (permissions, ...)
        _stop("error", f"The database at {shown} refused a request: {_first_line(exc)}",
              note="Check the database user's permissions, then reload the page.")
        raise
    except PyMongoError as exc:
        _stop("error", f"The database at {shown} is not answering: {_first_line(exc)}",
              note="Check that the server is running and reachable, then reload the page.")
        raise
    if total == 0:
        _stop("info", f"The catalog at {shown} is empty: no file has been indexed yet.",
              command=f"spine-docs inject --db {_shell(shown)} --source '/path/to/files/**/*.h5'",
              note="Index files with the command below, then press Refresh or reload the page.")
    return Catalog(url=url, db=db, settings=settings, total=total, stamp=stamp)


def _shell(text: str) -> str:
    import shlex
    return shlex.quote(text)


# --------------------------------------------------------------------------- cached queries

def _key_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


#: The queries answered as of a date (a filter with ``as_of``): by :mod:`spine_docs.asof`,
#: client-side from the history, without a time limit. Every other one is refused then.
AS_OF_QUERIES: dict[str, Any] = {
    "count": asof.count, "facets": asof.facets, "page": asof.page,
    "attribute_dictionary": asof.attribute_dictionary,
}


def _query_function(fn: str, flt: queries.Filter) -> tuple[Any, bool]:
    """(the function answering ``fn`` for ``flt``, whether it takes a time limit)."""
    if flt.as_of is None:
        return getattr(queries, fn), True
    if fn not in AS_OF_QUERIES:
        raise queries.QueryError("not available as of a date (the file list, counts, facets, exports "
                                 "and the attribute dictionary are); clear \"As of\" in the sidebar")
    return AS_OF_QUERIES[fn], False


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=2000)
def _cached(fn: str, url: str, connect_ms: int, stamp: str, params: str, kwargs: str,
            timeout_ms: int) -> Any:
    db = _connect(url, connect_ms)
    flt = queries.Filter.from_params(json.loads(params))
    function, timed = _query_function(fn, flt)
    more = {"max_time_ms": timeout_ms} if timed else {}
    return function(db, flt, **json.loads(kwargs), **more)


def run(fn: str, cat: Catalog, flt: queries.Filter | None, **kwargs: Any) -> Any:
    """``queries.<fn>(db, flt, **kwargs, max_time_ms=<the time limit>)``, cached briefly.

    Raises :class:`queries.QueryTimeout` / :class:`queries.QueryError` like the function."""
    params = (flt or queries.Filter()).to_params()
    return _cached(fn, cat.url, int(cat.settings.connect_timeout_ms), cat.stamp,
                   _key_json(params), _key_json(kwargs), cat.timeout_ms)


def timeout_message(what: str, exc: queries.QueryTimeout) -> str:
    limit = f"{exc.max_time_ms:,} ms" if exc.max_time_ms else "its time limit"
    return (f"{what}: the query hit the time limit ({limit}) and was stopped. "
            "Narrow the filter, or raise SPINE_DOCS_QUERY_TIMEOUT_MS.")


def fetch(what: str, fn: str, cat: Catalog, flt: queries.Filter | None, *, where: Any = None,
          **kwargs: Any) -> Any:
    """:func:`run`, but a time limit or a bad parameter renders a message (in ``where``,
    default the main area) and returns None, so the rest of the page still renders."""
    where = where if where is not None else st
    try:
        return run(fn, cat, flt, **kwargs)
    except queries.QueryTimeout as exc:
        where.warning(timeout_message(what, exc), icon="⏱️")
    except queries.QueryError as exc:
        where.error(f"{what}: {exc}")
    return None


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=500)
def _cached_file(url: str, connect_ms: int, stamp: str, file_id: str, as_of: str | None = None) -> dict | None:
    db = _connect(url, connect_ms)
    if as_of is None:
        return queries.get_file(db, file_id, unescape=True)
    doc = queries.get_file(db, file_id)
    if doc is None:
        return None
    try:
        then = history.document_as_of(db, doc, as_of)
    except history.HistoryError:
        return None
    then.pop("version", None)
    return queries.unescape_document(then)


def get_file(cat: Catalog, file_id: str, as_of: datetime | None = None) -> dict | None:
    """The document of one file with its original attribute names (for display); with
    ``as_of``, as it was then (None when it was not in the catalog then)."""
    return _cached_file(cat.url, int(cat.settings.connect_timeout_ms), cat.stamp, file_id,
                        None if as_of is None else as_of.isoformat())


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=500)
def _cached_lineage(url: str, connect_ms: int, stamp: str, path: str) -> dict:
    return lineage.neighbours(_connect(url, connect_ms), path)


def file_lineage(cat: Catalog, path: str) -> dict:
    """The direct parents and children of a file (:func:`spine_docs.lineage.neighbours`)."""
    return _cached_lineage(cat.url, int(cat.settings.connect_timeout_ms), cat.stamp, path)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=200)
def _cached_lineage_graph(url: str, connect_ms: int, stamp: str, path: str) -> lineage.Graph:
    return lineage.graph(_connect(url, connect_ms), path)


def file_lineage_graph(cat: Catalog, path: str) -> lineage.Graph:
    """A file's lineage graph, two generations each way, capped (:func:`spine_docs.lineage.graph`)."""
    return _cached_lineage_graph(cat.url, int(cat.settings.connect_timeout_ms), cat.stamp, path)


def refresh_caches() -> None:
    """The Refresh button: forget cached results (the catalog is reloaded on every run)."""
    _cached.clear()
    _cached_file.clear()
    _cached_lineage.clear()
    _cached_lineage_graph.clear()


# --------------------------------------------------------------------------- view state (URL)

def state() -> dict[str, Any]:
    """The view state of this session: URL query parameters as ``{name: str}``."""
    return st.session_state.setdefault("_state", {})


def _read_url(keys: frozenset[str] | set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in st.query_params.keys():
        if k in keys:
            values = st.query_params.get_all(k)
            out[k] = values[0] if len(values) == 1 else list(values)
    return out


def _page_keys() -> set[str]:
    return set(FILTER_KEYS) | set(PAGE_KEYS.get(st.session_state.get("_page", ""), ()))


def sync_url(page: str) -> None:
    """Reconcile the URL and the session's view state at the start of a run.

    The URL wins when it differs from what we wrote last (a shared link, a reload, the
    browser's back button); when it is empty after a page switch (Streamlit clears the query
    string when one navigates), the session's state is written back into it."""
    ss = st.session_state
    ss["_page"] = page
    keys = _page_keys()
    url = _read_url(keys)
    written = ss.get("_url_written")
    if written is None or (url and url != written):
        current = state()
        adopted = {k: v for k, v in current.items() if k not in keys}
        fparams = {k: v for k, v in url.items() if k in FILTER_KEYS}
        try:
            flt = queries.Filter.from_params(fparams)
        except ValueError as exc:
            ss["_notice"] = f"The filter in the URL was not understood and was dropped: {_error_text(exc)}"
            flt = queries.Filter()
        adopted.update(flt.to_params())
        adopted.update({k: (v if isinstance(v, str) else v[-1])
                        for k, v in url.items() if k not in FILTER_KEYS})
        ss["_state"] = adopted
    commit()


def commit() -> None:
    """Write the view state of the current page into the URL (filter + the page's keys)."""
    keys = _page_keys()
    desired = {k: str(v) for k, v in state().items() if k in keys and v is not None}
    if _read_url(keys) != desired:
        st.query_params.from_dict(desired)
    st.session_state["_url_written"] = desired


def set_view(**changes: Any) -> None:
    """Set (or with None remove) page keys of the view state."""
    s = state()
    for k, v in changes.items():
        if v is None:
            s.pop(k, None)
        else:
            s[k] = str(v)


def filter_params() -> dict[str, str]:
    return {k: v for k, v in state().items() if k in FILTER_KEYS}


def current_filter() -> queries.Filter:
    """The filter of the view state (an empty filter if it became invalid)."""
    try:
        return queries.Filter.from_params(filter_params())
    except ValueError as exc:
        st.session_state["_notice"] = f"The filter was not valid and was cleared: {_error_text(exc)}"
        set_filter(queries.Filter())
        return queries.Filter()


def set_filter(flt: queries.Filter) -> None:
    """Replace the filter of the view state (page cursors and the selected file are reset)."""
    s = state()
    for k in list(s):
        if k in FILTER_KEYS or k in RESET_ON_FILTER:
            del s[k]
    s.update(flt.to_params())


def _error_text(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            msg = str(first.get("msg", exc))
            return msg.removeprefix("Value error, ")
        except Exception:  # noqa: BLE001 - fall back to the text
            pass
    return _first_line(exc)


def update_filter(**changes: Any) -> bool:
    """Change some fields of the filter; an invalid result is refused with a message."""
    data = current_filter().model_dump()
    data.update(changes)
    try:
        new = queries.Filter.model_validate(data)
    except ValueError as exc:
        st.session_state["_filter_error"] = _error_text(exc)
        return False
    set_filter(new)
    return True


def switch_to(page_file: str) -> None:
    """Go to another page keeping the view state (Streamlit clears the query string)."""
    st.switch_page(page_file)


# --------------------------------------------------------------------------- formatting

def human_bytes(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return ""
    v = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(v) < 1000 or unit == "PB":
            return f"{v:,.0f} {unit}" if unit == "B" else f"{v:,.1f} {unit}"
        v /= 1000
    return str(n)  # pragma: no cover


def facet_label(value: Any) -> str:
    """A facet value as shown; no value (None, or the NaN pandas makes of it) is "(none)"."""
    missing = value is None or value == _NULL or (isinstance(value, float) and value != value)
    return queries.NONE_TOKEN if missing else str(value)


def to_json_text(value: Any, indent: int | None = None) -> str:
    return json_util.dumps(value, json_options=json_util.RELAXED_JSON_OPTIONS, indent=indent,
                           ensure_ascii=False)


def plain(value: Any) -> Any:
    """A BSON value as plain JSON data (for st.json)."""
    return json.loads(to_json_text(value))


def utc_text(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


# --------------------------------------------------------------------------- export

def export_file(db: Any, params: Mapping[str, str], fmt: str, sort: str = "-mtime") -> bytes:
    """The whole export of the filter ``params`` in ``fmt`` (csv, jsonl or paths), in the
    order ``sort`` (the Files page's).

    The documents are streamed from one cursor into a temporary file line by line, never
    held in memory as a list; Streamlit then serves the finished file (it keeps the bytes of
    a download in memory once — for very large exports use ``spine-docs query --format``).
    Runs in Streamlit's download thread: no ``st.*`` call here."""
    flt = queries.Filter.from_params(params)
    lines = queries.export(db, flt, fmt, sort=sort) if flt.as_of is None else asof.export(db, flt, fmt, sort=sort)
    with tempfile.TemporaryFile() as f:
        for line in lines:
            f.write(line.encode("utf-8"))
        f.seek(0)
        return f.read()


# --------------------------------------------------------------------------- filter sidebar

def _w(name: str) -> str:
    return "w:" + name


def _seed(name: str, value: Any) -> None:
    st.session_state[_w(name)] = value


def _on_facet(field: str, more: bool = False) -> None:
    ss = st.session_state
    chosen = list(ss.get(_w("facet:" + field)) or [])
    if more:
        chosen += list(ss.get(_w("facet_more:" + field)) or [])
    values = [None if v == _NULL else v for v in chosen]
    update_filter(**{field: values})


def _on_value(name: str) -> None:
    value = st.session_state.get(_w(name))
    if isinstance(value, str) and not value.strip():
        value = None
    update_filter(**{name: value})


def _on_path() -> None:
    ss = st.session_state
    text = (ss.get(_w("path")) or "").strip() or None
    regex = bool(ss.get(_w("path_regex")))
    update_filter(path_contains=None if regex else text, path_regex=text if regex else None)


def _on_where() -> None:
    text = (st.session_state.get(_w("where")) or "").strip()
    update_filter(where=text or None)


def _remove_attr(index: int) -> None:
    flt = current_filter()
    conditions = [a.model_dump() for i, a in enumerate(flt.attr_filters) if i != index]
    update_filter(attr_filters=conditions)


def add_attr_condition(key: str, op: str, text: Any, type_label: str | None) -> bool:
    """Add one attribute condition, typed with the key's type from the dictionary."""
    try:
        cond = queries.AttrFilter.parse(key, op, text, type_label)
    except ValueError as exc:  # QueryError is a ValueError too
        st.session_state["_filter_error"] = _error_text(exc)
        return False
    flt = current_filter()
    return update_filter(attr_filters=[a.model_dump() for a in flt.attr_filters] + [cond.model_dump()])


def _on_add_expr(cat: Catalog) -> None:
    ss = st.session_state
    expr = (ss.get(_w("attr_expr")) or "").strip()
    if not expr:
        ss["_filter_error"] = "write a condition such as beam_energy>=1.5"
        return
    try:
        types = {k["key"]: k["type"] for k in run("attribute_keys", cat, None)}
    except queries.QueryTimeout:
        types = {}   # untyped: numbers and booleans are still recognised
    try:
        cond = queries.AttrFilter.parse_expr(expr, types)
    except ValueError as exc:
        ss["_filter_error"] = _error_text(exc)
        return
    flt = current_filter()
    if update_filter(attr_filters=[a.model_dump() for a in flt.attr_filters] + [cond.model_dump()]):
        ss[_w("attr_expr")] = ""


def _clear_filter() -> None:
    set_filter(queries.Filter())


def _on_refresh() -> None:
    refresh_caches()


ATTR_OP_LABELS = {op.name: op.label for op in queries.ATTR_OP_TABLE}  # in the table's order


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value


def _seed_widgets(flt: queries.Filter, facet_values: Mapping[str, list]) -> None:
    for field, values in facet_values.items():
        _seed("facet:" + field, [(_NULL if v is None else v) for v in getattr(flt, field)])
        _seed("facet_more:" + field, [])
    for name in ("run_min", "run_max", "subrun_min", "subrun_max", "events_min", "events_max"):
        _seed(name, getattr(flt, name))
    _seed("version_min", flt.version_min)
    _seed("version_max", flt.version_max)
    _seed("mtime_from", _as_date(flt.mtime_from))
    _seed("mtime_to", _as_date(flt.mtime_to))
    _seed("path", flt.path_regex or flt.path_contains or "")
    _seed("path_regex", bool(flt.path_regex))
    _seed("where", to_json_text(flt.where) if flt.where else "")
    _seed("include_retired", flt.include_retired)
    _seed("latest_only", flt.latest_only)


def filter_sidebar(cat: Catalog) -> queries.Filter:
    """Render the filter editor in the sidebar; returns the filter of this run."""
    ss = st.session_state
    flt = current_filter()
    side = st.sidebar
    head, clear = side.columns([3, 2], vertical_alignment="center")
    head.markdown("**Filter**")
    clear.button("Clear", key="w:clear", on_click=_clear_filter, disabled=flt.is_empty(),
                 width="stretch", help="Remove every condition")
    for key in ("_notice", "_filter_error"):
        if ss.get(key):
            side.error(ss.pop(key))
    side.caption(flt.describe())
    _seed("as_of", _as_date(flt.as_of))
    side.date_input("As of", value=None, key=_w("as_of"), on_change=_on_value, args=("as_of",),
                    format="YYYY-MM-DD",
                    help="The catalog as it stood at the end of that day (UTC): the files it held "
                         "then, with the values they had (from the history). Empty: now.")

    facets = fetch("Facets", "facets", cat, flt, where=side,
                   fields=list(queries.DEFAULT_FACETS), limit=FACET_LIMIT) or {}
    _seed_widgets(flt, facets)
    for field, values in facets.items():
        counts = {(_NULL if v["value"] is None else v["value"]): v["count"] for v in values}
        selected = [(_NULL if v is None else v) for v in getattr(flt, field)]
        for v in selected:
            counts.setdefault(v, 0)
        ordered = list(counts)
        shown = selected + [v for v in ordered if v not in selected][: max(0, FACET_PILLS - len(selected))]
        rest = [v for v in ordered if v not in shown]
        fmt = functools.partial(_facet_text, counts)
        side.pills(FACET_TITLES.get(field, field), shown, selection_mode="multi", format_func=fmt,
                   key=_w("facet:" + field), on_change=_on_facet, args=(field,))
        if rest:
            side.multiselect(f"More {FACET_TITLES.get(field, field).lower()} values", rest,
                             format_func=fmt, key=_w("facet_more:" + field),
                             on_change=_on_facet, args=(field, True),
                             placeholder=f"{len(rest)} more…", label_visibility="collapsed")

    side.toggle("Include retired files", key=_w("include_retired"), on_change=_on_value,
                args=("include_retired",),
                help="Retired files (`spine-docs retire`) are hidden unless this is on")
    side.toggle("Latest versions only", key=_w("latest_only"), on_change=_on_value,
                args=("latest_only",),
                help="Hide files a newer version superseded (same inputs and config name, newer "
                     "production or SPINE version)")

    ranged = any(getattr(flt, n) is not None for n in (
        "run_min", "run_max", "subrun_min", "subrun_max", "events_min", "events_max",
        "mtime_from", "mtime_to", "version_min", "version_max"))
    with side.expander("Runs, events, dates, versions", expanded=ranged):
        for label, lo, hi in (("Run", "run_min", "run_max"), ("Subrun", "subrun_min", "subrun_max"),
                              ("Events", "events_min", "events_max")):
            a, b = st.columns(2)
            a.number_input(f"{label} from", value=None, step=1, min_value=0, key=_w(lo),
                           on_change=_on_value, args=(lo,), placeholder="any")
            b.number_input(f"{label} to", value=None, step=1, min_value=0, key=_w(hi),
                           on_change=_on_value, args=(hi,), placeholder="any")
        a, b = st.columns(2)
        a.date_input("Modified from", value=None, key=_w("mtime_from"), on_change=_on_value,
                     args=("mtime_from",), help="UTC, inclusive")
        b.date_input("Modified to", value=None, key=_w("mtime_to"), on_change=_on_value,
                     args=("mtime_to",), help="UTC, inclusive (the whole day)")
        a, b = st.columns(2)
        a.text_input("SPINE version ≥", key=_w("version_min"), on_change=_on_value,
                     args=("version_min",), placeholder="e.g. 0.5",
                     help="Semantic comparison: 0.10 > 0.9; pre-releases sort before their release")
        b.text_input("SPINE version ≤", key=_w("version_max"), on_change=_on_value,
                     args=("version_max",), placeholder="e.g. 0.17.1")

    with side.expander("Path", expanded=bool(flt.path_contains or flt.path_regex)):
        st.text_input("Path contains", key=_w("path"), on_change=_on_path,
                      placeholder="substring, e.g. mpvmpr", label_visibility="collapsed")
        st.toggle("Regular expression", key=_w("path_regex"), on_change=_on_path)

    with side.expander(f"Attributes ({len(flt.attr_filters)})", expanded=bool(flt.attr_filters)):
        for i, cond in enumerate(flt.attr_filters):
            a, b = st.columns([5, 1], vertical_alignment="center")
            a.code(cond.describe(), language=None)
            b.button("✕", key=f"w:attr_rm:{i}", on_click=_remove_attr, args=(i,),
                     help="Remove this condition")
        st.text_input("Condition", key=_w("attr_expr"), placeholder="beam_energy>=1.5",
                      label_visibility="collapsed",
                      help="`key=value`, `key!=value`, `key>=1.5` (also >, <, <=), `key~regex`, "
                           "`key in a,b`, `key?` (has the attribute), `!key` (lacks it). The value "
                           "is typed like the attribute in the catalog; quote it to force a string.")
        st.button("Add condition", key="w:attr_add", on_click=_on_add_expr, args=(cat,),
                  width="stretch")
        st.page_link("views/attributes.py", label="Browse the attribute keys",
                     icon=":material/schema:")

    with side.expander("MongoDB query (advanced)", expanded=bool(flt.where)):
        st.text_area("Query document (JSON, Extended JSON accepted)", key=_w("where"),
                     on_change=_on_where, height=90,
                     placeholder='{"attrs.beam_energy": {"$gt": 1.5}}')
    return flt


def _facet_text(counts: Mapping[Any, int], value: Any) -> str:
    return f"{facet_label(value)} · {counts.get(value, 0):,}"


def catalog_sidebar(cat: Catalog) -> None:
    """The catalog line and the Refresh button."""
    side = st.sidebar
    a, b = side.columns([3, 2], vertical_alignment="center")
    a.caption(f"{cat.label} · {cat.total:,} files")
    b.button("Refresh", key="w:refresh", on_click=_on_refresh, icon=":material/refresh:",
             help="Ask the catalog again. Results are reused until files are added (at most "
                  f"{CACHE_TTL_S // 60} minutes); use this after changes made outside spine-docs.",
             width="stretch")


# --------------------------------------------------------------------------- export helpers

@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=200)
def _cached_preview(url: str, connect_ms: int, stamp: str, params: str, fmt: str, sort: str,
                    lines: int, timeout_ms: int) -> list[str]:
    db = _connect(url, connect_ms)
    flt = queries.Filter.from_params(json.loads(params))
    if flt.as_of is not None:
        return list(asof.export(db, flt, fmt, sort=sort, limit=lines))
    return list(queries.export(db, flt, fmt, sort=sort, limit=lines, max_time_ms=timeout_ms))


def preview_lines(cat: Catalog, flt: queries.Filter, fmt: str, lines: int, sort: str) -> list[str]:
    """The start of an export (its comment lines, header and first ``lines`` files)."""
    return _cached_preview(cat.url, int(cat.settings.connect_timeout_ms), cat.stamp,
                           _key_json(flt.to_params()), fmt, sort, lines, cat.timeout_ms)


def cli_command(command: str, cat: Catalog, flt: queries.Filter, extra: list[str] | None = None) -> str:
    """The ``spine-docs`` command line that selects the same files as ``flt``.

    Facets, versions, runs and the path use the command's own options; whatever has none
    (null values, subruns, events, dates, regexes, attribute conditions, raw queries) goes
    into ``--where`` as the exact MongoDB query."""
    args = ["spine-docs", command, "--db", schema.display_url(cat.url)]
    rest = flt.model_dump()
    for field in ("model", "dataset", "site", "status"):
        values = getattr(flt, field)
        if values and all(v is not None for v in values):
            for v in values:
                args += [f"--{field}", v]
            rest[field] = []
    for field in ("version_min", "version_max", "run_min", "run_max", "path_contains"):
        value = getattr(flt, field)
        if value is not None:
            args += ["--" + field.replace("_", "-"), str(value)]
            rest[field] = None
    if flt.include_retired:
        args.append("--include-retired")
    if flt.latest_only:
        args.append("--latest-only")
    if flt.as_of is not None:
        day = flt.as_of.date()
        args += ["--as-of", day.isoformat() if history.as_of_instant(day) == flt.as_of
                 else flt.as_of.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"]
        rest["as_of"] = None
    remaining = queries.Filter.model_validate(rest)
    if not remaining.is_empty():
        args += ["--where", to_json_text(remaining.to_mongo())]
    args += list(extra or [])
    return " ".join(_shell(a) for a in args)


# --------------------------------------------------------------------------- every page

PAGE_TITLE = "spine-docs explorer"


def bootstrap(page: str) -> tuple[Catalog, queries.Filter]:
    """What every page does first: reconcile the URL with the view state, open the catalog
    (stopping with one message when it cannot be used), draw the sidebar (catalog, Refresh,
    the filter with facet counts). Returns the catalog and the filter of this run."""
    st.set_page_config(page_title=PAGE_TITLE, page_icon=":material/dataset:", layout="wide")
    sync_url(page)
    cat = open_catalog()
    catalog_sidebar(cat)
    flt = filter_sidebar(cat)
    as_of_banner(flt, page)
    return cat, flt


def as_of_banner(flt: queries.Filter, page: str = "") -> None:
    """Say, above every page, that the catalog is shown as of a date (the Compare page takes
    no sidebar filter: there, say how to compare a file as it was)."""
    if flt.as_of is not None and page == "compare":
        st.info(f"The sidebar's \"As of\" ({utc_text(flt.as_of)}) does not apply here: write a "
                f"file as it was as PATH@DATE (e.g. {flt.as_of:%Y-%m-%d}) or PATH@N (version N).",
                icon=":material/history:")
        return
    if flt.as_of is not None:
        st.info(f"As of {utc_text(flt.as_of)}: the files the catalog held then, with the values "
                "they had (from the history). Clear \"As of\" in the sidebar for now.",
                icon=":material/history:")
