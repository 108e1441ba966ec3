"""Help and errors laid out as Ollama's cobra commands print them, rendered from the argparse definitions.

Sections follow cobra's default usage template (Usage, Aliases, Available Commands, Flags), flags are
drawn as pflag's ``FlagUsages`` draws them, and the environment block as Ollama's ``appendEnvDocs``.
"""

from __future__ import annotations

import argparse

from corral_cli.env_table import env_section

MIN_NAME_PADDING = 11  # cobra's minNamePadding
SUGGESTION_DISTANCE = 2  # cobra's default SuggestionsMinimumDistance


def render_help(parser: argparse.ArgumentParser) -> str:
    """What ``corral [command] --help`` prints: the description, then the usage text."""
    return f"{(parser.description or '').rstrip()}\n\n{usage_text(parser)}"


def usage_text(parser: argparse.ArgumentParser) -> str:
    """cobra's usage template over one parser, with its environment variables appended."""
    commands = _subcommands(parser)
    usage = ["Usage:"]
    if commands is None or not commands.required:
        usage.append(f"  {use_line(parser)}")
    if commands is not None:
        usage.append(f"  {parser.prog} [command]")
    sections = ["\n".join(usage)]
    if getattr(parser, "aliases", ()):
        sections.append("Aliases:\n  " + ", ".join((_name(parser), *parser.aliases)))  # type: ignore[attr-defined]
    if commands is not None:
        sections.append("Available Commands:\n" + _command_lines(commands))
    sections.append("Flags:\n" + flag_usages(parser))
    if commands is not None:
        sections.append(f'Use "{parser.prog} [command] --help" for more information about a command.')
    return "\n\n".join(sections) + "\n" + env_section(getattr(parser, "env_names", ()))


def use_line(parser: argparse.ArgumentParser) -> str:
    """``corral run MODEL [PROMPT] [flags]``: the path, the positionals (or the command's own Use), [flags]."""
    words = getattr(parser, "use", "") or " ".join(_positional(action) for action in parser._actions
                                                   if not action.option_strings and action.nargs != "A...")
    return f"{parser.prog} {words} [flags]" if words else f"{parser.prog} [flags]"


def _positional(action: argparse.Action) -> str:
    name = action.metavar or action.dest.upper()
    if action.nargs == "?":
        return f"[{name}]"
    if action.nargs == "*":
        return f"[{name}...]"
    if action.nargs == "+":
        return f"{name} [{name}...]"
    return str(name)


def _name(parser: argparse.ArgumentParser) -> str:
    return parser.prog.rsplit(" ", 1)[-1]


def _subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _command_lines(commands: argparse._SubParsersAction) -> str:
    """``  name        Short`` for each visible command, padded like cobra (at least 11 wide)."""
    shown = [action for action in commands._choices_actions if action.help != argparse.SUPPRESS]
    pad = max(MIN_NAME_PADDING, *(len(name) for name in commands.choices))
    return "\n".join(f"  {action.dest:<{pad}} {action.help}" for action in shown)


def flag_usages(parser: argparse.ArgumentParser) -> str:
    """pflag's ``FlagUsages``: sorted by long name, the help text aligned two past the widest flag."""
    flags = sorted((a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS),
                   key=lambda action: _long(action).lstrip("-"))
    lines = [(_flag_column(action), _flag_help(action, parser)) for action in flags]
    width = max(len(left) for left, _ in lines) + 2  # pflag: maxlen counts its \x00, then one more space
    return "\n".join(f"{left:<{width}} {text}".rstrip() for left, text in lines)


def _long(action: argparse.Action) -> str:
    return next((o for o in action.option_strings if o.startswith("--")), action.option_strings[0])


def _flag_column(action: argparse.Action) -> str:
    short = next((o for o in action.option_strings if not o.startswith("--")), "")
    column = f"  {short}, {_long(action)}" if short else f"      {_long(action)}"
    kind = _value_name(action)
    column += f" {kind}" if kind else ""
    if action.nargs == "?" and action.const is not None:  # pflag's NoOptDefVal: --think alone means true
        column += f'[="{action.const}"]'
    return column


def _value_name(action: argparse.Action) -> str:
    """pflag's type word: none for booleans, the metavar when one is given, else the value's type."""
    if action.nargs == 0:
        return ""
    if isinstance(action.metavar, str):
        return action.metavar
    if isinstance(action, argparse._AppendAction):
        return "stringArray"
    return {int: "int", float: "float"}.get(action.type, "string")  # type: ignore[arg-type]


def _flag_help(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    if isinstance(action, argparse._HelpAction):
        return f"help for {_name(parser)}"
    text = action.help or ""
    default = action.default
    if default in (None, False, 0, "", [], argparse.SUPPRESS) or "(default" in text:
        return text
    shown = f"{default:g}" if isinstance(default, float) else default
    return f'{text} (default "{shown}")' if isinstance(shown, str) and _value_name(action) == "string" \
        else f"{text} (default {shown})"


def unknown_command(parser: argparse.ArgumentParser, word: str) -> str:
    """cobra's ``unknown command "x" for "corral"``, with its "Did you mean this?" suggestions."""
    message = f'unknown command "{word}" for "{parser.prog}"'
    commands = _subcommands(parser)
    names = [a.dest for a in commands._choices_actions if a.help != argparse.SUPPRESS and a.dest != "help"] \
        if commands is not None else []
    close = [name for name in names
             if _distance(word.lower(), name.lower()) <= SUGGESTION_DISTANCE or name.lower().startswith(word.lower())]
    if close:
        message += "\n\nDid you mean this?\n" + "".join(f"\t{name}\n" for name in close)
    return message


def _distance(a: str, b: str) -> int:
    """Levenshtein distance, as cobra's ``ld``."""
    row = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, char_b in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (char_a != char_b))
    return row[-1]


def find_unknown_command(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """The unknown-command message for the first word that names no command, walking down the tree."""
    commands = _subcommands(parser)
    words = [arg for arg in argv if not arg.startswith("-")]
    if commands is None or not words:
        return None
    if words[0] not in commands.choices:
        return unknown_command(parser, words[0])
    rest = argv[argv.index(words[0]) + 1:]
    return find_unknown_command(commands.choices[words[0]], rest)
