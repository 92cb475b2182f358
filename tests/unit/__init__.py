"""The pure tier: no I/O, no subprocess, no socket; small real objects or fakes of the hub's own
interfaces (never mocks of `mcp`, `httpx2` or `anyio`). Every module is marked `unit`; `make
test-fast` runs them (and `make test-unit` runs only them)."""
