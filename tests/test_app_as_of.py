"""The explorer "as of" a date (issue 14 item 4): the sidebar's date, the banner, the URL, and
the file list, counts, facets, detail, attribute dictionary and exports as the catalog stood
then. The catalog's history is written by the test at known dates; every expectation is
written here by hand from it.

    Mar 1: f1 (energy 1.0) and f3 (energy 5.0) indexed
    Mar 5: f1 re-processed (energy 2.0), f2 indexed (energy 3.0)

So as of Mar 2 the catalog held f1 with 1.0 and f3, and no f2."""

from __future__ import annotations

import json
import os
import uuid
from datetime import date, datetime, timezone

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from spine_docs import ingest, resources, store  # noqa: E402
from spine_docs.settings import Settings  # noqa: E402

from dated import frozen_clock, write_energy  # noqa: E402

ENTRY = str(resources.app_dir() / "explorer.py")
TIMEOUT = 60
SITE = "s1"
UTC = timezone.utc
#: the URL's as_of for "2026-03-02": the end of that day, UTC
MAR_2 = "2026-03-02T23:59:59.999000+00:00"


Clock = frozen_clock()
_write = write_energy


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("asof")
    url = f"mongomock://asof-{uuid.uuid4().hex[:10]}"
    db = store.connect(url)
    f1, f2, f3 = (str(root / n) for n in ("f1.h5", "f2.h5", "f3.h5"))
    real = ingest.datetime
    ingest.datetime = Clock
    try:
        def inject(*paths):
            rep = ingest.inject(db, settings=Settings.load(env={}, db=url, site=SITE, workers=1),
                                sources=list(paths))
            assert rep.failed == 0

        Clock.at = datetime(2026, 3, 1, 12, tzinfo=UTC)
        _write(f1, 1.0, 0)
        _write(f3, 5.0, 0)
        inject(f1, f3)
        Clock.at = datetime(2026, 3, 5, 12, tzinfo=UTC)
        _write(f1, 2.0, 1)
        _write(f2, 3.0, 0)
        inject(f1, f2)
    finally:
        ingest.datetime = real
    assert db.file_versions.count_documents({}) == 1
    return url, db, {"f1": f"{SITE}:{f1}", "f2": f"{SITE}:{f2}", "f3": f"{SITE}:{f3}"}


@pytest.fixture
def app(catalog, monkeypatch):
    url, db, ids = catalog
    for key in list(os.environ):
        if key.startswith("SPINE_DOCS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SPINE_DOCS_DB", url)
    return AppTest.from_file(ENTRY, default_timeout=TIMEOUT), ids


def ok(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def matching(at):
    (value,) = [m.value for m in at.metric if m.label == "Matching files"]
    return int(str(value).replace(",", ""))


def table_ids(at):
    (frame,) = [d.value for d in at.dataframe if d.key and d.key.startswith("table:")]
    return set(frame["_id"])


def banners(at):
    return [i.value for i in at.info if i.value.startswith("As of ")]


def test_the_sidebar_date_shows_the_catalog_then_and_goes_into_the_url(app):
    at, ids = app
    ok(at.run())
    assert matching(at) == 3 and table_ids(at) == set(ids.values()) and banners(at) == []
    at.date_input(key="w:as_of").set_value(date(2026, 3, 2)).run()
    ok(at)
    assert matching(at) == 2                                   # f2 was indexed later: absent
    assert table_ids(at) == {ids["f1"], ids["f3"]}
    assert at.query_params["as_of"] == MAR_2
    assert banners(at) == ["As of 2026-03-02 23:59:59 UTC: the files the catalog held then, with the "
                           "values they had (from the history). Clear \"As of\" in the sidebar for now."]
    status = at.pills(key="w:facet:status").options
    assert status == ["ok · 2"]
    # cleared: now again, and out of the URL
    at.date_input(key="w:as_of").set_value(None).run()
    ok(at)
    assert matching(at) == 3 and "as_of" not in at.query_params and banners(at) == []


def test_a_shared_url_as_of_a_date_shows_the_old_values(app):
    at, ids = app
    at.query_params["as_of"] = "2026-03-02"
    at.query_params["attr"] = json.dumps([["energy", "lt", 1.5]])
    ok(at.run())
    # f1 had 1.0 then (2.0 now): it matches as of Mar 2, and only then
    assert matching(at) == 1 and table_ids(at) == {ids["f1"]}
    assert at.date_input(key="w:as_of").value == date(2026, 3, 2)
    assert at.query_params["as_of"] == MAR_2
    # the detail panel shows the document as it was
    at.query_params["file"] = ids["f1"]
    ok(at.run())
    (document,) = [c.value for c in at.code if c.language == "json"]
    assert json.loads(document)["attrs"]["energy"] == 1.0
    at.query_params.pop("attr")
    at.query_params["file"] = ids["f2"]
    ok_warnings = at.run()
    assert not ok_warnings.exception
    assert any(f"{ids['f2']} was not in the catalog on 2026-03-02" in w.value for w in at.warning)


def test_exports_and_attributes_follow_the_date(app):
    at, ids = app
    at.query_params["as_of"] = "2026-03-02"
    ok(at.run())
    at.switch_page("views/export.py").run()
    ok(at)
    assert len(banners(at)) == 1
    rows = [json.loads(line) for line in at.session_state["_export_jobs"]["jsonl"]().decode().splitlines()]
    assert {r["_id"]: r["attrs"]["energy"] for r in rows} == {ids["f1"]: 1.0, ids["f3"]: 5.0}
    command = [c.value for c in at.code if c.language == "bash"][0]
    assert "--as-of 2026-03-02" in command
    at.switch_page("views/attributes.py").run()
    ok(at)
    df = [d.value for d in at.dataframe if "key" in d.value.columns][0]
    energy = df[df["key"] == "energy"].to_dict("records")[0]
    assert energy["files"] == 2


def test_a_page_the_history_cannot_answer_says_so(app):
    at, ids = app
    at.query_params["as_of"] = "2026-03-02"
    at.run()
    at.switch_page("views/replicas.py").run()
    assert not at.exception
    assert any("not available as of a date" in e.value for e in at.error)


def test_the_compare_page_says_the_sidebar_date_does_not_apply_to_it(app):
    at, ids = app
    at.query_params["as_of"] = "2026-03-02"
    ok(at.run())
    ok(at.switch_page("views/compare.py").run())
    assert banners(at) == []
    notes = [i.value for i in at.info if "does not apply here" in i.value]
    assert notes == ["The sidebar's \"As of\" (2026-03-02 23:59:59 UTC) does not apply here: write a "
                     "file as it was as PATH@DATE (e.g. 2026-03-02) or PATH@N (version N)."]
