"""The fault suite: kills, full disks and dead processes end in a catalog that loads, a run log
that tells the truth, and no process of ours left alive.

Processes are started in a session of their own, so "nothing left" is checked on the whole
process group (main process, forkserver, resource tracker, workers).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from spine_docs import runs, samples, store

CLI = [sys.executable, "-m", "spine_docs.cli"]


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            found.append(int(entry.name))
    return found


def wait_until(predicate, timeout: float = 30.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture(scope="module")
def many_files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults") / "prod"
    samples.write_prod_tree(root, 600, seed=3)
    return root


def start_inject(catalog: Path, source: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, SPINE_DOCS_SITE="faultsite", SPINE_DOCS_WORKERS="2",
               SPINE_DOCS_BATCH_SIZE="50")
    return subprocess.Popen(CLI + ["inject", "--db", str(catalog), "--source", str(source),
                                   "--no-progress", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_for_workers(proc: subprocess.Popen) -> None:
    # main + resource tracker + forkserver + 2 workers
    assert wait_until(lambda: len(group_pids(proc.pid)) >= 5 or proc.poll() is not None, 60), \
        "the worker pool never started"
    assert proc.poll() is None, proc.communicate()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "kill"])
def test_killed_inject_leaves_no_process_and_a_loadable_catalog(many_files, tmp_path, sig):
    catalog = tmp_path / "catalog"
    proc = start_inject(catalog, many_files)
    wait_for_workers(proc)
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    assert wait_until(lambda: not group_pids(proc.pid), 15), \
        f"left running after {sig.name}: {group_pids(proc.pid)}"
    if sig == signal.SIGTERM:
        assert proc.returncode != 0
        assert b"Traceback" not in proc.stderr.read()

    db = store.connect(str(catalog))  # loads: one complete generation
    (run,) = list(db.runs.find())
    if sig == signal.SIGTERM:  # the process said so itself
        assert run["state"] == "interrupted"
    else:  # nobody could: the next reader sees it gone, the next writer records it
        assert run["state"] == "running"
        assert [r["state"] for r in runs.last(db)] == ["interrupted"]
    store.close(db)

    # a re-run indexes every file exactly once and records the dead run
    rerun = subprocess.run(CLI + ["inject", "--db", str(catalog), "--source", str(many_files),
                                  "--no-progress", "--workers", "1"],
                           env=dict(os.environ, SPINE_DOCS_SITE="faultsite"),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    db = store.connect(str(catalog))
    assert db.files.count_documents({}) == 600
    assert len(db.files.distinct("path")) == 600
    states = {r["_id"]: r["state"] for r in db.runs.find()}
    assert states[run["_id"]] == "interrupted" and sorted(states.values()) == ["done", "interrupted"]
    store.close(db)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "kill"])
def test_killed_app_leaves_nothing_serving(tmp_path, sig):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(CLI + ["app", "--db", f"mongomock://faultapp", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

    def serving() -> bool:
        with socket.socket() as c:
            return c.connect_ex(("127.0.0.1", port)) == 0

    try:
        assert wait_until(lambda: serving() or proc.poll() is not None, 60)
        assert proc.poll() is None
        os.kill(proc.pid, sig)  # the pid the user started, not a child's
        proc.wait(timeout=30)
        assert wait_until(lambda: not group_pids(proc.pid), 15), group_pids(proc.pid)
        assert not serving()
    finally:
        for pid in group_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- the run log

def _run_doc(**kw):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    doc = {"_id": kw.pop("_id"), "kind": "inject", "state": "running", "started": now,
           "heartbeat": now, "host": socket.gethostname(), "pid": os.getpid(),
           "pid_started": runs._process_start(os.getpid())}
    doc.update(kw)
    return doc


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.skip_backends("server")
def test_reap_marks_only_runs_whose_process_is_gone(db):
    old = datetime.now(timezone.utc) - runs.STALE_AFTER - timedelta(minutes=1)
    docs = [
        _run_doc(_id="alive"),                                    # this very process
        _run_doc(_id="dead-pid", pid=_dead_pid()),                # same host, pid gone
        _run_doc(_id="reused-pid", pid_started=1.0),              # pid now someone else's
        _run_doc(_id="other-host-fresh", host="elsewhere", pid=1),
        _run_doc(_id="other-host-stale", host="elsewhere", pid=1, heartbeat=old),
        _run_doc(_id="finished", state="done", host="elsewhere", heartbeat=old),
    ]
    with store.writing(db):
        db.runs.insert_many(docs)
    assert sorted(runs.reap(db)) == ["dead-pid", "other-host-stale", "reused-pid"]
    states = {d["_id"]: d["state"] for d in db.runs.find()}
    assert states == {"alive": "running", "dead-pid": "interrupted", "reused-pid": "interrupted",
                      "other-host-fresh": "running", "other-host-stale": "interrupted",
                      "finished": "done"}
    assert runs.reap(db) == []


# --------------------------------------------------------------------------- full disk

@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (CI runs as root); skipped where mounting is not permitted."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path, leave: int = 0) -> None:
    """Fill the tmpfs ``disk`` until at most ``leave`` bytes are free."""
    with open(disk / "filler", "wb") as f:
        try:
            f.write(b"\0" * max(0, os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - leave))
        except OSError:
            pass


def _files(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _generation_is_intact(d: Path) -> dict:
    """The manifest on disk, checked without spine-docs: every collection's .bson has the
    document count and SHA-256 it names; no temporary file and no commit journal is left."""
    import hashlib
    import json

    import bson

    manifest = json.loads((d / ".generation").read_text())
    for name, info in manifest["collections"].items():
        data = (d / info["bson"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == info["sha256"], name
        assert len(bson.decode_all(data)) == info["count"], name
    assert not [p.name for p in d.iterdir() if p.name.endswith(".part") or p.name == ".commit.json"]
    return manifest


def test_full_disk_during_inject_is_one_line_and_the_catalog_survives(tiny_disk, many_files, tmp_path):
    catalog = tiny_disk / "catalog"
    r = subprocess.run(CLI + ["setup", "--db", str(catalog)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(CLI + ["inject", "--db", str(catalog), "--source", str(many_files),
                              "--no-progress", "--workers", "1"],
                       env=dict(os.environ, SPINE_DOCS_SITE="faultsite"),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], r.stderr
    # which catalog could not be saved, and that it is at its previous generation
    assert lines[0] == (f"spine-docs: cannot save the embedded catalog at {catalog}: No space left "
                        "on device; it is as it was before this write"), r.stderr
    manifest = _generation_is_intact(catalog / "spine_docs")
    db = store.connect(str(catalog), create=False)  # still loads, at that generation
    assert db.files.count_documents({}) in range(0, 601)
    assert db.files.count_documents({}) == manifest["collections"]["files"]["count"]
    store.close(db)


def test_full_disk_keeps_the_previous_generation_byte_for_byte(tiny_disk, tmp_path):
    catalog = tiny_disk / "catalog"
    r = subprocess.run(CLI + ["setup", "--db", str(catalog)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    before = _files(catalog / "spine_docs")
    samples.write_prod_tree(tmp_path / "src", 5, seed=0)
    _fill(tiny_disk)
    r = subprocess.run(CLI + ["inject", "--db", str(catalog), "--source", str(tmp_path / "src"),
                              "--no-progress", "--workers", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"spine-docs: cannot save the embedded catalog at {catalog}: No space left on device; "
        "it is as it was before this write"]
    assert _files(catalog / "spine_docs") == before
    _generation_is_intact(catalog / "spine_docs")


def test_full_disk_during_setup_is_one_line(tiny_disk):
    filler = tiny_disk / "filler"
    with open(filler, "wb") as f:  # leave almost nothing
        try:
            f.write(b"\0" * (1024 * 1024))
        except OSError:
            pass
    r = subprocess.run(CLI + ["setup", "--db", str(tiny_disk / "catalog")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "No space left" in r.stderr, r.stderr
    assert r.stderr.strip() == (f"spine-docs: cannot save the embedded catalog at {tiny_disk / 'catalog'}: "
                                "No space left on device; nothing was saved")
    assert [p.name for p in (tiny_disk / "catalog" / "spine_docs").iterdir()] == []


def test_full_disk_during_a_backup_is_one_line_and_leaves_no_partial_backup(tiny_disk, tmp_path):
    catalog = tmp_path / "catalog"
    db = store.connect(catalog)
    with store.writing(db):
        db.files.insert_many([{"_id": i, "blob": "x" * 400} for i in range(1000)])  # ~400 kB
    store.close(db)
    out = tiny_disk / "backups"
    _fill(tiny_disk, leave=64 * 1024)
    r = subprocess.run(CLI + ["migrate", "backup", "--db", str(catalog), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"spine-docs: cannot write the backup {out}/"), r.stderr
    assert lines[0].endswith(": No space left on device; the partial backup was removed"), r.stderr
    assert list(out.iterdir()) == []


POOL_UNDER_SIGTERM = r"""
import os, signal, sys, threading, time
from spine_docs.pool import parallel_map

