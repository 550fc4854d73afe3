"""One engine call at a time per model.

An explanation changes a model for its duration (eval mode, hooks on the target layer, a private copy being
built from its weights) and restores it afterwards. Two overlapping calls on one model, from a widget's
background thread and the user's cell, or from the user's own threads, would interleave those changes: the
second call would save the first call's eval mode as "the caller's" and restore it for good. Every engine
entry point therefore holds the model's lock for its whole save-change-restore window
(:func:`camwidget.engine.hooks.preserved_state` takes it), so calls on one model run one after the other,
whatever threads issue them. Calls on different models do not wait for each other.

The contract for user code: a camwidget call on a model waits for another camwidget call on the same model
to finish. Code of the user's own that runs the model *directly* (``model(x)``) from another thread while a
camwidget call is in progress is not serialised: it sees the model in eval mode and, for gradient methods,
with camwidget's capture hook on the target layer (which leaves outputs unchanged). Run such code on a
copy, or call ``CamExplorer.cancel()`` / wait for the call to return first.
"""

from __future__ import annotations

import threading
import weakref

from torch import nn

__all__ = ["model_lock"]

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises camwidget's calls on ``model`` (created on first use, dropped
    with the model). Re-entrant: an engine call may call another on the same model from the same thread."""
    with _GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock
