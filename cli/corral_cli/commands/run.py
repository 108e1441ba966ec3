"""``corral run``: one answer for a prompt, or an interactive chat on a terminal."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import Any, TextIO

from corral_cli.answer import stream_answer
from corral_cli.client import Client
from corral_cli.display import WordWrapper, stats_summary
from corral_cli.errors import CliError
from corral_cli.images import extract_images
from corral_cli.session import (
    Puller,
    RunOptions,
    generate_body,
    infer_think,
    load_model,
    parse_format,
    parse_keep_alive,
    parse_think,
    show_or_pull,
)


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """RunOptions from the ``run`` flags."""
    return RunOptions(
        model=args.model,
        format=parse_format(args.format or ""),
        keep_alive=parse_keep_alive(args.keepalive) if args.keepalive else None,
        think=parse_think(args.think) if args.think is not None else None,
        hide_thinking=args.hidethinking,
        word_wrap=not args.nowordwrap,
        verbose=args.verbose,
    )


def read_prompt(words: list[str], stdin: TextIO, stdout: TextIO) -> tuple[str, bool]:
    """The prompt (piped stdin first, then the arguments) and whether the session is interactive."""
    prompts, interactive = list(words), True
    if not stdin.isatty():
        piped = stdin.read()
        if piped:
            prompts.insert(0, piped)
        interactive = False
    if prompts or not stdout.isatty():
        interactive = False
    return " ".join(prompts), interactive


def run_model(client: Client, args: argparse.Namespace, pull: Puller | None = None) -> int:
    """``corral run MODEL [PROMPT...]``; ``pull`` fetches a missing model once pulling exists."""
    opts = options_from_args(args)
    opts.prompt, interactive = read_prompt(args.prompt, sys.stdin, sys.stdout)
    info = show_or_pull(client, opts.model, args.insecure, pull)
    capabilities = [str(c) for c in info.get("capabilities") or []]
    opts.think = infer_think(capabilities, opts.think, args.think is not None)
    opts.apply_show(info)
    if "embedding" in capabilities:
        return embed(client, opts, args)
    if "image" in capabilities:
        raise CliError("image generation models are not currently supported")
    if not interactive:
        return generate_once(client, opts)
    from corral_cli.interactive import Repl

    load_model(client, opts)
    print_loaded_messages(opts)
    return Repl(client, opts, think_explicit=args.think is not None).run()


def print_loaded_messages(opts: RunOptions) -> None:
    """Replay the model's stored MESSAGEs before the first prompt."""
    for message in opts.loaded_messages:
        if message.get("role") == "user":
            print(f">>> {message.get('content', '')}")
        elif message.get("role") == "assistant":
            width = shutil.get_terminal_size().columns
            sys.stdout.write(WordWrapper(width, opts.word_wrap).feed(str(message.get("content", ""))) + "\n\n")


def generate_once(client: Client, opts: RunOptions) -> int:
    """Stream one /api/generate answer to stdout, then the stats with ``--verbose``; a vision model gets the
    image files the prompt names."""
    if opts.multimodal:
        opts.prompt, opts.images = extract_images(opts.prompt)
    answer = stream_answer(client, "/api/generate", generate_body(opts), opts.answer_style())
    if answer.cancelled:
        if answer.printed:
            print()
        return 0
    if opts.prompt:
        sys.stdout.write("\n\n")
    sys.stdout.flush()
    if opts.verbose and answer.final is not None:
        sys.stderr.write(stats_summary(answer.final))
    return 0


def embed(client: Client, opts: RunOptions, args: argparse.Namespace) -> int:
    """Embedding models print the vector for the prompt instead of generating."""
    if not opts.prompt:
        raise CliError(f'embedding models require input text. Usage: corral run {opts.model} "your text here"')
    body: dict[str, Any] = {"model": opts.model, "input": opts.prompt}
    if opts.keep_alive is not None:
        body["keep_alive"] = opts.keep_alive
    if args.truncate is not None:
        body["truncate"] = args.truncate
    if args.dimensions:
        body["dimensions"] = args.dimensions
    embeddings = (client.request("POST", "/api/embed", body) or {}).get("embeddings") or []
    if not embeddings:
        raise CliError("no embeddings returned")
    print(json.dumps(embeddings[0], separators=(",", ":")))
    return 0
