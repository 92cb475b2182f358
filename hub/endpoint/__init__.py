"""The inbound side: the HTTP app, the faces, their handlers and sessions, authentication, the
relay of server-to-client traffic and the era bridge (the map: `docs/architecture.md`).

Re-exported here: what the layers above (the composition root `hub.app`, the command line) use.
The layers below never import this package (`tests/test_dependency_direction.py`).
"""

from hub.endpoint.drain import DrainPhase, DrainReport
from hub.endpoint.endpoint import Endpoint, EndpointServices
from hub.endpoint.http_app import build_http_app
from hub.endpoint.http_server import HttpLimits, HttpServer, bind_socket, run_event_loop

__all__ = [
    "DrainPhase",
    "DrainReport",
    "Endpoint",
    "EndpointServices",
    "HttpLimits",
    "HttpServer",
    "bind_socket",
    "build_http_app",
    "run_event_loop",
]
