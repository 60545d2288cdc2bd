"""Every error the CLI can meet ends in one line on stderr, a documented exit code, and no
traceback: usage errors, bad settings, ports it cannot listen on, unwritable backup places.

These go through ``spine_docs.cli.main`` (the installed entry point), not only Typer's runner,
because that is where usage errors are turned into one line.
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


def test_query_errors_are_one_line(monkeypatch, capsys):
    # the query layer is imported by the commands that query, not with the CLI: its errors
    # are still turned into one line
    code, out, err = run_main(monkeypatch, capsys, "query", "--attr", "no operator here",
                              "--db", "mongomock://query-errors")
    assert_one_line(code, err, 2, "cannot parse attribute condition")
