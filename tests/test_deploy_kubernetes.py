"""deploy/kubernetes/, checked without a cluster: every manifest validated against the Kubernetes
schemas of a pinned version (kubernetes-validate, strict: an unknown field is an error), the
kustomization rendered by kustomize itself (`kubectl kustomize`, skipped with the reason when
kubectl is absent) and validated whole, the fleet ConfigMap loaded with the hub's own loader and
the environment the Deployment gives it, and the wiring between the objects (selectors, probes,
Secret keys, Service ports, the Pod Security "restricted" profile)."""

from __future__ import annotations

import base64
import runpy
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hub.config import load_config
from tests.conftest import ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"
"""The Kubernetes version the manifests are validated against (its schemas ship with
kubernetes-validate); the objects used are GA since 1.23 (autoscaling/v2, policy/v1)."""

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
POD_IP = "10.12.0.7"
HUB = {"app.kubernetes.io/name": "mcphub", "app.kubernetes.io/component": "hub"}
REDIS = {"app.kubernetes.io/name": "redis", "app.kubernetes.io/component": "shared-state"}


def _kustomization() -> dict[str, Any]:
    document = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _validation_errors(document: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        return f"{document['kind']}/{document['metadata']['name']}: {path}: {error.message}"
    return None


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """`kubectl kustomize` of a copy of deploy/kubernetes with a secrets.env made the documented
    way (`python3 secrets_env.py > secrets.env`)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization was not rendered (every file is still validated)")
    directory = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBERNETES, directory)
    with (directory / "secrets.env").open("w") as secrets_env:
        subprocess.run([sys.executable, "secrets_env.py"], cwd=directory, stdout=secrets_env, check=True, timeout=30)
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _one(documents: list[dict[str, Any]], kind: str, name_prefix: str) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"].startswith(name_prefix)]
    return found


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


# ------------------------------------------------------------------------- every file alone


def test_the_kustomization_lists_every_manifest_in_the_directory() -> None:
    listed = set(_kustomization()["resources"])
    manifests = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml", "hub.yaml"}

    assert listed == manifests


@pytest.mark.parametrize("name", sorted(_kustomization()["resources"]))
def test_every_manifest_validates_against_the_kubernetes_schemas(name: str) -> None:
    documents = _documents(KUBERNETES / name)

    assert documents
    assert [error for document in documents if (error := _validation_errors(document))] == []


def test_the_schema_validation_refuses_a_misspelt_field() -> None:
    (deployment,) = _documents(KUBERNETES / "deployment.yaml")
    container = _container(deployment)
    container["readinesProbe"] = container.pop("readinessProbe")

    error = _validation_errors(deployment)

    assert error is not None and "readinesProbe" in error


# ---------------------------------------------------------------------- the rendered whole


def test_the_rendered_kustomization_validates_against_the_kubernetes_schemas(rendered: list[dict[str, Any]]) -> None:
    kinds = Counter(document["kind"] for document in rendered)

    assert [error for document in rendered if (error := _validation_errors(document))] == []
    assert kinds == Counter(
        {
            "Namespace": 1,
            "ServiceAccount": 1,
            "ConfigMap": 1,
            "Secret": 1,
            "Deployment": 2,  # the hub, Redis
            "Service": 2,
            "PodDisruptionBudget": 1,
            "HorizontalPodAutoscaler": 1,
            "NetworkPolicy": 1,
        }
    )
    namespace = _kustomization()["namespace"]
    assert all(d["metadata"].get("namespace") == namespace for d in rendered if d["kind"] != "Namespace")


def test_the_hub_runs_three_replicas_of_the_projects_image_rolled_one_at_a_time(
    rendered: list[dict[str, Any]],
) -> None:
    deployment = _one(rendered, "Deployment", "mcphub")
    strategy = deployment["spec"]["strategy"]

    assert deployment["spec"]["replicas"] == 3
    assert _container(deployment)["image"] == f"mcphub:{VERSION}"
    assert _container(deployment)["args"][:3] == ["serve", "--host", "0.0.0.0"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_the_hub_has_readiness_and_liveness_probes_a_prestop_and_time_to_drain(rendered: list[dict[str, Any]]) -> None:
    deployment = _one(rendered, "Deployment", "mcphub")
    container = _container(deployment)
    pod = deployment["spec"]["template"]["spec"]
    (port,) = container["ports"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]

    for probe, path in ((container["readinessProbe"], "/readyz"), (container["livenessProbe"], "/healthz")):
        assert probe["httpGet"]["path"] == path
        assert probe["httpGet"]["port"] == port["name"]
        # kubelet would send Host: <pod IP>:<port>; a loopback name is always accepted.
        assert probe["httpGet"]["httpHeaders"] == [{"name": "Host", "value": "localhost"}]
    assert pre_stop[0] == "sleep" and int(pre_stop[1]) >= 5
    # preStop, then the hub's drain: its grace, then in-flight calls (hub.yaml's own settings).
    hub = yaml.safe_load((KUBERNETES / "hub.yaml").read_text())
    drain = hub["shutdown_grace_seconds"] + hub["drain_timeout_seconds"]
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + drain


def test_the_hub_has_resources_for_the_autoscaler_and_meets_the_restricted_pod_security_profile(
    rendered: list[dict[str, Any]],
) -> None:
    namespace = _one(rendered, "Namespace", "")

    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for name in ("mcphub", "redis"):
        deployment = _one(rendered, "Deployment", name)
        container = _container(deployment)
        pod = deployment["spec"]["template"]["spec"]
        resources = container["resources"]

        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
        assert _restricted_profile_violations(pod) == [], name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["automountServiceAccountToken"] is False


def _restricted_profile_violations(pod: dict[str, Any]) -> list[str]:
    """What breaks the Pod Security Standards' "restricted" profile (the checks a pod spec decides)."""
    problems = []
    context = pod.get("securityContext", {})
    if context.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile")
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        problems.append("host namespaces")
    problems += [f"volume {v['name']}" for v in pod.get("volumes", []) if "hostPath" in v]
    for container in pod["containers"]:
        security = container.get("securityContext", {})
        if security.get("runAsNonRoot", context.get("runAsNonRoot")) is not True:
            problems.append(f"{container['name']}: runAsNonRoot")
        if security.get("runAsUser", context.get("runAsUser")) == 0:
            problems.append(f"{container['name']}: runAsUser 0")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{container['name']}: allowPrivilegeEscalation")
        if security.get("privileged"):
            problems.append(f"{container['name']}: privileged")
        if security.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append(f"{container['name']}: capabilities.drop")
        if set(security.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{container['name']}: capabilities.add")
        if any("hostPort" in port for port in container.get("ports", [])):
            problems.append(f"{container['name']}: hostPort")
    return problems


def test_the_hub_runs_as_the_images_user_with_writable_state_and_tmp(rendered: list[dict[str, Any]]) -> None:
    deployment = _one(rendered, "Deployment", "mcphub")
    context = deployment["spec"]["template"]["spec"]["securityContext"]
    mounts = {mount["mountPath"]: mount for mount in _container(deployment)["volumeMounts"]}
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    dockerfile_user = next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER "))

    assert f"{context['runAsUser']}:{context['runAsGroup']}" == dockerfile_user
    assert {"/home/hub/.local/state", "/tmp"} <= set(mounts)  # the state file and temporary files
    assert mounts["/etc/mcphub"]["readOnly"] is True


# --------------------------------------------------------------------- config and secrets


def _secret_values(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def _pod_environment(rendered: list[dict[str, Any]], deployment: dict[str, Any]) -> dict[str, str]:
    """The environment the hub's container gets (Downward API fields with example values)."""
    secret = _one(rendered, "Secret", "mcphub-keys")
    fields = {"status.podIP": POD_IP, "metadata.namespace": deployment["metadata"]["namespace"]}
    env = {}
    for variable in _container(deployment)["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        elif "fieldRef" in variable["valueFrom"]:
            env[variable["name"]] = fields[variable["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            assert reference["name"] == secret["metadata"]["name"]
            env[variable["name"]] = _secret_values(secret)[reference["key"]]
    return env


def test_the_fleet_configmap_loads_with_the_hubs_loader_in_the_deployments_environment(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    deployment = _one(rendered, "Deployment", "mcphub")
    config_map = _one(rendered, "ConfigMap", "mcphub-config")
    container = _container(deployment)
    env = _pod_environment(rendered, deployment)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    (file_name,) = config_map["data"]
    path = tmp_path / file_name
    path.write_text(config_map["data"][file_name], encoding="utf-8")

    config = load_config(path, env=env)

    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert env["MCPHUB_CONFIG"] == f"{mount['mountPath']}/{file_name}"
    assert config.listen.port == container["ports"][0]["containerPort"]
    assert config.cluster is not None and len(config.cluster.keys) == 1
    assert config.hub_id is not None  # one identity for every replica
    assert f"{POD_IP}:{config.listen.port}" in config.allowed_hosts  # Prometheus scrapes pods by IP
    assert set(config.servers) == {"time", "git"}


def test_the_hubs_reach_redis_through_its_service_with_its_password(rendered: list[dict[str, Any]]) -> None:
    hub = _one(rendered, "Deployment", "mcphub")
    redis = _one(rendered, "Deployment", "redis")
    service = _one(rendered, "Service", "redis")
    config_map = _one(rendered, "ConfigMap", "mcphub-config")
    template = yaml.safe_load(next(iter(config_map["data"].values())))["cluster"]["redis_url"]
    env = _pod_environment(rendered, hub)
    args = _container(redis)["args"]
    redis_env = {v["name"]: v["valueFrom"]["secretKeyRef"]["key"] for v in _container(redis)["env"]}

    assert (
        template
        == f"redis://:${{REDIS_PASSWORD}}@{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/0"
    )
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert redis_env["REDIS_PASSWORD"] == "REDIS_PASSWORD" and "REDIS_PASSWORD" in env
    assert service["spec"]["selector"] == redis["spec"]["template"]["metadata"]["labels"] == REDIS


def test_the_secret_is_generated_from_an_uncommitted_file() -> None:
    (generator,) = _kustomization()["secretGenerator"]
    (source,) = generator["envs"]
    example = (KUBERNETES / f"{source}.example").read_text(encoding="utf-8")
    ignored = subprocess.run(["git", "check-ignore", "--quiet", str(KUBERNETES / source)], cwd=ROOT, timeout=30)
    names = [line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")]

    assert ignored.returncode == 0, f"{source} is not ignored by git"
    assert all(value == "" for _, value in names)  # the example holds no usable key
    assert {name for name, _ in names} == set(_documented_secret_names())


def _documented_secret_names() -> tuple[str, ...]:
    names: tuple[str, ...] = runpy.run_path(str(KUBERNETES / "secrets_env.py"))["NAMES"]  # not as __main__
    return names


def test_every_secret_key_the_pods_read_is_generated(rendered: list[dict[str, Any]]) -> None:
    secret = _one(rendered, "Secret", "mcphub-keys")
    keys = set(_secret_values(secret))

    for name in ("mcphub", "redis"):
        for variable in _container(_one(rendered, "Deployment", name))["env"]:
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference is not None:
                assert reference["key"] in keys, f"{name}: {reference['key']}"
    assert all(len(value) >= 32 for value in _secret_values(secret).values())


# ------------------------------------------------------------- Service, PDB, HPA, NetworkPolicy


def test_the_service_pdb_and_autoscaler_act_on_the_hub_pods(rendered: list[dict[str, Any]]) -> None:
    deployment = _one(rendered, "Deployment", "mcphub")
    service = _one(rendered, "Service", "mcphub")
    pdb = _one(rendered, "PodDisruptionBudget", "mcphub")
    hpa = _one(rendered, "HorizontalPodAutoscaler", "mcphub")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (port,) = service["spec"]["ports"]

    assert deployment["spec"]["selector"]["matchLabels"] == HUB and HUB.items() <= labels.items()
    assert service["spec"]["selector"] == HUB
    assert service["spec"]["sessionAffinity"] == "None"  # no stickiness: any replica serves any request
    assert port["targetPort"] == _container(deployment)["ports"][0]["name"]
    assert pdb["spec"]["selector"]["matchLabels"] == HUB and pdb["spec"]["maxUnavailable"] == 1
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mcphub"}
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"] == 3
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"  # needs the container's CPU request


def test_only_the_hub_pods_reach_redis(rendered: list[dict[str, Any]]) -> None:
    policy = _one(rendered, "NetworkPolicy", "redis")
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]

    assert policy["spec"]["podSelector"]["matchLabels"] == REDIS
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert source == {"podSelector": {"matchLabels": HUB}}
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
