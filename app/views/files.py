"""Files: the matching files, newest first, one keyset page at a time, and a detail panel.

URL keys: ``sort`` (``-mtime``), ``size`` (rows per page), ``after``/``before`` (keyset
cursors), ``pg`` (the page number shown), ``file`` (the ``_id`` in the detail panel).
"""

from __future__ import annotations

import functools
from datetime import datetime

import pandas as pd
import streamlit as st

import explorer_ui as ui
from spine_docs import history as file_history, lineage, queries

SORT_LABELS = {
    "mtime": "modified", "path": "path", "name": "name", "site": "site", "size": "size",
    "status": "status", "spine_version": "SPINE version", "prod_version": "production version",
    "model": "model", "dataset": "dataset", "detector": "detector", "config": "configuration",
    "run": "run", "subrun": "subrun", "num_events": "events", "first_seen": "first indexed",
    "last_seen": "last seen",
}
COLUMN_ORDER = ("name", "dataset", "model", "spine_version", "run", "subrun", "num_events", "size",
                "mtime", "status", "site", "detector", "path")
INT_COLUMNS = ("run", "subrun", "num_events", "size")
PROMOTED = ("site", "path", "name", "dir", "size", "mtime", "status", "error", "spine_version",
            "spine_version_key", "prod_version", "model", "dataset", "detector", "config", "run",
            "run_max", "subrun", "subrun_max", "event_min", "event_max", "num_events",
            "inputs_count", "format", "format_version", "complete", "fingerprint", "checksum")

cat, flt = ui.bootstrap("files")
view = ui.state()


# ------------------------------------------------------------------ view parameters

def _sort() -> tuple[str, int]:
    try:
        return queries.parse_sort(view.get("sort") or "-mtime")
    except queries.QueryError:
        return queries.DEFAULT_SORT


def _size() -> int:
    try:
        size = int(view.get("size") or ui.DEFAULT_PAGE_SIZE)
    except ValueError:
        return ui.DEFAULT_PAGE_SIZE
    return size if 1 <= size <= queries.MAX_PAGE_SIZE else ui.DEFAULT_PAGE_SIZE


sort, size = _sort(), _size()


def _on_sort() -> None:
    ss = st.session_state
    field = ss.get("w:sort_field") or "mtime"
    descending = ss.get("w:sort_desc", True)
    ui.set_view(sort=queries.format_sort((field, -1 if descending else 1)),
                after=None, before=None, pg=None)


def _on_size() -> None:
    ui.set_view(size=st.session_state.get("w:size") or ui.DEFAULT_PAGE_SIZE,
                after=None, before=None, pg=None)


def _go(after: str | None = None, before: str | None = None, pg: int = 1) -> None:
    ui.set_view(after=after, before=before, pg=pg if pg > 1 else None, file=None)


def _on_select(table_key: str, ids: list[str]) -> None:
    event = st.session_state.get(table_key)
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    ui.set_view(file=ids[rows[0]] if rows and rows[0] < len(ids) else None)


def _open_file(file_id: str) -> None:
    ui.set_view(file=file_id)
    st.session_state["_table_gen"] = st.session_state.get("_table_gen", 0) + 1


def _close_detail() -> None:
    ui.set_view(file=None)
    st.session_state["_table_gen"] = st.session_state.get("_table_gen", 0) + 1


# ------------------------------------------------------------------ header, counts, controls

st.title("Files")
c_match, c_total, c_sort, c_dir, c_size = st.columns([1.2, 1.2, 1.6, 1.4, 1])
matched = ui.fetch("Count", "count", cat, flt)
c_match.metric("Matching files", "—" if matched is None else f"{matched:,}")
c_total.metric("In the catalog", f"{cat.total:,}")
st.session_state["w:sort_field"] = sort[0]
st.session_state["w:sort_desc"] = sort[1] < 0
st.session_state["w:size"] = size
c_sort.selectbox("Sort by", [k for k in queries.SORT_FIELDS if k != "_id"], key="w:sort_field",
                 format_func=lambda k: SORT_LABELS.get(k, k), on_change=_on_sort)
