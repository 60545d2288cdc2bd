"""Saved queries: name and save the current filter (stored in the catalog's
``saved_queries`` collection), list, load and delete them. The same saved queries are
available to the CLI (``spine-docs query --saved NAME``)."""

from __future__ import annotations

import streamlit as st

import explorer_ui as ui
from spine_docs import queries

VIEW_KEYS = ("sort", "size")   # saved with the filter, restored on load

if st.session_state.pop("_goto_files", False):
    ui.switch_to("views/files.py")

cat, flt = ui.bootstrap("saved")
view = ui.state()


def _save() -> None:
    ss = st.session_state
    name = (ss.get("w:save_name") or "").strip()
    try:
        doc = queries.save_query(cat.db, name, flt, overwrite=bool(ss.get("w:save_replace")),
                                 extra={k: view[k] for k in VIEW_KEYS if view.get(k)})
    except queries.QueryError as exc:
        ss["_saved_msg"] = ("error", str(exc))
        return
    ss["_saved_msg"] = ("success", f"Saved “{doc['name']}”.")
    ss["w:save_name"] = ""


def _load(name: str) -> None:
    ss = st.session_state
    try:
        loaded = queries.load_query(cat.db, name)
    except KeyError:
        ss["_saved_msg"] = ("error", f"“{name}” was deleted meanwhile.")
        return
    saved = next((q for q in queries.list_queries(cat.db) if q["name"] == name), None) or {}
    ui.set_filter(loaded)
    extra = saved.get("params") or {}
    ui.set_view(**{k: extra.get(k) for k in VIEW_KEYS})
    ss["_goto_files"] = True


def _delete(name: str) -> None:
    removed = queries.delete_query(cat.db, name)
    st.session_state["_saved_msg"] = ("success", f"Deleted “{name}”.") if removed else \
        ("warning", f"“{name}” did not exist any more.")


st.title("Saved queries")
kind_msg = st.session_state.pop("_saved_msg", None)
if kind_msg:
    getattr(st, kind_msg[0])(kind_msg[1])

with st.form("save", border=True):
    st.markdown(f"**Save the current filter**: {flt.describe()}")
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    a.text_input("Name", key="w:save_name", placeholder="e.g. mpvmpr full chain >= 0.5")
    b.checkbox("Replace if it exists", key="w:save_replace")
    st.form_submit_button("Save", on_click=_save, icon=":material/bookmark_add:")

saved = queries.list_queries(cat.db)
if not saved:
    st.caption("No saved query yet.")
for q in saved:
    with st.container(border=True):
        a, b, c = st.columns([6, 1, 1], vertical_alignment="center")
        a.markdown(f"**{q['name']}**  \n{q.get('description') or ''}")
        a.caption(f"saved {ui.utc_text(q.get('updated'))}")
        b.button("Load", key=f"w:load:{q['name']}", on_click=_load, args=(q["name"],),
                 icon=":material/open_in_new:", width="stretch")
        c.button("Delete", key=f"w:delete:{q['name']}", on_click=_delete, args=(q["name"],),
                 icon=":material/delete:", width="stretch")
