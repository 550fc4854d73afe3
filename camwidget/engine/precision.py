"""Which precision the batched forwards run in: decided by rule, never by timing.

``precision="auto"`` takes the device's *native* low precision where it has one, and fp32 elsewhere:

- CUDA: bf16 where the GPU supports it (Ampere and newer), else fp16 (tensor cores since Volta);
- CPU: bf16 only where the processor computes it natively (AVX512-BF16 or AMX tiles); plain AVX2 and
  AVX-512 CPUs emulate bf16 and ran 5-20x *slower* than fp32 on the machines measured, so they get fp32;
- anything else (MPS, XPU, ...): fp32.

The low precision is then used only if its logits agree with the model's fp32 logits on the call's own
inputs (:func:`agrees`); otherwise the call runs in fp32. Both tests depend on the machine and the inputs
only, never on load, so the same call makes the same choice every time on the same machine. Weighting and
normalisation downstream always run in fp32. Pass ``precision="fp32"`` for numbers that must be equal to
the last digit across machines.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

__all__ = ["PRECISIONS", "agrees", "autocast", "native_low_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AGREEMENT = 0.999  # Pearson correlation of low-precision with fp32 logits, per call


@functools.cache
def _cpu_has_native_bf16() -> bool:
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        if check is not None:
            try:
                if check():
                    return True
            except RuntimeError:  # pragma: no cover - probe unavailable on this build
                pass
    try:  # older torch: read the flags the kernel reports
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def native_low_precision(device: torch.device) -> str | None:
    """ "bf16" or "fp16" where ``device`` computes it natively (see the module doc), else None."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and _cpu_has_native_bf16():
        return "bf16"
    return None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """An autocast context for ``precision`` in ("fp32", "bf16", "fp16") on ``device``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def agrees(low: torch.Tensor, reference: torch.Tensor) -> bool:
    """Whether (B, K) low-precision logits stand in for the fp32 ``reference``: every row predicts the same
    class and the logits correlate at Pearson r >= 0.999 overall. For (B,) target scores: each within 1% of
    the scores' largest magnitude, and correlated at r >= 0.999 where there are several."""
    if not bool(torch.isfinite(low).all()):
        return False
    if low.ndim == 1:
        scale = float(reference.abs().max()) if reference.numel() else 0.0
        if float((low - reference).abs().max()) > 0.01 * scale + 1e-6:
            return False
        if low.numel() < 3:
            return True
    elif not torch.equal(low.argmax(dim=1), reference.argmax(dim=1)):
        return False
    a = low.flatten().double()
    b = reference.flatten().double()
    a = a - a.mean()
    b = b - b.mean()
    denom = a.norm() * b.norm()
    return bool(denom == 0) or float((a @ b) / denom) >= _AGREEMENT
