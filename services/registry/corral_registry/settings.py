"""Registry service settings, read when constructed (never at import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from corral_common.env import current_env, env_bool, models_dir


@dataclass(frozen=True)
class RegistrySettings:
    """Where the model store lives and how logging looks."""

    models_dir: Path
    debug: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "RegistrySettings":
        """Build from OLLAMA_MODELS / OLLAMA_DEBUG."""
        env = current_env() if environ is None else environ
        return cls(models_dir=models_dir(env), debug=env_bool(env, "OLLAMA_DEBUG"))
