"""The CLI through Typer's runner: exit codes, one-line errors, output formats."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from spine_docs import samples, store
from spine_docs.cli import app

from known_files import attribute_counts, facet_counts, write_known_files

runner = CliRunner()


def run(*args, **kw):
    kw.setdefault("env", {"SPINE_DOCS_SITE": "clisite", "SPINE_DOCS_WORKERS": "1"})
    return runner.invoke(app, [str(a) for a in args], **kw)


def test_inject_then_query_and_show(db_url, tmp_path):
    paths = samples.write_prod_tree(tmp_path / "t", 6, seed=5)
    r = run("inject", "--db", db_url, "--source", tmp_path / "t" / "**" / "*.h5", "--no-progress")
    assert r.exit_code == 0, r.output
    assert "indexed 6" in r.stdout and "failed 0" in r.stdout and "files/s" in r.stdout

    r = run("inject", "--db", db_url, "--source", tmp_path / "t", "--json")
    assert r.exit_code == 0
    rep = json.loads(r.stdout)
    assert rep["unchanged"] == 6 and rep["indexed"] == 0

    r = run("query", "--db", db_url, "--format", "paths")
    assert r.exit_code == 0
    listed = [line for line in r.stdout.splitlines() if line and not line.startswith("#")]
    assert sorted(listed) == sorted(map(str, paths))

    r = run("query", "--db", db_url, "--where", json.dumps({"path": str(paths[0])}), "--format", "jsonl")
    assert r.exit_code == 0
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert [row["path"] for row in rows] == [str(paths[0])]

    r = run("show", "--db", db_url, paths[1])
    assert r.exit_code == 0 and json.loads(r.stdout)["path"] == str(paths[1])
    r = run("show", "--db", db_url, tmp_path / "not-there.h5")
    assert r.exit_code == 1 and "not in the catalog" in r.stderr


def test_failed_files_exit_1_and_are_named(db_url, tmp_path):
    samples.write_spine_file(tmp_path / "ok.h5")
    (tmp_path / "bad.h5").write_text("nope")
    r = run("inject", "--db", db_url, "--source", tmp_path / "*.h5", "--no-progress")
    assert r.exit_code == 1
    assert f"{tmp_path / 'bad.h5'}: not an HDF5 file" in r.stderr
    assert "indexed 1" in r.stdout and "failed 1" in r.stdout


@pytest.mark.parametrize("url,needle", [
    ("mongodb://127.0.0.1:1/x?serverSelectionTimeoutMS=200", "127.0.0.1:1"),
    ("postgres://nope", "postgres"),
    ("/proc/no/such/dir/catalog", "/proc/no/such/dir/catalog"),
])
def test_bad_db_is_one_line_exit_2(tmp_path, url, needle):
    samples.write_spine_file(tmp_path / "ok.h5")
    r = run("inject", "--db", url, "--source", tmp_path / "*.h5", "--no-progress")
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.output


def test_usage_errors_exit_2(tmp_path):
    r = run("inject", "--db", "mongomock://usage")
    assert r.exit_code == 2 and "--source" in r.stderr


def test_setup_creates_indexes(db_url):
    r = run("setup", "--db", db_url)
    assert r.exit_code == 0, r.output
    db = store.connect(db_url)
    keys = [tuple(ix["key"].items()) if isinstance(ix["key"], dict) else tuple(ix["key"])
            for ix in db.files.index_information().values()]
    assert (("path", 1), ("site", 1)) in keys


def test_demo_without_app(tmp_path):
    catalog = tmp_path / "cat"
    r = run("demo", "--files", 10, "--dir", tmp_path / "demo", "--db", catalog, "--no-app")
    assert r.exit_code == 0, r.output
    assert "indexed 10" in r.stdout and "spine-docs app" in r.stdout
    assert store.connect(str(catalog)).files.count_documents({}) == 10
    assert os.path.exists(catalog / "spine_docs" / "files.bson")


def test_unknown_saved_query_is_one_line(db_url):
    run("setup", "--db", db_url)
    r = run("query", "--db", db_url, "--saved", "nope")
    assert r.exit_code == 2 and "no saved query named 'nope'" in r.stderr
    assert "Traceback" not in r.output


def test_facets_counts_and_attrs_match_the_files(db_url, tmp_path):
    # expectations come from the files as written (known_files), not from spine_docs.queries
    specs = write_known_files(tmp_path / "t", 20)
    assert run("inject", "--db", db_url, "--source", tmp_path / "t", "--no-progress").exit_code == 0
    r = run("facets", "--db", db_url, "--json")
    assert r.exit_code == 0, r.output
    site = [{"value": "clisite", "count": len(specs)}]
    assert json.loads(r.stdout) == {"site": site, **{f: facet_counts(specs, f) for f in (
        "spine_version", "model", "dataset", "status")}}
    r = run("facets", "--db", db_url, "--field", "model", "--json")
    assert json.loads(r.stdout) == {"model": facet_counts(specs, "model")}
    # under a filter: the other facets count the matching files; the field's own selection
    # is left out of its own counts
    some = [s for s in specs if s["dataset"] == "bnb_nu"]
    r = run("facets", "--db", db_url, "--dataset", "bnb_nu", "--field", "model", "--field", "dataset", "--json")
    assert json.loads(r.stdout) == {"model": facet_counts(some, "model"),
                                    "dataset": facet_counts(specs, "dataset")}

    # counts: the table's last line, with and without a filter
    newest_first = sorted(specs, key=lambda s: -s["mtime"])
    for args, chosen in [((), newest_first),
                         (("--dataset", "bnb_nu"), [s for s in newest_first if s["dataset"] == "bnb_nu"]),
                         (("--model", "grappa", "--run-min", "105"),
                          [s for s in newest_first if s["model"] == "grappa" and s["run"] >= 105])]:
        assert 0 < len(chosen)
        r = run("query", "--db", db_url, *args)
        assert r.exit_code == 0, r.output
        assert r.stderr.strip().splitlines()[-1] == \
            f"{len(chosen)} of {len(chosen)} matching files ({len(specs)} in the catalog)"
        rows = r.stdout.splitlines()[1:]
        assert [row.split()[0] for row in rows] == [s["path"] for s in chosen]

    r = run("attrs", "--db", db_url, "--json")
    assert r.exit_code == 0
    rows = json.loads(r.stdout)
    counts = attribute_counts(specs)
    assert "beam.energy" in counts and [a["key"] for a in rows] == sorted(counts)
    assert {a["key"]: a["files"] for a in rows} == counts


def test_path_contains_is_literal_text(db_url, tmp_path):
    names = ["a.b", "axb", "a*b", "aab", "x(1)", "x1", "g[1]", "g1"]
    made = {n: samples.write_spine_file((tmp_path / "t" / n).mkdir(parents=True) or
                                        tmp_path / "t" / n / "f.h5", seed=k)
            for k, n in enumerate(names)}
    r = run("inject", "--db", db_url, "--source", tmp_path / "t", "--no-progress")
    assert r.exit_code == 0 and f"indexed {len(names)}" in r.stdout, r.output
    for text, want in [("a.b", "a.b"), ("a*b", "a*b"), ("x(1)", "x(1)"), ("(", "x(1)"),
                       ("g[1]", "g[1]"), ("[", "g[1]")]:
        r = run("query", "--db", db_url, "--path-contains", text, "--format", "paths")
        assert r.exit_code == 0, (text, r.output)
        listed = [line for line in r.stdout.splitlines() if line and not line.startswith("#")]
        assert listed == [str(made[want])], text


def test_inject_imports_neither_the_query_layer_nor_the_file_readers():
    # inject's own process only writes (its workers read the files): what it does not use
    # is not imported, here or by the CLI
    import subprocess
    import sys

    code = ("import sys, spine_docs.cli, spine_docs.ingest; print(sorted(m for m in "
            "('spine_docs.queries', 'spine_docs.convert', 'spine_docs.spine', 'h5py', 'numpy', "
            "'rich') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_no_progress_bar_means_no_progress_calls(tmp_path, monkeypatch):
    from spine_docs import ingest

    given = []

    def fake_inject(db, *, settings, progress=None, **kw):
        given.append(progress)
        return ingest.InjectReport(run_id="r", site="s")

    monkeypatch.setattr(ingest, "inject", fake_inject)
    src = tmp_path / "t"
    src.mkdir()
    for extra in (["--no-progress"], ["--json"], []):  # the last: stderr is not a terminal here
        r = run("inject", "--db", "mongomock://progress", "--source", src, *extra)
        assert r.exit_code == 0, r.output
    assert given == [None, None, None]


@pytest.mark.parametrize("args, waits", [
    (["inject", "--source", "{src}", "--no-progress"], True),
    (["verify", "--no-progress"], True),
    (["doctor"], True),
    (["backup", "--out", "{out}"], True),
    (["migrate", "status"], True),
    (["query"], False),
    (["facets"], False),
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_long_commands_wait_out_an_election_and_quick_reads_do_not(monkeypatch, tmp_path, args, waits):
    # the commands an administrator or a batch job runs for minutes connect with server
    # selection and retries sized for an election (access.connect's failover); a query fails fast
    from spine_docs import access

    seen = []
    real = access.connect
    monkeypatch.setattr(access, "connect",
                        lambda settings, **kw: seen.append(kw.get("failover")) or real(settings, **kw))
    (tmp_path / "src").mkdir()
    args = [a.format(src=tmp_path / "src", out=tmp_path / "out") for a in args]
    run(*args, "--db", "mongomock://elections")
    assert seen and seen[0] is waits, (args, seen)
