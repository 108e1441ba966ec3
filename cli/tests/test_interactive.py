"""The interactive session: line assembly, ``/`` commands and the chat requests they lead to."""

from __future__ import annotations

import httpx
import pytest
from corral_cli.interactive import (
    Entry,
    History,
    LineBuffer,
    Repl,
    clear_session,
    parse_set_parameter,
    save_request,
    set_parameter,
    set_system,
)
from corral_cli.session import RunOptions


def feed_all(buffer: LineBuffer, lines: list[str]) -> list[Entry | None]:
    return [buffer.feed(line) for line in lines]


def test_single_lines_and_commands():
    buffer = LineBuffer()
    assert feed_all(buffer, ["hello", "", "/set verbose"]) == [
        Entry("message", "hello"), None, Entry("command", "/set verbose")]


def test_triple_quotes_assemble_a_multi_line_message():
    buffer = LineBuffer()
    assert feed_all(buffer, ['"""Write a haiku', "about rain", 'in Paris"""']) == [
        None, None, Entry("message", "Write a haiku\nabout rain\nin Paris")]
    assert not buffer.continuing
    assert buffer.feed('"""one line"""') == Entry("message", "one line")


def test_opening_quotes_alone_keep_ollamas_leading_newline():
    buffer = LineBuffer()
    assert feed_all(buffer, ['"""', "a", "/not a command", 'b"""']) == [
        None, None, None, Entry("message", "\na\n/not a command\nb")]


def test_multi_line_system_prompt():
    buffer = LineBuffer()
    assert buffer.start_system('"""You are') is None
    assert buffer.continuing
    assert feed_all(buffer, ["a pirate.", '"""']) == [None, Entry("system", "You are\na pirate.\n")]
    assert buffer.start_system("Be brief.") == "Be brief."
    assert buffer.start_system('"""Be brief."""') == "Be brief."


def test_reset_drops_a_half_typed_block():
    buffer = LineBuffer()
    buffer.feed('"""draft')
    buffer.reset()
    assert buffer.feed("hi") == Entry("message", "hi")


def test_set_parameter_types_values():
    assert parse_set_parameter("temperature", ["0.5"]) == 0.5
    assert parse_set_parameter("num_ctx", ["8192"]) == 8192
    assert parse_set_parameter("use_mmap", ["false"]) is False
    assert parse_set_parameter("stop", ["<|im_end|>", "###"]) == ["<|im_end|>", "###"]


def test_set_parameter_messages():
    opts = RunOptions(model="m")
    assert set_parameter(opts, ["temperature", "0.5"]) == "Set parameter 'temperature' to '0.5'"
    assert set_parameter(opts, ["stop", "a", "b"]) == "Set parameter 'stop' to 'a, b'"
    assert opts.options == {"temperature": 0.5, "stop": ["a", "b"]}
    assert set_parameter(opts, ["temperature", "hot"]) == 'Couldn\'t set parameter: "invalid float value [hot]"'
    assert set_parameter(opts, ["warmth", "1"]) == "Couldn't set parameter: \"unknown parameter 'warmth'\""
    assert opts.options["temperature"] == 0.5


def test_system_prompt_replaces_a_trailing_system_message_and_survives_clear():
    opts = RunOptions(model="m")
    set_system(opts, "one", replace_last=True)
    set_system(opts, "two", replace_last=True)
    assert opts.messages == [{"role": "system", "content": "two"}]
    opts.messages.append({"role": "user", "content": "hi"})
    clear_session(opts)
    assert opts.messages == [{"role": "system", "content": "two"}]


