"""Name resolution as a seam: the system resolver in production, a stub in tests (security.md §4)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Protocol

from corral_common.errors import BadGateway

from corral_websearch.net.addresses import IPAddress


class Resolver(Protocol):
    """Turns a host name into every address it has (A and AAAA)."""

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """All addresses of ``host``; raises BadGateway when there are none."""
        ...


class SystemResolver:
    """getaddrinfo in the event loop's executor, with a time limit."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise BadGateway(f"could not resolve host {host}: {exc or 'timed out'}") from None
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise BadGateway(f"could not resolve host {host}: no addresses")
        return addresses
