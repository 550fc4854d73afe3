"""Suite-wide pytest hooks: the notebooks' measured run times in the terminal summary (CI logs)."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per notebook run by ``tests/test_notebooks.py``: its wall time, CPUs and load average
    (recorded by the test as properties; nothing is asserted about them)."""
    lines = []
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            props = dict(getattr(report, "user_properties", ()))
            if report.when == "call" and "runtime_s" in props:
                lines.append(
                    f"{props['notebook']}: {props['runtime_s']} s ({outcome}; {props['cpus']} CPUs, "
                    f"1-min load average {props['load_1min_before']} before, "
                    f"{props['load_1min_after']} after)"
                )
    if lines:
        terminalreporter.section("notebook runtimes")
        for line in lines:
            terminalreporter.write_line(line)
