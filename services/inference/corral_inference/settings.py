"""Inference service settings (Ollama's scheduler variables), read when constructed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from corral_common.durations import parse_env_duration
from corral_common.env import current_env, env_bool, env_int, env_str, models_dir
from corral_common.logs import Telemetry

DEFAULT_KEEP_ALIVE_NS = 5 * 60 * 1_000_000_000


def _unset_or_bool(env: Mapping[str, str], key: str) -> bool | None:
    """None when the variable is unset or empty (the default decides), else its boolean value."""
    return env_bool(env, key) if env_str(env, key) else None


@dataclass(frozen=True)
class InferenceSettings:
    """Scheduler limits and defaults."""

    models_dir: Path
    keep_alive_ns: int = DEFAULT_KEEP_ALIVE_NS
    context_length: int = 4096
    max_loaded_models: int = 3
    max_queue: int = 512
    num_parallel: int = 4
    num_thread: int = 0
    kv_cache_type: str = "f16"
    flash_attention: bool | None = None  # unset: llama.cpp decides (on for a quantized KV cache)
    lazy_kv: bool = True  # a KV cache takes RAM as it is written (corral_inference.zeropages)
    debug: bool = False
    telemetry: Telemetry = Telemetry()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "InferenceSettings":
        """OLLAMA_KEEP_ALIVE, OLLAMA_CONTEXT_LENGTH, OLLAMA_MAX_LOADED_MODELS, OLLAMA_KV_CACHE_TYPE, ..."""
        env = current_env() if environ is None else environ
        max_loaded = env_int(env, "OLLAMA_MAX_LOADED_MODELS", 0)
        return cls(
            models_dir=models_dir(env),
            keep_alive_ns=parse_env_duration(env_str(env, "OLLAMA_KEEP_ALIVE"), DEFAULT_KEEP_ALIVE_NS),
            context_length=env_int(env, "OLLAMA_CONTEXT_LENGTH", 0) or 4096,
            max_loaded_models=max_loaded if max_loaded > 0 else 3,
            max_queue=env_int(env, "OLLAMA_MAX_QUEUE", 512),
            num_parallel=max(1, env_int(env, "OLLAMA_NUM_PARALLEL", 0) or 4),
            num_thread=env_int(env, "CORRAL_NUM_THREAD", 0),
            kv_cache_type=env_str(env, "OLLAMA_KV_CACHE_TYPE").lower() or "f16",
            flash_attention=_unset_or_bool(env, "OLLAMA_FLASH_ATTENTION"),
            lazy_kv=env_bool(env, "CORRAL_KV_LAZY", default=True),
            debug=env_bool(env, "OLLAMA_DEBUG"), telemetry=Telemetry.from_env(env),
        )
