"""Every error the CLI can meet ends in one line on stderr, a documented exit code, and no
traceback: usage errors, bad settings, ports it cannot listen on, unwritable backup places.

These go through ``spine_docs.cli.main`` (what the installed entry point runs), not only
Typer's runner, because that is where usage errors are turned into one line.
"""

from __future__ import annotations

import socket

import pytest

from spine_docs import __version__, cli


def run_main(monkeypatch, capsys, *args, env=None):
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as info:
        cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return info.value.code, out, err


def assert_one_line(code, err, expected_code=2, needle=""):
    assert code == expected_code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("spine-docs: "), err
    assert needle in lines[0], err


def test_version_works_on_its_own(monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "--version")
    assert code == 0 and out.strip() == f"spine-docs {__version__}"


@pytest.mark.parametrize("args,needle", [
    (["nosuch"], "No such command 'nosuch'"),
    (["query", "--bogus"], "No such option: --bogus"),
    (["query", "--limit", "-1"], "--limit"),
    (["migrate", "up", "--to", "x"], "--to"),
    (["app", "--port", "99999"], "--port"),
    (["app", "--port", "0"], "--port"),
    (["inject", "--workers", "0"], "--workers"),
])
def test_usage_errors_are_one_line(monkeypatch, capsys, tmp_path, args, needle):
    code, out, err = run_main(monkeypatch, capsys, *args, "--db", tmp_path / "cat")
    assert_one_line(code, err, 2, needle)
    assert "--help" in err  # says where to look


@pytest.mark.parametrize("var,value,needle", [
    ("SPINE_DOCS_WORKERS", "abc", "SPINE_DOCS_WORKERS='abc'"),
    ("SPINE_DOCS_BATCH_SIZE", "many", "SPINE_DOCS_BATCH_SIZE='many'"),
    ("SPINE_DOCS_CHECKSUM", "perhaps", "SPINE_DOCS_CHECKSUM='perhaps'"),
    ("SPINE_DOCS_PATH_PATTERNS", "[bad", "SPINE_DOCS_PATH_PATTERNS"),
])
def test_bad_settings_name_the_variable_not_a_filter(monkeypatch, capsys, tmp_path, var, value, needle):
    code, out, err = run_main(monkeypatch, capsys, "query", "--db", tmp_path / "cat", env={var: value})
    assert_one_line(code, err, 2, needle)
    assert "filter" not in err


