"""What the store knows about a model: GGUF metadata, capabilities, and the shapes of tags/show/resolve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from corral_common.digest import Digest
from corral_common.gguf import GGUFFile, InvalidGGUF, LazyArray, ReadLimit, read_gguf
from corral_common.gotemplate import Template, TemplateError
from corral_common.internal import ResolvedModel
from corral_common.jsonio import local_time
from corral_common.lru import ByteLRU
from corral_common.modelfile import quote_value
from corral_common.schemas import model_details
from corral_common.text import is_harmony

from corral_registry import media_types
from corral_registry.store import ModelStore, StoredModel

MAX_SHOWN_ARRAY = 5
DEFAULT_TEMPLATE = "{{ .Prompt }}"
# What one /api/show reads of the values a GGUF leaves in its file (vocabularies, huge arrays): the largest
# real tokenizers (Gemma 3: 262k tokens with scores and types, 786k elements in ~6 MiB; Llama 3: 408k tokens
# and merges in ~8 MiB) fit whole; a hostile file's ten-million-element array is cut there and named in
# model_info_truncated, so neither this process nor the gateway that relays the answer holds more.
SHOW_ITEMS = 1 << 20
SHOW_BYTES = 16 * 1024 * 1024
GGUF_CACHE_BYTES = 32 * 1024 * 1024
_GGUF_CACHE: ByteLRU[Path, GGUFFile] = ByteLRU(GGUF_CACHE_BYTES, lambda gguf: gguf.memory)


def gguf_of(path: Path) -> GGUFFile:
    """Read a blob's GGUF metadata, cached by its approximate size (blobs are immutable by digest)."""
    return _GGUF_CACHE.get_or_load(path, lambda: read_gguf(path))


class ModelView:
    """A stored model with its layers read: the one object show, tags and resolve are built from."""

    def __init__(self, store: ModelStore, stored: StoredModel) -> None:
        self.store, self.stored = store, stored
        manifest = stored.manifest
        self.config: dict[str, Any] = self._json_blob(manifest.config.digest, {})
        self.model_layer = next(iter(manifest.layers_of(media_types.MODEL)), None)
        self.template = self._text(media_types.TEMPLATE) or self._text(media_types.LEGACY_PROMPT)
        self.system = self._text(media_types.SYSTEM) or ""
        self.params: dict[str, Any] = self._json_layer(media_types.PARAMS, {})
        self.messages: list[dict[str, Any]] = self._json_layer(media_types.MESSAGES, [])
        self.licenses = [self.store.read_blob(layer.digest).decode("utf-8", "replace")
                         for layer in manifest.layers_of(media_types.LICENSE)]
        self.remote_host = str(self.config.get("remote_host") or "")
        self.remote_model = str(self.config.get("remote_model") or "")

    @property
    def remote(self) -> bool:
        """Whether the model runs elsewhere (its config names a remote host and model)."""
        return bool(self.remote_host and self.remote_model)

    def remote_fields(self) -> dict[str, str]:
        """``remote_model`` and ``remote_host`` for tags and show (nothing for a local model)."""
        return {"remote_model": self.remote_model, "remote_host": self.remote_host} if self.remote else {}

    def _text(self, media_type: str) -> str | None:
        layers = self.stored.manifest.layers_of(media_type)
        return self.store.read_blob(layers[-1].digest).decode("utf-8", "replace") if layers else None

    def _json_blob(self, digest: Digest, default: Any) -> Any:
        try:
            return json.loads(self.store.read_blob(digest))
        except (OSError, ValueError):
            return default

    def _json_layer(self, media_type: str, default: Any) -> Any:
        layers = self.stored.manifest.layers_of(media_type)
        return self._json_blob(layers[-1].digest, default) if layers else default

    def gguf(self) -> GGUFFile | None:
        """The model layer's GGUF metadata, or None when it has no readable GGUF layer."""
        if self.model_layer is None:
            return None
        try:
            return gguf_of(self.store.blob_path(self.model_layer.digest))
        except (OSError, InvalidGGUF):
            return None

    def capabilities(self) -> list[str]:
        """Derived as Ollama does: config, GGUF pooling/vision keys, template variables."""
        caps: list[str] = list(self.config.get("capabilities") or [])
        if self.remote:  # what the config says (a pull copies the host's answer), else a plain completion model
            return list(dict.fromkeys(caps + _template_capabilities(self.template, ""))) or ["completion"]
        gguf = self.gguf()
        meta = gguf.metadata if gguf else {}
        arch = str(meta.get("general.architecture", ""))
        caps.append("embedding" if f"{arch}.pooling_type" in meta else "completion")
        caps += _template_capabilities(self.template, (gguf.chat_template() if gguf else None) or "")
        if self.stored.manifest.layers_of(media_types.PROJECTOR) or f"{arch}.vision.block_count" in meta:
            caps.append("vision")
        return list(dict.fromkeys(caps))

    def details(self, with_parent: bool = False) -> dict[str, Any]:
        """api.ModelDetails (parent_model only for show)."""
        parent = self.model_layer.from_ if (with_parent and self.model_layer) else ""
        return model_details(self.config, parent)

    def tags_entry(self) -> dict[str, Any]:
        """One item of GET /api/tags."""
        short = self.stored.name.display_shortest()
        return {"name": short, "model": short, **self.remote_fields(),
                "modified_at": local_time(self.stored.modified), "size": self.stored.manifest.total_size(),
                "digest": self.stored.digest_hex(), "details": self.details()}


