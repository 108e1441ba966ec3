"""Which registry a model name points at, and whether corral may contact it (OLL-19).

A name with a host (``localhost:5000/team/assistant``) goes to that host; without one it goes to
registry.ollama.ai. ``insecure`` switches to plain HTTP. Hosts that resolve to private,
link-local (cloud metadata), CGNAT, multicast or reserved addresses are refused before any
connection unless listed in CORRAL_REGISTRY_ALLOW; loopback is allowed (a registry on this
machine is the main private-registry setup) unless CORRAL_REGISTRY_ALLOW_LOOPBACK=0.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import httpx

from corral_common.errors import BadGateway, BadRequest, Forbidden
from corral_common.names import ModelName, parse_name
from corral_common.net import ip_or_none

NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Remote:
    """A model on a registry: the local name it is stored under and how to reach it."""

    name: ModelName
    scheme: str

    @property
    def base_url(self) -> str:
        """``<scheme>://<host[:port]>``."""
        return f"{self.scheme}://{self.name.host}"

    def url(self, path: str) -> str:
        """An absolute URL on the registry."""
        return self.base_url + path

    def manifest_url(self, reference: str | None = None) -> str:
        """``/v2/<ns>/<model>/manifests/<tag>``."""
        return self.url(f"/v2/{self.name.repository()}/manifests/{reference or self.name.tag}")

    def blob_url(self, digest: object) -> str:
        """``/v2/<ns>/<model>/blobs/<digest>``."""
        return self.url(f"/v2/{self.name.repository()}/blobs/{digest}")


def resolve_remote(text: str, insecure: bool) -> Remote:
    """Parse a pull/push name; 400 ``invalid model name`` or ``insecure protocol http``."""
    name = parse_name(text)
    scheme = text.split("://", 1)[0].lower() if "://" in text else "https"
    if scheme not in ("http", "https"):
        raise BadRequest("invalid model name")
    if scheme == "http" and not insecure:
        raise BadRequest("insecure protocol http")
    return Remote(name, "http" if insecure else scheme)


def _unwrap(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address hidden in IPv4-mapped, 6to4, Teredo and NAT64 forms."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return address.ipv4_mapped
        if address.sixtofour:
            return address.sixtofour
        if address.teredo:
            return address.teredo[1]
        if address in NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@dataclass(frozen=True)
class HostPolicy:
    """Which registry hosts may be contacted."""

    allow: tuple[str, ...] = ()
    allow_loopback: bool = True

    def _listed(self, host: str, port: int | None) -> bool:
        host = host.lower().strip("[]")
        return "*" in self.allow or host in self.allow or (port is not None and f"{host}:{port}" in self.allow)

    def check(self, url: str, resolve: bool = True) -> None:
        """403 unless every address the URL's host resolves to is acceptable (checked before connecting).

        Without ``resolve`` (a request through a proxy) only an address written in the URL is checked: the proxy
        resolves names, and what they may reach is its policy."""
        parsed = httpx.URL(url)
        host, port = parsed.host, parsed.port
        if parsed.scheme not in ("http", "https") or not host:
            raise Forbidden(f"registry URL {url!r} is not allowed")
        if self._listed(host, port) or (not resolve and ip_or_none(host.strip("[]")) is None):
            return
        for address in self._addresses(host, port or (443 if parsed.scheme == "https" else 80)):
            if address.is_loopback and self.allow_loopback:
                continue
            if address.is_loopback or not address.is_global or address.is_multicast:
                raise Forbidden(f"registry host {host} resolves to a non-public address {address}; "
                                "add it to CORRAL_REGISTRY_ALLOW to use it")

    @staticmethod
    def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise BadGateway(f"cannot resolve registry host {host}: {exc} (where only a proxy can resolve it, "
                             "set HTTPS_PROXY)") from None
        return [_unwrap(ipaddress.ip_address(info[4][0].split("%", 1)[0])) for info in infos]
