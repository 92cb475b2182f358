"""The inbound side: the HTTP app, the faces, their handlers and sessions, authentication, the
relay of server-to-client traffic and the era bridge (the map: `docs/architecture.md`)."""
