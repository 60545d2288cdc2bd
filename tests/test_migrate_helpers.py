"""Shared fixtures for the migration tests: backends, legacy data, dumps to compare."""

from __future__ import annotations

import copy
import shutil
from datetime import datetime, timezone
from pathlib import Path


import pytest

from spine_docs import resources, schema


def open_backend(kind: str, tmp_path: Path, name: str = "catalog"):
    """A fresh database of the given kind: ``mongomock`` or ``embedded``."""
    from spine_docs import store

    if kind == "mongomock":
        return store.connect("mongomock://")          # a fresh in-memory database
    return store.connect(str(tmp_path / name))


def reopen(kind: str, db, tmp_path: Path, name: str = "catalog"):
    """The same catalog seen afresh (embedded: a new connection reading the files)."""
    if kind != "embedded":
        return db
    from spine_docs import store
    store.close(db)  # connect() reuses an open catalog in-process: close it to read the files
    return store.connect(str(tmp_path / name))


BACKENDS = ["mongomock", "embedded"]


@pytest.fixture(params=BACKENDS)
def kind(request):
    """The backend of a migration test (imported by the test_migrate* modules)."""
    return request.param


@pytest.fixture()
def db(kind, tmp_path):
    """A database of that backend (overrides conftest's ``db`` where imported)."""
    return open_backend(kind, tmp_path)


def writing(db):
    return schema.writing(db)


def legacy_documents(tmp_path: Path, n_extra: int = 0) -> list[dict]:
    """Documents as an older spine-docs stored them: real extracted documents of SPINE-like
    files of several versions, without ``spine_version_key`` (and one with a null key)."""
    from spine_docs import extract, samples

    d = tmp_path / "h5"
    d.mkdir(exist_ok=True)
    docs = []
    for i, version in enumerate(["0.10.2", "0.14.0", "0.17.1", "0.18.0rc1", "0.5"]):
        p = samples.write_spine_file(d / f"run_{i:03d}.h5", spine_version=version, run=i + 1, seed=i, n_events=3)
        doc = extract.extract(p, site="testsite")
        doc["ingest"] = {"first_seen": datetime(2024, 1, 2, tzinfo=timezone.utc),
                         "last_seen": datetime(2024, 1, 3, tzinfo=timezone.utc), "times_seen": 1,
                         "extractor_version": "0", "run_id": "r0", "history": []}
        docs.append(doc)
    for doc in docs[:4]:
        doc.pop("spine_version_key", None)           # indexed before the key existed
    docs[4]["spine_version_key"] = None               # an old extractor wrote null
    base = docs[0]
    for j in range(n_extra):
        extra = copy.deepcopy(base)
        extra["_id"] = f"testsite:/extra/f{j:05d}.h5"
        extra["path"] = f"/extra/f{j:05d}.h5"
        extra["spine_version"] = None if j % 7 == 0 else f"0.{j % 20}.{j % 3}"
        docs.append(extra)
    return docs


def load_legacy(db, docs: list[dict]) -> None:
    """A version-0 catalog: ``files`` and ``runs`` with data, no meta, no indexes."""
    with writing(db):
        db.files.insert_many(copy.deepcopy(docs))
        db.runs.insert_one({"_id": "r0", "started": datetime(2024, 1, 2, tzinfo=timezone.utc), "files": len(docs)})


def dump(db, out: Path, *, skip=("changelog",)) -> dict[str, object]:
    """Every collection's documents (.bson bytes) and metadata (options and indexes, parsed;
    the random uuid left out), as written by dumpfmt.dump_database."""
    from spine_docs import dumpfmt

    if out.exists():
        shutil.rmtree(out)
    dumpfmt.dump_database(db, out)
    res: dict[str, object] = {}
    for p in sorted((out / db.name).iterdir()):
        name = p.name.split(".")[0]
        if name in skip:
            continue
        if p.name.endswith(".bson"):
            res[p.name] = p.read_bytes()
        else:
            meta = dumpfmt.read_metadata(out / db.name, name)
            meta.pop("uuid", None)
            res[p.name] = meta
    return res


#: the shipped migrations' head, pinned here (test_schema checks it against schema.json):
#: bump it with every shipped migration
HEAD = 7
SHIPPED = ["0001_initial", "0002_backfill_spine_version_key", "0003_indexes_for_a_million_files",
           "0004_lifecycle_and_lineage", "0005_file_versions", "0006_superseded",
           "0007_backfill_lineage"]
#: the number of a test-only migration placed after the shipped ones
NEXT = f"{HEAD + 1:04d}"


def migrations_copy(tmp_path: Path, extra: dict[str, str] | None = None) -> tuple[Path, Path]:
    """A copy of the shipped migrations (plus ``extra`` files) and a schema.json whose
    schema_version is the new head."""
    mdir = tmp_path / "migrations"
    shutil.copytree(resources.migrations_dir(), mdir, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in (extra or {}).items():
        (mdir / name).write_text(text)
    top = max(int(p.name[:4]) for p in mdir.glob("[0-9][0-9][0-9][0-9]_*.py"))
    import json
    data = json.loads(resources.schema_file().read_text())
    data["schema_version"] = top
    sfile = tmp_path / "schema.json"
    sfile.write_text(json.dumps(data, indent=2))
    return mdir, sfile
