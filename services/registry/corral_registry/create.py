"""``/api/create``: validate a request into a plan (fast, before queueing), then build layers and a manifest.

The plan is made where the request arrives; the job (a Celery task in the registry worker) converts
safetensors, quantizes and writes blobs, each in a scratch directory under the models directory.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from corral_common.digest import Digest, InvalidDigest
from corral_common.errors import BadRequest, NotFound
from corral_common.gguf import GGUFFile, InvalidGGUF, human_number, is_gguf
from corral_common.gotemplate import Template, TemplateError
from corral_common.internal import ProgressEvent
from corral_common.jsonio import go_dumps
from corral_common.modelfile import DEPRECATED_PARAMETERS, OPTION_TYPES
from corral_common.names import ModelName, parse_name
from corral_common.options import validate_options
from corral_common.remote import parse_ref, remote_url
from corral_common.schemas import CreateRequest

from corral_registry import adapters, convert, media_types, quantize
from corral_registry.manifest import Layer, Manifest
from corral_registry.modelinfo import gguf_of
from corral_registry.remote_models import RemoteSource, config_info, remote_config
from corral_registry.store import ModelStore, StoredModel

_VALID_PATH = re.compile(r"[^/\\\x00]+(/[^/\\\x00]+)*")
Emit = Callable[[ProgressEvent], None]


@dataclass
class CreatePlan:
    """A validated create request: every name, digest and file already checked."""

    name: ModelName
    base: StoredModel | None = None
    model_files: list[tuple[str, Digest, GGUFFile]] = field(default_factory=list)
    convert_files: list[tuple[str, Digest]] = field(default_factory=list)  # a safetensors model to convert
    adapter_files: list[tuple[str, Digest]] = field(default_factory=list)
    peft_adapter: adapters.PeftAdapter | None = None  # a safetensors adapter to convert for the model
    template: str | None = None
    system: str | None = None
    licenses: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)
    quantize: str = ""
    remote: RemoteSource | None = None  # a remote model: no weights here, only where it runs
    info: dict[str, Any] = field(default_factory=dict)  # config overrides from the request's ``info``


def _valid_relative(path: str) -> bool:
    """Go's fs.ValidPath: relative, slash-separated, no '.' or '..' elements."""
    if path == "." or not _VALID_PATH.fullmatch(path):
        return False
    return all(part not in (".", "..") for part in path.split("/"))


def _checked_files(store: ModelStore, files: dict[str, str]) -> list[tuple[str, Digest]]:
    """Check the names and digests of ``files`` and that each blob has been uploaded."""
    checked = []
    for filename, digest_text in files.items():
        if not _valid_relative(filename):
            raise BadRequest("file path must be relative")
        try:
            digest = Digest.parse(digest_text)
        except InvalidDigest:
            raise BadRequest("invalid digest format") from None
        if not store.blob_path(digest).is_file():
            raise BadRequest(f'blob "{digest}" not found: upload it first with POST /api/blobs/{digest}')
        checked.append((filename, digest))
    return checked


def _gguf_file(store: ModelStore, digest: Digest) -> GGUFFile:
    """Validate one uploaded file as GGUF before anything else touches it."""
    path = store.blob_path(digest)
    if not is_gguf(path):
        raise BadRequest("supplied file was not in GGUF format")
    try:
        return gguf_of(path)
    except InvalidGGUF as exc:
        raise BadRequest(str(exc)) from None


def _gguf_files(store: ModelStore, files: dict[str, str]) -> list[tuple[str, Digest, GGUFFile]]:
    """Checked GGUF uploads with their parsed metadata."""
    return [(name, digest, _gguf_file(store, digest)) for name, digest in _checked_files(store, files)]


