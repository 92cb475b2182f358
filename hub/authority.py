"""Exact parsing of `Host` and `Origin` header values, and the allow-list they are checked
against (DNS-rebinding protection, MCP spec basic/transports "Security Warning": servers MUST
validate the Origin header; SECURITY.md case 9).

A value is taken apart into a host and a port by the grammar (RFC 9110 section 7.2 `Host =
uri-host [ ":" port ]`, RFC 3986 section 3.2.2 host / section 3.2.3 port, RFC 6454 section 6.2
origin serialization) and compared as parts, never by prefix, so nothing after the port can
smuggle another host past the check (`localhost:80.evil.com`, `localhost:8765@evil`,
`[::1]x`, `localhost.`, `LOCALHOST:1:2`: all refused).

Pure functions of strings; no I/O. Used by `hub.endpoint.http_guards` on every request and by the config
loader to refuse a malformed `allowed_hosts` entry at load.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = ["ANY_PORT", "Authority", "HostAllowList", "parse_allowed_host", "parse_authority", "parse_origin"]

ANY_PORT: Final = -1
"""The port of an allow-list entry written `host:*`: any port, or none."""

_MAX_HOST_CHARS = 253  # RFC 1035 section 2.3.4 (a name in text form)
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
"""One DNS label, lowercase: letters, digits, `-` inside, and `_` (container and service names
use it). No empty label, so no trailing dot."""
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")
_ORIGIN_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Authority:
    """A parsed `uri-host [":" port]`: `host` lowercase, an IPv6 literal in brackets and
    compressed (`[::1]`); `port` an int in 0..65535, or None when the value has none."""

    host: str
    port: int | None


def _host(text: str) -> str | None:
    """The canonical form of a `uri-host`, or None when it is not one we accept."""
    if text.startswith("["):
        if not text.endswith("]"):
            return None
        try:
            address = ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            return None
        if address.scope_id is not None:  # zone ids have no place in a Host header
            return None
        return f"[{address.compressed}]"
    host = text.lower()
    if not host or len(host) > _MAX_HOST_CHARS:
        return None
    if _DOTTED_NUMBERS.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))  # refuses `127.1`, `0127.0.0.1`, `1.2.3.4.`
        except ValueError:
            return None
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        return None
    return host


def _port(text: str) -> int | None:
    if not (1 <= len(text) <= 5 and text.isascii() and text.isdigit()):
        return None
    port = int(text)
    return port if port <= 65535 else None


def parse_authority(value: str) -> Authority | None:
    """A `Host` header value taken apart exactly (`uri-host [":" port]`), or None when it is
    malformed: userinfo, a path, an empty or non-numeric port, anything after the port or after
    an IPv6 literal's `]`, a trailing dot, whitespace, non-ASCII, an IPv4 address in a
    non-canonical form.

    >>> parse_authority("LocalHost:8765")
    Authority(host='localhost', port=8765)
    >>> parse_authority("localhost:80.evil.com") is None
    True
    """
    if not value.isascii() or not value.isprintable() or " " in value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host_text, rest = value[: end + 1], value[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        host_text, colon, port_text_or_empty = value.partition(":")
        port_text = port_text_or_empty if colon else None
    host = _host(host_text)
    if host is None:
        return None
    if port_text is None:
        return Authority(host, None)
    port = _port(port_text)
    return None if port is None else Authority(host, port)


def parse_origin(value: str) -> Authority | None:
    """An `Origin` header value (`scheme "://" host [":" port]`, RFC 6454 section 6.2) as the
    authority it names, the scheme's default port filled in when absent; None for `null`, a
    scheme other than http/https, a path, or a malformed authority."""
    scheme, sep, rest = value.partition("://")
    default_port = _ORIGIN_DEFAULT_PORTS.get(scheme.lower()) if sep else None
    if default_port is None:
        return None
    authority = parse_authority(rest)
    if authority is None:
        return None
    return authority if authority.port is not None else Authority(authority.host, default_port)


def parse_allowed_host(entry: str) -> Authority | None:
    """An allow-list entry: `host` (only a Host without a port), `host:port`, or `host:*` (any
    port, or none; `port` is then `ANY_PORT`). None when malformed."""
    if entry.endswith(":*"):
        authority = parse_authority(entry[:-2])
        return None if authority is None or authority.port is not None else Authority(authority.host, ANY_PORT)
    return parse_authority(entry)


class HostAllowList:
    """The Host values (and so the Origins) an endpoint accepts.

    :param entries: allow-list entries (`parse_allowed_host` forms).
    :raises ValueError: an entry is malformed (the message names it).
    """

    def __init__(self, entries: Iterable[str]) -> None:
        self._ports: dict[str, set[int | None]] = {}
        for entry in entries:
            authority = parse_allowed_host(entry)
            if authority is None:
                raise ValueError(f"not a host, host:port or host:* value: {entry!r}")
            self._ports.setdefault(authority.host, set()).add(authority.port)

    def allows(self, authority: Authority) -> bool:
        """Whether `authority` is on the list: its host with its exact port (or no port), or
        its host written with `:*`."""
        ports = self._ports.get(authority.host)
        return ports is not None and (authority.port in ports or ANY_PORT in ports)

    def allows_host(self, value: str) -> bool:
        """Whether a `Host` header value parses and is on the list."""
        authority = parse_authority(value)
        return authority is not None and self.allows(authority)

    def allows_origin(self, value: str) -> bool:
        """Whether an `Origin` header value parses (http/https only) and names an allowed host:
        a `host` entry (no port) matches the scheme's default port, `host:*` any port."""
        authority = parse_origin(value)
        if authority is None:
            return False
        default_port = _ORIGIN_DEFAULT_PORTS[value.partition("://")[0].lower()]
        return self.allows(authority) or (
            authority.port == default_port and self.allows(Authority(authority.host, None))
        )
