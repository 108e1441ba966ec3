"""Ollama Modelfile parser and writer, following ollama/ollama parser/parser.go.

Differences from Ollama, all stricter or clearer: every error names its line (CRLF counts as one
line break), a command without a value is an error instead of an empty value, PARAMETER values
are typed and REQUIRES is checked while parsing, and floats must be finite decimal numbers.

One extension, so that every value can be written and read back (Ollama's format has no way to
write, say, a SYSTEM that starts with a triple quote and a line break): inside a single-quoted
``"..."`` value, ``\\"`` stands for ``"`` and ``\\\\`` for ``\\``; any other backslash is kept as it
is. Triple-quoted and bare values are read verbatim, as in Ollama. The writer uses this form only
when no Ollama quoting reads back exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

COMMANDS = ("from", "license", "template", "system", "adapter", "draft", "renderer", "parser",
            "parameter", "message", "requires")
ROLES = ("system", "user", "assistant")

# The single table of Ollama options a Modelfile PARAMETER (or a request's "options") may set. The mirostat ones are
# documented by Ollama (and implemented by llama.cpp) though its newer engine drops them: corral applies them.
OPTION_TYPES: dict[str, Any] = {
    "num_ctx": int, "num_batch": int, "num_gpu": int, "main_gpu": int, "use_mmap": bool,
    "num_thread": int, "num_keep": int, "seed": int, "num_predict": int, "top_k": int,
    "top_p": float, "min_p": float, "typical_p": float, "repeat_last_n": int,
    "temperature": float, "repeat_penalty": float, "presence_penalty": float,
    "frequency_penalty": float, "stop": list[str],
    "mirostat": int, "mirostat_tau": float, "mirostat_eta": float,
}
DEPRECATED_PARAMETERS = frozenset({"penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only",
                                   "use_mlock"})

_INVALID_COMMAND = ('command must be one of "from", "license", "template", "system", "adapter", "draft", '
                    '"renderer", "parser", "parameter", "message", or "requires"')
_INVALID_ROLE = 'message role must be one of "system", "user", or "assistant"'
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
          "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_FLOAT32_MAX = 3.4028234663852886e38
_NUM = r"(0|[1-9][0-9]*)"
_PRERELEASE_ID = r"(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_SEMVER = re.compile(rf"v{_NUM}(\.{_NUM}(\.{_NUM}(-{_PRERELEASE_ID}(\.{_PRERELEASE_ID})*)?"
                     rf"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?)?)?")
_BLANKS = " \t"
_NEWLINES = "\r\n"


class ModelfileError(ValueError):
    """A Modelfile that cannot be parsed; ``line`` is the 1-based line, when there is one."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"(line {line}): {message}" if line else message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class Command:
    name: str  # lower-case: from, parameter, template, system, adapter, license, message, ...
    args: str  # parameter: "name value"; message: "role content"; otherwise the value


@dataclass
class Modelfile:
    commands: list[Command] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list, compare=False)

    def from_(self) -> str:
        """The FROM argument (the last one when there are several, as in Ollama)."""
        values = self.values("from")
        if not values:
            raise ModelfileError("no FROM line")
        return values[-1]

    def values(self, name: str) -> list[str]:
        """The arguments of every command called ``name``, in order."""
        return [c.args for c in self.commands if c.name == name]

    def messages(self) -> list[tuple[str, str]]:
        """The MESSAGE commands as (role, content) pairs."""
        return [_split_args(c.args) for c in self.commands if c.name == "message"]

    def parameters(self) -> dict[str, object]:
        """PARAMETER values typed by OPTION_TYPES; repeated ``stop`` values accumulate in a list."""
        params: dict[str, object] = {}
        for name, value in map(_split_args, self.values("parameter")):
            if name in DEPRECATED_PARAMETERS:
                continue
            typed = parse_parameter(name, value)
            if isinstance(typed, list):
                params[name] = [*params.get(name, []), *typed]  # type: ignore[misc]
            else:
                params[name] = typed
        return params

    def to_text(self) -> str:
        """The Modelfile as text; ``parse(m.to_text()) == m``."""
        return "".join(_command_text(c) + "\n" for c in self.commands)


def quote_value(value: str) -> str:
    """The value quoted so that the parser reads back exactly it (Ollama's quoting when that does).

    Never raises: characters the parser drops (non-printable ones other than tabs and line
    breaks, as Ollama drops them) are the only thing such a value can lose.
    """
    try:
        return _quote_exact(value)
    except ModelfileError:
        return _escaped(value)


def quote(value: str) -> str:
    """Ollama's parser.quote: quote values with a newline or leading/trailing space."""
    if "\n" in value or value.startswith(" ") or value.endswith(" "):
        return f'"""{value}"""' if '"' in value else f'"{value}"'
    return value


