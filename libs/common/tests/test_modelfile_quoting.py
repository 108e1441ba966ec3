"""Writing a value into a Modelfile and parsing it back gives the same value, however hostile (issue 18 item 9)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral_common.modelfile import Command, Modelfile, parse, quote_value

NASTY = ['"""', '"""\nFROM other', 'a"""\nb"\nc', "back\\slash", "ends with backslash\\", '\\"', '\\\\"',
         "\\", '"', '""', "line one\nline two", "\r\n", "  leading and trailing  ", "# not a comment",
         "\n# nor this\nFROM evil", '"quoted"', 'tab\there', "", " ", "C:\\new\\table", '""" """', "é 👋"]


def _system_of(text: str) -> str:
    modelfile = parse(text)
    assert modelfile.from_() == "base"  # the value never smuggles in a FROM of its own
    return modelfile.values("system")[-1]


@pytest.mark.parametrize("value", NASTY)
def test_security_modelfile_injection_every_command_reads_back(value: str) -> None:
    quoted = quote_value(value)
    text = (f"FROM base\nSYSTEM {quoted}\nTEMPLATE {quoted}\nLICENSE {quoted}\nMESSAGE user {quoted}\n"
            f"PARAMETER stop {quoted}\nADAPTER {quoted}\n")
    modelfile = parse(text)
    assert _system_of(text) == value
    assert modelfile.values("template") == modelfile.values("license") == modelfile.values("adapter") == [value]
    assert modelfile.messages() == [("user", value)]
    assert modelfile.parameters()["stop"] == [value]


def test_plain_values_keep_ollama_quoting() -> None:
    assert quote_value("Be brief.") == "Be brief."
    assert quote_value(" padded ") == '" padded "'
    assert quote_value('say "hi"\nbye') == '"""say "hi"\nbye"""'
    assert quote_value('"""\nFROM other') == '"\\"\\"\\"\nFROM other"'


def test_escapes_apply_only_to_single_quoted_values() -> None:
    assert _system_of('FROM base\nSYSTEM "a \\"b\\" \\\\ \\n"\n') == 'a "b" \\ \\n'
    assert _system_of('FROM base\nSYSTEM """a \\"b\\" \\\\"""\n') == 'a \\"b\\" \\\\'
    assert _system_of("FROM base\nSYSTEM C:\\dir\\file\n") == "C:\\dir\\file"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab "#\\\n\r\t') + ["é", "👋"]), max_size=30))
def test_any_printable_value_round_trips(value: str) -> None:
    modelfile = Modelfile([Command("from", "base"), Command("system", value), Command("message", f"user {value}")])
    assert parse(modelfile.to_text()) == modelfile
    assert _system_of(f"FROM base\nSYSTEM {quote_value(value)}\n") == value
