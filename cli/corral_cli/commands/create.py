"""``corral create``: a Modelfile becomes blob uploads and one streamed ``POST /api/create``."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral_cli.client import Client
from corral_cli.errors import CliError
from corral_cli.progress import Bar, Progress, Spinner

CHUNK = 1 << 20
# What a safetensors model needs beside its weights; the server links only these kinds for conversion.
SAFETENSORS_COMPANIONS = (".json", ".txt", ".model", ".tiktoken", ".jinja")


@dataclass
class CreatePlan:
    """The /api/create body before uploads, and the local files each blob comes from."""

    body: dict[str, Any] = field(default_factory=dict)
    files: dict[Path, str] = field(default_factory=dict)  # local path -> "sha256:<hex>"
    adapters: dict[Path, str] = field(default_factory=dict)
    draft_files: dict[Path, str] = field(default_factory=dict)

    def request(self, model: str, quantize: str = "") -> dict[str, Any]:
        """The complete request once the blobs are on the server."""
        body: dict[str, Any] = {"model": model, **self.body}
        for key, files in (("files", self.files), ("adapters", self.adapters), ("draft_files", self.draft_files)):
            if files:
                body[key] = {name: files[path] for path, name in request_file_names(files).items()}
        if quantize:
            body["quantize"] = quantize
        body["stream"] = True
        return body


def read_modelfile(name: str | None) -> tuple[str | bytes, Path]:
    """The Modelfile and the directory its paths are relative to; no ./Modelfile means ``FROM .``."""
    path = Path(name or "Modelfile").absolute()
    if not path.is_file():
        if name:
            raise CliError("specified Modelfile wasn't found")
        return "FROM .\n", Path.cwd()
    try:
        return path.read_bytes(), path.parent  # bytes: the parser handles BOMs and UTF-16
    except OSError as error:
        raise CliError(f"open {path}: {error.strerror}") from None


def expand_path(value: str, base: Path) -> Path:
    """A FROM/ADAPTER argument as a path: ``~`` expanded, relative to the Modelfile's directory."""
    if value.startswith("~"):
        return Path(os.path.expanduser(value)).absolute()
    return (base / value).absolute()


def model_files(path: Path) -> list[Path]:
    """The weight files a FROM/ADAPTER path names: the file itself, or the weights in a directory."""
    if not path.is_dir():
        return [path]
    for pattern in ("*.gguf", "model*.safetensors", "consolidated*.safetensors", "*.safetensors"):
        found = sorted(path.glob(pattern))
        if found:
            break
    else:
        raise CliError("no Modelfile or safetensors files found")
    if found[0].suffix == ".safetensors":  # safetensors need their configs and tokenizer
        found += _companions(path)
    return found


def _companions(path: Path) -> list[Path]:
    """Every config and tokenizer file below a safetensors directory (nested ones such as
    ``1_Pooling/config.json`` too), hidden files and folders left out."""
    found = []
    for file in sorted(path.rglob("*")):
        hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
        if file.suffix in SAFETENSORS_COMPANIONS and not hidden and file.is_file():
            found.append(file)
    return found


def file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _digests(path: Path) -> dict[Path, str]:
    # Keep the name as written: a symlinked file (a Hugging Face cache entry) keeps its .gguf name.
    return {file: file_digest(file) for file in model_files(path)}


def plan_create(modelfile: Any, base: Path) -> CreatePlan:
    """Turn parsed Modelfile commands into a CreatePlan, hashing the local files they name."""
    plan, licenses = CreatePlan(), []
    for command in modelfile.commands:
        name, args = command.name, command.args
        if name == "from":
            path = expand_path(args, base)
            if path.exists():
                plan.files.update(_digests(path))
            else:
                plan.body["from"] = args
        elif name in ("adapter", "draft"):
            path = expand_path(args, base)
            if not path.exists():
                raise CliError(f"stat {path}: no such file or directory")
            (plan.adapters if name == "adapter" else plan.draft_files).update(_digests(path))
        elif name in ("template", "system", "renderer", "parser"):
            plan.body[name] = args
        elif name == "requires":
            plan.body["requires"] = args.removeprefix("v")
        elif name == "license":
            licenses.append(args)
    _add_lists(plan.body, modelfile, licenses)
    return plan


