"""Host parsing, headers and error translation of the HTTP client."""

from __future__ import annotations

import socket

import pytest
from corral_cli.client import Client, ConnectionFailed, ServerError, default_headers, parse_host


@pytest.mark.parametrize(("value", "expected"), [
    (None, "http://127.0.0.1:11434"),
    ("", "http://127.0.0.1:11434"),
    ("1.2.3.4", "http://1.2.3.4:11434"),
    (":56789", "http://127.0.0.1:56789"),
    ("1.2.3.4:56789", "http://1.2.3.4:56789"),
    ("http://1.2.3.4", "http://1.2.3.4:80"),
    ("https://1.2.3.4", "https://1.2.3.4:443"),
    ("https://1.2.3.4:56789", "https://1.2.3.4:56789"),
    ("example.com", "http://example.com:11434"),
    ("example.com:56789", "http://example.com:56789"),
    ("http://example.com", "http://example.com:80"),
    ("https://example.com", "https://example.com:443"),
    ("example.com/", "http://example.com:11434"),
    ("example.com/path", "http://example.com:11434/path"),
    ("https://example.com:56789/path/", "https://example.com:56789/path"),
    ("[0001:002:003:0004::1]", "http://[0001:002:003:0004::1]:11434"),
    ("[0001:002:003:0004::1]:56789", "http://[0001:002:003:0004::1]:56789"),
    ("https://[0001:002:003:0004::1]", "https://[0001:002:003:0004::1]:443"),
    ("[0001:002:003:0004::1]:56789/path/", "http://[0001:002:003:0004::1]:56789/path"),
    ('"0.0.0.0:8080"', "http://0.0.0.0:8080"),
])
def test_parse_host_like_ollama_python(value, expected):
    assert parse_host(value) == expected


def test_api_key_becomes_bearer_token():
    assert default_headers({"OLLAMA_API_KEY": "sk-123"})["Authorization"] == "Bearer sk-123"
    assert "Authorization" not in default_headers({})


def test_from_env_uses_ollama_host():
    client = Client.from_env({"OLLAMA_HOST": ":56789"})
    assert client.base_url == "http://127.0.0.1:56789"


def test_api_key_is_sent(server):
    server.on("GET", "/api/tags", server.ndjson({"models": []}))
    client = Client(server.client().base_url, default_headers({"OLLAMA_API_KEY": "k"}),
                    transport=server.client()._http._transport)
    client.request("GET", "/api/tags")
    assert server.requests[-1].headers["authorization"] == "Bearer k"


def test_refused_connection_says_to_start_the_server():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionFailed) as caught:
        Client(f"http://127.0.0.1:{port}").heartbeat()
    assert caught.value.message == "could not connect to corral server, run 'corral serve' to start it"


def test_error_body_becomes_server_error(server):
    server.on("POST", "/api/show", server.error(404, "model 'x' not found"))
    with pytest.raises(ServerError) as caught:
        server.client().request("POST", "/api/show", {"model": "x"})
    assert (caught.value.status, caught.value.message) == (404, "model 'x' not found")


def test_plain_text_error_body(server):
    with pytest.raises(ServerError) as caught:
        server.client().request("GET", "/nowhere")
    assert caught.value.message == "404 page not found"


def test_error_line_in_a_stream_raises_after_earlier_chunks(server):
    server.on("POST", "/api/create", server.ndjson({"status": "parsing GGUF"}, {"error": "unknown type"}))
    chunks = server.client().stream("/api/create", {"model": "m"})
    assert next(chunks) == {"status": "parsing GGUF"}
    with pytest.raises(ServerError, match="unknown type"):
        next(chunks)
