"""What extract() shares between files (ExtractCache, cfg split by entry, dtype memo): the
document must be exactly the one made without any sharing, and the sharing must happen."""

from __future__ import annotations

import copy

import bson
import h5py
import numpy as np
import pytest

from spine_docs import convert, samples, spine
from spine_docs import extract as ex
from spine_docs.extract import ExtractCache, extract

SITE = "s"

BASE_CFG = """\
# a comment before everything
base:
  seed: 1
  world_size: 1
io:
  loader:
    batch_size: 64
    dataset:
      file_keys: ["/data/mpvmpr/larcv/mpvmpr_0001.root"]
      name: larcv
      schema:
        data:
          parser: sparse3d
  writer:
    keys:
    - index
    - run_info
    suffix: full_chain_240819
model:
  name: full_chain
  modules:
    chain: {deghosting: null, segmentation: uresnet}
post:
  topology_threshold:
    ke_thresholds:
      4: 50
      default: 25
"""

#: YAML texts that must parse the same entry by entry as whole, or not be split at all.
TRICKY = [
    BASE_CFG,
    BASE_CFG.replace("mpvmpr_0001", "mpvmpr_0002"),
    "a: 1\nb: 2\na: 3\n",                                   # duplicate keys: last wins
    "true: 1\nnull: 2\n1e3: 3\n'quoted key': 4\n\"dq\": 5\n",  # keys YAML resolves
    "keys:\n- a\n- b\nnext: x\n",                           # indentless sequence at column 0
    "a: \"multi\nb: line\"\nc: 1\n",                        # a quoted scalar over a column-0 line
    "a: [1,\n2]\nb: 1\n",                                   # a flow sequence over lines
    "a: &anchor {x: 1}\nb: *anchor\n",                      # an alias between entries
    "base: &b\n  x: 1\nother:\n  <<: *b\n  y: 2\n",         # a merge key
    "a:\n  text: |2\n      indented\n    more\n  other: 1\n",  # block scalar with indicator
    "a:\n  text: >\n    folded\n    lines\n\n    para\n  b: 2\n",
    "a:\n  - 1\n  - 2\nb: {c: d}\n",                        # nested value a sequence
    "a:\n    deep: 1\n  shallow: 2\n",                      # inconsistent indentation: invalid
    "a:\n  x: 1\n# column-0 comment inside\n  y: 2\n",
    "a:\n  x: 1\n   \n  y: 2\n",                             # blank line with spaces
    "a: !!python/tuple [1, 2]\nb: !custom {x: 1}\n",         # tags
    "---\na: 1\n",                                          # document marker
    "%YAML 1.1\n---\na: 1\n",
    "? complex\n: value\n",
    "- just\n- a list\n",
    "plain scalar\n",
    "a: 1\n\tb: 2\n",                                       # tab at column 0: invalid YAML
    "a:\n  b:\n    c:\n      d: [1, 2, {e: f}]\n      g: 'h'\n  i: 2\nj: 3\n",
    "a: 1\r\nb:\r\n  c: 2\r\n",                              # CRLF line ends
    "\ufeffa: 1\nb: 2\n",                                   # a byte-order mark
    "a: x # comment\nb:   # comment after a key\n  c: 1\n",
    "a.b: 1\n$c: 2\nd:\n  e.f: 3\n",                        # keys that need escaping
    "nested: " + "[" * 40 + "]" * 40 + "\n",              # deeper than convert.MAX_DEPTH
    "n:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(35)) + "  " * 36 + "leaf: 1\n",
]


def whole(text):
    cfg, reason = spine.parse_cfg_checked(text)
    if cfg is None:
        return None, None, reason
    return cfg, convert.safe_document(cfg), None


@pytest.mark.parametrize("text", TRICKY, ids=range(len(TRICKY)))
def test_cfg_by_entry_equals_cfg_parsed_whole(text):
    cache = ExtractCache()
    for _ in range(2):  # cold, then from the cache
        got = ex._parse_cfg(text, cache)
        want = whole(text)
        assert got[:2] == want[:2]
        assert bson.encode({"c": got[1]}) == bson.encode({"c": want[1]})  # same key order
        if want[0] is None:
            assert got[2] == want[2]


