"""Attributes: the attribute dictionary of the matching files (a schema analysis à la Compass).

Every root attribute key: in how many files, with which types, how many distinct values,
min/max and examples. Selecting a row filters the files on that key (``key exists``) and
opens the Files page; the form below adds a typed condition instead.
URL key: ``docs`` (analyse only the newest N matching files; empty: all).
"""

from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

import explorer_ui as ui

# the newest 10,000 by default: on a million files the whole dictionary reads every document
SAMPLES = {"10000": "the newest 10,000", "1000": "the newest 1,000", "all": "all matching files"}
DEFAULT_SAMPLE = "10000"

if st.session_state.pop("_goto_files", False):
    ui.switch_to("views/files.py")

cat, flt = ui.bootstrap("attributes")
view = ui.state()
docs = view.get("docs") if view.get("docs") in SAMPLES else DEFAULT_SAMPLE


def _filter_on(key: str, op: str = "exists", text: object = None, type_label: str | None = None) -> None:
    if ui.add_attr_condition(key, op, text, type_label):
        st.session_state["_goto_files"] = True


def _on_select(table_key: str, keys: list[str]) -> None:
    event = st.session_state.get(table_key)
    rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if rows and rows[0] < len(keys):
        _filter_on(keys[rows[0]])


def _on_form(types: dict) -> None:
    ss = st.session_state
    key = ss.get("w:dict_key")
    if key:
        _filter_on(key, ss.get("w:dict_op") or "exists", ss.get("w:dict_value") or None, types.get(key))


st.title("Attributes")
st.session_state["w:docs"] = docs
a, b = st.columns([3, 2], vertical_alignment="bottom")
a.caption(f"Root attributes of the files matching: {flt.describe()}")
b.selectbox("Analyse", list(SAMPLES), format_func=SAMPLES.get, key="w:docs",
            on_change=lambda: ui.set_view(docs=None if st.session_state.get("w:docs") == DEFAULT_SAMPLE
                                          else st.session_state.get("w:docs")))

entries = ui.fetch("Attribute dictionary", "attribute_dictionary", cat, flt,
                   max_docs=None if docs == "all" else int(docs))
matched = ui.fetch("Count", "count", cat, flt)
if entries is not None:
    if not entries:
        st.info("The matching files have no root attributes.")
    else:
        base = min(matched or 0, int(docs)) if docs else (matched or 0)
        rows = [{
            "key": e["key"],
            "files": e["files"],
            "share": (e["files"] / base) if base else None,
            "types": ", ".join(f"{t} ({n:,})" for t, n in e["types"].items()),
            "distinct": e.get("distinct"),
            "min": ui.to_json_text(e["min"]) if e.get("min") is not None else "",
            "max": ui.to_json_text(e["max"]) if e.get("max") is not None else "",
            "examples": " · ".join(ui.to_json_text(x) for x in e.get("examples", [])),
        } for e in entries]
        keys = [e["key"] for e in entries]
        table_key = f"dict:{ui._key_json([flt.to_params(), docs])}"
        st.dataframe(
            pd.DataFrame(rows), key=table_key, hide_index=True, width="stretch",
            height=38 + 35 * max(1, min(len(rows), 16)),
            on_select=functools.partial(_on_select, table_key, keys), selection_mode="single-row",
            column_config={
                "key": st.column_config.TextColumn("attribute", help="Select a row to list the files that have it"),
                "files": st.column_config.NumberColumn("files", format="localized"),
                "share": st.column_config.ProgressColumn("in % of files", format="percent",
                                                         min_value=0, max_value=1),
                "types": st.column_config.TextColumn("types (files)"),
                "distinct": st.column_config.NumberColumn("distinct values", format="localized"),
                "examples": st.column_config.TextColumn("examples", width="large"),
            },
        )
        st.caption(f"{len(entries):,} keys. Select a row to see the files that have the attribute.")

        types = {e["key"]: e["type"] for e in entries}
        with st.form("dict_filter", border=True):
            st.markdown("**Filter the files on an attribute**")
            c1, c2, c3 = st.columns([3, 2, 3])
            c1.selectbox("Attribute", keys, key="w:dict_key",
                         format_func=lambda k: f"{k} ({types.get(k)})")
            c2.selectbox("Operator", list(ui.ATTR_OP_LABELS)[::-1], key="w:dict_op",
                         format_func=ui.ATTR_OP_LABELS.get)
            c3.text_input("Value", key="w:dict_value", placeholder="typed like the attribute")
            st.form_submit_button("Show the files", on_click=_on_form, args=(types,))
