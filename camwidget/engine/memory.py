"""How many perturbed inputs fit in one forward pass: chunk sizes from bytes, under a memory budget.

Score-CAM, Ablation-CAM and the perturbation metrics run long streams of synthetic inputs. A chunk of B
of them costs about B times the bytes one item takes (its input, the tensors that build it, the largest
activations of the forward pass), so the chunk size is ``budget // bytes_per_item`` (at least 1). The
bytes per item are measured once per model and input shape from a batch-1 forward (the largest output
of any module, times a factor for what is alive at once, see :func:`item_bytes`).

The budget (:func:`memory_budget`): on CPU a quarter of the memory available to this process (the cgroup
limit counts, as in containers), at most 1 GiB; on CUDA half of the device's free memory. An
out-of-memory error still halves the chunk and retries, on CPU (``MemoryError`` or the allocator's
``RuntimeError``) as on CUDA (``torch.OutOfMemoryError``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

__all__ = ["available_memory", "is_out_of_memory", "item_bytes", "memory_budget"]

_CPU_CAP = 1 << 30  # more than 1 GiB of chunk buys no speed on CPUs (batch 8-16 is the sweet spot)
_CPU_SHARE = 4  # take at most a quarter of what is available
_CUDA_SHARE = 2
# What is alive at once in a forward, in units of the largest module output: its input, the output, and a
# skip connection held around it.
_LIVE_ACTIVATIONS = 3
# Building an item (masks, products, the input itself): in units of the item's input bytes.
_BUILD = 4


def _cgroup_room() -> int | None:
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:
            return max(0, int(limit) - usage)
    return None


def available_memory(device: torch.device) -> int:
    """Bytes this process can still allocate on ``device`` (CPU: the smaller of the system's available
    memory and the cgroup's room; CUDA: the device's free memory)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    room: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                room.append(int(line.split()[1]) * 1024)
                break
    except OSError:
        pass
    if not room:
        try:
            room.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            room.append(8 << 30)
    cgroup = _cgroup_room()
    if cgroup is not None:
        room.append(cgroup)
    return min(room)


def memory_budget(device: torch.device) -> int:
    """Bytes one chunk of perturbed forwards may take on ``device`` (see the module doc)."""
    if device.type == "cuda":
        return available_memory(device) // _CUDA_SHARE
    return max(1 << 26, min(_CPU_CAP, available_memory(device) // _CPU_SHARE))


def item_bytes(forward: Callable[[torch.Tensor], object], model: nn.Module, item: torch.Tensor) -> int:
    """Estimated bytes one input like ``item`` (1, C, H, W) takes in a chunk: ``_BUILD`` times its own
    bytes plus ``_LIVE_ACTIVATIONS`` times the largest tensor any leaf module of ``model`` outputs when
    ``forward(item)`` runs. ``model`` must be private to the engine or under its lock: temporary forward
    hooks are put on its leaf modules for this one pass and removed."""
    largest = 0

    def hook(module: nn.Module, args: object, output: object) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel() * output.element_size())

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        forward(item)
    finally:
        for handle in handles:
            handle.remove()
    per_item = max(1, item.shape[0])
    return (_BUILD * item.numel() * item.element_size() + _LIVE_ACTIVATIONS * largest) // per_item


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says an allocation failed (CUDA's OutOfMemoryError, Python's MemoryError, or the
    CPU allocator's RuntimeError), as opposed to any other failure of the model."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc)
        return "can't allocate memory" in text or "not enough memory" in text or "out of memory" in text
    return False
