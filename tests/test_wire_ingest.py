"""``inject`` on the wire: pymongo's real network path against a scripted server
(``wire_fake``) whose CRUD commands are kept in an in-memory database (``wire_fake.Catalog``),
so that each test reads what "the server" holds afterwards. A primary that steps down, a
connection that is reset mid-bulk, a write-concern error, a failover that does not end, and
the "seen again" updates sent on their own."""

from __future__ import annotations


import pytest

pytest.importorskip("mockupdb")
from typer.testing import CliRunner  # noqa: E402

import wire_fake  # noqa: E402
from wire_fake import catalog, fake  # noqa: E402,F401  (fixtures)
from spine_docs import samples  # noqa: E402
from spine_docs.cli import app  # noqa: E402

SITE = "s1"


@pytest.fixture
def env(clean_env, monkeypatch):
    monkeypatch.setenv("SPINE_DOCS_SITE", SITE)
    monkeypatch.setenv("SPINE_DOCS_WORKERS", "1")
    monkeypatch.setenv("SPINE_DOCS_RETRY_BACKOFF_S", "0.001")   # tiny pauses between attempts
    monkeypatch.setenv("SPINE_DOCS_FAILOVER_TIMEOUT_S", "5")


def files(tmp_path, n, name="prod"):
    return sorted(str(p) for p in samples.write_prod_tree(tmp_path / name, n, seed=3))


def inject(fake, *args):
    url = f"mongodb://{fake.address}/spine_docs"
    return CliRunner().invoke(app, ["inject", "--db", url, "--no-progress", *args])


def refuse(fake, n, match, **err):
    """An override: the first ``n`` requests that ``match`` are answered with ``err``."""
    left = [n]

    def answer(request):
        if left[0] and match(request):
            left[0] -= 1
            return request.command_err(**err)
        return None

    fake.overrides.insert(0, answer)
    return left


def is_write(name, coll="files"):
    return lambda r: r.command_name == name and r.doc.get(name) == coll


def test_a_plain_run_indexes_every_file_and_logs_the_run(fake, catalog, env, tmp_path):
    paths = files(tmp_path, 5)
    res = inject(fake, "--source", str(tmp_path / "prod"))
    assert res.exit_code == 0, res.output
    assert sorted(d["path"] for d in catalog.db.files.find()) == paths
    (run,) = catalog.db.runs.find()
    assert run["state"] == "done" and run["counts"]["indexed"] == 5


def one_of_each(catalog):
    """Every document was written by exactly one write: seen once, one history entry."""
    return all(d["ingest"]["times_seen"] == 1 and len(d["ingest"]["history"]) == 1
               for d in catalog.db.files.find())


def test_a_primary_that_steps_down_then_recovers_gets_the_batch_again(fake, catalog, env, tmp_path):
    paths = files(tmp_path, 5)
    refused = refuse(fake, 3, is_write("insert"), code=10107, errmsg="not primary")
    res = inject(fake, "--source", str(tmp_path / "prod"), "--batch-size", "2")
    assert res.exit_code == 0, res.output
    assert refused == [0]                                          # all three refusals were used
    assert len(fake.sent("insert", "files")) == 3 + 3              # three batches, three refused
    assert sorted(d["path"] for d in catalog.db.files.find()) == paths
    assert one_of_each(catalog) and catalog.db.files.count_documents({"status": "error"}) == 0
    (run,) = catalog.db.runs.find()
    assert run["state"] == "done"
    assert run["counts"] == {"candidates": 5, "indexed": 5, "incomplete": 0, "unchanged": 0, "failed": 0}
    assert "indexed 5, unchanged 0, failed 0" in res.stdout


@pytest.mark.parametrize("landed", [True, False], ids=["after-the-write", "before-the-write"])
def test_a_connection_reset_mid_bulk_is_resumed_without_writing_or_counting_twice(
        fake, catalog, env, tmp_path, landed):
    paths = files(tmp_path, 5)
    hung = []

    def hang_up_once(request):  # the second batch: written (or not), then the connection drops
        if is_write("insert")(request) and len(fake.sent("insert", "files")) == 2 and not hung:
            if landed:
                catalog.apply(request)
            hung.append(list(d["path"] for d in request.doc["documents"]))
            return request.hangup()
        return None

    fake.overrides.insert(0, hang_up_once)
    res = inject(fake, "--source", str(tmp_path / "prod"), "--batch-size", "2")
    assert res.exit_code == 0, res.output
    assert len(hung) == 1 and len(hung[0]) == 2
    assert sorted(d["path"] for d in catalog.db.files.find()) == paths
    assert one_of_each(catalog)                                    # no upsert on top of a landed insert
    resent = [d["path"] for i in fake.sent("insert", "files")[2:] for d in i["documents"]]
    assert (set(hung[0]) & set(resent)) == (set() if landed else set(hung[0]))
    (run,) = catalog.db.runs.find()
    assert run["counts"]["indexed"] == 5 and run["counts"]["failed"] == 0
    assert "indexed 5, unchanged 0, failed 0" in res.stdout


