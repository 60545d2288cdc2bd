"""Version strings (SPINE's, a production's): their ``(major, minor, patch)`` and a key whose
string order is version order (stored as ``spine_version_key``, compared by filters and by
:mod:`spine_docs.supersede`).

Its own module, importing nothing heavy: the writer of an inject orders versions without
loading h5py and numpy, which :mod:`spine_docs.spine` needs for reading files.
"""

from __future__ import annotations

import re
from typing import Any


_VERSION_RE = re.compile(
    r"""^\s*[vV]?
    (?P<release>\d+(?:\.\d+){0,2})
    (?:[-_.]?(?P<pre>a|alpha|b|beta|c|rc|pre|preview)[-_.]?(?P<pre_n>\d+)?)?
    (?:(?:[-_.]?(?:post|rev|r)[-_.]?(?P<post_n>\d+))|(?:-(?P<post_git>\d+)-g[0-9a-fA-F]+))?
    (?:[-_.]?(?P<dev>dev)[-_.]?(?P<dev_n>\d+)?)?
    (?:\+[A-Za-z0-9.]+)?
    \s*$""",
    re.VERBOSE,
)
_PRE_RANK = {"a": "b", "alpha": "b", "b": "c", "beta": "c", "c": "d", "rc": "d", "pre": "d", "preview": "d"}
_MAX_PART = 999_999


def parse_version(version: Any) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of a version string (``"v0.17.1rc2"`` -> ``(0, 17, 1)``)."""
    if not isinstance(version, str):
        return None
    match = _VERSION_RE.match(version)
    if not match:
        return None
    parts = [int(p) for p in match.group("release").split(".")]
    parts += [0] * (3 - len(parts))
    if any(p > _MAX_PART for p in parts):
        return None
    return parts[0], parts[1], parts[2]


def semver_key(version: Any) -> str | None:
    """A string whose ordering is version ordering; None for anything unparsable.

    ``"0.5"`` -> ``"000000.000005.000000~"``. Accepts a leading ``v``, 1 to 3 release numbers
    (each < 10**6), PEP 440 / semver pre-releases (``a``/``alpha``, ``b``/``beta``,
    ``rc``/``c``/``pre``, with ``-``/``.``/``_`` or nothing as separator), ``.postN`` and
    git-describe ``-N-gHASH`` (after the release), ``.devN`` (before whatever it follows) and a
    ignored ``+local`` part. Order: ``dev < a < b < rc < release < post``, so
    ``0.5.0.dev3 < 0.5.0a1 < 0.5.0rc1 < 0.5 == 0.5.0 < 0.5.0.post1 < 0.5.1``.

    Encoding: release ``MMMMMM.mmmmmm.pppppp``, then ``-<rank><NNNNNN>`` for a pre-release
    (rank ``b``/``c``/``d``), ``~p<NNNNNN>`` for a post-release, ``-a<NNNNNN>`` for a dev
    release, and a final ``~``. As ``-`` sorts before ``~``, and a key sorts before any longer
    key it prefixes, plain string comparison is version comparison.
    """
    if not isinstance(version, str) or len(version) > 200:
        return None
    match = _VERSION_RE.match(version)
    if not match:
        return None
    release = parse_version(version)
    if release is None:
        return None
    numbers = [match.group(g) for g in ("pre_n", "post_n", "post_git", "dev_n")]
    if any(n is not None and int(n) > _MAX_PART for n in numbers):
        return None
    key = ".".join(f"{p:06d}" for p in release)
    pre = match.group("pre")
    if pre:
        key += f"-{_PRE_RANK[pre.lower()]}{int(match.group('pre_n') or 0):06d}"
    post = match.group("post_n") or match.group("post_git")
    if post is not None:
        key += f"~p{int(post):06d}"
    if match.group("dev"):
        key += f"-a{int(match.group('dev_n') or 0):06d}"
    return key + "~"
