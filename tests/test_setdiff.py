"""``spine-docs diff --left F --right F``: two sets of files matched by input or a named key,
merged from two sorted cursors; one side empty; ties; keys that differ in every pair or in
some, or only in their values. The catalogs are written by hand, and so are the expected
summaries."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spine_docs import extract, queries, schema, setdiff, store
from spine_docs.cli import app

runner = CliRunner()


def doc(prod, name, inp, *, energy, depth=5, events=10, size=100, extra=None, site="s"):
    d = extract.base_document(site, f"/data/{prod}/{name}")
    d.update(status="ok", dataset="ds", prod_version=prod, num_events=events, size=size,
             inputs=[inp] if inp else [], inputs_count=1 if inp else 0,
             attrs={"energy": energy, **(extra or {})},
             attr_types={"energy": "double", **{k: "int" for k in extra or {}}},
             cfg={"model": {"network": {"depth": depth}}},
             ingest={"run_id": "r"})
    return d


LEFT = [
    doc("v2", "a.h5", "/in/1.root", energy=1.0, depth=5, extra={"gain": 1}),
    doc("v2", "b.h5", "/in/2.root", energy=2.0, depth=5, events=20, size=200),
    doc("v2", "c.h5", "/in/3.root", energy=3.0, depth=5, events=30, size=300),
    doc("v2", "e.h5", "/in/5.root", energy=5.0),
    doc("v2", "nokey.h5", None, energy=9.0),
]
RIGHT = [
    doc("v3", "a.h5", "/in/1.root", energy=1.5, depth=6),                    # gain removed, depth changed
    doc("v3", "b.h5", "/in/2.root", energy=2.5, depth=6, events=25, size=200),
    doc("v3", "c.h5", "/in/3.root", energy=3.5, depth=5, events=30, size=350),
    doc("v3", "c2.h5", "/in/3.root", energy=3.6),                            # a tie: unmatched
    doc("v3", "d.h5", "/in/4.root", energy=4.0),
]


@pytest.fixture
def catalog(db):
    schema.setup(db)
    with store.writing(db):
        db.files.insert_many([dict(d) for d in LEFT + RIGHT])
    return db


def summary(db, left, right, **kw):
    return setdiff.compare_sets(db, setdiff.side_filter(db, left), setdiff.side_filter(db, right), **kw)


def test_matched_by_input(catalog):
    s = summary(catalog, "prod_version=v2", "prod_version=v3")
    assert (s.left.files, s.right.files) == (5, 5)
    assert (s.left.events, s.right.events) == (10 + 20 + 30 + 10 + 10, 10 + 25 + 30 + 10 + 10)
    assert (s.pairs, s.identical, s.ties) == (3, 0, 1)
    assert (s.left.no_key, s.left.unmatched, s.right.unmatched) == (1, 1, 2)
    assert [e["_id"] for e in s.left.unmatched_examples] == ["s:/data/v2/e.h5"]
    assert [e["_id"] for e in s.right.unmatched_examples] == ["s:/data/v3/c2.h5", "s:/data/v3/d.h5"]
    rows = {(r["section"], r["key"]): r for r in s.rows()}
    assert set(rows) == {("attrs", "energy"), ("attrs", "gain"), ("cfg", "model.network.depth"),
                         ("promoted", "num_events"), ("promoted", "prod_version"), ("facts", "size")}
    assert rows[("promoted", "prod_version")]["scope"] == "every"
    energy = rows[("attrs", "energy")]
    assert (energy["pairs"], energy["scope"], energy["changed"], energy["values_only"]) == (3, "every", 3, True)
    assert [(e["a"], e["b"]) for e in energy["examples"]] == [(1.0, 1.5), (2.0, 2.5), (3.0, 3.5)]
    gain = rows[("attrs", "gain")]
    assert (gain["pairs"], gain["scope"], gain["removed"], gain["values_only"]) == (1, "some", 1, False)
    depth = rows[("cfg", "model.network.depth")]
    assert (depth["pairs"], depth["scope"], depth["changed"]) == (2, "some", 2)
    assert rows[("promoted", "num_events")]["pairs"] == 1 and rows[("facts", "size")]["pairs"] == 1
    assert s.events == {"left": 60, "right": 65, "pairs_differ": 1}
    assert s.sizes == {"left": 600, "right": 650, "pairs_differ": 1}
    assert [r["key"] for r in s.rows()][:2] == ["energy", "prod_version"]  # most frequent first


def test_one_side_empty(catalog):
    s = summary(catalog, "prod_version=v2", "prod_version=v9")
    assert (s.pairs, s.right.files, s.left.unmatched, s.left.no_key) == (0, 0, 4, 1)
    assert s.rows() == []
    s = summary(catalog, "prod_version=v9", "prod_version=v3")
    assert (s.pairs, s.left.files, s.right.unmatched) == (0, 0, 5)


def test_matched_by_name_with_an_attribute_condition_and_a_saved_query(catalog):
    queries.save_query(catalog, "prod three", queries.Filter(prod_version=["v3"]))
    s = summary(catalog, "prod_version=v2,energy<4", "prod three", match_on="name")
    # left: a b c (energy < 4); right: a b c c2 d; names a.h5 b.h5 c.h5 pair
    assert (s.left.files, s.pairs, s.left.unmatched, s.right.unmatched, s.ties) == (3, 3, 0, 2, 0)
    assert {r["key"] for r in s.rows() if r["section"] == "facts"} == {"size"}   # same inputs


def test_a_key_no_index_sorts_by_is_refused_before_reading(catalog):
    with pytest.raises(setdiff.SetDiffError, match="cannot match on 'attrs.energy'.*input.*name"):
        summary(catalog, "prod_version=v2", "prod_version=v3", match_on="attrs.energy")


def test_side_filters(db):
    with pytest.raises(setdiff.SetDiffError, match="neither a filter term nor a saved query"):
        setdiff.side_filter(db, "x>>5")
    f = setdiff.side_filter(db, "dataset=a\\,b,dataset=c,run_min=5")
    assert f.dataset == ["a,b", "c"] and f.run_min == 5


def test_order_key_is_bson_order():
    values = [None, -1, 0.5, 2, "", "A", "a", "é"]
    assert sorted(reversed(values), key=setdiff.order_key) == values


def test_cli_set_diff_text_and_json(catalog, db_url):
    r = runner.invoke(app, ["diff", "--left", "prod_version=v2", "--right", "prod_version=v3", "--db", db_url])
    assert r.exit_code == 0, r.output
    out = r.stdout.splitlines()
    assert out[0] == "matched on input"
    assert "pairs        3  identical 0  keys shared by several files: 1" in out
    assert "only right: 2 files" in out and "  + s:/data/v3/d.h5  [\"/in/4.root\"]" in out
    assert "  attrs: energy  [every pair; values only]" in out
    assert "  attrs: gain  [1 of 3 pairs; removed 1]" in out
    r = runner.invoke(app, ["diff", "--left", "prod_version=v2", "--right", "prod_version=v3", "--db", db_url,
                            "-f", "json"])
    d = json.loads(r.stdout)
    assert d["pairs"] == 3 and d["left"]["unmatched"] == 1 and d["keys"][0]["key"] == "energy"
    for args in (["--left", "prod_version=v2"], ["a", "--left", "x", "--right", "y"],
                 ["--left", "prod_version=v2", "--right", "x", "--match-on", "bogus"]):
        r = runner.invoke(app, ["diff", *args, "--db", db_url])
        assert r.exit_code == 2 and r.stderr.startswith("spine-docs: ") and len(r.stderr.splitlines()) == 1, r.output
