"""supersede.py: a file whose inputs and config name match another's with a newer production
or SPINE version marks the older ``superseded_by`` it (in either arrival order, across
sites); ``Filter(latest_only=True)`` and ``--latest-only`` hide the superseded files, and the
count of that filter alone (total minus the excluded, by their partial indexes) is exact.
Every expected value is written here by hand from the fixture."""

from __future__ import annotations

from datetime import datetime

from typer.testing import CliRunner

from spine_docs import ingest, queries, samples, schema, store, supersede
from spine_docs import spine as spine_mod
from spine_docs.cli import app
from spine_docs.queries import Filter
from spine_docs.settings import Settings

runner = CliRunner()
IN = ["/raw/run1/a.root", "/raw/run1/b.root"]


def doc(site, name, *, prod="1.0.0", spine="0.17.1", inputs=IN, config="cfg_a", retired=False):
    path = f"/data/{name}.h5"
    d = {"_id": f"{site}:{path}", "site": site, "path": path, "name": f"{name}.h5", "dir": "/data",
         "status": "ok", "inputs": list(inputs) if inputs is not None else None, "config": config,
         "prod_version": prod, "spine_version": spine,
         "spine_version_key": spine_mod.semver_key(spine), "mtime": datetime(2024, 1, 1),
         "ingest": {"first_seen": datetime(2024, 1, 1), "last_seen": datetime(2024, 1, 1)}}
    if retired:
        d["retired"] = {"reason": "bad", "by": "me", "at": datetime(2024, 2, 1)}
    return d


def add(db, *docs):
    with store.writing(db):
        db.files.insert_many([dict(d) for d in docs])
    return supersede.mark(db, [d["path"] for d in docs])


def marks(db):
    return {d["_id"]: d.get("superseded_by") for d in db.files.find({}, {"superseded_by": 1})}


def test_older_productions_are_marked_by_the_newest_in_either_order(db):
    schema.setup(db)
    add(db, doc("s1", "v3", prod="1.10.0"))            # the newest first ("1.10" > "1.9" as versions)
    add(db, doc("s1", "v1", prod="1.2.0"), doc("s1", "v2", prod="1.9.0"))
    assert marks(db) == {"s1:/data/v1.h5": "s1:/data/v3.h5", "s1:/data/v2.h5": "s1:/data/v3.h5",
                         "s1:/data/v3.h5": None}
    # a still newer one arrives: every older one points at it, and v3 is marked too
    add(db, doc("s1", "v4", prod="2.0.0"))
    assert marks(db) == {"s1:/data/v1.h5": "s1:/data/v4.h5", "s1:/data/v2.h5": "s1:/data/v4.h5",
                         "s1:/data/v3.h5": "s1:/data/v4.h5", "s1:/data/v4.h5": None}


def test_spine_version_breaks_a_production_tie_and_equal_versions_supersede_nothing(db):
    schema.setup(db)
    add(db, doc("s1", "old", spine="0.9.3"), doc("s1", "new", spine="0.10.0"),
        doc("s2", "new", spine="0.10.0"))      # a copy of the newest at another site
    assert marks(db) == {"s1:/data/old.h5": "s1:/data/new.h5", "s1:/data/new.h5": None,
                         "s2:/data/new.h5": None}
    # an older one at s2 is superseded by the newest at its own site
    add(db, doc("s2", "old", spine="0.9.3"))
    assert marks(db)["s2:/data/old.h5"] == "s2:/data/new.h5"


def test_other_inputs_other_configs_and_files_without_either_are_not_grouped(db):
    schema.setup(db)
    add(db, doc("s1", "a", prod="1.0.0"),
        doc("s1", "b", prod="2.0.0", config="cfg_b"),                 # another config
        doc("s1", "c", prod="2.0.0", inputs=[IN[0]]),                 # a subset of the inputs
        doc("s1", "d", prod="2.0.0", config=None),                    # no config name
        doc("s1", "e", prod="2.0.0", inputs=None),                    # no inputs
        doc("s1", "f", prod="0.5.0", inputs=list(reversed(IN))))      # same inputs, other order
    assert marks(db) == {"s1:/data/a.h5": None, "s1:/data/b.h5": None, "s1:/data/c.h5": None,
                         "s1:/data/d.h5": None, "s1:/data/e.h5": None, "s1:/data/f.h5": "s1:/data/a.h5"}


def test_latest_only_hides_the_superseded_and_counts_exactly(db):
    schema.setup(db)
    add(db, doc("s1", "v1", prod="1.0.0"), doc("s1", "v2", prod="1.1.0"), doc("s1", "v3", prod="1.2.0"),
        doc("s1", "x", prod="1.0.0", config="other"), doc("s1", "r", prod="1.0.0", config="r", retired=True),
        doc("s1", "rs", prod="0.1.0", config="r"))   # superseded by the retired r
    # by hand: superseded v1, v2, rs; retired r
    assert marks(db)["s1:/data/rs.h5"] == "s1:/data/r.h5"

    def paths(flt):
        return sorted(r["path"] for r in queries.page(db, flt, sort=("path", 1), size=100).rows)

    assert paths(Filter(latest_only=True)) == ["/data/v3.h5", "/data/x.h5"]
    assert queries.count(db, Filter(latest_only=True)) == 2
    assert paths(Filter(latest_only=True, include_retired=True)) == ["/data/r.h5", "/data/v3.h5", "/data/x.h5"]
    assert queries.count(db, Filter(latest_only=True, include_retired=True)) == 3
    assert queries.count(db, Filter()) == 5
    assert queries.count(db, Filter(latest_only=True, config=["cfg_a"])) == 1
    facet = {v["value"]: v["count"] for v in queries.facets(db, Filter(latest_only=True), ["config"])["config"]}
    assert facet == {"cfg_a": 1, "other": 1}
    assert Filter(latest_only=True).describe() == "latest versions only"
    assert Filter.from_params(Filter(latest_only=True).to_params()).latest_only is True


def test_inject_marks_an_older_spine_version_and_the_cli_hides_it(db, db_url, tmp_path):
    inputs = ["/raw/bnb/r1.root"]
    (tmp_path / "new").mkdir()
    (tmp_path / "old").mkdir()
    new = samples.write_spine_file(tmp_path / "new" / "f.h5", spine_version="0.17.1", inputs=inputs, n_events=3)
    old = samples.write_spine_file(tmp_path / "old" / "f.h5", spine_version="0.16.0", inputs=inputs, n_events=3)
    settings = Settings.load(env={}, site="s1", workers=1)
    for src in (new, old):  # the newer first: the older is marked when it arrives
        rep = ingest.inject(db, settings=settings, sources=[str(src)])
        assert rep.failed == 0, rep.problems
    assert marks(db) == {f"s1:{old}": f"s1:{new}", f"s1:{new}": None}
    res = runner.invoke(app, ["query", "--db", db_url, "--format", "paths", "--latest-only"])
    assert res.exit_code == 0, res.output
    assert listed(res.output) == [str(new)]
    res = runner.invoke(app, ["query", "--db", db_url, "--format", "paths"])
    assert sorted(listed(res.output)) == sorted([str(new), str(old)])


def listed(output):
    """The paths of ``--format paths`` (without its ``#`` header lines)."""
    return [line for line in output.splitlines() if line and not line.startswith("#")]
