"""Lexer and parser for the Go text/template dialect of Ollama model templates (see gotemplate.py).

It follows Go's text/template/parse closely: the same tokens, trim markers, comment rules, variable
scoping and error wording ("template: :LINE: ..."), so an error names the line it was found on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

SPACE = " \t\r\n"
MAX_DEPTH = 100
KEYWORDS = frozenset({"if", "else", "end", "range", "with", "break", "continue", "define", "template",
                      "block"})
_OPERAND_KINDS = frozenset({"bool", "charconst", "dot", "field", "ident", "nil", "number", "raw", "string",
                            "var", "lparen"})
_ESCAPE = re.compile(r"\\(?:x([0-9A-Fa-f]{2})|u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|([0-7]{3})|([abfnrtv\\'\"]))")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
                   "'": "'", '"': '"'}


class TemplateError(ValueError):
    """Parse or execution error; str() is a human message like Go's, e.g. 'template: :1: unexpected EOF'."""


@dataclass(slots=True)
class Tok:
    kind: str
    val: str
    pos: int


@dataclass(slots=True)
class Node:
    pos: int
    end: int


@dataclass(slots=True)
class Text(Node):
    text: str


@dataclass(slots=True)
class Literal(Node):
    kind: str  # "string", "number", "bool" or "nil"
    value: object


@dataclass(slots=True)
class Dot(Node):
    pass


@dataclass(slots=True)
class Ident(Node):
    name: str


@dataclass(slots=True)
class Field(Node):
    names: tuple


@dataclass(slots=True)
class Var(Node):
    name: str
    names: tuple = ()


@dataclass(slots=True)
class Chain(Node):
    node: Node
    names: tuple


@dataclass(slots=True)
class Command(Node):
    args: list = field(default_factory=list)


@dataclass(slots=True)
class Pipe(Node):
    decl: list = field(default_factory=list)
    assign: bool = False
    cmds: list = field(default_factory=list)


@dataclass(slots=True)
class Action(Node):
    pipe: Pipe


@dataclass(slots=True)
class Branch(Node):
    kind: str  # "if", "with" or "range"
    pipe: Pipe
    body: list
    orelse: list | None


@dataclass(slots=True)
class Break(Node):
    pass


@dataclass(slots=True)
class Continue(Node):
    pass


@dataclass(slots=True)
class _Mark(Node):
    word: str  # "end" or "else": a control word the caller consumes

    def __str__(self) -> str:
        return "{{" + self.word + "}}"


def line_of(src: str, pos: int) -> int:
    """1-based line number of character offset pos."""
    return src.count("\n", 0, pos) + 1


# ---------------------------------------------------------------------------------------------- lexer

def lex(src: str) -> list[Tok]:
    """Split src into tokens; a lexical error becomes a final "error" token, as in Go."""
    toks: list[Tok] = []
    pos, trim = 0, False
    while True:
        start = src.find("{{", pos)
        stop = len(src) if start < 0 else start
        left_trim = start >= 0 and _left_trim_at(src, start + 2)
        _add_text(src, pos, stop, trim, left_trim, toks)
        if start < 0:
            break
        pos, trim = _lex_action(src, start, left_trim, toks)
        if toks and toks[-1].kind == "error":
            return toks
    toks.append(Tok("eof", "", len(src)))
    return toks


def _add_text(src: str, begin: int, stop: int, trim_start: bool, trim_end: bool, toks: list) -> None:
    if trim_start:
        while begin < stop and src[begin] in SPACE:
            begin += 1
    if trim_end:
        while stop > begin and src[stop - 1] in SPACE:
            stop -= 1
    if stop > begin:
        toks.append(Tok("text", src[begin:stop], begin))


def _left_trim_at(src: str, i: int) -> bool:
    return src.startswith("-", i) and i + 1 < len(src) and src[i + 1] in SPACE


def _right_delim(src: str, i: int) -> int:
    """Length of the right delimiter at i: 2 for '}}', 4 for ' -}}' (trim), 0 for none."""
    if src.startswith("}}", i):
        return 2
    if i < len(src) and src[i] in SPACE and src.startswith("-}}", i + 1):
        return 4
    return 0


def _error(toks: list, msg: str, pos: int) -> tuple[int, bool]:
    toks.append(Tok("error", msg, pos))
    return pos, False