def test_save_request_keeps_the_session():
    opts = RunOptions(model="gemma3:270m", parent_model="", system="Be brief.", options={"temperature": 0.2},
                      loaded_messages=[{"role": "user", "content": "stored"}],
                      messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    assert save_request("mine", opts) == {
        "model": "mine", "from": "gemma3:270m", "system": "Be brief.", "parameters": {"temperature": 0.2},
        "messages": [{"role": "user", "content": "stored"}, {"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "yo"}]}
    opts.parent_model = "llama3.2:latest"
    assert save_request("mine", opts)["from"] == "llama3.2:latest"


def scripted(lines: list[str]):
    pending = list(lines)

    def read_line(prompt: str) -> str:
        if not pending:
            raise EOFError
        return pending.pop(0)

    return read_line


@pytest.fixture
def chat_server(server):
    server.on("POST", "/api/chat", server.ndjson(
        {"message": {"role": "assistant", "content": "Ahoy"}, "done": False},
        {"message": {"role": "assistant", "content": "!"}, "done": False},
        {"message": {"role": "assistant", "content": ""}, "done": True, "eval_count": 2, "eval_duration": 10**9}))
    return server


def test_a_session_keeps_the_conversation_and_settings(chat_server, capsys):
    opts = RunOptions(model="m")
    lines = ["/set parameter temperature 0.5", "/set system You are a pirate.", '"""Say', 'hi"""', "/set verbose",
             "again", "/x", "/bye", "never read"]
    repl = Repl(chat_server.client(), opts, read_line=scripted(lines), history=History(None))

    assert repl.run() == 0

    bodies = [r.json() for r in chat_server.sent("POST", "/api/chat")]
    assert bodies[0] == {"model": "m", "options": {"temperature": 0.5}, "messages": [
        {"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Say\nhi"}]}
    assert bodies[1]["messages"][2:] == [{"role": "assistant", "content": "Ahoy!"},
                                         {"role": "user", "content": "again"}]
    captured = capsys.readouterr()
    assert captured.out == ("Set parameter 'temperature' to '0.5'\n"
                            "Set system message.\n"
                            "Ahoy!\n\n"
                            "Set 'verbose' mode.\n"
                            "Ahoy!\n\n"
                            "Unknown command '/x'. Type /? for help\n")
    assert captured.err == ("eval count:           2 token(s)\n"
                            "eval duration:        1s\n"
                            "eval rate:            2.00 tokens/s\n")


def test_clear_help_and_end_of_input(chat_server, capsys):
    opts = RunOptions(model="m")
    repl = Repl(chat_server.client(), opts, read_line=scripted(["hi", "/clear", "/?"]), history=History(None))

    assert repl.run() == 0

    assert opts.messages == []
    captured = capsys.readouterr()
    assert captured.out == "Ahoy!\n\nCleared session context\n\n"
    assert captured.err.startswith("Available Commands:\n  /set            Set session variables\n")


def test_show_parameters_and_save(server, capsys):
    server.on("POST", "/api/show", httpx.Response(200, json={"parameters": 'stop                           "x"'}))
    server.on("POST", "/api/create", server.ndjson({"status": "success"}))
    opts = RunOptions(model="m", options={"temperature": 0.5, "stop": ["a", "b"]})
    lines = ["/show parameters", "/save copy", "/save"]
    repl = Repl(server.client(), opts, read_line=scripted(lines), history=History(None))

    assert repl.run() == 0

    assert capsys.readouterr().out == ("Model defined parameters:\n"
                                       '  stop                           "x"\n'
                                       "\n"
                                       "User defined parameters:\n"
                                       "  temperature                    0.5\n"
                                       "  stop                           [a b]\n"
                                       "\n"
                                       "Created new model 'copy'\n"
                                       "Usage:\n  /save <modelname>\n"
                                       "\n")
    assert server.sent("POST", "/api/show")[0].json() == {"model": "m", "options": {"temperature": 0.5,
                                                                                    "stop": ["a", "b"]}}
    assert server.sent("POST", "/api/create")[0].json() == {
        "model": "copy", "from": "m", "parameters": {"temperature": 0.5, "stop": ["a", "b"]}}


def test_load_of_an_unknown_model_keeps_the_current_one(server, capsys):
    server.on("POST", "/api/show", server.error(404, "model 'nope:latest' not found"))
    opts = RunOptions(model="m", messages=[{"role": "user", "content": "hi"}])
    repl = Repl(server.client(), opts, read_line=scripted(["/load nope"]), history=History(None))

    assert repl.run() == 0

    assert capsys.readouterr().out == "Loading model 'nope'\nCouldn't find model 'nope'\n\n"
    assert repl.opts is opts


def test_load_switches_model_and_preloads_it(server, capsys):
    server.on("POST", "/api/show", httpx.Response(200, json={
        "capabilities": ["completion", "thinking"], "details": {"parent_model": "qwen3:0.6b"},
        "messages": [{"role": "user", "content": "stored"}]}))
    server.on("POST", "/api/generate", server.ndjson({"response": "", "done": True, "done_reason": "load"}))
    opts = RunOptions(model="m", messages=[{"role": "user", "content": "hi"}], options={"seed": 1})
    repl = Repl(server.client(), opts, read_line=scripted(["/load other"]), history=History(None))

    assert repl.run() == 0

    assert capsys.readouterr().out == "Loading model 'other'\n\n"
    assert server.sent("POST", "/api/generate")[0].json() == {"model": "other", "think": True}
    assert (repl.opts.model, repl.opts.messages, repl.opts.options) == ("other", [], {"seed": 1})
    assert save_request("x", repl.opts)["from"] == "qwen3:0.6b"
    assert save_request("x", repl.opts)["messages"] == [{"role": "user", "content": "stored"}]


def test_ctrl_c_at_the_prompt_drops_the_block_and_goes_on(chat_server, capsys):
    answers = iter(['"""half a', KeyboardInterrupt, "hi"])

    def read_line(prompt: str) -> str:
        answer = next(answers, EOFError)
        if isinstance(answer, type) and issubclass(answer, BaseException):
            raise answer
        return answer

    repl = Repl(chat_server.client(), RunOptions(model="m"), read_line=read_line, history=History(None))

    assert repl.run() == 0

    assert capsys.readouterr().out == "\nUse Ctrl + d or /bye to exit.\nAhoy!\n\n\n"
    assert chat_server.sent("POST", "/api/chat")[0].json()["messages"] == [{"role": "user", "content": "hi"}]