def test_split_cfg_parts_join_back_to_the_text():
    parts = spine.split_cfg(BASE_CFG)
    assert parts is not None and "".join(parts) == BASE_CFG
    assert [p.split(":")[0].splitlines()[-1] for p in parts] == ["base", "io", "model", "post"]
    assert spine.split_cfg("a: &x 1\nb: *x\n") is None
    assert spine.split_cfg("? k\n: v\n") is None
    assert spine.split_cfg("- a\n") is None
    assert spine.split_cfg("a: 1\n" + "b: 2\n" * 60_000) is None  # longer than the bound
    key, children = spine.split_cfg_entry(parts[1])
    assert key == "io"
    assert [c.split(":")[0] for c in children] == ["loader", "writer"]
    assert spine.split_cfg_entry("a: 1") is None
    assert spine.split_cfg_entry("a:\n- 1\n") is None


def test_a_new_file_of_a_production_parses_only_what_changed(monkeypatch):
    cache = ExtractCache()
    ex._parse_cfg(BASE_CFG, cache)
    parsed = []
    real = spine.parse_cfg_checked
    monkeypatch.setattr(spine, "parse_cfg_checked",
                        lambda text, **kw: parsed.append(text) or real(text, **kw))
    text = BASE_CFG.replace("mpvmpr_0001", "mpvmpr_0002")
    cfg, converted, _ = ex._parse_cfg(text, cache)
    assert parsed == ['file_keys: ["/data/mpvmpr/larcv/mpvmpr_0002.root"]\n']
    assert cfg == whole(text)[0] and converted == whole(text)[1]


def test_the_cache_is_bounded():
    cache = ExtractCache(max_cfg_entries=8)
    for i in range(50):
        ex._parse_cfg(BASE_CFG.replace("0001", f"{i:04d}"), cache)
    assert len(cache.cfg_entries) <= 8
    assert ex._parse_cfg(BASE_CFG, cache)[0] == whole(BASE_CFG)[0]


def test_documents_never_share_objects_with_the_cache(tmp_path):
    paths = samples.write_prod_tree(tmp_path / "prod", 6, seed=3)
    cache = ExtractCache()
    first = extract(paths[0], site=SITE, cache=cache)
    first["cfg"]["model"]["name"] = "changed"
    if first["job"]:
        first["job"]["changed"] = True
    again = extract(paths[0], site=SITE, cache=cache)
    assert again["cfg"]["model"]["name"] != "changed"
    assert not (again["job"] or {}).get("changed")


def _comparable(doc):
    return bson.encode(doc)  # same values, same types, same key order


def test_extract_with_a_cache_makes_the_documents_made_without(tmp_path):
    paths = samples.write_prod_tree(tmp_path / "prod", 40, seed=7)
    strange = samples.write_strange_files(tmp_path / "strange", big_elements=10_000, wide=50, deep=8)
    paths += [str(p) for k, p in strange.items() if k not in ("directory",)]
    for version, fmt in (("0.10.3", None), ("0.13.0", None), ("0.17.1", 1), ("0.17.1", 2)):
        paths.append(str(samples.write_spine_file(tmp_path / f"f{version}_{fmt}.h5",
                                                  spine_version=version, format_version=fmt)))
    shared = ExtractCache(copy=False)
    for p in paths + paths:  # the second round comes from a warm cache
        assert _comparable(extract(p, site=SITE, cache=shared)) == _comparable(extract(p, site=SITE)), p


def test_dtype_of_is_the_datasets_dtype(tmp_path):
    path = tmp_path / "t.h5"
    kinds = {
        "i8": np.arange(3), "f4": np.ones(2, "f4"), "s": np.array([b"ab"], "S2"),
        "vlen": np.array(["x"], dtype=h5py.string_dtype()),
        "compound": np.zeros(2, [("run", "i4"), ("x", "f8", (2,))]),
        "enum": np.array([1], dtype=h5py.enum_dtype({"A": 1}, basetype="u1")),
    }
    with h5py.File(path, "w") as f:
        for name, data in kinds.items():
            f.create_dataset(name, data=data)
        f.create_dataset("ref", (1,), dtype=h5py.regionref_dtype)
    with h5py.File(path, "r") as f:
        for name in list(kinds) + ["ref"]:
            for _ in range(2):
                got = spine.dtype_of(f[name])
                assert got == f[name].dtype and str(got) == str(f[name].dtype)
                assert h5py.check_enum_dtype(got) == h5py.check_enum_dtype(f[name].dtype)
                assert spine.dtype_of(f[name].id) == f[name].dtype


