"""Web search for people and agents: ``corral index add``, ``corral mcp``, and tool functions for chat.

``web_search`` and ``web_fetch`` below call the corral server at OLLAMA_HOST and double as chat
tool definitions: pass the functions themselves as ``tools=[web_search, web_fetch]`` with
ollama-python, or send ``WEB_TOOLS`` in a raw ``/api/chat`` request. ``corral mcp`` serves the same
two tools to MCP clients (Cline, Codex, Goose) over stdio: newline-delimited JSON-RPC 2.0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import IO, Any

from corral_cli.client import Client, ServerError
from corral_cli.errors import CliError
from corral_cli.help_texts import CLIENT_ENV

SEARCH_SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "description": "The search query"},
        "max_results": {"type": "integer", "description": "How many results to return (default 5, at most 10)",
                        "minimum": 1, "maximum": 10},
    },
    "required": ["query"],
}
FETCH_SCHEMA = {
    "type": "object",
    "properties": {"url": {"type": "string", "description": "The URL of the page to fetch"}},
    "required": ["url"],
}
SEARCH_DESCRIPTION = ("Search the web. Returns up to max_results results, each with a title, a URL and the "
                      "passage of the page that matches the query.")
FETCH_DESCRIPTION = "Fetch one web page by URL. Returns its title, its main content as Markdown and its links."
WEB_TOOLS = [
    {"type": "function", "function": {"name": "web_search", "description": SEARCH_DESCRIPTION,
                                      "parameters": SEARCH_SCHEMA}},
    {"type": "function", "function": {"name": "web_fetch", "description": FETCH_DESCRIPTION,
                                      "parameters": FETCH_SCHEMA}},
]


def web_search(query: str, max_results: int = 5) -> dict[str, Any]:
    """Search the web and return the results, each with a title, a URL and the matching passage.

    Args:
      query: The search query
      max_results: How many results to return (default 5, at most 10)
    """
    return _post("/api/web_search", {"query": query, "max_results": max_results})


def web_fetch(url: str) -> dict[str, Any]:
    """Fetch one web page and return its title, its main content as Markdown and its links.

    Args:
      url: The URL of the page to fetch
    """
    return _post("/api/web_fetch", {"url": url})


def _post(path: str, body: dict[str, Any]) -> dict[str, Any]:
    client = Client.from_env()
    try:
        return client.request("POST", path, body) or {}
    finally:
        client.close()


# --- corral index ---------------------------------------------------------------------------------

def index_add(client: Client, args: argparse.Namespace) -> int:
    """``corral index add URL [--crawl]``: add a page (or a site) to the built-in search index."""
    body = {"url": args.url, "crawl": args.crawl, "max_pages": args.max_pages, "max_depth": args.max_depth}
    summary: dict[str, Any] = {}
    for event in client.stream("/api/index", body):
        status = event.get("status")
        if status == "indexed":
            title = event.get("title") or ""
            print(f"indexed {event.get('url')}" + (f"  ({title})" if title else ""))
        elif status == "skipped":
            print(f"skipped {event.get('url')}: {event.get('reason')}")
        elif status == "success":
            summary = event
    indexed, skipped = summary.get("indexed", 0), summary.get("skipped", 0)
    print(f"{indexed} page{'s' if indexed != 1 else ''} indexed" + (f", {skipped} skipped" if skipped else ""))
    return 0


# --- corral mcp -----------------------------------------------------------------------------------

PROTOCOL_VERSIONS = ("2025-06-18", "2025-03-26", "2024-11-05")
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602
MCP_TOOLS = [
    {"name": "web_search", "title": "Web search", "description": SEARCH_DESCRIPTION, "inputSchema": SEARCH_SCHEMA},
    {"name": "web_fetch", "title": "Web fetch", "description": FETCH_DESCRIPTION, "inputSchema": FETCH_SCHEMA},
]


class RpcError(Exception):
    """A JSON-RPC error answer."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class McpServer:
    """The MCP tools server: initialize, ping, tools/list and tools/call over a corral Client."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "initialize": self._initialize, "ping": lambda _p: {}, "tools/list": lambda _p: {"tools": MCP_TOOLS},
            "tools/call": self._call_tool,
        }

    def handle(self, message: Any) -> dict[str, Any] | None:
        """The answer to one JSON-RPC message (None for a notification)."""
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or "method" not in message:
            if isinstance(message, dict) and "method" not in message and ("result" in message or "error" in message):
                return None  # a response to a request we never send
            return _error(message.get("id") if isinstance(message, dict) else None, INVALID_REQUEST,
                          "invalid JSON-RPC 2.0 request")
        is_notification = "id" not in message
        try:
            method = self.methods.get(message["method"])
            if method is None:
                raise RpcError(METHOD_NOT_FOUND, f"method not found: {message['method']}")
            params = message.get("params") or {}
            if not isinstance(params, dict):
                raise RpcError(INVALID_PARAMS, "params must be an object")
            result = method(params)
        except RpcError as exc:
            return None if is_notification else _error(message["id"], exc.code, exc.message)
        return None if is_notification else {"jsonrpc": "2.0", "id": message["id"], "result": result}

    def _initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        return {
            "protocolVersion": asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0],
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "corral-web", "title": "corral web search", "version": _version()},
            "instructions": "web_search finds pages; web_fetch reads one page as Markdown with its links.",
        }

    def _call_tool(self, params: dict[str, Any]) -> dict[str, Any]:
        name, arguments = params.get("name"), params.get("arguments") or {}
        if name not in ("web_search", "web_fetch"):
            raise RpcError(INVALID_PARAMS, f"unknown tool: {name}")
        if not isinstance(arguments, dict):
            return _tool_error("arguments must be an object")
        try:
            if name == "web_search":
                body = {"query": str(arguments.get("query", "")), "max_results": int(arguments.get("max_results", 5))}
                result = self.client.request("POST", "/api/web_search", body) or {}
            else:
                result = self.client.request("POST", "/api/web_fetch", {"url": str(arguments.get("url", ""))}) or {}
        except (ServerError, CliError) as exc:
            return _tool_error(exc.message)
        except (TypeError, ValueError) as exc:
            return _tool_error(f"invalid arguments: {exc}")
        return {"content": [{"type": "text", "text": json.dumps(result, ensure_ascii=False, indent=2)}],
                "structuredContent": result, "isError": False}

    def serve(self, stdin: IO[str], stdout: IO[str]) -> int:
        """Answer messages line by line until stdin closes."""
        for line in stdin:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError as exc:
                answer: Any = _error(None, PARSE_ERROR, f"parse error: {exc}")
            else:
                if isinstance(message, list):  # a batch (protocol 2025-03-26)
                    answer = [a for a in (self.handle(m) for m in message) if a is not None] or None
                else:
                    answer = self.handle(message)
            if answer is not None:
                stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
                stdout.flush()
        return 0


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _tool_error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


def _version() -> str:
    from corral_cli.client import client_version

    return client_version()


def run_mcp(client: Client, _args: argparse.Namespace) -> int:
    """``corral mcp``: serve web_search and web_fetch to an MCP client on stdin/stdout."""
    return McpServer(client).serve(sys.stdin, sys.stdout)


# --- registration ---------------------------------------------------------------------------------

def add_web_commands(sub: argparse._SubParsersAction, command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register ``corral index add`` and ``corral mcp`` with main's command helper."""
    index = command(sub, "index", "Add web pages to the built-in search index", None, CLIENT_ENV)
    actions = index.add_subparsers(title="Available Commands", metavar="COMMAND")
    add = actions.add_parser("add", help="Add a page, or crawl a site, into the index",
                             description="Fetch a page (or crawl its site, obeying robots.txt) into the index")
    add.add_argument("url", metavar="URL")
    add.add_argument("--crawl", action="store_true", help="Follow links and sitemaps on the same site")
    add.add_argument("--max-pages", type=int, default=20, help="Pages to index at most when crawling (default 20)")
    add.add_argument("--max-depth", type=int, default=2, help="Link hops from URL when crawling (default 2)")
    add.set_defaults(handler=index_add)
    index.set_defaults(handler=lambda _client, _args: _usage(index))
    command(sub, "mcp", "Serve web_search and web_fetch to MCP clients over stdio", run_mcp, CLIENT_ENV)


def _usage(parser: argparse.ArgumentParser) -> int:
    sys.stdout.write(parser.format_help())
    return 0
