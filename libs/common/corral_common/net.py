"""Whether a host, a peer address or a base URL means this machine (one rule, three kinds of input), and which
proxy the environment sends a URL through."""

from __future__ import annotations

import ipaddress
import urllib.parse
import urllib.request
from collections.abc import Mapping

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def ip_or_none(text: str) -> IPAddress | None:
    """The IP address ``text`` spells, or None for a name or anything else."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_loopback_host(host: str, unspecified: bool = False) -> bool:
    """``localhost`` or a loopback IP; with ``unspecified`` also ``0.0.0.0``/``::``, which clients reach locally."""
    if host == "localhost":
        return True
    ip = ip_or_none(host)
    return ip is not None and (ip.is_loopback or (unspecified and ip.is_unspecified))


def is_loopback_address(address: str, non_ip: bool = False) -> bool:
    """Whether a peer address is a loopback IP; ``non_ip`` answers for a peer that is no IP (a Unix socket)."""
    ip = ip_or_none(address)
    return non_ip if ip is None else ip.is_loopback


def is_loopback_url(base_url: str) -> bool:
    """Whether a base URL points at this machine: ``localhost``, a loopback or an unspecified address."""
    return is_loopback_host(urllib.parse.urlsplit(base_url).hostname or "", unspecified=True)


def env_proxies() -> dict[str, str]:
    """HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY (either case) as ``{scheme or "no": value}``, read now."""
    return urllib.request.getproxies_environment()


def proxy_for(url: str, proxies: Mapping[str, str]) -> str | None:
    """The proxy a request to ``url`` goes through (``env_proxies``' table), or None for a direct connection:
    loopback always direct, as Go's ProxyFromEnvironment has it, and hosts NO_PROXY matches."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    if not proxy or is_loopback_host(host, unspecified=True):
        return None
    if urllib.request.proxy_bypass_environment(parsed.netloc, dict(proxies)):
        return None
    return proxy
