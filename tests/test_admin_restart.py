"""`POST /admin/servers/<id>/restart` and `mcphub restart`: with `?wait=S` the hub holds the answer
until the restarted server is ready (200) or S seconds pass (504 with its state and last error),
so the CLI waits on the hub's own event instead of polling `/admin/servers`."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.clients import http_client, mcp_client
from tests.conftest import FAULTY_SERVER, ROOT, faulty_entry, forked_argv, hub_command, running_hub
from tests.conftest import tool_text as _text

pytestmark = pytest.mark.anyio


def _flagged(flag: Path) -> dict[str, Any]:
    """A stdio server that starts while `flag` exists and exits 7 at once otherwise."""
    script = (
        f'if [ -e "{flag}" ]; then exec {shlex.join(forked_argv(FAULTY_SERVER))} --name gated; '
        'else echo "no flag, crashing" >&2; exit 7; fi'
    )
    return {"command": "/bin/sh", "args": ["-c", script], "max_restarts": 1}


async def test_a_restart_with_wait_answers_once_a_new_process_is_ready() -> None:
    async with running_hub({"fx": faulty_entry("fx")}) as hub:
        with anyio.fail_after(30):
            async with http_client(base_url=hub.base_url, timeout=30) as admin, mcp_client(hub.url) as client:
                before_pid = _text(await client.call_tool("fx__pid", {}))
                answer = await admin.post("/admin/servers/fx/restart", params={"wait": "20"})
                # Answered only once the new child is ready: the next call goes to it.
                after_pid = _text(await client.call_tool("fx__pid", {}))
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["server_id"] == "fx" and body["state"] == "ready" and body["restarts"] == 1
    assert before_pid != after_pid


@pytest.mark.slow
async def test_a_restart_whose_server_does_not_come_back_in_time_is_answered_504_with_its_state_and_reason(
    tmp_path: Path,
) -> None:
    flag = tmp_path / "may-start"
    flag.touch()
    async with running_hub({"gated": _flagged(flag)}) as hub:
        flag.unlink()  # from now on the child exits at once
        with anyio.fail_after(30):
            async with http_client(base_url=hub.base_url, timeout=30) as admin:
                # First a restart that fails (without waiting: 202), so the timed-out one below
                # finds the server crashing whatever the machine's load (stopping a ready child
                # under load took longer than the 1 s wait, which then saw it still `ready`).
                first = await admin.post("/admin/servers/gated/restart")
                await hub.hub.wait_for_server("gated", where=lambda s: "no flag, crashing" in (s.last_error or ""))
                timed_out = await admin.post("/admin/servers/gated/restart", params={"wait": "1"})
                bad = [
                    await admin.post("/admin/servers/gated/restart", params={"wait": value})
                    for value in ("soon", "-1", "301", "nan")
                ]
                unknown = await admin.post("/admin/servers/nope/restart", params={"wait": "1"})
            cli = await anyio.run_process(
                hub_command("restart", "gated", "--url", hub.base_url, "--wait", "1"),
                check=False,
                cwd=ROOT,
            )
    assert first.status_code == 202 and first.json()["state"] == "ready"
    body = timed_out.json()
    assert timed_out.status_code == 504, body
    assert body["server_id"] == "gated" and body["state"] in ("restarting", "failed")
    assert "no flag, crashing" in (body["last_error"] or "")
    assert [response.status_code for response in bad] == [400] * 4
    assert all("wait must be a number of seconds from 0 to 300" in response.json()["error"] for response in bad)
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]
    assert cli.returncode == 1, cli.stdout.decode()
    err = cli.stderr.decode()
    assert "server 'gated' is" in err and "1 s after the restart" in err and "no flag, crashing" in err
