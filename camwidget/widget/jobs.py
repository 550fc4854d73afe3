"""A single background thread that keeps computing whatever the widget currently needs.

The widget does not queue jobs: it exposes a *planner* that, asked at any time, names the most
important missing result for the current selection (or None). The worker thread asks, runs that task,
asks again, and sleeps when the planner has nothing left. A change of selection just wakes the thread
(and may cancel the running task when it is no longer wanted), so stale requests never pile up.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BackgroundWorker", "Task"]


@dataclass
class Task:
    """One unit of background work.

    Attributes:
        kind: what it computes ("predict", "map", "preview", "curves").
        key: the cache key of its result.
        label: shown in the widget while it runs ("Score-CAM · layer4").
        run: called in the worker thread with the task itself.
        slow: whether it takes many forward passes (cancellable through its progress callback).
    """

    kind: str
    key: Hashable
    label: str
    run: Callable[[Task], None]
    slow: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    started: float = 0.0

    def cancel(self) -> None:
        """Ask the task to stop at its next progress report."""
        self.cancelled.set()


_LIVE_WORKERS: weakref.WeakSet[BackgroundWorker] = weakref.WeakSet()


@atexit.register
def _close_live_workers() -> None:
    """At interpreter exit, cancel running work and join the threads: a daemon thread killed inside a
    torch kernel aborts the process ("terminate called without an active exception")."""
    for worker in list(_LIVE_WORKERS):
        worker.close(timeout=5.0)


class BackgroundWorker:
    """Runs ``planner()``'s tasks one after the other in a daemon thread.

    Args:
        planner: returns the next :class:`Task` to run, or None when everything needed is done. It is
            called in the worker thread.
        on_idle: called in the worker thread each time the planner runs dry.
        on_crash: called with the exception if the planner itself raises (the worker then idles).
        name: the thread's name.

    The thread holds only weak references to the callbacks' owner, so a forgotten widget can be
    garbage collected; :meth:`close` stops the thread explicitly.
    """

    def __init__(
        self,
        planner: Callable[[], Task | None],
        on_idle: Callable[[], None],
        on_crash: Callable[[BaseException], None],
        name: str = "camwidget-worker",
    ) -> None:
        self._planner = weakref.WeakMethod(planner) if hasattr(planner, "__self__") else lambda: planner
        self._on_idle = weakref.WeakMethod(on_idle) if hasattr(on_idle, "__self__") else lambda: on_idle
        self._on_crash = weakref.WeakMethod(on_crash) if hasattr(on_crash, "__self__") else lambda: on_crash
        self._cond = threading.Condition()
        self._dirty = False
        self._idle = True
        self._closed = False
        self._current: Task | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()
        _LIVE_WORKERS.add(self)

    @property
    def current(self) -> Task | None:
        """The task running now, if any."""
        return self._current

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()

    def wake(self) -> None:
        """Something changed: ask the planner again as soon as the current task ends."""
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
        """Cancel the running task and stop the thread."""
        with self._cond:
            self._closed = True
            if self._current is not None:
                self._current.cancel()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _call(self, ref: Any, *args: Any) -> Any:
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
            while not self._closed:
                try:
                    task = self._call(self._planner)
                except Exception as exc:  # a bug in the planner must not kill the thread
                    self._call(self._on_crash, exc)
                    task = None
                if task is None:
                    break
                with self._cond:
                    self._current = task
                task.started = time.perf_counter()
                try:
                    task.run(task)
                except Exception as exc:  # run() reports its own errors; this is a last resort
                    self._call(self._on_crash, exc)
                finally:
                    with self._cond:
                        self._current = None
                    del task
            if self._closed:
                continue
            try:
                self._call(self._on_idle)
            except Exception as exc:
                self._call(self._on_crash, exc)
            with self._cond:
                if not self._dirty:
                    self._idle = True
                    self._cond.notify_all()
