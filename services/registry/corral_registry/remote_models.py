"""Remote models in the store: a manifest whose config says where the model runs (Ollama's ConfigV2
``remote_host``/``remote_model``), with no model layer; and the ``info`` overrides a create may carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from corral_common.errors import BadRequest

from corral_registry.manifest import Layer

MAX_INFO_INT = 1 << 40
_INFO_STRINGS = {"model_family": "model_family", "base_name": "base_name", "quantization_level": "file_type",
                 "parameter_size": "model_type"}
_INFO_INTS = ("context_length", "embedding_length")


@dataclass(frozen=True)
class RemoteSource:
    """Where a remote model runs: the API's base URL and the model's name there."""

    host: str
    model: str


def _info_string(info: dict[str, Any], key: str) -> str:
    value = info.get(key, "")
    if not isinstance(value, str):
        raise BadRequest(f'info field "{key}" must be a string')
    return value


def _info_int(info: dict[str, Any], key: str) -> int:
    value = info.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not 0 <= value <= MAX_INFO_INT:
        raise BadRequest(f'info field "{key}" must be a non-negative integer')
    return int(value)


def config_info(info: dict[str, Any] | None) -> dict[str, Any]:
    """The config keys a create's ``info`` sets (Ollama's names), checked; 400 naming a field of the wrong type."""
    info = info or {}
    config: dict[str, Any] = {}
    capabilities = info.get("capabilities")
    if capabilities is not None:
        if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
            raise BadRequest('info field "capabilities" must be a list of strings')
        config["capabilities"] = capabilities
    for key, field in _INFO_STRINGS.items():
        if _info_string(info, key):
            config[field] = _info_string(info, key)
    if config.get("model_family"):
        config["model_families"] = [config["model_family"]]
    for key in _INFO_INTS:
        if _info_int(info, key):
            config[key] = _info_int(info, key)
    return config


def remote_config(source: RemoteSource, info: dict[str, Any], layers: list[Layer]) -> dict[str, Any]:
    """A remote model's config blob, in ConfigV2's key order."""
    config: dict[str, Any] = {"model_format": "", "model_family": info.get("model_family", ""),
                              "model_families": info.get("model_families"), "model_type": info.get("model_type", ""),
                              "file_type": info.get("file_type", ""),
                              "remote_host": source.host, "remote_model": source.model}
    for key in ("capabilities", "context_length", "embedding_length", "base_name"):
        if info.get(key):
            config[key] = info[key]
    config.update({"architecture": "amd64", "os": "linux",
                   "rootfs": {"type": "layers", "diff_ids": [str(layer.digest) for layer in layers]}})
    return config
