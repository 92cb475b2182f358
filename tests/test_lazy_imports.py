"""What a hub imports depends on what it is configured to do: PyJWT only with `auth.jwt`, the
`limits` library only once a rate limit counts a request (each ~0.5-1.6 MB of RSS that a hub
without the feature does not carry). Checked in a fresh interpreter, as `test_tracing` checks
OpenTelemetry's SDK and `test_cluster_store` checks redis."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import ROOT

_SCRIPT = """
import sys
import anyio
from starlette.datastructures import Headers
from hub.app import Hub
from hub.config import parse_config

config = parse_config({document}, file="<t>")
hub = Hub(config)
hub.http_app()
limiter = hub.endpoint.access.limiter

async def use() -> None:
    await limiter.check_request("team")
    await limiter.check_route("team", "fx__echo")
    headers = Headers({{"authorization": "Bearer {key}"}})
    principal = await hub.endpoint.authenticator.authenticate(headers)
    assert principal.id == "team", principal

anyio.run(use)
print(sorted(m for m in ("jwt", "limits") if m in sys.modules))
"""


def _imported(settings: dict[str, object]) -> list[str]:
    """Which of PyJWT and `limits` a hub with `settings` has imported after it authenticated an
    API key and counted one request and one call."""
    key = "team-key-0123456789abcdef"
    with tempfile.TemporaryDirectory() as state_dir:
        document = {
            "servers": {},
            "state_dir": state_dir,
            "auth": {
                "api_keys": [
                    {"id": "team", "key_sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": ["hub:call"]}
                ]
            },
            **settings,
        }
        script = _SCRIPT.format(document=json.dumps(document), key=key)
        env = {"PATH": "", "HOME": state_dir, "XDG_STATE_HOME": state_dir}
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
        )
    assert done.returncode == 0, done.stderr[-2000:]
    imported: list[str] = json.loads(done.stdout.strip().splitlines()[-1].replace("'", '"'))
    return imported


@pytest.mark.slow
def test_a_hub_with_api_keys_and_no_rate_limits_imports_neither_pyjwt_nor_limits() -> None:
    assert _imported({}) == []


@pytest.mark.slow
def test_a_hub_whose_rate_limit_counts_a_request_imports_limits_then_and_still_not_pyjwt() -> None:
    bucket = {"requests_per_second": 100, "burst": 100}
    assert _imported({"rate_limits": {"per_principal": bucket}}) == ["limits"]
