"""Analytics of the matching files, one view at a time (each view runs only its own queries):

* **Over time**: files, events or bytes per day, week or month, stacked by dataset, model,
  SPINE version, ... with the totals per group beside it;
* **Distributions**: file size (log or linear bins) and event count histograms;
* **Run coverage**: which runs and subruns each dataset has, and where the gaps are.

URL keys: ``view`` (time, dist, runs), ``by``, ``group``, ``metric``, ``hist`` (size,
num_events), ``log`` (1/0), ``cov`` (the dataset whose subruns are shown).
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

import explorer_ui as ui

VIEWS = {"time": "Over time", "dist": "Distributions", "runs": "Run coverage"}
METRICS = {"files": "Files", "events": "Events", "bytes": "Bytes"}
PERIODS = {"day": "Day", "week": "Week", "month": "Month"}
PERIOD_LENGTH = {"day": pd.DateOffset(days=1), "week": pd.DateOffset(days=7),
                 "month": pd.DateOffset(months=1)}
GROUPS = {"dataset": "dataset", "model": "model", "spine_version": "SPINE version", "site": "site",
          "status": "status", "detector": "detector", "config": "configuration"}
HISTOGRAMS = {"size": "File size", "num_events": "Events per file"}
COLORS = {"present": "#54a24b", "missing": "#e45756"}
MAX_RUNS_CHARTED = 400
MAX_GROUPS = 25

cat, flt = ui.bootstrap("analytics")
view = ui.state()


def _choice(key: str, options, default):
    value = view.get(key)
    return value if value in options else default


def _set(name: str, widget: str, convert=lambda v: v) -> None:
    ui.set_view(**{name: convert(st.session_state.get(widget))})


def _fmt(m: str) -> str:
    return "~s" if m == "bytes" else ",d"


def _ranges(pairs: list) -> str:
    text = ", ".join(f"{a}–{b}" if a != b else str(a) for a, b in pairs[:20])
    return text + (" …" if len(pairs) > 20 else "")


def _colors() -> alt.Color:
    return alt.Color("kind:N", scale=alt.Scale(domain=list(COLORS), range=list(COLORS.values())),
                     legend=alt.Legend(orient="bottom", title=None))


st.title("Analytics")
st.caption(flt.describe())
current = _choice("view", VIEWS, "time")
st.session_state["w:view"] = current
st.segmented_control("View", list(VIEWS), format_func=VIEWS.get, key="w:view", required=True,
                     on_change=_set, args=("view", "w:view"), label_visibility="collapsed")


# ------------------------------------------------------------------ over time
def over_time() -> None:
    by = _choice("by", PERIODS, "week")
    metric = _choice("metric", METRICS, "files")
    group = view.get("group", "dataset")
    group = group if group in GROUPS else None
    st.session_state.update({"w:by": by, "w:metric": metric, "w:group": group})
    a, b, c = st.columns([1, 1, 1.4])
    a.segmented_control("Period", list(PERIODS), format_func=PERIODS.get, key="w:by", required=True,
                        on_change=_set, args=("by", "w:by"))
    b.segmented_control("Measure", list(METRICS), format_func=METRICS.get, key="w:metric",
                        required=True, on_change=_set, args=("metric", "w:metric"))
    c.selectbox("By", list(GROUPS), format_func=GROUPS.get, index=None, key="w:group",
                placeholder="all together", on_change=_set,
                args=("group", "w:group", lambda v: v or "none"))

    rows = ui.fetch("Files over time", "timeline", cat, flt, by=by, group=group)
    if rows is None:
        return
    df = pd.DataFrame(rows, columns=["period", "group", "files", "events", "bytes"])
    m1, m2, m3 = st.columns(3)
    m1.metric("Files", f"{int(df['files'].sum()):,}")
    m2.metric("Events", f"{int(df['events'].sum()):,}")
    m3.metric("Bytes", ui.human_bytes(int(df["bytes"].sum())))
    if df.empty:
        st.caption("No matching file has a modification time.")
        return
    df["period"] = pd.to_datetime(df["period"])
    df["period_end"] = df["period"] + PERIOD_LENGTH[by]
    df["group"] = df["group"].map(ui.facet_label)
    title = GROUPS.get(group or "", "")
    tooltip = [alt.Tooltip("period:T", title=PERIODS[by].lower()),
               *([alt.Tooltip("group:N", title=title)] if group else []),
               alt.Tooltip("files:Q", format=","), alt.Tooltip("events:Q", format=","),
               alt.Tooltip("bytes:Q", format="~s")]
    color = alt.Color("group:N", title=title, legend=alt.Legend(orient="bottom", columns=4)) \
        if group else alt.value("#4c78a8")
    left, right = st.columns([3, 1.3]) if group else (st.container(), None)
    with left:
        chart = alt.Chart(df).mark_bar().encode(
            x=alt.X("period:T", title=f"{PERIODS[by].lower()} (modification time, UTC)"),
            x2="period_end:T",
            y=alt.Y(f"sum({metric}):Q", title=METRICS[metric].lower(), axis=alt.Axis(format=_fmt(metric))),
            color=color, tooltip=tooltip,
        ).properties(height=340)
        st.altair_chart(chart, width="stretch")
    if right is not None:
        totals = df.groupby("group", as_index=False)[["files", "events", "bytes"]].sum()
        totals = totals.sort_values(metric, ascending=False).head(MAX_GROUPS)
        with right:
            st.caption(f"{METRICS[metric]} by {title}")
            chart = alt.Chart(totals).mark_bar().encode(
                y=alt.Y("group:N", sort="-x", title=None, axis=alt.Axis(labelLimit=160)),
                x=alt.X(f"{metric}:Q", title=None, axis=alt.Axis(format=_fmt(metric))),
                color=alt.Color("group:N", legend=None),
                tooltip=[alt.Tooltip("group:N", title=title), alt.Tooltip("files:Q", format=","),
                         alt.Tooltip("events:Q", format=","), alt.Tooltip("bytes:Q", format="~s")],
            ).properties(height=max(120, 24 * len(totals)))
            st.altair_chart(chart, width="stretch")


# ------------------------------------------------------------------ distributions
def distributions() -> None:
    field = _choice("hist", HISTOGRAMS, "size")
    log = view.get("log", "1") != "0"
    st.session_state.update({"w:hist": field, "w:log": log})
    a, b = st.columns([2, 1], vertical_alignment="bottom")
    a.segmented_control("Histogram of", list(HISTOGRAMS), format_func=HISTOGRAMS.get, key="w:hist",
                        required=True, on_change=_set, args=("hist", "w:hist"))
    if field == "size":
        b.toggle("Logarithmic bins", key="w:log", on_change=_set,
                 args=("log", "w:log", lambda v: "1" if v else "0"))
    use_log = log and field == "size"
    hist = ui.fetch(HISTOGRAMS[field], "histogram", cat, flt, field=field, bins=30, log=use_log)
    if hist is None:
        return
    if not hist["bins"]:
        st.caption("No matching file has a value.")
        return
    df = pd.DataFrame(hist["bins"])
    label = "file size (bytes)" if field == "size" else "events per file"
    chart = alt.Chart(df).mark_bar(color="#4c78a8" if field == "size" else "#f58518").encode(
        x=alt.X("lo:Q", bin="binned", title=label,
                scale=alt.Scale(type="log") if use_log else alt.Scale(),
                axis=alt.Axis(format="~s" if field == "size" else "d")),
        x2="hi:Q",
        y=alt.Y("count:Q", title="files"),
        tooltip=[alt.Tooltip("lo:Q", format="~s" if field == "size" else "d", title="from"),
                 alt.Tooltip("hi:Q", format="~s" if field == "size" else "d", title="to (excluded)"),
                 alt.Tooltip("count:Q", format=",", title="files")],
    ).properties(height=340)
    st.altair_chart(chart, width="stretch")
    st.caption(f"{hist['total'] - hist['missing']:,} files"
               + (f"; {hist['missing']:,} without a usable value are not shown" if hist["missing"] else "")
               + ("; log bins leave out zero sizes" if use_log else ""))


# ------------------------------------------------------------------ run coverage
def run_coverage() -> None:
    coverage = ui.fetch("Run coverage", "run_coverage", cat, flt)
    if coverage is None:
        return
    covered = [d for d in coverage if d["runs"]]
    if not covered:
        st.caption("No matching file has a run number.")
        return
    segments = []
    for d in covered:
        name = ui.facet_label(d["dataset"])
        for kind, pairs in (("present", d["runs"]), ("missing", d["gaps"])):
            segments += [{"dataset": name, "start": a, "end": b + 1, "runs": f"{a}–{b}", "kind": kind}
                         for a, b in pairs]
    base = alt.Chart().encode(
        x=alt.X("start:Q", title=None, scale=alt.Scale(zero=False, nice=False, padding=6),
                axis=alt.Axis(format="d", tickMinStep=1)),
        tooltip=["dataset:N", "kind:N", alt.Tooltip("runs:N", title="runs")])
    bars = base.mark_bar(height=16).encode(x2="end:Q", color=_colors())
    # a present range of one run is a sliver on a wide axis: mark it with a tick as well
    ticks = base.mark_tick(thickness=2, size=16, color=COLORS["present"]).transform_filter(
        alt.datum.kind == "present")
    chart = alt.layer(bars, ticks, data=pd.DataFrame(segments)).properties(
        height=22, width=640).facet(
        row=alt.Row("dataset:N", title=None,
                    header=alt.Header(labelAngle=0, labelAlign="left", labelLimit=220)),
    ).resolve_scale(x="independent")
    st.altair_chart(chart)
    st.dataframe(pd.DataFrame([{
        "dataset": ui.facet_label(d["dataset"]), "files": d["files"], "runs": d["run_count"],
        "first run": d["run_min"], "last run": d["run_max"], "missing runs": d["missing_runs"],
        "run gaps": _ranges(d["gaps"]), "files without run": d["no_run"]} for d in coverage]),
        hide_index=True, width="stretch")

    names = [ui.facet_label(d["dataset"]) for d in covered]
    chosen = _choice("cov", names, names[0])
    st.session_state["w:cov"] = chosen
    st.selectbox("Subruns of dataset", names, key="w:cov", on_change=_set, args=("cov", "w:cov"))
    per_run = covered[names.index(chosen)]["per_run"]
    shown = per_run[:MAX_RUNS_CHARTED]
    long = pd.DataFrame(
        [{"run": r["run"], "subruns": r["subrun_count"], "kind": "present"} for r in shown]
        + [{"run": r["run"], "subruns": r["missing_subruns"], "kind": "missing"} for r in shown])
    chart = alt.Chart(long).mark_bar().encode(
        x=alt.X("run:O", title="run"), y=alt.Y("sum(subruns):Q", title="subruns"), color=_colors(),
        tooltip=["run:O", "kind:N", alt.Tooltip("sum(subruns):Q", title="subruns")],
    ).properties(height=240)
    st.altair_chart(chart, width="stretch")
    if len(per_run) > MAX_RUNS_CHARTED:
        st.caption(f"The first {MAX_RUNS_CHARTED:,} of {len(per_run):,} runs are charted.")
    st.dataframe(pd.DataFrame([{
        "run": r["run"], "files": r["files"], "events": r["events"], "subruns": _ranges(r["subruns"]),
        "missing subruns": r["missing_subruns"], "subrun gaps": _ranges(r["subrun_gaps"])}
        for r in per_run]), hide_index=True, width="stretch",
        height="auto" if len(per_run) <= 8 else 320)


{"time": over_time, "dist": distributions, "runs": run_coverage}[current]()
