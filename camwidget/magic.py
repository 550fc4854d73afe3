"""The ``%cam`` IPython line magic (``%load_ext camwidget``).

::

    %cam model image [--method hirescam] [--layer features.12] [--class NAME_OR_INDEX | --target VAR]
                     [--methods scorecam,hirescam] [--class-names NAMES] [--preprocess FN] [--topk 5]

``model`` and ``image`` (and the ``--class-names`` / ``--preprocess`` / ``--target`` values) are names of
variables in the notebook; dotted attributes such as ``demo.model`` work too. ``--target`` names a variable
holding a target of :mod:`camwidget.targets` (``Sigmoid(3)``, ``SegmentationClass(15)``, ...) or any
callable ``f(output) -> Tensor[N]``, passed to CamExplorer's ``target=``. If ``model`` is a
:class:`camwidget.models.Pretrained`, its ``model``, ``class_names`` and ``transform`` are used. The
magic returns a :class:`camwidget.CamExplorer`, so it displays when it is the last line of a cell.
Mistakes (unknown variable, bad option, unknown class name) are reported as one-line usage errors,
not tracebacks.
"""

from __future__ import annotations

import argparse
import difflib
import shlex
from typing import Any, NoReturn

__all__ = ["USAGE", "cam_magic", "register"]


class _ParseError(Exception):
    pass


