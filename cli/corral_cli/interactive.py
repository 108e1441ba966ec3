"""The interactive ``>>>`` chat of ``corral run`` (Ollama's cmd/interactive.go)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from corral_cli.answer import stream_answer
from corral_cli.client import Client, ServerError
from corral_cli.commands.models import render_list
from corral_cli.commands.show import render_info
from corral_cli.display import stats_summary
from corral_cli.formatting import now_utc
from corral_cli.help_texts import USAGE, USAGE_IMAGES, USAGE_PARAMETERS, USAGE_SET, USAGE_SHORTCUTS, USAGE_SHOW
from corral_cli.images import extract_images, names_a_file
from corral_cli.session import RunOptions, chat_body, infer_think, load_model, show

QUOTES = '"""'


class Mode(Enum):
    """What a multi-line block being typed will become."""

    NONE = "none"
    PROMPT = "prompt"
    SYSTEM = "system"


@dataclass(frozen=True)
class Entry:
    """A complete input: a ``message`` to send, a ``system`` prompt block, or a ``/command`` line."""

    kind: str
    text: str


def _cut_suffix(text: str, suffix: str) -> tuple[str, bool]:
    return (text[: -len(suffix)], True) if text.endswith(suffix) else (text, False)


@dataclass
class LineBuffer:
    """Assembles typed lines into entries; ``\"\"\"`` opens and closes a multi-line block."""

    text: str = ""
    mode: Mode = Mode.NONE

    @property
    def continuing(self) -> bool:
        """Whether a multi-line block is open (the prompt shows ``... ``)."""
        return self.mode is not Mode.NONE

    def reset(self) -> None:
        """Drop a half-typed block (Ctrl+C)."""
        self.text, self.mode = "", Mode.NONE

    def feed(self, line: str) -> Entry | None:
        """The entry ``line`` completes, or None when more lines are needed or it was empty."""
        if self.mode is not Mode.NONE:
            before, closed = _cut_suffix(line, QUOTES)
            self.text += before
            if not closed:
                self.text += "\n"
                return None
            kind = "system" if self.mode is Mode.SYSTEM else "message"
            text = self.text
            self.reset()
            return Entry(kind, text)
        if line.startswith(QUOTES):
            rest, closed = _cut_suffix(line[len(QUOTES):], QUOTES)
            if not closed:
                self.text, self.mode = rest + "\n", Mode.PROMPT
                return None
            return Entry("message", rest) if rest else None
        if line.startswith("/"):
            return Entry("command", line)
        return Entry("message", line) if line else None

    def start_system(self, text: str) -> str | None:
        """``/set system TEXT``: the system prompt, or None when TEXT opened a ``\"\"\"`` block."""
        if not text.startswith(QUOTES):
            return text
        body, closed = _cut_suffix(text[len(QUOTES):], QUOTES)
        if closed:
            return body
        self.text, self.mode = body + "\n", Mode.SYSTEM
        return None


def parse_set_parameter(name: str, values: list[str]) -> Any:
    """A ``/set parameter`` value typed like a Modelfile PARAMETER; raises ModelfileError."""
    from corral_common.modelfile import parse_parameter

    typed = [parse_parameter(name, value) for value in values]
    if isinstance(typed[0], list):  # stop: every value, in order
        return [item for value in typed if isinstance(value, list) for item in value]
    return typed[0]


def set_parameter(opts: RunOptions, fields: list[str]) -> str:
    """Apply ``/set parameter NAME VALUE...``; returns the line to print."""
    from corral_common.modelfile import ModelfileError

    name, values = fields[0], fields[1:]
    try:
        opts.options[name] = parse_set_parameter(name, values)
    except ModelfileError as error:
        return f"Couldn't set parameter: {_go_quote(str(error))}"
    return f"Set parameter '{name}' to '{', '.join(values)}'"


