"""Replicas: outputs whose content appears at more than one path or site.

Copies share the ``fingerprint`` (attributes + /info + structure) or, for files indexed with
``--checksum``, the sha256 of their bytes. URL key: ``rkey`` (fingerprint or checksum).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import explorer_ui as ui

KEYS = {"fingerprint": "same fingerprint (attributes, /info, structure)",
        "checksum": "same sha256 checksum (files indexed with --checksum)"}
LIMIT = 200

cat, flt = ui.bootstrap("replicas")
view = ui.state()
key = view.get("rkey") if view.get("rkey") in KEYS else "fingerprint"

st.title("Replicas")
st.caption(f"Among the files matching: {flt.describe()}")
st.session_state["w:rkey"] = key
st.radio("Copies are files with the", list(KEYS), format_func=KEYS.get, key="w:rkey", horizontal=True,
         on_change=lambda: ui.set_view(rkey=st.session_state.get("w:rkey")))

groups = ui.fetch("Replicas", "replicas", cat, flt, limit=LIMIT, key=key)
if groups is not None:
    if not groups:
        st.info("No content is catalogued more than once among the matching files.")
    else:
        multi_site = sum(1 for g in groups if len(g["sites"]) > 1)
        a, b, c = st.columns(3)
        a.metric("Contents with copies", f"{len(groups):,}" + ("+" if len(groups) >= LIMIT else ""))
        b.metric("Files involved", f"{sum(g['count'] for g in groups):,}")
        c.metric("Copied across sites", f"{multi_site:,}")
        rows = []
        for g in groups:
            for f in g["files"]:
                rows.append({"content": str(g["key"])[:16], "copies": g["count"],
                             "sites": ", ".join(map(str, g["sites"])), "site": f.get("site"),
                             "path": f.get("path"), "size": f.get("size"), "mtime": f.get("mtime"),
                             "status": f.get("status")})
        df = pd.DataFrame(rows)
        df["mtime"] = pd.to_datetime(df["mtime"], utc=True, errors="coerce")
        st.dataframe(df, hide_index=True, width="stretch", column_config={
            "content": st.column_config.TextColumn("content", help=f"The first characters of the {key}"),
            "copies": st.column_config.NumberColumn("copies", format="%d"),
            "path": st.column_config.TextColumn("path", width="large"),
            "size": st.column_config.NumberColumn("size", format="bytes"),
            "mtime": st.column_config.DatetimeColumn("modified (UTC)", format="YYYY-MM-DD HH:mm"),
        })
        if len(groups) >= LIMIT:
            st.caption(f"The {LIMIT} contents with the most copies are shown.")