class _HelpShown(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises instead of printing to stderr and exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        raise _ParseError(f"{message}\n{self.format_usage().rstrip()}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            raise _ParseError(message or "invalid arguments")
        raise _HelpShown()


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="%cam",
        description=(
            "Open a CamExplorer on MODEL and IMAGE, both names of notebook variables\n"
            "(MODEL may be a camwidget.models.Pretrained)."
        ),
        epilog="Example: %cam sq image --method hirescam --layer features.12 --class 'tiger cat'",
        add_help=True,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", help="variable holding a torch.nn.Module or a camwidget.models.Pretrained")
    parser.add_argument(
        "image", help="variable holding an image (PIL image, array, tensor) or a list of them"
    )
    parser.add_argument("--method", help="CAM method selected at start, e.g. hirescam")
    parser.add_argument("--layer", help="target layer selected at start, e.g. features.12")
    parser.add_argument(
        "--class",
        dest="target",
        metavar="NAME_OR_INDEX",
        help="class to explain: an index (e.g. 281) or a class name (quote names with spaces)",
    )
    parser.add_argument(
        "--target",
        dest="target_var",
        metavar="VAR",
        help="variable holding a camwidget.targets target or a callable output -> Tensor[N]",
    )
    parser.add_argument("--methods", help="comma-separated methods to offer, e.g. scorecam,hirescam,gradcam")
    parser.add_argument(
        "--class-names", dest="class_names", metavar="VAR", help="variable holding class names"
    )
    parser.add_argument("--preprocess", metavar="VAR", help="variable holding the image -> tensor transform")
    parser.add_argument("--topk", type=int, help="how many top classes to list (default: CamExplorer's)")
    return parser


#: The text ``%cam --help`` prints.
USAGE = _build_parser().format_help()


def _usage_error(message: str) -> Exception:
    try:
        from IPython.core.error import UsageError
    except ImportError:  # pragma: no cover - the magic only runs inside IPython
        return ValueError(message)
    return UsageError(message)


def _lookup(user_ns: dict[str, Any], expr: str, what: str) -> Any:
    """Resolve ``name`` or ``name.attr.attr`` in the notebook namespace, with a did-you-mean hint."""
    head, *attrs = expr.split(".")
    if not head.isidentifier() or not all(a.isidentifier() for a in attrs):
        raise _usage_error(
            f"{what} {expr!r} is not a variable name; assign it to a variable first "
            f"(e.g. x = ...) and pass that name"
        )
    if head not in user_ns:
        visible = [k for k in user_ns if not k.startswith("_")]
        close = difflib.get_close_matches(head, visible, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _usage_error(f"name {head!r} is not defined in the notebook{hint}")
    value = user_ns[head]
    for i, attr in enumerate(attrs):
        if not hasattr(value, attr):
            raise _usage_error(f"{'.'.join([head, *attrs[:i]])!r} has no attribute {attr!r}")
        value = getattr(value, attr)
    return value


def _resolve_target(target: str, class_names: Any) -> int | str:
    """``"281"`` -> 281; a class name -> its index when class names are known (:class:`ClassNames` finds it),
    else the name as given."""
    try:
        return int(target)
    except ValueError:
        pass
    if class_names is None:
        return target
    from camwidget.class_names import ClassNames

    names = ClassNames([str(n) for n in class_names], len(class_names))
    try:
        return names.index(target)
    except ValueError as exc:
        raise _usage_error(f"{exc} (give a class name or an index 0..{len(names) - 1})") from None


def cam_magic(line: str, user_ns: dict[str, Any]) -> Any:
    """Implement ``%cam LINE`` against the namespace ``user_ns``; return the CamExplorer (or None for help).

    Raises ``IPython.core.error.UsageError`` (shown without a traceback) for any mistake in ``line``.
    """
    parser = _build_parser()
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise _usage_error(f"cannot parse {line!r}: {exc}") from None
    if not words:
        raise _usage_error(f"%cam needs a model and an image.\n{parser.format_usage().rstrip()}")
    try:
        args = parser.parse_args(words)
    except _HelpShown:  # argparse has already printed the help text
        return None
    except _ParseError as exc:
        raise _usage_error(str(exc)) from None

    model = _lookup(user_ns, args.model, "model")
    image = _lookup(user_ns, args.image, "image")
    kwargs: dict[str, Any] = {}

    from camwidget.models import Pretrained

    if isinstance(model, Pretrained):
        kwargs["class_names"] = model.class_names
        kwargs["preprocess"] = model.transform
        model = model.model
    if args.class_names is not None:
        kwargs["class_names"] = _lookup(user_ns, args.class_names, "--class-names")
    if args.preprocess is not None:
        kwargs["preprocess"] = _lookup(user_ns, args.preprocess, "--preprocess")

    import torch

    if not isinstance(model, torch.nn.Module):
        raise _usage_error(
            f"{args.model!r} is a {type(model).__name__}, not a torch.nn.Module "
            "or camwidget.models.Pretrained"
        )
    if args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not methods:
            raise _usage_error("--methods needs at least one name, e.g. --methods scorecam,hirescam")
        kwargs["methods"] = methods
    if args.method is not None:
        kwargs["method"] = args.method
    if args.layer is not None:
        kwargs["layer"] = args.layer
    if args.target is not None and args.target_var is not None:
        raise _usage_error("give --class or --target, not both (--target VAR names a target or callable)")
    if args.target is not None:
        kwargs["target"] = _resolve_target(args.target, kwargs.get("class_names"))
    if args.target_var is not None:
        target = _lookup(user_ns, args.target_var, "--target")
        from camwidget.targets import Target

        if not isinstance(target, Target) and not callable(target):
            raise _usage_error(
                f"--target {args.target_var!r} is a {type(target).__name__}, not a camwidget.targets target "
                "or a callable output -> Tensor[N] (for a class, use --class NAME_OR_INDEX)"
            )
        kwargs["target"] = target
    if args.topk is not None:
        if args.topk < 1:
            raise _usage_error(f"--topk must be at least 1, got {args.topk}")
        kwargs["topk"] = args.topk

    import camwidget

    return camwidget.CamExplorer(model, image, **kwargs)


cam_magic_doc = f"%cam: open a CamExplorer from notebook variables.\n\n{USAGE}"


def register(ipython: Any) -> None:
    """Register the ``%cam`` line magic on an IPython shell (called by ``%load_ext camwidget``)."""

    def cam(line: str) -> Any:
        return cam_magic(line, ipython.user_ns)

    cam.__doc__ = cam_magic_doc
    ipython.register_magic_function(cam, magic_kind="line", magic_name="cam")
