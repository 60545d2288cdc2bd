"""History and comparison (schema version 5): the ``file_versions`` collection, and two
``files`` indexes for ``spine-docs diff --left --right``.

``inject`` keeps the previous document of a file whose content changed when it re-indexes it
(see ``spine_docs/history.py``: a reverse delta or the whole previous document, chosen by
size; at most ``SPINE_DOCS_KEEP_VERSIONS`` per file). This migration creates the collection
and its unique ``{file_id: 1, version: 1}`` index, which serves every lookup (one version,
the newest, the versions from N up to the newest) and the pruning beyond the bound. No
``files`` document changes; a catalog upgraded from version 4 has no history yet: it starts
with the first re-index that changes a file.

A set diff streams both sets sorted by the key files are matched on, from index walks:
``{inputs: 1, _id: 1}`` (matched by input file: a multikey index, walked in the order of
each file's smallest input) and ``{name: 1, _id: 1}`` (matched by file name) are added.

down() drops the two indexes and the collection (and with it every kept version): version 4
has nowhere to keep them.
"""

from spine_docs.migrate import ops

description = "history: file_versions collection, {file_id, version} unique index; files {inputs, _id}, {name, _id}"

UP = [
    {"create": "file_versions"},
    {"createIndexes": "file_versions", "indexes": [
        {"key": {"file_id": 1, "version": 1}, "name": "file_id_1_version_1", "unique": True}]},
    {"createIndexes": "files", "indexes": [{"key": {"inputs": 1, "_id": 1}}, {"key": {"name": 1, "_id": 1}}]},
]
DOWN = ops.inverse(UP)


def plan(db):
    return ops.pending(db, UP)


def up(db):
    ops.ensure(db, UP)


def plan_down(db):
    return ops.pending(db, DOWN)


def down(db):
    ops.ensure(db, DOWN)
