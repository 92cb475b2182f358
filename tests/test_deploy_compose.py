"""deploy/compose.yaml, checked without a Docker engine: its structure (three hub replicas of the
image, Redis, a round-robin balancer reaching every replica, Prometheus scraping each one with the
metrics key, Grafana provisioned with the dashboard), the replicas' config loaded with the hub's
own loader, the HAProxy config checked by a real `haproxy -c` and run by HAProxy in front of
three real hubs, and the whole file by `docker compose config` where Compose is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.app import Hub
from hub.config import HubConfig, load_config, parse_config
from tests.clients import http_client
from tests.conftest import ROOT, free_port, serve_app, until
from tests.schema_validation import read_yaml, schema_errors

DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
HAPROXY_CFG = DEPLOY / "compose" / "haproxy.cfg"
REPLICA_CONFIG_PATH = "/etc/mcphub/hub.yaml"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
DUMMY_ENV = {
    "MCPHUB_CLUSTER_KEY": "c" * 64,
    "MCPHUB_API_KEY": "a" * 43,
    "MCPHUB_METRICS_KEY": "m" * 43,
}
_REQUIRED = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*):\?[^}]+\}$")


def _compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _hubs() -> dict[str, dict[str, Any]]:
    """The services built from deploy/Dockerfile: the hub replicas."""
    return {
        name: service
        for name, service in _services().items()
        if isinstance(service.get("build"), dict) and service["build"].get("dockerfile") == "deploy/Dockerfile"
    }


def _host_path(service: dict[str, Any], target: str) -> Path:
    """The file or directory of this repository a service mounts at `target`."""
    for volume in service.get("volumes", []):
        source, mounted, *_ = volume.split(":")
        if mounted == target:
            return (COMPOSE_FILE.parent / source).resolve()
    raise AssertionError(f"nothing is mounted at {target}")


def _replica_config_file() -> Path:
    files = {_host_path(service, REPLICA_CONFIG_PATH) for service in _hubs().values()}
    assert len(files) == 1, "the replicas must share one config"
    return files.pop()


def _replica_config() -> HubConfig:
    return load_config(_replica_config_file(), env=DUMMY_ENV)


def _haproxy_sections() -> dict[str, list[list[str]]]:
    """haproxy.cfg as {"backend hubs": [["balance", "roundrobin"], ...], ...}."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for raw in HAPROXY_CFG.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            current = sections.setdefault(" ".join(line.split()), [])
        else:
            assert current is not None, raw
            current.append(line.split())
    return sections


def _port_of(service: dict[str, Any], target: int) -> tuple[str, int]:
    """(host address, host port) publishing container port `target`."""
    for mapping in service.get("ports", []):
        host, port, container = mapping.rsplit(":", 2)
        if int(container) == target:
            return host, int(port)
    raise AssertionError(f"container port {target} is not published")


# ----------------------------------------------------------------------------- the replicas


def test_compose_runs_three_replicas_of_the_image_built_from_the_dockerfile() -> None:
    hubs = _hubs()

    assert len(hubs) == 3
    assert {service["image"] for service in hubs.values()} == {f"mcphub:{VERSION}"}
    for service in hubs.values():
        assert (COMPOSE_FILE.parent / service["build"]["context"]).resolve() == ROOT
        assert (ROOT / service["build"]["dockerfile"]).is_file()


def test_the_replicas_config_loads_with_the_hubs_loader_and_conforms_to_the_schema() -> None:
    config = _replica_config()

    assert schema_errors(read_yaml(_replica_config_file())) == []
    assert config.listen.host == "0.0.0.0"
    assert config.auth != "none"
    assert config.hub_id is not None  # replicas of one hub share one identity
    assert config.cluster is not None and len(config.cluster.keys) == 1
    assert set(config.servers) == {"time", "git"}


def test_every_replica_gets_every_variable_its_config_reads_and_compose_requires_them() -> None:
    text = _replica_config_file().read_text(encoding="utf-8")
    needed = set(re.findall(r"\b\w*_env:\s*([A-Za-z_][A-Za-z0-9_]*)", text))
    needed |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))

    for name, service in _hubs().items():
        environment = service["environment"]
        assert needed <= set(environment), f"{name} lacks {needed - set(environment)}"
        for variable in needed:
            # `${VAR:?message}`: compose refuses to start without it, naming it.
            match = _REQUIRED.match(str(environment[variable]))
            assert match is not None and match.group(1) == variable, f"{name}: {variable}"


