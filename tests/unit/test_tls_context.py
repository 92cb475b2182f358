"""adapters/tls.py: the process's one client TLS context, and every HTTP client the hub builds
on it (read from the source with `ast`: a client built without `verify=` or a `transport=` of
its own loads the CA bundle again, ~20-25 ms of CPU each)."""

from __future__ import annotations

import ast
import ssl

import pytest

from adapters.tls import client_tls_context
from tests.conftest import ROOT

pytestmark = pytest.mark.unit

_BUILDERS = {"AsyncClient", "Client", "AsyncHTTPTransport", "HTTPTransport"}
"""The httpx2 constructors that build a TLS context of their own unless handed one."""


def test_the_context_is_built_once_and_verifies_certificates_and_host_names() -> None:
    context = client_tls_context()
    assert context is client_tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.protocol == ssl.PROTOCOL_TLS_CLIENT


def unshared_clients(source: str, where: str) -> list[str]:
    """`<where>:<line>` of each httpx2 client or transport built in `source` with neither
    `verify=` nor `transport=`."""
    tree = ast.parse(source, filename=where)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        target = node.func
        if not (isinstance(target.value, ast.Name) and target.value.id == "httpx2" and target.attr in _BUILDERS):
            continue
        if not {keyword.arg for keyword in node.keywords} & {"verify", "transport"}:
            found.append(f"{where}:{node.lineno}")
    return found


def test_every_http_client_the_hub_builds_shares_the_context() -> None:
    sources = sorted([*(ROOT / "hub").rglob("*.py"), *(ROOT / "adapters").rglob("*.py")])
    assert ROOT / "adapters" / "http_pool.py" in sources
    unshared = [
        found
        for path in sources
        for found in unshared_clients(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    ]
    assert unshared == []


def test_the_check_finds_a_client_built_without_the_context() -> None:
    source = (
        "import httpx2\n"
        "a = httpx2.AsyncClient(timeout=5)\n"
        "b = httpx2.AsyncClient(verify=ctx)\n"
        "c = httpx2.AsyncClient(transport=t)\n"
        "d = httpx2.AsyncHTTPTransport(limits=x)\n"
    )
    assert unshared_clients(source, "example.py") == ["example.py:2", "example.py:5"]
