"""As of a date: ``query``/``facets --as-of`` and :mod:`spine_docs.asof` give the files the
catalog held then, with the values they had then. Expected values are the energies the test
wrote at each date, by hand."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from spine_docs import asof, ingest, queries
from spine_docs.queries import Filter
from spine_docs.settings import Settings

from dated import frozen_clock, write_energy
from test_filter_language import run as cli_run

UTC = timezone.utc


Clock = frozen_clock()
write = write_energy


@pytest.fixture
def history_catalog(db, db_url, tmp_path, monkeypatch):
    """f1: 1.0 (Mar 1), 2.0 (Mar 5), 4.0 (Mar 9); f2: first indexed Mar 5 with 3.0."""
    monkeypatch.setattr(ingest, "datetime", Clock)
    f1, f2 = tmp_path / "f1.h5", tmp_path / "f2.h5"

    def inject(*paths):
        rep = ingest.inject(db, settings=Settings.load(env={}, db=db_url, site="s", workers=1),
                            sources=[str(p) for p in paths])
        assert rep.failed == 0

    Clock.at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    write(f1, 1.0, 0)
    inject(f1)
    Clock.at = datetime(2026, 3, 5, 12, tzinfo=UTC)
    write(f1, 2.0, 1)
    write(f2, 3.0, 0)
    inject(f1, f2)
    Clock.at = datetime(2026, 3, 9, 12, tzinfo=UTC)
    write(f1, 4.0, 2)
    inject(f1)
    assert db.file_versions.count_documents({}) == 2
    return db, db_url, str(f1), str(f2)


def energies(db, when, **kw):
    return {d["path"]: d["attrs"]["energy"] for d in asof.documents(db, Filter(as_of=when, **kw))}


def test_as_of_before_the_first_between_and_after_the_last(history_catalog):
    db, url, f1, f2 = history_catalog
    assert energies(db, "2026-02-28") == {}                       # before anything was indexed
    assert energies(db, "2026-03-01") == {f1: 1.0}                 # f2 indexed later: absent
    assert energies(db, "2026-03-05T11:59:59Z") == {f1: 1.0}
    assert energies(db, "2026-03-05") == {f1: 2.0, f2: 3.0}
    assert energies(db, "2026-03-08") == {f1: 2.0, f2: 3.0}
    assert energies(db, "2026-03-09") == {f1: 4.0, f2: 3.0}        # after the last version
    assert energies(db, "2999-01-01") == {f1: 4.0, f2: 3.0}


def test_the_filter_applies_to_the_values_then(history_catalog):
    db, url, f1, f2 = history_catalog
    high = queries.AttrFilter.parse_expr("energy>=1.5", {"energy": "float"})
    assert energies(db, "2026-03-02", attr_filters=[high]) == {}    # 1.0 then (4.0 now)
    assert energies(db, "2026-03-06", attr_filters=[high]) == {f1: 2.0, f2: 3.0}
    assert asof.count(db, Filter(as_of="2026-03-06", path_contains="f2")) == 1
    # every other query refuses an as-of filter rather than ignore it
    with pytest.raises(queries.QueryError, match="as-of"):
        queries.count(db, Filter(as_of="2026-03-06"))


run = cli_run  # spine-docs ARGS in-process: (exit code, stdout, stderr)


def test_cli_query_and_facets_as_of(history_catalog):
    db, url, f1, f2 = history_catalog
    code, out, err = run("query", "--db", url, "--as-of", "2026-03-02", "-f", "jsonl")
    assert code == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert [(d["path"], d["attrs"]["energy"]) for d in docs] == [(f1, 1.0)]
    code, out, err = run("query", "--db", url, "--as-of", "2026-03-06", "-f", "paths", "--sort", "path")
    assert code == 0, err
    assert [l for l in out.splitlines() if not l.startswith("#")] == [f1, f2]
    code, out, err = run("query", "--db", url, "--as-of", "2026-03-06", "--attr", "energy<2.5")
    assert code == 0, err
    assert "1 of 1 matching files as of 2026-03-06" in err and "f1.h5" in out
    code, out, err = run("facets", "--db", url, "--as-of", "2026-03-01", "--field", "status", "--json")
    assert code == 0, err
    assert json.loads(out) == {"status": [{"value": "ok", "count": 1}]}
    code, out, err = run("query", "--db", url, "--as-of", "yesterday")
    assert code == 2 and "yesterday" in err and "Traceback" not in err


def energy_row(rows):
    (row,) = [r for r in rows if r["key"] == "energy"]
    return row["files"], row["min"], row["max"]


def test_attrs_as_of(history_catalog):
    db, url, f1, f2 = history_catalog
    assert energy_row(asof.attribute_dictionary(db, Filter(as_of="2026-03-02"))) == (1, 1.0, 1.0)
    assert energy_row(asof.attribute_dictionary(db, Filter(as_of="2026-03-06"))) == (2, 2.0, 3.0)
    assert asof.attribute_dictionary(db, Filter(as_of="2026-02-01")) == []
    code, out, err = run("attrs", "--db", url, "--as-of", "2026-03-06", "--json")
    assert code == 0, err
    assert energy_row(json.loads(out)) == (2, 2.0, 3.0)
    code, out, err = run("attrs", "--db", url, "--json")                 # now: 4.0 and 3.0
    assert code == 0, err
    assert energy_row(json.loads(out)) == (2, 3.0, 4.0)


def test_set_diff_as_of_per_side_and_for_both(history_catalog):
    db, url, f1, f2 = history_catalog
    # f1 as of Mar 2 (1.0) against f1 now (4.0), matched by name
    code, out, err = run("diff", "--db", url, "--left", "path_contains=f1.h5", "--left-as-of", "2026-03-02",
                         "--right", "path_contains=f1.h5", "--match-on", "name", "-f", "json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["left"]["files"], s["right"]["files"], s["pairs"]) == (1, 1, 1)
    assert "as of 2026-03-02" in s["left"]["filter"] and "as of" not in s["right"]["filter"]
    (energy,) = [k for k in s["keys"] if k["section"] == "attrs" and k["key"] == "energy"]
    assert (energy["changed"], energy["examples"][0]["a"], energy["examples"][0]["b"]) == (1, 1.0, 4.0)
    # --as-of for both sides: f2 was not in the catalog on Mar 2
    code, out, err = run("diff", "--db", url, "--left", "path_contains=f1.h5", "--right", "path_contains=f2.h5",
                         "--as-of", "2026-03-02", "--match-on", "name", "-f", "json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["left"]["files"], s["right"]["files"], s["pairs"], s["left"]["unmatched"]) == (1, 0, 0, 1)
    # both as of Mar 6 against each other: 2.0 (f1) and 3.0 (f2) both exist, unmatched by name
    code, out, err = run("diff", "--db", url, "--left", "path_contains=f1.h5", "--right", "path_contains=f2.h5",
                         "--as-of", "2026-03-06", "--right-as-of", "2026-03-01", "-f", "json", "--match-on", "name")
    assert code == 0, err
    s = json.loads(out)
    assert (s["left"]["files"], s["right"]["files"]) == (1, 0)            # --right-as-of wins for the right
    code, out, err = run("diff", "--db", url, f1, f2, "--as-of", "2026-03-02")
    assert code == 2 and "PATH@DATE" in err


@pytest.mark.parametrize("command", [["verify"], ["prune", "--retired"], ["restore-files", "--all"],
                                     ["retire", "--reason", "r", "x"], ["unretire", "x"]])
def test_commands_that_write_take_no_as_of(history_catalog, command):
    db, url, f1, f2 = history_catalog
    code, out, err = run(*command, "--db", url, "--as-of", "2026-03-02")
    assert code == 2 and "--as-of" in err and len(err.strip().splitlines()) == 1, err


def test_a_saved_as_of_query_reads_but_does_not_write(history_catalog):
    db, url, f1, f2 = history_catalog
    queries.save_query(db, "then", Filter(as_of="2026-03-02", path_contains="f1.h5"))
    code, out, err = run("query", "--db", url, "--saved", "then", "-f", "jsonl")
    assert code == 0, err
    assert [json.loads(line)["attrs"]["energy"] for line in out.splitlines()] == [1.0]
    for command in (["retire", "--reason", "r", "--yes"], ["prune", "--retired", "--yes"], ["verify", "--site", "s"]):
        code, out, err = run(*command, "--db", url, "--saved", "then")
        assert code == 2 and "as of 2026-03-02" in err and len(err.strip().splitlines()) == 1, (command, err)
    assert db.files.count_documents({"retired": {"$exists": True}}) == 0
