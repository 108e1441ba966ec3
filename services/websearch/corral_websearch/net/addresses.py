"""Which IP addresses web_fetch may connect to, and how every spelling of an IP literal is read.

Python's ``is_global`` had wrong ranges before 3.12.4 (CVE-2024-4032), so the deny lists here are
explicit (after smokescreen's classifyAddr and ssrf_filter); ``is_global`` is only a second opinion.
Addresses that embed an IPv4 address (mapped, NAT64, 6to4, Teredo) are judged by what they embed.
"""

from __future__ import annotations

import ipaddress
import re

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
    "169.254.170.2",  # AWS ECS task metadata
    "100.100.100.200",  # Alibaba Cloud
    "fd00:ec2::254",  # AWS IPv6 metadata
))

_V4_DENY = tuple((ipaddress.ip_network(net), why) for net, why in (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol assignment address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
))

_V6_DENY = tuple((ipaddress.ip_network(net), why) for net, why in (
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "an IPv4-compatible address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/23", "an IETF protocol assignment address"),
    ("2001:db8::/32", "a documentation address"),
    ("fc00::/7", "a unique-local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
))
_V6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_TEREDO = ipaddress.ip_network("2001::/32")
_SIXTOFOUR = ipaddress.ip_network("2002::/16")
_V4_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a URL host spells, in any form a resolver accepts: ``2130706433``, ``0x7f000001``,
    ``0177.0.0.1``, ``127.1``, ``::ffff:127.0.0.1``; None for a name."""
    host = host.strip("[]")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
    return _parse_loose_ipv4(host.rstrip("."))


def _parse_loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """inet_aton's (and the WHATWG URL parser's) reading: 1 to 4 parts, decimal, octal or hex."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_V4_PART.match(p) for p in parts):
        return None
    values = [int(p, 16) if p[:2].lower() == "0x" and len(p) > 2 else
              0 if p.lower() == "0x" else int(p, 8) if p.startswith("0") and len(p) > 1 else int(p)
              for p in parts]
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(parts)):
        return None
    number = 0
    for value in head:
        number = number * 256 + value
    number = number * 256 ** (5 - len(parts)) + last
    return ipaddress.IPv4Address(number)


def looks_numeric(host: str) -> bool:
    """A host whose last label is a number is an IPv4 literal or invalid, never a DNS name (WHATWG)."""
    last = host.rstrip(".").rsplit(".", 1)[-1]
    return bool(last) and bool(_V4_PART.match(last))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, and how it carries it."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip in _SIXTOFOUR and ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip in _TEREDO and ip.teredo is not None:
        return ip.teredo[1], "Teredo"
    return None


def non_public_reason(ip: IPAddress) -> str | None:
    """Why an address is not a public unicast address, or None when it is one."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = embedded_ipv4(ip)
        if inner is not None:
            why = non_public_reason(inner[0])
            return f"the {inner[1]} form of {inner[0]}, {why}" if why else None
        for network, why in _V6_DENY:
            if ip in network:
                return why
        if ip not in _V6_GLOBAL_UNICAST:
            return "a reserved address"
    else:
        for network, why in _V4_DENY:
            if ip in network:
                return why
    if not ip.is_global:
        return "not a globally routable address"
    return None
