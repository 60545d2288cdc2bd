"""Finding the files to index: globs, directories and list files in, the sorted candidate
paths and the problems met out.

Pure filesystem work (no catalog, no h5py, nothing of pymongo): light enough to run in a
worker process of its own while the caller opens the catalog and reads what it holds
(:class:`spine_docs.ingest.Discovery`). On a large tree it is mostly system calls (four
per directory), which a thread of the caller could not overlap with the caller's own
Python work.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .extract import normalise_path


@dataclass
class Problem:
    """A path (or a source) that could not be indexed, and why."""
    path: str
    reason: str


def discover(sources: Sequence[str] = (), source_list: str | os.PathLike[str] | None = None
             ) -> tuple[list[str], list[Problem]]:
    """Expand globs (``**`` recurses), directories (all ``*.h5`` below) and a list file.

    Returns the sorted, de-duplicated, normalised candidate paths and the problems found
    (a glob that matches nothing, an unreadable list file). Directories *matched by a glob*
    stay candidates, so that they are reported as "is a directory" like any other bad path.
    A source that is an existing directory is read as one even when its name holds glob
    characters (``dir[1]``, ``a*b``).
    """
    problems: list[Problem] = []
    found: set[str] = set()
    patterns = list(sources)
    if source_list is not None:
        try:
            with open(source_list, encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        found.add(normalise_path(line))
        except OSError as exc:
            problems.append(Problem(str(source_list), f"cannot read the source list: {exc.strerror or exc}"))
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if os.path.isdir(expanded):  # first: a directory named "dir[1]" is not a glob
            matches = h5_files_below(expanded)
            if not matches:
                problems.append(Problem(pattern, "the directory holds no .h5 files"))
            found.update(normalise_path(m) for m in matches)
        elif glob.has_magic(expanded):
            matches = glob.glob(expanded, recursive=True)
            if not matches:
                problems.append(Problem(pattern, "the pattern matched no files"))
            found.update(normalise_path(m) for m in matches)
        else:
            # a plain path: keep it even if it is missing, so it is reported by path
            found.add(normalise_path(expanded))
    return sorted(found), problems


def h5_files_below(top: str) -> list[str]:
    """What ``glob.glob(top/**/*.h5, recursive=True)`` finds (hidden files and directories
    left out, links to directories followed, unreadable directories skipped), in one
    ``scandir`` per directory where glob makes two."""
    found: list[str] = []
    stack = [top]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                if name.endswith(".h5"):
                    found.append(entry.path)
                try:
                    if entry.is_dir():
                        stack.append(entry.path)
                except OSError:
                    pass
    return found


