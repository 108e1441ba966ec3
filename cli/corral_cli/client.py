"""A small HTTP client for the corral (Ollama-compatible) API, configured like ollama-python."""

from __future__ import annotations

import ipaddress
import json
import os
import platform
import urllib.parse
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from corral_common.net import is_loopback_url

from corral_cli.errors import CliError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11434
NOT_RUNNING = "could not connect to corral server, run 'corral serve' to start it"


class ServerError(CliError):
    """The server answered with an error status or an ``{"error": ...}`` stream line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConnectionFailed(CliError):
    """Nothing is listening at OLLAMA_HOST."""

    def __init__(self) -> None:
        super().__init__(NOT_RUNNING)


def parse_host(value: str | None) -> str:
    """OLLAMA_HOST as ollama-python's ``_parse_host`` reads it, e.g. ``:56789`` → ``http://127.0.0.1:56789``."""
    host, port = (value or "").strip().strip("\"'").strip(), DEFAULT_PORT
    scheme, _, hostport = host.partition("://")
    if not hostport:
        scheme, hostport = "http", host
    elif scheme in ("http", "https"):
        port = 80 if scheme == "http" else 443
    split = urllib.parse.urlsplit(f"{scheme}://{hostport}")
    host = split.hostname or DEFAULT_HOST
    try:
        port = split.port or port
    except ValueError:
        pass  # an invalid port keeps the default, as ollama-python's urlsplit would fail anyway
    if _is_ipv6(host):
        host = f"[{host}]"
    path = split.path.strip("/")
    return f"{scheme}://{host}:{port}/{path}" if path else f"{scheme}://{host}:{port}"


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def client_version() -> str:
    """The installed corral-cli version, or ``0.0.0`` when running from a source tree."""
    from importlib import metadata

    try:
        return metadata.version("corral-cli")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def default_headers(environ: Mapping[str, str]) -> dict[str, str]:
    """Headers sent on every request; ``OLLAMA_API_KEY`` becomes a bearer token."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": f"corral-cli/{client_version()} ({platform.machine()} {platform.system().lower()}) "
        f"Python/{platform.python_version()}",
    }
    key = environ.get("OLLAMA_API_KEY", "").strip()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def _error_message(response: httpx.Response) -> str:
    """The ``error`` field of a JSON error body, else the body text, else the status line."""
    text = response.text.strip()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return text or f"{response.status_code} {response.reason_phrase}".strip()


@contextmanager
def _translated() -> Iterator[None]:
    """Turn transport failures into CLI errors the user can act on."""
    try:
        yield
    except httpx.ConnectError as error:
        raise ConnectionFailed() from error
    except httpx.HTTPError as error:
        raise CliError(str(error) or type(error).__name__) from error


class Client:
    """JSON and NDJSON calls against one corral server."""

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url, headers=dict(headers or {}), transport=transport, follow_redirects=True,
            timeout=httpx.Timeout(None, connect=30.0),
            # Go's client never proxies loopback; httpx would unless NO_PROXY says so.
            trust_env=not is_loopback_url(base_url),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Client:
        """A client for ``OLLAMA_HOST`` with the ``OLLAMA_API_KEY`` header when set."""
        environ = os.environ if environ is None else environ
        return cls(parse_host(environ.get("OLLAMA_HOST")), default_headers(environ))

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def heartbeat(self) -> None:
        """``HEAD /``: raises ConnectionFailed when no server answers."""
        self._send("HEAD", "/")

    def version(self) -> str:
        """The server's ``/api/version``."""
        return str(self.request("GET", "/api/version").get("version", ""))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON request; returns the decoded body, or None when it is empty."""
        response = self._send(method, path, body)
        return response.json() if response.content.strip() else None

    def stream(self, path: str, body: Any) -> Generator[dict[str, Any], None, None]:
        """POST and yield each NDJSON object; an ``error`` line raises ServerError."""
        with _translated(), self._http.stream("POST", path, json=body,
                                              headers={"Accept": "application/x-ndjson"}) as response:
            if response.is_error:
                response.read()
                raise ServerError(response.status_code, _error_message(response))
            for line in response.iter_lines():
                if not line.strip():
                    continue
                chunk = json.loads(line)
                if isinstance(chunk, dict) and "error" in chunk:
                    raise ServerError(response.status_code, str(chunk["error"]))
                yield chunk

    def blob_exists(self, digest: str) -> bool:
        """``HEAD /api/blobs/<digest>``: True when the server already has the blob."""
        with _translated():
            response = self._http.head(f"/api/blobs/{digest}")
        if response.status_code == 404:
            return False
        if response.is_error:
            raise ServerError(response.status_code, _error_message(response))
        return True

    def upload_blob(self, digest: str, chunks: Iterable[bytes], size: int) -> None:
        """``POST /api/blobs/<digest>`` streaming ``size`` bytes of the file."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        with _translated():
            response = self._http.post(f"/api/blobs/{digest}", content=chunks, headers=headers)
        if response.is_error:
            raise ServerError(response.status_code, _error_message(response))

    def _send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        with _translated():
            response = self._http.request(method, path, json=body)
        if response.is_error:
            raise ServerError(response.status_code, _error_message(response))
        return response
