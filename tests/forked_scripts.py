"""Scripts run as ``python script.py args`` would run them, each in a process forked from one that has imported
xpnet, NumPy and PyTorch once: the benchmark tests' sixteen scripts no longer start an interpreter and import those
each (some 2 to 4 CPU seconds a script).

``ScriptRunner().run(script, *args)`` gives the script's exit status, stdout and stderr. The server process
(``python tests/forked_scripts.py``, started at the first run) reads one request a line on stdin (JSON: the
script, its arguments, two file paths for its output) and forks a child for each: the child sets ``sys.argv`` and
``sys.path[0]`` as the interpreter would, reads stdin from /dev/null, writes stdout and stderr to the files, runs
the script as ``__main__`` (``runpy.run_path``) and exits with the script's status; the server answers with that
status. A script runs in a fresh namespace, so one that forgets an import still fails; whatever it changes
(threads, modules, environment) ends with its child. Two differences from a fresh interpreter: the modules preloaded
are there already, and ``OMP_WAIT_POLICY=PASSIVE`` (which compare.py, lstm_lm.py and profile_step.py set before
importing torch) is set for every script, since OpenMP reads it when torch loads. Off Linux each script runs in an
interpreter of its own, as before: Windows has no fork, and on macOS a child forked after the system's frameworks
loaded (NumPy's Accelerate, torch) may crash (Python's multiprocessing spawns there for that reason).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import runpy
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

PRELOAD = ("numpy", "threadpoolctl", "xpnet", "torch")


def _serve(preload: list[str]) -> None:
    """The server's loop: one forked child a request, one line of JSON back with its exit status."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # the script's own import fails, or takes its path without it, as in a fresh interpreter
    replies = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        replies.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(_child(request))
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


def _child(request: dict) -> int:
    """Runs the request's script in this forked child as the interpreter runs a script; its exit status."""
    code = 1
    try:
        for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                                (2, request["stderr"], os.O_WRONLY)):
            target = os.open(path, flags | (os.O_CREAT | os.O_TRUNC if fd else 0))
            os.dup2(target, fd)
            os.close(target)
        sys.argv = [request["script"], *request["args"]]
        sys.path[0] = os.path.dirname(os.path.abspath(request["script"]))
        try:
            runpy.run_path(request["script"], run_name="__main__")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            if not isinstance(exit_.code, (int, type(None))):
                print(exit_.code, file=sys.stderr)
        except BaseException:  # noqa: BLE001 - reported as the interpreter would, exit status 1
            traceback.print_exc()
        threading._shutdown()  # what the interpreter does at exit: wait for the script's threads, then atexit
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return code


class ScriptRunner:
    """Runs scripts in children of one server process (started at the first ``run``, importing ``preload``);
    ``close()`` ends it."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD) -> None:
        self.preload = preload
        self.server: subprocess.Popen | None = None
        self.files = tempfile.TemporaryDirectory(prefix="xpnet-scripts-")

    def run(self, script: str | Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        if not sys.platform.startswith("linux"):
            return subprocess.run([sys.executable, str(script), *args], stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, timeout=timeout)
        if self.server is None or self.server.poll() is not None:
            self.server = subprocess.Popen([sys.executable, __file__, *self.preload], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True, start_new_session=True)
        out, err = (Path(self.files.name) / name for name in ("stdout", "stderr"))
        request = {"script": str(script), "args": list(args), "stdout": str(out), "stderr": str(err)}
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        reply = self._reply(timeout, script)
        return subprocess.CompletedProcess([str(script), *args], reply["returncode"], out.read_text(),
                                           err.read_text())

    def _reply(self, timeout: float, script: str | Path) -> dict:
        with selectors.DefaultSelector() as selector:
            selector.register(self.server.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout)
        line = self.server.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise subprocess.TimeoutExpired(str(script), timeout) if not ready else RuntimeError(
                f"the script server ended while running {script}")
        return json.loads(line)

    def close(self) -> None:
        if self.server is not None and self.server.poll() is None:
            os.killpg(self.server.pid, signal.SIGKILL)  # the server and a child still running a script
            self.server.wait()
        self.server = None


if __name__ == "__main__":
    _serve(sys.argv[1:])