def _template(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        Template.parse(text)
    except TemplateError as exc:
        raise BadRequest(f"template error: {exc}") from None
    return text


def _parameters(parameters: dict[str, Any] | None) -> dict[str, Any]:
    """Typed parameters; an unknown name is refused as a Modelfile PARAMETER is (deprecated ones dropped)."""
    for name in parameters or {}:
        if name not in OPTION_TYPES and name not in DEPRECATED_PARAMETERS:
            raise BadRequest(f"unknown parameter '{name}'")
    return validate_options(parameters)


def _messages(messages: list[Any] | None) -> list[dict[str, str]]:
    out = []
    for message in messages or []:
        if message.role not in ("system", "user", "assistant"):
            raise BadRequest(f'message role must be one of "system", "user", or "assistant", got "{message.role}"')
        out.append({"role": message.role, "content": message.content})
    return out


def _model_sources(store: ModelStore, plan: CreatePlan) -> list[GGUFFile]:
    """The model GGUFs a quantize would read (a conversion's output is checked when it exists)."""
    if plan.base is not None:
        layer = next(iter(plan.base.manifest.layers_of(media_types.MODEL)), None)
        try:
            return [gguf_of(store.blob_path(layer.digest))] if layer else []
        except InvalidGGUF as exc:
            raise BadRequest(str(exc)) from None
    return [gguf for _, _, gguf in plan.model_files if gguf.kind() == "model"]


def _model_files(store: ModelStore, plan: CreatePlan, files: dict[str, str]) -> None:
    """Classify ``files``: a safetensors model to convert, or GGUF files to use as they are."""
    if convert.is_safetensors(files):
        plan.convert_files = _checked_files(store, files)
        convert.check_inputs(store, plan.convert_files)
    else:
        plan.model_files = _gguf_files(store, files)


def _plan_adapters(store: ModelStore, plan: CreatePlan, files: dict[str, str]) -> None:
    """A safetensors adapter (a directory's files) to convert, or one GGUF adapter; each checked against the
    base model now where it is a GGUF already (a converted base is checked in the job)."""
    if not files:
        return
    sources = _model_sources(store, plan)
    base = sources[0] if sources else None
    if convert.is_safetensors(files):
        if not plan.convert_files:
            adapters.check_base(base)
        plan.peft_adapter = adapters.plan_peft(store, _checked_files(store, files))
        return
    if len(files) > 1:
        raise BadRequest("only one adapter is currently supported")
    checked = _gguf_files(store, files)
    plan.adapter_files = [(name, digest) for name, digest, _ in checked]
    for _, _, gguf in checked:
        if base is not None:
            adapters.check_fits(gguf, base)


def plan_create(store: ModelStore, req: CreateRequest) -> CreatePlan:
    """Validate a create request without writing anything; raise AppError with the right status."""
    if not req.model_name():
        raise BadRequest("model is required")
    plan = CreatePlan(name=parse_name(req.model_name()), info=config_info(req.info))
    if req.from_ and req.remote_host:
        base = parse_ref(req.from_).base  # Ollama's remote_model: the name without a cloud suffix
        parse_name(base)
        plan.remote = RemoteSource(remote_url(req.remote_host), base)
    elif req.from_:
        base_name = parse_name(req.from_)
        plan.base = store.get(base_name)
        if plan.base is None:
            raise NotFound(f"model '{req.from_}' not found")
    elif req.files:
        _model_files(store, plan, req.files)
    else:
        raise BadRequest("neither 'from' or 'files' was specified")
    if not plan.remote:  # a remote model's weights are not here: its adapters are ignored
        _plan_adapters(store, plan, req.adapters or {})
    plan.template, plan.system = _template(req.template), req.system
    plan.licenses = [req.license] if isinstance(req.license, str) else list(req.license or [])
    plan.parameters = _parameters(req.parameters)
    plan.messages = _messages(req.messages)
    plan.quantize = "" if plan.remote else quantize.parse_level(req.quantize_level())
    if plan.quantize:
        for source in _model_sources(store, plan):
            quantize.check_source(source)
    return plan


def _config(gguf: GGUFFile, layers: list[Layer]) -> dict[str, Any]:
    """The config blob (model.ConfigV2) for a GGUF model."""
    arch = gguf.architecture()
    config: dict[str, Any] = {
        "model_format": "gguf", "model_family": arch, "model_families": [arch],
        "model_type": human_number(gguf.parameter_count()), "file_type": gguf.file_type_name(),
    }
    if gguf.context_length():
        config["context_length"] = gguf.context_length()
    if gguf.embedding_length():
        config["embedding_length"] = gguf.embedding_length()
    config.update({"architecture": "amd64", "os": "linux",
                   "rootfs": {"type": "layers", "diff_ids": [str(layer.digest) for layer in layers]}})
    return config


def _config_of(plan: CreatePlan, model: GGUFFile | None, layers: list[Layer]) -> dict[str, Any]:
    """The config blob: a remote model's (where it runs), a GGUF model's, or empty; ``info`` overrides."""
    if plan.remote is not None:
        return remote_config(plan.remote, plan.info, layers)
    config = _config(model, layers) if model else {}
    return {**config, **plan.info} if config else dict(plan.info)


@contextmanager
def _scratch(store: ModelStore) -> Iterator[Path]:
    """A private directory under the models directory, removed afterwards whatever happens."""
    work = store.scratch_dir()
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _LayerBuilder:
    """Accumulates layers, reporting 'using existing' / 'creating new' for each."""

    def __init__(self, store: ModelStore, emit: Emit) -> None:
        self.store, self.emit, self.layers = store, emit, []  # type: list[Layer]
        self.made: set[Digest] = set()  # blobs this job wrote; pruned if no manifest ends up using them

    def add_blob(self, media_type: str, digest: Digest, from_: str = "") -> None:
        size = self.store.blob_path(digest).stat().st_size
        self.layers.append(Layer(media_type, digest, size, from_))

    def add_bytes(self, media_type: str, data: bytes, replace: bool = True) -> None:
        if replace:
            self.layers = [layer for layer in self.layers if layer.media_type != media_type]
        digest, created = self.store.put_bytes(data)
        self.emit(ProgressEvent(status=f"{'creating new' if created else 'using existing'} layer {digest}"))
        self.layers.append(Layer(media_type, digest, len(data)))

    def stored(self, path: Path) -> Digest:
        """Store a file this job made as a blob (pruned unless a manifest ends up using it)."""
        digest, created = self.store.put_file(path)
        if created:
            self.made.add(digest)
        self.emit(ProgressEvent(status=f"{'creating new' if created else 'using existing'} layer {digest}"))
        return digest

    def add_file(self, path: Path) -> None:
        """Store a finished model file as a blob and make it the model layer (replacing any other)."""
        digest = self.stored(path)
        layer = Layer(media_types.MODEL, digest, self.store.blob_path(digest).stat().st_size)
        at = next((i for i, old in enumerate(self.layers) if old.media_type == media_types.MODEL), None)
        if at is None:
            self.layers.insert(0, layer)
        else:
            self.layers[at] = layer

    def model_digest(self) -> Digest | None:
        return next((layer.digest for layer in self.layers if layer.media_type == media_types.MODEL), None)

    def params(self) -> dict[str, Any]:
        existing = [layer for layer in self.layers if layer.media_type == media_types.PARAMS]
        if not existing:
            return {}
        return json.loads(self.store.read_blob(existing[-1].digest))


def _converted(plan: CreatePlan, builder: _LayerBuilder, emit: Emit) -> GGUFFile:
    """Convert the uploaded safetensors model and make the result the model layer."""
    emit(ProgressEvent(status="converting model"))
    with _scratch(builder.store) as work:
        path, gguf = convert.convert(builder.store, plan.convert_files, work)
        builder.add_file(path)
    return gguf


def _base_layers(plan: CreatePlan, builder: _LayerBuilder, emit: Emit) -> GGUFFile | None:
    """Layers inherited from ``from``, converted, or made from uploaded GGUF files; returns the model GGUF."""
    if plan.base is not None:
        builder.layers = list(plan.base.manifest.layers)
        model = next(iter(plan.base.manifest.layers_of(media_types.MODEL)), None)
        return gguf_of(builder.store.blob_path(model.digest)) if model else None
    if plan.convert_files:
        return _converted(plan, builder, emit)
    main: GGUFFile | None = None
    for _, digest, gguf in plan.model_files:
        emit(ProgressEvent(status="parsing GGUF"))
        kind = {"adapter": media_types.ADAPTER, "projector": media_types.PROJECTOR}.get(gguf.kind(), media_types.MODEL)
        builder.add_blob(kind, digest)
        emit(ProgressEvent(status=f"using existing layer {digest}"))
        main = gguf if kind == media_types.MODEL else main
    return main


def _quantized(plan: CreatePlan, builder: _LayerBuilder, model: GGUFFile, emit: Emit) -> GGUFFile:
    """Replace the model layer with its quantization to ``plan.quantize`` (nothing to do if it is that already)."""
    source = builder.model_digest()
    if source is None or model.file_type_name() == plan.quantize:
        return model
    with _scratch(builder.store) as work:
        out = work / "quantized.gguf"
        result = quantize.quantize(builder.store.blob_path(source), out, plan.quantize, emit)
        builder.add_file(out)
    return result


def _adapter_layers(plan: CreatePlan, builder: _LayerBuilder, model: GGUFFile | None, emit: Emit) -> None:
    """The adapter layers: a GGUF adapter as uploaded, a safetensors one converted; each fits the model."""
    for _, digest in plan.adapter_files:
        if model is not None:
            adapters.check_fits(gguf_of(builder.store.blob_path(digest)), model)
        builder.add_blob(media_types.ADAPTER, digest)
        emit(ProgressEvent(status=f"using existing layer {digest}"))
    if plan.peft_adapter is not None:
        emit(ProgressEvent(status="converting adapter"))
        with _scratch(builder.store) as work:
            path = adapters.convert_peft(builder.store, plan.peft_adapter, adapters.check_base(model), work)
            builder.add_blob(media_types.ADAPTER, builder.stored(path))


def _extra_layers(plan: CreatePlan, builder: _LayerBuilder, emit: Emit) -> None:
    """Template, system, license, params and messages layers, in Ollama's order."""
    if plan.template is not None:
        builder.add_bytes(media_types.TEMPLATE, plan.template.encode())
    if plan.system is not None:
        builder.add_bytes(media_types.SYSTEM, plan.system.encode())
    for text in plan.licenses:
        builder.add_bytes(media_types.LICENSE, text.encode(), replace=False)
    if plan.parameters:
        merged = {**builder.params(), **plan.parameters}
        builder.add_bytes(media_types.PARAMS, go_dumps(merged).encode())
    if plan.messages:
        builder.add_bytes(media_types.MESSAGES, go_dumps(plan.messages).encode())


def execute_create(store: ModelStore, plan: CreatePlan, emit: Emit) -> None:
    """Write the layers and then the manifest; nothing is visible under the name until the last step."""
    builder = _LayerBuilder(store, emit)
    try:
        model_gguf = _base_layers(plan, builder, emit)
        if plan.base is not None and model_gguf is None:
            raise BadRequest("base model has no GGUF model layer")
        if plan.quantize and model_gguf is not None:
            model_gguf = _quantized(plan, builder, model_gguf, emit)
        _adapter_layers(plan, builder, model_gguf, emit)
        _extra_layers(plan, builder, emit)
        config = go_dumps(_config_of(plan, model_gguf, builder.layers)).encode()
        config_digest, _ = store.put_bytes(config)
        manifest = Manifest(Layer(media_types.CONFIG, config_digest, len(config)), tuple(builder.layers))
        emit(ProgressEvent(status="writing manifest"))
        previous = store.get(plan.name)
        store.put_manifest(plan.name, manifest)
        if previous is not None:
            store.prune(previous.manifest.all_digests())
    finally:
        store.prune(builder.made)  # an intermediate (converted, then quantized) or a failed job's output
    emit(ProgressEvent(status="success"))


def run_create(store: ModelStore, request: dict[str, Any], emit: Emit) -> None:
    """Plan and execute from a serialised request (the job's body); raises AppError."""
    execute_create(store, plan_create(store, CreateRequest.model_validate(request)), emit)
