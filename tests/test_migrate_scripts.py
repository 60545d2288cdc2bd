"""Migration files (discover, checksum, scaffold) and reconcile/ops (by spec, plannable)."""

from __future__ import annotations

import json

import pytest

from spine_docs import schema, store
from spine_docs.migrate import ops, reconcile, scripts

from test_migrate_helpers import HEAD, NEXT, SHIPPED, migrations_copy


def test_shipped_migrations():
    migs = scripts.discover()
    assert [m.name for m in migs] == SHIPPED and [m.version for m in migs] == list(range(1, HEAD + 1))
    assert all(m.description and len(m.checksum) == 64 for m in migs)
    assert all(m.reversible for m in migs)


def test_discover_rejects_duplicates_and_gaps(tmp_path):
    (tmp_path / "0001_a.py").write_text('description = "a"\ndef up(db): pass\n')
    (tmp_path / "0003_c.py").write_text('description = "c"\ndef up(db): pass\n')
    (tmp_path / "README.md").write_text("ignored")
    (tmp_path / "__init__.py").write_text("")
    with pytest.raises(scripts.MigrationScriptError, match="without gaps"):
        scripts.discover(tmp_path)
    (tmp_path / "0002_b.py").write_text('description = "b"\ndef up(db): pass\n')
    (tmp_path / "0002_bb.py").write_text('description = "b"\ndef up(db): pass\n')
    with pytest.raises(scripts.MigrationScriptError, match="two migrations with version 0002"):
        scripts.discover(tmp_path)


def test_load_requires_up_and_description(tmp_path):
    (tmp_path / "0001_x.py").write_text("def up(db): pass\n")
    with pytest.raises(scripts.MigrationScriptError, match="description"):
        scripts.discover(tmp_path)
    (tmp_path / "0001_x.py").write_text("description = 'x'\n")
    with pytest.raises(scripts.MigrationScriptError, match="up"):
        scripts.discover(tmp_path)
    (tmp_path / "0001_x.py").write_text("description = 'x'\nraise ImportError('nope')\n")
    with pytest.raises(scripts.MigrationScriptError, match="cannot import"):
        scripts.discover(tmp_path)


def test_new_scaffolds_next_file_and_bumps_schema(tmp_path):
    mdir, sfile = migrations_copy(tmp_path)
    path, version = scripts.new_migration("Add run index!", mdir, schema_file=sfile)
    assert version == HEAD + 1 and path.name == f"{NEXT}_add_run_index.py"
    assert json.loads(sfile.read_text())["schema_version"] == HEAD + 1
    migs = scripts.discover(mdir)
    assert migs[-1].description == "Add run index!" and migs[-1].reversible
    db = store.connect("mongomock://")
    assert migs[-1].plan(db) == []          # the template plans and runs an empty command list
    migs[-1].up(db)
    migs[-1].down(db)


def test_ops_pending_is_idempotent_and_rewrites_changed_indexes():
    db = store.connect("mongomock://")
    cmds = [{"create": "c"}, {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1", "unique": True}]}]
    assert ops.pending(db, cmds) == cmds
    assert ops.ensure(db, cmds) == cmds
    assert ops.pending(db, cmds) == []
    db.c.drop_index("a_1")
    db.c.create_index([("a", 1)])                      # same key, not unique
    assert ops.pending(db, cmds) == [{"dropIndexes": "c", "index": "a_1"},
                                     {"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1", "unique": True}]}]
    ops.ensure(db, cmds)
    assert ops.pending(db, cmds) == []
    inv = ops.inverse(cmds)
    assert inv == [{"dropIndexes": "c", "index": {"a": 1}}, {"drop": "c"}]
    ops.ensure(db, inv)
    assert "c" not in db.list_collection_names()
    with pytest.raises(schema.SchemaError):
        ops.inverse([{"collMod": "c", "validator": {}}])


def test_reconcile_diff_kinds_and_simulation():
    sch = {"collections": {"c": {"validator": {"$jsonSchema": {"required": ["a"]}}, "validationLevel": "moderate",
                                 "validationAction": "warn",
                                 "indexes": [{"key": {"a": 1}}, {"key": {"t": 1}, "expireAfterSeconds": 60},
                                             {"key": {"b": 1}, "unique": True}]}}}
    empty = reconcile.diff(sch, {})
    assert [d.kind for d in empty] == ["missing_collection"]
    snap = reconcile.simulate({}, reconcile.commands(empty))
    assert reconcile.diff(sch, snap) == []
    state = snap["c"]
    # TTL value changed: collMod in place; unique dropped: rebuild; foreign index: reported only
    for i in state.indexes:
        if i["name"] == "t_1":
            i["expireAfterSeconds"] = 3600
        if i["name"] == "b_1":
            i.pop("unique")
    state.indexes.append({"key": {"z": 1}, "name": "z_1"})
    state.options["validationAction"] = "error"
    d = reconcile.diff(sch, snap)
    kinds = {(x.kind, x.index) for x in d}
    assert kinds == {("validator", None), ("index_options", "t_1"), ("index_options", "b_1"), ("extra_index", "z_1")}
    ttl = next(x for x in d if x.index == "t_1")
    assert ttl.commands == [{"collMod": "c", "index": {"name": "t_1", "expireAfterSeconds": 60}}]
    assert not next(x for x in d if x.kind == "extra_index").blocking
    fixed = reconcile.simulate(snap, reconcile.commands([x for x in d if x.blocking]))
    assert [x.kind for x in reconcile.diff(sch, fixed)] == ["extra_index"]


def test_reconcile_commands_apply_on_mongomock():
    db = store.connect("mongomock://")
    full = schema.load_schema()
    cmds = reconcile.commands(reconcile.diff(full, reconcile.snapshot(db)))
    for c in cmds:
        schema.execute(db, c)
    assert [d for d in reconcile.diff(full, reconcile.snapshot(db)) if d.blocking] == []
    # a TTL change applied through execute() (the shim records collMod)
    db.t.create_index([("at", 1)], expireAfterSeconds=10)
    schema.execute(db, {"collMod": "t", "index": {"name": "at_1", "expireAfterSeconds": 20}})
    assert next(i for i in db.t.list_indexes() if i["name"] == "at_1")["expireAfterSeconds"] == 20
