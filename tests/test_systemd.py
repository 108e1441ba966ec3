"""infra/systemd/corral.service: checked by systemd's own `systemd-analyze verify` (and its offline security
score), run by a dedicated user with OLLAMA_HOST/OLLAMA_MODELS from an environment file, hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[1] / "infra" / "systemd" / "corral.service"
ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (Debian: systemd)")
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "PrivateDevices": "yes", "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
             "SystemCallFilter": "@system-service", "ProtectKernelTunables": "yes", "RestrictNamespaces": "yes"}


def _settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def _installable(tmp_path: Path, unit_text: str) -> Path:
    """The unit as installed, its ExecStart pointing at this environment's `corral` (verify wants it to exist)."""
    corral = Path(sys.executable).with_name("corral")
    assert corral.is_file(), corral
    path = tmp_path / "corral.service"
    path.write_text(unit_text.replace("ExecStart=/opt/corral/bin/corral serve", f"ExecStart={corral} serve"))
    return path


def _verify(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=120)


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path) -> None:
    done = _verify(_installable(tmp_path, UNIT.read_text()))
    assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), done.stdout + done.stderr


def test_the_check_catches_a_mistake(tmp_path) -> None:
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
    done = _verify(_installable(tmp_path, broken))
    assert "Unknown key" in done.stdout + done.stderr


def test_a_dedicated_user_and_the_ollama_settings_from_an_environment_file() -> None:
    settings = _settings()
    assert settings["User"] == ["corral"] and settings["Group"] == ["corral"]
    assert settings["ExecStart"] == ["/opt/corral/bin/corral serve"]
    assert settings["EnvironmentFile"] == ["-/etc/corral/corral.env"]
    environment = " ".join(settings["Environment"])
    assert "OLLAMA_HOST=127.0.0.1:11434" in environment and "OLLAMA_MODELS=/var/lib/corral/models" in environment
    assert settings["StateDirectory"] == ["corral"]
    sysusers = UNIT.with_name("corral.sysusers.conf").read_text()
    assert re.search(r"^u corral - .* /var/lib/corral ", sysusers, re.MULTILINE)
    documented = UNIT.with_name("corral.env").read_text()
    assert "OLLAMA_HOST=" in documented and "OLLAMA_MODELS=" in documented


def test_hardening_options_and_systemds_exposure_score(tmp_path) -> None:
    settings = _settings()
    for key, value in HARDENING.items():
        assert settings.get(key) == [value], key
    done = subprocess.run([ANALYZE, "security", "--offline=yes", str(_installable(tmp_path, UNIT.read_text()))],
                          capture_output=True, text=True, timeout=120)
    score = re.search(r"Overall exposure level for corral\.service: ([\d.]+)", done.stdout)
    if score is None:
        pytest.skip(f"this systemd-analyze has no offline security score: {done.stderr.strip()[:200]}")
    assert float(score.group(1)) <= 2.5, done.stdout[-2000:]