def test_read_attr_reads_what_h5py_reads(tmp_path):
    from tests.test_convert import write_cases
    path = tmp_path / "all.h5"
    cases = write_cases(path)
    with h5py.File(path, "r") as f:
        raw = {}
        convert.read_attrs(f, raw=raw)
        resolve = lambda r: f[r].name  # noqa: E731
        for name, *_ in cases:
            expected = f.attrs[name]
            aid = f.attrs.get_id(name)
            got = convert._read_attr(aid)
            assert type(got) is type(expected), name
            if isinstance(expected, (np.ndarray, h5py.Empty)):
                assert got.dtype == expected.dtype, name
            if isinstance(expected, np.ndarray):
                assert got.shape == expected.shape, name
            as_bson = [bson.encode({"v": convert.to_bson(v, dtype=aid.dtype, resolve_ref=resolve)})
                       for v in (got, expected)]
            assert as_bson[0] == as_bson[1], name
            assert type(raw[name]) is type(expected), name


def test_run_info_columns_in_one_read_equal_field_by_field(tmp_path):
    path = tmp_path / "r.h5"
    table = np.zeros(50, [("run", "i8"), ("subrun", "u4"), ("event", "f8"), ("big", "f4", (16,))])
    table["run"] = np.arange(50) % 7 - 1
    table["subrun"] = np.arange(50) + 3
    table["event"] = np.where(np.arange(50) % 5 == 0, np.nan, np.arange(50) * 2.0)
    with h5py.File(path, "w") as f:
        f.create_dataset("run_info", data=table)
        f.create_dataset("empty_run_info", data=table[:0])
    with h5py.File(path, "r") as f:
        cols = spine._columns(f["run_info"], ("run", "subrun", "event", "missing", "big"))
        assert set(cols) == {"run", "subrun", "event"}
        for name in ("run", "subrun", "event"):
            assert cols[name].tolist() == spine._clean(f["run_info"].fields(name)[()]).tolist()
        assert {k: v.size for k, v in spine._columns(f["empty_run_info"], ("run",)).items()} == {"run": 0}


def test_structure_lists_named_types_links_and_unreadable_members(tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["named"] = np.dtype("i4")
        f["soft"] = h5py.SoftLink("/nowhere")
        f["ext"] = h5py.ExternalLink("other.h5", "/x/y")
        g = f.create_group("g")
        g.create_dataset("d", data=np.zeros((3, 4), "f4"))
        g.create_dataset("null", dtype="f8", shape=None)
    with h5py.File(path, "r") as f:
        s = ex.read_structure(f, max_items=100, max_depth=4)
    items = {i["path"]: i for i in s["items"]}
    assert items["/named"]["kind"] == "datatype"
    assert items["/soft"] == {"path": "/soft", "kind": "link", "target": "/nowhere"}
    assert items["/ext"] == {"path": "/ext", "kind": "link", "target": "/x/y"}
    assert items["/g/d"] == {"path": "/g/d", "kind": "dataset", "shape": [3, 4], "dtype": "float32",
                             "nbytes": 48}
    assert items["/g/null"]["shape"] is None and items["/g/null"]["nbytes"] == 0
    assert [i["path"] for i in s["items"]] == ["/ext", "/g", "/named", "/soft", "/g/d", "/g/null"]
    deepcopy = copy.deepcopy(s)
    assert deepcopy == s


def test_event_count_from_the_structure_walk_is_the_files(tmp_path):
    paths = [samples.write_spine_file(tmp_path / f"f{v}_{fmt}.h5", spine_version=v, format_version=fmt)
             for v, fmt in (("0.10.3", None), ("0.13.0", None), ("0.17.1", 1), ("0.17.1", 2))]
    linked = tmp_path / "linked.h5"
    with h5py.File(linked, "w") as f:
        f.create_dataset("real_events", data=np.arange(7))
        f["events"] = h5py.SoftLink("/real_events")     # a link: the walk does not follow it
        f.create_dataset("run_info", data=np.zeros(5, [("run", "i4"), ("event", "i4")]))
    scalar = tmp_path / "scalar.h5"
    with h5py.File(scalar, "w") as f:
        f.create_dataset("events", data=3)                 # 0-d: no count
    strange = samples.write_strange_files(tmp_path / "strange", big_elements=1000, wide=20, deep=5)
    for p in paths + [linked, scalar, strange["odd_spine"], strange["deep_wide"]]:
        with h5py.File(p, "r") as f:
            structure = ex.read_structure(f, max_items=256, max_depth=4)
            assert ex._event_count(f, structure) == spine.event_count(f), p
    with h5py.File(linked, "r") as f:
        assert ex._event_count(f, ex.read_structure(f, max_items=256, max_depth=4)) == 7


def test_extract_bson_is_the_document_encoded(tmp_path):
    paths = samples.write_prod_tree(tmp_path / "prod", 5, seed=1)
    paths.append(str(tmp_path / "missing.h5"))
    for p in paths:
        assert ex.extract_bson(p, site=SITE) == bson.encode(extract(p, site=SITE))