def test_the_replicas_share_redis_and_wait_for_it() -> None:
    config = _replica_config()
    services = _services()
    assert config.cluster is not None and config.cluster.redis_url is not None
    url = re.fullmatch(r"redis://([^:/]+):(\d+)/\d+", config.cluster.redis_url)
    assert url is not None, config.cluster.redis_url
    redis_host, redis_port = url.groups()

    redis = services[redis_host]
    assert redis["image"].startswith("redis:")
    assert int(redis_port) == 6379
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in redis  # reachable only inside the compose network
    for service in _hubs().values():
        assert service["depends_on"][redis_host]["condition"] == "service_healthy"


def test_every_replica_has_a_health_check_on_healthz_and_time_to_drain() -> None:
    config = _replica_config()

    for service in _hubs().values():
        check = service["healthcheck"]["test"]
        assert check[0] == "CMD" and f"http://127.0.0.1:{config.listen.port}/healthz" in check[-1]
        assert service["stop_grace_period"]
        assert service["restart"] == "unless-stopped"


def test_every_image_is_pinned_by_a_version_tag() -> None:
    for name, service in _services().items():
        image = service["image"]
        _, _, tag = image.rpartition(":")

        assert tag and tag != "latest" and re.match(r"v?\d+(\.\d+)+", tag), f"{name}: {image}"


def test_every_published_port_is_on_the_loopback_interface() -> None:
    published = [(name, mapping) for name, service in _services().items() for mapping in service.get("ports", [])]

    assert {name for name, _ in published} == {"balancer", "prometheus", "grafana"}
    assert all(mapping.startswith("127.0.0.1:") for _, mapping in published)


# ------------------------------------------------------------------------------ the balancer


def test_the_balancer_sends_requests_round_robin_to_every_replica_without_stickiness() -> None:
    sections = _haproxy_sections()
    config = _replica_config()
    balancer = _services()["balancer"]
    (frontend,) = [body for name, body in sections.items() if name.startswith("frontend ")]
    (backend_name,) = [words[1] for words in frontend if words[0] == "default_backend"]
    backend = sections[f"backend {backend_name}"]
    (bind,) = [words[1] for words in frontend if words[0] == "bind"]
    directives = {words[0] for section in sections.values() for words in section}

    assert _host_path(balancer, "/usr/local/etc/haproxy/haproxy.cfg") == HAPROXY_CFG
    assert int(bind.rsplit(":", 1)[1]) == _container_port_published(balancer)
    assert ["balance", "roundrobin"] in backend
    assert {words[2] for words in backend if words[0] == "server"} == {
        f"{name}:{config.listen.port}" for name in _hubs()
    }
    # Nothing that pins a client to a replica: no cookie, stick table or hashing.
    assert not directives & {"cookie", "stick", "stick-table", "hash-type", "appsession"}
    assert not [words for words in backend if words[0] == "balance" and words[1] != "roundrobin"]


def _container_port_published(service: dict[str, Any]) -> int:
    (mapping,) = service["ports"]
    return int(mapping.rsplit(":", 1)[1])


def test_the_balancer_sends_requests_only_to_ready_replicas() -> None:
    backend = _haproxy_sections()["backend hubs"]
    send = next(words for words in backend if words[:2] == ["http-check", "send"])

    assert ["option", "httpchk"] in backend
    assert send[send.index("uri") + 1] == "/readyz"
    # The hub answers only Host values it knows; a loopback name always.
    assert send[send.index("hdr") + 1 : send.index("hdr") + 3] == ["Host", "localhost"]
    assert ["http-check", "expect", "status", "200"] in backend
    default_server = next(words for words in backend if words[0] == "default-server")
    assert "check" in default_server


