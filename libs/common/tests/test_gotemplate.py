"""Tests of the Go text/template renderer with Ollama's model templates and focused language features."""

import datetime
import re

import pytest

from corral_common.gotemplate import MAX_OUTPUT, JSONDict, JSONList, Template, TemplateError, json_values, render

SYSTEM = "You are a helpful assistant."
CONVERSATION = [
    {"Role": "system", "Content": SYSTEM},
    {"Role": "user", "Content": "Hello!"},
    {"Role": "assistant", "Content": "Hi there. How can I help?"},
    {"Role": "user", "Content": "What is 2+2?"},
]
TOOL_CONVERSATION = [
    {"Role": "system", "Content": SYSTEM},
    {"Role": "user", "Content": "What's the weather in Paris?"},
    {"Role": "assistant", "Content": "",
     "ToolCalls": [{"Function": {"Name": "get_weather", "Arguments": JSONDict(city="Paris")}}]},
    {"Role": "tool", "Content": "22C sunny"},
]
# An API request's tools, keys in the field order of Ollama's api.Tool structs; they print as JSON like
# api.Tools does, and .Function.Name finds their JSON keys.
TOOLS = json_values([{"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather for a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string", "description": "The city"}}}}}])
FUNCTION_JSON = ('{"name":"get_weather","description":"Get the weather for a city","parameters":{"type":"object",'
                 '"required":["city"],"properties":{"city":{"type":"string","description":"The city"}}}}')
TOOL_JSON = '{"type":"function","function":' + FUNCTION_JSON + "}"


def chat_data(messages, tools=None):
    """The values Ollama passes to a template that uses .Messages."""
    system = "\n\n".join(m["Content"] for m in messages if m["Role"] == "system")
    return {"System": system, "Messages": messages, "Tools": tools, "Response": "", "Think": False,
            "IsThinkSet": False}


def turn_data(prompt, response="", system=""):
    """The values Ollama passes to a legacy template for one turn."""
    return {"System": system, "Prompt": prompt, "Response": response, "Think": False, "IsThinkSet": False}


# ------------------------------------------------------------------------------------ model templates

