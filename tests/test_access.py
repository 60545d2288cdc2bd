"""Roles, users and credentials (spine_docs/access.py, `spine-docs roles|users`): the exact
commands on the wire (a scripted server, ``wire_fake``), least privilege, the password file,
and that no message, description or log record carries a password."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("mockupdb")
import yaml  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import wire_fake  # noqa: E402
from spine_docs import access, store  # noqa: E402
from spine_docs.cli import app  # noqa: E402
from spine_docs.settings import Settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Tr0ub4dor&3-not-in-any-message"


@pytest.fixture(autouse=True)
def _clean(clean_env):
    """Every test here runs in a clean environment (conftest's ``clean_env``)."""


@pytest.fixture
def fake():
    f = wire_fake.FakeServer(saslSupportedMechs=["SCRAM-SHA-256"]).start()
    yield f
    f.stop()


def secret_file(tmp_path: Path, text: str = PASSWORD + "\n", mode: int = 0o600, name: str = "pw") -> Path:
    p = tmp_path / name
    p.write_text(text)
    p.chmod(mode)
    return p


def cli(*args: str, input: str | None = None):
    res = CliRunner().invoke(app, list(args), input=input)
    return res.exit_code, res.stdout, res.stderr


def command(doc: dict) -> dict:
    """A command as sent, without the driver's own fields."""
    return {k: v for k, v in doc.items() if k not in ("$db", "lsid", "$readPreference", "$clusterTime")}


# --------------------------------------------------------------------------- the roles

R = "spine_docs"
EXPECTED_ROLES = [
    {"createRole": "spine_reader",
     "privileges": [{"resource": {"db": R, "collection": ""}, "actions": ["find", "listCollections", "listIndexes"]},
                    {"resource": {"db": R, "collection": "saved_queries"}, "actions": ["insert", "update", "remove"]}],
     "roles": []},
    {"createRole": "spine_writer",
     "privileges": [{"resource": {"db": R, "collection": "files"}, "actions": ["insert", "update"]},
                    {"resource": {"db": R, "collection": "runs"}, "actions": ["insert", "update"]},
                    {"resource": {"db": R, "collection": "file_versions"}, "actions": ["insert", "update"]}],
     "roles": [{"role": "spine_reader", "db": R}]},
    {"createRole": "spine_admin",
     "privileges": [{"resource": {"db": R, "collection": ""},
                     "actions": ["insert", "update", "remove", "createCollection", "dropCollection",
                                 "renameCollectionSameDB", "createIndex", "dropIndex", "collMod"]}],
     "roles": [{"role": "spine_writer", "db": R}]},
]


#: the actions of MongoDB's built-in readWrite role (on a database's non-system collections),
#: from the server's documentation of built-in roles
READ_WRITE = {"changeStream", "collStats", "convertToCapped", "createCollection", "createIndex", "dbHash",
              "dbStats", "dropCollection", "dropIndex", "find", "insert", "killCursors", "listCollections",
              "listIndexes", "listSearchIndexes", "remove", "renameCollectionSameDB", "update"}


def effective(name: str) -> dict[str, set[str]]:
    """collection -> actions a role holds, its inherited roles included."""
    by_name = {r["createRole"]: r for r in EXPECTED_ROLES}
    out: dict[str, set[str]] = {}
    role = by_name[name]
    while True:
        for p in role["privileges"]:
            out.setdefault(p["resource"]["collection"], set()).update(p["actions"])
        if not role["roles"]:
            return out
        role = by_name[role["roles"][0]["role"]]


def test_role_documents_are_the_least_privilege_ones():
    assert access.role_commands(R) == EXPECTED_ROLES
    reader, writer, admin = effective("spine_reader"), effective("spine_writer"), effective("spine_admin")
    writes = {"insert", "update", "remove"}
    schema_changes = {"createIndex", "dropIndex", "collMod", "createCollection", "dropCollection",
                      "renameCollectionSameDB", "bypassDocumentValidation"}
    # the reader writes saved queries only
    assert {c for c, acts in reader.items() if acts & writes} == {"saved_queries"}
    # inject: files and runs inserted/updated, never removed; no schema change anywhere
    assert writer["files"] == {"insert", "update"} and writer["runs"] == {"insert", "update"}
    assert all("remove" not in acts for c, acts in writer.items() if c != "saved_queries")
    assert not any(acts & schema_changes for acts in writer.values())
    # the admin migrates (indexes, validators, restores by rename) but manages no users or roles;
    # a restore sets validators after loading, so no bypassDocumentValidation: readWrite + collMod
    assert schema_changes - {"bypassDocumentValidation"} <= admin[""] and writes <= admin[""]
    assert "bypassDocumentValidation" not in admin[""]
    assert set().union(*admin.values()) <= READ_WRITE | {"collMod"}
    user_admin = {"createUser", "dropUser", "createRole", "dropRole", "grantRole", "revokeRole",
                  "changePassword", "dropDatabase"}
    assert not any(acts & user_admin for acts in admin.values())


def test_roles_setup_sends_createRole_then_updateRole_when_they_exist(fake):
    url = f"mongodb://{fake.address}/spine_docs"
    code, out, err = cli("roles", "setup", "--db", url)
    assert code == 0, err
    assert out.splitlines() == [f"created role {n} in {url}" for n in ("spine_reader", "spine_writer", "spine_admin")]
    (info,) = fake.sent("rolesInfo")
    assert info["rolesInfo"] == [{"role": n, "db": R} for n in ("spine_reader", "spine_writer", "spine_admin")]
    sent = fake.sent("createRole")
    assert [{k: v for k, v in command(c).items() if k != "writeConcern"} for c in sent] == EXPECTED_ROLES
    assert all(c["writeConcern"]["w"] == "majority" for c in sent)

    # a second run: the roles exist, and are brought back to these privileges
    def existing(request):
        if request.command_name == "rolesInfo":
            return request.ok(roles=[{"role": n, "db": R} for n in ("spine_reader", "spine_writer", "spine_admin")])
        return None

    fake.overrides.append(existing)
    code, out, err = cli("roles", "setup", "--db", url)
    assert code == 0, err
    assert [ln.split()[0] for ln in out.splitlines()] == ["updated"] * 3
    updates = fake.sent("updateRole")
    want = [{"updateRole": r["createRole"], "privileges": r["privileges"], "roles": r["roles"]} for r in EXPECTED_ROLES]
    assert [{k: v for k, v in command(c).items() if k != "writeConcern"} for c in updates] == want
    assert len(fake.sent("createRole")) == 3        # none more


def test_roles_show_prints_the_same_documents():
    import json

    code, out, _ = cli("roles", "show")
    assert code == 0 and json.loads(out) == EXPECTED_ROLES


# --------------------------------------------------------------------------- users

def test_users_add_reads_the_password_at_a_prompt_and_never_logs_it(fake, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"mongodb://{fake.address}/spine_docs"
    code, out, err = cli("users", "add", "explorer", "--role", "reader", "--db", url,
                         input=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0, err
    (created,) = fake.sent("createUser")
    assert {k: v for k, v in command(created).items() if k != "writeConcern"} == {
        "createUser": "explorer", "pwd": PASSWORD, "roles": [{"role": "spine_reader", "db": R}]}
    assert created["writeConcern"]["w"] == "majority"
    assert fake.sent("usersInfo")[0]["usersInfo"] == {"user": "explorer", "db": R}
    assert f"created user explorer (spine_reader) in {url}" in out
    assert PASSWORD not in out + err
    assert caplog.records and not [r for r in caplog.records if PASSWORD in r.getMessage()]


def test_users_add_updates_an_existing_user_from_a_password_file(fake, tmp_path):
    def exists(request):
        if request.command_name == "usersInfo":
            return request.ok(users=[{"user": "ingest", "db": R}])
        return None

    fake.overrides.append(exists)
    pw = secret_file(tmp_path)
    code, out, err = cli("users", "add", "ingest", "--role", "writer", "--password-file", str(pw),
                         "--db", f"mongodb://{fake.address}/spine_docs")
    assert code == 0, err
    (updated,) = fake.sent("updateUser")
    assert {k: v for k, v in command(updated).items() if k != "writeConcern"} == {
        "updateUser": "ingest", "pwd": PASSWORD, "roles": [{"role": "spine_writer", "db": R}]}
    assert not fake.sent("createUser") and "updated user ingest" in out


def test_users_add_refuses_a_password_argument_without_contacting_anything(fake):
    code, out, err = cli("users", "add", "bob", "--role", "reader", "--password", PASSWORD,
                         "--db", f"mongodb://{fake.address}/spine_docs")
    assert code == 2 and "--password-file" in err and "prompt" in err
    assert PASSWORD not in out + err
    assert fake.requests == []


def test_a_missing_role_says_to_run_roles_setup(fake, tmp_path):
    fake.overrides.append(lambda r: r.command_name == "createUser" and r.command_err(
        code=31, errmsg="Could not find role: spine_admin@spine_docs"))
    code, _, err = cli("users", "add", "ops", "--role", "admin", "--password-file", str(secret_file(tmp_path)),
                       "--db", f"mongodb://{fake.address}/spine_docs")
    assert code == 2 and "`spine-docs roles setup` first" in err


def test_a_server_error_that_echoes_the_password_is_scrubbed(fake, tmp_path):
    fake.overrides.append(lambda r: r.command_name == "createUser" and r.command_err(
        code=13, errmsg=f'not authorized to execute command {{ createUser: "ops", pwd: "{PASSWORD}" }}'))
    code, out, err = cli("users", "add", "ops", "--role", "admin", "--password-file", str(secret_file(tmp_path)),
                         "--db", f"mongodb://{fake.address}/spine_docs")
    assert code == 2 and "not authorized" in err and len(err.strip().splitlines()) == 1
    assert PASSWORD not in out + err


@pytest.mark.parametrize("role", ["owner", "root", ""])
def test_an_unknown_role_is_refused(role, fake, tmp_path):
    code, _, err = cli("users", "add", "x", "--role", role, "--password-file", str(secret_file(tmp_path)),
                       "--db", f"mongodb://{fake.address}/spine_docs")
    assert code == 2 and "choose reader, writer or admin" in err and not fake.sent("createUser")


@pytest.mark.parametrize("url, says", [("mongomock://", "has no users"),
                                       ("catalog", "the embedded catalog has no users")])
@pytest.mark.parametrize("args", [["roles", "setup"], ["users", "add", "bob", "--role", "reader"]])
def test_embedded_and_mongomock_say_there_are_no_users(url, says, args, tmp_path):
    code, out, err = cli(*args, "--db", url if "://" in url else str(tmp_path / url), input="x\nx\n")
    assert code == 2 and says in err and "MongoDB server" in err
    assert "password" not in out.lower()                  # refused before any prompt


# --------------------------------------------------------------------------- the password file

@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o666])
def test_a_password_file_open_to_others_is_refused_in_one_line(mode, tmp_path):
    p = secret_file(tmp_path, mode=mode)
    with pytest.raises(access.AccessError) as exc:
        access.read_password_file(p)
    text = str(exc.value)
    assert f"mode {mode:04o}" in text and "chmod 600" in text and "\n" not in text
    assert PASSWORD not in text


def test_the_password_file_holds_the_password(tmp_path):
    assert access.read_password_file(secret_file(tmp_path)) == PASSWORD
    assert access.read_password_file(secret_file(tmp_path, PASSWORD + "\r\n", name="crlf")) == PASSWORD
    assert access.read_password_file(secret_file(tmp_path, PASSWORD, name="bare")) == PASSWORD
    assert access.read_password_file(secret_file(tmp_path, " a b \n", name="spaces")) == " a b "
    for text, why in (("", "is empty"), ("\n", "is empty"), ("x" * 5000, "not a password")):
        with pytest.raises(access.AccessError, match=why):
            access.read_password_file(secret_file(tmp_path, text, name="bad"))
    with pytest.raises(access.AccessError, match="not a regular file"):
        access.read_password_file(tmp_path)
    with pytest.raises(access.AccessError, match="No such file"):
        access.read_password_file(tmp_path / "missing")


def _settings(url: str, **env: str) -> Settings:
    return Settings.load(env={f"SPINE_DOCS_{k.upper()}": v for k, v in env.items()}, db=url)


def test_credentials_come_from_the_file_with_the_user_from_the_url_or_the_environment(tmp_path):
    pw = str(secret_file(tmp_path))
    assert access.credentials(_settings("mongodb://h/db", user="u", password_file=pw)) == \
        {"username": "u", "password": PASSWORD}
    assert access.credentials(_settings("mongodb://u%40x@h/db", password_file=pw)) == \
        {"username": "u@x", "password": PASSWORD}
    assert access.credentials(_settings("mongodb://u:inline@h/db")) == {}       # the URL carries its own
    assert access.credentials(_settings(str(tmp_path / "cat"), password_file=pw)) == {}   # not a server
    for url, env, why in [("mongodb://u:inline@h/db", {"password_file": pw}, "given twice"),
                          ("mongodb://h/db", {"password_file": pw}, "needs a user name"),
                          ("mongodb://a@h/db", {"password_file": pw, "user": "b"}, "two user names"),
                          ("mongodb://h/db", {"user": "u"}, "no password is given")]:
        with pytest.raises(access.AccessError, match=why) as exc:
            access.credentials(_settings(url, **env))
        assert PASSWORD not in str(exc.value) and "inline" not in str(exc.value)


# --------------------------------------------------------------------------- no password anywhere

def test_the_password_from_the_file_reaches_the_server_and_no_message(fake, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    scram = wire_fake.scram_sha256("catalog_reader", PASSWORD)
    fake.overrides.append(scram)
    monkeypatch.setenv("SPINE_DOCS_USER", "catalog_reader")
    monkeypatch.setenv("SPINE_DOCS_PASSWORD_FILE", str(secret_file(tmp_path)))
    url = f"mongodb://{fake.address}/spine_docs"

    db = access.connect(Settings.load(db=url))
    assert scram.verified == ["catalog_reader"]     # the server checked the proof of this password
    assert store.describe(db) == url
    store.close(db)
    code, out, err = cli("migrate", "status", "--db", url)   # connect, read, describe
    assert "database:  " + url in out, err
    assert PASSWORD not in out + err
    assert not [r for r in caplog.records if PASSWORD in r.getMessage()]


@pytest.mark.parametrize("how", ["file", "url"])
def test_a_refused_password_is_in_no_message(how, fake, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    fake.overrides.append(wire_fake.scram_sha256("catalog_reader", "the-right-one"))
    if how == "file":
        monkeypatch.setenv("SPINE_DOCS_PASSWORD_FILE", str(secret_file(tmp_path)))
        url = f"mongodb://catalog_reader@{fake.address}/spine_docs"
    else:
        url = f"mongodb://catalog_reader:{PASSWORD}@{fake.address}/spine_docs"
    with pytest.raises(store.StoreError) as exc:
        access.connect(Settings.load(db=url))
    assert "Authentication failed" in str(exc.value) and PASSWORD not in str(exc.value)
    for args in (["migrate", "status"], ["migrate", "up", "--no-backup"], ["query"], ["runs"]):
        code, out, err = cli(*args, "--db", url)
        assert code == 2 and "Authentication failed" in err, (args, err)
        assert PASSWORD not in out + err
    assert not [r for r in caplog.records if PASSWORD in r.getMessage()]


def test_a_bad_uri_with_a_password_is_shown_without_it():
    with pytest.raises(store.StoreError) as exc:
        store.connect(f"mongodb://u:{PASSWORD}@host:notaport/db")
    assert "bad MongoDB URI" in str(exc.value) and PASSWORD not in str(exc.value)


@pytest.mark.parametrize("apart", [False, True])
def test_a_driver_error_quoting_the_password_is_scrubbed(apart, monkeypatch):
    """pymongo does not quote a password today; if an error ever does, connect hides it."""
    import pymongo

    def quoting(*a, **k):
        raise ValueError(f"cannot use password {PASSWORD} nor {PASSWORD.replace('&', '%26')}")

    monkeypatch.setattr(pymongo, "MongoClient", quoting)
    url = "mongodb://u@h/db" if apart else f"mongodb://u:{PASSWORD.replace('&', '%26')}@h/db"
    with pytest.raises(store.StoreError) as exc:
        store.connect(url, password=PASSWORD if apart else None)
    assert "cannot use password ***" in str(exc.value)
    assert PASSWORD not in str(exc.value) and PASSWORD.replace("&", "%26") not in str(exc.value)


# --------------------------------------------------------------------------- compose.yaml

def test_compose_turns_access_control_on_with_the_passwords_in_secret_files():
    text = (ROOT / "compose.yaml").read_text()
    doc = yaml.safe_load(text)
    secrets = doc["secrets"]
    assert {s["file"] for s in secrets.values()} <= {f"./secrets/{n}" for n in secrets}
    mongo = doc["services"]["mongo"]
    env = mongo["environment"]
    assert env["MONGO_INITDB_ROOT_PASSWORD_FILE"] == "/run/secrets/mongo_root_password"
    assert "MONGO_INITDB_ROOT_PASSWORD" not in env and "mongo_root_password" in mongo["secrets"]
    assert "--auth" in mongo["command"]
    # setup runs as the administrator, the explorer as a reader: both from secret files
    setup, explorer = doc["services"]["setup"], doc["services"]["explorer"]
    assert setup["environment"]["SPINE_DOCS_PASSWORD_FILE"] == "/run/secrets/mongo_root_password"
    assert explorer["environment"]["SPINE_DOCS_PASSWORD_FILE"] == "/run/secrets/spine_explorer_password"
    assert "spine_explorer_password" in explorer["secrets"] and "mongo_root_password" not in explorer["secrets"]
    assert "users add spine_explorer --role reader" in " ".join(setup["command"])
    # no literal password anywhere: every *PASSWORD* variable names a file, no URL has one
    for name, service in doc["services"].items():
        for key, value in (service.get("environment") or {}).items():
            assert "PASSWORD" not in key.upper() or key.upper().endswith("_FILE"), (name, key)
            assert not ("://" in str(value) and "@" in str(value)), (name, key)
    assert not any(line.strip().startswith("MONGO_INITDB_ROOT_PASSWORD:") for line in text.splitlines())
