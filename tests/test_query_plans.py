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
