"""``corral pull``/``push`` (progress bars per layer), ``corral registry`` and ``corral prune``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any

from corral_cli.client import Client, ServerError
from corral_cli.errors import CliError
from corral_cli.progress import Bar, Progress, Spinner


def show_transfer_progress(chunks: Iterable[dict[str, Any]], progress: Progress, verb: str) -> None:
    """A spinner per status line and a bar per layer digest, as ``ollama pull``/``push`` draw them."""
    bars: dict[str, Bar] = {}
    spinner: Spinner | None = None
    status = ""
    for chunk in chunks:
        digest = str(chunk.get("digest") or "")
        if digest:
            if spinner is not None:
                spinner.stop()
                spinner = None
            bar = bars.get(digest)
            if bar is None:
                label = digest.removeprefix("sha256:")[:12]
                bar = bars[digest] = Bar(f"{verb} {label}...", int(chunk.get("total") or 0),
                                         int(chunk.get("completed") or 0))
                progress.add(bar)
            bar.set(int(chunk.get("completed") or 0))
        elif chunk.get("status") and chunk["status"] != status:
            if spinner is not None:
                spinner.stop()
            status = str(chunk["status"])
            spinner = Spinner(status)
            progress.add(spinner)
    if spinner is not None:
        spinner.stop()


def _transfer(client: Client, path: str, verb: str, model: str, insecure: bool) -> None:
    progress = Progress()
    try:
        body = {"model": model, "insecure": insecure, "stream": True}
        show_transfer_progress(client.stream(path, body), progress, verb)
    finally:
        progress.stop()


def pull(client: Client, model: str, insecure: bool = False) -> None:
    """Pull a model with progress on stderr."""
    _transfer(client, "/api/pull", "pulling", model, insecure)


def pull_for_run(client: Client, model: str, insecure: bool = False) -> None:
    """``corral run``'s hook for a missing model: pull it; a server without /api/pull means it is not there."""
    try:
        pull(client, model, insecure)
    except ServerError as error:
        if error.status == 404 and error.message == "404 page not found":
            raise CliError(f"model '{model}' not found") from None
        raise


def pull_model(client: Client, args: argparse.Namespace) -> int:
    """``corral pull MODEL [--insecure]``."""
    pull(client, args.model, args.insecure)
    return 0


def push_model(client: Client, args: argparse.Namespace) -> int:
    """``corral push MODEL [--insecure]``."""
    _transfer(client, "/api/push", "pushing", args.model, args.insecure)
    return 0


def run_registry(_client: Client | None, _args: argparse.Namespace) -> int:
    """``corral registry``: the /v2 registry alone, in the foreground."""
    try:
        from corral_registry.standalone import run
    except ImportError:
        raise CliError("the registry service is not installed (pip install ./services/registry)") from None
    return run()


def prune(_client: Client | None, args: argparse.Namespace) -> int:
    """``corral prune``: delete blobs no manifest references, in the registry's storage or the model store."""
    try:
        from corral_registry.gc import collect_registry, prune_models
        from corral_registry.settings import RegistrySettings
    except ImportError:
        raise CliError("the registry service is not installed (pip install ./services/registry)") from None
    settings = RegistrySettings.from_env()
    grace = args.grace if args.grace is not None else settings.gc_grace_seconds
    if args.models:
        report = prune_models(settings.models_dir, args.dry_run, grace)
    else:
        report = collect_registry(settings, args.dry_run, grace)
    if report.skipped:
        raise CliError(f"nothing pruned: {report.skipped}")
    action = "would delete" if args.dry_run else "deleted"
    for digest in report.deleted:
        print(f"{action} {digest}")
    print(f"{action} {len(report.deleted)} blobs ({report.freed_bytes} bytes); kept {report.marked} referenced, "
          f"{report.kept_young} younger than the grace period", file=sys.stderr)
    return 0


Command = Callable[..., argparse.ArgumentParser]


def register(sub: argparse._SubParsersAction, command: Command) -> None:
    """Add pull, push, registry and prune to the ``corral`` argument tree."""
    for name, summary, handler in (("pull", "Pull a model from a registry", pull_model),
                                   ("push", "Push a model to a registry", push_model)):
        parser = command(sub, name, summary, handler, ("OLLAMA_HOST", "OLLAMA_API_KEY"))
        parser.add_argument("model", metavar="MODEL")
        parser.add_argument("--insecure", action="store_true", help="Use an insecure registry")
    parser = command(sub, "registry", "Start a private model registry", run_registry, ())
    parser.set_defaults(local=True)
    parser = command(sub, "prune", "Delete blobs no model references", prune, ())
    parser.add_argument("--dry-run", action="store_true", help="Only list what would be deleted")
    parser.add_argument("--models", action="store_true",
                        help="Prune the local model store (OLLAMA_MODELS) instead of the registry's storage")
    parser.add_argument("--grace", type=float, default=None,
                        help="Keep unreferenced blobs younger than this many seconds (default 3600)")
    parser.set_defaults(local=True)
