"""``list``, ``ps``, ``cp``, ``rm`` and ``stop``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from corral_cli.client import Client, ServerError
from corral_cli.errors import CliError
from corral_cli.formatting import human_bytes, human_time, now_utc, parse_time, processor, until
from corral_cli.session import RunOptions, load_model, show
from corral_cli.table import render_table


def render_list(models: Sequence[Mapping[str, Any]], prefix: str | None, now: datetime) -> str:
    """The ``corral list`` table for an /api/tags payload's models."""
    rows = []
    for model in models:
        name = str(model.get("name", ""))
        if prefix and not name.lower().startswith(prefix.lower()):
            continue
        size = "-" if model.get("remote_model") else human_bytes(int(model.get("size") or 0))
        modified = human_time(parse_time(model.get("modified_at")), now)
        rows.append([name, str(model.get("digest", ""))[:12], size, modified])
    return render_table(rows, header=["NAME", "ID", "SIZE", "MODIFIED"])


def render_ps(models: Sequence[Mapping[str, Any]], prefix: str | None, now: datetime) -> str:
    """The ``corral ps`` table for an /api/ps payload's models."""
    rows = []
    for model in models:
        name = str(model.get("name", ""))
        if prefix and not name.startswith(prefix):
            continue
        size, vram = int(model.get("size") or 0), int(model.get("size_vram") or 0)
        remote = bool(model.get("remote_host"))  # runs on its host: nothing of it is in memory here
        rows.append([name, str(model.get("digest", ""))[:12], "-" if remote else human_bytes(size),
                     "remote" if remote else processor(size, vram), str(model.get("context_length") or 0),
                     until(parse_time(model.get("expires_at")), now)])
    return render_table(rows, header=["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"])


def list_models(client: Client, args: argparse.Namespace) -> int:
    """``corral list [prefix]``."""
    models = (client.request("GET", "/api/tags") or {}).get("models") or []
    sys.stdout.write(render_list(models, args.prefix, now_utc()))
    return 0


def list_running(client: Client, args: argparse.Namespace) -> int:
    """``corral ps [prefix]``."""
    models = (client.request("GET", "/api/ps") or {}).get("models") or []
    sys.stdout.write(render_ps(models, args.prefix, now_utc()))
    return 0


def copy_model(client: Client, args: argparse.Namespace) -> int:
    """``corral cp SOURCE DESTINATION``."""
    client.request("POST", "/api/copy", {"source": args.source, "destination": args.destination})
    print(f"copied '{args.source}' to '{args.destination}'")
    return 0


def _is_remote(client: Client, name: str) -> bool:
    """Whether ``name`` is a remote model (nothing of it runs here, so there is nothing to stop)."""
    try:
        return bool(show(client, name).get("remote_host"))
    except ServerError:
        return False


def remove_models(client: Client, args: argparse.Namespace) -> int:
    """``corral rm MODEL...``: unload each local model, then delete it (a remote model's host is left alone)."""
    for name in args.models:
        try:
            if not _is_remote(client, name):
                load_model(client, RunOptions(model=name, keep_alive=0))
        except ServerError as error:
            if "not found" not in error.message.lower():
                print(f"Warning: unable to stop model '{name}'", file=sys.stderr)
        client.request("DELETE", "/api/delete", {"model": name})
        print(f"deleted '{name}'")
    return 0


def stop_model(client: Client, args: argparse.Namespace) -> int:
    """``corral stop MODEL``: unload a running model now."""
    try:
        show(client, args.model)
        load_model(client, RunOptions(model=args.model, keep_alive=0))
    except ServerError as error:
        if "not found" in error.message:
            raise CliError(f'couldn\'t find model "{args.model}" to stop') from None
        raise
    return 0