def _template_capabilities(template: str | None, chat_template: str) -> list[str]:
    """tools/insert/thinking from the Go template's variables or the Jinja template's text."""
    caps: list[str] = []
    if template:
        try:
            variables = Template.parse(template).variables()
        except TemplateError:
            variables = set()
        caps += [cap for var, cap in (("Tools", "tools"), ("Suffix", "insert"), ("Think", "thinking"))
                 if var in variables]
        if "thinking" not in caps and ("<think>" in template or is_harmony(template)):
            caps.append("thinking")
    elif chat_template:
        caps += ["tools"] if ("tools" in chat_template or "tool_call" in chat_template) else []
        caps += ["thinking"] if "<think>" in chat_template or is_harmony(chat_template) else []
    return caps


def _elided(value: Any, verbose: bool) -> bool:
    """Arrays longer than five elements are shown as [] unless verbose, as Ollama does."""
    return isinstance(value, (list, LazyArray)) and len(value) > MAX_SHOWN_ARRAY and not verbose


def model_info(gguf: GGUFFile | None, verbose: bool) -> tuple[dict[str, Any], dict[str, int]]:
    """GGUF key/values minus the name and chat template, and the keys whose values were cut short to stay
    within SHOW_ITEMS / SHOW_BYTES, each with its full length (elements of an array, bytes of a string)."""
    if gguf is None:
        return {}, {}
    limit, info, cut = ReadLimit(SHOW_ITEMS, SHOW_BYTES), {}, {}
    for key in sorted(gguf.metadata):
        if key in ("general.name", "tokenizer.chat_template"):
            continue
        raw = gguf.metadata[key]
        if _elided(raw, verbose):
            info[key] = []
            continue
        info[key], was_cut = gguf.bounded_value(key, limit)
        if was_cut:
            cut[key] = len(raw)  # type: ignore[arg-type]
    return info, cut


def go_value(value: Any) -> str:
    """Go's %#v for a parameter value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _go_float(value: float) -> str:
    """Shortest float text the way Go's 'g' formatting prints it (1, 0.7, 1e+06)."""
    if value == int(value) and abs(value) < 1e21:
        return str(int(value)) if abs(value) < 1e6 else f"{value:g}".replace("e+0", "e+0")
    return repr(value)


def parameters_text(params: dict[str, Any]) -> str:
    """One line per option (lists one line per element), ``%-30s %#v``."""
    lines = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {go_value(item)}")
    return "\n".join(lines)


def modelfile_text(view: ModelView, system: str | None, extra: dict[str, Any]) -> str:
    """A Modelfile that ``create`` accepts back: every value quoted so that it reads back exactly."""
    lines = ['# Modelfile generated by "corral show"',
             "# To build a new Modelfile based on this, replace FROM with:",
             f"# FROM {view.stored.name.display_shortest()}", ""]
    if view.remote:
        lines.append(f"FROM {quote_value(view.remote_model)}")
    for layer in view.stored.manifest.layers:
        if layer.media_type in (media_types.MODEL, media_types.PROJECTOR):
            lines.append(f"FROM {quote_value(str(view.store.blob_path(layer.digest)))}")
        elif layer.media_type == media_types.ADAPTER:
            lines.append(f"ADAPTER {quote_value(str(view.store.blob_path(layer.digest)))}")
    lines.append(f"TEMPLATE {quote_value(view.template or DEFAULT_TEMPLATE)}")
    if system if system is not None else view.system:
        lines.append(f"SYSTEM {quote_value(system if system is not None else view.system)}")
    for key, value in {**view.params, **extra}.items():
        for item in value if isinstance(value, list) else [value]:
            text = go_value(item) if isinstance(item, (int, float, bool)) else quote_value(str(item))
            lines.append(f"PARAMETER {key} {text}")
    lines += [f"LICENSE {quote_value(text)}" for text in view.licenses]
    lines += [f"MESSAGE {m.get('role', '')} {quote_value(str(m.get('content', '')))}" for m in view.messages]
    return "\n".join(lines) + "\n"


