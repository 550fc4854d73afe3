"""camwidget: class activation maps for image classifiers, explored in a Jupyter widget.

Public API (imported lazily, so ``import camwidget`` stays cheap):

- :func:`explain`, :class:`Explainer`, :data:`METHODS`, :func:`candidate_layers` -- the explainer engine;
  :func:`explain_steps` returns a method's intermediates (:class:`CamSteps`: activations, gradients,
  channel weights, the raw map and each step to the final one).
- :mod:`camwidget.metrics` -- insertion/deletion, Average Drop/Increase/Gain, sanity checks, localisation.
- :class:`CamExplorer`, :func:`show` -- the notebook widget and its static matplotlib counterpart;
  :func:`export_html` saves either as one offline HTML file.
- ``camwidget.concepts(model, images, layer, n=5)`` -- concepts by Deep Feature Factorization
  (:mod:`camwidget.concepts`; the module is callable).
- :mod:`camwidget.record` -- reproducible explanations (``Explainer.record``, ``explain(..., record=True)``).
- :func:`audit`, :class:`AuditReport`, :class:`AuditExplorer` -- dataset-bias audits.
- ``%load_ext camwidget`` registers the ``%cam`` line magic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "explain": "camwidget.engine.explainer",
    "explain_steps": "camwidget.engine.explainer",
    "CamSteps": "camwidget.engine.steps",
    "Explainer": "camwidget.engine.explainer",
    "candidate_layers": "camwidget.engine.layers",
    "METHODS": "camwidget.methods.registry",
    "CamExplorer": "camwidget.widget.explorer",
    "show": "camwidget.widget.figure",
    "export_html": "camwidget.widget.export",
    "audit": "camwidget.audit.run",
    "AuditReport": "camwidget.audit.report",
    "AuditExplorer": "camwidget.audit.gallery",
}

__all__ = [
    "METHODS",
    "AuditExplorer",
    "AuditReport",
    "CamExplorer",
    "CamSteps",
    "Explainer",
    "__version__",
    "audit",
    "candidate_layers",
    "concepts",
    "explain",
    "explain_steps",
    "export_html",
    "load_ipython_extension",
    "record",
    "show",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from camwidget.audit.gallery import AuditExplorer
    from camwidget.audit.report import AuditReport
    from camwidget.audit.run import audit
    from camwidget.engine.explainer import Explainer, explain, explain_steps
    from camwidget.engine.layers import candidate_layers
    from camwidget.engine.steps import CamSteps
    from camwidget.methods.registry import METHODS
    from camwidget.widget.explorer import CamExplorer
    from camwidget.widget.export import export_html
    from camwidget.widget.figure import show


_SUBMODULES = ("concepts", "data", "metrics", "models", "record", "targets")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"camwidget.{name}")
        globals()[name] = value
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'camwidget' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext camwidget``: register the ``%cam`` line magic."""
    from camwidget.magic import register

    register(ipython)