def term(signum, frame):
    raise KeyboardInterrupt
signal.signal(signal.SIGTERM, term)
delay = float(sys.argv[1])
try:
    threading.Timer(delay, os.kill, (os.getpid(), signal.SIGTERM)).start()
    for _ in parallel_map(time.sleep, [0.05] * 200, workers=2, chunksize=1):
        pass
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)
"""


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03, 0.06, 0.1, 0.2, 0.4])
def test_a_signal_while_workers_start_leaves_no_half_started_worker(delay):
    # a SIGTERM during the pool's start used to leave a worker half started, which then
    # printed a multiprocessing traceback and lingered
    p = subprocess.Popen([sys.executable, "-c", POOL_UNDER_SIGTERM, str(delay)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    out, err = p.communicate(timeout=120)
    assert wait_until(lambda: not group_pids(p.pid), 15), group_pids(p.pid)
    assert b"Traceback" not in err, err.decode()
    assert p.returncode == 130 and err.strip().splitlines()[-1] == b"interrupted"


SLOW_MIGRATION = '''
description = "tag every file, slowly, in small batches (a test migration)"
import time
from spine_docs.migrate import ops


def up(db):
    def tag(doc):
        time.sleep(0.02)
        return {"$set": {"tagged": True}}

    ops.backfill(db, "files", {"tagged": {"$exists": False}}, tag, batch_size=5)


def down(db):
    pass
'''


@pytest.mark.parametrize("after", [0.5, 1.5, 3.0])
def test_migrate_killed_mid_step_leaves_a_catalog_that_loads_and_resumes(tmp_path, after):
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).parent))
    from test_migrate_helpers import HEAD, NEXT, legacy_documents, load_legacy, migrations_copy

    catalog = tmp_path / "catalog"
    db = store.connect(str(catalog))
    docs = legacy_documents(tmp_path, n_extra=120)
    load_legacy(db, docs)
    store.close(db)
    mdir, sfile = migrations_copy(tmp_path, {f"{NEXT}_slow.py": SLOW_MIGRATION})
    env = dict(os.environ, SPINE_DOCS_MIGRATIONS_DIR=str(mdir), SPINE_DOCS_SCHEMA_FILE=str(sfile))
    up = CLI + ["migrate", "up", "--db", str(catalog), "--backup-dir", str(tmp_path / "b")]
    proc = subprocess.Popen(up, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    time.sleep(after)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert wait_until(lambda: not group_pids(proc.pid), 15), group_pids(proc.pid)

    db = store.connect(str(catalog))  # one complete generation, whatever the moment
    assert db.files.count_documents({}) == len(docs)
    store.close(db)
    status = subprocess.run(CLI + ["migrate", "status", "--db", str(catalog)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    # the dead holder's lock is taken over (same host, pid gone), and the run completes
    again = subprocess.run(up, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    db = store.connect(str(catalog))
    assert db.files.count_documents({"tagged": True}) == len(docs)
    assert db.meta.find_one({"_id": "schema"})["version"] == HEAD + 1
    assert db.meta.find_one({"_id": "migration_lock"}) is None
    store.close(db)