def _go_quote(text: str) -> str:
    """Go's ``%q`` for plain text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def set_system(opts: RunOptions, text: str, replace_last: bool) -> None:
    """Use ``text`` as the system prompt from now on."""
    opts.system = text
    message = {"role": "system", "content": text}
    if replace_last and opts.messages and opts.messages[-1].get("role") == "system":
        opts.messages[-1] = message
    else:
        opts.messages.append(message)


def clear_session(opts: RunOptions) -> None:
    """Forget the conversation, keeping the system prompt."""
    opts.messages = [{"role": "system", "content": opts.system}] if opts.system else []


def save_request(name: str, opts: RunOptions) -> dict[str, Any]:
    """The /api/create body of ``/save NAME``: the model, system prompt, parameters and conversation."""
    from corral_common.names import InvalidName, ModelName

    parent = opts.parent_model
    try:
        ModelName.parse(parent)
    except InvalidName:
        parent = ""
    body: dict[str, Any] = {"model": name, "from": parent or opts.model}
    if opts.system:
        body["system"] = opts.system
    if opts.options:
        body["parameters"] = dict(opts.options)
    messages = [*opts.loaded_messages, *opts.messages]
    if messages:
        body["messages"] = messages
    return body


def _go_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(map(_go_value, value)) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class History:
    """GNU readline history in ``$CORRAL_HOME/history`` unless OLLAMA_NOHISTORY is set."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        try:
            import readline
        except ImportError:  # no line editing on this platform; input() still works
            self._readline = None
            return
        self._readline = readline
        if path is not None and path.exists():
            try:
                readline.read_history_file(path)
            except OSError:
                pass
        self.enable(path is not None)

    def enable(self, on: bool) -> None:
        """Record entered lines (``/set history``) or not (``/set nohistory``)."""
        if self._readline is not None:
            self._readline.set_auto_history(on)
        self.recording = on

    def save(self) -> None:
        """Write the history file."""
        if self._readline is None or self.path is None or not self.recording:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._readline.write_history_file(self.path)
        except OSError:
            pass


def default_history() -> History:
    """History as the environment asks for it."""
    from corral_common.env import corral_home, env_bool

    if env_bool(os.environ, "OLLAMA_NOHISTORY"):
        return History(None)
    return History(corral_home(os.environ) / "history")


