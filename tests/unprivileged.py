"""File permissions that bite when the tests run as root (CI does).

Root passes every permission check through two capabilities, ``CAP_DAC_OVERRIDE`` and
``CAP_DAC_READ_SEARCH``. :func:`run_python` runs a snippet in a child process that has
dropped both from its bounding set before starting Python again, so the child is still
uid 0 but meets a file's mode bits as its owner does (``chmod 000``: no access). No mount
can deny root a read, hence a child process rather than a read-only mount.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# CAP_DAC_OVERRIDE = 1, CAP_DAC_READ_SEARCH = 2; prctl option PR_CAPBSET_DROP = 24
_DROP_THEN_EXEC = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):
    if libc.prctl(24, cap, 0, 0, 0) != 0:
        sys.stderr.write(f"prctl(PR_CAPBSET_DROP, {cap}) failed: {os.strerror(ctypes.get_errno())}")
        sys.exit(77)
os.execv(sys.executable, [sys.executable] + sys.argv[1:])
"""


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -c code args...`` as an ordinary user would meet file permissions; skips
    the test (saying why) when running as root without the right to drop capabilities."""
    cmd = [sys.executable, "-c", code, *map(str, args)]
    if os.geteuid() == 0:
        cmd = [sys.executable, "-c", _DROP_THEN_EXEC, *cmd[1:]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if os.geteuid() == 0 and out.returncode == 77:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE (no CAP_SETPCAP): "
                    f"root reads anything, so permissions cannot be shown ({out.stderr.strip()})")
    return out


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """Make the existing directory ``path`` and everything under it read-only for this
    process for the block. Root writes through permission bits, so as root it is a read-only
    bind mount of itself (unmounted afterwards); the test is skipped, saying why, where
    mounting is not allowed (a container without CAP_SYS_ADMIN). Otherwise every directory
    and file loses its write bits (restored afterwards)."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p, mode in modes.items():
            p.chmod(mode & ~0o222)
        try:
            yield path
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if not shutil.which("mount"):
        pytest.skip("running as root without a mount command: a read-only directory cannot be made")
    bound = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"running as root and mount is not allowed here ({bound.stderr.strip()}): "
                    "a read-only directory cannot be made")
    try:
        remount = subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True, text=True)
        if remount.returncode != 0:
            pytest.skip(f"running as root and cannot remount read-only ({remount.stderr.strip()})")
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)
