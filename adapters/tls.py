"""The process's one client TLS context: the system's CA bundle, loaded once.

Loading the CA bundle into a new `ssl.SSLContext` costs ~20-25 ms of CPU (every certificate in it
is parsed), and `httpx2.AsyncClient()` does it for each client it builds unless it is handed a
context (`verify=`). Every HTTP client the hub builds (the connection pool to remote servers,
the JWKS fetches of token validation, the admin CLI's requests) is handed this one instead: a
process that builds several hubs (a test process) or clients loads the bundle once.

An `ssl.SSLContext` may be shared by any number of clients, connections, threads and event
loops once configured; this one is never changed after it is built, and nothing may change it
(a client needing other trust or a client certificate builds a context of its own).
"""

from __future__ import annotations

import functools
import ssl

__all__ = ["client_tls_context"]


@functools.cache
def client_tls_context() -> ssl.SSLContext:
    """The shared client-side context (`ssl.create_default_context()`: certificate and host
    name verification on, the system's CA bundle, or `SSL_CERT_FILE`/`SSL_CERT_DIR` when set),
    built on first use."""
    return ssl.create_default_context()