def parse_parameter(name: str, value: str) -> object:
    """A PARAMETER value typed by OPTION_TYPES (list-typed options give a one-element list)."""
    kind = OPTION_TYPES.get(name)
    if kind is None:
        raise ModelfileError(f"unknown parameter '{name}'")
    if getattr(kind, "__origin__", kind) is list:
        return [value]
    if kind is bool:
        if value not in _BOOLS:
            raise ModelfileError(f"invalid bool value [{value}]")
        return _BOOLS[value]
    if kind is int:
        return _parse_int(value)
    return _parse_float(value)


def _parse_int(value: str) -> int:
    if not _INT.fullmatch(value) or not -(1 << 63) <= int(value) < (1 << 63):
        raise ModelfileError(f"invalid int value [{value}]")
    return int(value)


def _parse_float(value: str) -> float:
    if not _FLOAT.fullmatch(value) or abs(float(value)) > _FLOAT32_MAX:
        raise ModelfileError(f"invalid float value [{value}]")
    return float(value)


def parse(text: str | bytes) -> Modelfile:
    """Parse a Modelfile (bytes: UTF-8, or UTF-16 with a BOM); raises ModelfileError."""
    scanner = _Scanner(_decode(text))
    modelfile = Modelfile()
    while scanner.at_command():
        line = scanner.line()
        command = _read_command(scanner, line)
        if _accept(command, line, modelfile):
            modelfile.commands.append(command)
    if not modelfile.values("from"):
        raise ModelfileError("no FROM line")
    return modelfile


def _decode(text: str | bytes) -> str:
    if isinstance(text, str):
        return text.removeprefix("\ufeff")
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if text.startswith(bom):
            return text[len(bom):].decode(codec, errors="replace")
    return text.decode("utf-8", errors="replace")


