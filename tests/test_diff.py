"""``spine-docs diff A B``: the structured diff of two documents (pure), references to files
and versions, and the command (text and JSON). Expected values are written by hand from the
fixtures below."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from spine_docs import diff, extract, ingest
from spine_docs.cli import app
from spine_docs.settings import Settings

from dated import frozen_clock

UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)
runner = CliRunner()

CFG_A = """model:
  network:
    depth: 5
    width: 8
  name: uresnet
io:
  reader:
    file_keys: [in.root]
"""
CFG_B = """model:
  network:
    depth: 6
    width: 8
  name: uresnet
  extra.key: 1
io:
  reader:
    file_keys: [in2.root]
"""
ROOT_A = {"energy": 1.5, "a.b": 1, "$x": "d", "énergie": "α", "arr": np.arange(5), "big": np.arange(5000), "same": 3}
ROOT_B = {"energy": 2.5, "a.b": 2, "$x": "d", "énergie": "β", "arr": np.arange(6), "big": np.arange(1, 5001), "same": 3,
          "new attr": 1, "n": 2.0}
DS_A = {"events": ((10,), "f4"), "x": ((3,), "i4"), "old": ((1,), "f8")}
DS_B = {"events": ((12,), "f4"), "x": ((3,), "i8"), "new": ((2, 2), "u1")}


def write(path, root, cfg, datasets, mtime=T0):
    with h5py.File(path, "w") as f:
        for k, v in root.items():
            f.attrs[k] = v
        info = f.create_group("info")
        info.attrs["cfg"] = cfg
        info.attrs["spine_version"] = "0.17.1"
        for name, (shape, dtype) in datasets.items():
            f.create_dataset(name, shape=shape, dtype=dtype)
    os.utime(path, (mtime.timestamp(),) * 2)
    return path


@pytest.fixture
def pair(tmp_path):
    a = write(tmp_path / "a.h5", ROOT_A, CFG_A, DS_A)
    b = write(tmp_path / "b.h5", {**ROOT_B, "n": 1}, CFG_B, DS_B, T0 + timedelta(hours=1))
    return a, b


def rows(d, section):
    return {r["key"]: (r["change"], r["a"], r["b"]) for r in d[section]}


def test_two_documents(pair):
    a, b = (extract.extract(p, site="s") for p in pair)
    d = diff.diff_documents(a, b)
    assert not d["same"]
    # cfg as key paths at depth, an added key holding a dot is quoted
    assert rows(d, "cfg") == {"model.network.depth": ("changed", 5, 6),
                              "io.reader.file_keys": ("changed", ["in.root"], ["in2.root"]),
                              'model."extra.key"': ("added", None, 1)}
    # root attributes: escaped names shown as written in HDF5, unicode, arrays, summaries
    attrs = rows(d, "attrs")
    assert set(attrs) == {'"a.b"', "arr", "big", "energy", "énergie", '"new attr"', "n"}
    assert attrs["energy"] == ("changed", 1.5, 2.5) and attrs['"a.b"'] == ("changed", 1, 2)
    assert attrs["énergie"] == ("changed", "α", "β") and attrs['"new attr"'] == ("added", None, 1)
    assert attrs["arr"] == ("changed", [0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5])
    assert attrs["big"][0] == "changed" and attrs["big"][1]["summarized"] and attrs["big"][1]["shape"] == [5000]
    assert "$x" not in attrs and '"$x"' not in attrs and "same" not in attrs
    # the structure
    s = d["structure"]
    assert [i["path"] for i in s["added"]] == ["/new"] and s["added"][0]["shape"] == [2, 2]
    assert [i["path"] for i in s["removed"]] == ["/old"]
    assert s["reshaped"] == [{"path": "/events", "a": [10], "b": [12]}]
    assert s["dtype"] == [{"path": "/x", "a": "int32", "b": "int64"}]
    assert {(r["path"], r["field"]) for r in s["changed"]} == {("/events", "nbytes"), ("/x", "nbytes")}
    # facts and promoted fields
    facts = rows(d, "facts")
    assert facts["mtime"][0] == "changed" and facts["inputs"] == ("changed", ["in.root"], ["in2.root"])
    assert "size" not in facts or facts["size"][1] != facts["size"][2]
    assert rows(d, "promoted")["num_events"] == ("changed", 10, 12)
    assert diff.diff_documents(a, a)["same"]


def test_attribute_types_and_a_type_change(tmp_path):
    a = extract.extract(write(tmp_path / "a.h5", {"n": 1}, CFG_A, {}), site="s")
    b = extract.extract(write(tmp_path / "b.h5", {"n": 1.0}, CFG_A, {}), site="s")
    (r,) = diff.diff_documents(a, b)["attrs"]
    assert (r["key"], r["a"], r["b"], r["type_a"], r["type_b"]) == ("n", 1, 1.0, "int", "double")
    text = [t for _, t in diff.text_lines(diff.diff_documents(a, b))]
    assert "  ~ n: 1 -> 1.0  [int -> double]" in text


def test_text_lines(pair):
    a, b = (extract.extract(p, site="s") for p in pair)
    lines = diff.text_lines(diff.diff_documents(a, b))
    assert ("changed", "  ~ model.network.depth: 5 -> 6") in lines
    assert ("added", '  + model."extra.key": 1') in lines
    assert ("added", "  + /new dataset [2, 2] uint8") in lines
    assert ("removed", "  - /old dataset [1] float64") in lines
    assert ("changed", "  ~ /events: shape [10] -> [12]") in lines
    assert ("changed", '  ~ énergie: "α" -> "β"') in lines
    big = [t for _, t in lines if t.startswith("  ~ big: ")]
    assert big and big[0].startswith("  ~ big: <array [5000] int64 sha256:")


def test_show_values():
    assert diff.show("x" * 100, 10) == '"xxxxxx...'
    assert diff.show({"summarized": True, "kind": "string", "size": 70000, "sha256": "abcdef0123456789"}) == \
        "<string 70000 bytes sha256:abcdef01>"
    assert diff.show(datetime(2026, 1, 2, 3, 4, 5, 6000)) == "2026-01-02 03:04:05.006"
    assert diff.key_segment("") == '""' and diff.key_segment("a b") == '"a b"' and diff.key_segment("ab") == "ab"


# --------------------------------------------------------------------------- the command

def run(*args):
    return runner.invoke(app, [str(a) for a in args], env={"SPINE_DOCS_SITE": "dsite", "SPINE_DOCS_WORKERS": "1"})


Clock = frozen_clock(T0)


def inject(db, db_url, *paths):
    rep = ingest.inject(db, settings=Settings.load(env={}, db=db_url, site="dsite", workers=1),
                        sources=[str(p) for p in paths])
    assert rep.failed == 0, rep.problems


def test_cli_two_files_text_and_json(db, db_url, pair):
    a, b = pair
    inject(db, db_url, a, b)
    r = run("diff", a, f"dsite:{b}", "--db", db_url)
    assert r.exit_code == 0, r.output
    out = r.stdout.splitlines()
    assert out[0] == f"A: dsite:{a}" and out[1] == f"B: dsite:{b}"
    assert "  ~ model.network.depth: 5 -> 6" in out and "  - /old dataset [1] float64" in out
    assert "\x1b[" not in r.stdout                              # no colours into a pipe
    r = run("diff", a, b, "--db", db_url, "--format", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["a"]["path"] == str(a) and {c["key"]: c["b"] for c in d["cfg"]}["model.network.depth"] == 6
    r = run("diff", a, a, "--db", db_url)
    assert r.exit_code == 0 and "no differences" in r.stdout


def test_cli_versions_and_dates(db, db_url, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "datetime", Clock)
    p = tmp_path / "f.h5"
    Clock.at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    write(p, {"energy": 1.0}, CFG_A, DS_A)
    inject(db, db_url, p)
    Clock.at = datetime(2026, 3, 5, 12, tzinfo=UTC)
    write(p, {"energy": 2.0}, CFG_B, DS_A, T0 + timedelta(hours=1))
    inject(db, db_url, p)
    r = run("diff", f"{p}@1", f"{p}@2", "--db", db_url)
    assert r.exit_code == 0, r.output
    out = r.stdout.splitlines()
    assert out[0] == f"A: dsite:{p} (version 1)" and out[1] == f"B: dsite:{p} (version 2, current)"
    assert "  ~ energy: 1.0 -> 2.0" in out and "  ~ model.network.depth: 5 -> 6" in out
    r = run("diff", f"{p}@2026-03-02", str(p), "--db", db_url, "-f", "json")
    d = json.loads(r.stdout)
    assert d["a"]["version"]["number"] == 1 and rows(d, "attrs")["energy"] == ("changed", 1.0, 2.0)
    r = run("diff", f"{p}@2026-03-06", str(p), "--db", db_url)
    assert "no differences" in r.stdout
    for ref in (f"{p}@3", f"{p}@0", f"{p}@2026-02-01", tmp_path / "nope.h5"):   # after the last, before the first
        r = run("diff", ref, str(p), "--db", db_url)
        assert r.exit_code == 1 and r.stderr.startswith("spine-docs: ") and len(r.stderr.splitlines()) == 1, r.output


def test_cli_a_path_with_an_at_sign(db, db_url, tmp_path):
    p = write(tmp_path / "f@2.h5", {"energy": 1.0}, CFG_A, DS_A)
    q = write(tmp_path / "g.h5", {"energy": 3.0}, CFG_A, DS_A)
    inject(db, db_url, p, q)
    r = run("diff", p, q, "--db", db_url)
    assert r.exit_code == 0 and "  ~ energy: 1.0 -> 3.0" in r.stdout.splitlines()