def _add_lists(body: dict[str, Any], modelfile: Any, licenses: list[str]) -> None:
    parameters = modelfile.parameters()
    if parameters:
        body["parameters"] = parameters
    messages = [{"role": role, "content": content} for role, content in modelfile.messages()]
    if messages:
        body["messages"] = messages
    if licenses:
        body["license"] = licenses


def request_file_names(files: Iterable[Path]) -> dict[Path, str]:
    """Names the server sees: basenames, or paths below the common directory when there are several."""
    paths = list(files)
    if len(paths) < 2:
        return {path: path.name for path in paths}
    root = Path(os.path.commonpath([str(path.parent) for path in paths]))
    return {path: path.relative_to(root).as_posix() for path in paths}


def _chunks(path: Path, sent: list[int], spinner: Spinner, digest: str, size: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            sent[0] += len(block)
            spinner.message = f"copying file {digest} {100 * sent[0] // max(size, 1)}%"
            yield block


def upload(client: Client, files: dict[Path, str], progress: Progress) -> None:
    """Send each file the server does not have yet to ``/api/blobs/<digest>``."""
    for path, digest in files.items():
        present = client.blob_exists(digest)
        spinner = Spinner(f"copying file {digest} {100 if present else 0}%")
        progress.add(spinner)
        if not present:
            size = path.stat().st_size
            client.upload_blob(digest, _chunks(path, [0], spinner, digest, size), size)
        spinner.message = f"copying file {digest} 100%"
        spinner.stop()


def show_create_progress(chunks: Iterable[dict[str, Any]], progress: Progress, spinner: Spinner) -> None:
    """One spinner per status line, one bar per digest that reports byte counts."""
    bars: dict[str, Bar] = {}
    status = spinner.message
    for chunk in chunks:
        digest = chunk.get("digest")
        if digest:
            bar = bars.get(digest)
            if bar is None:
                message = chunk.get("status") or f"pulling {digest[7:19]}..."
                bar = bars[digest] = Bar(message, int(chunk.get("total") or 0), int(chunk.get("completed") or 0))
                progress.add(bar)
            bar.set(int(chunk.get("completed") or 0))
        elif chunk.get("status") and chunk["status"] != status:
            spinner.stop()
            status = chunk["status"]
            spinner = Spinner(status)
            progress.add(spinner)


def create_model(client: Client, args: argparse.Namespace) -> int:
    """``corral create MODEL [-f Modelfile] [-q LEVEL]``."""
    from corral_common.modelfile import ModelfileError, parse
    from corral_common.names import InvalidName, ModelName

    try:
        ModelName.parse(args.model)
    except InvalidName:
        raise CliError(f"invalid model name: {args.model}") from None
    text, base = _modelfile_source(args)
    try:
        modelfile = parse(text)
    except ModelfileError as error:
        raise CliError(str(error)) from None
    for warning in modelfile.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    progress = Progress()
    try:
        _create(client, args, modelfile, base, progress)
    finally:
        progress.stop()
    return 0


def _modelfile_source(args: argparse.Namespace) -> tuple[str | bytes, Path]:
    """The Modelfile to create from: ``--from MODEL`` alone stands for ``FROM MODEL``; with ``-f`` it replaces
    the file's FROM."""
    from_ = getattr(args, "from_", None)
    if from_ and not args.file:
        from corral_common.modelfile import quote_value

        return f"FROM {quote_value(from_)}\n", Path.cwd()
    return read_modelfile(args.file)


def _apply_flags(plan: CreatePlan, args: argparse.Namespace) -> None:
    """``--from`` replaces the Modelfile's FROM; ``--remote-host`` makes the model a remote one."""
    if getattr(args, "from_", None):
        plan.files.clear()
        plan.body["from"] = args.from_
    if getattr(args, "remote_host", None):
        if not plan.body.get("from"):
            raise CliError("--remote-host needs a model to run there: give --from MODEL or FROM MODEL")
        plan.body["remote_host"] = args.remote_host


def _create(client: Client, args: argparse.Namespace, modelfile: Any, base: Path, progress: Progress) -> None:
    spinner = Spinner("gathering model components")
    progress.add(spinner)
    plan = plan_create(modelfile, base)
    _apply_flags(plan, args)
    spinner.stop()
    for files in (plan.files, plan.adapters, plan.draft_files):
        upload(client, files, progress)
    body = plan.request(args.model, args.quantize or "")
    show_create_progress(client.stream("/api/create", body), progress, spinner)
