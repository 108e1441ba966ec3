"""Help reads like Ollama's cobra output, documents every variable the tree reads, and names unknown commands."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from corral_cli.env_table import ENV_VARS
from corral_cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
READ_IN_TREE = re.compile(r"[\"'](?:OLLAMA|CORRAL)_[A-Z0-9_]+[\"']")
TABLE_MODULES = {"env_table.py"}


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the tree, nested ones included (aliases left out)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                found.append((*path, choice.dest))
                found.extend(_commands(action.choices[choice.dest], (*path, choice.dest)))
    return found


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def _variables_read() -> set[str]:
    """Every OLLAMA_*/CORRAL_* name quoted in the services', libraries' and CLI's code (tests left out)."""
    names = set()
    for top in ("services", "libs", "cli"):
        for path in (ROOT / top).rglob("*.py"):
            if "tests" not in path.parts and path.name not in TABLE_MODULES:
                names.update(match[1:-1] for match in READ_IN_TREE.findall(path.read_text(encoding="utf-8")))
    return names


@pytest.mark.parametrize("path", _commands(build_parser()), ids=" ".join)
def test_every_command_help_has_cobra_sections_and_its_flags(capsys, path):
    parser = build_parser()
    for word in path:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    out = _help(capsys, *path)
    assert "usage:" not in out and "options:" not in out
    assert f"\n\nUsage:\n  corral {' '.join(path)}" in out and "\n\nFlags:\n" in out
    assert "  -h, --help" in out and f"help for {path[-1]}" in out
    for action in parser._actions:
        for option in (o for o in action.option_strings if o.startswith("--") and not o.startswith("--no-")):
            assert re.search(rf"^ +(-\w, )?{option}\b", out, re.M), option


def test_run_help_matches_ollama_layout(capsys):
    out = _help(capsys, "run")
    assert out.startswith("Run a model\n\nUsage:\n  corral run MODEL [PROMPT] [flags]\n\nFlags:\n"
                          "      --dimensions int          Truncate output embeddings")
    assert '      --think string[="true"]   Enable thinking mode' in out
    assert "  -h, --help                    help for run\n" in out
    assert out.endswith("\nEnvironment Variables:\n"
                        "      OLLAMA_HOST                   IP Address for the corral server (default 127.0.0.1:11434)\n"
                        "      OLLAMA_API_KEY                Sent to the server as 'Authorization: Bearer <key>' when set\n"
                        "      OLLAMA_NOHISTORY              Do not preserve readline history\n")


def test_aliases_and_nested_commands(capsys):
    assert "\n\nAliases:\n  list, ls\n\n" in _help(capsys, "list")
    out = _help(capsys, "keys")
    assert "Usage:\n  corral keys [command]\n\nAvailable Commands:\n  create      Create an API key" in out
    assert 'Use "corral keys [command] --help" for more information about a command.' in out
    assert "\n\nAliases:\n  list, ls\n" in _help(capsys, "keys", "list")


def test_root_help_lists_corral_commands_in_ollama_layout(capsys):
    out = _help(capsys)
    assert out.startswith("Large language model runner\n\nUsage:\n  corral [flags]\n  corral [command]\n\n"
                          "Available Commands:\n  serve       Start corral\n  create      Create a model\n")
    for extra in ("keys", "grants", "index", "mcp", "registry", "prune"):
        assert re.search(rf"^  {extra} +\S", out, re.M), extra
    assert out.endswith("  help        Help about any command\n\nFlags:\n"
                        "  -h, --help      help for corral\n  -v, --version   Show version information\n\n"
                        'Use "corral [command] --help" for more information about a command.\n')


def test_serve_help_lists_every_variable_with_corrals_defaults(capsys):
    out = _help(capsys, "serve")
    assert "\n\nAliases:\n  serve, start\n" in out
    listed = set(re.findall(r"^      ((?:OLLAMA|CORRAL)_[A-Z0-9_]+) ", out, re.M))
    assert listed == set(ENV_VARS)
    assert {"OLLAMA_MAX_QUEUE", "OLLAMA_NOPRUNE"} <= listed
    assert "Context length to use unless otherwise specified (default: 4096)" in out and "VRAM" not in out
    assert "Maximum number of queued requests (default 512)" in out
    assert "Maximum number of parallel requests (default 4)" in out


def test_every_variable_read_in_the_tree_is_in_the_table():
    read = _variables_read()
    assert {"OLLAMA_HOST", "OLLAMA_MAX_QUEUE", "CORRAL_HOME"} <= read  # the scan itself works
    assert sorted(read - set(ENV_VARS)) == [], "document these in cli/corral_cli/env_table.py"
    assert sorted(set(ENV_VARS) - read) == [], "these are documented but nothing reads them"


def test_unknown_command_prints_cobras_error(capsys):
    assert main(["foo"]) == 1
    assert capsys.readouterr() == ("", 'Error: unknown command "foo" for "corral"\n')
    assert main(["rnu", "x"]) == 1
    assert capsys.readouterr().err == 'Error: unknown command "rnu" for "corral"\n\nDid you mean this?\n\trun\n\trm\n\n'
    assert main(["keys", "bar"]) == 1
    assert capsys.readouterr().err == 'Error: unknown command "bar" for "corral keys"\n'
