"""Export: everything the current filter matches, as CSV, JSON lines or a list of paths.

Each file is produced when its button is pressed (Streamlit runs the job in its download
thread), streamed from one cursor by ``queries.export`` in the Files page's sort order.
URL key: ``fmt`` (the format previewed).
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone

import streamlit as st

import explorer_ui as ui
from spine_docs import queries

FORMATS = {
    "csv": ("CSV", "csv", "text/csv", ":material/table:",
            "One row per file with the promoted fields; the filter as # comment lines on top."),
    "jsonl": ("JSON lines", "jsonl", "application/x-ndjson", ":material/data_object:",
              "One complete catalog document per line (MongoDB relaxed Extended JSON)."),
    "paths": ("Paths", "txt", "text/plain", ":material/list:",
              "One path per line for batch jobs; the filter as # comment lines on top."),
}
PREVIEW_LINES = 8

cat, flt = ui.bootstrap("export")
view = ui.state()
try:
    sort = queries.format_sort(queries.parse_sort(view.get("sort") or "-mtime"))
except queries.QueryError:
    sort = queries.format_sort(queries.DEFAULT_SORT)

st.title("Export")
matched = ui.fetch("Count", "count", cat, flt)
if matched is not None:
    st.markdown(f"**{matched:,}** of {cat.total:,} files match: {flt.describe()}")

stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
params = flt.to_params()
jobs = {}
for col, (fmt, (label, ext, mime, icon, text)) in zip(st.columns(len(FORMATS)), FORMATS.items()):
    with col:
        jobs[fmt] = functools.partial(ui.export_file, cat.db, params, fmt, sort)
        st.download_button(f"Download {label}", data=jobs[fmt], file_name=f"spine-docs-{stamp}.{ext}",
                           mime=mime, icon=icon, key=f"w:download:{fmt}", on_click="ignore",
                           disabled=matched == 0, width="stretch", type="primary")
        st.caption(text)
# What each button downloads when clicked (kept for tests and debugging).
st.session_state["_export_jobs"] = jobs

fmt = view.get("fmt") if view.get("fmt") in FORMATS else "csv"
st.session_state["w:fmt"] = fmt
st.segmented_control("Preview", list(FORMATS), key="w:fmt", required=True,
                     format_func=lambda f: FORMATS[f][0],
                     on_change=lambda: ui.set_view(fmt=st.session_state.get("w:fmt")))
try:
    preview = ui.preview_lines(cat, flt, fmt, PREVIEW_LINES, sort)
except queries.QueryTimeout as exc:
    st.warning(ui.timeout_message("Preview", exc), icon="⏱️")
else:
    st.code("".join(preview), language=None)
    shown = "all" if matched is None else f"all {matched:,}"
    st.caption(f"The first files (up to {PREVIEW_LINES}), sorted by {sort}; the download holds {shown}.")

st.subheader("From a shell")
st.caption("The same export streamed to standard output (the better way for millions of files):")
st.code(ui.cli_command("query", cat, flt, extra=["--sort", sort, "--format", fmt]), language="bash")
