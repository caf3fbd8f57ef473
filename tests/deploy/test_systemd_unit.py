"""The shipped systemd unit is one systemd accepts: `systemd-analyze verify` finds nothing wrong,
and `systemd-analyze security` rates its sandbox at an exposure of 2.0 or less.

The only complaint allowed is about the ExecStart binary, which exists on an installed host
(/opt/usagewatch/bin/usagewatch) but not on a development machine. ``.ci/check-unit`` runs the same
two checks outside pytest.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "usagewatch.service"
EXEC_START = "/opt/usagewatch/bin/usagewatch"
MAX_EXPOSURE = 2.0


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_unit_verifies_clean() -> None:
    result = analyze("verify", str(UNIT))
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    unexpected = [ln for ln in lines if EXEC_START not in ln]
    assert unexpected == [], "\n".join(unexpected)


def test_unit_sandbox_exposure_is_at_most_2() -> None:
    result = analyze("security", "--offline=true", "--no-pager", str(UNIT))
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout + result.stderr)
    if m is None and "--offline" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    assert m is not None, result.stdout + result.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE, result.stdout


def test_unit_runs_the_daemon_with_the_documented_config() -> None:
    text = UNIT.read_text()
    assert f"ExecStart={EXEC_START} run --config /etc/usagewatch/config.yaml" in text
    assert "EnvironmentFile=-/etc/usagewatch/env" in text
    assert "DynamicUser=yes" in text and "StateDirectory=usagewatch" in text


def test_unit_is_a_notify_service_with_watchdog_reload_and_bounded_stop() -> None:
    s = settings()
    assert s["Type"] == ["notify"] and s["NotifyAccess"] == ["main"]
    assert s["WatchdogSec"] == ["30s"] and s["TimeoutStopSec"] == ["30s"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key in ("ConfigurationDirectory", "StateDirectory", "LogsDirectory"):
        assert s[key] == ["usagewatch"], key
    # AF_UNIX is what sd_notify needs; without it READY=1 never arrives and the start times out
    assert "AF_UNIX" in s["RestrictAddressFamilies"][0].split()
