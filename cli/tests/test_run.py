"""``corral run`` without a terminal: the request sent and what is printed."""

from __future__ import annotations

import io

import httpx
import pytest
from corral_cli.display import WordWrapper, stats_summary
from corral_cli.errors import CliError
from corral_cli.main import main
from corral_cli.session import parse_keep_alive, parse_think

FINAL = {"model": "m", "created_at": "2023-08-04T19:22:45.499127Z", "response": "", "done": True,
         "done_reason": "stop", "total_duration": 10706818083, "load_duration": 6338219291,
         "prompt_eval_count": 26, "prompt_eval_duration": 130079000, "eval_count": 259,
         "eval_duration": 4232710000}
STATS = ("total duration:       10.706818083s\n"
         "load duration:        6.338219291s\n"
         "prompt eval count:    26 token(s)\n"
         "prompt eval duration: 130.079ms\n"
         "prompt eval rate:     199.88 tokens/s\n"
         "eval count:           259 token(s)\n"
         "eval duration:        4.23271s\n"
         "eval rate:            61.19 tokens/s\n")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_verbose_stats_block_from_a_final_chunk():
    assert stats_summary(FINAL) == STATS


def test_stats_leave_out_zero_fields():
    assert stats_summary({"done": True, "eval_count": 3}) == "eval count:           3 token(s)\n"


@pytest.fixture
def model(server):
    server.on("POST", "/api/show", httpx.Response(200, json={"details": {}, "capabilities": ["completion"]}))
    server.on("POST", "/api/generate", server.ndjson(
        {"model": "m", "response": "Hello", "done": False}, {"model": "m", "response": " world!", "done": False},
        FINAL))
    return server


def test_one_shot_prompt_streams_the_answer(model, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal())

    assert main(["run", "m", "Say", "hello", "--verbose"], client=model.client()) == 0

    captured = capsys.readouterr()
    assert captured.out == "Hello world!\n\n"
    assert captured.err == STATS
    assert model.sent("POST", "/api/generate")[0].json() == {"model": "m", "prompt": "Say hello"}


def test_piped_stdin_comes_before_the_prompt(model, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("def f(): pass\n"))

    assert main(["run", "m", "explain", "--format", "json", "--keepalive", "10m", "--think"],
                client=model.client()) == 0

    assert model.sent("POST", "/api/generate")[0].json() == {
        "model": "m", "prompt": "def f(): pass\n explain", "format": "json", "keep_alive": "10m0s", "think": True}
    assert capsys.readouterr().err == ""


@pytest.fixture
def thinker(server, monkeypatch):
    """A thinking model that thinks "Adding." and answers "4" to a piped question."""
    monkeypatch.setattr("sys.stdin", io.StringIO("2+2?"))
    server.on("POST", "/api/show", httpx.Response(200, json={"capabilities": ["completion", "thinking"]}))
    server.on("POST", "/api/generate", server.ndjson(
        {"response": "", "thinking": "Adding.", "done": False}, {"response": "4", "done": False}, FINAL))
    return server


def test_thinking_models_think_by_default_and_show_it(thinker, capsys):
    assert main(["run", "q"], client=thinker.client()) == 0

    assert thinker.sent("POST", "/api/generate")[0].json()["think"] is True
    assert capsys.readouterr().out == "Thinking...\nAdding.\n...done thinking.\n\n4\n\n"


def test_hidden_thinking(thinker, capsys):
    assert main(["run", "q", "--hidethinking", "--think=high"], client=thinker.client()) == 0

    assert thinker.sent("POST", "/api/generate")[0].json()["think"] == "high"
    assert capsys.readouterr().out == "4\n\n"


def test_missing_model(server, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal())
    server.on("POST", "/api/show", server.error(404, "model 'nope:latest' not found"))

    assert main(["run", "nope", "hi"], client=server.client()) == 1

    assert capsys.readouterr().err == "Error: model 'nope' not found\n"
    assert server.sent("POST", "/api/generate") == []


def test_error_in_the_stream(server, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal())
    server.on("POST", "/api/show", httpx.Response(200, json={"capabilities": ["completion"]}))
    server.on("POST", "/api/generate", server.ndjson({"response": "Hi", "done": False}, {"error": "runner died"}))

    assert main(["run", "m", "hi"], client=server.client()) == 1

    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("Hi", "Error: runner died\n")


def test_embedding_models_print_the_vector(server, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal())
    server.on("POST", "/api/show", httpx.Response(200, json={"capabilities": ["embedding"]}))
    server.on("POST", "/api/embed", httpx.Response(200, json={"embeddings": [[0.25, -0.5]]}))

    assert main(["run", "e", "some text", "--dimensions", "2"], client=server.client()) == 0

    assert capsys.readouterr().out == "[0.25,-0.5]\n"
    assert server.sent("POST", "/api/embed")[0].json() == {"model": "e", "input": "some text", "dimensions": 2}


def test_keep_alive_and_think_values():
    assert parse_keep_alive("5m") == "5m0s"
    assert parse_keep_alive("-1s") == -1
    assert parse_keep_alive("0") == "0s"
    with pytest.raises(CliError, match='time: missing unit in duration "5"'):
        parse_keep_alive("5")
    assert [parse_think(v) for v in ("", "true", "false", "low")] == [True, True, False, "low"]
    with pytest.raises(CliError, match='invalid value for --think: "maybe"'):
        parse_think("maybe")


def test_word_wrap_moves_the_word_that_crosses_the_margin():
    wrapper = WordWrapper(width=20)
    text = wrapper.feed("hello there general kenobi")
    # 15 columns fit (width - 5): "gen" is erased and "general" goes on the next line.
    assert text == "hello there gen\x1b[3D\x1b[K\ngeneral kenobi"
    assert WordWrapper(width=20, enabled=False).feed("hello there general kenobi") == "hello there general kenobi"
