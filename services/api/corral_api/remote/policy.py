"""Which remote hosts this corral talks to, and to which of them it shows its identity.

A remote model's host must be the configured cloud (CORRAL_CLOUD_URL) or listed in CORRAL_REMOTE_HOSTS;
a host that resolves to a loopback, private, link-local or otherwise non-public address is refused
unless CORRAL_REMOTE_ALLOW_PRIVATE=1. Credentials (the signin signature, OLLAMA_API_KEY) go only to
the cloud itself: a signature is a short-lived bearer for its path, so no other host may see one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from corral_common.errors import BadGateway, BadRequest, Forbidden
from corral_common.net import ip_or_none

from corral_api.remote.settings import RemoteSettings

NOT_RUNNABLE = "this server cannot run this remote model"


def _origin(url: str) -> tuple[str, int]:
    """``(host, port)`` of a base URL, lower-cased."""
    parsed = httpx.URL(url)
    return (parsed.host or "").lower(), parsed.port or (443 if parsed.scheme == "https" else 80)


@dataclass(frozen=True)
class RemotePolicy:
    """Allow-list and address checks for remote hosts."""

    settings: RemoteSettings

    def is_cloud(self, url: str) -> bool:
        """Whether ``url`` is on the configured cloud (the one host that sees credentials)."""
        return bool(self.settings.cloud_url) and _origin(url) == _origin(self.settings.cloud_url)

    def listed(self, url: str) -> bool:
        """Whether ``url``'s host is the cloud or an entry of CORRAL_REMOTE_HOSTS (``host`` or ``host:port``)."""
        host, port = _origin(url)
        return self.is_cloud(url) or host in self.settings.hosts or f"{host}:{port}" in self.settings.hosts

    async def check(self, url: str) -> None:
        """400 (Ollama's text) for a host not allowed; 403 for one that resolves to a non-public address."""
        if httpx.URL(url).scheme not in ("http", "https") or not self.listed(url):
            host, port = _origin(url)
            raise BadRequest(f"{NOT_RUNNABLE}: its host {host}:{port} is not CORRAL_CLOUD_URL nor listed in "
                             "CORRAL_REMOTE_HOSTS")
        if self.settings.allow_private:
            return
        host, port = _origin(url)
        for address in await _addresses(host, port):
            if address.is_loopback or not address.is_global or address.is_multicast:
                raise Forbidden(f"{NOT_RUNNABLE}: its host {host} resolves to the non-public address {address}; "
                                "set CORRAL_REMOTE_ALLOW_PRIVATE=1 to allow it")


async def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address ``host`` resolves to (an IP literal is itself)."""
    literal = ip_or_none(host.strip("[]"))
    if literal is not None:
        return [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise BadGateway(f"cannot resolve remote host {host}: {exc}") from None
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