def test_a_write_concern_error_fails_its_files_and_the_next_run_indexes_them(fake, catalog, env, tmp_path):
    paths = files(tmp_path, 5)
    unconfirmed = []

    def not_confirmed_once(request):  # the second batch lands but is not confirmed
        if is_write("insert")(request) and len(fake.sent("insert", "files")) == 2 and not unconfirmed:
            reply = catalog.apply(request)
            unconfirmed.extend(d["path"] for d in request.doc["documents"])
            return request.ok(**reply, writeConcernError={
                "code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication timed out"})
        return None

    fake.overrides.insert(0, not_confirmed_once)
    res = inject(fake, "--source", str(tmp_path / "prod"), "--batch-size", "2")
    assert res.exit_code == 1, res.output
    assert len(unconfirmed) == 2
    reported = sorted(line.split(": ")[1] for line in res.stderr.splitlines() if line.startswith("error: "))
    assert reported == sorted(unconfirmed)
    assert all("did not confirm the write (64: waiting for replication timed out)" in line
               for line in res.stderr.splitlines())
    assert "indexed 3, unchanged 0, failed 2" in res.stdout
    (run,) = catalog.db.runs.find()
    assert run["state"] == "failed" and (run["counts"]["indexed"], run["counts"]["failed"]) == (3, 2)
    assert sorted(p["path"] for p in run["problems"]) == sorted(unconfirmed)
    # their documents are marked, so that the next run does not take them for unchanged
    assert sorted(d["path"] for d in catalog.db.files.find({"status": "error"})) == sorted(unconfirmed)

    fake.overrides.remove(not_confirmed_once)
    again = inject(fake, "--source", str(tmp_path / "prod"), "--batch-size", "2")
    assert again.exit_code == 0, again.output
    assert "indexed 2, unchanged 3, failed 0" in again.stdout
    assert catalog.db.files.count_documents({"status": "error"}) == 0
    for d in catalog.db.files.find({"path": {"$in": unconfirmed}}):
        assert [h["change"] for h in d["ingest"]["history"]] == ["new", "retried"]
    assert sorted(d["path"] for d in catalog.db.files.find()) == paths


def test_a_failover_that_does_not_end_stops_the_run_in_one_line_and_the_next_run_finishes(
        fake, catalog, env, tmp_path, monkeypatch):
    paths = files(tmp_path, 5)
    # longer than pymongo's 0.5 s between two checks of a server it lost: the run's end is
    # recorded once the server is found again
    monkeypatch.setenv("SPINE_DOCS_FAILOVER_TIMEOUT_S", "1.5")
    down = [False]

    def no_primary(request):  # after the first batch, every write to files is refused
        if request.command_name in ("insert", "update") and request.doc.get(request.command_name) == "files":
            if down[0]:
                return request.command_err(code=10107, errmsg="not primary")
            down[0] = True
        return None

    fake.overrides.insert(0, no_primary)
    res = inject(fake, "--source", str(tmp_path / "prod"), "--batch-size", "2")
    assert res.exit_code != 0
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("spine-docs: stopped: the database did not take the writes for 1.5 s")
    assert "NotPrimaryError" in lines[0] and "run the same inject again" in lines[0]
    assert len(fake.sent("insert", "files")) > 2                   # the batch was tried again
    first = sorted(d["path"] for d in catalog.db.files.find())
    assert len(first) == 2
    (run,) = catalog.db.runs.find()
    assert run["state"] == "interrupted"
    assert run["counts"] == {"candidates": 5, "indexed": 2, "incomplete": 0, "unchanged": 0, "failed": 0}

    fake.overrides.remove(no_primary)
    again = inject(fake, "--source", str(tmp_path / "prod"), "--batch-size", "2")
    assert again.exit_code == 0, again.output
    assert "indexed 3, unchanged 2, failed 0" in again.stdout
    assert sorted(d["path"] for d in catalog.db.files.find()) == paths
    second = catalog.db.runs.find_one({"_id": {"$ne": run["_id"]}})
    assert second["state"] == "done"
    assert second["counts"] == {"candidates": 5, "indexed": 3, "incomplete": 0, "unchanged": 2, "failed": 0}
    for d in catalog.db.files.find():
        assert d["ingest"]["times_seen"] == (2 if d["path"] in first else 1)
        assert len(d["ingest"]["history"]) == 1                    # seen again is not a new entry


def test_the_seen_again_updates_go_as_their_own_bulk_so_the_inserts_stay_retryable(env, tmp_path):
    import socket

    with socket.socket() as s:  # a replica set's hello names its own address: pick the port first
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    me = f"localhost:{port}"
    fake = wire_fake.FakeServer(port=port, setName="rs0", ismaster=True, hosts=[me], me=me, logicalSessionTimeoutMinutes=30)
    fake.start()
    try:
        catalog = wire_fake.Catalog()
        fake.overrides.append(catalog)
        files(tmp_path, 3, name="old")
        assert inject(fake, "--source", str(tmp_path / "old")).exit_code == 0
        files(tmp_path, 2, name="new")
        before = len(fake.sent("update", "files")), len(fake.sent("insert", "files"))
        res = inject(fake, "--source", str(tmp_path / "old"), "--source", str(tmp_path / "new"))
        # the run's updates of files: the seen-again one, and those that link lineage (by
        # their own filters, never the seen-again's _id $in of the unchanged files)
        (seen,) = [u for u in fake.sent("update", "files")[before[0]:]
                   if any("ingest.last_seen" in str(x.get("u")) for x in u["updates"])]
        (insert,) = fake.sent("insert", "files")[before[1]:]
        (update,) = seen["updates"]
        assert update["multi"] is True and len(update["q"]["_id"]["$in"]) == 3
        assert "txnNumber" not in seen                     # a multi-document update is not retryable
        assert "txnNumber" in insert                       # ... and does not make the inserts so
        assert len(insert["documents"]) == 2
        assert catalog.db.files.count_documents({"ingest.times_seen": 2}) == 3
        assert res.exit_code == 0, res.output
        assert "indexed 2, unchanged 3, failed 0" in res.stdout
    finally:
        fake.stop()
