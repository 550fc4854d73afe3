"""Command line: ``python -m camwidget.audit`` (also under ``torchrun``), and ``... merge``.

Examples::

    python -m camwidget.audit --model mypkg.models:make_model --dataset /data/val --store val.sqlite
    torchrun --nproc-per-node 2 -m camwidget.audit --model train.py:model --dataset train.py:val_set \\
        --region watermark=0,0,32,32 --store val.sqlite
    python -m camwidget.audit merge val.sqlite node1/val.rank*.sqlite node2/val.rank*.sqlite

``--model`` and ``--dataset`` name a Python object as ``module.path:attribute`` or ``file.py:attribute``;
a callable that is not already a model/dataset is called without arguments (a factory). ``--dataset``
may also be a folder in ImageFolder layout.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["load_object", "main"]


def load_object(spec: str, what: str) -> Any:
    """``"pkg.module:attr"`` or ``"path/file.py:attr"`` -> the object (called if it is a factory function)."""
    if ":" not in spec:
        raise SystemExit(f"--{what} {spec!r}: expected module.path:attribute or file.py:attribute")
    module_name, _, attr = spec.rpartition(":")
    if module_name.endswith(".py") or os.sep in module_name:
        path = Path(module_name)
        if not path.exists():
            raise SystemExit(f"--{what}: no such file {module_name!r}")
        name = f"_camwidget_cli_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise SystemExit(f"--{what}: {module_name!r} has no attribute {attr!r}") from None
    import torch
    from torch.utils.data import DataLoader, Dataset

    if callable(obj) and not isinstance(obj, (torch.nn.Module, Dataset, DataLoader, type)):
        obj = obj()
    elif isinstance(obj, type):
        obj = obj()
    return obj


def _region(text: str) -> tuple[str, tuple[float, ...]]:
    name, sep, coords = text.partition("=")
    try:
        box = tuple(float(v) for v in coords.split(","))
    except ValueError:
        box = ()
    if not sep or len(box) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=x0,y0,x1,y1 (input pixels)")
    return name, box


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m camwidget.audit",
        description="Audit a classifier on a dataset: explain every image, store results in SQLite, "
        "report shortcuts. Runs under torchrun (one shard per process). 'python -m camwidget.audit merge "
        "TARGET SHARDS...' merges shard stores.",
    )
    p.add_argument(
        "--model", required=True, help="module.path:attr or file.py:attr (an nn.Module or a factory)"
    )
    p.add_argument("--dataset", required=True, help="ImageFolder folder, or module.path:attr / file.py:attr")
    p.add_argument("--store", default="audit.sqlite", help="SQLite store path (default audit.sqlite)")
    p.add_argument("--method", default="hirescam", help="CAM method (default hirescam)")
    p.add_argument("--layer", default=None, help="layer name (default: last spatial layer)")
    p.add_argument("--region", action="append", type=_region, default=[], metavar="NAME=x0,y0,x1,y1")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--metrics", default="energy", help="comma-separated: energy,insertion,deletion")
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--thumbnail", type=int, default=64, help="thumbnail side in pixels (0: none)")
    p.add_argument("--device", default="auto", help="auto (GPU of this rank if any), cpu, cuda, cuda:1, ...")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming the store")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _merge(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m camwidget.audit merge", description="Merge shard stores.")
    p.add_argument("target")
    p.add_argument("shards", nargs="+")
    p.add_argument("--remove", action="store_true", help="delete each shard once merged")
    args = p.parse_args(argv)
    from camwidget.audit.store import merge_stores

    added = merge_stores(args.target, args.shards, remove=args.remove)
    print(f"merged {added} rows into {args.target}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "merge":
        return _merge(argv[1:])
    args = _parser().parse_args(argv)
    import torch

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    model = load_object(args.model, "model")
    if not isinstance(model, torch.nn.Module):
        raise SystemExit(f"--model {args.model!r} gave a {type(model).__name__}, not a torch.nn.Module")
    model = model.to(device)
    dataset: Any = args.dataset if Path(args.dataset).is_dir() else load_object(args.dataset, "dataset")
    from camwidget.audit.run import audit

    report = audit(
        model,
        dataset,
        method=args.method,
        layer=args.layer,
        store=args.store,
        regions=dict(args.region) or None,
        batch_size=args.batch_size,
        metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        num_workers=args.num_workers,
        thumbnail=args.thumbnail,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(report)
        print(report.shortcuts())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
