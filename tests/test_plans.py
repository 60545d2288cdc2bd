"""The static plan checker's rules, on hand-made indexes and shapes (expected plans written
from MongoDB's documented planner behaviour, not from the checker)."""

from __future__ import annotations

import re

import pytest

from spine_docs.plans import Index, Shape, check, choose, table

IX = [
    Index(key=(("_id", 1),), name="_id_"),
    Index(key=(("path", 1), ("site", 1)), name="path_site"),
    Index(key=(("mtime", -1), ("_id", -1)), name="mtime_id"),
    Index(key=(("dataset", 1), ("run", 1)), name="dataset_run"),
    Index(key=(("model", 1), ("mtime", -1), ("_id", -1)), name="model_mtime_id"),
    Index(key=(("checksum.sha256", 1),), name="sha",
          partial={"checksum.sha256": {"$exists": True}}),
    Index(key=(("attrs.$**", 1),), name="attrs_wild"),
]


def plan(query, sort=()):
    v = choose(Shape("s", query, tuple(sort)), IX)
    return v.plan, v.index


@pytest.mark.parametrize("query,sort,expected", [
    # equality on the leading key; on a non-leading key only
    ({"path": "/a"}, (), ("IXSCAN", "path_site")),
    ({"site": "s"}, (), ("COLLSCAN", None)),
    # a sort the index provides, forwards or backwards, with the _id tie-breaker
    ({}, [("mtime", -1), ("_id", -1)], ("IXSCAN", "mtime_id")),
    ({}, [("mtime", 1), ("_id", 1)], ("IXSCAN", "mtime_id")),
    # mixed directions the index cannot walk
    ({}, [("mtime", -1), ("_id", 1)], ("COLLSCAN", None)),
    # equality then sort (ESR): the compound index serves both
    ({"model": "m"}, [("mtime", -1), ("_id", -1)], ("IXSCAN", "model_mtime_id")),
    # a small $in before the sort fields is merged by the server
    ({"model": {"$in": ["a", "b"]}}, [("mtime", -1), ("_id", -1)], ("IXSCAN", "model_mtime_id")),
    ({"model": {"$in": [str(i) for i in range(201)]}}, [("mtime", -1), ("_id", -1)],
     ("IXSCAN", "mtime_id")),
    # a range on the leading key with a sort on another field: bounded, then sorted in memory
    ({"dataset": {"$gte": "a"}}, [("path", 1)], ("IXSCAN", "path_site")),
    ({"dataset": "d", "run": {"$gte": 5}}, [("size", 1)], ("IXSCAN+SORT", "dataset_run")),
    # the sort field fixed by equality needs no index order
    ({"dataset": "d"}, [("dataset", 1)], ("IXSCAN", "dataset_run")),
    # partial index: only when the query implies it
    ({"checksum.sha256": "abc"}, (), ("IXSCAN", "sha")),
    ({"checksum.sha256": {"$exists": False}}, (), ("COLLSCAN", None)),
    # wildcard: one attribute path, no sort
    ({"attrs.energy": {"$gt": 1}}, (), ("IXSCAN", "attrs_wild")),
    ({"attrs.energy": {"$gt": 1}}, [("size", 1)], ("IXSCAN+SORT", "attrs_wild")),
    # no bounds from $ne / $not / $expr
    ({"path": {"$ne": "/a"}}, (), ("COLLSCAN", None)),
    ({"$expr": {"$gt": ["$size", 1]}}, (), ("COLLSCAN", None)),
    # regex: anchored is a range, unanchored scans the whole index
    ({"path": {"$regex": "^/data/"}}, (), ("IXSCAN", "path_site")),
    ({"path": {"$regex": "abc"}}, (), ("IXSCAN", "path_site")),
    ({"path": re.compile("abc")}, (), ("IXSCAN", "path_site")),
    # a rooted $or needs an index per branch
    ({"$or": [{"path": "/a"}, {"model": "m"}]}, (), ("IXSCAN", "path_site | model_mtime_id")),
    ({"$or": [{"path": "/a"}, {"size": 1}]}, (), ("COLLSCAN", None)),
    # $or inside $and: a residual filter on the index the rest selects
    ({"$and": [{"model": "m"}, {"$or": [{"size": 1}, {"run": 2}]}]}, (), ("IXSCAN", "model_mtime_id")),
])
def test_planner_rules(query, sort, expected):
    assert plan(query, sort) == expected


def test_unanchored_regex_is_flagged_as_a_whole_index_scan():
    v = choose(Shape("contains", {"path": {"$regex": "abc"}}), IX)
    assert "scans the whole path_site index" in v.note


def test_allow_list_and_table():
    shapes = [Shape("by path", {"path": "/a"}), Shape("by size", {"size": 3}),
              Shape("by site", {"site": "s"})]
    verdicts = check(shapes, IX, allow={"by size": "sizes are only summed, never filtered alone"})
    assert [(v.shape.name, v.plan, v.ok) for v in verdicts] == [
        ("by path", "IXSCAN", True), ("by size", "COLLSCAN", True), ("by site", "COLLSCAN", False)]
    text = table(verdicts)
    assert "| by size | COLLSCAN |  |  | allowed: sizes are only summed, never filtered alone |" in text
