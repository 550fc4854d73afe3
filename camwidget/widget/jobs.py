"""A single background thread that keeps computing whatever the widget currently needs.

The widget does not queue jobs: it gives the worker a *planner* that, asked at any time, names the most
important missing result for the current selection (or None), and a *runner* that computes it. The thread
asks, runs, asks again, and sleeps when the planner has nothing left. A change of selection just wakes the
thread (and may cancel the running job when it is no longer wanted), so stale requests never pile up.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["BackgroundWorker", "Job"]


class Job(Protocol):
    """What the worker needs of a unit of work: a way to ask it to stop."""

    def cancel(self) -> None: ...


J = TypeVar("J", bound=Job)

_LIVE_WORKERS: weakref.WeakSet[BackgroundWorker[Any]] = weakref.WeakSet()


@atexit.register
def _close_live_workers() -> None:
    """At interpreter exit, cancel running work and join the threads: a daemon thread killed inside a
    torch kernel aborts the process ("terminate called without an active exception")."""
    for worker in list(_LIVE_WORKERS):
        worker.close(timeout=5.0)


def _weak(fn: Callable[..., Any]) -> Callable[[], Callable[..., Any] | None]:
    return weakref.WeakMethod(fn) if hasattr(fn, "__self__") else (lambda: fn)  # type: ignore[arg-type]


class BackgroundWorker(Generic[J]):
    """Runs ``plan()``'s jobs one after the other, each with ``run(job)``, in a daemon thread.

    Args:
        plan: returns the next job, or None when everything needed is done (called in the thread).
        run: computes one job (called in the thread; reports its own errors).
        on_idle: called in the thread each time the planner runs dry.
        on_crash: called with the exception if ``plan``/``run``/``on_idle`` raise (the worker then idles).
        name: the thread's name.

    The thread holds only weak references to the callbacks' owner, and stops when the owner is garbage
    collected; :meth:`close` stops it explicitly.
    """

    def __init__(
        self,
        plan: Callable[[], J | None],
        run: Callable[[J], None],
        on_idle: Callable[[], None],
        on_crash: Callable[[BaseException], None],
        name: str = "camwidget-worker",
    ) -> None:
        self._plan, self._run = _weak(plan), _weak(run)
        self._on_idle, self._on_crash = _weak(on_idle), _weak(on_crash)
        self._cond = threading.Condition()
        self._dirty = False
        self._idle = True
        self._closed = False
        self._current: J | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        owner = getattr(plan, "__self__", None)
        if owner is not None:  # the owner forgotten: let the thread end (no join from a finaliser)
            weakref.finalize(owner, self._stop)
        _LIVE_WORKERS.add(self)

    @property
    def current(self) -> J | None:
        """The job running now, if any."""
        return self._current

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()

    def wake(self) -> None:
        """Something changed: ask the planner again as soon as the current job ends."""
        with self._cond:
            self._dirty = True
            self._idle = False
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until the planner has nothing left (True) or ``timeout`` seconds pass (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not (self._idle and not self._dirty) and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Cancel the running job and stop the thread (waiting up to ``timeout`` seconds for it)."""
        self._stop()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _stop(self) -> None:
        with self._cond:
            self._closed = True
            if self._current is not None:
                self._current.cancel()
            self._cond.notify_all()

    def _call(self, ref: Callable[[], Callable[..., Any] | None], *args: Any) -> Any:
        fn = ref()
        if fn is None:  # the owner is gone
            with self._cond:
                self._closed = True
            return None
        return fn(*args)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._idle = True
                    self._cond.notify_all()
                    return
                self._dirty = False
            try:
                while not self._closed:
                    job = self._call(self._plan)
                    if job is None:
                        break
                    with self._cond:
                        self._current = job
                    try:
                        self._call(self._run, job)
                    finally:
                        with self._cond:
                            self._current = None
                        del job
                if not self._closed:
                    self._call(self._on_idle)
            except Exception as exc:  # a bug in a callback must not kill the thread
                self._call(self._on_crash, exc)
            with self._cond:
                if not self._dirty:
                    self._idle = True
                    self._cond.notify_all()