class Repl:
    """Reads lines, runs ``/`` commands and chats with the model until ``/bye`` or Ctrl+D."""

    def __init__(self, client: Client, opts: RunOptions, think_explicit: bool = False,
                 read_line: Callable[[str], str] = input, history: History | None = None) -> None:
        self.client, self.opts, self.think_explicit = client, opts, think_explicit
        self.read_line = read_line
        self.history = history if history is not None else default_history()
        self.buffer = LineBuffer()

    def run(self) -> int:
        """The read-eval loop; returns the exit status."""
        try:
            while (line := self._read()) is not None:
                try:
                    entry = self.buffer.feed(line)
                    if entry is not None and self.handle(entry):
                        return 0
                except KeyboardInterrupt:
                    print()  # Ctrl+C while a command runs: back to the prompt
            return 0
        finally:
            self.history.save()

    def _read(self) -> str | None:
        """The next line; None at end of input (Ctrl+D)."""
        try:
            return self.read_line("... " if self.buffer.continuing else ">>> ")
        except EOFError:
            print()
            return None
        except KeyboardInterrupt:
            print("\nUse Ctrl + d or /bye to exit.")
            self.buffer.reset()
            return ""

    def handle(self, entry: Entry) -> bool:
        """Act on one entry; True ends the session."""
        if entry.kind == "command":
            return self.command(entry.text)
        if entry.kind == "system":
            set_system(self.opts, entry.text, replace_last=False)
            print("Set system message.")
            return False
        self.send(entry.text)
        return False

    def command(self, line: str) -> bool:
        """Run a ``/`` command; True ends the session."""
        args = line.split()
        name = args[0]
        if name in ("/bye", "/exit"):
            return True
        handlers: dict[str, Callable[[list[str]], None]] = {
            "/set": self._set, "/show": self._show, "/load": self._load, "/save": self._save,
            "/clear": self._clear, "/list": self._list, "/help": self._help, "/?": self._help,
        }
        handler = handlers.get(name)
        if handler is None and self.opts.multimodal and names_a_file(line):
            self.send(line)  # "/tmp/photo.png what is this?" is a prompt with an image
        elif handler is None:
            print(f"Unknown command '{name}'. Type /? for help")
        else:
            handler(args)
        return False

    def send(self, text: str) -> None:
        """Send a user message (with the image files it names, for a vision model) and print the answer."""
        opts = self.opts
        message: dict[str, Any] = {"role": "user", "content": text}
        if opts.multimodal:
            message["content"], images = extract_images(text)
            if images:
                message["images"] = images
        opts.messages.append(message)
        try:
            answer = stream_answer(self.client, "/api/chat", chat_body(opts), opts.answer_style())
        except ServerError as error:
            if "does not support thinking" in error.message or "invalid think value" in error.message:
                print(f"error: {error.message}")
                return
            raise
        if answer.cancelled:
            if answer.printed:
                print()
            return
        sys.stdout.write("\n\n")
        sys.stdout.flush()
        if opts.verbose and answer.final is not None:
            sys.stderr.write(stats_summary(answer.final))
        opts.messages.append(answer.message())

    def _set(self, args: list[str]) -> None:
        if len(args) < 2:
            sys.stderr.write(USAGE_SET)
            return
        simple = {
            "wordwrap": ("word_wrap", True, "Set 'wordwrap' mode."),
            "nowordwrap": ("word_wrap", False, "Set 'nowordwrap' mode."),
            "verbose": ("verbose", True, "Set 'verbose' mode."),
            "quiet": ("verbose", False, "Set 'quiet' mode."),
            "noformat": ("format", "", "Disabled format."),
        }
        what = args[1]
        if what in simple:
            attribute, value, message = simple[what]
            setattr(self.opts, attribute, value)
            print(message)
        elif what in ("history", "nohistory"):
            self.history.enable(what == "history")
        elif what in ("think", "nothink"):
            self._set_think(args)
        elif what == "format":
            self._set_format(args)
        elif what == "parameter":
            self._set_parameter(args)
        elif what == "system":
            self._set_system(args)
        else:
            print(f"Unknown command '/set {what}'. Type /? for help")

    def _set_format(self, args: list[str]) -> None:
        if len(args) < 3 or args[2] != "json":
            print("Invalid or missing format. For 'json' mode use '/set format json'")
            return
        self.opts.format = "json"
        print("Set format to 'json' mode.")

    def _set_parameter(self, args: list[str]) -> None:
        if len(args) < 4:
            sys.stderr.write(USAGE_PARAMETERS)
            return
        print(set_parameter(self.opts, args[2:]))

    def _set_system(self, args: list[str]) -> None:
        if len(args) < 3:
            sys.stderr.write(USAGE_SET)
            return
        text = self.buffer.start_system(" ".join(args[2:]))
        if text is None:
            return  # a """ block was opened: the following lines complete it
        set_system(self.opts, text, replace_last=True)
        print("Set system message.")

    def _set_think(self, args: list[str]) -> None:
        level = args[2] if len(args) > 2 and args[1] == "think" else ""
        self.opts.think = (level or True) if args[1] == "think" else False
        self.think_explicit = True
        self._warn_if_cannot_think()
        if args[1] == "nothink":
            print("Set 'nothink' mode.")
        else:
            print(f"Set 'think' mode to '{level}'." if level else "Set 'think' mode.")

    def _warn_if_cannot_think(self) -> None:
        try:
            capabilities = show(self.client, self.opts.model).get("capabilities") or []
        except ServerError:
            return
        if "thinking" not in capabilities:
            print(f'warning: model "{self.opts.model}" does not support thinking output', file=sys.stderr)

    def _show(self, args: list[str]) -> None:
        if len(args) < 2:
            sys.stderr.write(USAGE_SHOW)
            return
        extra: dict[str, Any] = {}
        if self.opts.system:
            extra["system"] = self.opts.system
        if self.opts.options:
            extra["options"] = dict(self.opts.options)
        try:
            info = show(self.client, self.opts.model, **extra)
        except ServerError:
            print("error: couldn't get model")
            raise
        self._print_show(args[1], info)

    def _print_show(self, what: str, info: dict[str, Any]) -> None:
        printers: dict[str, Callable[[dict[str, Any]], object]] = {
            "info": lambda i: sys.stderr.write(render_info(i)),
            "license": lambda i: print(i.get("license") or "No license was specified for this model."),
            "modelfile": lambda i: print(i.get("modelfile") or ""),
            "parameters": self._print_parameters,
            "system": self._print_system,
            "template": lambda i: print(i.get("template") or "No prompt template was specified for this model."),
        }
        printer = printers.get(what)
        if printer is None:
            print(f"Unknown command '/show {what}'. Type /? for help")
        else:
            printer(info)

    def _print_parameters(self, info: dict[str, Any]) -> None:
        print("Model defined parameters:")
        if not info.get("parameters"):
            print("  No additional parameters were specified for this model.")
        else:
            for line in str(info["parameters"]).split("\n"):
                print(f"  {line}")
        print()
        if self.opts.options:
            print("User defined parameters:")
            for key, value in self.opts.options.items():
                print(f"  {key:<30} {_go_value(value)}")
            print()

    def _print_system(self, info: dict[str, Any]) -> None:
        system = self.opts.system or info.get("system") or ""
        print(system + "\n" if system else "No system message was specified for this model.")

    def _load(self, args: list[str]) -> None:
        if len(args) != 2:
            print("Usage:\n  /load <modelname>")
            return
        previous = self.opts
        self.opts = RunOptions(**{**vars(previous), "model": args[1], "messages": [], "loaded_messages": []})
        print(f"Loading model '{self.opts.model}'")
        try:
            info = show(self.client, self.opts.model)
            self.opts.apply_show(info)
            capabilities = [str(c) for c in info.get("capabilities") or []]
            self.opts.think = infer_think(capabilities, self.opts.think, self.think_explicit)
            load_model(self.client, self.opts)
        except ServerError as error:
            if "not found" in error.message:
                print(f"Couldn't find model '{args[1]}'")
                self.opts = previous
                return
            if "does not support thinking" in error.message:
                print(f"error: {error.message}")
                return
            raise

    def _save(self, args: list[str]) -> None:
        if len(args) != 2:
            print("Usage:\n  /save <modelname>")
            return
        try:
            for _ in self.client.stream("/api/create", save_request(args[1], self.opts)):
                pass
        except ServerError as error:
            if "invalid model name" in error.message:
                print(f"error: The model name '{args[1]}' is invalid")
                return
            raise
        print(f"Created new model '{args[1]}'")

    def _clear(self, args: list[str]) -> None:
        clear_session(self.opts)
        print("Cleared session context")

    def _list(self, args: list[str]) -> None:
        models = (self.client.request("GET", "/api/tags") or {}).get("models") or []
        sys.stdout.write(render_list(models, args[1] if len(args) > 1 else None, now_utc()))

    def _help(self, args: list[str]) -> None:
        topic = args[1] if len(args) > 1 else ""
        if topic in ("set", "/set"):
            sys.stderr.write(USAGE_SET)
        elif topic in ("show", "/show"):
            sys.stderr.write(USAGE_SHOW)
        elif topic in ("shortcut", "shortcuts"):
            sys.stderr.write(USAGE_SHORTCUTS)
        elif not topic:
            sys.stderr.write(USAGE + (USAGE_IMAGES if self.opts.multimodal else ""))
