"""The migration lock and the runner's bookkeeping on the wire: pymongo's real network path
against a scripted server (``wire_fake``): server-time leases, majority write concern, a
heartbeat that fails, a primary that steps down, a server that disappears."""

from __future__ import annotations

import getpass
import os
import socket
import threading

import pytest

pytest.importorskip("mockupdb")
import pymongo  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import wire_fake  # noqa: E402
from wire_fake import fake  # noqa: E402,F401  (fixtures)
from spine_docs.cli import app  # noqa: E402
from spine_docs.migrate import lock as lk  # noqa: E402
from spine_docs.migrate import runner  # noqa: E402


@pytest.fixture
def db(fake):
    client = pymongo.MongoClient(fake.uri, serverSelectionTimeoutMS=3000)
    yield client["spine_docs"]
    client.close()


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def test_the_lease_is_timed_by_the_server_and_written_with_majority(fake, db):
    lock = lk.acquire(db, command="migrate up", lease_s=90, wait_s=0)
    take = fake.sent("findAndModify", "meta")[0]
    assert take["query"]["_id"] == "migration_lock"
    # "expired" is the server's judgement: $$NOW in the filter, no client date
    assert {"$expr": {"$lt": ["$expires", "$$NOW"]}} in take["query"]["$or"]
    assert {"token": lock.token} in take["query"]["$or"]
    assert take["upsert"] is True
    # an update pipeline: the lease is $$NOW + 90 000 ms; our fields are literals
    (stage,) = take["update"]
    sets = stage["$set"]
    assert sets["acquired"] == "$$NOW"
    assert sets["expires"] == {"$add": ["$$NOW", 90000]}
    assert sets["token"] == {"$literal": lock.token}
    assert sets["host"] == {"$literal": socket.gethostname()}
    assert sets["pid"] == {"$literal": os.getpid()}
    assert sets["user"] == {"$literal": _user()}
    assert sets["command"] == {"$literal": "migrate up"}
    assert take["writeConcern"]["w"] == "majority"

    lock.renew()
    renew = fake.sent("findAndModify", "meta")[1]
    assert renew["query"] == {"_id": "migration_lock", "token": lock.token}
    assert renew["update"] == [{"$set": {"expires": {"$add": ["$$NOW", 90000]}}}]
    assert renew["writeConcern"]["w"] == "majority"

    lock.release()
    (delete,) = fake.sent("delete", "meta")
    assert delete["deletes"][0]["q"] == {"_id": "migration_lock", "token": lock.token}
    assert delete["writeConcern"]["w"] == "majority"


def test_the_holder_is_read_with_majority_read_concern(fake, db):
    lk.holder(db)
    (find,) = fake.sent("find", "meta")
    assert find["filter"] == {"_id": "migration_lock"}
    assert find["readConcern"] == {"level": "majority"}


def _renewal(request) -> bool:
    """A renewal of the lock (not its taking, which upserts)."""
    d = request.doc
    return request.command_name == "findAndModify" and d.get("findAndModify") == "meta" and not d.get("upsert")


