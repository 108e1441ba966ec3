"""The Modelfile parser and writer, checked against Ollama's parser semantics."""

from __future__ import annotations

import pytest
from corral_common.modelfile import (
    DEPRECATED_PARAMETERS,
    OPTION_TYPES,
    Command,
    Modelfile,
    ModelfileError,
    parse,
    parse_parameter,
    quote,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def _commands(text: str | bytes) -> list[tuple[str, str]]:
    return [(c.name, c.args) for c in parse(text).commands]


def _error(text: str | bytes) -> str:
    with pytest.raises(ModelfileError) as info:
        parse(text)
    return str(info.value)


def test_every_instruction() -> None:
    text = """FROM llama3.2:1b
PARAMETER temperature 0.7
TEMPLATE {{ .Prompt }}
SYSTEM You are terse.
ADAPTER ./lora.gguf
LICENSE MIT
MESSAGE user Hey there!
MESSAGE assistant Hello.
MESSAGE system Be nice.
DRAFT ./draft.gguf
RENDERER qwen3-coder
PARSER qwen3-coder
REQUIRES 0.14.0
"""
    assert _commands(text) == [
        ("from", "llama3.2:1b"), ("parameter", "temperature 0.7"), ("template", "{{ .Prompt }}"),
        ("system", "You are terse."), ("adapter", "./lora.gguf"), ("license", "MIT"),
        ("message", "user Hey there!"), ("message", "assistant Hello."), ("message", "system Be nice."),
        ("draft", "./draft.gguf"), ("renderer", "qwen3-coder"), ("parser", "qwen3-coder"),
        ("requires", "0.14.0"),
    ]
    m = parse(text)
    assert m.from_() == "llama3.2:1b"
    assert m.messages() == [("user", "Hey there!"), ("assistant", "Hello."), ("system", "Be nice.")]
    assert m.values("license") == ["MIT"]
    assert m.warnings == []


def test_instructions_are_case_insensitive() -> None:
    text = "from base\nTemplate t\nsYsTeM s\nparameter top_k 5\nMessage user hi\nlicense l\n"
    assert _commands(text) == [("from", "base"), ("template", "t"), ("system", "s"),
                               ("parameter", "top_k 5"), ("message", "user hi"), ("license", "l")]


def test_parameter_names_and_roles_are_case_sensitive() -> None:
    assert _error("FROM x\nPARAMETER Temperature 1\n") == "(line 2): unknown parameter 'Temperature'"
    assert "(line 2): message role must be one of" in _error("FROM x\nMESSAGE User hi\n")


def test_triple_quoted_template_with_embedded_quotes() -> None:
    text = ('FROM x\nTEMPLATE """{{ if .System }}<|im_start|>system\n'
            '{{ .System }} "said" ""twice""<|im_end|>\n{{ end }}"""\n')
    assert parse(text).values("template") == [
        '{{ if .System }}<|im_start|>system\n{{ .System }} "said" ""twice""<|im_end|>\n{{ end }}']


def test_single_quoted_multiline_system() -> None:
    text = 'FROM x\nSYSTEM "You are\n  a pirate.\n\n Arr!"\nPARAMETER top_k 1\n'
    m = parse(text)
    assert m.values("system") == ["You are\n  a pirate.\n\n Arr!"]
    assert m.parameters() == {"top_k": 1}


@pytest.mark.parametrize("text, value", [  # ported from Ollama's TestParseFileQuoted
    ('SYSTEM """\nThis is a\nmultiline system.\n"""\n\t\t\t', "\nThis is a\nmultiline system.\n"),
    ('SYSTEM """\nThis is a\nmultiline system."""', "\nThis is a\nmultiline system."),
    ('SYSTEM """This is a multiline system."""', "This is a multiline system."),
    ('SYSTEM """"""', ""),
    ('SYSTEM ""', ""),
    ("SYSTEM \"'\"", "'"),
    ('SYSTEM """\'\'"\'""\'""\'"\'\'\'\'\'""\'""\'"""', '\'\'"\'""\'""\'"\'\'\'\'\'""\'""\''),
    ('TEMPLATE """\n{{ .Prompt }}\n"""', "\n{{ .Prompt }}\n"),
    ('SYSTEM     "  padded  "   ', "  padded  "),
    ('SYSTEM say "hi" to them', 'say "hi" to them'),
    ('SYSTEM "a" b\nc"', 'a" b\nc'),  # Ollama: a value ends only on a line ending with its quote
    ("SYSTEM tab\tinside", "tab\tinside"),
    ("SYSTEM 你好👋", "你好👋"),
])
def test_quoting(text: str, value: str) -> None:
    name = text.split()[0].lower()
    assert parse(f"FROM foo\n{text}").values(name) == [value]


@pytest.mark.parametrize("text, commands", [  # ported from Ollama's TestParseFileFrom/TrimSpace
    ('FROM "FOO  BAR  "', [("from", "FOO  BAR  ")]),
    ("FROM     FOOO BAR    ", [("from", "FOOO BAR")]),
    ("FROM /what/is/the path ", [("from", "/what/is/the path")]),
    ("FROM llama3:7b-instruct-q4_K_M", [("from", "llama3:7b-instruct-q4_K_M")]),
    ("PARAMETER top_k 1\nFROM foo", [("parameter", "top_k 1"), ("from", "foo")]),
    ("PARAMETER stop the \nFROM lemons make lemonade ", [("parameter", "stop the"),
                                                          ("from", "lemons make lemonade")]),
    ("PARAMETER num_ctx        4096\nFROM x", [("parameter", "num_ctx 4096"), ("from", "x")]),
    ("\tFROM x\r\nLICENSE MIT\r\n", [("from", "x"), ("license", "MIT")]),
    ("FROM x\rSYSTEM s\r", [("from", "x"), ("system", "s")]),
])
def test_from_and_whitespace(text: str, commands: list[tuple[str, str]]) -> None:
    assert _commands(text) == commands


def test_comments_only_at_line_start() -> None:
    text = "# leading comment\n   # indented comment\nFROM x # not a comment\n\t#also a comment\nSYSTEM a#b\n"
    assert _commands(text) == [("from", "x # not a comment"), ("system", "a#b")]


def test_hash_inside_multiline_value_is_content() -> None:
    text = 'FROM x\nSYSTEM """line one\n# still the system prompt\n"""\n'
    assert parse(text).values("system") == ["line one\n# still the system prompt\n"]


def test_blank_lines_are_skipped() -> None:
    assert _commands("\n\n  \n\t\nFROM x\n\n\n") == [("from", "x")]


def test_repeated_stop_parameters_accumulate() -> None:
    text = 'FROM x\nPARAMETER stop <|im_end|>\nPARAMETER stop "### User: "\nPARAMETER stop </s>\n'
    assert parse(text).parameters() == {"stop": ["<|im_end|>", "### User: ", "</s>"]}


def test_later_parameters_override() -> None:
    assert parse("FROM x\nPARAMETER top_k 1\nPARAMETER top_k 2\n").parameters() == {"top_k": 2}


def test_typed_parameters() -> None:
    text = """FROM x
PARAMETER num_ctx 4096
PARAMETER num_batch 512
PARAMETER num_gpu -1
PARAMETER main_gpu 0
PARAMETER use_mmap false
PARAMETER num_thread 8
PARAMETER num_keep 24
PARAMETER seed -42
PARAMETER num_predict +128
PARAMETER top_k 40
PARAMETER top_p .9
PARAMETER min_p 0.05
PARAMETER typical_p 1
PARAMETER repeat_last_n 64
PARAMETER temperature 0.8
PARAMETER repeat_penalty 1.1e0
PARAMETER presence_penalty -1.5
PARAMETER frequency_penalty 2.
PARAMETER stop END
PARAMETER mirostat 2
PARAMETER mirostat_tau 5
PARAMETER mirostat_eta 0.1
"""
    params = parse(text).parameters()
    assert params == {
        "num_ctx": 4096, "num_batch": 512, "num_gpu": -1, "main_gpu": 0, "use_mmap": False,
        "num_thread": 8, "num_keep": 24, "seed": -42, "num_predict": 128, "top_k": 40, "top_p": 0.9,
        "min_p": 0.05, "typical_p": 1.0, "repeat_last_n": 64, "temperature": 0.8, "repeat_penalty": 1.1,
        "presence_penalty": -1.5, "frequency_penalty": 2.0, "stop": ["END"],
        "mirostat": 2, "mirostat_tau": 5.0, "mirostat_eta": 0.1,
    }
    assert set(params) == set(OPTION_TYPES)
    assert all(type(params[k]) is getattr(t, "__origin__", t) for k, t in OPTION_TYPES.items())


@pytest.mark.parametrize("name, value, expected", [
    ("use_mmap", "1", True), ("use_mmap", "t", True), ("use_mmap", "TRUE", True), ("use_mmap", "True", True),
    ("use_mmap", "0", False), ("use_mmap", "F", False), ("use_mmap", "false", False),
    ("seed", "9223372036854775807", 9223372036854775807), ("seed", "-9223372036854775808", -(1 << 63)),
    ("top_k", "007", 7), ("temperature", "1E2", 100.0), ("stop", "a b", ["a b"]),
])
def test_parse_parameter(name: str, value: str, expected: object) -> None:
    assert parse_parameter(name, value) == expected


@pytest.mark.parametrize("name, value, message", [
    ("foo", "1", "unknown parameter 'foo'"),
    ("tfs_z", "1", "unknown parameter 'tfs_z'"),
    ("top_k", "1.5", "invalid int value [1.5]"),
    ("num_ctx", "4k", "invalid int value [4k]"),
    ("num_ctx", "1_000", "invalid int value [1_000]"),
    ("seed", "9223372036854775808", "invalid int value [9223372036854775808]"),
    ("temperature", "hot", "invalid float value [hot]"),
    ("temperature", "nan", "invalid float value [nan]"),
    ("temperature", "inf", "invalid float value [inf]"),
    ("temperature", "1e39", "invalid float value [1e39]"),
    ("temperature", "0x1p-2", "invalid float value [0x1p-2]"),
    ("use_mmap", "yes", "invalid bool value [yes]"),
    ("use_mmap", "tRuE", "invalid bool value [tRuE]"),
])
def test_parse_parameter_errors(name: str, value: str, message: str) -> None:
    with pytest.raises(ModelfileError) as info:
        parse_parameter(name, value)
    assert str(info.value) == message


@pytest.mark.parametrize("line, message", [
    ("PARAMETER foo 1", "(line 3): unknown parameter 'foo'"),
    ("PARAMETER num_ctx lots", "(line 3): invalid int value [lots]"),
    ("PARAMETER top_p high", "(line 3): invalid float value [high]"),
    ("PARAMETER use_mmap maybe", "(line 3): invalid bool value [maybe]"),
    ("PARAMETER top-k 1", "(line 3): invalid character '-' in parameter name"),
])
def test_bad_parameters_name_the_line(line: str, message: str) -> None:
    assert _error(f"FROM x\n# comment\n{line}\n") == message


def test_deprecated_parameters_are_dropped_with_a_warning() -> None:
    text = "FROM x\nPARAMETER use_mlock true\nPARAMETER top_k 3\nPARAMETER penalize_newline true\n"
    m = parse(text)
    assert _commands(text) == [("from", "x"), ("parameter", "top_k 3")]
    assert m.parameters() == {"top_k": 3}
    assert m.warnings == ["(line 2): parameter use_mlock is deprecated",
                          "(line 4): parameter penalize_newline is deprecated"]
    assert "f16_kv" in DEPRECATED_PARAMETERS


def test_mirostat_parameters_are_kept_and_typed() -> None:
    text = "FROM x\nPARAMETER mirostat 2\nPARAMETER mirostat_tau 3.5\nPARAMETER mirostat_eta 0.2\n"
    m = parse(text)
    assert m.parameters() == {"mirostat": 2, "mirostat_tau": 3.5, "mirostat_eta": 0.2} and m.warnings == []


@pytest.mark.parametrize("line", ["MESSAGE badguy I'm a bad guy!", "MESSAGE tool result", "MESSAGE user: hi",
                                  "MESSAGE  ", "MESSAGE"])
def test_bad_message_role(line: str) -> None:
    assert _error(f"FROM x\n{line}\n") == '(line 2): message role must be one of "system", "user", or "assistant"'


def test_invalid_command_names_the_line() -> None:
    expected = ('(line 3): command must be one of "from", "license", "template", "system", "adapter", '
                '"draft", "renderer", "parser", "parameter", "message", or "requires"')
    assert _error("\nFROM foo\nBADCOMMAND param1 value1\n") == expected
    assert _error("FROM foo\r\n\r\nFROM: bar\r\n").startswith("(line 3): command must be one of")
    assert _error("FROM foo\n1FROM bar\n").startswith("(line 2): command must be one of")
    assert _error('FROM foo\n"SYSTEM" x\n').startswith("(line 2): command must be one of")


@pytest.mark.parametrize("text, message", [
    ("FROM", '(line 1): missing value for "from"'),
    ("FROM   \nSYSTEM x", '(line 1): missing value for "from"'),
    ("FROM x\nTEMPLATE\n", '(line 2): missing value for "template"'),
    ("FROM x\n\nSYSTEM\t\t\n", '(line 3): missing value for "system"'),
    ("FROM x\nPARAMETER stop\n", '(line 2): missing value for parameter "stop"'),
    ("FROM x\nPARAMETER stop   \n", '(line 2): missing value for parameter "stop"'),
    ("FROM x\nPARAMETER\n", '(line 2): missing value for "parameter"'),
    ("FROM x\nMESSAGE user\n", '(line 2): missing value for message "user"'),
    ("FROM x\nMESSAGE user   \n", '(line 2): missing value for message "user"'),
])
def test_missing_value(text: str, message: str) -> None:
    assert _error(text) == message


@pytest.mark.parametrize("text", ["", "# only a comment\n", "PARAMETER top_k 1\n", "SYSTEM hi"])
def test_missing_from(text: str) -> None:
    assert _error(text) == "no FROM line"
    with pytest.raises(ModelfileError, match="no FROM line"):
        Modelfile([Command("system", "x")]).from_()


@pytest.mark.parametrize("text, line", [
    ('FROM x\nSYSTEM """This is a multiline system.""\n', 2),
    ('FROM x\nSYSTEM "\n\t\t\t', 2),
    ('FROM x\n\nTEMPLATE """{{ .Prompt }}\nmore\n', 3),
    ('FROM x\nSYSTEM "unterminated', 2),
    ('FROM x\nPARAMETER stop "unterminated\n', 2),
    ('FROM x\nMESSAGE user """hi\n""', 2),
])
def test_unterminated_quote(text: str, line: int) -> None:
    message = _error(text)
    assert message.startswith(f"(line {line}): unexpected EOF")


def test_multiple_from_lines_last_wins() -> None:
    assert parse("FROM a\nFROM b\n").from_() == "b"


@pytest.mark.parametrize("version, ok", [
    ("0.14.0", True), ("v0.14.0", True), ("1", True), ("1.2", True), ("1.2.3-rc.1+build.5", True),
    ("1.2.3-alpha-1", True), ("0.14", True), ("1.2.3.4", False), ("01.2.3", False), ("1.2-rc1", False),
    ("1.2.3-01", False), ("latest", False), ("1.2.x", False),
])
def test_requires_semver(version: str, ok: bool) -> None:
    text = f"FROM x\nREQUIRES {version}\n"
    if ok:
        assert parse(text).values("requires") == [version]
    else:
        assert _error(text) == "(line 2): requires must be a valid semver (e.g. 0.14.0)"


SAMPLE = "FROM bob\nPARAMETER num_ctx 4096\nSYSTEM You are a utf16 file, 你好👋.\n"
SAMPLE_COMMANDS = [("from", "bob"), ("parameter", "num_ctx 4096"), ("system", "You are a utf16 file, 你好👋.")]


@pytest.mark.parametrize("data", [
    b"\xff\xfe" + SAMPLE.encode("utf-16-le"),
    b"\xfe\xff" + SAMPLE.encode("utf-16-be"),
    b"\xef\xbb\xbf" + SAMPLE.encode(),
    SAMPLE.encode(),
    "\ufeff" + SAMPLE,
], ids=["utf16-le", "utf16-be", "utf8-bom", "utf8", "str-bom"])
def test_encodings(data: str | bytes) -> None:
    assert _commands(data) == SAMPLE_COMMANDS


def test_invalid_utf8_is_replaced() -> None:
    assert parse(b"FROM x\nSYSTEM caf\xe9\n").values("system") == ["caf\ufffd"]


def test_non_printable_characters_are_dropped() -> None:
    assert parse("FROM x\nSYSTEM a\x00b\u200bc\x07\n").values("system") == ["abc"]


@pytest.mark.parametrize("value, quoted", [
    ("plain", "plain"),
    ("two words", "two words"),
    (" leading", '" leading"'),
    ("trailing ", '"trailing "'),
    ("multi\nline", '"multi\nline"'),
    ('multi\n"quoted"', '"""multi\n"quoted\""""'),
    (' say "hi"', '""" say "hi\""""'),
    ('say "hi"', 'say "hi"'),
    ("", ""),
])
def test_quote(value: str, quoted: str) -> None:
    assert quote(value) == quoted


COMPLEX = '''# A complex Modelfile
FROM ./models/base.gguf
ADAPTER ./lora.gguf
DRAFT ./draft.gguf
LICENSE """
Very long and boring legal text.
"Oh look, a quote!"
"""
LICENSE Apache-2.0
TEMPLATE """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""
SYSTEM "  You are a pirate.  "
PARAMETER stop <|im_start|>
PARAMETER stop "<|im_end|>"
PARAMETER stop " "
PARAMETER temperature 0.2
PARAMETER num_ctx 8192
PARAMETER use_mmap true
MESSAGE system """
You are a store greeter. Always respond with "Hello!".
"""
MESSAGE user Hey there!
MESSAGE assistant ""
RENDERER qwen3
PARSER qwen3
REQUIRES 0.14.0
'''


def test_round_trip_complex_modelfile() -> None:
    m = parse(COMPLEX)
    assert len(m.commands) == 19
    text = m.to_text()
    assert parse(text) == m
    assert parse(parse(text).to_text()) == m
    assert text.startswith("FROM ./models/base.gguf\nADAPTER ./lora.gguf\n")
    assert 'SYSTEM "  You are a pirate.  "\n' in text
    assert 'PARAMETER stop " "\n' in text
    assert 'MESSAGE assistant ""\n' in text
    assert m.parameters()["stop"] == ["<|im_start|>", "<|im_end|>", " "]


@pytest.mark.parametrize("value", [
    '"starts with a quote"', '"', '""', '"""', "\tindented", "trailing\t", "a\rb", "line\r\n",
    "\n", " ", "", 'ends with "quote"\nsecond line', 'a"""b', '"""x', "x\n\"\n",
])
def test_to_text_quotes_when_quote_would_not_round_trip(value: str) -> None:
    m = Modelfile([Command("from", "x"), Command("system", value), Command("message", f"user {value}"),
                   Command("parameter", f"stop {value}")])
    assert parse(m.to_text()) == m


@pytest.mark.parametrize("value", ['a"""\nb"\nc', '"""\nx'])
def test_to_text_escapes_values_no_ollama_quoting_reads_back(value: str) -> None:
    m = Modelfile([Command("from", "x"), Command("system", value)])
    assert parse(m.to_text()) == m


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab "#\n\r\t') + ["é", "👋"]), max_size=24))
def test_to_text_round_trips_or_refuses(value: str) -> None:
    m = Modelfile([Command("from", "x"), Command("template", value), Command("message", f"user {value}")])
    try:
        text = m.to_text()
    except ModelfileError:
        return
    assert parse(text) == m
