"""User regexes in the dialect a MongoDB server (PCRE) and Python's ``re`` (the embedded
catalog, mongomock) read alike: translated where the meaning differs, refused where PCRE
lacks the construct. Expected patterns are written out by hand."""

from __future__ import annotations

import re

import pytest

from spine_docs.queries import Filter
from spine_docs.queries.filters import AttrFilter
from spine_docs.queries.pcre import PatternError, to_pcre

W = "A-Za-z0-9_"


@pytest.mark.parametrize("pattern, expected", [
    (r"run_\d+", "run_[0-9]+"),
    (r"\D", "[^0-9]"),
    (r"\w+", "[A-Za-z0-9_]+"),
    (r"\W", "[^A-Za-z0-9_]"),
    (r"a\sb", r"a[\t\n\x0b\f\r ]b"),
    (r"\S", r"[^\t\n\x0b\f\r ]"),
    (r"[\d.]+", "[0-9.]+"),                                 # inside a set: its members
    (r"[^\w-]", "[^A-Za-z0-9_-]"),
    (r"\bab", f"(?:(?<=[{W}])(?![{W}])|(?<![{W}])(?=[{W}]))ab"),
    (r"a\B", f"a(?:(?<=[{W}])(?=[{W}])|(?<![{W}])(?![{W}]))"),
    (r"[\b]", r"[\b]"),                                     # a backspace in both
    (r"\\d", r"\\d"),                                       # an escaped backslash, then d
    (r"(?P<run>\d+)_(?P=run)", "(?P<run>[0-9]+)_(?P=run)"),  # named groups: both have them
    (r"(?i)^/DATA/", r"(?i)^/DATA/"),
    (r"(?i-s:a.b)", r"(?i-s:a.b)"),
    (r"\A/data$", r"\A/data$"),
    (r"[]a]", "[]a]"),                                      # "]" first is a member
    (r"x{2,3}", "x{2,3}"),
    (r"\.h5$", r"\.h5$"),
])
def test_patterns_are_rewritten_to_mean_what_the_server_means(pattern, expected):
    assert to_pcre(pattern) == expected
    re.compile(expected)                                    # the embedded catalog runs it too


@pytest.mark.parametrize("pattern, named", [
    (r"a\Z", r"\Z"),
    (r"(?a)\w", "(?a)"),
    (r"(?L)x", "(?L)"),
    (r"(?u)x", "(?u)"),
    (r"(?ia:x)", "(?a)"),
    (r"\N{EM DASH}", r"\N"),
    (r"\u00e9", r"\u"),
    (r"\U0001F600", r"\U"),
    (r"a\vb", r"\v"),
    (r"[[:alpha:]]", "[:alpha:]"),
    (r"x{,3}", "{,n}"),
    (r"[\D]", r"\D inside [...]"),
])
def test_constructs_pcre_lacks_or_reads_otherwise_are_refused_by_name(pattern, named):
    with pytest.raises(PatternError) as exc:
        to_pcre(pattern)
    assert named in str(exc.value)


def test_a_filter_error_names_the_construct_and_the_query_carries_the_translation():
    with pytest.raises(ValueError, match=r"regular expression 'a\\\\Z' uses \\Z"):
        Filter(path_regex=r"a\Z")
    with pytest.raises(ValueError, match=r"uses the inline flag \(\?a\)"):
        AttrFilter(key="model", op="regex", value=r"(?a)\w")
    with pytest.raises(ValueError, match=r"uses the POSIX class \[:digit:\]"):
        Filter(where={"path": {"$regex": "[[:digit:]]"}})
    f = Filter(path_regex=r"run_\d+")
    assert f.path_regex == r"run_\d+"                       # kept as written (shown, saved)
    assert f.to_mongo() == {"path": {"$regex": "run_[0-9]+"}}
    a = AttrFilter(key="model", op="regex", value=r"^\w+$")
    assert a.to_mongo() == {"attrs.model": {"$regex": "^[A-Za-z0-9_]+$"}}
    assert Filter(where={"path": {"$regex": r"\d"}}).to_mongo() == {"path": {"$regex": r"\d"}}


def test_the_embedded_catalog_matches_digits_as_the_server_does(tmp_path):
    from spine_docs import store

    db = store.connect(tmp_path / "catalog")
    with store.writing(db):
        db.files.insert_many([{"_id": 1, "path": "/run_12"}, {"_id": 2, "path": "/run_\u0661\u0662"}])
    q = Filter(path_regex=r"run_\d+$").to_mongo()
    assert [d["_id"] for d in db.files.find(q)] == [1]      # Arabic-Indic digits are not \d in PCRE
