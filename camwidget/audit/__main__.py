"""Command line: ``python -m camwidget.audit`` (also under ``torchrun``), and ``... merge``.

``python -m camwidget.audit --help`` explains every option with an example. Errors in what the user
typed (an unknown method, layer or metric, a missing folder, a store that cannot be used) end with one
line that names the problem and the valid choices, exit status 2. Ctrl-C (or SIGTERM) ends with one
line saying how many images are stored and how to resume, exit status 130; under ``torchrun`` only rank
0 prints it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import os
import signal
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["load_object", "main"]

PROG = "python -m camwidget.audit"

EXAMPLES = """\
Example:
  # camwidget's own offline ImageNet SqueezeNet on a folder of photos (root/<class>/<image>), watching
  # the top-left 32x32 pixels of the 224x224 model input for a watermark:
  python -m camwidget.audit --model camwidget.models:squeezenet1_1_imagenet --dataset photos/ \\
      --region watermark=0,0,32,32 --store photos_audit.sqlite

  # your model and dataset from a Python file, 4 processes (or GPUs), small 32x32 inputs:
  torchrun --nproc-per-node 4 -m camwidget.audit --model train.py:make_model \\
      --dataset train.py:val_set --transform train.py:eval_transform --class-names classes.txt \\
      --region corner=0,0,8,8 --store val_audit.sqlite

  # merge the shard files of a torchrun audit run on several machines:
  python -m camwidget.audit merge val_audit.sqlite node1/val_audit.rank*.sqlite

