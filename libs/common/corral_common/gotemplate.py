"""Renderer for the Go text/template dialect of Ollama model templates, in pure Python.

Data is plain dicts/lists/str/int/float/bool/None. `.Foo` on a dict looks up key "Foo"; a missing key
(or a field of None) is a zero value that renders as "" (Ollama passes structs, whose missing fields are
zero values; Go would print "<no value>" for a missing map key). Go's fmt rules print values: bools as
true/false, floats like %v (0.5, 1e+06), lists as [a b c], dicts as map[k:v] with sorted keys.
JSONDict and JSONList print as their JSON instead, like the Ollama types whose String method marshals
to JSON (api.Tools, api.Tool, api.ToolFunction, tool-call arguments): wrap such values in them, e.g.
with json_values(tools) on the tools of an API request; `.Function.Name` then finds their JSON keys.

Functions: and, or, not, eq, ne, lt, le, gt, ge, len, index, slice, print, printf, println, html, js,
urlquery, and Ollama's json, currentDate and yesterdayDate. Not supported: define/template/block,
method calls and call. Output is capped at MAX_OUTPUT bytes and range loops at MAX_RANGE_ITERATIONS.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import urllib.parse

from corral_common._gotemplate_parse import (Action, Branch, Break, Chain, Continue, Dot, Field, Ident, Literal,
                                             Pipe, TemplateError, Text, Var, line_of, parse)

__all__ = ["MAX_OUTPUT", "MAX_RANGE_ITERATIONS", "JSONDict", "JSONList", "Template", "TemplateError", "json_values",
           "render"]

MAX_OUTPUT = 1 << 20
MAX_RANGE_ITERATIONS = 100_000
_MISSING = object()


class JSONDict(dict):
    """A dict with JSON-named keys that prints as its JSON, like Ollama's api.Tool and tool-call arguments.

    Field access falls back from the Go field name to its json tag: .ToolCalls finds key "tool_calls".
    """


class JSONList(list):
    """A list that prints as its compact JSON, like Ollama's api.Tools."""