def test_a_heartbeat_the_server_refuses_stops_the_run_at_the_step_boundary(fake, db, tmp_path, monkeypatch):
    mdir, sfile = wire_fake.migrations(tmp_path)
    refused = threading.Event()
    in_step = threading.Event()

    def refuse(request):  # only the heartbeat's renewals: the one after the step would pass
        if _renewal(request) and in_step.is_set():
            request.command_err(code=8000, errmsg="injected: renewal refused")
            refused.set()
            return True
        return None

    fake.overrides.append(refuse)
    seen = {}

    def step(_db):  # a long step: it outlives the first heartbeat, which the server refuses
        in_step.set()
        assert refused.wait(20), "no heartbeat reached the server"
        for t in threading.enumerate():  # the heartbeat ends once it has marked the lock lost
            if t.name == "spine-docs-lock-heartbeat":
                t.join(10)
        in_step.clear()
        seen["renewals during the step"] = len(fake.sent("findAndModify", "meta")) - 1

    monkeypatch.setattr(wire_fake, "step_hook", step)
    res = runner.up(db, to=1, backup=False, migrations_dir=mdir, schema_file=sfile, lease_s=0.3)

    assert seen["renewals during the step"] >= 1                   # the heartbeat ran
    assert not res.ok and res.exit_code == 1
    assert res.stopped and "lock was lost" in res.message and "injected: renewal refused" in res.message
    assert "migrate status" in res.message
    assert "\n" not in res.message
    # the step is not recorded as applied, and the version is not stamped
    assert res.final_version == 0 and not [s for s in res.steps if s.state == "applied"]
    assert not [u for u in fake.sent("update", "meta") if u["updates"][0]["q"] == {"_id": "schema"}]
    states = [u["updates"][0]["u"]["$set"]["state"] for u in fake.sent("update", "changelog")]
    assert states == ["interrupted"]


def test_a_renewal_that_matches_nothing_is_a_lost_lock(fake, db, tmp_path, monkeypatch):
    """Another process took the lock over: the renewal (by our token) finds no document."""
    mdir, sfile = wire_fake.migrations(tmp_path)

    def taken_over(request):
        if _renewal(request):
            return request.ok(value=None, lastErrorObject={"n": 0, "updatedExisting": False})
        return None

    fake.overrides.append(taken_over)
    res = runner.up(db, to=1, backup=False, migrations_dir=mdir, schema_file=sfile)
    assert not res.ok and "taken over" in res.message
    assert not [u for u in fake.sent("update", "meta") if u["updates"][0]["q"] == {"_id": "schema"}]


def test_a_changelog_write_refused_by_a_stepped_down_primary_is_retried_and_lands(fake, db, tmp_path):
    mdir, sfile = wire_fake.migrations(tmp_path)
    answered = []

    def step_down_once(request):
        if request.command_name == "insert" and request.doc.get("insert") == "changelog" and not answered:
            answered.append(True)
            return request.command_err(code=10107, errmsg="not primary",
                                       errorLabels=["RetryableWriteError"])
        return None

    fake.overrides.append(step_down_once)
    res = runner.up(db, to=1, backup=False, migrations_dir=mdir, schema_file=sfile)

    assert res.ok, res.message
    assert res.final_version == 1 and [s.state for s in res.steps] == ["applied"]
    inserts = fake.sent("insert", "changelog")
    assert len(inserts) == 2                                    # refused, then sent again
    first, second = (i["documents"][0] for i in inserts)
    assert first == second and first["state"] == "running"      # the same record, same _id
    assert all(i["writeConcern"]["w"] == "majority" for i in inserts)
    (stamp,) = [u for u in fake.sent("update", "meta") if u["updates"][0]["q"] == {"_id": "schema"}]
    assert stamp["updates"][0]["u"]["$set"]["version"] == 1
    assert stamp["writeConcern"]["w"] == "majority"


def test_a_server_that_disappears_during_a_step_ends_the_tool_with_one_line(fake, tmp_path, monkeypatch,
                                                                          clean_env):
    mdir, sfile = wire_fake.migrations(tmp_path)

    def vanish(db):
        fake.stop()                                   # the server goes away mid-step
        db.files.update_many({}, {"$set": {"touched": True}})

    monkeypatch.setattr(wire_fake, "step_hook", vanish)
    monkeypatch.setenv("SPINE_DOCS_FAILOVER_TIMEOUT_S", "1")   # the election we wait out
    url = f"mongodb://{fake.address}/spine_docs"
    res = CliRunner().invoke(app, ["migrate", "up", "--db", url, "--to", "1", "--no-backup",
                                   "--migrations-dir", str(mdir), "--schema-file", str(sfile)])
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("stopped during 0001_controlled: lost the database")
    assert "`spine-docs migrate status`" in line and "`spine-docs migrate unlock --force`" in line
