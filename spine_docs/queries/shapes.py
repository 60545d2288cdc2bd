"""Every query shape the CLI and the explorer send, enumerated from the builders themselves,
and the plan each gets from schema.json's indexes (:mod:`spine_docs.plans`).

:func:`query_shapes` walks the code's own vocabularies (every sort choice, every ``Filter``
field, every facet, every pipeline builder) rather than a hand-written copy, so a new filter
option, sort or facet without an index makes ``tests/test_query_plans.py`` fail. A shape that
may scan is listed in :data:`ALLOWED` with its reason. ``spine-docs doctor --explain`` runs
the same shapes on a live server.

``python -m spine_docs.queries.shapes`` prints the table kept in ``docs/query-plans.md``.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Mapping, Sequence

from spine_docs import plans, schema, supersede

from .analytics import histogram_pipeline, histogram_stats_pipeline, run_coverage_pipeline, timeline_pipeline
from .copies import REPLICA_KEYS, replicas_pipeline
from .counts import count_queries, facets_pipelines, lifecycle_pipelines, retired_pipeline
from .dictionary import attribute_dictionary_pipeline, attribute_keys_pipeline
from .filters import FACET_FIELDS, AttrFilter, Filter
from .pages import SORT_FIELDS, format_sort, page_query, sort_spec

#: one sample value per ``Filter`` field: a new field without a sample fails the plan test
SAMPLES: dict[str, Any] = {
    **{f: ["x"] for f in FACET_FIELDS}, "status": ["error"],
    "version_min": "0.5", "version_max": "0.9",
    "run_min": 100, "run_max": 200, "subrun_min": 1, "subrun_max": 5,
    "events_min": 10, "events_max": 1000,
    "mtime_from": date(2024, 1, 1), "mtime_to": date(2024, 2, 1),
    "path_contains": "chunk_007", "path_regex": "^/data/prod/",
    "attr_filters": [AttrFilter(key="energy", op="gt", value=1.5)],
    "where": {"num_events": {"$gt": 5}},
    "include_retired": True,
    "latest_only": True,
    "as_of": "2026-11-01",
}

#: shapes that may read every matching document, and why (at most a few)
ALLOWED: dict[str, str] = {
    "filter: subrun_min": "a subrun range alone: subruns mean something within a run or a "
                          "dataset, whose indexes serve the combined filter",
    "filter: subrun_max": "a subrun range alone (see subrun_min)",
    "histogram stats: size": "a histogram's min/max/total read the field of every matching "
                             "file (the explorer shows it for the filtered set, cached)",
    "run coverage": "coverage reads the run range of every matching file (the explorer shows "
                    "it for the filtered set, cached)",
    "replica members by fingerprint": "the copies of at most `limit` contents, found by the "
                                      "key's index and sorted in memory",
    "replica members by checksum": "the copies of at most `limit` contents (see fingerprint)",
    "filter: include_retired": "alone it selects nothing: queries.count answers with the "
                               "collection's metadata count and sends no query",
    "attribute dictionary": "the full dictionary reads every matching file's attributes: "
                            "asked for explicitly (`spine-docs attrs`, the explorer's \"all "
                            "matching files\"); the explorer's default reads the newest 10,000 "
                            "by the mtime index",
}


def pipeline_shape(name: str, pipeline: Sequence[Mapping[str, Any]], source: str) -> plans.Shape:
    """The part of a pipeline the query planner sees: a leading ``$match`` and the ``$sort``
    right after it (or a leading ``$sort``)."""
    query: Mapping[str, Any] = {}
    stages = list(pipeline)
    if stages and "$match" in stages[0]:
        query = stages.pop(0)["$match"]
    sort: tuple = ()
    if stages and "$sort" in stages[0]:
        sort = tuple(stages[0]["$sort"].items())
    return plans.Shape(name, query, sort, source, pipeline=tuple(pipeline))


def query_shapes() -> list[plans.Shape]:
    """Every shape, named for what sends it."""
    S = plans.Shape
    shapes: list[plans.Shape] = []
    for name in SORT_FIELDS:
        for d in (1, -1):
            label = format_sort((name, d))
            q, spec = page_query(None, (name, d))
            shapes.append(S(f"page sorted {label}", q, tuple(spec), "queries.page"))
            q, spec = page_query(None, (name, d), after=(1, "x"))
            shapes.append(S(f"next page sorted {label}", q, tuple(spec), "queries.page"))
    for field in Filter.model_fields:
        if field == "as_of":  # spine_docs.asof: the files first seen by then, first-seen order
            shapes.append(S("filter: as_of", {"ingest.first_seen": {"$lte": Filter(as_of=SAMPLES[field]).as_of}},
                            (("ingest.first_seen", 1), ("_id", 1)), "asof.documents"))
            continue
        flt = Filter(**{field: SAMPLES[field]})
        sent = count_queries(flt) or [flt.query()]  # (nothing sent: the metadata count)
        for i, q in enumerate(sent):
            more = f" ({i + 1} of {len(sent)})" if i else ""
            shapes.append(S(f"filter: {field}{more}", q, (), "queries.count"))
        q, spec = page_query(flt)
        shapes.append(S(f"first page, filter: {field}", q, tuple(spec), "queries.page"))
    for f in FACET_FIELDS:
        (_, pipe), = facets_pipelines(Filter(), [f])
        shapes.append(pipeline_shape(f"facet {f}", pipe, "queries.facets"))
        shapes.append(pipeline_shape(f"facet {f}: the retired files' counts, subtracted",
                                     retired_pipeline(f), "queries.facets"))
        other = "model" if f != "model" else "dataset"
        (_, pipe), = facets_pipelines(Filter(**{other: SAMPLES[other], f: SAMPLES[f]}), [f])
        shapes.append(pipeline_shape(f"facet {f}, {other} selected", pipe, "queries.facets"))
    shapes += [
        S("file by _id", {"_id": "s3df:/data/f.h5"}, (), "queries.get_file"),
        S("file by path", {"path": "/data/f.h5"}, (("site", 1),), "queries.get_file"),
        S("file by path at a site", {"path": "/data/f.h5", "site": "s3df"}, (("site", 1),),
          "queries.get_file"),
        S("export sorted by _id", {}, tuple(sort_spec("_id")), "queries.export"),
        S("ingest: a site's known files", {"site": "s3df"}, (), "ingest.existing_index"),
        S("retired files", {"retired": {"$exists": True}}, (), "queries.count"),
        S("supersede: a group's candidates", supersede.group_query((("/data/in.root",), "cfg.yaml")), (),
          "supersede.mark"),
        S("supersede: the candidates of a batch of groups",
          supersede.groups_query([(("/data/in.root",), "cfg.yaml"), (("/data/in2.root",), "cfg.yaml")]), (),
          "supersede.mark"),
        S("verify: a site's files", {"site": "s3df", "retired": {"$exists": False}}, (), "verify.known_files"),
        pipeline_shape("timeline", timeline_pipeline(None, "month", "dataset"), "queries.timeline"),
        pipeline_shape("histogram stats: size", histogram_stats_pipeline(None, "size"),
                       "queries.histogram"),
        pipeline_shape("histogram bins: size", histogram_pipeline(None, "size", 0, 1),
                       "queries.histogram"),
        pipeline_shape("run coverage", run_coverage_pipeline(None), "queries.run_coverage"),
        pipeline_shape("run coverage of a dataset", run_coverage_pipeline(None, "bnb"),
                       "queries.run_coverage"),
        pipeline_shape("attribute keys, newest files", attribute_keys_pipeline(None, 5000),
                       "queries.attribute_keys"),
        pipeline_shape("attribute dictionary", attribute_dictionary_pipeline(None),
                       "queries.attribute_dictionary"),
        pipeline_shape("attribute dictionary, newest files", attribute_dictionary_pipeline(None, max_docs=5000),
                       "queries.attribute_dictionary"),
    ]
    for kind, pipe in lifecycle_pipelines():  # doctor's lifecycle section
        shapes.append(pipeline_shape(f"lifecycle counts by site: {kind}", pipe, "queries.lifecycle_counts"))
    for key, field in (("input", "inputs"), ("name", "name"), ("run", "run")):  # setdiff.compare_sets
        sides = Filter(dataset=["x"], prod_version=["v2"])
        shapes.append(S(f"set diff side matched by {key}", sides.to_mongo(), ((field, 1), ("_id", 1)),
                        "setdiff.compare_sets"))
    for key, field in REPLICA_KEYS.items():
        shapes.append(pipeline_shape(f"replicas by {key}", replicas_pipeline(None, key=key),
                                     "queries.replicas"))
        shapes.append(S(f"replica members by {key}", {field: {"$in": ["a", "b"]}},
                        (("site", 1), ("path", 1)), "queries.replicas"))
    return shapes


def lifecycle_shapes() -> list[plans.Shape]:
    """What verify, prune, restore, retire/unretire, lineage, supersede and history send to
    ``files`` on a server, named ``<module>: ...`` (built with the modules' own query
    builders where they have one). ``tests/test_wire_lifecycle.py`` checks that what they
    send through pymongo is index-served too."""
    from datetime import datetime, timedelta, timezone

    from spine_docs import prune, verify

    from .filters import and_queries

    S = plans.Shape
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    age = timedelta(days=30)
    ids = {"$in": ["s3df:/data/a.h5", "s3df:/data/b.h5"]}
    paths = {"$in": ["/data/a.h5", "/data/b.h5"]}
    missing = prune.selection(missing_for=age, now=now)
    either = prune.selection(missing_for=age, retired=True, now=now)
    return [
        S("verify: a site's files under a filter", verify.selection("s3df", Filter(dataset=["x"])), (),
          "verify.known_files"),
        S("verify: record a verdict", {"_id": "s3df:/data/a.h5", "status": "ok"}, (), "verify.verdict_update"),
        S("prune: missing for an age", missing, (), "prune.selection"),
        S("prune: retired", prune.selection(retired=True, now=now), (), "prune.selection"),
        S("prune: missing for an age or retired", either, (), "prune.selection"),
        S("prune: missing for an age at a site", prune.selection(Filter(site=["s3df"]), missing_for=age, now=now),
          (), "prune.selection"),
        S("prune: a batch, guarded by the selection", and_queries({"_id": ids}, either), (), "prune.prune"),
        S("prune: which of a batch stayed", {"_id": ids}, (), "prune.prune"),
        S("restore: is it restored already", {"_id": "s3df:/data/a.h5"}, (), "prune.restore"),
        S("retire: the files a filter selects", and_queries(Filter(model=["m"]).query(), {"retired": {"$exists": False}}),
          (), "retire.retire"),
        S("retire: a PATH (its _ids, then the filter)", and_queries(Filter().query(), {"_id": ids},
                                                                    {"retired": {"$exists": False}}),
          (), "cli._target, retire.retire"),
        S("retire PATH: the files at the path", {"$or": [{"_id": "/data/a.h5"}, {"path": "/data/a.h5"}]}, (),
          "cli._target"),
        S("retire: descendants still in use", {"_id": ids, "retired": {"$exists": False}}, (), "retire._in_use"),
        S("retire: mark a batch", {"_id": ids, "retired": {"$exists": False}}, (), "retire.retire"),
        S("unretire: the retired files a filter selects",
          and_queries(Filter(model=["m"], include_retired=True).query(), {"retired": {"$exists": True}}), (),
          "retire.unretire"),
        S("lineage: children of files (walk down, --derived-from)", {"lineage.parents.path": paths}, (),
          "lineage.descendants"),
        S("lineage: files at paths (walk up, --parent-of, the walk's documents)", {"path": paths}, (),
          "lineage.ancestors"),
        S("lineage: --derived-from under a filter", and_queries(Filter(dataset=["x"]).query(), {"path": paths}), (),
          "cli._lifecycle_options"),
        S("lineage: just-indexed files at a site", {"_id": ids}, (), "lineage.link"),
        S("lineage: just-indexed files at any site", {"path": paths}, (), "lineage.link"),
        S("lineage: parents by normalised path", {"path": paths}, (), "lineage._Resolver"),
        S("lineage: parents by file name", {"name": {"$in": ["a.h5", "b.h5"]}}, (), "lineage._Resolver"),
        S("lineage: children waiting for a file name", {"lineage.pending": {"$in": ["a.h5", "b.h5"]}}, (),
          "lineage._waiting"),
        S("lineage: record a file's parents", {"_id": "s3df:/data/a.h5"}, (), "lineage.link"),
        S("supersede: just-indexed files at a site", {"path": paths, "site": "s3df"}, (), "supersede.mark"),
        S("supersede: just-indexed files at any site", {"path": paths}, (), "supersede.mark"),
        S("history: the documents a batch replaces", {"_id": ids}, (), "history.read_before"),
    ]


#: shapes on ``files_archive`` that may read every archived document, and why
ARCHIVE_ALLOWED: dict[str, str] = {
    "restore: every archived document (--all)": "--all moves every archived document back: it reads them all",
    "restore: archived documents a filter selects": "files_archive is cold (what prune moved out) and keeps "
                                                    "only the restore-by-path and by-date indexes; a restore "
                                                    "by other fields reads it whole (rare, admin-run)",
}


def archive_shapes() -> list[plans.Shape]:
    """What ``prune`` and ``restore-files`` send to ``files_archive``, named ``restore: ...``."""
    from datetime import datetime, timezone

    from spine_docs import prune

    S = plans.Shape
    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    ids = {"$in": ["s3df:/data/a.h5", "s3df:/data/b.h5"]}
    return [
        S("restore: what a prune run archived (--run)", prune.archive_query(run_id="r1", at=at), (),
          "prune.archive_query"),
        S("restore: archived under a path (--path-contains)", prune.archive_query(Filter(path_contains="/bnb/")), (),
          "prune.archive_query"),
        S("restore: every archived document (--all)", prune.archive_query(Filter()), (), "prune.archive_query"),
        S("restore: archived documents a filter selects", prune.archive_query(Filter(dataset=["x"])), (),
          "prune.archive_query"),
        S("restore: a batch", {"_id": ids}, (), "prune.restore"),
        S("prune: a copy taken back", {"_id": ids, "archived.run_id": "r1"}, (), "prune.prune"),
    ]


def version_shapes() -> list[plans.Shape]:
    """Every shape sent to ``file_versions`` (:mod:`spine_docs.history`), named ``history: ...``."""
    S = plans.Shape
    fid = "s3df:/data/f.h5"
    return [
        S("history: versions of a batch's files", {"file_id": {"$in": [fid, "s3df:/g.h5"]}}, (),
          "history.read_before"),
        S("history: a file's versions", {"file_id": fid}, (("version", 1),), "history.versions"),
        S("history: versions from N up", {"file_id": fid, "version": {"$gte": 2}}, (("version", 1),),
          "history.document_version"),
        S("history: newest version", {"file_id": fid}, (("version", -1),), "history.document_version"),
        S("history: ring slot", {"_id": fid + "#0"}, (), "history.version_ops"),
        S("history: mark pruned", {"file_id": fid, "version": {"$lte": 3}, "kind": {"$ne": "pruned"}},
          (), "history.version_ops"),
    ]


def verdicts(schema_doc: Mapping[str, Any] | None = None) -> list[plans.Verdict]:
    """The plan of every shape under ``schema.json`` (the shipped one by default)."""
    schema_doc = schema_doc if schema_doc is not None else schema.load_schema()
    out = plans.check(query_shapes(), plans.indexes_of(schema_doc), ALLOWED)
    if "file_versions" in schema_doc["collections"]:
        out += plans.check(version_shapes(), plans.indexes_of(schema_doc, "file_versions"), ALLOWED)
    return out


def lifecycle_verdicts(schema_doc: Mapping[str, Any] | None = None) -> list[plans.Verdict]:
    """The plan of every :func:`lifecycle_shapes` shape (none is allowed to scan)."""
    schema_doc = schema_doc if schema_doc is not None else schema.load_schema()
    return plans.check(lifecycle_shapes(), plans.indexes_of(schema_doc))


def archive_verdicts(schema_doc: Mapping[str, Any] | None = None) -> list[plans.Verdict]:
    """The plan of every ``files_archive`` shape (:data:`ARCHIVE_ALLOWED` may scan)."""
    schema_doc = schema_doc if schema_doc is not None else schema.load_schema()
    return plans.check(archive_shapes(), plans.indexes_of(schema_doc, "files_archive"), ARCHIVE_ALLOWED)


def doctor_shapes() -> list[plans.Shape]:
    """What ``doctor`` checks (and explains on a server) on ``files``: every query shape of
    the explorer and the CLI, then every lifecycle shape."""
    return query_shapes() + lifecycle_shapes()


def doctor_verdicts(schema_doc: Mapping[str, Any] | None = None) -> list[plans.Verdict]:
    """The plan of every :func:`doctor_shapes` shape under ``schema_doc``'s ``files`` indexes."""
    return verdicts(schema_doc) + lifecycle_verdicts(schema_doc)


