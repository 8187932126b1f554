"""MLflow's client in a process of its own, for a sweep's driver.

An MLflow write is ~5-10 ms of Python (SQLAlchemy building and running its statements), five of
them per trial.  Sent from the outbox's thread they are off Tune's loop but not off its GIL: Tune's
thread waited for the interpreter while the writes ran, and the driver fell behind bare Tune
(`benchmarks/bench_sweep_scale.py`).  Here each `MlflowClient` call is sent down a pipe to a
child process that makes it and sends back the result (MLflow's entities pickle); the caller's
thread waits on the pipe with the GIL released.

The child is a plain `python -m scaler.client_process` (not `multiprocessing`'s spawn, which
re-imports the caller's `__main__`: a user's script without an `if __name__ == "__main__"` guard
would start its sweep again).  It reads calls until its pipe closes, so it goes when the driver
goes, killed or not.  A call whose child died raises `ConnectionError` and the next call starts a
new child: the outbox retries it like any other tracking outage, and its exactly-once checks (a
write whose reply was lost) apply unchanged.  Errors raised by MLflow in the child are raised in
the caller with their type and message.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from multiprocessing.connection import Connection

__all__ = ["ClientProcess"]


class RemoteError(Exception):
    """An error in the child whose own type could not be sent back."""


def _portable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RemoteError(f"{type(exc).__name__}: {exc}")


def serve(tracking_uri: str, calls: Connection, replies: Connection) -> None:
    """The child's loop: (method, args, kwargs) in, ("ok", result) or ("error", exc) out."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    while True:
        try:
            name, args, kwargs = calls.recv()
        except (EOFError, OSError):  # the driver closed the pipe, or is gone
            return
        try:
            reply = ("ok", getattr(client, name)(*args, **kwargs))
        except Exception as exc:
            reply = ("error", _portable(exc))
        try:
            replies.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # a result that does not pickle
            replies.send(("error", RemoteError(f"{name}: its result could not be sent: {exc}")))


class ClientProcess:
    """Stands in for an `MlflowClient`: the same methods, made in a child process.  Calls from
    several threads are made one at a time."""

    def __init__(self, tracking_uri: str):
        self.tracking_uri = tracking_uri
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._calls: Connection | None = None
        self._replies: Connection | None = None

    def _start(self) -> None:
        call_r, call_w = os.pipe()
        reply_r, reply_w = os.pipe()
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scaler.client_process",
                self.tracking_uri,
                str(call_r),
                str(reply_w),
            ],
            pass_fds=(call_r, reply_w),
            stdin=subprocess.DEVNULL,
        )
        os.close(call_r)
        os.close(reply_w)
        self._calls = Connection(call_w, readable=False)
        self._replies = Connection(reply_r, writable=False)

    def _call(self, name: str, args: tuple, kwargs: dict):
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._stop()
                self._start()
            try:
                self._calls.send((name, args, kwargs))
                status, value = self._replies.recv()
            except (EOFError, OSError) as exc:
                self._stop()
                raise ConnectionError(
                    f"MLflow client process lost during {name}: {exc!r}"
                ) from None
        if status == "error":
            raise value
        return value

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._call(name, args, kwargs)

    def _stop(self) -> None:
        for conn in (self._calls, self._replies):
            if conn is not None:
                conn.close()
        self._calls = self._replies = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)  # its pipe closed: it returns
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        with self._lock:
            self._stop()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


if __name__ == "__main__":
    uri, calls_fd, replies_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    serve(uri, Connection(calls_fd, writable=False), Connection(replies_fd, readable=False))
