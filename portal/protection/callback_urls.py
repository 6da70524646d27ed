"""Callback URLs point only at the public internet (SPEC §10).

A provider's callback URL is checked when it is saved (console, CLI) and again each time a
webhook is sent: its host must resolve only to global addresses — never loopback, private,
link-local, shared, multicast, reserved, unspecified or a cloud metadata service, nor an IPv6
address carrying one of those IPv4 addresses. The sender then connects to the very address it
checked (webhooks.py), so a name that resolves elsewhere a moment later (DNS rebinding) cannot
reach an internal host. A name that does not resolve yet is saved; sending refuses it until it
does.

`CALLBACK_ALLOW_PRIVATE=true` (development and tests; refused in production) lets loopback and
private addresses through, never a metadata service. Production takes https only.
"""

import enum
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The instance metadata services of AWS (IPv4, IPv6) and Alibaba Cloud, where credentials live.
METADATA = {
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
}
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refusal(enum.StrEnum):
    """Why a callback URL is refused, in the words the event log shows."""

    INVALID = "refused: invalid URL"
    NOT_HTTPS = "refused: https required"
    PRIVATE = "refused: private address"
    UNRESOLVED = "name not resolved"


class Refused(Exception):
    def __init__(self, refusal: Refusal):
        super().__init__(refusal.value)
        self.refusal = refusal


@dataclass(frozen=True)
class Target:
    """Where to send: `address` is the one checked; `host` names it in Host and SNI."""

    scheme: str
    host: str
    port: int
    path: str
    address: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = {"http": 80, "https": 443}[self.scheme]
        return host if self.port == default else f"{host}:{self.port}"


def check_saved(url: str) -> None:
    """For a URL being saved: raises Refused unless it may be posted to (or does not resolve
    yet, which sending checks again)."""
    try:
        check(url)
    except Refused as refused:
        if refused.refusal is not Refusal.UNRESOLVED:
            raise


def check(url: str) -> Target:
    """The URL's target, its host resolved now and every address allowed; else Refused."""
    scheme, host, port, path = _parse(url)
    addresses = resolve(host, port)
    if not addresses:
        raise Refused(Refusal.UNRESOLVED)
    if not all(_allowed(address) for address in addresses):
        raise Refused(Refusal.PRIVATE)
    return Target(scheme, host, port, path, str(addresses[0]))


def _parse(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise Refused(Refusal.INVALID) from error
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username is not None:
        raise Refused(Refusal.INVALID)
    if parts.scheme != "https" and current_app.config["PRODUCTION"]:
        raise Refused(Refusal.NOT_HTTPS)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or {"http": 80, "https": 443}[parts.scheme], path


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host has now (an address is its own); the seam tests replace."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in found))


def _allowed(address: IPAddress) -> bool:
    return all(_allowed_one(inner) for inner in _with_embedded_ipv4(address))


def _allowed_one(address: IPAddress) -> bool:
    if address in METADATA or address.is_multicast or address.is_unspecified:
        return False
    if address.is_global:
        return True
    return current_app.config["CALLBACK_ALLOW_PRIVATE"] and (
        address.is_loopback or address.is_private
    )


def _with_embedded_ipv4(address: IPAddress) -> list[IPAddress]:
    """The address and any IPv4 address it carries (mapped, 6to4, Teredo, NAT64), which
    routes to that IPv4 host."""
    if address.version == 4:
        return [address]
    embedded = [address.ipv4_mapped, address.sixtofour, address.teredo and address.teredo[1]]
    if address in NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [address] + [inner for inner in embedded if inner is not None]