def markdown() -> str:
    """docs/query-plans.md: what each query shape uses, computed from schema.json."""
    head = ("# Query plans\n\n"
            "Generated by `python -m spine_docs.queries.shapes > docs/query-plans.md` from "
            "schema.json and the query builders (`spine_docs/queries/shapes.py`); "
            "`tests/test_query_plans.py` fails when it is out of date or when a shape "
            "scans without a reason. The plans are computed with MongoDB's planner rules "
            "(`spine_docs/plans.py`), not measured: `spine-docs doctor --explain` asks a "
            "live server.\n\n"
            "IXSCAN: an index bounds the scan and gives the order; IXSCAN+SORT: an index "
            "bounds it, then a blocking in-memory sort; COLLSCAN: every document is read.\n\n")
    lifecycle = ("\n\n## Lifecycle and lineage\n\nWhat `verify`, `prune`, `restore-files`, "
                 "`retire`/`unretire`, lineage (`link` after each inject, `lineage`, `--derived-from`, "
                 "`--parent-of`), supersede and history send to `files` on a server "
                 "(`spine_docs/queries/shapes.py: lifecycle_shapes`; what they send through pymongo "
                 "is checked too: `tests/test_wire_lifecycle.py`). None may scan.\n\n")
    archive = ("\n\n## files_archive\n\nWhat `prune` and `restore-files` send to the archive "
               "(its own indexes: by `archived.at` and by `{path, site}`).\n\n")
    return (head + plans.table(verdicts()) + lifecycle + plans.table(lifecycle_verdicts()) + archive
            + plans.table(archive_verdicts()))


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.stdout.write(markdown())