c_dir.segmented_control("Order", [True, False], key="w:sort_desc", on_change=_on_sort,
                        format_func=lambda d: "descending" if d else "ascending",
                        required=True)
c_size.selectbox("Rows per page", sorted({*ui.PAGE_SIZES, size}), key="w:size", on_change=_on_size)

# ------------------------------------------------------------------ the page of files

after, before = view.get("after"), view.get("before")
try:
    pg = max(1, int(view.get("pg") or 1))
except ValueError:
    pg = 1
try:
    page = ui.run("page", cat, flt, sort=list(sort), size=size, after=after, before=before)
except queries.QueryTimeout as exc:
    page = None
    st.warning(ui.timeout_message("The table", exc), icon="⏱️")
except queries.QueryError as exc:  # a stale or foreign cursor in the URL: back to the first page
    st.info(f"{exc}; showing the first page.")
    ui.set_view(after=None, before=None, pg=None)
    ui.commit()
    after = before = None
    pg = 1
    page = ui.fetch("The table", "page", cat, flt, sort=list(sort), size=size)

if page is not None:
    if page.prev_before is None:
        pg = 1
    rows = page.rows
    ids = [r["_id"] for r in rows]
    df = pd.DataFrame(rows, columns=list(dict.fromkeys(["_id", *queries.TABLE_COLUMNS])))
    for c in INT_COLUMNS:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
    df["mtime"] = pd.to_datetime(df["mtime"], utc=True, errors="coerce")
    table_key = f"table:{ui._key_json([flt.to_params(), sort, size, after, before])}:" \
                f"{st.session_state.get('_table_gen', 0)}"
    st.dataframe(
        df, key=table_key, hide_index=True, column_order=COLUMN_ORDER,
        on_select=functools.partial(_on_select, table_key, ids), selection_mode="single-row",
        row_height=32, height=38 + 32 * max(1, min(len(df), 15)),
        column_config={
            "name": st.column_config.TextColumn(
                "name", width="medium",
                help="File name. The full path is in the last column; select a row for details"),
            "dataset": st.column_config.TextColumn("dataset"),
            "model": st.column_config.TextColumn("model"),
            "spine_version": st.column_config.TextColumn("SPINE", width="small"),
            "run": st.column_config.NumberColumn("run", format="%d", width="small"),
            "subrun": st.column_config.NumberColumn("subrun", format="%d", width="small"),
            "num_events": st.column_config.NumberColumn("events", format="%d", width="small"),
            "size": st.column_config.NumberColumn("size", format="bytes", width="small"),
            "mtime": st.column_config.DatetimeColumn("modified (UTC)", format="YYYY-MM-DD HH:mm"),
            "status": st.column_config.TextColumn("status", width="small"),
            "site": st.column_config.TextColumn("site", width="small"),
            "detector": st.column_config.TextColumn("detector", width="small"),
            "path": st.column_config.TextColumn(
                "path", width="large",
                help="Full path (click a cell to see all of it; the detail panel has a copy button)"),
        },
    )
    first_row = (pg - 1) * size + 1
    if page.next_after is None and matched is not None:
        first_row = max(1, matched - len(rows) + 1)
    last_row = first_row + len(rows) - 1
    of = f" of {matched:,}" if matched is not None else ""
    nav_first, nav_prev, nav_info, nav_next = st.columns([1, 1, 3, 1], vertical_alignment="center")
    nav_first.button("First", key="w:first", icon=":material/first_page:",
                     disabled=page.prev_before is None, on_click=_go, width="stretch")
    nav_prev.button("Previous", key="w:prev", icon=":material/chevron_left:",
                    disabled=page.prev_before is None, on_click=_go,
                    kwargs={"before": page.prev_before, "pg": pg - 1}, width="stretch")
    nav_info.markdown(f"Page {pg:,} · rows {first_row:,}–{last_row:,}{of}" if rows else "No file matches.",
                      text_alignment="center")
    nav_next.button("Next", key="w:next", icon=":material/chevron_right:", icon_position="right",
                    disabled=page.next_after is None, on_click=_go,
                    kwargs={"after": page.next_after, "pg": pg + 1}, width="stretch")


