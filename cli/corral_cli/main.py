"""The ``corral`` command line: an argparse tree that mirrors ``ollama``'s commands, and dispatch."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from collections.abc import Callable
from typing import NoReturn

from corral_cli.client import Client, client_version
from corral_cli.commands.auth import add_auth_commands
from corral_cli.commands.create import create_model
from corral_cli.commands.models import copy_model, list_models, list_running, remove_models, stop_model
from corral_cli.commands.run import run_model
from corral_cli.commands.show import show_model
from corral_cli.commands.transfer import pull_for_run, register as register_transfer
from corral_cli.commands.web import add_web_commands
from corral_cli.errors import CliError
from corral_cli.help_texts import CLIENT_ENV, RUN_ENV, SERVE_ENV, env_epilog

Handler = Callable[[Client, argparse.Namespace], int]


class UsageError(CliError):
    """Bad arguments on the command line."""


class Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as ``Error: ...`` (exit 1) like Ollama's cobra commands."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.commands: dict[str, argparse.ArgumentParser] = {}  # subcommand parsers, for `corral help X`

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing usage and exiting 2."""
        raise UsageError(message)


ROOT_HELP = """Large language model runner

Usage:
  corral [flags]
  corral [command]

Available Commands:
{commands}
Flags:
  -h, --help      help for corral
  -v, --version   Show version information

Use "corral [command] --help" for more information about a command.
"""


def _add_create(sub: argparse._SubParsersAction) -> None:
    parser = _command(sub, "create", "Create a model", create_model, CLIENT_ENV)
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("-f", "--file", help='Name of the Modelfile (default "Modelfile")')
    parser.add_argument("-q", "--quantize", help="Quantize model to this level (e.g. q4_K_M)")


def _add_show(sub: argparse._SubParsersAction) -> None:
    parser = _command(sub, "show", "Show information for a model", show_model, CLIENT_ENV)
    parser.add_argument("model", metavar="MODEL")
    for name, label in (("license", "license"), ("modelfile", "Modelfile"), ("parameters", "parameters"),
                        ("template", "template"), ("system", "system message")):
        parser.add_argument(f"--{name}", action="store_true", help=f"Show {label} of a model")
    parser.add_argument("-v", "--verbose", action="store_true", help="Show detailed model information")


def _add_run(sub: argparse._SubParsersAction) -> None:
    parser = _command(sub, "run", "Run a model", partial(run_model, pull=pull_for_run), RUN_ENV)
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("prompt", metavar="PROMPT", nargs="*", default=[],
                        help="Prompt; without one (and on a terminal) an interactive chat starts. "
                             "Piped stdin is put before it")
    parser.add_argument("--keepalive", help="Duration to keep a model loaded (e.g. 5m)")
    parser.add_argument("--verbose", action="store_true", help="Show timings for response")
    parser.add_argument("--insecure", action="store_true", help="Use an insecure registry")
    parser.add_argument("--nowordwrap", action="store_true",
                        help="Don't wrap words to the next line automatically")
    parser.add_argument("--format", help="Response format (e.g. json)")
    parser.add_argument("--think", metavar="[=VALUE]",
                        help="Enable thinking mode: true/false or high/medium/low/max for supported models "
                             "(--think alone means true)")
    parser.add_argument("--hidethinking", action="store_true", help="Hide thinking output (if provided)")
    parser.add_argument("--truncate", action=argparse.BooleanOptionalAction, default=None,
                        help="For embedding models: truncate inputs exceeding context length (default: true)")
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
    parser = sub.add_parser(name, aliases=aliases or [], help=summary, description=summary, epilog=env_epilog(env))
    parser.set_defaults(handler=handler, command=name)
    return parser


def build_parser() -> Parser:
    """The whole ``corral`` argument tree."""
    parser = Parser(prog="corral", add_help=True)
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
    help_parser.add_argument("topic", metavar="COMMAND", nargs="?")
    parser.format_help = lambda: _root_help(sub)  # type: ignore[method-assign]
    parser.commands = dict(sub.choices)
    return parser


def _root_help(sub: argparse._SubParsersAction) -> str:
    lines = [f"  {action.dest:<11} {action.help}" for action in sub._choices_actions]
    return ROOT_HELP.format(commands="\n".join(lines) + "\n")


def parse_args(parser: Parser, argv: list[str]) -> argparse.Namespace:
    """Parse like cobra: bare ``--think`` means true, run's prompt words may follow its flags."""
    argv = ["--think=true" if arg == "--think" else arg for arg in argv]
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
