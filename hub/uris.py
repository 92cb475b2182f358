"""Resource URI normalisation (RFC 3986 section 6.2.2, syntax-based normalisation).

Two spellings of one URI must reach the same route and the same policy decision, or a policy
that denies `fx+fixture://info` could be walked around with `fx+fixture://INFO` (the host is
case-insensitive) or `fx+fixture://%69nfo` (`%69` is `i`, an unreserved character). Every
resource URI and URI template a client sends is normalised before it is routed and before a
policy glob is matched against it; the hub then sends servers the normalised form.

What `normalize_uri` does, and nothing more (it is a pure string function):

- scheme to lowercase (section 6.2.2.1); the `<server_id>+` prefix of an exposed URI is part
  of its scheme, so it is lowercased too;
- host to lowercase (6.2.2.1), never the userinfo, path, query or fragment (case-sensitive);
- percent-encodings of unreserved characters (`A-Z a-z 0-9 - . _ ~`) decoded, and the hex
  digits of every other percent-encoding uppercased (6.2.2.1, 6.2.2.2);
- dot segments (`.` and `..`) removed from the path (6.2.2.3, with the algorithm of section
  5.2.4).

URI templates (RFC 6570, a `{...}` in the string) are not URIs yet: only their scheme and a
host without expressions are lowercased, and percent-encodings outside the expressions
normalised; expressions and dot segments are kept as written.

No maintained PyPI package does exactly this for arbitrary (non-HTTP) schemes: `rfc3986` 2.0.0
does not decode unreserved percent-encodings, and `url-normalize` is HTTP-specific (default
scheme and ports, query sorting, IDNA), which is not an equivalence for `fixture://` or `file:`.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["UNRESERVED", "normalize_uri", "normalize_uri_pattern", "remove_dot_segments"]

UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
"""RFC 3986 section 2.3 unreserved characters: their percent-encodings are equivalent to them."""

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_EXPRESSION = re.compile(r"\{[^{}]*\}")


def _percent(text: str) -> str:
    """Decode percent-encoded unreserved characters; uppercase the hex of the others."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in UNRESERVED else "%" + match.group(1).upper()

    return _PERCENT.sub(one, text) if "%" in text else text


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: `path` without `.` and `..` segments (`/a/b/../c/./d` -> `/a/c/d`)."""
    if "." not in path:
        return path
    output: list[str] = []
    remaining = path
    while remaining:
        if remaining.startswith("../"):
            remaining = remaining[3:]
        elif remaining.startswith("./"):
            remaining = remaining[2:]
        elif remaining.startswith("/./"):
            remaining = remaining[2:]
        elif remaining == "/.":
            remaining = "/"
        elif remaining.startswith("/../"):
            remaining = remaining[3:]
            if output:
                output.pop()
        elif remaining == "/..":
            remaining = "/"
            if output:
                output.pop()
        elif remaining in (".", ".."):
            remaining = ""
        else:
            start = 1 if remaining.startswith("/") else 0
            end = remaining.find("/", start)
            end = len(remaining) if end < 0 else end
            output.append(remaining[:end])
            remaining = remaining[end:]
    return "".join(output)


def _split(uri: str) -> tuple[str | None, str | None, str, str | None, str | None]:
    """`(scheme, authority, path, query, fragment)` (RFC 3986 appendix B); None when absent."""
    scheme = None
    rest = uri
    match = _SCHEME.match(uri)
    if match:
        scheme, rest = match.group(1), uri[match.end() :]
    fragment = None
    if "#" in rest:
        rest, fragment = rest.split("#", 1)
    query = None
    if "?" in rest:
        rest, query = rest.split("?", 1)
    authority = None
    if rest.startswith("//"):
        end = rest.find("/", 2)
        end = len(rest) if end < 0 else end
        authority, rest = rest[2:end], rest[end:]
    return scheme, authority, rest, query, fragment


def _authority(authority: str, *, template: bool) -> str:
    userinfo, at, hostport = authority.rpartition("@")
    if hostport.startswith("["):  # IP literal: `[v6]:port`
        host, _, port = hostport.partition("]")  # port: ":<digits>" or ""
        host += "]"
    else:
        host, colon, port = hostport.partition(":")
        port = colon + port
    if not (template and "{" in host):
        host = _percent(host).lower()
    userinfo = _percent(userinfo) if not template else _outside_expressions(userinfo)
    return f"{userinfo}{at}{host}{port}"


def _outside_expressions(text: str) -> str:
    """Percent-normalise the literal parts of a URI template, leaving `{...}` untouched."""
    parts: list[str] = []
    last = 0
    for match in _EXPRESSION.finditer(text):
        parts.append(_percent(text[last : match.start()]))
        parts.append(match.group(0))
        last = match.end()
    parts.append(_percent(text[last:]))
    return "".join(parts)


def normalize_uri(uri: str) -> str:
    """The RFC 3986 section 6.2.2 normal form of `uri` (see the module docstring); a URI
    template (`{...}`) gets only its scheme, expression-free host and literal percent-encodings
    normalised. Idempotent: `normalize_uri(normalize_uri(u)) == normalize_uri(u)`."""
    if "{" in uri:
        return _normalize_template(uri)
    scheme, authority, path, query, fragment = _split(uri)
    out = f"{scheme.lower()}:" if scheme is not None else ""
    if authority is not None:
        out += "//" + _authority(authority, template=False)
    path = _percent(path)
    if scheme is not None or authority is not None:
        path = remove_dot_segments(path)
    out += path
    if query is not None:
        out += "?" + _percent(query)
    if fragment is not None:
        out += "#" + _percent(fragment)
    return out


def _scheme_and_authority(text: str) -> tuple[str, str | None, str] | None:
    """`(scheme, authority, rest)` of a URI template or glob, whose path, query or fragment may
    hold `{...}` or glob characters (so it is not split further); None without a scheme."""
    match = _SCHEME.match(text)
    if match is None:
        return None
    rest = text[match.end() :]
    if not rest.startswith("//"):
        return match.group(1), None, rest
    end = len(rest)
    for delimiter in "/?#":
        found = rest.find(delimiter, 2)
        if found >= 0:
            end = min(end, found)
    return match.group(1), rest[2:end], rest[end:]


def _normalize_template(template: str) -> str:
    parts = _scheme_and_authority(template)
    if parts is None:
        return _outside_expressions(template)
    scheme, authority, rest = parts
    out = f"{scheme.lower()}:"
    if authority is not None:
        out += "//" + _authority(authority, template=True)
    return out + _outside_expressions(rest)


def normalize_uri_pattern(pattern: str) -> str:
    """A policy glob normalised like the URIs it is matched against (scheme and host case,
    percent-encodings), so `fx+FIXTURE://Info*` denies what `fx+fixture://info*` denies.
    Globs without a scheme (tool and prompt names) are returned unchanged; glob characters
    and dot segments are left as written."""
    parts = _scheme_and_authority(pattern)
    if parts is None:
        return pattern
    scheme, authority, rest = parts
    out = f"{scheme.lower()}:"
    if authority is not None:
        userinfo, at, hostport = authority.rpartition("@")
        out += f"//{_percent(userinfo)}{at}{_percent(hostport).lower()}"
    return out + _percent(rest)