# ------------------------------------------------------------------ the detail panel

def _value_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return ui.utc_text(value)
    return ui.to_json_text(value)


def lineage_links(doc: dict) -> None:
    """The file's parents and children, each a link to its own detail."""
    links = ui.file_lineage(cat, doc.get("path") or "")
    if not (links["parents"] or links["children"] or links["unresolved"]):
        st.caption("Lineage: no parents or children in the catalog.")
        return
    a, b = st.columns(2)
    for col, kind, title in ((a, "parents", "Parents"), (b, "children", "Children")):
        more = (links.get("more") or {}).get(kind)
        with col:
            st.caption(f"{title} ({len(links[kind]):,}{'+' if more else ''})")
            for i, other in enumerate(links[kind]):
                st.button(other["path"], key=f"w:lineage:{kind}:{i}", type="tertiary",
                          icon=":material/arrow_upward:" if kind == "parents" else ":material/arrow_downward:",
                          on_click=_open_file, args=(other["_id"],), help=other["_id"])
            if more:
                st.caption(f"The first {len(links[kind]):,} only: `spine-docs lineage {doc.get('path')} "
                           f"{'--up' if kind == 'parents' else '--down'} --depth 1` lists them all.")
    if links["unresolved"]:
        st.caption(f"Inputs not in the catalog ({len(links['unresolved']):,})")
        st.code("\n".join(links["unresolved"]), language=None)
    graph = ui.file_lineage_graph(cat, doc.get("path") or "")
    st.caption(f"Lineage graph: {lineage.GRAPH_DEPTH} generations each way, parents on the left "
               "(dashed: inputs not in the catalog; hover a box for its path)")
    with st.container(key="lineage_graph"):
        st.graphviz_chart(graph.dot, width="stretch")
    if graph.capped:
        st.caption(f"Capped at {len(graph.nodes) + len(graph.unresolved):,} boxes, the nearest first; "
                   f"`spine-docs lineage {graph.root} --up` / `--down` lists them all.")
    for cycle in graph.cycles:
        st.warning(f"Lineage cycle: {' → '.join(cycle)}", icon=":material/sync_problem:")


