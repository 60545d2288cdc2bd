"""Shared fixtures: one database per test, on every kind of catalog.

``db`` / ``db_url`` are parametrised over ``backend``:

* ``mongomock`` - ``mongomock://t<hex>``: in memory; the same name is shared in-process, so a
  test and the CLI it runs (CliRunner) see the same data;
* ``embedded`` - ``<tmp_path>/catalog``: the embedded catalog (writes need
  ``store.writing(db)``; ``store.close(db)`` + ``store.connect(url)`` re-reads the files);
* ``server`` - a real MongoDB when ``SPINE_DOCS_TEST_URI`` is set (a unique database per
  test, dropped afterwards); skipped otherwise.

A test using both ``db`` and ``db_url`` gets the same catalog in both. Restrict a test (or
a module, with ``pytestmark``) to some backends with ``@pytest.mark.backends("mongomock",
"embedded")`` or leave some out with ``@pytest.mark.skip_backends("server")``.
"""

from __future__ import annotations

import os
import re
import uuid

import pytest

BACKENDS = ("mongomock", "embedded", "server")
SERVER_ENV = "SPINE_DOCS_TEST_URI"


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run the db/db_url fixtures only on "
                            "these backends (mongomock, embedded, server)")
    config.addinivalue_line("markers", "skip_backends(*names): do not run the db/db_url "
                            "fixtures on these backends")


def server_url(base: str, db_name: str) -> str:
    """``base`` (a mongodb:// or mongodb+srv:// URI) pointing at database ``db_name``."""
    m = re.match(r"^(mongodb(?:\+srv)?://[^/?]*)(/[^?]*)?(\?.*)?$", base)
    if not m:
        raise ValueError(f"{SERVER_ENV} is not a mongodb:// URI: {base!r}")
    return f"{m.group(1)}/{db_name}{m.group(3) or ''}"


def _wanted(node, name: str) -> str | None:
    """Why ``name`` is not wanted for this test (None when it is)."""
    only = node.get_closest_marker("backends")
    if only is not None and name not in only.args:
        return f"this test runs on {', '.join(only.args)} only"
    skip = node.get_closest_marker("skip_backends")
    if skip is not None and name in skip.args:
        return f"this test does not run on {name}"
    return None


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No ``SPINE_DOCS_*`` variable of the caller's shell, and the test's own directory as
    the current one (what a command finds there, ``.spine_docs/``, is the test's)."""
    for k in [k for k in os.environ if k.startswith("SPINE_DOCS_")]:
        monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """The kind of catalog: ``mongomock``, ``embedded`` or ``server``."""
    name = request.param
    reason = _wanted(request.node, name)
    if reason:
        pytest.skip(reason)
    if name == "server" and not os.environ.get(SERVER_ENV):
        pytest.skip(f"no MongoDB server: set {SERVER_ENV}=mongodb://host:port to run on one")
    return name


@pytest.fixture
def db_url(backend, tmp_path):
    """The URL of a fresh, empty catalog of kind ``backend`` (removed after the test)."""
    from spine_docs import store

    tag = uuid.uuid4().hex[:10]
    if backend == "mongomock":
        url = f"mongomock://t{tag}"
    elif backend == "embedded":
        url = str(tmp_path / "catalog")
    else:
        url = server_url(os.environ[SERVER_ENV], f"spine_docs_test_{tag}")
    yield url
    if backend == "embedded":
        return
    try:
        db = store.connect(url, timeout_ms=3000)
    except store.StoreError:
        return
    db.client.drop_database(db.name)
    store.close(db)


@pytest.fixture
def db(db_url):
    """A connected Database on the catalog of ``db_url``."""
    from spine_docs import store

    database = store.connect(db_url)
    yield database
    store.close(database)
