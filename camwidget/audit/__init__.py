"""Dataset-bias audits: explain every image of a dataset, store the maps, find shortcuts.

- :func:`audit` (:mod:`camwidget.audit.run`): the batched, resumable, torchrun-shardable audit.
- :class:`AuditReport` (:mod:`camwidget.audit.report`): tables, class mean maps, the audited inputs.
- :mod:`camwidget.audit.shortcuts`: shortcut findings (:class:`Shortcut`), also a minority's.
- :mod:`camwidget.audit.counterfactual`: paste/remove a finding's place, count flipped predictions.
- :mod:`camwidget.audit.embedding`: the penultimate embedding each image's row records.
- :mod:`camwidget.audit.slices`: where the model fails without a hypothesis (:class:`Slice`), and the
  2-D embedding map; :mod:`camwidget.audit.confusion`: the confusion matrix and pairs.
- :mod:`camwidget.audit.comparison`: two models' audits of one dataset side by side (:class:`Comparison`).
- :mod:`camwidget.audit.export`: the shareable HTML page and JSON of an audit.
- :class:`AuditExplorer` (:mod:`camwidget.audit.gallery`): the notebook gallery.
- :mod:`camwidget.audit.store`: the SQLite store and :func:`merge_stores`;
  :mod:`camwidget.audit.fingerprint`: what identifies an audit (model, data, transform).
- :mod:`camwidget.audit.synthetic`: a planted-bias dataset and a small CNN, for teaching and tests.

``python -m camwidget.audit --help`` runs an audit from the command line (and under ``torchrun``).

This package shares its name with the function ``camwidget.audit``. Once the package is imported,
``camwidget.audit`` *is* this module, so the module is made callable: ``camwidget.audit(model, data)``
runs :func:`camwidget.audit.run.audit` whichever was imported first.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__all__ = [
    "AuditExplorer",
    "AuditInterrupted",
    "AuditReport",
    "Comparison",
    "Counterfactual",
    "Shortcut",
    "Shortcuts",
    "Slice",
    "audit",
    "merge_stores",
]

_LAZY = {
    "audit": "camwidget.audit.run",
    "AuditInterrupted": "camwidget.audit.run",
    "AuditReport": "camwidget.audit.report",
    "Shortcut": "camwidget.audit.shortcuts",
    "Shortcuts": "camwidget.audit.shortcuts",
    "Counterfactual": "camwidget.audit.counterfactual",
    "Comparison": "camwidget.audit.comparison",
    "Slice": "camwidget.audit.slices",
    "AuditExplorer": "camwidget.audit.gallery",
    "merge_stores": "camwidget.audit.store",
}

if TYPE_CHECKING:  # pragma: no cover
    from camwidget.audit.comparison import Comparison
    from camwidget.audit.counterfactual import Counterfactual
    from camwidget.audit.gallery import AuditExplorer
    from camwidget.audit.report import AuditReport
    from camwidget.audit.run import AuditInterrupted, audit
    from camwidget.audit.shortcuts import Shortcut, Shortcuts
    from camwidget.audit.slices import Slice
    from camwidget.audit.store import merge_stores


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'camwidget.audit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


class _CallableModule(types.ModuleType):
    """``camwidget.audit(...)`` works even when ``camwidget.audit`` resolves to this package."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from camwidget.audit.run import audit as run_audit

        return run_audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
