"""The shipped systemd unit is one systemd accepts: `systemd-analyze verify` finds nothing wrong.

The only complaint allowed is about the ExecStart binary, which exists on an installed host
(/opt/usagewatch/bin/usagewatch) but not on a development machine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "usagewatch.service"
EXEC_START = "/opt/usagewatch/bin/usagewatch"


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def test_unit_verifies_clean() -> None:
    result = analyze("verify", str(UNIT))
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    unexpected = [ln for ln in lines if EXEC_START not in ln]
    assert unexpected == [], "\n".join(unexpected)


def test_unit_runs_the_daemon_with_the_documented_config() -> None:
    text = UNIT.read_text()
    assert f"ExecStart={EXEC_START} run --config /etc/usagewatch/config.yaml" in text
    assert "EnvironmentFile=-/etc/usagewatch/env" in text
    assert "DynamicUser=yes" in text and "StateDirectory=usagewatch" in text
