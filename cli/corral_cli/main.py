"""The ``corral`` command line: an argparse tree that mirrors ``ollama``'s commands, and dispatch."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from collections.abc import Callable
from typing import NoReturn

from corral_cli.client import Client, client_version
from corral_cli.cobra_help import find_unknown_command, render_help
from corral_cli.commands.auth import add_auth_commands
from corral_cli.commands.create import create_model
from corral_cli.commands.models import copy_model, list_models, list_running, remove_models, stop_model
from corral_cli.commands.run import run_model
from corral_cli.commands.show import show_model
from corral_cli.commands.transfer import pull_for_run, register as register_transfer
from corral_cli.commands.web import add_web_commands
from corral_cli.env_table import CLIENT_ENV, PRUNE_ENV, REGISTRY_ENV, RUN_ENV, SERVE_ENV
from corral_cli.errors import CliError

Handler = Callable[[Client, argparse.Namespace], int]


class UsageError(CliError):
    """Bad arguments on the command line."""


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as ``Error: ...`` (exit 1) and prints help like Ollama's cobra commands."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.commands: dict[str, argparse.ArgumentParser] = {}  # subcommand parsers, for `corral help X`
        self.aliases: tuple[str, ...] = ()
        self.env_names: tuple[str, ...] = ()  # the Environment Variables section (corral_cli.env_table)
        self.use = ""  # cobra's Use after the command name, when the positionals do not say it

    def format_help(self) -> str:
        """Description, Usage, Aliases, Available Commands, Flags, Environment Variables."""
        return render_help(self)

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing usage and exiting 2."""
        raise UsageError(message)


def _add_create(sub: argparse._SubParsersAction) -> None:
    parser = _command(sub, "create", "Create a model", create_model, CLIENT_ENV)
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("-f", "--file", help='Name of the Modelfile (default "Modelfile")')
    parser.add_argument("-q", "--quantize", help="Quantize model to this level (e.g. q4_K_M)")
    parser.add_argument("--from", dest="from_", metavar="MODEL", help="Base the model on MODEL (instead of FROM)")
    parser.add_argument("--remote-host", metavar="URL", help="Run the model on the Ollama API at URL (no local "
                                                              "weights; with --from or FROM)")


def _add_show(sub: argparse._SubParsersAction) -> None:
    parser = _command(sub, "show", "Show information for a model", show_model, CLIENT_ENV)
    parser.add_argument("model", metavar="MODEL")
    for name, label in (("license", "license"), ("modelfile", "Modelfile"), ("parameters", "parameters"),
                        ("template", "template"), ("system", "system message")):
        parser.add_argument(f"--{name}", action="store_true", help=f"Show {label} of a model")
    parser.add_argument("-v", "--verbose", action="store_true", help="Show detailed model information")


def _add_run(sub: argparse._SubParsersAction) -> None:
    parser = _command(sub, "run", "Run a model", partial(run_model, pull=pull_for_run), RUN_ENV)
    parser.use = "MODEL [PROMPT]"  # without a prompt (on a terminal) a chat starts; piped stdin goes before it
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("prompt", metavar="PROMPT", nargs="*", default=[])
    parser.add_argument("--keepalive", help="Duration to keep a model loaded (e.g. 5m)")
    parser.add_argument("--verbose", action="store_true", help="Show timings for response")
    parser.add_argument("--insecure", action="store_true", help="Use an insecure registry")
    parser.add_argument("--nowordwrap", action="store_true",
                        help="Don't wrap words to the next line automatically")
    parser.add_argument("--format", help="Response format (e.g. json)")
    parser.add_argument("--think", nargs="?", const="true",
                        help="Enable thinking mode: true/false or high/medium/low/max for supported models")
    parser.add_argument("--hidethinking", action="store_true", help="Hide thinking output (if provided)")
    parser.add_argument("--truncate", action=argparse.BooleanOptionalAction, default=None,
                        help="For embedding models: truncate inputs exceeding context length (default: true). "
                             "Set --no-truncate to error instead")
    parser.add_argument("--dimensions", type=int, default=0,
                        help="Truncate output embeddings to specified dimension (embedding models only)")


