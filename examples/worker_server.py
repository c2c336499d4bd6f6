"""A small trio server whose requests are served by worker processes.

Each line a client sends is handed to a fresh worker process (``tr a-z A-Z``
here, standing in for a real tool) started under a nucleus-trio supervisor,
and the worker's output goes back to the client. The supervisor reaps the
workers' orphans, forwards SIGTERM/SIGINT to the running workers... and when
the server stops, no worker outlives it.

Run it: ``python examples/worker_server.py --port 8900``; try it with
``printf 'hello\\n' | nc 127.0.0.1 8900``. ``--self-test`` starts it on a
free port, sends a few requests, checks the answers and stops (CI runs this).
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial

import trio

import nucleus_trio


async def handle(stream: trio.SocketStream, *, supervisor: nucleus_trio.Supervisor) -> None:
    """Serve one client: one worker per line."""
    buffer = b""
    async with stream:
        async for data in stream:
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                reply = await run_worker(supervisor, line)
                await stream.send_all(reply + b"\n")


async def run_worker(supervisor: nucleus_trio.Supervisor, line: bytes) -> bytes:
    """Run one worker on ``line`` and return its output (or an error line)."""
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    try:
        worker = await supervisor.start(["tr", "a-z", "A-Z"], stdin=stdin_read, stdout=stdout_write)
    finally:
        os.close(stdin_read)
        os.close(stdout_write)
    async with trio.lowlevel.FdStream(stdin_write) as to_worker:
        await to_worker.send_all(line)
    output = b""
    async with trio.lowlevel.FdStream(stdout_read) as from_worker:
        async for chunk in from_worker:
            output += chunk
    status = await worker.wait()
    return output if status.code == 0 else b"ERROR"


async def serve(port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on 127.0.0.1:``port`` (0 picks one) until cancelled."""
    async with nucleus_trio.open_supervisor(reap_orphans=True, grace=2.0) as supervisor:
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(partial(handle, supervisor=supervisor), listeners)


async def self_test() -> int:
    """Start the server, ask it three things, check the answers."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, 0)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        answers = []
        async with stream:
            for word in (b"hello", b"trio", b"init"):
                await stream.send_all(word + b"\n")
                answers.append(await stream.receive_some(1024))
        nursery.cancel_scope.cancel()
    expected = [b"HELLO\n", b"TRIO\n", b"INIT\n"]
    print("answers:", answers)
    return 0 if answers == expected else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        return trio.run(self_test)
    trio.run(serve, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