def test_haproxy_accepts_the_balancer_config() -> None:
    haproxy = _haproxy()
    if haproxy is None:
        pytest.skip("haproxy is not installed (the OS package `haproxy`): the config was only parsed")

    result = subprocess.run([haproxy, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


def _haproxy() -> str | None:
    return shutil.which("haproxy") or next(
        (path for path in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if Path(path).exists()), None
    )


def _counting(app: ASGIApp, hits: list[str]) -> ASGIApp:
    """`app`, noting the path of every HTTP request it gets."""

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            hits.append(scope["path"])
        await app(scope, receive, send)

    return counted


@pytest.mark.anyio
@pytest.mark.slow
async def test_the_balancer_config_spreads_requests_over_ready_replicas_and_skips_one_that_is_not_ready(
    tmp_path: Path,
) -> None:
    """HAProxy runs the compose config itself, with only the addresses changed (loopback ports
    instead of the compose network's names), in front of three real hubs; the third has no
    server it can start, so its /readyz answers 503."""
    haproxy = _haproxy()
    if haproxy is None:
        pytest.skip("haproxy is not installed (the OS package `haproxy`)")
    hits: list[list[str]] = [[], [], []]
    configs = [
        parse_config({"servers": {}}, file="<test>"),
        parse_config({"servers": {}}, file="<test>"),
        parse_config({"servers": {"gone": {"command": str(tmp_path / "no-such-server")}}}, file="<test>"),
    ]
    async with AsyncExitStack() as stack:
        urls = []
        for config, seen in zip(configs, hits, strict=True):
            hub = Hub(config.model_copy(update={"state_dir": str(tmp_path)}))
            urls.append(await stack.enter_async_context(serve_app(_counting(hub.http_app(), seen))))
            with anyio.fail_after(30):
                await hub.wait_started()
        port = free_port()
        text = HAPROXY_CFG.read_text(encoding="utf-8").replace("bind :8080", f"bind 127.0.0.1:{port}")
        text = re.sub(r"\n    nameserver dns .*", "\n    nameserver dns 127.0.0.1:9", text)  # never asked
        for number, url in enumerate(urls, start=1):
            text = text.replace(f"hub-{number}:8765", url.removeprefix("http://"))
        config_file = tmp_path / "haproxy.cfg"
        config_file.write_text(text, encoding="utf-8")
        process = await anyio.open_process(
            [haproxy, "-db", "-f", str(config_file)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            with anyio.fail_after(30):
                # Each replica was checked; the third failed its two checks (`fall 2`) and one more.
                await until(lambda: all(seen.count("/readyz") >= 2 for seen in hits[:2]))
                await until(lambda: hits[2].count("/readyz") >= 3)
                before = [len([path for path in seen if path != "/readyz"]) for seen in hits]
                async with http_client(timeout=10) as http:
                    not_ready = (await http.get(f"{urls[2]}/readyz")).status_code
                statuses = []
                for _ in range(8):
                    async with http_client(timeout=10) as http:  # a new connection each time
                        statuses.append((await http.get(f"http://127.0.0.1:{port}/healthz")).status_code)
        finally:
            process.terminate()
            with anyio.move_on_after(10, shield=True):
                await process.wait()
    served = [
        len([path for path in seen if path != "/readyz"]) - count for seen, count in zip(hits, before, strict=True)
    ]

    assert not_ready == 503
    assert statuses == [200] * 8
    assert served == [4, 4, 0]  # round-robin over the ready replicas, none to the one that is not


# --------------------------------------------------------------------- Prometheus and Grafana


def test_prometheus_scrapes_every_replica_directly_with_the_metrics_key() -> None:
    services = _services()
    prometheus = services["prometheus"]
    scrape = yaml.safe_load(_host_path(prometheus, "/etc/prometheus/prometheus.yml").read_text(encoding="utf-8"))
    config = _replica_config()
    (job,) = scrape["scrape_configs"]
    targets = {target for group in job["static_configs"] for target in group["targets"]}
    secret = _compose()["secrets"][prometheus["secrets"][0]]
    assert not isinstance(config.auth, str)
    (metrics_key,) = [key for key in config.auth.api_keys if key.key_env == secret["environment"]]

    assert targets == {f"{name}:{config.listen.port}" for name in _hubs()}
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"] == f"/run/secrets/{prometheus['secrets'][0]}"
    assert metrics_key.scopes == ["hub:metrics"]
    # Prometheus sends Host: <target>; the replicas accept it.
    assert targets <= set(config.allowed_hosts)


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_hubs_dashboard() -> None:
    grafana = _services()["grafana"]
    datasources = yaml.safe_load(
        _host_path(grafana, "/etc/grafana/provisioning/datasources/mcphub.yaml").read_text(encoding="utf-8")
    )
    providers = yaml.safe_load(
        _host_path(grafana, "/etc/grafana/provisioning/dashboards/mcphub.yaml").read_text(encoding="utf-8")
    )
    (provider,) = providers["providers"]
    dashboards = _host_path(grafana, provider["options"]["path"])
    (datasource,) = datasources["datasources"]

    assert (dashboards / "mcphub.json").is_file()
    assert dashboards == DEPLOY / "grafana"
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert grafana["depends_on"] == ["prometheus"]
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == (
        f"{provider['options']['path']}/mcphub.json"
    )


# --------------------------------------------------------------------------- Docker Compose


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone is not None:
        probe = subprocess.run([standalone, "version"], capture_output=True, text=True, timeout=30, check=False)
        if probe.returncode == 0 and re.search(r"\bv?2\.", probe.stdout):
            return [standalone]
    return None


def test_docker_compose_accepts_the_file_and_refuses_to_start_without_the_keys(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("Docker Compose v2 is not installed (no `docker compose`, no docker-compose v2)")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    accepted = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        env={**env, **DUMMY_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    refused = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert accepted.returncode == 0, accepted.stderr
    assert refused.returncode != 0 and "MCPHUB_" in refused.stderr