def show_response(view: ModelView, verbose: bool, system: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """POST /api/show in Ollama's key order."""
    gguf = view.gguf()
    out: dict[str, Any] = {}
    if view.licenses:
        out["license"] = "\n".join(view.licenses)
    out["modelfile"] = modelfile_text(view, system, options)
    if view.params:
        out["parameters"] = parameters_text(view.params)
    template = view.template or (gguf.chat_template() if gguf else None) or DEFAULT_TEMPLATE
    out["template"] = template
    if system if system is not None else view.system:
        out["system"] = system if system is not None else view.system
    out["details"] = view.details(with_parent=True)
    if view.messages:
        out["messages"] = [{"role": m.get("role", ""), "content": m.get("content", "")} for m in view.messages]
    out.update(view.remote_fields())
    info, cut = ({}, {}) if view.remote else model_info(gguf, verbose)
    out["model_info"] = remote_model_info(view.config) if view.remote else info
    if cut:
        out["model_info_truncated"] = cut
    if gguf is not None and verbose:
        out["tensors"] = [{"name": t.name, "type": t.type_name, "shape": list(t.shape)} for t in gguf.tensors]
    out["capabilities"] = view.capabilities()
    out["modified_at"] = local_time(view.stored.modified)
    return out


def remote_model_info(config: dict[str, Any]) -> dict[str, Any]:
    """What a remote model's config says of it, under the GGUF keys Ollama shows."""
    family = config.get("model_family") or ""
    if not family:
        return {}
    info: dict[str, Any] = {"general.architecture": family}
    if config.get("base_name"):
        info["general.basename"] = config["base_name"]
    for key in ("context_length", "embedding_length"):
        if config.get(key):
            info[f"{family}.{key}"] = config[key]
    return info


def _remote_resolved(view: ModelView) -> ResolvedModel:
    """A remote model: where it runs, and what the gateway forwards with it."""
    return ResolvedModel(
        name=str(view.stored.name), short=view.stored.name.display_shortest(),
        manifest_digest=view.stored.digest_hex(), model_digest="", template=view.template, system=view.system,
        params=view.params, messages=view.messages, details=view.details(), capabilities=view.capabilities(),
        context_length=view.config.get("context_length") or None, modified_at=local_time(view.stored.modified),
        remote_host=view.remote_host, remote_model=view.remote_model)


def _token(gguf: GGUFFile | None, key: str) -> str:
    """The text of a special token named by an id key (bos/eos)."""
    if gguf is None:
        return ""
    index = gguf.metadata.get(key)
    token = gguf.item("tokenizer.ggml.tokens", index) if isinstance(index, int) else None
    return "" if token is None else str(token)


def resolved(view: ModelView) -> ResolvedModel | None:
    """Everything the gateway needs to run the model; None when it has no model layer to run."""
    if view.remote:
        return _remote_resolved(view)
    gguf, manifest = view.gguf(), view.stored.manifest
    if view.model_layer is None:
        return None
    return ResolvedModel(
        name=str(view.stored.name), short=view.stored.name.display_shortest(),
        manifest_digest=view.stored.digest_hex(), model_digest=view.model_layer.digest.hex,
        adapters=[layer.digest.hex for layer in manifest.layers_of(media_types.ADAPTER)],
        projectors=[layer.digest.hex for layer in manifest.layers_of(media_types.PROJECTOR)],
        template=view.template, chat_template=gguf.chat_template() if gguf else None,
        system=view.system, params=view.params, messages=view.messages,
        details=view.details(), capabilities=view.capabilities(),
        bos_token=_token(gguf, "tokenizer.ggml.bos_token_id"),
        eos_token=_token(gguf, "tokenizer.ggml.eos_token_id"),
        context_length=gguf.context_length() if gguf else None,
        modified_at=local_time(view.stored.modified),
    )
