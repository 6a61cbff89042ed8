"""The server behind tests/forked_cli.py: imports the ``triggerstream`` command once, then
forks a child for each command it is asked to run. The child is a process of its own
(its own stdin, stdout, stderr, environment, arguments and exit status) that runs what
the installed ``triggerstream`` script runs, ``sys.exit(main())``, at the top level of
the interpreter, and ends as that script ends. What a child does not repeat is starting
the interpreter and importing the command (0.4 s of the 0.45 s a `triggerstream --help`
takes); what the import wrote to stdout or stderr, each child writes first.

Run as ``python tests/forked_cli_server.py TRIGGERSTREAM`` (the path of the installed
script). Requests come on fd 0 and answers go out on fd 1, each a 4-byte length and a
JSON document, read and written with os.read and os.write so that ``sys.stdin`` and
``sys.stdout`` buffer nothing a child would inherit. It ends when fd 0 closes.

Before the command, only standard library modules it imports too are imported."""

import os
import sys

SCRIPT = sys.argv[1]
# As for the script itself: its folder first on sys.path, not this file's (tests/).
sys.path[0] = os.path.dirname(SCRIPT)

import json  # noqa: E402
import select  # noqa: E402
import struct  # noqa: E402
from typing import Any  # noqa: E402


def _captured_import() -> tuple[bytes, bytes]:
    """Import the command with fds 1 and 2 sent to files: what it wrote to each."""
    saved = os.dup(1), os.dup(2)
    files = os.memfd_create("import-stdout"), os.memfd_create("import-stderr")
    os.dup2(files[0], 1)
    os.dup2(files[1], 2)
    try:
        from triggerstream.cli import main  # noqa: F401  (the child's, as the script's)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
    written = []
    for fd in files:
        os.lseek(fd, 0, os.SEEK_SET)
        written.append(_read_all(fd))
        os.close(fd)
    for fd in saved:
        os.close(fd)
    return written[0], written[1]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_exactly(fd: int, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _receive() -> dict[str, Any] | None:
    head = _read_exactly(0, 4)
    if head is None:
        return None
    body = _read_exactly(0, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def _send(answer: dict[str, Any]) -> None:
    body = json.dumps(answer).encode()
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(1, data) :]


def _memfd(name: str, content: bytes = b"") -> int:
    fd = os.memfd_create(name)
    os.write(fd, content)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def serve(imported: tuple[bytes, bytes]) -> None:
    """Answer requests until fd 0 closes (then exit); returns only in a child."""
    import gc
    import threading

    assert threading.active_count() == 1, "importing the command started a thread"
    # What the import made lives on in every child: kept out of the collector's walks,
    # a child does not copy every page of it when it collects or ends (0.1 s -> 0.03 s).
    gc.freeze()
    while True:
        request = _receive()
        if request is None:
            os._exit(0)
        stdin = _memfd("stdin", request["stdin"].encode("latin-1"))
        out, err = _memfd("stdout"), _memfd("stderr")
        pid = os.fork()
        if pid == 0:
            for fd, target in ((stdin, 0), (out, 1), (err, 2)):
                os.dup2(fd, target)
                os.close(fd)
            os.write(1, imported[0])
            os.write(2, imported[1])
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = [SCRIPT, *request["args"]]
            return
        os.close(stdin)
        pidfd = os.pidfd_open(pid)
        finished = select.select([pidfd], [], [], request["timeout"])[0]
        timed_out = not finished
        if timed_out:
            os.kill(pid, 9)
        status = os.waitpid(pid, 0)[1]
        os.close(pidfd)
        written = []
        for fd in (out, err):
            os.lseek(fd, 0, os.SEEK_SET)
            written.append(_read_all(fd).decode("latin-1"))
            os.close(fd)
        _send(
            {
                "returncode": os.waitstatus_to_exitcode(status),
                "stdout": written[0],
                "stderr": written[1],
                "timed_out": timed_out,
            }
        )


if __name__ == "__main__":
    serve(_captured_import())
    # In a child: what the installed script runs, at the top level.
    from triggerstream.cli import main

    sys.argv[0] = sys.argv[0].removesuffix(".exe")
    sys.exit(main())