# Ollama's ChatML template, copied on purpose although cli/corral_cli/bundled.py ships the same text:
# these expectations pin the engine against the template as Ollama publishes it, so they must not move
# when a bundled model's template does, and libs/ tests do not import the command (the top floor).
CHATML = """{{- if .Messages }}{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 -}}<|im_start|>{{ .Role }}
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}{{- if and (ne .Role "assistant") $last }}<|im_end|>
<|im_start|>assistant
{{ end }}{{- end }}{{- else }}{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""


def test_chatml_messages():
    assert render(CHATML, chat_data(CONVERSATION)) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\nHi there. How can I help?<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_chatml_legacy_turns():
    tmpl = Template.parse(CHATML)
    assert tmpl.render(turn_data("Hello!", "Hi there. How can I help?", SYSTEM)) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\nHi there. How can I help?<|im_end|>")
    assert tmpl.render(turn_data("What is 2+2?")) == (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")


def test_chatml_ends_with_assistant_message_without_generation_prompt():
    out = render(CHATML, chat_data(CONVERSATION[:3]))
    assert out.endswith("<|im_start|>assistant\nHi there. How can I help?")


# Ollama library llama3.1 (8b) template.
LLAMA31 = """{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>
{{- if .System }}

{{ .System }}
{{- end }}
{{- if .Tools }}

Cutting Knowledge Date: December 2023

When you receive a tool call response, use the output to format an answer to the orginal user question.

You are a helpful assistant with tool calling capabilities.
{{- end }}<|eot_id|>
{{- end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>
{{- if and $.Tools $last }}

Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.

Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. Do not use variables.

{{ range $.Tools }}
{{- . }}
{{ end }}
Question: {{ .Content }}<|eot_id|>
{{- else }}

{{ .Content }}<|eot_id|>
{{- end }}{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>
{{- if .ToolCalls }}
{{ range .ToolCalls }}
{"name": "{{ .Function.Name }}", "parameters": {{ .Function.Arguments }}}{{ end }}
{{- else }}

{{ .Content }}
{{- end }}{{ if not $last }}<|eot_id|>{{ end }}
{{- else if eq .Role "tool" }}<|start_header_id|>ipython<|end_header_id|>

{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}
{{- end }}"""

LLAMA31_TOOLS_SYSTEM = (
    "\n\nCutting Knowledge Date: December 2023\n\n"
    "When you receive a tool call response, use the output to format an answer to the orginal user question.\n\n"
    "You are a helpful assistant with tool calling capabilities.")


def test_llama31_messages():
    assert render(LLAMA31, chat_data(CONVERSATION)) == (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_llama31_messages_with_tools():
    assert render(LLAMA31, chat_data(CONVERSATION, TOOLS)) == (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant." + LLAMA31_TOOLS_SYSTEM +
        "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "Given the following functions, please respond with a JSON for a function call with its proper "
        "arguments that best answers the given prompt.\n\n"
        'Respond in the format {"name": function name, "parameters": dictionary of argument name and its '
        "value}. Do not use variables.\n\n" + TOOL_JSON + "\n\n"
        "Question: What is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_llama31_tool_call_and_result():
    messages = TOOL_CONVERSATION[1:]
    assert render(LLAMA31, chat_data(messages, TOOLS)) == (
        "<|start_header_id|>system<|end_header_id|>" + LLAMA31_TOOLS_SYSTEM + "<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat's the weather in Paris?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "get_weather", "parameters": {"city":"Paris"}}<|eot_id|>'
        "<|start_header_id|>ipython<|end_header_id|>\n\n22C sunny<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


# Ollama library llama3 template (legacy .System/.Prompt/.Response form).
LLAMA3_LEGACY = """{{ if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>

{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>

{{ .Response }}<|eot_id|>"""


def test_llama3_legacy_turns():
    tmpl = Template.parse(LLAMA3_LEGACY)
    assert tmpl.render(turn_data("Hello!", "Hi there. How can I help?", SYSTEM)) == (
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHi there. How can I help?<|eot_id|>")
    assert tmpl.render(turn_data("What is 2+2?")) == (
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n<|eot_id|>")


# Ollama library gemma3 template.
GEMMA3 = """{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if or (eq .Role "user") (eq .Role "system") }}<start_of_turn>user
{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}
{{- end }}
{{- end }}"""


def test_gemma3_messages():
    assert render(GEMMA3, chat_data(CONVERSATION)) == (
        "<start_of_turn>user\nYou are a helpful assistant.<end_of_turn>\n"
        "<start_of_turn>user\nHello!<end_of_turn>\n"
        "<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n")


# Ollama's built-in gemma-instruct template: merges system messages with printf, skips them with continue.
GEMMA_INSTRUCT = """{{- $system := "" }}
{{- range .Messages }}
{{- if eq .Role "system" }}
{{- if not $system }}{{ $system = .Content }}
{{- else }}{{ $system = printf "%s\\n\\n%s" $system .Content }}
{{- end }}
{{- continue }}
{{- else if eq .Role "user" }}<start_of_turn>user
{{- if $system }}
{{ $system }}
{{- $system = "" }}
{{- end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{- end }}
{{ .Content }}<end_of_turn>
{{ end }}<start_of_turn>model
"""


def test_gemma_instruct_merges_system_messages():
    messages = [{"Role": "system", "Content": "Be brief."}] + CONVERSATION
    assert render(GEMMA_INSTRUCT, chat_data(messages)) == (
        "<start_of_turn>user\nBe brief.\n\nYou are a helpful assistant.\nHello!<end_of_turn>\n"
        "<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n")


# Ollama library gemma / gemma2 template (legacy form).
GEMMA_LEGACY = """<start_of_turn>user
{{ if .System }}{{ .System }} {{ end }}{{ .Prompt }}<end_of_turn>
<start_of_turn>model
{{ .Response }}<end_of_turn>
"""


def test_gemma_legacy_turns():
    tmpl = Template.parse(GEMMA_LEGACY)
    assert tmpl.render(turn_data("Hello!", "Hi there. How can I help?", SYSTEM)) == (
        "<start_of_turn>user\nYou are a helpful assistant. Hello!<end_of_turn>\n"
        "<start_of_turn>model\nHi there. How can I help?<end_of_turn>\n")
    assert tmpl.render(turn_data("What is 2+2?")) == (
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n<end_of_turn>\n")


# Ollama library mistral (v0.3) template: messages with [AVAILABLE_TOOLS], and the legacy form.
MISTRAL = """{{- if .Messages }}
{{- range $index, $_ := .Messages }}
{{- if eq .Role "user" }}
{{- if and (eq (len (slice $.Messages $index)) 1) $.Tools }}[AVAILABLE_TOOLS] {{ $.Tools }}[/AVAILABLE_TOOLS]
{{- end }}[INST] {{ if and $.System (eq (len (slice $.Messages $index)) 1) }}{{ $.System }}

{{ end }}{{ .Content }}[/INST]
{{- else if eq .Role "assistant" }}
{{- if .Content }}{{ .Content }}
{{- else if .ToolCalls }}[TOOL_CALLS] [
{{- range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{- end }}]
{{- end }}</s>
{{- else if eq .Role "tool" }}[TOOL_RESULTS] {"content": {{ .Content }}} [/TOOL_RESULTS]
{{- end }}
{{- end }}
{{- else }}[INST] {{ if .System }}{{ .System }}

{{ end }}{{ .Prompt }}[/INST]
{{- end }}{{ .Response }}
{{- if .Response }}</s>
{{- end }}"""


def test_mistral_messages():
    assert render(MISTRAL, chat_data(CONVERSATION)) == (
        "[INST] Hello![/INST]Hi there. How can I help?</s>"
        "[INST] You are a helpful assistant.\n\nWhat is 2+2?[/INST]")


def test_mistral_messages_with_tools():
    assert render(MISTRAL, chat_data(CONVERSATION, TOOLS)) == (
        "[INST] Hello![/INST]Hi there. How can I help?</s>"
        "[AVAILABLE_TOOLS] [" + TOOL_JSON + "][/AVAILABLE_TOOLS]"
        "[INST] You are a helpful assistant.\n\nWhat is 2+2?[/INST]")


def test_mistral_tool_calls():
    messages = TOOL_CONVERSATION[1:] + [{"Role": "user", "Content": "Thanks"}]
    assert render(MISTRAL, chat_data(messages, TOOLS)) == (
        "[INST] What's the weather in Paris?[/INST]"
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city":"Paris"}}]</s>'
        '[TOOL_RESULTS] {"content": 22C sunny} [/TOOL_RESULTS]'
        "[AVAILABLE_TOOLS] [" + TOOL_JSON + "][/AVAILABLE_TOOLS][INST] Thanks[/INST]")


def test_mistral_legacy_turns():
    tmpl = Template.parse(MISTRAL)
    assert tmpl.render(turn_data("Hello!", "Hi there. How can I help?", SYSTEM)) == (
        "[INST] You are a helpful assistant.\n\nHello![/INST]Hi there. How can I help?</s>")
    assert tmpl.render(turn_data("What is 2+2?")) == "[INST] What is 2+2?[/INST]"


# Ollama's built-in phi-3 template (messages) and the library phi3 template (legacy form).
PHI3 = """{{- range .Messages }}<|{{ .Role }}|>
{{ .Content }}<|end|>
{{ end }}<|assistant|>
"""
PHI3_LEGACY = """{{ if .System }}<|system|>
{{ .System }}<|end|>
{{ end }}{{ if .Prompt }}<|user|>
{{ .Prompt }}<|end|>
{{ end }}<|assistant|>
{{ .Response }}<|end|>
"""


def test_phi3_messages():
    assert render(PHI3, chat_data(CONVERSATION)) == (
        "<|system|>\nYou are a helpful assistant.<|end|>\n"
        "<|user|>\nHello!<|end|>\n"
        "<|assistant|>\nHi there. How can I help?<|end|>\n"
        "<|user|>\nWhat is 2+2?<|end|>\n"
        "<|assistant|>\n")


def test_phi3_legacy_turns():
    tmpl = Template.parse(PHI3_LEGACY)
    assert tmpl.render(turn_data("Hello!", "Hi there. How can I help?", SYSTEM)) == (
        "<|system|>\nYou are a helpful assistant.<|end|>\n"
        "<|user|>\nHello!<|end|>\n"
        "<|assistant|>\nHi there. How can I help?<|end|>\n")
    assert tmpl.render(turn_data("What is 2+2?")) == "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n<|end|>\n"


# Ollama library qwen3 template, messages branch (ChatML with tools; its legacy branch equals CHATML's).
QWEN3 = """{{- if .Messages }}
{{- if or .System .Tools }}<|im_start|>system
{{- if .System }}
{{ .System }}
{{- end }}
{{- if .Tools }}

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{{- range .Tools }}
{"type": "function", "function": {{ .Function }}}
{{- end }}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>
{{- end }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- end }}"""


def test_qwen3_tool_call_and_result():
    assert render(QWEN3, chat_data(TOOL_CONVERSATION, TOOLS)) == (
        "<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        '{"type": "function", "function": ' + FUNCTION_JSON + "}\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments within "
        "<tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n"
        "<|im_start|>assistant\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city":"Paris"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n22C sunny\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n")


def test_variables_of_model_templates():
    assert Template.parse(CHATML).variables() == {"Messages", "System", "Prompt", "Response"}
    assert Template.parse(LLAMA31).variables() == {"System", "Tools", "Messages"}
    assert Template.parse(MISTRAL).variables() == {"Messages", "Tools", "System", "Prompt", "Response"}
    assert Template.parse(PHI3_LEGACY).variables() == {"System", "Prompt", "Response"}


# ------------------------------------------------------------------------------------ language features

@pytest.mark.parametrize(("text", "expected"), [
    ("a  {{- .A -}}  b", "axb"),
    ("a \n\t {{- .A }}\n b", "ax\n b"),
    ("a {{ .A -}}\n\n\tb", "a xb"),
    ("{{ .A }}\n{{- .A }}", "xx"),
    ("a {{- /* note */ -}} \n b", "ab"),
    ("{{-3}} {{- -3 }}", "-3-3"),
    ("{{ .A -}} {{- .A }}", "xx"),
    ("x\n{{- if .A }}\n  y\n{{- end }}\n", "x\n  y\n"),
])
def test_trim_markers(text, expected):
    assert render(text, {"A": "x"}) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("a{{/* comment */}}b", "ab"),
    ("a{{/* multi\nline {{ .A }} */}}b", "ab"),
    ("a {{- /* trims both sides */ -}}\n b", "ab"),
])
def test_comments(text, expected):
    assert render(text, {"A": "x"}) == expected


@pytest.mark.parametrize(("role", "expected"), [("system", "S"), ("user", "U"), ("assistant", "A"), ("tool", "?")])
def test_else_if_chain(role, expected):
    text = ('{{ if eq .Role "system" }}S{{ else if eq .Role "user" }}U'
            '{{ else if eq .Role "assistant" }}A{{ else }}?{{ end }}')
    assert render(text, {"Role": role}) == expected


def test_range_forms():
    data = {"L": ["a", "b"], "M": {"b": 2, "a": 1}, "E": []}
    assert render("{{ range .L }}[{{ . }}]{{ end }}", data) == "[a][b]"
    assert render("{{ range $i, $v := .L }}{{ $i }}={{ $v }} {{ end }}", data) == "0=a 1=b "
    assert render("{{ range $v := .L }}{{ $v }}{{ end }}", data) == "ab"
    assert render("{{ range $k, $v := .M }}{{ $k }}:{{ $v }} {{ end }}", data) == "a:1 b:2 "
    assert render("{{ range .E }}x{{ else }}empty{{ end }}", data) == "empty"
    assert render("{{ range .Missing }}x{{ else }}none{{ end }}", data) == "none"
    assert render("{{ range .L }}{{ $.M.a }}{{ end }}", data) == "11"
    assert render("{{ range 3 }}{{ . }}{{ end }}", data) == "012"


def test_break_and_continue():
    data = {"L": [1, 2, 3, 4]}
    assert render("{{ range .L }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}", data) == "134"
    assert render("{{ range .L }}{{ if eq . 3 }}{{ break }}{{ end }}{{ . }}{{ end }}", data) == "12"
    nested = "{{ range .L }}{{ range $.L }}{{ if gt . 1 }}{{ break }}{{ end }}{{ . }}{{ end }}|{{ end }}"
    assert render(nested, data) == "1|1|1|1|"


def test_variable_scoping():
    data = {"L": [1, 2, 3], "T": True}
    assert render("{{ $x := 1 }}{{ if .T }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", data) == "21"
    assert render("{{ $x := 0 }}{{ range .L }}{{ $x = . }}{{ end }}{{ $x }}", data) == "3"
    assert render("{{ $x := 1 }}{{ with .T }}{{ $x = 5 }}{{ end }}{{ $x }}", data) == "5"
    assert render("{{ if $v := .L }}{{ len $v }}{{ end }}", data) == "3"
    with pytest.raises(TemplateError, match=r'template: :1: undefined variable "\$y"'):
        Template.parse("{{ if .T }}{{ $y := 1 }}{{ end }}{{ $y }}")


def test_with_and_else():
    assert render("{{ with .A }}<{{ . }}>{{ else }}none{{ end }}", {"A": "x"}) == "<x>"
    assert render("{{ with .A }}<{{ . }}>{{ else }}none{{ end }}", {"A": ""}) == "none"
    assert render("{{ with .A }}a{{ else with .B }}b{{ . }}{{ end }}", {"B": 2}) == "b2"


def test_and_or_return_the_deciding_value():
    data = {"L": [1]}
    assert render("{{ and 1 0 2 }}|{{ and 1 2 }}|{{ or 0 \"\" \"x\" }}|{{ or 0 \"\" }}|{{ or .L 5 }}", data) == \
        "0|2|x||[1]"
    # Short-circuit: the out-of-range index is never evaluated.
    assert render("{{ or 1 (index .L 9) }}{{ and 0 (index .L 9) }}", data) == "10"
    assert render('{{ .Missing | or "default" }}', data) == "default"


def test_eq_with_several_arguments_and_comparisons():
    data = {"N": 2, "R": "user"}
    assert render("{{ eq .N 1 2 3 }} {{ eq .N 4 5 }} {{ eq .R \"tool\" \"user\" }}", data) == "true false true"
    assert render("{{ ne .R \"user\" }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt \"b\" \"a\" }} {{ ge 1 2 }}", data) == \
        "false true true true false"
    assert render('{{ eq .Missing "user" }}', data) == "false"
    with pytest.raises(TemplateError, match="error calling eq: incompatible types for comparison"):
        render('{{ eq .N "2" }}', data)


def test_index_slice_len():
    data = {"L": [10, 20, 30], "M": {"k": {"n": [1, 2]}}, "S": "héllo"}
    assert render("{{ index .L 1 }} {{ index .M \"k\" \"n\" 1 }} {{ index .M \"zz\" }}|", data) == "20 2 |"
    assert render("{{ slice .L 1 }} {{ slice .L 1 2 }} {{ slice .L }} {{ slice \"abcdef\" 2 4 }}", data) == \
        "[20 30] [20] [10 20 30] cd"
    assert render("{{ len .L }} {{ len .M }} {{ len .S }} {{ len (slice .L 2) }}", data) == "3 1 6 1"
    with pytest.raises(TemplateError, match="error calling index: index out of range: 5"):
        render("{{ index .L 5 }}", data)
    with pytest.raises(TemplateError, match=r"error calling slice: invalid slice index: 2 > 1"):
        render("{{ slice .L 2 1 }}", data)


def test_json_function():
    data = {"D": {"b": 1, "a": [1.5, None, True], "s": "<a & b>"}, "F": 1e21, "G": 1e-7, "H": 100.0}
    assert render("{{ json .D }}", data) == '{"b":1,"a":[1.5,null,true],"s":"\\u003ca \\u0026 b\\u003e"}'
    assert render("{{ json .F }} {{ json .G }} {{ json .H }} {{ json \"é\\n\" }}", data) == '1e+21 1e-7 100 "é\\n"'
    assert render("{{ json .Missing }}", data) == "null"


def test_printf_and_print():
    data = {"S": "hi", "N": 42, "L": [1, "a"], "F": 0.5}
    assert render('{{ printf "%s|%d|%v|%q|%%|%5d|%-4s|%.2f" .S .N .L .S 7 "ab" 3.14159 }}', data) == \
        'hi|42|[1 a]|"hi"|%|    7|ab  |3.14'
    assert render('{{ printf "%d" "x" }} {{ printf "%d" }} {{ printf "%s" .S .N }}', data) == \
        "%!d(string=x) %!d(MISSING) hi%!(EXTRA int=42)"
    assert render('{{ print 1 2 "a" "b" 3 }}|{{ println "x" 1 }}|{{ .S | printf "<%s>" }}', data) == \
        "1 2ab3|x 1\n|<hi>"


def test_value_printing():
    data = {"T": True, "N": 7, "F": 0.5, "Big": 1e6, "L": [1, "a", None], "M": {"b": 2, "a": 1},
            "J": JSONDict(b=2, a=1)}
    assert render("{{ .T }} {{ .N }} {{ .F }} {{ .Big }} {{ .L }} {{ .M }} {{ .J }} [{{ .Missing }}]", data) == \
        'true 7 0.5 1e+06 [1 a <nil>] map[a:1 b:2] {"b":2,"a":1} []'
    assert render("{{ .Missing.Deep.Chain }}|{{ .M.zz }}|", data) == "||"


def test_literals():
    assert render('{{ "a\\tb\\u00e9\\x41" }} {{ `raw\\n` }} {{ 0x1F }} {{ 1_000 }} {{ \'a\' }} {{ eq nil .Missing }}',
                  {}) == "a\tbéA raw\\n 31 1000 97 true"


def test_escaping_functions():
    assert render("{{ html \"<a href='x'>&\" }}", {}) == "&lt;a href=&#39;x&#39;&gt;&amp;"
    assert render('{{ js "it\'s <b>" }}', {}) == "it\\'s \\u003Cb\\u003E"
    assert render('{{ urlquery "a b&c" }}', {}) == "a+b%26c"


def test_current_date():
    out = render("{{ currentDate }}", {})
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", out)
    assert out in {datetime.date.today().isoformat(),
                   (datetime.date.today() + datetime.timedelta(days=1)).isoformat()}


def test_json_values_print_as_json_and_answer_go_field_names():
    data = {"Tools": TOOLS, "Call": json_values({"tool_calls": [{"function": {"arguments": {"b": 1, "a": 2}}}]})}
    assert render("{{ range .Tools }}{{ .Type }} {{ .Function.Name }} {{ .Function.Parameters.Required }}{{ end }}",
                  data) == 'function get_weather ["city"]'
    assert render("{{ range .Call.ToolCalls }}{{ .Function.Arguments }}{{ end }}", data) == '{"b":1,"a":2}'
    assert render("{{ .Tools }}", data) == "[" + TOOL_JSON + "]"
    assert isinstance(TOOLS, JSONList) and isinstance(TOOLS[0], JSONDict)


def test_template_is_reusable():
    tmpl = Template.parse("{{ .A }}")
    assert [tmpl.render({"A": 1}), tmpl.render({"A": 2})] == ["1", "2"]


# ------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize(("text", "message"), [
    ("{{ .Foo }", 'template: :1: unexpected "}" in operand'),
    ("line one\n{{ if .X }}\n{{ end }}\n{{ end }}", "template: :4: unexpected {{end}}"),
    ("a\n{{ .X", "template: :2: unclosed action"),
    ("{{ if .X }}\n\n{{ .Y }}", "template: :3: unexpected EOF ({{if}} from line 1 has no {{end}})"),
    ("{{ else }}", "template: :1: unexpected {{else}}"),
    ("\n{{ foo .X }}", 'template: :2: function "foo" not defined'),
    ("{{ $x }}", 'template: :1: undefined variable "$x"'),
    ("{{ break }}", "template: :1: {{break}} outside {{range}}"),
    ("{{/* open", "template: :1: unclosed comment"),
    ('{{ "abc }}', "template: :1: unterminated quoted string"),
    ("{{ if }}{{ end }}", "template: :1: missing value for if"),
    ('{{ .X | "s" }}', "template: :1: non executable command in pipeline stage 2"),
    ("{{ define \"x\" }}{{ end }}", "template: :1: {{define}} is not supported"),
])
def test_parse_errors(text, message):
    with pytest.raises(TemplateError) as caught:
        Template.parse(text)
    assert str(caught.value) == message


def test_unclosed_action_names_where_it_started():
    with pytest.raises(TemplateError, match=r"^template: :3: unclosed action started at :1$"):
        Template.parse("{{ .X\n\n")


@pytest.mark.parametrize(("text", "message"), [
    ("\n{{ len 1 2 }}", 'template: :2:3: executing "" at <len>: wrong number of args for len: want 1 got 2'),
    ("{{ not }}", 'template: :1:3: executing "" at <not>: wrong number of args for not: want 1 got 0'),
    ("{{ printf }}",
     'template: :1:3: executing "" at <printf>: wrong number of args for printf: want at least 1 got 0'),
    ("{{ len .N }}", 'template: :1:3: executing "" at <len .N>: error calling len: len of type float64'),
    ("{{ .N.Field }}", 'template: :1:3: executing "" at <.N.Field>: can\'t evaluate field Field in type float64'),
    ("{{ range .N }}{{ end }}", 'template: :1:9: executing "" at <.N>: range can\'t iterate over 3.5'),
    ("{{ nil }}", 'template: :1:3: executing "" at <nil>: nil is not a command'),
])
def test_execution_errors(text, message):
    with pytest.raises(TemplateError) as caught:
        render(text, {"N": 3.5})
    assert str(caught.value) == message


def test_output_is_capped():
    data = {"L": [1, 2, 3], "Big": "x" * (MAX_OUTPUT // 2)}
    with pytest.raises(TemplateError, match="output exceeds the limit"):
        render("{{ range .L }}{{ $.Big }}{{ end }}", data)


def test_range_iterations_are_capped():
    data = {"L": list(range(1000))}
    with pytest.raises(TemplateError, match="range iterations"):
        render("{{ range .L }}{{ range $.L }}{{ end }}{{ end }}", data)


def test_growing_strings_are_capped():
    text = '{{ $s := "xxxxxxxxxxxxxxxx" }}{{ range .L }}{{ $s = printf "%s%s" $s $s }}{{ end }}'
    with pytest.raises(TemplateError, match="exceeds"):
        render(text, {"L": list(range(40))})


def test_deep_nesting_is_rejected():
    with pytest.raises(TemplateError, match="max depth exceeded"):
        Template.parse("{{ print " + "(" * 200 + "1" + ")" * 200 + " }}")


# ---------------------------------------------------------------------------------------- variables

@pytest.mark.parametrize(("text", "expected"), [
    ("{{ if .Tools }}{{ json .Tools }}{{ end }}", {"Tools"}),
    ("{{ if .Suffix }}<fim>{{ .Prompt }}{{ .Suffix }}{{ end }}", {"Suffix", "Prompt"}),
    ("{{ range .Messages }}{{ .Role }}{{ $.Tools }}{{ end }}{{ .Response }}", {"Messages", "Tools", "Response"}),
    ("{{ with .System }}{{ .Nested }}{{ else }}{{ .Prompt }}{{ end }}", {"System", "Prompt"}),
    ("{{ $x := (index .Messages 0).Role }}{{ $.Think }}{{ .IsThinkSet | not }}", {"Messages", "Think", "IsThinkSet"}),
    ("plain text", set()),
])
def test_variables(text, expected):
    assert Template.parse(text).variables() == expected