class _Scanner:
    """A cursor over the Modelfile text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._counted = (0, 1)  # (position, line there): line numbers are counted incrementally

    def peek(self) -> str:
        """The next character, or "" at the end."""
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def line(self) -> int:
        """The 1-based line number of the cursor (never between CR and LF); CRLF is one break."""
        start, line = self._counted if self._counted[0] <= self.pos else (0, 1)
        text, end = self.text, self.pos
        line += text.count("\n", start, end) + text.count("\r", start, end) - text.count("\r\n", start, end)
        self._counted = (end, line)
        return line

    def skip(self, chars: str) -> None:
        """Move past any of ``chars``."""
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def take(self, allowed: re.Pattern[str]) -> str:
        """The longest run of characters matching ``allowed`` at the cursor."""
        match = allowed.match(self.text, self.pos)
        self.pos = match.end() if match else self.pos
        return match.group() if match else ""

    def at_command(self) -> bool:
        """Skip blank lines, comment lines and stray control characters; True if a command follows."""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "#":
                while self.pos < len(self.text) and self.text[self.pos] not in _NEWLINES:
                    self.pos += 1
            elif ch in _BLANKS or ch in _NEWLINES or not ch.isprintable():
                self.pos += 1
            else:
                return True
        return False

    def at_line_end(self) -> bool:
        """Whether the cursor is at a line break or the end of the text."""
        return self.pos >= len(self.text) or self.text[self.pos] in _NEWLINES


_LETTERS = re.compile(r"[A-Za-z]+")
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_]+")


def _read_command(scanner: _Scanner, line: int) -> Command:
    word = scanner.take(_LETTERS)
    name = word.lower()
    if name not in COMMANDS or not (scanner.at_line_end() or scanner.peek() in _BLANKS):
        raise ModelfileError(_INVALID_COMMAND, line)
    if name == "parameter":
        return _read_prefixed(scanner, line, name, _read_parameter_name(scanner, line))
    if name == "message":
        return _read_prefixed(scanner, line, name, _read_role(scanner, line))
    return Command(name, _read_argument(scanner, line, f'"{name}"'))


def _read_parameter_name(scanner: _Scanner, line: int) -> str:
    scanner.skip(_BLANKS)
    name = scanner.take(_PARAMETER_NAME)
    if name and scanner.at_line_end():
        raise ModelfileError(f'missing value for parameter "{name}"', line)
    if not name and scanner.at_line_end():
        raise ModelfileError('missing value for "parameter"', line)
    if scanner.peek() not in _BLANKS:
        raise ModelfileError(f"invalid character {scanner.peek()!r} in parameter name", line)
    return name


def _read_role(scanner: _Scanner, line: int) -> str:
    scanner.skip(_BLANKS)
    role = scanner.take(_LETTERS)
    if role not in ROLES or not (scanner.at_line_end() or scanner.peek() in _BLANKS):
        raise ModelfileError(_INVALID_ROLE, line)
    if scanner.at_line_end():
        raise ModelfileError(f'missing value for message "{role}"', line)
    return role


def _read_prefixed(scanner: _Scanner, line: int, name: str, prefix: str) -> Command:
    value = _read_argument(scanner, line, f'{name} "{prefix}"')
    return Command(name, f"{prefix} {value}")


def _read_argument(scanner: _Scanner, line: int, what: str) -> str:
    """The value after a command; a bare empty value is an error (a quoted one is fine)."""
    scanner.skip(_BLANKS)
    value, quoted = _read_value(scanner, line)
    if not value and not quoted:
        raise ModelfileError(f"missing value for {what}", line)
    return value


def _read_value(scanner: _Scanner, line: int) -> tuple[str, bool]:
    """Ollama's value state: runs to the first line break at which the trimmed value is complete.

    A value opened with ``"`` or ``\"\"\"`` goes on across lines until a line ends with the
    matching quote; characters that are not printable (other than tabs and line breaks) are
    dropped, as Ollama does.  Returns the unquoted value and whether it was quoted.
    """
    text = scanner.text
    chars: list[str] = []
    first = last = -1  # indexes in chars of the first and last non-blank characters
    while scanner.pos < len(text):
        ch = text[scanner.pos]
        scanner.pos += 1
        if ch in _NEWLINES and _complete(chars, first, last):
            return _unquote(chars, first, last)
        if ch in _NEWLINES or ch in _BLANKS or ch.isprintable():
            chars.append(ch)
            if ch not in _NEWLINES and ch not in _BLANKS:
                last = len(chars) - 1
                first = last if first < 0 else first
    if not _complete(chars, first, last):
        raise ModelfileError("unexpected EOF (unterminated quote)", line)
    return _unquote(chars, first, last)


def _complete(chars: list[str], first: int, last: int) -> bool:
    """Whether the trimmed value is unquoted or properly closed (Ollama's unquote ``ok``)."""
    if first < 0 or chars[first] != '"':
        return True
    length = last - first + 1
    if "".join(chars[first:first + 3]) == '"""':
        return length >= 6 and "".join(chars[last - 2:last + 1]) == '"""'
    return length >= 2 and chars[last] == '"' and not _backslashed(chars, first + 1, last)


def _backslashed(chars: list[str], start: int, index: int) -> bool:
    """Whether chars[index] follows an odd run of backslashes that begins at or after start."""
    count = 0
    while index - count - 1 >= start and chars[index - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def _unquote(chars: list[str], first: int, last: int) -> tuple[str, bool]:
    value = "".join(chars[first:last + 1]) if first >= 0 else ""
    if value.startswith('"""'):
        return value[3:-3], True
    if value.startswith('"'):
        return _ESCAPE.sub(r"\1", value[1:-1]), True
    return value, False


_ESCAPE = re.compile(r'\\([\\"])')


def _escaped(value: str) -> str:
    """A single-quoted value with its backslashes and quotes escaped (the module's one extension)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _accept(command: Command, line: int, modelfile: Modelfile) -> bool:
    """Validate a parsed command; False drops it (deprecated parameters, with a warning)."""
    if command.name == "requires":
        version = command.args if command.args.startswith("v") else "v" + command.args
        if not _SEMVER.fullmatch(version):
            raise ModelfileError("requires must be a valid semver (e.g. 0.14.0)", line)
    if command.name != "parameter":
        return True
    name, value = _split_args(command.args)
    if name in DEPRECATED_PARAMETERS:
        modelfile.warnings.append(f"(line {line}): parameter {name} is deprecated")
        return False
    try:
        parse_parameter(name, value)
    except ModelfileError as error:
        raise ModelfileError(error.message, line) from None
    return True


def _split_args(args: str) -> tuple[str, str]:
    head, _, rest = args.partition(" ")
    return head, rest


def _command_text(command: Command) -> str:
    if command.name in ("parameter", "message"):
        head, value = _split_args(command.args)
        return f"{command.name.upper()} {head} {_quote_exact(value)}"
    return f"{command.name.upper()} {_quote_exact(command.args)}"


def _quote_exact(value: str) -> str:
    """``quote(value)`` when it reads back as ``value``, else the first quoting that does."""
    for candidate in (quote(value), f'"{value}"', f'"""{value}"""', _escaped(value)):
        if _reads_back(candidate, value):
            return candidate
    raise ModelfileError(f"value {value!r} cannot be written in a Modelfile")


def _reads_back(candidate: str, value: str) -> bool:
    scanner = _Scanner(candidate + "\n")
    try:
        parsed, quoted = _read_value(scanner, 1)
    except ModelfileError:
        return False
    return parsed == value and (quoted or bool(value)) and scanner.pos == len(scanner.text)