def _lex_action(src: str, start: int, left_trim: bool, toks: list) -> tuple[int, bool]:
    p = start + (4 if left_trim else 2)
    if src.startswith("/*", p):
        return _lex_comment(src, p, toks)
    toks.append(Tok("left", "{{", start))
    depth = 0
    while True:
        size = _right_delim(src, p)
        if size:
            if depth:
                return _error(toks, "unclosed left paren", p)
            toks.append(Tok("right", "}}", p))
            return p + size, size == 4
        if p >= len(src):
            return _error(toks, "unclosed action", p)
        p, depth = _lex_token(src, p, depth, toks)
        if toks[-1].kind == "error":
            return p, False


def _lex_comment(src: str, p: int, toks: list) -> tuple[int, bool]:
    end = src.find("*/", p + 2)
    if end < 0:
        return _error(toks, "unclosed comment", p)
    size = _right_delim(src, end + 2)
    if not size:
        return _error(toks, "comment ends before closing delimiter", end + 2)
    return end + 2 + size, size == 4


_SINGLE = {"=": "assign", "|": "pipe", ",": "comma", "(": "lparen", ")": "rparen"}


def _lex_token(src: str, p: int, depth: int, toks: list) -> tuple[int, int]:
    c = src[p]
    if c in SPACE:
        return _lex_space(src, p, toks), depth
    if c == ":":
        if src.startswith(":=", p):
            toks.append(Tok("declare", ":=", p))
            return p + 2, depth
        return _error(toks, "expected :=", p)[0], depth
    if c in _SINGLE:
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth < 0:
            return _error(toks, "unexpected right paren", p)[0], depth
        toks.append(Tok(_SINGLE[c], c, p))
        return p + 1, depth
    return _lex_operand(src, p, toks), depth


def _lex_space(src: str, p: int, toks: list) -> int:
    q = p
    while q < len(src) and src[q] in SPACE:
        q += 1
    if src.startswith("-}}", q):
        q -= 1  # the last space belongs to the trim marker " -}}"
    if q > p:
        toks.append(Tok("space", src[p:q], p))
    return q


def _lex_operand(src: str, p: int, toks: list) -> int:
    c = src[p]
    if c in "\"'`":
        return _lex_quote(src, p, toks)
    if c in "+-" or c.isdigit() or (c == "." and p + 1 < len(src) and src[p + 1].isdigit()):
        return _lex_number(src, p, toks)
    if c in ".$" or _is_alnum(c):
        return _lex_word(src, p, toks)
    if c < "\x7f" and c.isprintable():
        toks.append(Tok("punct", c, p))
        return p + 1
    return _error(toks, f"unrecognized character in action: {_rune(c)}", p)[0]


def _lex_quote(src: str, p: int, toks: list) -> int:
    quote = src[p]
    if quote == "`":
        end = src.find("`", p + 1)
        if end < 0:
            return _error(toks, "unterminated raw quoted string", len(src))[0]
        toks.append(Tok("raw", src[p:end + 1], p))
        return end + 1
    q = p + 1
    while q < len(src) and src[q] not in (quote, "\n"):
        q += 2 if src[q] == "\\" and q + 1 < len(src) and src[q + 1] != "\n" else 1
    if q >= len(src) or src[q] != quote:
        what = "quoted string" if quote == '"' else "character constant"
        return _error(toks, f"unterminated {what}", q)[0]
    toks.append(Tok("string" if quote == '"' else "charconst", src[p:q + 1], p))
    return q + 1


def _lex_number(src: str, p: int, toks: list) -> int:
    q = _scan_number(src, p)
    if q > 0 and q < len(src) and src[q] in "+-":  # a complex number such as 1+2i
        q = _scan_number(src, q)
        q = q if q > 0 and src[q - 1] == "i" else -abs(q)
    if q < 0:
        return _error(toks, f"bad number syntax: {json.dumps(src[p:-q])}", p)[0]
    toks.append(Tok("number", src[p:q], p))
    return q


def _scan_number(src: str, p: int) -> int:
    """End of the number starting at p, like Go's scanNumber; -(end) when alphanumerics follow it."""
    q = _accept(src, p, "+-")
    digits = "0123456789_"
    if src.startswith("0", q):
        q += 1
        for prefix, run in (("xX", "0123456789abcdefABCDEF_"), ("oO", "01234567_"), ("bB", "01_")):
            if q < len(src) and src[q] in prefix:
                q, digits = q + 1, run
                break
    q = _accept_run(src, q, digits)
    if q < len(src) and src[q] == ".":
        q = _accept_run(src, q + 1, digits)
    for exp, size in (("eE", 11), ("pP", 23)):
        if len(digits) == size and q < len(src) and src[q] in exp:
            q = _accept_run(src, _accept(src, q + 1, "+-"), "0123456789_")
    q = _accept(src, q, "i")
    if q < len(src) and _is_alnum(src[q]):
        return -(q + 1)
    return q