Rerun the same command to resume an interrupted audit. Open the result in Python with
camwidget.AuditReport.load(STORE), or in a notebook with camwidget.AuditExplorer.
"""


_DESCRIPTION = "\n\n".join(
    textwrap.fill(paragraph, 100)
    for paragraph in (
        "Audit an image classifier on a dataset: explain every image with a class activation map, store "
        "the results in an SQLite file (resumable: rerun the same command), report classes some of whose "
        "images lean on a named region or a fixed spot (shortcuts). Runs under torchrun, one shard per "
        "process.",
        "Preprocessing: a folder (ImageFolder layout, root/<class>/<image>) is read with --transform if "
        "given, else with the model's own transform when --model gives a camwidget.models.Pretrained, "
        "else resize 256, centre crop 224, ToTensor, ImageNet mean/std normalisation. A dataset given as "
        "module:attr must yield preprocessed (3, H, W) float tensors, unless --transform is given. "
        "Thumbnails are un-normalised with the mean/std of a Normalize inside the transform.",
        "Regions (--region) are boxes in pixels of the model input, after preprocessing: 0..224 with "
        "the default 224 crop.",
    )
)


class UsageError(Exception):
    """Something the user typed cannot be used; the message says what and the valid choices."""


def _methods() -> tuple[str, ...]:
    from camwidget.methods.registry import METHODS

    return tuple(METHODS)


def _is_factory(obj: Any) -> bool:
    """A callable to call without arguments (a class, or a function with no required parameter)."""
    if isinstance(obj, type):
        return True
    if not callable(obj):
        return False
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in sig.parameters.values()
    )


def load_object(spec: str, what: str) -> Any:
    """``"pkg.module:attr"`` or ``"path/file.py:attr"`` -> the object.

    A factory (a class, or a function taking no argument) is called; a model, a dataset, or a callable
    taking arguments (a transform) is returned as it is.

    Raises:
        UsageError: no ``:``, a missing file or module, or a missing attribute.
    """
    if ":" not in spec:
        raise UsageError(f"--{what} {spec!r}: expected module.path:attribute or file.py:attribute")
    module_name, _, attr = spec.rpartition(":")
    if module_name.endswith(".py") or os.sep in module_name:
        path = Path(module_name)
        if not path.exists():
            raise UsageError(f"--{what}: no such file {module_name!r}")
        name = f"_camwidget_cli_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise UsageError(f"--{what} {spec!r}: no module named {exc.name!r}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise UsageError(f"--{what}: {module_name!r} has no attribute {attr!r}") from None
    import torch
    from torch.utils.data import DataLoader, Dataset

    if isinstance(obj, (torch.nn.Module, Dataset, DataLoader)):
        return obj
    if _is_factory(obj):
        obj = obj()
    return obj


def _region(text: str) -> tuple[str, tuple[float, ...]]:
    name, sep, coords = text.partition("=")
    try:
        box = tuple(float(v) for v in coords.split(","))
    except ValueError:
        box = ()
    if not sep or len(box) != 4:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=x0,y0,x1,y1 in pixels of the model input, e.g. watermark=0,0,32,32"
        )
    return name, box


#: ``--target KIND:C``: the camwidget.targets class for each kind of class score.
_TARGET_KINDS = ("logit", "probability", "sigmoid")


def _target(spec: str) -> Any:
    """``--target``: ``C`` (a class index), ``logit:C`` / ``probability:C`` / ``sigmoid:C`` (the
    :mod:`camwidget.targets` target of that class), or module.path:attr / file.py:attr giving a target or
    a callable ``f(output) -> Tensor[N]`` (a factory without arguments is called)."""
    from camwidget import targets

    if spec.strip().isdigit():
        return int(spec)
    kind, sep, value = spec.partition(":")
    if sep and kind.strip().lower() in _TARGET_KINDS:
        if not value.strip().isdigit():
            raise UsageError(f"--target {spec!r}: expected {kind}:C with C a class index, e.g. {kind}:3")
        make = {"logit": targets.Logit, "probability": targets.Probability, "sigmoid": targets.Sigmoid}
        return make[kind.strip().lower()](int(value))
    if not sep:
        raise UsageError(
            f"--target {spec!r}: expected a class index, {', '.join(k + ':C' for k in _TARGET_KINDS)}, or "
            "module.path:attr / file.py:attr (a camwidget.targets target or a callable output -> scores)"
        )
    target = load_object(spec, "target")
    if not callable(target):
        raise UsageError(f"--target {spec!r} gave a {type(target).__name__}, not a target or a callable")
    return target


def _metrics(text: str) -> tuple[str, ...]:
    from camwidget.audit.run import METRICS

    chosen = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown metric {', '.join(unknown) or repr(text)}; choose from {', '.join(METRICS)} "
            "(comma-separated)"
        )
    return chosen


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (the full usage is one ``--help`` away)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    methods = _methods()
    p = _Parser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_DESCRIPTION,
        epilog=EXAMPLES,
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="SPEC",
        help="module.path:attr or file.py:attr: an nn.Module, a factory returning one, or a "
        "camwidget.models.Pretrained (e.g. camwidget.models:squeezenet1_1_imagenet), whose transform, "
        "class names and normalisation are then used",
    )
    p.add_argument(
        "--dataset",
        required=True,
        metavar="FOLDER|SPEC",
        help="a folder in ImageFolder layout, or module.path:attr / file.py:attr (a map-style Dataset, a "
        "DataLoader, or a factory) yielding (image, label) or (image, label, box)",
    )
    p.add_argument(
        "--transform",
        metavar="SPEC",
        help="module.path:attr or file.py:attr: the transform applied to each image (a callable taking "
        "the image), or a function without arguments returning it",
    )
    p.add_argument(
        "--class-names",
        metavar="FILE|SPEC",
        help="one name per model output: a text file (one name per line), a JSON list, or "
        "module.path:attr (default: the dataset's or the Pretrained model's classes)",
    )
    p.add_argument("--store", default="audit.sqlite", help="SQLite store path (default audit.sqlite)")
    p.add_argument(
        "--method",
        default="hirescam",
        choices=methods,
        metavar="METHOD",
        help=f"CAM method (default hirescam): {', '.join(methods)}",
    )
    p.add_argument(
        "--layer", default=None, help="layer name (default: the last spatial layer before pooling)"
    )
    p.add_argument(
        "--region",
        action="append",
        type=_region,
        default=[],
        metavar="NAME=x0,y0,x1,y1",
        help="a named region whose share of map energy is recorded, repeatable. A box in pixels of the "
        "model input, after preprocessing (0..224 with the default crop): x = column, y = row, (0, 0) "
        "the top-left corner, x1, y1 exclusive",
    )
    p.add_argument(
        "--target",
        metavar="C|KIND:C|SPEC",
        help="the score each map explains (default: each image's predicted class): a class index, "
        "logit:C, probability:C or sigmoid:C (one label of a multi-label head), or module.path:attr / "
        "file.py:attr giving a camwidget.targets target or a callable output -> Tensor[N]",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument(
        "--metrics",
        type=_metrics,
        default=("energy",),
        help="comma-separated: energy (default), insertion, deletion (RISE; slow: about 2·H·W/224 "
        "forwards an image), error_understanding (for misclassified images: the true class's confidence "
        "path with the true class's map and the prediction's; 100 forwards a mistake)",
    )
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--thumbnail", type=int, default=64, help="thumbnail side in pixels (0: none)")
    p.add_argument("--device", default="auto", help="auto (GPU of this rank if any), cpu, cuda, cuda:1, ...")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming the store")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks instead of one-line errors")
    return p


def _merge(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} merge", description="Merge shard stores into one store.")
    p.add_argument("target")
    p.add_argument("shards", nargs="+")
    p.add_argument("--remove", action="store_true", help="delete each shard once merged")
    args = p.parse_args(argv)
    from camwidget.audit.store import merge_stores

    added = merge_stores(args.target, args.shards, remove=args.remove)
    print(f"merged {added} rows into {args.target}")
    return 0


def _class_names(spec: str) -> list[str]:
    path = Path(spec)
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        names = (
            json.loads(text)
            if text.lstrip().startswith("[")
            else [line.strip() for line in text.splitlines() if line.strip()]
        )
    elif ":" in spec:
        names = load_object(spec, "class-names")
    else:
        raise UsageError(f"--class-names {spec!r}: no such file (a text file, one name per line)")
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise UsageError(f"--class-names {spec!r}: expected a list of strings")
    return list(names)


def _dataset(spec: str) -> Any:
    if Path(spec).is_dir():
        return spec
    if ":" not in spec:
        raise UsageError(
            f"--dataset {spec!r}: no such folder (--dataset takes a folder in ImageFolder layout, "
            "root/<class>/<image>, or module.path:attribute / file.py:attribute)"
        )
    return load_object(spec, "dataset")


def _run(args: argparse.Namespace, rank: int) -> int:
    import torch

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    loaded = load_object(args.model, "model")
    transform = load_object(args.transform, "transform") if args.transform else None
    if transform is not None and not callable(transform):
        raise UsageError(f"--transform {args.transform!r} gave a {type(transform).__name__}, not a callable")
    names = _class_names(args.class_names) if args.class_names else None
    mean = std = None
    if isinstance(loaded, torch.nn.Module):
        model = loaded
    elif isinstance(getattr(loaded, "model", None), torch.nn.Module):  # a camwidget.models.Pretrained
        model = loaded.model
        transform = transform if transform is not None else getattr(loaded, "transform", None)
        names = names if names is not None else getattr(loaded, "class_names", None)
        mean, std = getattr(loaded, "mean", None), getattr(loaded, "std", None)
    else:
        raise UsageError(
            f"--model {args.model!r} gave a {type(loaded).__name__}, not a torch.nn.Module (nor a "
            "camwidget.models.Pretrained, which has one as .model)"
        )
    model = model.to(device)
    dataset = _dataset(args.dataset)
    target = _target(args.target) if args.target is not None else None
    from camwidget.audit.run import audit

    report = audit(
        model,
        dataset,
        method=args.method,
        layer=args.layer,
        store=args.store,
        regions=dict(args.region) or None,
        class_names=names,
        batch_size=args.batch_size,
        metrics=args.metrics,
        num_workers=args.num_workers,
        transform=transform,
        mean=mean,
        std=std,
        thumbnail=args.thumbnail,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        target=target,
    )
    if rank == 0:
        print(report)
        print(report.shortcuts())
    return 0


def _interrupt_once() -> dict[int, Any]:
    """Ctrl-C and SIGTERM raise KeyboardInterrupt once; repeats (a terminal's Ctrl-C reaches torchrun
    and its workers, and torchrun forwards it again) are ignored while the audit winds down. Returns
    the handlers it replaced."""
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:
            return
        fired.append(signum)
        raise KeyboardInterrupt

    before = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            before[sig] = signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread: leave Python's default
            pass
    return before


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 2 a usage error, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        return _merge(argv[1:])
    args = _parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    from camwidget.audit.store import SettingsMismatch, UnusableStore

    before = _interrupt_once()
    try:
        return _run(args, rank)
    except KeyboardInterrupt as exc:
        if rank == 0:
            print(str(exc) or "audit interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (UsageError, SettingsMismatch, UnusableStore, ValueError, TypeError, FileNotFoundError) as exc:
        if args.debug:
            raise
        if rank == 0:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    raise SystemExit(main())
