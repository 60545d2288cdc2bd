"""A filter's trouble on the wire (pymongo's real network path against ``wire_fake``): an
``OperationFailure`` the server answers to a query's ``find``/``aggregate`` is shown as the
filter's error, not as a database that stopped answering; selected values travel as
``$literal`` where a ``$`` value could be read as a field path."""

from __future__ import annotations


import pytest

pytest.importorskip("mockupdb")
from typer.testing import CliRunner  # noqa: E402

import wire_fake  # noqa: E402
from spine_docs.cli import app  # noqa: E402

BAD_REGEX = "Regular expression is invalid: missing closing parenthesis"


@pytest.fixture
def fake(clean_env):
    f = wire_fake.FakeServer().start()
    f.overrides.append(wire_fake.Catalog())
    yield f
    f.stop()


def refuse_queries(fake, command):
    def answer(request):
        if request.command_name == command and request.doc.get(command) == "files":
            return request.command_err(code=51091, errmsg=BAD_REGEX)
        return None

    fake.overrides.insert(0, answer)


def run(fake, *args):
    return CliRunner().invoke(app, [*args, "--db", f"mongodb://{fake.address}/spine_docs"])


@pytest.mark.parametrize("command, argv", [
    ("find", ["query", "--format", "paths"]),
    ("aggregate", ["facets"]),
])
def test_a_query_the_server_refuses_is_the_filters_error(fake, command, argv):
    refuse_queries(fake, command)
    res = run(fake, *argv, "--path-contains", "x")
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert res.stderr.strip().splitlines() == [f"spine-docs: the database refused the query: {BAD_REGEX}"]


def test_a_selected_value_that_starts_with_a_dollar_is_sent_as_a_literal(fake):
    # (with another condition: with none, the selection is put first in Python, after the
    # retired files' counts are subtracted, and is sent nowhere)
    res = run(fake, "facets", "--dataset", "$oops", "--dataset", "$$ROOT", "--site", "s")
    assert res.exit_code == 0, res.output
    pipelines = [a["pipeline"] for a in fake.sent("aggregate", "files")]
    selected = [s["$addFields"]["selected"] for p in pipelines for s in p if "$addFields" in s]
    assert selected == [{"$in": ["$_id", {"$literal": ["s"]}]},                 # site's facet
                        {"$in": ["$_id", {"$literal": ["$oops", "$$ROOT"]}]}]   # dataset's
