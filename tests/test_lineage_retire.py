"""lineage.py, retire.py and their commands: parents resolved by path / by name / kept as
text, a parent indexed after its child, cycles, three generations retired with descendants,
retired files hidden from queries, counts, facets and exports unless included."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from spine_docs import ingest, lineage, queries, retire, samples
from spine_docs.cli import app
from spine_docs.settings import Settings

SITE = "s1"
runner = CliRunner()


def inject(db, *paths):
    rep = ingest.inject(db, settings=Settings.load(env={}, site=SITE, workers=1), sources=[str(p) for p in paths])
    assert rep.failed == 0, rep.problems
    return rep


def write(path, inputs, **kw):
    return str(samples.write_spine_file(path, inputs=inputs, n_events=3, **kw))


def family(tmp_path):
    """a -> b -> c (three generations), a -> b2, and an unrelated d; written, not indexed."""
    d = tmp_path / "prod"
    d.mkdir()
    a = write(d / "a.h5", ["/raw/run1.root"])
    b = write(d / "b.h5", [a])
    b2 = write(d / "b2.h5", [a])
    c = write(d / "c.h5", [b])
    other = write(d / "d.h5", ["/raw/run2.root"])
    return a, b, b2, c, other


def parents(db, path):
    return db.files.find_one({"path": path})["lineage"]["parents"]


def run(db_url, *args):
    return runner.invoke(app, [str(a) for a in args], env={"SPINE_DOCS_SITE": SITE})


def listed(out):
    return sorted(line for line in out.splitlines() if line and not line.startswith("#"))


def test_parents_are_resolved_by_path_and_children_are_a_query(db, tmp_path):
    a, b, b2, c, other = family(tmp_path)
    inject(db, tmp_path / "prod")
    assert parents(db, b) == [{"text": a, "path": a, "how": "path"}]
    assert parents(db, a) == [{"text": "/raw/run1.root", "path": None, "how": None}]   # kept as text
    assert db.files.find_one({"path": a})["lineage"]["pending"] == ["run1.root"]
    assert sorted(d["path"] for d in db.files.find({"lineage.parents.path": a})) == sorted([b, b2])
    down = lineage.descendants(db, [a])
    assert sorted(down.paths) == sorted([b, b2, c]) and down.cycles == []
    assert down.depth_of[c] == 2
    assert sorted(lineage.descendants(db, [a], depth=1).paths) == sorted([b, b2])
    up = lineage.ancestors(db, [c])
    assert sorted(up.paths) == sorted([a, b]) and up.unresolved == {a: ["/raw/run1.root"]}


def test_a_parent_indexed_after_its_child_is_linked_when_it_arrives(db, tmp_path):
    a, b, b2, c, other = family(tmp_path)
    inject(db, c)                                   # the child first
    assert parents(db, c) == [{"text": b, "path": None, "how": None}]
    assert db.files.find_one({"path": c})["lineage"]["pending"] == ["b.h5"]
    inject(db, b)                                   # then its parent
    assert parents(db, c) == [{"text": b, "path": b, "how": "path"}]
    assert db.files.find_one({"path": c})["lineage"]["pending"] == []


def test_a_bare_file_name_resolves_within_the_same_dataset_and_production(db, tmp_path):
    d = tmp_path / "prod"
    d.mkdir()
    a = write(d / "a.h5", ["/raw/ds1/x.root"])            # the dataset comes from the inputs' directory
    moved = write(d / "child.h5", ["staged/ds1/a.h5"])
    other_ds = write(d / "child2.h5", ["ds2/a.h5"])
    inject(db, d)
    docs = {x["path"]: x for x in db.files.find({})}
    assert docs[moved]["dataset"] == docs[a]["dataset"] != docs[other_ds]["dataset"]
    assert parents(db, moved) == [{"text": "staged/ds1/a.h5", "path": a, "how": "name"}]
    assert parents(db, other_ds) == [{"text": "ds2/a.h5", "path": None, "how": None}]


def test_cycles_are_reported_never_followed(db_url, db, tmp_path):
    d = tmp_path / "loop"
    d.mkdir()
    x, y, z = (str(d / n) for n in ("x.h5", "y.h5", "z.h5"))
    write(x, [z])
    write(y, [x])
    write(z, [y])                                  # x -> y -> z -> x
    inject(db, d)
    down = lineage.descendants(db, [x])
    assert sorted(down.paths) == sorted([y, z])
    assert down.cycles == [[x, y, z, x]]
    assert lineage.find_cycles([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]) == []   # a diamond is no cycle
    r = run(db_url, "lineage", "--db", db_url, x, "--down")
    assert r.exit_code == 1 and "lineage cycle" in r.stderr


def test_retire_with_descendants_over_three_generations_then_unretire(db_url, db, tmp_path):
    a, b, b2, c, other = family(tmp_path)
    inject(db, tmp_path / "prod")
    total = 5
    r = run(db_url, "retire", "--db", db_url, a, "--reason", "bad calibration", "--with-descendants")
    assert r.exit_code == 0, r.output
    assert "would retire 4 files (3 of them descendants)" in r.stdout
    assert db.files.count_documents({"retired": {"$exists": True}}) == 0          # a dry run
    r = run(db_url, "retire", "--db", db_url, a, "--reason", "bad calibration", "--with-descendants", "--yes")
    assert r.exit_code == 0 and "retired 4 of 4 files" in r.stdout, r.output
    mark = db.files.find_one({"path": c})["retired"]
    assert mark["reason"] == "bad calibration" and "@" in mark["by"] and mark["at"] is not None

    # hidden by default: queries, counts, facets, exports
    assert queries.count(db, queries.Filter()) == 1
    assert [r["path"] for r in queries.page(db, queries.Filter()).rows] == [other]
    assert sum(v["count"] for v in queries.facets(db, queries.Filter(), ["status"])["status"]) == 1
    r = run(db_url, "query", "--db", db_url, "--format", "paths")
    assert listed(r.stdout) == [other]
    r = run(db_url, "query", "--db", db_url, "--format", "paths", "--include-retired")
    assert listed(r.stdout) == sorted([a, b, b2, c, other])
    assert queries.count(db, queries.Filter(include_retired=True)) == total
    facets = queries.facets(db, queries.Filter(model=["full_chain"]), ["status"])["status"]
    assert sum(v["count"] for v in facets) == 1

    r = run(db_url, "unretire", "--db", db_url, b)
    assert r.exit_code == 0 and "unretired 1 of 1 files" in r.stdout, r.output
    assert sorted(d["path"] for d in db.files.find({"retired": {"$exists": False}})) == sorted([b, other])
    assert retire.unretire(db, queries.Filter(include_retired=True).query()).changed == 3
    assert queries.count(db, queries.Filter()) == total


def test_retire_needs_a_reason_and_a_selection(db_url, db, tmp_path):
    family(tmp_path)
    inject(db, tmp_path / "prod")
    r = run(db_url, "retire", "--db", db_url, "--reason", "x")
    assert r.exit_code == 2 and "say which files" in r.stderr
    r = run(db_url, "retire", "--db", db_url, "--model", "full_chain")
    assert r.exit_code == 2


def test_lineage_filter_options_and_formats(db_url, db, tmp_path):
    a, b, b2, c, other = family(tmp_path)
    inject(db, tmp_path / "prod")
    r = run(db_url, "query", "--db", db_url, "--format", "paths", "--derived-from", a)
    assert listed(r.stdout) == sorted([b, b2, c])
    r = run(db_url, "query", "--db", db_url, "--format", "paths", "--parent-of", c)
    assert listed(r.stdout) == [b]
    r = run(db_url, "lineage", "--db", db_url, c, "--format", "json")
    out = json.loads(r.stdout)
    assert r.exit_code == 0 and sorted(f["path"] for f in out["files"]) == sorted([a, b])
    assert {(e["parent"], e["child"]) for e in out["edges"]} == {(a, b), (b, c)}
    assert out["unresolved"] == {a: ["/raw/run1.root"]}
    r = run(db_url, "lineage", "--db", db_url, a, "--down")
    assert r.stdout.splitlines() == [a, f"  {b}", f"    {c}", f"  {b2}"]
    r = run(db_url, "lineage", "--db", db_url, a, "--down", "--format", "dot")
    assert f'"{a}" -> "{b}";' in r.stdout and r.stdout.startswith("digraph lineage {")


def archived(db):
    return sorted(d["path"] for d in db.files_archive.find({}, {"path": 1}))


def catalog_paths(db):
    return sorted(d["path"] for d in db.files.find({}, {"path": 1}))


def test_lineage_options_on_verify(db_url, db, tmp_path):
    a, b, b2, c, other = family(tmp_path)
    inject(db, tmp_path / "prod")
    import os
    os.remove(c)
    os.remove(other)                              # gone too, but not derived from a
    r = run(db_url, "verify", "--db", db_url, "--derived-from", a, "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 1, r.output
    assert (out["checked"], out["missing"], out["ok"]) == (3, 1, 2)    # b, b2, c
    status = {d["path"]: d["status"] for d in db.files.find({}, {"path": 1, "status": 1})}
    assert status == {a: "ok", b: "ok", b2: "ok", c: "missing", other: "ok"}
    r = run(db_url, "verify", "--db", db_url, "--parent-of", c, "--json")
    out = json.loads(r.stdout)
    assert r.exit_code == 0 and (out["checked"], out["ok"]) == (1, 1), r.output     # b alone
    r = run(db_url, "verify", "--db", db_url, "--parent-of", other, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["checked"] == 0                  # no parent in the catalog


def test_lineage_options_on_prune_and_restore_files(db_url, db, tmp_path):
    a, b, b2, c, other = family(tmp_path)          # a -> b -> c, a -> b2; other unrelated
    inject(db, tmp_path / "prod")
    r = run(db_url, "retire", "--db", db_url, a, "--reason", "bad", "--with-descendants", "--yes")
    assert r.exit_code == 0, r.output
    with_other = run(db_url, "retire", "--db", db_url, other, "--reason", "bad", "--yes")
    assert with_other.exit_code == 0, with_other.output

    r = run(db_url, "prune", "--db", db_url, "--retired", "--derived-from", b, "--json")   # a dry run
    assert r.exit_code == 0 and json.loads(r.stdout)["paths"] == [c] and archived(db) == []
    r = run(db_url, "prune", "--db", db_url, "--retired", "--derived-from", b, "--yes")
    assert r.exit_code == 0 and archived(db) == [c], r.output
    r = run(db_url, "prune", "--db", db_url, "--retired", "--parent-of", b, "--yes")
    assert r.exit_code == 0 and archived(db) == sorted([a, c]), r.output
    # a is archived now: its descendants in the catalog are b and b2 (c is archived already)
    r = run(db_url, "prune", "--db", db_url, "--retired", "--derived-from", a, "--yes")
    assert r.exit_code == 0 and archived(db) == sorted([a, b, b2, c]), r.output
    assert catalog_paths(db) == [other]

    # restore-files: the archived documents the lineage (through the archive) selects
    r = run(db_url, "restore-files", "--db", db_url, "--derived-from", b, "--dry-run", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["paths"] == [c], r.output
    r = run(db_url, "restore-files", "--db", db_url, "--derived-from", b)
    assert r.exit_code == 0 and catalog_paths(db) == sorted([c, other]), r.output
    r = run(db_url, "restore-files", "--db", db_url, "--parent-of", c)        # c is back; its parent b is archived
    assert r.exit_code == 0 and catalog_paths(db) == sorted([b, c, other]), r.output
    r = run(db_url, "restore-files", "--db", db_url, "--derived-from", a)     # b2 (b and c are back already)
    assert r.exit_code == 0 and catalog_paths(db) == sorted([b, b2, c, other]), r.output
    assert archived(db) == [a]
    r = run(db_url, "restore-files", "--db", db_url, "--derived-from", other)  # nothing derived from it
    assert r.exit_code == 0 and archived(db) == [a] and "restored 0 of 0" in r.stdout, r.output


def test_bounded_walks_and_the_graph_of_a_file_with_many_children(db, tmp_path):
    d = tmp_path / "wide"
    d.mkdir()
    a = write(d / 'a "quoted".h5', ["/raw/run1.root"])
    kids = sorted(write(d / f"k{i}.h5", [a]) for i in range(6))
    inject(db, d)
    full = lineage.descendants(db, [a])
    assert sorted(full.paths) == kids and not full.truncated
    assert not lineage.descendants(db, [a], limit=6).truncated          # exactly all of them
    some = lineage.descendants(db, [a], limit=4)
    assert some.truncated and len(some.paths) == 4 and set(some.paths) < set(kids)
    assert {e[1] for e in some.edges} == set(some.paths)               # no edge to a file left out
    g = lineage.graph(db, a, max_nodes=3)
    assert g.capped and g.nodes[0] == a and len(g.nodes) == 3 and g.unresolved == []
    assert '"' + a.replace('"', '\\"') + '" [label="a \\"quoted\\".h5"' in g.dot      # DOT-quoted
    g = lineage.graph(db, a)
    assert not g.capped and sorted(g.nodes) == sorted([a, *kids])
    assert g.edges == sorted((a, k) for k in kids) and g.unresolved == [("/raw/run1.root", a)]


def prod_job_tree(tmp_path):
    """A spine-prod run directory by hand (the layout of spine-prod's submitter): the job's
    outputs ``tasks/chunk_000/task_K/output/<input_stem>_<suffix>.h5`` whose cfg names no
    input, task lists ``task_K/inputs.txt``, and the job's ``--source-list`` beside
    ``job_metadata.json``; the parents are HDF5 files of an earlier stage."""
    up = tmp_path / "stage1"
    up.mkdir()
    a, b, c = (write(up / f"{n}.h5", [f"/raw/{n}.root"]) for n in ("a", "b", "c"))
    run = tmp_path / "runs" / "20250101_000000_spine_icarus_ana_cfg"
    run.mkdir(parents=True)
    (run / "job_metadata.json").write_text(json.dumps({
        "spine_prod_version": "1.2.0", "config": "infer/icarus/ana_cfg.cfg", "output_suffix": "ana",
        "command": "./submit.py --config infer/icarus/ana_cfg.cfg --source-list icarus_files.txt"}))
    (run / "icarus_files.txt").write_text(f"{a}\n{b}\n\n# a comment\n{c}\n")
    task1, task2, task3 = (run / "tasks" / "chunk_000" / f"task_{k}" / "output" for k in (1, 2, 3))
    for t in (task1, task2, task3):
        t.mkdir(parents=True)
    (task1.parent / "inputs.txt").write_text(f"{a}\n{b}\n")
    (task3.parent / "inputs.txt").write_text(f"{c}\n")
    out = {
        "stem": write(task1 / "a_ana.h5", []),        # task list, matched by stem -> a
        "task": write(task1 / "merged_ana.h5", []),   # task list, no stem matches -> a and b
        "source": write(task2 / "b_ana.h5", []),      # no task list: the job's source list -> b
        "nothing": write(task2 / "zzz.h5", []),       # no suffix to strip, no task list: none
        "cfg": write(task3 / "c_ana.h5", ["/raw/from_cfg.root"]),   # the cfg wins
    }
    side = write(task2 / "c_ana.h5", [])              # the sidecar's parents win over the job's
    (task2 / "c_ana.h5.json").write_text(json.dumps({"parents": [{"file_name": "c.h5"}]}))
    out["sidecar"] = side
    return a, b, c, out


def test_spine_prod_task_lists_and_source_list_are_the_third_source_of_inputs(db, tmp_path):
    a, b, c, out = prod_job_tree(tmp_path)
    inject(db, tmp_path)
    docs = {d["path"]: d for d in db.files.find({})}
    got = {k: (docs[p]["inputs"], docs[p]["provenance"].get("inputs")) for k, p in out.items()}
    assert got == {"stem": ([a], "job"), "task": ([a, b], "job"), "source": ([b], "job"),
                   "nothing": ([], None), "cfg": (["/raw/from_cfg.root"], "cfg"),
                   "sidecar": (["c.h5"], "sidecar")}
    assert docs[a]["provenance"]["inputs"] == "cfg"
    # and the lineage follows: by path for the job's lists, by name for the sidecar's
    assert parents(db, out["stem"]) == [{"text": a, "path": a, "how": "path"}]
    assert parents(db, out["source"]) == [{"text": b, "path": b, "how": "path"}]
    assert sorted(lineage.descendants(db, [a]).paths) == sorted([out["stem"], out["task"]])
    assert docs[out["task"]]["inputs_count"] == 2 and docs[out["nothing"]]["inputs_count"] == 0