def _accept(src: str, q: int, chars: str) -> int:
    return q + 1 if q < len(src) and src[q] in chars else q


def _accept_run(src: str, q: int, chars: str) -> int:
    while q < len(src) and src[q] in chars:
        q += 1
    return q


def _lex_word(src: str, p: int, toks: list) -> int:
    q = p + 1 if src[p] in ".$" else p
    while q < len(src) and _is_alnum(src[q]):
        q += 1
    if not _at_terminator(src, q):
        return _error(toks, f"bad character {_rune(src[q])}", q)[0]
    word = src[p:q]
    toks.append(Tok(_word_kind(word), word, p))
    return q


def _word_kind(word: str) -> str:
    if word == ".":
        return "dot"
    if word[0] in ".$":
        return "field" if word[0] == "." else "var"
    if word in KEYWORDS:
        return "keyword"
    return {"true": "bool", "false": "bool", "nil": "nil"}.get(word, "ident")


def _at_terminator(src: str, q: int) -> bool:
    return q >= len(src) or src[q] in SPACE or src[q] in ".,|:()" or src.startswith("}}", q)


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


def _rune(c: str) -> str:
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


# --------------------------------------------------------------------------------------------- parser

class Parser:
    """Recursive-descent parser over lex() tokens, mirroring Go's parse.Tree."""

    def __init__(self, src: str, funcs) -> None:
        self.src = src
        self.toks = lex(src)
        self.i = 0
        self.last = self.toks[0]
        self.funcs = funcs
        self.vars = ["$"]
        self.range_depth = 0
        self.depth = 0
        self.action_line = 0
        self.open: list[tuple[str, int]] = []

    def parse(self) -> list:
        """Parse the whole template into a list of nodes."""
        root = []
        while self.peek().kind != "eof":
            node = self.text_or_action()
            if isinstance(node, _Mark):
                self.fail(f"unexpected {node}")
            root.append(node)
        return root

    # token helpers
    def next(self) -> Tok:
        tok = self.peek()
        self.last = tok
        self.i += 1
        return tok

    def peek(self) -> Tok:
        return self.toks[min(self.i, len(self.toks) - 1)]

    def backup(self) -> None:
        self.i -= 1

    def next_non_space(self) -> Tok:
        tok = self.next()
        while tok.kind == "space":
            tok = self.next()
        return tok

    def peek_non_space(self) -> Tok:
        tok = self.next_non_space()
        self.backup()
        return tok

    def fail(self, msg: str):
        raise TemplateError(f"template: :{line_of(self.src, self.last.pos)}: {msg}")

    def unexpected(self, tok: Tok, context: str):
        if tok.kind == "error":  # a lexical error is reported where the parser reaches it, as in Go
            self.fail(tok.val + self._action_started(tok))
        self.fail(f"unexpected {_tok_str(tok)} in {context}")

    def expect(self, kind: str, context: str) -> Tok:
        tok = self.next_non_space()
        if tok.kind != kind:
            self.unexpected(tok, context)
        return tok

    def _action_started(self, tok: Tok) -> str:
        line = line_of(self.src, tok.pos)
        if not self.action_line or self.action_line == line:
            return ""
        where = f" in action started at :{self.action_line}"
        return where[len(" in action"):] if tok.val.endswith(" action") else where

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail("max depth exceeded")

    # structure
    def text_or_action(self) -> Node:
        tok = self.next_non_space()
        if tok.kind == "text":
            return Text(tok.pos, tok.pos + len(tok.val), tok.val)
        if tok.kind != "left":
            self.unexpected(tok, "input")
        self.action_line = line_of(self.src, tok.pos)
        try:
            return self.action()
        finally:
            self.action_line = 0

    def action(self) -> Node:
        tok = self.next_non_space()
        if tok.kind == "keyword":
            return self.keyword(tok)
        self.backup()
        pipe = self.pipeline("command", "right")
        return Action(pipe.pos, pipe.end, pipe)

    def keyword(self, tok: Tok) -> Node:
        word = tok.val
        if word in ("if", "with", "range"):
            return self.control(word, tok)
        if word in ("break", "continue"):
            return self.loop_control(word, tok)
        if word == "else":
            peek = self.peek_non_space()
            if peek.kind == "keyword" and peek.val in ("if", "with"):
                return _Mark(peek.pos, peek.pos, "else")
            self.expect("right", "else")
            return _Mark(tok.pos, tok.pos, "else")
        if word == "end":
            self.expect("right", "end")
            return _Mark(tok.pos, tok.pos, "end")
        self.fail(f"{{{{{word}}}}} is not supported")

    def loop_control(self, word: str, tok: Tok) -> Node:
        nxt = self.next_non_space()
        if nxt.kind != "right":
            self.unexpected(nxt, "{{" + word + "}}")
        if not self.range_depth:
            self.fail(f"{{{{{word}}}}} outside {{{{range}}}}")
        return (Break if word == "break" else Continue)(tok.pos, nxt.pos)

    def control(self, word: str, tok: Tok) -> Branch:
        self.enter()
        mark = len(self.vars)
        self.open.append((word, line_of(self.src, tok.pos)))
        pipe = self.pipeline(word, "right")
        self.range_depth += word == "range"
        body, nxt = self.item_list()
        self.range_depth -= word == "range"
        orelse = self.else_list(word, nxt) if nxt.word == "else" else None
        self.open.pop()
        del self.vars[mark:]
        self.depth -= 1
        return Branch(tok.pos, pipe.end, word, pipe, body, orelse)

    def else_list(self, word: str, mark: _Mark) -> list:
        peek = self.peek()
        if word in ("if", "with") and peek.kind == "keyword" and peek.val == word:
            self.next()
            return [self.control(word, peek)]
        orelse, nxt = self.item_list()
        if nxt.word != "end":
            self.fail(f"expected end; found {nxt}")
        return orelse

    def item_list(self) -> tuple[list, _Mark]:
        nodes = []
        while self.peek_non_space().kind != "eof":
            node = self.text_or_action()
            if isinstance(node, _Mark):
                return nodes, node
            nodes.append(node)
        word, line = self.open[-1]
        self.fail(f"unexpected EOF ({{{{{word}}}}} from line {line} has no {{{{end}}}})")

    # pipelines
    def pipeline(self, context: str, end: str) -> Pipe:
        start = self.peek_non_space()
        pipe = Pipe(start.pos, start.pos)
        self.declarations(pipe, context)
        while True:
            tok = self.next_non_space()
            if tok.kind == end:
                self.check_pipeline(pipe, context)
                pipe.end = tok.pos + (end == "rparen")
                return pipe
            if tok.kind not in _OPERAND_KINDS:
                self.unexpected(tok, context)
            self.backup()
            pipe.cmds.append(self.command())

    def declarations(self, pipe: Pipe, context: str) -> None:
        while self.peek_non_space().kind == "var":
            save = self.i
            var = self.next()
            nxt = self.next_non_space()
            if nxt.kind not in ("declare", "assign", "comma"):
                self.i = save
                return
            pipe.decl.append(var.val)
            self.vars.append(var.val)
            if nxt.kind != "comma":
                pipe.assign = nxt.kind == "assign"
                return
            if context != "range" or len(pipe.decl) >= 2:
                self.fail(f"too many declarations in {context}")
            if self.peek_non_space().kind not in ("var", "right", "rparen"):
                self.fail("range can only initialize variables")

    def check_pipeline(self, pipe: Pipe, context: str) -> None:
        if not pipe.cmds:
            self.fail(f"missing value for {context}")
        for stage, cmd in enumerate(pipe.cmds[1:], start=2):
            if isinstance(cmd.args[0], (Literal, Dot)):
                self.fail(f"non executable command in pipeline stage {stage}")

    def command(self) -> Command:
        cmd = Command(self.peek_non_space().pos, 0)
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            tok = self.next()
            if tok.kind == "space":
                continue
            if tok.kind in ("right", "rparen"):
                self.backup()
            elif tok.kind != "pipe":
                self.unexpected(tok, "operand")
            break
        if not cmd.args:
            self.fail("empty command")
        cmd.end = cmd.args[-1].end
        return cmd

    def operand(self) -> Node | None:
        node = self.term()
        if node is None or self.peek().kind != "field":
            return node
        names = []
        while self.peek().kind == "field":
            names.append(self.next().val[1:])
        end = self.last.pos + len(self.last.val)
        if isinstance(node, (Literal, Dot)):
            self.fail(f"unexpected . after term {json.dumps(self.src[node.pos:node.end])}")
        if isinstance(node, Field):
            return Field(node.pos, end, node.names + tuple(names))
        if isinstance(node, Var):
            return Var(node.pos, end, node.name, node.names + tuple(names))
        return Chain(node.pos, end, node, tuple(names))

    def term(self) -> Node | None:
        tok = self.next_non_space()
        kind, pos, end = tok.kind, tok.pos, tok.pos + len(tok.val)
        if kind == "lparen":
            self.enter()
            pipe = self.pipeline("parenthesized pipeline", "rparen")
            self.depth -= 1
            pipe.pos = pos
            return pipe
        if kind in _TERMS:
            return _TERMS[kind](self, tok, pos, end)
        self.backup()
        return None

    def ident(self, tok: Tok, pos: int, end: int) -> Ident:
        if tok.val not in self.funcs:
            self.fail(f"function {json.dumps(tok.val)} not defined")
        return Ident(pos, end, tok.val)

    def variable(self, tok: Tok, pos: int, end: int) -> Var:
        if tok.val not in self.vars:
            self.fail(f"undefined variable {json.dumps(tok.val)}")
        return Var(pos, end, tok.val)

    def literal(self, tok: Tok, pos: int, end: int) -> Literal:
        kind = tok.kind
        if kind in ("string", "raw"):
            return Literal(pos, end, "string", self.unquote(tok.val))
        if kind in ("number", "charconst"):
            return Literal(pos, end, "number", self.number(tok.val))
        return Literal(pos, end, kind, tok.val == "true" if kind == "bool" else None)

    # literal values
    def number(self, text: str) -> int | float:
        if text.startswith("'"):
            return self.char_value(text)
        if text.endswith("i"):
            self.fail(f"complex numbers are not supported: {text}")
        try:
            return _number_value(text.replace("_", ""))
        except ValueError:
            self.fail(f"illegal number syntax: {json.dumps(text)}")

    def char_value(self, text: str) -> int:
        body = text[1:-1]
        if not body.startswith("\\"):
            if len(body) != 1:
                self.fail(f"malformed character constant: {text}")
            return ord(body)
        match = _ESCAPE.fullmatch(body)
        if not match or match.group(5) == '"':
            self.fail("invalid syntax")
        raw = self.escape_bytes(match)
        return raw[0] if match.group(1) or match.group(4) else ord(raw.decode())

    def unquote(self, text: str) -> str:
        if text[0] == "`":
            return text[1:-1].replace("\r", "")
        body, out, i = text[1:-1], bytearray(), 0
        while i < len(body):
            if body[i] != "\\":
                j = body.find("\\", i)
                j = len(body) if j < 0 else j
                out += body[i:j].encode("utf-8", "surrogatepass")
                i = j
                continue
            match = _ESCAPE.match(body, i)
            if not match or match.group(5) == "'":
                self.fail("invalid syntax")
            out += self.escape_bytes(match)
            i = match.end()
        return out.decode("utf-8", "replace")

    def escape_bytes(self, match: re.Match) -> bytes:
        hex2, hex4, hex8, octal, simple = match.groups()
        if simple:
            return _SIMPLE_ESCAPES[simple].encode()
        if hex2 or octal:
            value = int(hex2, 16) if hex2 else int(octal, 8)
            if value > 255:
                self.fail("invalid syntax")
            return bytes([value])
        code = int(hex4 or hex8, 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            self.fail("invalid syntax")
        return chr(code).encode()


_TERMS = {"ident": Parser.ident, "var": Parser.variable, "string": Parser.literal, "raw": Parser.literal,
          "number": Parser.literal, "charconst": Parser.literal, "bool": Parser.literal,
          "nil": Parser.literal,
          "dot": lambda self, tok, pos, end: Dot(pos, end),
          "field": lambda self, tok, pos, end: Field(pos, end, (tok.val[1:],))}


def _number_value(text: str) -> int | float:
    low = text.lower().lstrip("+-")
    if low.startswith("0x") and ("p" in low or "." in low):
        if "p" not in low:
            raise ValueError("hexadecimal mantissa requires a 'p' exponent")
        return float.fromhex(text)
    if low.startswith(("0x", "0o", "0b")):
        return int(text, 0)
    if "." in low or "e" in low:
        return float(text)
    if len(low) > 1 and low.startswith("0"):
        return int(text, 8)
    return int(text, 10)


def _tok_str(tok: Tok) -> str:
    if tok.kind == "eof":
        return "EOF"
    if tok.kind in ("keyword", "dot"):
        return f"<{tok.val}>"
    quoted = json.dumps(tok.val, ensure_ascii=False)
    return quoted if len(tok.val) <= 10 else json.dumps(tok.val[:10], ensure_ascii=False) + "..."


def parse(src: str, funcs) -> list:
    """Parse template source into nodes; funcs is the set of defined function names."""
    return Parser(src, funcs).parse()