def _add_simple(sub: argparse._SubParsersAction) -> None:
    parser = _command(sub, "stop", "Stop a running model", stop_model, CLIENT_ENV)
    parser.add_argument("model", metavar="MODEL")
    parser = _command(sub, "list", "List models", list_models, CLIENT_ENV, aliases=["ls"])
    parser.add_argument("prefix", metavar="PREFIX", nargs="?", help="Only models whose name starts with this")
    parser = _command(sub, "ps", "List running models", list_running, CLIENT_ENV)
    parser.add_argument("prefix", metavar="PREFIX", nargs="?", help="Only models whose name starts with this")
    parser = _command(sub, "cp", "Copy a model", copy_model, CLIENT_ENV)
    parser.add_argument("source", metavar="SOURCE")
    parser.add_argument("destination", metavar="DESTINATION")
    parser = _command(sub, "rm", "Remove a model", remove_models, CLIENT_ENV)
    parser.add_argument("models", metavar="MODEL", nargs="+")


def _command(sub: argparse._SubParsersAction, name: str, summary: str, handler: Handler | None,
             env: tuple[str, ...], aliases: list[str] | None = None) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, aliases=aliases or [], help=summary, description=summary)
    parser.aliases, parser.env_names = tuple(aliases or ()), env
    parser.set_defaults(handler=handler, command=name)
    return parser


def build_parser() -> Parser:
    """The whole ``corral`` argument tree."""
    parser = Parser(prog="corral", add_help=True, description="Large language model runner")
    parser.add_argument("-v", "--version", action="store_true", help="Show version information")
    sub = parser.add_subparsers(title="Available Commands", metavar="COMMAND")
    serve = _command(sub, "serve", "Start corral", None, SERVE_ENV, aliases=["start"])
    serve.description = ("Start corral: every service runs in the foreground, listening on OLLAMA_HOST, "
                         "until Ctrl+C")
    _add_create(sub)
    _add_show(sub)
    _add_run(sub)
    _add_simple(sub)
    add_auth_commands(sub, _command)
    add_web_commands(sub, _command)
    register_transfer(sub, _command)
    help_parser = _command(sub, "help", "Help about any command", None, ())
    help_parser.description = ("Help provides help for any command in the application.\n"
                               "Simply type corral help [path to command] for full details.")
    help_parser.use = "[command]"
    help_parser.add_argument("topic", metavar="COMMAND", nargs="?")
    parser.commands = dict(sub.choices)
    parser.commands["registry"].env_names = REGISTRY_ENV  # transfer.register passes none
    parser.commands["prune"].env_names = PRUNE_ENV
    return parser


def parse_args(parser: Parser, argv: list[str]) -> argparse.Namespace:
    """Parse like cobra: unknown commands named, bare ``--think`` means true, run's prompt may follow flags."""
    unknown = find_unknown_command(parser, argv)
    if unknown:
        raise UsageError(unknown)
    argv = ["--think=true" if arg == "--think" else arg for arg in argv]  # never takes the next word
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "command", None) == "run" and not any(a.startswith("-") for a in extra):
        args.prompt = [*args.prompt, *extra]
    elif extra:
        raise UsageError(f"unknown flag or argument: {extra[0]}")
    return args


def print_version(client: Client) -> int:
    """``corral -v``: the client version, and the server's when one answers."""
    print(f"corral version is {client_version()}")
    try:
        server = client.version()
    except CliError:
        print("Warning: could not connect to a running corral server")
        return 0
    if server:
        print(f"server version is {server}")
    return 0


def _dispatch(parser: Parser, args: argparse.Namespace, client: Client | None) -> int:
    command = getattr(args, "command", None)
    if command is None or command == "help":
        topic = getattr(args, "topic", None)
        if topic and topic not in parser.commands:
            raise UsageError(f'unknown help topic "{topic}"')
        sys.stdout.write((parser.commands[topic] if topic else parser).format_help())
        return 0
    if command == "serve":
        from corral_cli.supervisor import serve

        return serve()
    if getattr(args, "local", False):  # `corral admin` works on this host's auth database, not over HTTP
        return args.handler(client, args)
    owned = client is None
    client = client if client is not None else Client.from_env()
    try:
        client.heartbeat()  # every command but serve needs a running server
        return args.handler(client, args)
    finally:
        if owned:
            client.close()


def main(argv: list[str] | None = None, client: Client | None = None) -> int:
    """Entry point of the ``corral`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parse_args(parser, sys.argv[1:] if argv is None else argv)
        if args.version:
            return print_version(client if client is not None else Client.from_env())
        return _dispatch(parser, args, client)
    except CliError as error:
        print(f"Error: {error.message}", file=sys.stderr)
        return 1
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # `corral ls | head`: stop quietly
        return 0
