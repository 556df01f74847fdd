"""Runs a script of tools/ in a fresh Python process, as a user would, for the tool tests."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, *args):
    """``python tools/<script> args...`` from the repository root; the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", script), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)
