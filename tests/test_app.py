"""The Streamlit explorer, driven with Streamlit's AppTest (in-process, no browser).

The catalog is indexed from files whose facts are known before indexing
(``known_files.write_known_files``), and every expectation is counted from that list in plain
Python, never with ``spine_docs.queries`` on the same catalog (a query bug would move the
expectation along with the page): facet counts, a facet and URL filters changing the counts,
keyset pagination to the last page, the detail panel, exports, analytics, the attribute
dictionary, replicas, saved queries, the messages for a wrong URL, an empty catalog, an
unversioned catalog, a schema mismatch and a query time limit, and new files showing up
without a restart.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid

import pytest

pytest.importorskip("streamlit")
import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from spine_docs import ingest, queries, resources, schema, store  # noqa: E402
from spine_docs.queries import AttrFilter, Filter  # noqa: E402
from spine_docs.settings import Settings  # noqa: E402

from known_files import attribute_counts, facet_counts, write_known_files  # noqa: E402

ENTRY = str(resources.app_dir() / "explorer.py")
TIMEOUT = 60
N_FILES = 48
SITE = "s1"
NONE = "(none)"  # how the explorer labels a missing value
FACETS = ("site", "spine_version", "model", "dataset", "status")  # the sidebar's, in order


def _settings(**kw):
    return Settings.load(env={}, site=kw.pop("site", SITE), workers=1, **kw)


def build_catalog(root, n=N_FILES, name=None):
    """A mongomock catalog (shared in-process by URL) indexed from files of known facts;
    returns (url, db, the files' facts: see known_files.write_known_files)."""
    url = f"mongomock://app-{name or uuid.uuid4().hex[:10]}"
    specs = write_known_files(root, n)
    for s in specs:
        s["_id"] = f"{SITE}:{s['path']}"
        s["site"] = SITE
    db = store.connect(url)
    report = ingest.inject(db, settings=_settings(), sources=[str(root)])
    assert (report.indexed, report.failed) == (n, 0)
    return url, db, specs


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return build_catalog(tmp_path_factory.mktemp("app") / "prod")


@pytest.fixture
def app(catalog, monkeypatch):
    """An AppTest of the explorer on the shared catalog; returns (AppTest, db, specs)."""
    url, db, specs = catalog
    for key in list(__import__("os").environ):
        if key.startswith("SPINE_DOCS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SPINE_DOCS_DB", url)
    return AppTest.from_file(ENTRY, default_timeout=TIMEOUT), db, specs


# --------------------------------------------------------------------------- helpers

def ok(at):
    """The run raised nothing and showed no error."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def metric(at, label):
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r} in {[m.label for m in at.metric]}"
    return found[0]


def as_int(text):
    return int(str(text).replace(",", ""))


def table(at):
    """The Files page table as a DataFrame."""
    frames = [d for d in at.dataframe if d.key and d.key.startswith("table:")]
    assert len(frames) == 1
    return frames[0].value


def page_info(at):
    return [m.value for m in at.markdown if m.value.startswith(("Page ", "No file"))][0]


def newest_first(specs):
    """The files' facts, newest first (their mtimes all differ)."""
    return sorted(specs, key=lambda s: -s["mtime"])


def newest_first_ids(specs):
    return [s["_id"] for s in newest_first(specs)]


def shown_counts(entries):
    """facet_counts() as the sidebar labels them: {label: count}."""
    return {NONE if e["value"] is None else str(e["value"]): e["count"] for e in entries}


# --------------------------------------------------------------------------- Files page

def test_facet_counts_equal_the_catalog(app):
    at, db, specs = app
    ok(at.run())
    assert as_int(metric(at, "Matching files")) == as_int(metric(at, "In the catalog")) == N_FILES
    for field in FACETS:
        widget = at.pills(key=f"w:facet:{field}")
        shown = dict(re.fullmatch(r"(.*) · ([\d,]+)", o).groups() for o in widget.options)
        more = [m for m in at.multiselect if m.key == f"w:facet_more:{field}"]
        for m in more:
            shown.update(dict(re.fullmatch(r"(.*) · ([\d,]+)", o).groups() for o in m.options))
        want = shown_counts(facet_counts(specs, field))
        assert {k: as_int(v) for k, v in shown.items()} == want, field
    # the table: newest first, one page of the default size (50: every file)
    df = table(at)
    assert list(df["_id"]) == newest_first_ids(specs)
    assert page_info(at).startswith("Page 1 · rows 1–")


def test_facet_click_filters_counts_table_and_url(app):
    at, db, specs = app
    ok(at.run())
    dataset = "bnb_nu"
    chosen = [s for s in specs if s["dataset"] == dataset]
    at.pills(key="w:facet:dataset").set_value([dataset]).run()
    ok(at)
    assert as_int(metric(at, "Matching files")) == len(chosen) < N_FILES
    assert as_int(metric(at, "In the catalog")) == N_FILES
    assert list(table(at)["_id"]) == newest_first_ids(chosen)
    assert at.query_params["dataset"] == dataset
    # other facets are counted under the filter; the dataset facet minus its own selection
    model_counts = {o.rsplit(" · ", 1)[0]: as_int(o.rsplit(" · ", 1)[1])
                    for o in at.pills(key="w:facet:model").options}
    assert model_counts == shown_counts(facet_counts(chosen, "model"))
    dataset_counts = {o.rsplit(" · ", 1)[0]: as_int(o.rsplit(" · ", 1)[1])
                      for o in at.pills(key="w:facet:dataset").options}
    assert dataset_counts == shown_counts(facet_counts(specs, "dataset"))
    # Clear removes every condition
    at.button(key="w:clear").click().run()
    assert as_int(metric(ok(at), "Matching files")) == N_FILES
    assert "dataset" not in at.query_params


def test_filters_from_a_shared_url(app):
    at, db, specs = app
    run = 104  # bnb_nu holds runs 100.. (file i: run 100 + i // 3), mpv_mix and numi_data 200.., 300..
    params = {"run_min": str(run), "run_max": str(run + 1),
              "events_min": "1", "path_contains": "/runs/", "version_min": "0.1"}
    for k, v in params.items():
        at.query_params[k] = v
    ok(at.run())
    # every known version is >= 0.1: the version condition keeps the files that have one
    chosen = [s for s in specs if s["run"] is not None and run <= s["run"] <= run + 1
              and s["num_events"] >= 1 and "/runs/" in s["path"] and s["spine_version"] is not None]
    assert 1 < len(chosen) < N_FILES
    assert as_int(metric(at, "Matching files")) == len(chosen)
    assert at.number_input(key="w:run_min").value == run
    assert at.text_input(key="w:path").value == "/runs/"
    assert {k: at.query_params[k] for k in params} == params
    # a widget change narrows further and rewrites the URL
    events_min = sorted(s["num_events"] for s in chosen)[-1]
    at.number_input(key="w:events_min").set_value(events_min).run()
    fewer = [s for s in chosen if s["num_events"] >= events_min]
    assert 0 < len(fewer) < len(chosen)
    assert as_int(metric(ok(at), "Matching files")) == len(fewer)
    assert at.query_params["events_min"] == str(events_min)


def test_an_invalid_filter_in_the_url_is_reported_not_raised(app):
    at, db, specs = app
    at.query_params["run_min"] = "10"
    at.query_params["run_max"] = "5"
    at.run()
    assert not at.exception
    assert any("not understood" in e.value for e in at.error)
    assert as_int(metric(at, "Matching files")) == N_FILES


@pytest.mark.parametrize("key,value,needle", [
    ("status", "bogus", "unknown status 'bogus' (choose from ok, incomplete, error, missing, changed, corrupt)"),
    ("where", "null", "where must be a JSON object"),
    ("where", '{"$foo": 1}', "unknown query operator in where: $foo"),
])
def test_a_filter_that_means_nothing_is_reported_in_the_sidebar(app, key, value, needle):
    at, db, _ = app
    at.query_params[key] = value
    at.run()
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 1 and errors[0].startswith(
        f"The filter in the URL was not understood and was dropped: {needle}"), errors
    assert as_int(metric(at, "Matching files")) == N_FILES


def test_an_attribute_condition_that_would_be_misread_is_refused_in_the_sidebar(app):
    at, db, _ = app
    ok(at.run())
    at.text_input(key="w:attr_expr").input("num_events>>20")
    at.button(key="w:attr_add").click().run()
    assert not at.exception
    assert [e.value for e in at.sidebar.error] == [
        "attribute condition 'num_events>>20': the value '>20' starts with '>'; quote it "
        "(num_events>'>20') to mean that text"]
    assert "attr" not in at.query_params


def test_attribute_condition_from_the_sidebar(app):
    at, db, specs = app
    ok(at.run())
    at.text_input(key="w:attr_expr").input("num_events>=20")
    at.button(key="w:attr_add").click().run()
    ok(at)
    flt = Filter(attr_filters=[AttrFilter(key="num_events", op="gte", value=20)])
    # a root attribute num_events: the other producer's files have one
    chosen = [s for s in specs if s["attrs"].get("num_events", 0) >= 20]
    assert 0 < len(chosen) < len([s for s in specs if "num_events" in s["attrs"]])
    assert as_int(metric(at, "Matching files")) == len(chosen)
    assert Filter.from_params({"attr": at.query_params["attr"]}) == flt
    assert at.text_input(key="w:attr_expr").value == ""
    # a condition that cannot be parsed is refused with a message, the filter is unchanged
    at.text_input(key="w:attr_expr").input("num_events >= ")
    at.button(key="w:attr_add").click().run()
    assert not at.exception and len(at.error) == 1
    assert Filter.from_params({"attr": at.query_params["attr"]}) == flt
    # and a condition is removed with its button
    at.button(key="w:attr_rm:0").click().run()
    assert as_int(metric(ok(at), "Matching files")) == N_FILES


def test_pagination_reaches_the_last_page_and_back(app):
    at, db, specs = app
    at.query_params["size"] = "10"
    ok(at.run())
    ids = newest_first_ids(specs)
    seen = list(table(at)["_id"])
    pages = 1
    while not at.button(key="w:next").disabled:
        at.button(key="w:next").click().run()
        ok(at)
        seen += list(table(at)["_id"])
        pages += 1
        assert pages <= N_FILES
    assert seen == ids
    assert pages == -(-N_FILES // 10)
    assert page_info(at) == f"Page {pages} · rows {(pages - 1) * 10 + 1}–{N_FILES} of {N_FILES}"
    assert "after" in at.query_params
    at.button(key="w:prev").click().run()
    assert list(table(ok(at))["_id"]) == ids[(pages - 2) * 10:(pages - 1) * 10]
    at.button(key="w:first").click().run()
    assert list(table(ok(at))["_id"]) == ids[:10]
    assert at.button(key="w:prev").disabled


def test_sort_order_and_page_size(app):
    at, db, specs = app
    ok(at.run())
    at.selectbox(key="w:sort_field").set_value("size").run()
    at.segmented_control(key="w:sort_desc").set_value(False).run()
    ok(at)
    assert at.query_params["sort"] == "size"
    df = table(at)
    expected = [s["_id"] for s in sorted(specs, key=lambda s: (s["size"], s["_id"]))]
    assert list(df["_id"]) == expected
    at.selectbox(key="w:size").set_value(25).run()
    assert len(table(ok(at))) == 25 and at.query_params["size"] == "25"


def test_detail_panel_shows_everything_about_a_file(app):
    at, db, specs = app
    spec = next(s for s in specs if len(s["attrs"]) >= 2 and s["status"] == "ok")
    doc = db.files.find_one({"_id": spec["_id"]})
    at.query_params["file"] = doc["_id"]
    ok(at.run())
    assert doc["name"] in [s.value for s in at.subheader]
    codes = [c.value for c in at.code]
    assert doc["path"] in codes and doc["_id"] in codes and doc["dir"] in codes
    assert [t.label for t in at.tabs] == ["Summary", "Attributes", "Structure", "Ingest history",
                                          "Configuration", "Sidecars", "Document"]
    frames = {tuple(d.value.columns): d.value for d in at.dataframe}
    attrs = frames[("attribute", "type", "value")]
    assert set(attrs["attribute"]) == set(spec["attrs"])
    structure = frames[tuple(next(k for k in frames if "kind" in k))]
    assert list(structure["path"]) == [i["path"] for i in doc["structure"]["items"]]
    history = frames[tuple(next(k for k in frames if "run_id" in k))]
    assert len(history) == len(doc["ingest"]["history"])
    # Close clears the selection from the URL
    at.button(key="w:close_detail").click().run()
    assert "file" not in ok(at).query_params
    assert not [s for s in at.subheader if s.value == doc["name"]]


def test_detail_of_a_file_that_vanished(app):
    at, db, specs = app
    at.query_params["file"] = "s1:/no/such/file.h5"
    ok(at.run())
    assert any("not in the catalog" in w.value for w in at.warning)


# --------------------------------------------------------------------------- lifecycle and lineage

RETIRED_AT = __import__("datetime").datetime(2025, 6, 1, 8, 30, 0)


def lifecycle_catalog(tmp_path, monkeypatch):
    """12 known files; by hand: the two oldest retired, the next missing, the next corrupt,
    and a chain parent -> child -> grandchild (plus an unresolved input of the child)."""
    url, db, specs = build_catalog(tmp_path / "prod", n=12)
    order = [s["_id"] for s in sorted(specs, key=lambda s: s["mtime"])]
    retired, missing, corrupt = order[:2], order[2], order[3]
    parent, child, grandchild = order[4], order[5], order[6]
    path = {s["_id"]: s["path"] for s in specs}
    mark = {"reason": "bad calibration", "by": "alice", "at": RETIRED_AT}
    with store.writing(db):
        db.files.update_many({"_id": {"$in": retired}}, {"$set": {"retired": mark}})
        db.files.update_one({"_id": missing}, {"$set": {"status": "missing"}})
        db.files.update_one({"_id": corrupt}, {"$set": {"status": "corrupt"}})
        db.files.update_one({"_id": child}, {"$set": {"retired": mark, "lineage": {"parents": [
            {"text": path[parent], "path": path[parent], "how": "path"},
            {"text": "raw/lost_input.root", "path": None, "how": None}], "pending": ["lost_input.root"]}}})
        db.files.update_one({"_id": grandchild}, {"$set": {"lineage": {"parents": [
            {"text": path[child], "path": path[child], "how": "path"}], "pending": []}}})
    monkeypatch.setenv("SPINE_DOCS_DB", url)
    ids = {"retired": retired, "missing": missing, "corrupt": corrupt, "parent": parent,
           "child": child, "grandchild": grandchild}
    return AppTest.from_file(ENTRY, default_timeout=TIMEOUT), db, specs, ids, path


def test_retired_files_toggle_and_lifecycle_statuses(tmp_path, monkeypatch):
    at, db, specs, ids, _ = lifecycle_catalog(tmp_path, monkeypatch)
    ok(at.run())
    hidden = set(ids["retired"]) | {ids["child"]}
    assert as_int(metric(at, "Matching files")) == 12 - len(hidden) == 9
    assert not set(table(at)["_id"]) & hidden
    statuses = dict(re.fullmatch(r"(.*) · ([\d,]+)", o).groups() for o in at.pills(key="w:facet:status").options)
    assert (statuses["missing"], statuses["corrupt"]) == ("1", "1")
    at.pills(key="w:facet:status").set_value(["missing", "corrupt"]).run()
    assert list(table(ok(at))["_id"]) == [ids["corrupt"], ids["missing"]]  # newest first
    assert at.query_params["status"] == "missing,corrupt"
    at.button(key="w:clear").click().run()
    assert at.toggle(key="w:include_retired").value is False
    at.toggle(key="w:include_retired").set_value(True).run()
    assert as_int(metric(ok(at), "Matching files")) == 12
    assert hidden <= set(table(at)["_id"])
    assert at.query_params["include_retired"] == "True"
    at.toggle(key="w:include_retired").set_value(False).run()
    assert as_int(metric(ok(at), "Matching files")) == 9
    assert "include_retired" not in at.query_params
    # latest versions only: the corrupt file is marked superseded by hand
    with store.writing(db):
        db.files.update_one({"_id": ids["corrupt"]}, {"$set": {"superseded_by": ids["missing"]}})
    at.button(key="w:refresh").click().run()  # (the stamp does not see an update in place)
    at.toggle(key="w:latest_only").set_value(True).run()
    assert as_int(metric(ok(at), "Matching files")) == 8
    assert ids["corrupt"] not in set(table(at)["_id"])
    assert at.query_params["latest_only"] == "True"


def test_detail_panel_links_parents_and_children_and_says_retired(tmp_path, monkeypatch):
    at, db, specs, ids, path = lifecycle_catalog(tmp_path, monkeypatch)
    at.query_params["file"] = ids["child"]
    ok(at.run())
    assert "Retired: bad calibration, by alice, 2025-06-01 08:30:00 UTC" in [w.value for w in at.warning]
    parents = [b for b in at.button if b.key and b.key.startswith("w:lineage:parents:")]
    children = [b for b in at.button if b.key and b.key.startswith("w:lineage:children:")]
    assert [b.label for b in parents] == [path[ids["parent"]]]
    assert [b.label for b in children] == [path[ids["grandchild"]]]
    assert "raw/lost_input.root" in [c.value for c in at.code]
    # a link opens that file's detail
    children[0].click().run()
    assert ok(at).query_params["file"] == ids["grandchild"]
    grand = db.files.find_one({"_id": ids["grandchild"]})
    assert grand["name"] in [s.value for s in at.subheader]
    assert [b.label for b in at.button if b.key and b.key.startswith("w:lineage:parents:")] == [path[ids["child"]]]
    assert not [w for w in at.warning if w.value.startswith("Retired:")]
    # a file without links says so: file 11 of write_known_files is a plain HDF5 file (no inputs)
    plain = sorted(specs, key=lambda s: s["mtime"])[11]
    assert "/other/" in plain["path"]
    at.query_params["file"] = plain["_id"]
    ok(at.run())
    assert "Lineage: no parents or children in the catalog." in [c.value for c in at.caption]


def test_detail_panel_lists_a_bounded_number_of_children_and_says_so(tmp_path, monkeypatch):
    from spine_docs import lineage

    at, db, specs, ids, path = lifecycle_catalog(tmp_path, monkeypatch)
    order = [s["_id"] for s in sorted(specs, key=lambda s: s["mtime"])]
    kids = [order[7], order[8], order[9]]           # three more children of the parent, by hand
    with store.writing(db):
        for k in kids:
            db.files.update_one({"_id": k}, {"$set": {"lineage": {"parents": [
                {"text": path[ids["parent"]], "path": path[ids["parent"]], "how": "path"}], "pending": []}}})
    monkeypatch.setattr(lineage, "NEIGHBOURS", 2)
    at.query_params["file"] = ids["parent"]
    ok(at.run())
    children = [b.label for b in at.button if b.key and b.key.startswith("w:lineage:children:")]
    assert len(children) == 2 and set(children) < {path[i] for i in kids + [ids["child"]]}
    assert "Children (2+)" in [c.value for c in at.caption]
    assert f"The first 2 only: `spine-docs lineage {path[ids['parent']]} --down --depth 1` lists them all." \
        in [c.value for c in at.caption]
    # all four fit under the default bound: no note
    monkeypatch.setattr(lineage, "NEIGHBOURS", 100)
    at.button(key="w:refresh").click().run()
    children = [b.label for b in ok(at).button if b.key and b.key.startswith("w:lineage:children:")]
    assert sorted(children) == sorted(path[i] for i in kids + [ids["child"]])
    assert not [c for c in at.caption if c.value.startswith("The first ")]


DOT_EDGE = re.compile(r'^\s*"((?:[^"\\]|\\.)*)" -> "((?:[^"\\]|\\.)*)"', re.M)


def graph_dot(at) -> str:
    charts = at.get("graphviz_chart")
    assert len(charts) == 1, "one lineage graph in the detail panel"
    return charts[0].proto.spec


def file_edges(dot: str) -> set[tuple[str, str]]:
    """The (parent, child) edges between files the DOT draws (unresolved inputs left out)."""
    return {(a, b) for a, b in DOT_EDGE.findall(dot) if not a.startswith("input:")}


def chain_by_hand(db, path, ids, order):
    """Extends lifecycle_catalog's parent -> child -> grandchild by hand: grandchild ->
    order[7] -> order[8] (three and four generations below the parent); returns every
    (parent, child) edge made by hand."""
    g1, g2 = order[7], order[8]
    with store.writing(db):
        for parent, child in ((ids["grandchild"], g1), (g1, g2)):
            db.files.update_one({"_id": child}, {"$set": {"lineage": {"parents": [
                {"text": path[parent], "path": path[parent], "how": "path"}], "pending": []}}})
    return {(path[ids["parent"]], path[ids["child"]]), (path[ids["child"]], path[ids["grandchild"]]),
            (path[ids["grandchild"]], path[g1]), (path[g1], path[g2])}


def test_detail_panel_draws_the_lineage_graph_two_generations_each_way(tmp_path, monkeypatch):
    at, db, specs, ids, path = lifecycle_catalog(tmp_path, monkeypatch)
    order = [s["_id"] for s in sorted(specs, key=lambda s: s["mtime"])]
    made = chain_by_hand(db, path, ids, order)
    # from the child: the parent (1 up), the grandchild (1 down) and order[7] (2 down); order[8]
    # is three generations down: not drawn
    at.query_params["file"] = ids["child"]
    ok(at.run())
    dot = graph_dot(at)
    within_two = {(path[ids["parent"]], path[ids["child"]]), (path[ids["child"]], path[ids["grandchild"]]),
                  (path[ids["grandchild"]], path[order[7]])}
    assert within_two < made
    assert file_edges(dot) == within_two
    assert f'"{path[order[8]]}"' not in dot
    assert f'"input:raw/lost_input.root" -> "{path[ids["child"]]}" [style=dashed];' in dot
    assert not [c for c in at.caption if c.value.startswith("Capped at")]
    # from the grandchild: two up (parent, child), two down (order[7], order[8])
    at.query_params["file"] = ids["grandchild"]
    ok(at.run())
    assert file_edges(graph_dot(at)) == made


def test_lineage_graph_is_capped_with_a_note(tmp_path, monkeypatch):
    from spine_docs import lineage

    at, db, specs, ids, path = lifecycle_catalog(tmp_path, monkeypatch)
    order = [s["_id"] for s in sorted(specs, key=lambda s: s["mtime"])]
    chain_by_hand(db, path, ids, order)
    monkeypatch.setattr(lineage, "GRAPH_NODES", 3)
    at.query_params["file"] = ids["child"]
    ok(at.run())
    dot = graph_dot(at)
    # three boxes, the nearest first: the child and its two neighbours at distance 1
    assert file_edges(dot) == {(path[ids["parent"]], path[ids["child"]]),
                               (path[ids["child"]], path[ids["grandchild"]])}
    assert "input:" not in dot and f'"{path[order[7]]}"' not in dot
    assert [c.value for c in at.caption if c.value.startswith("Capped at 3 boxes")]


def test_lineage_graph_of_a_cycle_terminates_and_warns(tmp_path, monkeypatch):
    at, db, specs, ids, path = lifecycle_catalog(tmp_path, monkeypatch)
    order = [s["_id"] for s in sorted(specs, key=lambda s: s["mtime"])]
    x, y, z = order[8], order[9], order[10]             # x -> y -> z -> x, by hand
    with store.writing(db):
        for parent, child in ((x, y), (y, z), (z, x)):
            db.files.update_one({"_id": child}, {"$set": {"lineage": {"parents": [
                {"text": path[parent], "path": path[parent], "how": "path"}], "pending": []}}})
    at.query_params["file"] = y
    ok(at.run())
    assert file_edges(graph_dot(at)) == {(path[x], path[y]), (path[y], path[z]), (path[z], path[x])}
    assert [w for w in at.warning if w.value.startswith("Lineage cycle:")]


# --------------------------------------------------------------------------- Export

def test_export_downloads_equal_the_query_result(app):
    at, db, specs = app
    dataset = "numi_data"
    at.query_params["dataset"] = dataset
    at.run()
    at.switch_page("views/export.py").run()
    ok(at)
    chosen = newest_first([s for s in specs if s["dataset"] == dataset])
    assert 0 < len(chosen) < N_FILES
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download CSV", "Download JSON lines", "Download Paths"]
    jobs = at.session_state["_export_jobs"]
    # each format holds the chosen files, newest first
    text = jobs["paths"]().decode("utf-8")
    assert text.startswith(f"# spine-docs export: dataset = {dataset}\n")
    assert [line for line in text.splitlines() if not line.startswith("#")] == [s["path"] for s in chosen]
    rows = [json.loads(line) for line in jobs["jsonl"]().decode("utf-8").splitlines()]
    assert [(r["_id"], r["path"], r["dataset"], r["num_events"]) for r in rows] == \
        [(s["_id"], s["path"], dataset, s["num_events"]) for s in chosen]
    csv_text = jobs["csv"]().decode("utf-8")
    table_rows = list(csv.DictReader(line for line in io.StringIO(csv_text) if not line.startswith("#")))
    assert [(r["_id"], r["path"], r["dataset"], r["size"], r["run"]) for r in table_rows] == \
        [(s["_id"], s["path"], dataset, str(s["size"]), str(s["run"])) for s in chosen]
    # the preview is the start of the same export; the shell command selects the same files
    preview = [c.value for c in at.code if c.language != "bash"][0]
    assert preview and csv_text.startswith(preview)
    command = [c.value for c in at.code if c.language == "bash"][0]
    assert f"--dataset {dataset}" in command and "--format csv" in command


# --------------------------------------------------------------------------- Analytics

def test_analytics_views_draw_charts(app):
    at, db, specs = app
    at.run()
    at.switch_page("views/analytics.py").run()
    ok(at)
    assert as_int(metric(at, "Files")) == len(specs)
    assert as_int(metric(at, "Events")) == sum(s["num_events"] for s in specs)
    assert len(at.get("vega_lite_chart")) == 2  # stacked timeline and totals by dataset
    at.selectbox(key="w:group").set_value("model").run()
    at.segmented_control(key="w:by").set_value("day").run()
    ok(at)
    assert at.query_params["group"] == "model" and at.query_params["by"] == "day"

    at.segmented_control(key="w:view").set_value("dist").run()
    ok(at)
    assert at.query_params["view"] == "dist" and len(at.get("vega_lite_chart")) == 1
    caption = [c.value for c in at.caption if c.value.endswith("zero sizes")][0]
    assert caption.startswith(f"{len(specs):,} files")
    at.segmented_control(key="w:hist").set_value("num_events").run()
    assert len(ok(at).get("vega_lite_chart")) == 1

    at.segmented_control(key="w:view").set_value("runs").run()
    ok(at)
    assert len(at.get("vega_lite_chart")) == 2  # datasets' runs and the chosen dataset's subruns
    coverage = [d.value for d in at.dataframe if "missing runs" in d.value.columns][0]
    expected = {}
    for name in {s["dataset"] for s in specs}:
        files = [s for s in specs if s["dataset"] == name]
        runs = {s["run"] for s in files if s["run"] is not None}
        missing = max(runs) - min(runs) + 1 - len(runs) if runs else 0
        expected[NONE if name is None else name] = (
            len(files), missing, sum(s["run"] is None for s in files))
    assert sum(m for _, m, _ in expected.values()) > 0  # known_files leaves gaps
    assert {row["dataset"]: (row["files"], row["missing runs"], row["files without run"])
            for row in coverage.to_dict("records")} == expected


# --------------------------------------------------------------------------- Attributes

def test_attribute_dictionary_and_filter_on_a_key(app):
    at, db, specs = app
    at.run()
    at.switch_page("views/attributes.py").run()
    ok(at)
    df = [d.value for d in at.dataframe if "key" in d.value.columns][0]
    expected = attribute_counts(specs)
    assert list(df["key"]) == sorted(expected)
    assert list(df["files"]) == [expected[k] for k in sorted(expected)]
    rare = "rare_flag"
    assert expected[rare] == 1 == min(expected.values())
    at.selectbox(key="w:dict_key").set_value(rare)
    at.selectbox(key="w:dict_op").set_value("exists")
    at.button(key="FormSubmitter:dict_filter-Show the files").click().run()
    ok(at)
    assert as_int(metric(at, "Matching files")) == 1
    assert list(table(at)["_id"]) == [s["_id"] for s in specs if rare in s["attrs"]]


# --------------------------------------------------------------------------- Replicas

def test_replicas_page_lists_copies(tmp_path, monkeypatch):
    url, db, _ = build_catalog(tmp_path / "prod", n=12)
    doc = db.files.find_one({"status": "ok"})
    copy = {**doc, "_id": "other:" + doc["path"], "site": "other"}
    with store.writing(db):
        db.files.insert_one(copy)
    monkeypatch.setenv("SPINE_DOCS_DB", url)
    at = AppTest.from_file(ENTRY, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("views/replicas.py").run()
    ok(at)
    assert as_int(metric(at, "Copied across sites")) == 1
    df = [d.value for d in at.dataframe if "copies" in d.value.columns][0]
    assert set(df["site"]) == {"s1", "other"} and set(df["path"]) == {doc["path"]}


# --------------------------------------------------------------------------- Saved queries

def test_saved_queries_save_list_load_delete(tmp_path, monkeypatch):
    url, db, specs = build_catalog(tmp_path / "prod", n=16)
    monkeypatch.setenv("SPINE_DOCS_DB", url)
    at = AppTest.from_file(ENTRY, default_timeout=TIMEOUT)
    model = "uresnet_ppn"
    with_model = [s for s in specs if s["model"] == model]
    assert 0 < len(with_model) < len(specs)
    at.query_params["model"] = model
    at.query_params["sort"] = "path"
    at.run()
    at.switch_page("views/saved.py").run()
    ok(at)
    at.text_input(key="w:save_name").input("my files")
    at.button(key="FormSubmitter:save-Save").click().run()
    ok(at)
    assert [q["name"] for q in queries.list_queries(db)] == ["my files"]
    assert queries.load_query(db, "my files") == Filter(model=[model])
    assert any("my files" in m.value for m in at.markdown)
    # clear the filter, then load the saved one: back on Files with the filter and sort
    at.button(key="w:clear").click().run()
    at.button(key="w:load:my files").click().run()
    ok(at)
    assert as_int(metric(at, "Matching files")) == len(with_model)
    assert at.query_params["model"] == model and at.query_params["sort"] == "path"
    at.switch_page("views/saved.py").run()
    at.button(key="w:delete:my files").click().run()
    ok(at)
    assert queries.list_queries(db) == []
    assert any("No saved query" in c.value for c in at.caption)


# --------------------------------------------------------------------------- messages

def _app_on(url, monkeypatch, **env):
    monkeypatch.setenv("SPINE_DOCS_DB", url)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return AppTest.from_file(ENTRY, default_timeout=TIMEOUT)


def test_wrong_url_shows_one_message(monkeypatch):
    at = _app_on("mongodb://127.0.0.1:9/spine_docs", monkeypatch, SPINE_DOCS_CONNECT_TIMEOUT_MS="200")
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("Cannot open the catalog")
    assert not at.dataframe and not at.metric


def test_a_directory_without_a_catalog_is_one_message_and_stays_untouched(tmp_path, monkeypatch):
    where = tmp_path / "no-such-catalog"
    at = _app_on(str(where), monkeypatch)
    at.run()
    assert not at.exception
    assert len(at.error) == 1
    assert at.error[0].value.startswith(f"Cannot open the catalog: no catalog at {where} (create one "
                                        f"with `spine-docs setup --db {where}`")
    assert not where.exists()


def test_empty_catalog_says_how_to_fill_it(monkeypatch):
    at = _app_on(f"mongomock://empty-{uuid.uuid4().hex[:8]}", monkeypatch)
    at.run()
    assert not at.exception and not at.error
    assert len(at.info) == 1 and "empty" in at.info[0].value
    assert any(c.value.startswith("spine-docs inject") for c in at.code)


@pytest.mark.parametrize("how", ["no schema document", "no meta collection"])
def test_an_unversioned_catalog_with_files_shows_the_migrate_command(tmp_path, monkeypatch, how):
    url, db, _ = build_catalog(tmp_path / "prod", n=4)
    with store.writing(db):
        if how == "no meta collection":  # a catalog indexed before schema versions existed
            db.drop_collection("meta")
        else:
            db.meta.delete_one({"_id": "schema"})
    assert schema.db_version(db) == 0 and db.files.count_documents({}) == 4
    at = _app_on(url, monkeypatch)
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "schema version 0" in at.error[0].value
    assert [c.value for c in at.code] == [f"spine-docs migrate up --db {url}"]
    assert not at.dataframe and not at.metric and not at.info


def test_schema_mismatch_shows_the_migrate_command(tmp_path, monkeypatch):
    url, db, _ = build_catalog(tmp_path / "prod", n=4)
    with store.writing(db):
        schema.stamp_version(db, schema.CODE_SCHEMA_VERSION - 1)
    at = _app_on(url, monkeypatch)
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "schema version" in at.error[0].value
    assert [c.value for c in at.code] == [f"spine-docs migrate up --db {url}"]


def test_database_going_away_mid_session(app, monkeypatch):
    at, db, specs = app
    ok(at.run())
    from pymongo.errors import ServerSelectionTimeoutError

    def down(*a, **k):
        raise ServerSelectionTimeoutError("127.0.0.1:27017: connection refused")

    monkeypatch.setattr(queries, "total", down)
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "not answering" in at.error[0].value


def test_where_the_embedded_catalog_lacks_is_a_message_per_panel(app):
    at, db, _ = app
    st.cache_data.clear()
    at.query_params["where"] = '{"$text": {"$search": "x"}}'
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and all("$text is not supported by the embedded catalog" in e for e in errors)
    assert not any("stopped answering" in e or "not answering" in e for e in errors)


def test_a_refused_query_is_not_a_lost_database(app, monkeypatch):
    """A server refusing a bad filter (OperationFailure) is that panel's error; the rest of the
    page renders and nothing says the database stopped answering."""
    at, db, _ = app
    ok(at.run())
    st.cache_data.clear()
    from pymongo.errors import OperationFailure
    shim = type(db["files"])

    def refusing(method):
        original = getattr(shim, method)

        def refuse(self, query, *a, **k):  # as a server refuses a filter it cannot use
            if "bad_field" in repr(query):
                raise OperationFailure("$in needs an array", code=2)
            return original(self, query, *a, **k)
        return refuse

    for method in ("aggregate", "count_documents", "find"):
        monkeypatch.setattr(shim, method, refusing(method))
    at.query_params["where"] = '{"bad_field": 1}'
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    for panel in ("Facets", "Count"):
        assert f"{panel}: the database refused the query: $in needs an array" in errors, errors
    assert not any("answering" in e for e in errors), errors


def test_a_refusal_outside_a_query_is_not_a_lost_database(app, monkeypatch):
    at, db, _ = app
    from pymongo.errors import OperationFailure

    def unauthorized(*a, **k):
        raise OperationFailure("not authorized on spine_docs to execute command", code=13)

    monkeypatch.setattr(queries, "total", unauthorized)
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "refused a request: not authorized" in at.error[0].value
    assert "answering" not in at.error[0].value


def test_time_limit_is_reported_and_the_page_still_renders(app, monkeypatch):
    at, db, specs = app
    st.cache_data.clear()  # results of the other tests on this catalog are cached

    def too_slow(*a, max_time_ms=None, **k):
        raise queries.QueryTimeout(max_time_ms)

    monkeypatch.setattr(queries, "facets", too_slow)
    monkeypatch.setattr(queries, "count", too_slow)
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("Facets: the query hit the time limit (5,000 ms)") for w in warnings)
    assert any(w.startswith("Count:") for w in warnings)
    assert metric(at, "Matching files") == "—"
    assert len(table(at)) == min(N_FILES, 50)  # the table did not need count or facets
    # the export stays possible when the count is unknown
    at.switch_page("views/export.py").run()
    assert not at.exception
    assert [b.disabled for b in at.get("download_button")] == [False, False, False]


def test_new_files_appear_without_restart(tmp_path, monkeypatch):
    url, db, _ = build_catalog(tmp_path / "a", n=6)
    at = _app_on(url, monkeypatch)
    at.run()
    assert as_int(metric(ok(at), "In the catalog")) == 6
    write_known_files(tmp_path / "b", 5)
    ingest.inject(db, settings=_settings(), sources=[str(tmp_path / "b")])
    at.run()
    assert as_int(metric(ok(at), "In the catalog")) == 11
    assert as_int(metric(at, "Matching files")) == 11


# --------------------------------------------------------------------------- Compare page

def _write_energy(path, energy, hour=0):
    """A SPINE file whose root attribute ``energy`` is ``energy`` (and a dotted name)."""
    import os
    from datetime import datetime as _dt, timezone as _tz
    from spine_docs import samples
    path.parent.mkdir(parents=True, exist_ok=True)
    samples.write_spine_file(path, root_attrs={"energy": energy, "a.b": "dotted"}, seed=0, n_events=3)
    ts = _dt(2026, 1, 1, hour, tzinfo=_tz.utc).timestamp()
    os.utime(path, (ts, ts))
    return path


@pytest.fixture(scope="module")
def compare_catalog(tmp_path_factory):
    """A/f1 (energy 1.0, then re-processed to 5.0: one kept version), A/f2 1.0, A/f3 1.0;
    B/f1 1.0, B/f2 2.0, B/f4 1.0. Returns (url, db, root)."""
    root = tmp_path_factory.mktemp("cmp")
    url = f"mongomock://cmp-{uuid.uuid4().hex[:10]}"
    db = store.connect(url)
    for name, energy in (("A/f1.h5", 1.0), ("A/f2.h5", 1.0), ("A/f3.h5", 1.0),
                         ("B/f1.h5", 1.0), ("B/f2.h5", 2.0), ("B/f4.h5", 1.0)):
        _write_energy(root / name, energy)
    assert ingest.inject(db, settings=_settings(), sources=[str(root)]).indexed == 6
    _write_energy(root / "A/f1.h5", 5.0, hour=1)   # re-processed (a new mtime)
    rep = ingest.inject(db, settings=_settings(), sources=[str(root / "A/f1.h5")])
    assert rep.failed == 0
    assert db.file_versions.count_documents({}) == 1
    return url, db, root


@pytest.fixture
def cmp_app(compare_catalog, monkeypatch):
    url, db, root = compare_catalog
    for key in list(__import__("os").environ):
        if key.startswith("SPINE_DOCS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SPINE_DOCS_DB", url)
    return AppTest.from_file(ENTRY, default_timeout=TIMEOUT), db, root


def frame(at, title):
    """The Compare page's table under the subheader ``title`` (each section: one table)."""
    heads = [h.value for h in at.main.subheader]
    frames = [d.value for d in at.main.dataframe]
    assert len(heads) == len(frames), (heads, len(frames))
    found = [f for h, f in zip(heads, frames) if h == title or h.startswith(title + " (")]
    assert len(found) == 1, f"no table {title!r} in {heads}"
    return found[0]


def test_compare_two_versions_of_a_file_changed_only_and_every_key(cmp_app):
    at, db, root = cmp_app
    fid = f"{SITE}:{root / 'A/f1.h5'}"
    ok(at.run())
    at.query_params.update({"mode": "files", "a": f"{fid}@1", "b": fid})
    ok(at.switch_page("views/compare.py").run())
    attrs = frame(at, "Root attributes")
    assert attrs.to_dict("records") == [{"key": "energy", "change": "changed", "A": "1.0", "B": "5.0"}]
    assert any("version 1" in c.value for c in at.caption)
    at.toggle(key="w:cmp_all").set_value(True).run()
    attrs = frame(ok(at), "Root attributes")
    assert {r["key"]: r["change"] for r in attrs.to_dict("records")} == {"energy": "changed", '"a.b"': "same"}
    assert at.query_params["all"] == "1"
    # a reference the catalog does not hold is one message
    at.text_input(key="w:cmp_b").set_value("/nowhere.h5").run()
    assert not at.exception and any("not in the catalog" in e.value for e in at.error)


def test_detail_panel_links_to_the_previous_version(cmp_app):
    at, db, root = cmp_app
    unchanged = f"{SITE}:{root / 'A/f2.h5'}"
    at.query_params["file"] = unchanged
    ok(at.run())
    assert not [b for b in at.button if b.key == "w:compare_previous"]   # no version kept
    fid = f"{SITE}:{root / 'A/f1.h5'}"
    at.query_params["file"] = fid
    ok(at.run())
    at.button(key="w:compare_previous").click().run()
    ok(at)
    assert at.text_input(key="w:cmp_a").value == f"{fid}@1"
    assert at.text_input(key="w:cmp_b").value == fid
    assert frame(at, "Root attributes").to_dict("records") == [
        {"key": "energy", "change": "changed", "A": "1.0", "B": "5.0"}]


def test_compare_two_sets(cmp_app):
    at, db, root = cmp_app
    ok(at.run())
    at.query_params.update({"mode": "sets", "left": f"path_contains={root}/A/",
                            "right": f"path_contains={root}/B/", "key": "name"})
    ok(at.switch_page("views/compare.py").run())
    # by name: f1 and f2 pair; f3 only left, f4 only right
    assert [as_int(metric(at, m)) for m in ("Left files", "Right files", "Pairs", "Only left", "Only right")] \
        == [3, 3, 2, 1, 1]
    keys = {(r["section"], r["key"]): r for r in frame(at, "Keys that differ").to_dict("records")}
    energy = keys[("attrs", "energy")]      # 5.0 vs 1.0 and 1.0 vs 2.0: every pair
    assert (energy["in"], energy["changed"], energy["values only"]) == ("every pair", 2, True)
    assert ("attrs", '"a.b"') not in keys
    assert frame(at, "Only left (1)").to_dict("records") == [
        {"file": f"{SITE}:{root / 'A/f3.h5'}", "name": "f3.h5"}]
    assert frame(at, "Only right (1)").to_dict("records") == [
        {"file": f"{SITE}:{root / 'B/f4.h5'}", "name": "f4.h5"}]
    # a side that is not a filter is one message
    at.text_input(key="w:cmp_left").set_value("").run()
    assert not at.exception and any("Give the two sets" in i.value for i in at.info)
