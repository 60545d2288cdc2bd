"""File permissions that bite when the tests run as root (CI does).

Root passes every permission check through two capabilities, ``CAP_DAC_OVERRIDE`` and
``CAP_DAC_READ_SEARCH``. :func:`run_python` runs a snippet in a child process that has
dropped both from its bounding set before starting Python again, so the child is still
uid 0 but meets a file's mode bits as its owner does (``chmod 000``: no access). No mount
can deny root a read, hence a child process rather than a read-only mount.
"""

from __future__ import annotations

import os
import subprocess
import sys

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
