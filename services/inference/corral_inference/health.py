"""The inference service's readiness: it needs nothing remote, only a model store it can read."""

from __future__ import annotations

from corral_common.health import Check, Readiness, directory_probe

from corral_inference.settings import InferenceSettings


def register_checks(readiness: Readiness, settings: InferenceSettings) -> None:
    """Add the models directory (readable) to the readiness checks."""
    readiness.add(Check("models_dir", directory_probe(settings.models_dir)))
