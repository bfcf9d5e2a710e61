"""A small pool of sandbox processes that run the symbolic checks under a hard wall-clock limit.

Why processes, and why not `multiprocessing`:
- A time limit must hold in any thread (reward functions run in trainer threads, dataloader workers, Ray actors).
  `signal.alarm` (math-verify's own mechanism) only works in the main thread, and a thread cannot be killed.
- sympy can spend minutes inside one C call (`9**(9**9)`); only killing the process stops it.
- Workers are plain `subprocess.Popen([python, symbolic.py])` speaking JSON lines, not `multiprocessing`
  children: no fork of a multi-threaded (CUDA, NCCL) trainer, no re-import of the user's `__main__`, no global
  start-method state to fight over, and no import of the heavy `mmfinereason` package in the worker.

A check that runs past its deadline gets its worker killed (SIGKILL) and a fresh one started in the background; the
caller sees `TIMEOUT`. Workers are killed at interpreter exit (atexit), exit on their own when their stdin closes,
and poll their parent pid so a SIGKILLed trainer does not leave them behind either. A process forked from a
process that owns a pool (a dataloader worker) gets its own pool: pipes are never shared across processes.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

TIMEOUT = object()
"""Sentinel returned by `SandboxPool.call` when the deadline passed (the worker was killed)."""

_SCRIPT = str(Path(__file__).with_name("symbolic.py"))
_LAUNCH = f"import sys, runpy; del sys.path[0]; runpy.run_path({_SCRIPT!r}, run_name='__main__')"
_STARTUP_TIMEOUT_S = 120.0  # a cold start on a loaded node; not part of any check's time limit


class SandboxError(RuntimeError):
    """The worker raised (parser error, MemoryError) or died; the check counts as not equivalent."""


class _Worker:
    def __init__(self, memory_mb: int) -> None:
        env = dict(os.environ, MMFINEREASON_VERIFY_MEMORY_MB=str(memory_mb), PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(
            # `-c` + run_path instead of `python symbolic.py`: the script's folder must not go on sys.path, or
            # our modules would shadow the standard library's for sympy (`numbers`, …) in the worker.
            [sys.executable, "-u", "-c", _LAUNCH],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self.buffer = b""
        self.ready = False

    def _read_line(self, deadline: float) -> bytes | None:
        """One line from the worker, or None at the deadline. Raises SandboxError if the worker died."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise SandboxError("verification worker exited")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def wait_ready(self, deadline: float) -> bool:
        """True once the worker has imported sympy; False if `deadline` passed first (it keeps starting)."""
        if self.ready:
            return True
        line = self._read_line(deadline)
        if line is None:
            return False
        if not json.loads(line).get("ready"):
            raise SandboxError("verification worker sent an unexpected greeting")
        self.ready = True
        return True

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover — SIGKILL does not fail on Linux
            pass


class SandboxPool:
    """Run `symbolic.OPS[op](*args)` in a worker process, returning within `timeout` seconds whatever happens.

    Args:
        max_workers: concurrent checks (callers in several threads); more callers wait for a free worker, and that
            wait counts against their deadline.
        memory_mb: address-space limit of each worker (RLIMIT_AS); 0 disables it.
    """

    def __init__(self, max_workers: int = 2, memory_mb: int = 2048) -> None:
        self.max_workers = max_workers
        self.memory_mb = memory_mb
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._cond = threading.Condition()
        self._pid = os.getpid()
        self._closed = False
        self._warm = False  # set once a worker has started: later start-ups count against the check's limit

    def _take(self, deadline: float) -> _Worker | None:
        with self._cond:
            while True:
                if self._closed:
                    raise SandboxError("sandbox pool is shut down")
                if self._idle:
                    return self._idle.pop()
                if len(self._all) < self.max_workers:
                    worker = _Worker(self.memory_mb)
                    self._all.add(worker)
                    return worker
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    return None

    def _give_back(self, worker: _Worker) -> None:
        with self._cond:
            if self._closed:
                worker.kill()
            else:
                self._idle.append(worker)
            self._cond.notify()

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker and start its successor now, so the next check does not pay the start-up."""
        worker.kill()
        with self._cond:
            self._all.discard(worker)
            if not self._closed:
                fresh = _Worker(self.memory_mb)
                self._all.add(fresh)
                self._idle.append(fresh)
            self._cond.notify()

    def call(self, op: str, *args, timeout: float = 2.0):
        """The op's result, `TIMEOUT` if the deadline passed, or SandboxError if the op raised or the worker died.

        The pool's first worker start-up (about half a second) is not counted in `timeout`; after that, waiting for a
        replacement worker to start counts, so a call never outlasts `timeout` by more than a few milliseconds.
        """
        deadline = time.monotonic() + timeout
        worker = self._take(deadline)
        if worker is None:
            return TIMEOUT
        try:
            if not worker.ready:
                if not self._warm:  # the pool's very first start is not the check's fault: wait it out
                    if not worker.wait_ready(time.monotonic() + _STARTUP_TIMEOUT_S):
                        raise SandboxError(f"verification worker did not start within {_STARTUP_TIMEOUT_S:.0f} s")
                    deadline = time.monotonic() + timeout
                elif not worker.wait_ready(deadline):  # a replacement still starting: the limit holds
                    self._give_back(worker)
                    return TIMEOUT
                self._warm = True
            worker.proc.stdin.write(json.dumps({"op": op, "args": list(args)}).encode() + b"\n")
            worker.proc.stdin.flush()
            line = worker._read_line(deadline)
        except (SandboxError, OSError, ValueError) as exc:
            self._replace(worker)
            raise SandboxError(str(exc)) from exc
        if line is None:
            self._replace(worker)
            return TIMEOUT
        self._give_back(worker)
        reply = json.loads(line)
        if "error" in reply:
            raise SandboxError(reply["error"])
        return reply["ok"]

    def pids(self) -> list[int]:
        with self._cond:
            return [w.proc.pid for w in self._all]

    def shutdown(self) -> None:
        """Kill every worker (idempotent). Called at interpreter exit."""
        with self._cond:
            self._closed = True
            workers, self._all, self._idle = list(self._all), set(), []
            self._cond.notify_all()
        if os.getpid() != self._pid:  # inherited through fork: the workers belong to the parent
            return
        for worker in workers:
            worker.kill()


_POOL: SandboxPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> SandboxPool:
    """The process-wide pool, created on first use (and re-created in a forked child)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._pid != os.getpid() or _POOL._closed:
            workers = int(os.environ.get("MMFINEREASON_VERIFY_WORKERS", "2"))
            memory = int(os.environ.get("MMFINEREASON_VERIFY_MEMORY_MB", "2048"))
            _POOL = SandboxPool(max_workers=max(workers, 1), memory_mb=memory)
        return _POOL


def shutdown() -> None:
    """Kill the sandbox workers now; the next check starts new ones."""
    with _POOL_LOCK:
        pool = _POOL
    if pool is not None and pool._pid == os.getpid():
        pool.shutdown()


def _forget_after_fork() -> None:
    """In a forked child the parent's workers and locks are not ours: start clean (a lock may have been held)."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget_after_fork)
