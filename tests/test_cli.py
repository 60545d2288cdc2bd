"""The CLI through Typer's runner: exit codes, one-line errors, output formats."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from spine_docs import samples, store
from spine_docs.cli import app

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
    assert (("site", 1), ("path", 1)) in keys


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


def test_facets_and_attrs_match_the_library(db_url, tmp_path):
    from spine_docs import queries

    samples.write_prod_tree(tmp_path / "t", 12, seed=9)
    samples.write_spine_file(tmp_path / "t" / "extra.h5", root_attrs={"beam.energy": 1.5})
    assert run("inject", "--db", db_url, "--source", tmp_path / "t", "--no-progress").exit_code == 0
    db = store.connect(db_url)
    r = run("facets", "--db", db_url, "--field", "model", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == queries.facets(db, queries.Filter(), ("model",), 20)
    model = queries.facets(db, queries.Filter(), ("model",))["model"][0]
    r = run("facets", "--db", db_url, "--model", model["value"], "--field", "status", "--json")
    assert sum(v["count"] for v in json.loads(r.stdout)["status"]) == model["count"]
    r = run("attrs", "--db", db_url, "--json")
    assert r.exit_code == 0
    keys = [a["key"] for a in json.loads(r.stdout)]
    assert "beam.energy" in keys and keys == [a["key"] for a in queries.attribute_dictionary(db)]


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
