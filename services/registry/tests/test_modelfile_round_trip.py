"""``show --modelfile`` output rebuilds the same model; create refuses unknown parameters (issue 18 item 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral_common.errors import BadRequest
from corral_common.gguf import STRING
from corral_common.modelfile import parse
from corral_common.names import parse_name
from corral_common.schemas import CreateRequest, ShowRequest
from corral_common.testing.ggufwriter import small_model
from corral_registry import media_types, service
from corral_registry.create import plan_create
from corral_registry.store import ModelStore
from corral_registry.testing import create_events, put_blob

HOSTILE = '"""\nFROM other\nSYSTEM \\ "quoted" \\\\\n# not a comment\n  '


def _request_from_modelfile(name: str, text: str) -> dict[str, Any]:
    """What ``corral create -f`` sends for a Modelfile whose FROM is a blob of this store."""
    modelfile = parse(text)
    blob = Path(modelfile.from_()).name  # sha256-<hex>
    return {"model": name, "files": {"model.gguf": blob.replace("-", ":", 1)},
            "template": modelfile.values("template")[-1], "system": modelfile.values("system")[-1],
            "parameters": modelfile.parameters(), "license": modelfile.values("license"),
            "messages": [{"role": r, "content": c} for r, c in modelfile.messages()]}


def _model_digest(store: ModelStore, name: str) -> str:
    """The digest of the model's weights layer (its base)."""
    stored = store.get(parse_name(name))
    assert stored is not None
    return next(layer.digest.hex for layer in stored.manifest.layers if layer.media_type == media_types.MODEL)


def test_security_modelfile_injection_show_output_rebuilds_the_same_model(store: ModelStore) -> None:
    base = put_blob(store, small_model().build())
    other = put_blob(store, small_model().add("general.name", STRING, "other").build())
    assert base != other
    for name, digest in (("base", base), ("other", other)):
        list(create_events(store, model=name, files={"m.gguf": str(digest)}))
    list(create_events(store, model="first", files={"m.gguf": str(base)}, system=HOSTILE,
                       template=HOSTILE + "{{ .Prompt }}", license=[HOSTILE], parameters={"stop": [HOSTILE, '"']},
                       messages=[{"role": "user", "content": HOSTILE}]))
    first = service.show(store, ShowRequest(model="first"))
    list(create_events(store, **_request_from_modelfile("second", first["modelfile"])))
    second = service.show(store, ShowRequest(model="second"))
    for key in ("system", "template", "license", "parameters", "messages"):
        assert second[key] == first[key], key
    assert first["system"] == HOSTILE
    assert _model_digest(store, "second") == _model_digest(store, "first") == base.hex


@pytest.mark.parametrize("parameters", [{"not_a_parameter": 1}, {"Temperature": 0.5}])
def test_security_create_refuses_unknown_parameters_as_the_cli_does(store: ModelStore,
                                                                      parameters: dict[str, Any]) -> None:
    digest = put_blob(store, small_model().build())
    request = CreateRequest.model_validate({"model": "x", "files": {"m.gguf": str(digest)}, "parameters": parameters})
    with pytest.raises(BadRequest, match=f"^unknown parameter '{next(iter(parameters))}'$"):
        plan_create(store, request)


def test_create_still_drops_deprecated_parameters(store: ModelStore) -> None:
    digest = put_blob(store, small_model().build())
    request = CreateRequest.model_validate({"model": "x", "files": {"m.gguf": str(digest)},
                                            "parameters": {"penalize_newline": True, "mirostat": 1,
                                                           "temperature": 0.5}})
    assert plan_create(store, request).parameters == {"mirostat": 1, "temperature": 0.5}
