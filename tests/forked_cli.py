"""`triggerstream` commands run as processes of their own without starting Python for
each: :func:`forked_cli` has the same arguments and result as ``tests.conftest.run_cli``.

A `triggerstream` process spends 0.4 s of a refusal's 0.45 s starting the interpreter
and importing the command. Here one server per test process (tests/forked_cli_server.py)
has imported it, and forks a child per command: the child has its own stdin, stdout,
stderr, environment and arguments, runs what the installed script runs
(``sys.exit(main())``) at the top of the interpreter, and its exit status, its output
and a traceback, if any, are the process's own, as with run_cli.

What a fork cannot change is what was read before the command ran: the environment
variables read at import or at the interpreter's start (``TRIGGERSTREAM_PURE``, the
build of the core, and ``PYTHON*``). A command whose environment differs from the
server's in any of them runs as a new process (run_cli). Tests of the process itself
(the build at import, ``python -m``, signals) use run_cli; tests/unit/test_forked_cli.py
checks that both give the same for each kind of outcome.
"""

from __future__ import annotations

import atexit
import json
import locale
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import TRIGGERSTREAM, run_cli

SERVER = Path(__file__).with_name("forked_cli_server.py")
# The server needs fork, memfd_create and pidfd_open (Linux); elsewhere: run_cli.
FORKS = sys.platform == "linux" and hasattr(os, "memfd_create") and hasattr(os, "pidfd_open")


def _read_before_main(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("PYTHON") or k == "TRIGGERSTREAM_PURE"}


class _Server:
    def __init__(self) -> None:
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TRIGGERSTREAM_") or k == "TRIGGERSTREAM_PURE"
        }
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), TRIGGERSTREAM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
        )
        atexit.register(self.stop)

    def alive(self) -> bool:
        return self.process.poll() is None

    def run(
        self, args: list[str], env: dict[str, str], stdin: bytes, timeout: float
    ) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        body = json.dumps(
            {"args": args, "env": env, "stdin": stdin.decode("latin-1"), "timeout": timeout}
        ).encode()
        self.process.stdin.write(struct.pack(">I", len(body)) + body)
        self.process.stdin.flush()
        head = self.process.stdout.read(4)
        assert len(head) == 4, f"the forked-CLI server ended (exit {self.process.wait()})"
        answer: dict[str, Any] = json.loads(self.process.stdout.read(struct.unpack(">I", head)[0]))
        return answer

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


_server: _Server | None = None


def _text(output: str) -> str:
    """Bytes (sent as latin-1) read as subprocess.run(text=True) reads them."""
    encoding = locale.getpreferredencoding(False)
    return output.encode("latin-1").decode(encoding).replace("\r\n", "\n").replace("\r", "\n")


def forked_cli(
    *args: str, env: dict[str, str], timeout: float = 90, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `triggerstream` with these arguments and this environment, as run_cli does,
    in a child of the server (see the module's docstring). Without ``stdin`` the
    command's stdin is empty."""
    global _server
    if not FORKS:
        return run_cli(*args, env=env, timeout=timeout, stdin=stdin)
    if _server is None or not _server.alive():
        _server = _Server()
    if _read_before_main(env) != _read_before_main(_server.env):
        return run_cli(*args, env=env, timeout=timeout, stdin=stdin)
    answer = _server.run(list(args), env, stdin or b"", timeout)
    command = [TRIGGERSTREAM, *args]
    if answer["timed_out"]:
        raise subprocess.TimeoutExpired(command, timeout)
    return subprocess.CompletedProcess(
        command, answer["returncode"], _text(answer["stdout"]), _text(answer["stderr"])
    )