def detail(doc: dict) -> None:
    head, close = st.columns([6, 1], vertical_alignment="center")
    head.subheader(doc.get("name") or doc["_id"])
    close.button("Close", key="w:close_detail", icon=":material/close:", on_click=_close_detail,
                 width="stretch")
    st.caption("Path (copy with the button at the right of the box)")
    st.code(doc.get("path") or "", language=None, wrap_lines=True)
    a, b = st.columns(2)
    with a:
        st.caption("Catalog id (site:path)")
        st.code(doc["_id"], language=None, wrap_lines=True)
    with b:
        st.caption("Directory")
        st.code(doc.get("dir") or "", language=None, wrap_lines=True)
    if doc.get("error"):
        st.error(f"Could not be read: {doc['error']}")
    retired = doc.get("retired")
    if isinstance(retired, dict):
        st.warning(f"Retired: {retired.get('reason') or '?'}, by {retired.get('by') or '?'}, "
                   f"{ui.utc_text(retired.get('at'))}", icon=":material/block:")
    lineage_links(doc)
    kept = file_history.versions(cat.db, doc["_id"])
    if kept:
        previous = kept[-1]["version"]
        if st.button("Compare with the previous version", key="w:compare_previous",
                     icon=":material/compare_arrows:",
                     help=f"Version {previous} (replaced {ui.utc_text(kept[-1].get('replaced_at'))}) "
                          f"against the current document; {len(kept)} earlier version(s) kept"):
            ui.set_view(mode="files", a=f"{doc['_id']}@{previous}", b=doc["_id"], all=None)
            ui.switch_to("views/compare.py")

    tabs = st.tabs(["Summary", "Attributes", "Structure", "Ingest history", "Configuration",
                    "Sidecars", "Document"])
    provenance = doc.get("provenance") or {}
    with tabs[0]:
        summary = [{"field": f, "value": _value_text(doc.get(f)), "from": provenance.get(f, "")}
                   for f in PROMOTED if f in doc]
        st.dataframe(pd.DataFrame(summary), hide_index=True, width="stretch",
                     column_config={"value": st.column_config.TextColumn(width="large")})
        inputs = doc.get("inputs") or []
        if inputs:
            st.caption(f"Input files ({doc.get('inputs_count') or len(inputs):,})")
            st.code("\n".join(inputs), language=None)
    with tabs[1]:
        attrs = doc.get("attrs") or {}
        types = doc.get("attr_types") or {}
        if attrs:
            st.dataframe(pd.DataFrame([{"attribute": k, "type": types.get(k, ""),
                                        "value": _value_text(v)} for k, v in attrs.items()]),
                         hide_index=True, width="stretch",
                         column_config={"value": st.column_config.TextColumn(width="large")})
        else:
            st.caption("No root attributes.")
        if doc.get("info"):
            st.caption("/info attributes")
            st.json(ui.plain(doc["info"]), expanded=False)
    with tabs[2]:
        structure = doc.get("structure") or {}
        items = structure.get("items") or []
        if items:
            st.dataframe(pd.DataFrame([{**i, "shape": _value_text(i.get("shape"))} for i in items]),
                         hide_index=True, width="stretch",
                         column_config={"nbytes": st.column_config.NumberColumn(format="bytes")})
            more = " (truncated)" if structure.get("truncated") else ""
            st.caption(f"{structure.get('count', len(items)):,} groups and datasets{more}")
        else:
            st.caption("No structure recorded.")
    with tabs[3]:
        ing = doc.get("ingest") or {}
        a, b, c = st.columns(3)
        a.metric("First indexed", ui.utc_text(ing.get("first_seen")))
        b.metric("Last seen", ui.utc_text(ing.get("last_seen")))
        c.metric("Times seen", f"{ing.get('times_seen') or 0:,}")
        st.caption(f"extractor {ing.get('extractor_version') or '?'} · last run {ing.get('run_id') or '?'}")
        history = ing.get("history") or []
        if history:
            st.dataframe(pd.DataFrame([{**h, "at": ui.utc_text(h.get("at"))} for h in reversed(history)]),
                         hide_index=True, width="stretch")
    with tabs[4]:
        if doc.get("cfg"):
            st.json(ui.plain(doc["cfg"]), expanded=2)
        elif doc.get("cfg_error"):
            st.warning(f"The configuration could not be parsed: {doc['cfg_error']}")
        else:
            st.caption("No run configuration in this file.")
    with tabs[5]:
        if doc.get("sidecar"):
            st.caption("<file>.h5.json")
            st.json(ui.plain(doc["sidecar"]), expanded=1)
        if doc.get("job"):
            st.caption("job_metadata.json")
            st.json(ui.plain(doc["job"]), expanded=1)
        if not doc.get("sidecar") and not doc.get("job"):
            st.caption("No sidecar files.")
    with tabs[6]:
        st.code(ui.to_json_text(doc, indent=2), language="json")


file_id = view.get("file")
if file_id:
    doc = ui.get_file(cat, file_id, flt.as_of)
    with st.container(border=True, key="detail"):
        if doc is None:
            st.warning(f"{file_id} is not in the catalog (any more)." if flt.as_of is None else
                       f"{file_id} was not in the catalog on {ui.utc_text(flt.as_of)} (or its version "
                       "then is no longer kept).")
            st.button("Close", key="w:close_missing", on_click=_close_detail)
        else:
            detail(doc)
