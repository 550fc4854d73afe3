"""A kernel that exits while a CamExplorer still computes must exit cleanly."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_interpreter_exit_during_background_work_is_clean() -> None:
    script = textwrap.dedent(
        """
        import numpy as np, torch, camwidget
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10),
        ).eval()
        image = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
        widget = camwidget.CamExplorer(model, image, method="scorecam")  # still computing at exit
        print("built", flush=True)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "built" in done.stdout
    assert "terminate called" not in done.stderr
