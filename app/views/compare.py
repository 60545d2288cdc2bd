"""Compare: what changed between two files (or two versions of one) and between two sets.

Two modes, as ``spine-docs diff`` has:

* **two files**: references as the CLI takes them (a path or ``_id``, ``REF@N`` for the
  file's version N, ``REF@DATE`` as of a date), the structured diff of
  :mod:`spine_docs.diff` side by side, every key or only the changed ones;
* **two sets**: left and right filters as ``diff --left/--right`` take them
  (``dataset=x,prod_version=v2``, ``energy>=1.5``, a saved query's name, a JSON query) and
  the key files are matched by; the summary of :mod:`spine_docs.setdiff`.

The page only renders: :func:`spine_docs.diff.resolve`, :func:`spine_docs.diff.side_by_side`,
:func:`spine_docs.setdiff.side_filter` and :func:`spine_docs.setdiff.compare_sets` answer.
The Files page's detail panel links here ("compare with the previous version").

URL keys: ``mode`` (``files``|``sets``), ``a``, ``b``, ``all`` (1: every key, not only the
changed ones), ``left``, ``right``, ``key`` (match key).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import explorer_ui as ui
from spine_docs import diff, setdiff

MODES = {"files": "Two files", "sets": "Two sets"}
MATCH_KEYS = ("input", "name", "run", "path")  # the keys an index sorts the files by (setdiff.sort_plan)
SECTION_TITLES = {"facts": "File facts", "promoted": "Promoted fields", "attrs": "Root attributes",
                  "cfg": "Configuration (key paths)", "info": "/info attributes",
                  "structure": "Structure (groups and datasets)"}

cat, flt = ui.bootstrap("compare")
view = ui.state()
mode = view.get("mode") if view.get("mode") in MODES else "files"

st.title("Compare")
st.session_state["w:cmp_mode"] = mode
st.radio("Compare", list(MODES), format_func=MODES.get, key="w:cmp_mode", horizontal=True,
         on_change=lambda: ui.set_view(mode=st.session_state.get("w:cmp_mode")))


def _text_input(label: str, name: str, help: str) -> str:
    st.session_state[f"w:cmp_{name}"] = view.get(name) or ""
    return st.text_input(label, key=f"w:cmp_{name}", help=help,
                         on_change=lambda: ui.set_view(**{name: st.session_state.get(f"w:cmp_{name}") or None})
                         ).strip()


def _side(label: str, ident: dict) -> str:
    version = ident.get("version")
    if isinstance(version, dict):
        to = ui.utc_text(version.get("valid_to")) if version.get("valid_to") else "now"
        return (f"{label}: {ident.get('_id')} · version {version.get('number')} "
                f"({ui.utc_text(version.get('valid_from'))} – {to})")
    return f"{label}: {ident.get('_id')} (current)"


def two_files() -> None:
    ref_help = "A path or catalog id; PATH@N for its version N; PATH@2026-11-01 as of that date"
    left, right = st.columns(2)
    with left:
        a = _text_input("File A", "a", ref_help)
    with right:
        b = _text_input("File B", "b", ref_help)
    if not a or not b:
        st.info("Give two files (or one file and one of its versions, PATH@N) to compare.")
        return
    try:
        doc_a, doc_b = diff.resolve(cat.db, a), diff.resolve(cat.db, b)
    except diff.DiffError as exc:
        st.error(str(exc))
        return
    d = diff.diff_documents(doc_a, doc_b, ref_a=a, ref_b=b)
    st.caption(_side("A", d["a"]))
    st.caption(_side("B", d["b"]))
    st.session_state["w:cmp_all"] = view.get("all") == "1"
    every = st.toggle("Show unchanged keys too", key="w:cmp_all",
                      on_change=lambda: ui.set_view(all="1" if st.session_state.get("w:cmp_all") else None))
    n = diff.count_changes(d)
    st.metric("Differences", f"{n:,}")
    if d["same"]:
        st.success("The two documents hold the same content.")
    rows = diff.side_by_side(doc_a, doc_b)
    if not every:
        rows = [r for r in rows if r["change"] != "same"]
    for section, title in SECTION_TITLES.items():
        part = [r for r in rows if r["section"] == section]
        if not part:
            continue
        st.subheader(title)
        st.dataframe(pd.DataFrame([{"key": r["key"], "change": r["change"],
                                    "A": "" if r["change"] == "added" else diff.show(r["a"], 200),
                                    "B": "" if r["change"] == "removed" else diff.show(r["b"], 200)}
                                   for r in part]),
                     key=f"cmp:{section}", hide_index=True, width="stretch",
                     column_config={"A": st.column_config.TextColumn(width="large"),
                                    "B": st.column_config.TextColumn(width="large")})


def two_sets() -> None:
    side_help = "dataset=x,prod_version=v2 · energy>=1.5 · a saved query's name · a JSON query"
    left, right, key_col = st.columns([3, 3, 1.4])
    with left:
        lt = _text_input("Left files", "left", side_help)
    with right:
        rt = _text_input("Right files", "right", side_help)
    key = view.get("key") if view.get("key") in MATCH_KEYS else "input"
    st.session_state["w:cmp_key"] = key
    key_col.selectbox("Match files by", MATCH_KEYS, key="w:cmp_key",
                      on_change=lambda: ui.set_view(key=st.session_state.get("w:cmp_key")))
    if not lt or not rt:
        st.info("Give the two sets as filters (as `spine-docs diff --left ... --right ...` takes them).")
        return
    try:
        s = setdiff.compare_sets(cat.db, setdiff.side_filter(cat.db, lt), setdiff.side_filter(cat.db, rt),
                                 match_on=key, left_text=lt, right_text=rt)
    except (setdiff.SetDiffError, ValueError) as exc:
        st.error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return
    out = s.as_dict()
    c = st.columns(6)
    c[0].metric("Left files", f"{out['left']['files']:,}")
    c[1].metric("Right files", f"{out['right']['files']:,}")
    c[2].metric("Pairs", f"{out['pairs']:,}")
    c[3].metric("Identical pairs", f"{out['identical']:,}")
    c[4].metric("Only left", f"{out['left']['unmatched']:,}")
    c[5].metric("Only right", f"{out['right']['unmatched']:,}")
    st.caption(f"Matched on {key}. Files without a {key}: {out['left']['no_key']:,} left, "
               f"{out['right']['no_key']:,} right; keys held by several files: {out['ties']:,}.")
    if out["pairs"]:
        ev, sz = out["events"], out["sizes"]
        st.caption(f"Events in the pairs: {ev['left']:,} → {ev['right']:,} ({ev['pairs_differ']:,} pairs differ); "
                   f"sizes: {ui.human_bytes(sz['left'])} → {ui.human_bytes(sz['right'])} "
                   f"({sz['pairs_differ']:,} pairs differ).")
    keys = out["keys"]
    if keys:
        st.subheader(f"Keys that differ ({len(keys):,})")
        st.dataframe(pd.DataFrame([{
            "section": r["section"], "key": r["key"],
            "in": "every pair" if r["scope"] == "every" else f"{r['pairs']:,} of {out['pairs']:,} pairs",
            "changed": r["changed"], "added": r["added"], "removed": r["removed"],
            "values only": r["values_only"],
            "examples": " · ".join(f"{diff.show(e['a'], 40)} → {diff.show(e['b'], 40)}" for e in r["examples"]),
        } for r in keys]), key="cmp:keys", hide_index=True, width="stretch",
            column_config={"examples": st.column_config.TextColumn(width="large")})
    elif out["pairs"]:
        st.success("Every pair is identical.")
    for name in ("left", "right"):
        side = out[name]
        if side["unmatched_examples"]:
            st.subheader(f"Only {name} ({side['unmatched']:,})")
            st.dataframe(pd.DataFrame([{"file": e["_id"], key: e["key"] if isinstance(e["key"], str)
                                        else diff.show(e["key"], 120)}
                                       for e in side["unmatched_examples"]]),
                         key=f"cmp:only_{name}", hide_index=True, width="stretch")


if mode == "files":
    two_files()
else:
    two_sets()