def test_app_on_a_taken_port_is_one_line(monkeypatch, capsys, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        code, out, err = run_main(monkeypatch, capsys, "app", "--db", "mongomock://clierr",
                                  "--port", port)
    assert_one_line(code, err, 2, f"cannot listen on 127.0.0.1:{port}")


def test_app_on_an_unknown_host_is_one_line(monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "app", "--db", "mongomock://clierr",
                              "--host", "no-such-host.invalid", "--port", "8599")
    assert_one_line(code, err, 2, "cannot listen on no-such-host.invalid:8599")


@pytest.mark.parametrize("where", ["file", "under-a-file", "proc"])
def test_backup_out_that_cannot_hold_backups(monkeypatch, capsys, tmp_path, where):
    target = {"file": tmp_path / "f", "under-a-file": tmp_path / "f" / "sub",
              "proc": "/proc/spine-docs-no-such-dir"}[where]
    (tmp_path / "f").write_text("not a directory")
    code, out, err = run_main(monkeypatch, capsys, "migrate", "backup", "--db",
                              "mongomock://clibackup", "--out", target)
    assert_one_line(code, err, 2, str(target))
    if where == "file":
        assert "is a file, not a directory" in err
    assert (tmp_path / "f").read_text() == "not a directory"


# --------------------------------------------------------------------------- --db: read, never create

READ_ONLY_COMMANDS = [
    ["query"], ["query", "--format", "paths"], ["show", "/some/file.h5"], ["facets"], ["attrs"],
    ["runs"], ["app", "--port", "8599"], ["migrate", "status"], ["migrate", "check"],
    ["migrate", "plan"], ["migrate", "history"], ["migrate", "up", "--dry-run"],
]


def tree(root):
    """Every path under ``root`` with its bytes (files) and mtime."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None, p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def no_explorer(monkeypatch):
    """`spine-docs app` would become Streamlit (exec): record the call instead."""
    started = []
    monkeypatch.setattr(cli, "_run_app", lambda *a: started.append(a))
    return started


@pytest.mark.parametrize("place", ["missing", "empty", "other files"])
@pytest.mark.parametrize("args", READ_ONLY_COMMANDS, ids=" ".join)
def test_read_only_commands_say_there_is_no_catalog_and_create_nothing(
        monkeypatch, capsys, tmp_path, no_explorer, args, place):
    where = tmp_path / "no-such-catalog"
    if place != "missing":
        where.mkdir()
    if place == "other files":  # like /etc
        (where / "hosts").write_text("127.0.0.1 localhost\n")
    before = tree(where) if where.exists() else None
    code, out, err = run_main(monkeypatch, capsys, *args, "--db", where)
    assert_one_line(code, err, 2, f"no catalog at {where} (create one with `spine-docs setup --db {where}`")
    assert (tree(where) if where.exists() else None) == before
    assert not no_explorer


def test_writing_commands_create_the_catalog(monkeypatch, capsys, tmp_path):
    code, out, err = run_main(monkeypatch, capsys, "setup", "--db", tmp_path / "new")
    assert code == 0, err
    assert (tmp_path / "new" / "spine_docs" / ".generation").is_file()
    code, out, err = run_main(monkeypatch, capsys, "migrate", "up", "--db", tmp_path / "new2")
    assert code == 0, err
    code, out, err = run_main(monkeypatch, capsys, "migrate", "check", "--db", tmp_path / "new2")
    assert code == 0, err


def _indexed_catalog(monkeypatch, capsys, root, files, *, gone_run=True):
    """A catalog at ``root`` (setup, then inject of ``files``), with (``gone_run``) one run
    whose process is gone and nobody recorded it; closed in this process so the next command
    loads the files."""
    import subprocess
    import sys
    from datetime import datetime, timezone

    from spine_docs import store

    for args in (["setup"], ["inject", "--source", files, "--no-progress", "--workers", "1"]):
        code, out, err = run_main(monkeypatch, capsys, *args, "--db", root, env={"SPINE_DOCS_SITE": "s"})
        assert code == 0, err
    db = store.connect(root, create=False)
    if not gone_run:
        store.close(db)
        return
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    now = datetime.now(timezone.utc)
    with store.writing(db):
        db.runs.insert_one({"_id": "gone", "kind": "inject", "site": "s", "state": "running",
                            "started": now, "heartbeat": now, "host": socket.gethostname(),
                            "pid": gone.pid})
    store.close(db)


def test_a_read_only_catalog_can_be_read_and_a_write_is_one_line(monkeypatch, capsys, tmp_path, no_explorer):
    import json

    from known_files import write_known_files
    from spine_docs import store
    from unprivileged import read_only

    specs = write_known_files(tmp_path / "files", 8)
    root = tmp_path / "cat"
    _indexed_catalog(monkeypatch, capsys, root, tmp_path / "files")
    with read_only(root):
        before = tree(root)
        code, out, err = run_main(monkeypatch, capsys, "query", "--format", "paths", "--db", root)
        assert code == 0, err
        assert sorted(line for line in out.splitlines() if not line.startswith("#")) == \
            sorted(s["path"] for s in specs)
        code, out, err = run_main(monkeypatch, capsys, "runs", "--json", "--db", root)
        assert code == 0, err  # the gone run cannot be recorded here, but it is shown as it is
        assert sorted((r["_id"] == "gone", r["state"]) for r in json.loads(out)) == \
            [(False, "done"), (True, "interrupted")]
        for args in (["facets"], ["attrs"], ["show", "/nope.h5"], ["migrate", "status"],
                     ["migrate", "check"], ["migrate", "plan"], ["migrate", "history"], ["app"]):
            code, out, err = run_main(monkeypatch, capsys, *args, "--db", root)
            assert code in (0, 1) and "Traceback" not in err and "read-only" not in err, (args, err)
        assert len(no_explorer) == 1
        for args in (["inject", "--source", tmp_path / "files", "--no-progress"], ["setup"],
                     ["migrate", "up"], ["migrate", "stamp", "3"]):
            code, out, err = run_main(monkeypatch, capsys, *args, "--db", root)
            assert_one_line(code, err, 2, f"the embedded catalog at {root} is read-only here: ")
        assert tree(root) == before
        store.close(store.connect(root, create=False))


def test_read_only_commands_change_no_file_of_a_catalog(monkeypatch, capsys, tmp_path, no_explorer):
    from known_files import write_known_files
    from spine_docs import store

    write_known_files(tmp_path / "files", 4)
    root = tmp_path / "cat"
    _indexed_catalog(monkeypatch, capsys, root, tmp_path / "files", gone_run=False)
    code, out, err = run_main(monkeypatch, capsys, "migrate", "backup", "--db", root, "--out", tmp_path / "b")
    assert code == 0, err
    backup = next((tmp_path / "b").iterdir())  # a backup is a mongodump directory: it opens as a catalog
    store.close(store.connect(root, create=False))
    for where in (root, backup):
        before = tree(where)
        for args in READ_ONLY_COMMANDS:
            code, out, err = run_main(monkeypatch, capsys, *args, "--db", where)
            assert code in (0, 1) and "Traceback" not in err, (where, args, err)
            assert tree(where) == before, (where, args)
            store.close(store.connect(where, create=False))  # the next command loads the files again
    assert not (backup / ".lock").exists()


def test_query_errors_are_one_line(monkeypatch, capsys):
    # the query layer is imported by the commands that query, not with the CLI: its errors
    # are still turned into one line
    code, out, err = run_main(monkeypatch, capsys, "query", "--attr", "no operator here",
                              "--db", "mongomock://query-errors")
    assert_one_line(code, err, 2, "cannot parse attribute condition")
