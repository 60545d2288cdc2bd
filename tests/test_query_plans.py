"""Every query shape the CLI and the explorer send is served by a schema.json index (or is
allow-listed with a reason), and docs/query-plans.md says so.

The shapes come from the query builders themselves (``spine_docs.queries.shapes``), so a new
sort, filter option or facet without an index fails here.
"""

from __future__ import annotations

from pathlib import Path

from spine_docs import plans, queries, schema
from spine_docs.queries import shapes

DOCS = Path(__file__).resolve().parent.parent / "docs" / "query-plans.md"


def test_every_shape_is_index_backed_or_allowed_with_a_reason():
    verdicts = shapes.verdicts()
    bad = [(v.shape.name, v.plan, v.note) for v in verdicts if not v.ok]
    assert bad == []
    assert len(shapes.ALLOWED) <= 8                      # a few reasoned entries, not a bypass
    used = {v.shape.name for v in verdicts if v.allowed}
    assert used == set(shapes.ALLOWED), "an allow-list entry that no longer applies"


def test_the_shapes_cover_every_sort_filter_and_facet():
    names = {s.name for s in shapes.query_shapes()}
    for sort in queries.SORT_FIELDS:
        assert f"page sorted {sort}" in names and f"page sorted -{sort}" in names
    for field in queries.Filter.model_fields:            # a new filter needs a SAMPLES entry
        assert f"filter: {field}" in names
    for f in queries.FACET_FIELDS:
        assert f"facet {f}" in names


def test_an_index_removed_from_the_schema_is_noticed():
    doc = schema.load_schema()
    doc["collections"]["files"]["indexes"] = [
        i for i in doc["collections"]["files"]["indexes"] if list(i["key"]) != ["size", "_id"]]
    bad = {v.shape.name for v in shapes.verdicts(doc) if not v.ok}
    assert {"page sorted size", "page sorted -size"} <= bad


def test_pages_never_sort_in_memory():
    for v in shapes.verdicts():
        if v.shape.name.startswith(("page sorted", "next page sorted")):
            assert v.plan == "IXSCAN", v


def test_docs_table_is_up_to_date():
    assert DOCS.read_text() == shapes.markdown(), \
        "run: python -m spine_docs.queries.shapes > docs/query-plans.md"


LIFECYCLE = ("verify:", "prune:", "restore:", "retire:", "retire PATH:", "unretire:", "lineage:",
             "supersede:", "history:")


def test_lifecycle_and_history_shapes_are_index_served_without_exceptions():
    """Issues 13 and 14: what verify, prune, retire, lineage, supersede and history send to
    files and file_versions needs no allow-list entry."""
    mine = [v for v in shapes.verdicts() + shapes.lifecycle_verdicts() if v.shape.name.startswith(LIFECYCLE)]
    assert len(mine) >= 30
    assert [(v.shape.name, v.plan) for v in mine if v.plan != "IXSCAN"] == []
    by_name = {v.shape.name: v.index for v in mine}
    # the index each walk is built on (written out from schema.json, not from the checker)
    assert by_name["lineage: children of files (walk down, --derived-from)"] == "lineage.parents.path_1"
    assert by_name["lineage: children waiting for a file name"] == "lineage.pending_1"
    assert by_name["lineage: parents by file name"] == "name_1__id_1"
    assert by_name["prune: retired"] == "retired_1"
    assert by_name["prune: missing for an age or retired"] == "status_1 | retired_1"
    assert by_name["history: a file's versions"] == "file_id_1_version_1"


def test_archive_shapes_scan_only_where_allowed_and_a_run_is_found_by_its_date():
    verdicts = shapes.archive_verdicts()
    assert [v.shape.name for v in verdicts if not v.ok] == []
    assert {v.shape.name for v in verdicts if v.allowed} == set(shapes.ARCHIVE_ALLOWED)
    plan = {v.shape.name: (v.plan, v.index) for v in verdicts}
    assert plan["restore: what a prune run archived (--run)"] == ("IXSCAN", "archived.at_-1")
    assert plan["restore: archived under a path (--path-contains)"] == ("IXSCAN", "path_1_site_1")
    doc = schema.load_schema()
    doc["collections"]["files_archive"]["indexes"] = [
        i for i in doc["collections"]["files_archive"]["indexes"] if list(i["key"]) != ["archived.at"]]
    gone = {v.shape.name: v.plan for v in shapes.archive_verdicts(doc)}
    assert gone["restore: what a prune run archived (--run)"] == "COLLSCAN"


def _built(db, name):
    return [plans.Index.from_spec(i) for i in schema.list_indexes(db, name)]


def test_the_indexes_migrations_build_serve_the_same_plans_as_schema_json(db, tmp_path):
    """On each backend (a server too, with SPINE_DOCS_TEST_URI): the indexes `migrate up`
    actually creates, read back with listIndexes, give every shape the plan schema.json gives."""
    from spine_docs import migrate

    assert migrate.up(db, backup_root=tmp_path / "b").ok
    doc = schema.load_schema()
    for name, group in (("files", shapes.query_shapes() + shapes.lifecycle_shapes()),
                        ("file_versions", shapes.version_shapes()),
                        ("files_archive", shapes.archive_shapes())):
        built = _built(db, name)
        assert {i.key for i in built} == {i.key for i in plans.indexes_of(doc, name)}, name
        got = [(v.shape.name, v.plan, v.index) for v in plans.check(group, built)]
        want = [(v.shape.name, v.plan, v.index) for v in plans.check(group, plans.indexes_of(doc, name))]
        assert got == want, name