def json_values(value):
    """Wrap the dicts and lists in value, recursively, in JSONDict and JSONList (e.g. Ollama API tools)."""
    if isinstance(value, dict):
        return JSONDict((key, json_values(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return JSONList(json_values(item) for item in value)
    return value


def _json_key(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class _FuncError(Exception):
    """An error inside a template function; reported as 'error calling NAME: ...'."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


# ------------------------------------------------------------------------------------------ formatting

def format_value(value, nested: bool = False) -> str:
    """Print a value as Go's fmt %v does; None is "" at top level and <nil> inside lists and maps."""
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>" if nested else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, (JSONDict, JSONList)):
        return _json_func(value)
    if isinstance(value, dict):
        pairs = (f"{format_value(k, True)}:{format_value(value[k], True)}" for k in _sorted_keys(value))
        return "map[" + " ".join(pairs) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(format_value(item, True) for item in value) + "]"
    return str(value)


def _sorted_keys(mapping: dict) -> list:
    try:
        return sorted(mapping)
    except TypeError:
        return sorted(mapping, key=lambda k: (type(k).__name__, str(k)))


def _shortest_digits(f: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of abs(f) > 0 and the decimal point position."""
    mantissa, _, exp = repr(abs(f)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + int(exp or 0) - (len(whole + frac) - len(digits))
    return digits.rstrip("0"), point


def _fixed(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def _exponent(digits: str, point: int) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exp = point - 1
    return f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _go_float(f: float, json_style: bool = False) -> str:
    """Format like Go's %v (strconv 'g', shortest) or, with json_style, like encoding/json."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        return sign + "0"
    digits, point = _shortest_digits(f)
    if json_style:
        if 1e-6 <= abs(f) < 1e21:
            return sign + _fixed(digits, point)
        return sign + re.sub(r"e-0(\d)$", r"e-\1", _exponent(digits, point))
    if point - 1 < -4 or point - 1 >= 6:
        return sign + _exponent(digits, point)
    return sign + _fixed(digits, point)


def _go_type(value) -> str:
    if value is None:
        return "<nil>"
    for kind, name in ((bool, "bool"), (int, "int"), (float, "float64"), (str, "string"),
                       ((list, tuple), "[]interface {}"), (dict, "map[string]interface {}")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _truth(value) -> bool:
    if value is None:
        return False
    if isinstance(value, (bool, int, float, str, list, tuple, dict)):
        return bool(value)
    return True


# ---------------------------------------------------------------------------------------------- json

def go_json(value) -> str:
    """Go json.Marshal of plain data: compact, dict keys in insertion order, <>& escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"json: unsupported value: {_go_float(value)}")
        return _go_float(value, json_style=True)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_string(str(k))}:{go_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(go_json(item) for item in value) + "]"
    raise TypeError(f"json: unsupported type: {type(value).__name__}")


_JSON_HTML = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                            "\u2029": "\\u2029"})


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).translate(_JSON_HTML)


def _json_func(value) -> str:
    try:
        return go_json(value)
    except (TypeError, ValueError):
        return ""  # Ollama's json function ignores json.Marshal errors


# ------------------------------------------------------------------------------------------- printf

_SPEC = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?(.?)", re.DOTALL)
_QUOTE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _sprintf(fmt: str, args: list) -> str:
    out, pos, used = [], 0, 0
    while (at := fmt.find("%", pos)) >= 0:
        out.append(fmt[pos:at])
        match = _SPEC.match(fmt, at)
        flags, width, prec, verb = match.groups()
        pos = match.end()
        if verb == "%":
            out.append("%")
        elif not verb:
            out.append("%!(NOVERB)")
        elif used >= len(args):
            out.append(f"%!{verb}(MISSING)")
        else:
            out.append(_format_verb(verb, flags, _bounded(width, "WIDTH", out), _bounded(prec, "PREC", out),
                                    args[used]))
            used += 1
    out.append(fmt[pos:])
    if used < len(args):
        out.append("%!(EXTRA " + ", ".join(_typed(a) for a in args[used:]) + ")")
    return "".join(out)


def _bounded(number: str | None, what: str, out: list) -> int | None:
    if number is None or (number == "" and what == "WIDTH"):
        return None
    value = int(number or 0)
    if value > 1_000_000:
        out.append(f"%!(BAD{what})")
        return None
    return value


def _typed(value) -> str:
    return "<nil>" if value is None else f"{_go_type(value)}={format_value(value, True)}"


def _format_verb(verb: str, flags: str, width: int | None, prec: int | None, arg) -> str:
    body = _verb_body(verb, flags, prec, arg)
    if body is None:
        return f"%!{verb}({_typed(arg)})"
    if width is None or len(body) >= width:
        return body
    if "-" in flags:
        return body.ljust(width)
    if "0" in flags and verb in "dxXobeEfFgG":
        sign = body[0] if body[0] in "+- " else ""
        return sign + body[len(sign):].rjust(width - len(sign), "0")
    return body.rjust(width)


def _verb_body(verb: str, flags: str, prec: int | None, arg) -> str | None:
    is_int = isinstance(arg, int) and not isinstance(arg, bool)
    if verb == "v" or (verb == "s" and not isinstance(arg, (bool, int, float))):
        text = format_value(arg)
        return text[:prec] if prec is not None and verb == "s" else text
    if verb == "q" and (isinstance(arg, str) or is_int):
        return _go_quote(arg) if isinstance(arg, str) else _go_quote(_rune(arg), "'")
    if verb == "t" and isinstance(arg, bool):
        return "true" if arg else "false"
    if verb in "xX" and isinstance(arg, str):
        return arg.encode().hex() if verb == "x" else arg.encode().hex().upper()
    if is_int and verb in "dxXobc":
        sign = "+" if "+" in flags else " " if " " in flags else ""
        return _rune(arg) if verb == "c" else format(arg, sign + verb)
    if isinstance(arg, float) and verb in "eEfFgG":
        return _float_verb(verb, flags, prec, arg)
    return None


def _float_verb(verb: str, flags: str, prec: int | None, arg: float) -> str:
    if math.isnan(arg) or math.isinf(arg) or (prec is None and verb in "gG"):
        text = _go_float(arg)
    else:
        text = format(arg, f".{6 if prec is None else prec}{verb}")
    if "+" in flags and not text.startswith(("+", "-")):
        text = "+" + text
    return text.upper() if verb in "EG" else text


def _rune(code: int) -> str:
    return chr(code) if 0 <= code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def _go_quote(text: str, quote: str = '"') -> str:
    out = [quote]
    for ch in text:
        if ch in (quote, "\\"):
            out.append("\\" + ch)
        elif ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code <= 0xFFFF else
                       f"\\U{code:08x}")
    out.append(quote)
    return "".join(out)


# ---------------------------------------------------------------------------------------- functions

def _sprint(*args) -> str:
    out, prev_string = [], True
    for i, arg in enumerate(args):
        is_string = isinstance(arg, str)
        if i and not is_string and not prev_string:
            out.append(" ")
        out.append(format_value(arg))
        prev_string = is_string
    return "".join(out)


def _sprintln(*args) -> str:
    return " ".join(format_value(arg) for arg in args) + "\n"


def _printf(fmt, *args) -> str:
    if not isinstance(fmt, str):
        raise _FuncError(f"wrong type for value; expected string; got {_go_type(fmt)}")
    return _sprintf(fmt, list(args))


def _eval_args(args: tuple) -> str:
    return args[0] if len(args) == 1 and isinstance(args[0], str) else _sprint(*args)


_HTML = str.maketrans({"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;"})
_JS = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}


def _html(*args) -> str:
    return _eval_args(args).translate(_HTML)


def _js_char(ch: str) -> str:
    if ch in _JS:
        return _JS[ch]
    if ch < " " or (ch >= "\x80" and not ch.isprintable()):
        return f"\\u{ord(ch):04X}"
    return ch


def _js(*args) -> str:
    return "".join(_js_char(ch) for ch in _eval_args(args))


def _urlquery(*args) -> str:
    return urllib.parse.quote_plus(_eval_args(args), safe="")


def _len(value) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode())
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    raise _FuncError("len of nil pointer" if value is None else f"len of type {_go_type(value)}")


def _index_arg(index, cap: int) -> int:
    if isinstance(index, bool) or not isinstance(index, int):
        what = "nil" if index is None else f"type {_go_type(index)}"
        raise _FuncError(f"cannot index slice/array with {what}")
    if index < 0 or index > cap:
        raise _FuncError(f"index out of range: {index}")
    return index


def _index(item, *keys):
    if item is None:
        raise _FuncError("index of untyped nil")
    for key in keys:
        if item is None:
            raise _FuncError("index of nil pointer")
        if isinstance(item, dict):
            item = item.get(key)
            continue
        if isinstance(item, str):
            item = item.encode()
        elif not isinstance(item, (list, tuple)):
            raise _FuncError(f"can't index item of type {_go_type(item)}")
        if _index_arg(key, len(item)) == len(item):
            raise _FuncError(f"index out of range: {key}")
        item = item[key]
    return item


def _slice(item, *indexes):
    if item is None:
        raise _FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _FuncError("cannot 3-index slice a string")
        seq = item if item.isascii() else item.encode()
    elif isinstance(item, (list, tuple)):
        seq = item
    else:
        raise _FuncError(f"can't slice item of type {_go_type(item)}")
    bounds = [0, len(seq), len(seq)]
    for i, index in enumerate(indexes):
        bounds[i] = _index_arg(index, len(seq))
    if bounds[0] > bounds[1]:
        raise _FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(indexes) == 3 and bounds[1] > bounds[2]:
        raise _FuncError(f"invalid slice index: {bounds[1]} > {bounds[2]}")
    part = seq[bounds[0]:bounds[1]]
    return part.decode("utf-8", "replace") if isinstance(part, bytes) else part


def _kind(value) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else "other"


def _eq(first, *others) -> bool:
    if not others:
        raise _FuncError("missing argument for comparison")
    kind = _kind(first)
    for other in others:
        other_kind = _kind(other)
        if kind != other_kind:
            if "nil" not in (kind, other_kind):
                raise _FuncError("incompatible types for comparison")
        elif kind == "other":
            raise _FuncError(f"non-comparable type {_go_type(first)}")
        elif first == other:
            return True
    return False


def _lt(a, b) -> bool:
    kind_a, kind_b = _kind(a), _kind(b)
    if "nil" in (kind_a, kind_b) or "other" in (kind_a, kind_b):
        raise _FuncError("invalid type for comparison")
    if kind_a != kind_b:
        raise _FuncError("incompatible types for comparison")
    if kind_a == "bool":
        raise _FuncError("invalid type for comparison")
    return a < b


def _le(a, b) -> bool:
    return _lt(a, b) or _eq(a, b)


def _today(*_formats) -> str:
    return datetime.date.today().strftime("%Y-%m-%d")


def _yesterday(*_formats) -> str:
    return (datetime.date.today() - datetime.timedelta(days=1)).strftime("%Y-%m-%d")


# name: (function, least number of arguments, most or None for any)
FUNCS = {
    "and": (None, 1, None), "or": (None, 1, None), "not": (lambda v: not _truth(v), 1, 1),
    "eq": (_eq, 1, None), "ne": (lambda a, b: not _eq(a, b), 2, 2), "lt": (_lt, 2, 2), "le": (_le, 2, 2),
    "gt": (lambda a, b: not _le(a, b), 2, 2), "ge": (lambda a, b: not _lt(a, b), 2, 2),
    "len": (_len, 1, 1), "index": (_index, 1, None), "slice": (_slice, 1, None),
    "print": (_sprint, 0, None), "printf": (_printf, 1, None), "println": (_sprintln, 0, None),
    "html": (_html, 0, None), "js": (_js, 0, None), "urlquery": (_urlquery, 0, None),
    "json": (_json_func, 1, 1), "currentDate": (_today, 0, None), "yesterdayDate": (_yesterday, 0, None),
}


# ---------------------------------------------------------------------------------------- execution

class _State:
    """One execution: the variable stack, the output and the limits."""

    def __init__(self, src: str, data) -> None:
        self.src = src
        self.vars: list[tuple[str, object]] = [("$", data)]
        self.out: list[str] = []
        self.size = 0
        self.iterations = 0

    def fail(self, node, msg: str) -> TemplateError:
        line = line_of(self.src, node.pos)
        col = node.pos - (self.src.rfind("\n", 0, node.pos) + 1)
        return TemplateError(f'template: :{line}:{col}: executing "" at <{self.src[node.pos:node.end].strip()}>: {msg}')

    def emit(self, text: str) -> None:
        self.size += len(text) if text.isascii() else len(text.encode())
        if self.size > MAX_OUTPUT:
            raise TemplateError(f"template: output exceeds the limit of {MAX_OUTPUT} bytes")
        self.out.append(text)

    def walk(self, dot, nodes: list) -> None:
        for node in nodes:
            kind = type(node)
            if kind is Text:
                self.emit(node.text)
            elif kind is Action:
                value = self.pipe(dot, node.pipe)
                if not node.pipe.decl:
                    self.emit(format_value(value))
            elif kind is Branch:
                (self.range if node.kind == "range" else self.if_with)(dot, node)
            elif kind is Break:
                raise _Break
            elif kind is Continue:
                raise _Continue

    def if_with(self, dot, node: Branch) -> None:
        mark = len(self.vars)
        try:
            value = self.pipe(dot, node.pipe)
            if _truth(value):
                self.walk(value if node.kind == "with" else dot, node.body)
            elif node.orelse is not None:
                self.walk(dot, node.orelse)
        finally:
            del self.vars[mark:]

    def range(self, dot, node: Branch) -> None:
        mark = len(self.vars)
        try:
            value = self.pipe(dot, node.pipe)
            inner, ran = len(self.vars), False
            for key, elem in self.range_items(node, value):
                ran = True
                self.iteration(node, key, elem, inner)
            if not ran and node.orelse is not None:
                self.walk(dot, node.orelse)
        except _Break:
            pass
        finally:
            del self.vars[mark:]

    def iteration(self, node: Branch, key, elem, inner: int) -> None:
        self.iterations += 1
        if self.iterations > MAX_RANGE_ITERATIONS:
            raise self.fail(node, f"more than {MAX_RANGE_ITERATIONS} range iterations")
        self.set_range_vars(node.pipe, key, elem)
        try:
            self.walk(elem, node.body)
        except _Continue:
            pass
        finally:
            del self.vars[inner:]

    def range_items(self, node: Branch, value):
        if value is None:
            return ()
        if isinstance(value, (list, tuple)):
            return enumerate(value)
        if isinstance(value, dict):
            return ((key, value[key]) for key in _sorted_keys(value))
        if isinstance(value, int) and not isinstance(value, bool):
            if len(node.pipe.decl) > 1:
                raise self.fail(node.pipe, f"can't use {value} to iterate over more than one variable")
            return ((i, i) for i in range(value))
        raise self.fail(node.pipe, f"range can't iterate over {format_value(value)}")

    def set_range_vars(self, pipe: Pipe, key, elem) -> None:
        decl = pipe.decl
        if pipe.assign:
            for name, value in zip(decl, (key, elem) if len(decl) > 1 else (elem,)):
                self.set_var(pipe, name, value)
        elif decl:
            self.vars[-1] = (self.vars[-1][0], elem)
            if len(decl) > 1:
                self.vars[-2] = (self.vars[-2][0], key)

    def set_var(self, node, name: str, value) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return
        raise self.fail(node, f"undefined variable: {name}")

    def lookup(self, node: Var):
        for name, value in reversed(self.vars):
            if name == node.name:
                return value
        raise self.fail(node, f"undefined variable: {node.name}")

    def pipe(self, dot, pipe: Pipe):
        value = _MISSING
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        for name in pipe.decl:
            if pipe.assign:
                self.set_var(pipe, name, value)
            else:
                self.vars.append((name, value))
        return value

    def command(self, dot, cmd, final):
        first = cmd.args[0]
        if type(first) is Ident:
            return self.call(dot, first, cmd.args[1:], final, cmd)
        if len(cmd.args) > 1 or final is not _MISSING:
            if getattr(first, "names", ()):
                raise self.fail(first, f"{first.names[-1]} is not a method but has arguments")
            raise self.fail(first, f"can't give argument to non-function {self.src[first.pos:first.end]}")
        if type(first) is Literal and first.kind == "nil":
            raise self.fail(first, "nil is not a command")
        return self.arg(dot, first)

    def arg(self, dot, node):
        kind = type(node)
        if kind is Literal:
            return node.value
        if kind is Dot:
            return dot
        if kind is Field:
            return self.fields(node, dot)
        if kind is Var:
            return self.fields(node, self.lookup(node))
        if kind is Pipe:
            return self.pipe(dot, node)
        if kind is Chain:
            if type(node.node) is Literal and node.node.kind == "nil":
                raise self.fail(node, "indirection through explicit nil")
            return self.fields(node, self.arg(dot, node.node))
        return self.call(dot, node, [], _MISSING, node)

    def fields(self, node, value):
        for name in node.names:
            if isinstance(value, JSONDict) and name not in value:
                value = value.get(_json_key(name))
            elif isinstance(value, dict):
                value = value.get(name)
            elif value is None:
                return None
            else:
                raise self.fail(node, f"can't evaluate field {name} in type {_go_type(value)}")
        return value

    def call(self, dot, ident: Ident, args: list, final, cmd):
        func, least, most = FUNCS[ident.name]
        count = len(args) + (final is not _MISSING)
        if count < least or (most is not None and count > most):
            want = f"{least}" if least == most else f"at least {least}"
            raise self.fail(ident, f"wrong number of args for {ident.name}: want {want} got {count}")
        if func is None:
            return self.and_or(dot, ident.name == "or", args, final)
        values = [self.arg(dot, arg) for arg in args] + ([] if final is _MISSING else [final])
        try:
            result = func(*values)
        except (_FuncError, TypeError) as exc:
            raise self.fail(cmd, f"error calling {ident.name}: {exc}") from None
        if isinstance(result, str) and len(result) > MAX_OUTPUT:
            raise self.fail(cmd, f"result of {ident.name} exceeds {MAX_OUTPUT} characters")
        return result

    def and_or(self, dot, want: bool, args: list, final):
        value = None
        for arg in args:
            value = self.arg(dot, arg)
            if _truth(value) == want:
                return value
        return value if final is _MISSING else final


# ------------------------------------------------------------------------------------------- public

class Template:
    """A parsed Go text/template that renders plain Python data."""

    __slots__ = ("_nodes", "_src")

    def __init__(self, src: str, nodes: list) -> None:
        self._src = src
        self._nodes = nodes

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse template text; raises TemplateError on syntax errors."""
        return cls(text, parse(text, FUNCS))

    def render(self, data) -> str:
        """Execute the template with data as dot and $; raises TemplateError on execution errors."""
        state = _State(self._src, data)
        try:
            state.walk(data, self._nodes)
        except RecursionError:
            raise TemplateError("template: data or template nested too deeply") from None
        return "".join(state.out)

    def variables(self) -> set[str]:
        """Top-level field names referenced anywhere, as .Name where dot is the root, or as $.Name."""
        names: set[str] = set()
        _collect(self._nodes, False, names)
        return names


def _collect(nodes: list, rebound: bool, names: set) -> None:
    for node in nodes:
        if type(node) is Action:
            _collect_arg(node.pipe, rebound, names)
        elif type(node) is Branch:
            _collect_arg(node.pipe, rebound, names)
            _collect(node.body, rebound or node.kind != "if", names)
            _collect(node.orelse or [], rebound, names)


def _collect_arg(node, rebound: bool, names: set) -> None:
    kind = type(node)
    if kind is Pipe:
        for cmd in node.cmds:
            for arg in cmd.args:
                _collect_arg(arg, rebound, names)
    elif (kind is Field and not rebound) or (kind is Var and node.name == "$" and node.names):
        names.add(node.names[0])
    elif kind is Chain:
        _collect_arg(node.node, rebound, names)


def render(text: str, data) -> str:
    """Parse and render text with data in one step."""
    return Template.parse(text).render(data)
