"""Runs a script of tools/ in a fresh Python process, as a user would, for the tool tests.

:func:`run_script` is one ``python tools/<script> args...`` process. :func:`run_script_cases` runs several
invocations of one script in a single process (``python -m tests.tool_runner``): each goes through the script's own
``cli.run(main)`` with the flags reset to their defaults and its own stdout, stderr and exit status, so that tests of
many bad inputs pay TensorFlow's start-up (4-5 s here) once instead of once per case.
"""

import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
import tempfile
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, *args):
    """``python tools/<script> args...`` from the repository root; the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", script), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def run_script_cases(script, cases, env=None):
    """Each argument list of ``cases`` run as ``tools/<script>`` would run it, all in one process (environment
    ``env``, default this one's), in order; a CompletedProcess per case (its stdout, stderr and exit status alone). A
    case sees the files earlier cases wrote. Output written straight to file descriptor 2 (TensorFlow's C++ logs) is
    not captured."""
    cases = [[str(a) for a in args] for args in cases]
    with tempfile.TemporaryDirectory() as folder:
        request, answer = os.path.join(folder, "cases.json"), os.path.join(folder, "results.json")
        with open(request, "w") as f:
            json.dump({"script": os.path.join(REPO, "tools", script), "cases": cases}, f)
        driver = subprocess.run([sys.executable, "-m", "tests.tool_runner", request, answer],
                                capture_output=True, text=True, cwd=REPO, env=env)
        if not os.path.exists(answer):
            raise AssertionError(f"the case runner of {script} failed (status {driver.returncode}):\n{driver.stderr}")
        with open(answer) as f:
            results = json.load(f)
    return [subprocess.CompletedProcess([script, *args], r["returncode"], r["stdout"], r["stderr"])
            for args, r in zip(cases, results)]


def _exit_status(code):
    """The process exit status ``sys.exit(code)`` gives."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _run_cases(request, answer):
    from absl import flags

    with open(request) as f:
        job = json.load(f)
    script = runpy.run_path(job["script"], run_name="tool_under_test")  # defines the script's flags once
    from hrs_tf import cli

    results = []
    for args in job["cases"]:
        flags.FLAGS.unparse_flags()  # every flag back to its default: nothing leaks from the case before
        sys.argv = [job["script"], *args]
        out, err, status = io.StringIO(), io.StringIO(), 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.run(script["main"])
            except SystemExit as e:
                status = _exit_status(e.code)
            except Exception:  # what the interpreter does with an uncaught exception: a traceback, status 1
                traceback.print_exc()
                status = 1
        results.append({"returncode": status, "stdout": out.getvalue(), "stderr": err.getvalue()})
    with open(answer, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    _run_cases(*sys.argv[1:])
