"""The Helm chart, rendered and linted by Helm's own engine (helm-python-sdk)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from soc_agent.runtime.confinement import allowed_secret_dirs
from soc_agent.settings import load_settings

CHART = Path(__file__).resolve().parents[3] / "helm" / "soc-agent"


AUDIT_KEY_REF = {
    "name": "SOC_AGENT_AUDIT_KEY",
    "secretKeyRef": {"name": "soc-secrets", "key": "audit"},
}


def render(values: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Rendered manifests by kind (with the required audit key unless `secretEnv` is set)."""
    values = {"secretEnv": [AUDIT_KEY_REF], **(values or {})}
    out = helm.Chart.load(CHART).render(values, name="soc", namespace="security")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for text in out.values():
        for doc in yaml.safe_load_all(text):
            if doc:
                by_kind.setdefault(doc["kind"], []).append(doc)
    return by_kind


def deployment(manifests: dict[str, list[dict[str, Any]]], component: str) -> dict[str, Any]:
    (found,) = [
        d
        for d in manifests["Deployment"]
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def test_lint_is_clean() -> None:
    report = helm.lint(CHART, strict=True)
    assert report["errors"] == []
    assert not [m for m in report["messages"] if m["severity"] >= 2]


def test_default_render_has_worker_api_and_least_privilege() -> None:
    manifests = render()
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceAccount",
        "NetworkPolicy",
        "PodDisruptionBudget",
    } <= manifests.keys()
    (sa,) = manifests["ServiceAccount"]
    assert sa["automountServiceAccountToken"] is False
    for component in ("worker", "api"):
        pod = deployment(manifests, component)["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        sec = container["securityContext"]
        assert sec["readOnlyRootFilesystem"] is True
        assert sec["allowPrivilegeEscalation"] is False
        assert sec["capabilities"]["drop"] == ["ALL"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["SOC_AGENT_CONFIG"] == "/etc/soc-agent/config.yaml"
    worker = deployment(manifests, "worker")
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    api = deployment(manifests, "api")["spec"]["template"]["spec"]["containers"][0]
    assert api["args"][0] == "serve"
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "startupProbe" not in api


def _worker_container(manifests: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    (container,) = deployment(manifests, "worker")["spec"]["template"]["spec"]["containers"]
    return container


def test_worker_is_probed_on_its_health_port_and_scraped() -> None:
    manifests = render()
    container = _worker_container(manifests)
    assert container["ports"] == [{"name": "health", "containerPort": 8081}]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The worker binds loopback by default; in the pod the kubelet must reach it.
    assert env["SOC_AGENT_KAFKA__HEALTH_HOST"] == "0.0.0.0"
    assert env["SOC_AGENT_KAFKA__HEALTH_PORT"] == "8081"
    annotations = deployment(manifests, "worker")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8081"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_health_port_is_one_value_everywhere() -> None:
    manifests = render({"worker": {"replicas": 2, "health": {"port": 9464}}})
    container = _worker_container(manifests)
    assert container["ports"] == [{"name": "health", "containerPort": 9464}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SOC_AGENT_KAFKA__HEALTH_PORT"] == "9464"
    annotations = deployment(manifests, "worker")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9464"


def test_health_can_be_disabled_and_scraping_left_out() -> None:
    container = _worker_container(render({"worker": {"replicas": 1, "health": {"enabled": False}}}))
    assert "ports" not in container
    assert not {"startupProbe", "livenessProbe", "readinessProbe"} & container.keys()
    assert not [e for e in container["env"] if "HEALTH" in e["name"]]
    manifests = render({"worker": {"replicas": 1, "health": {"prometheusScrape": False}}})
    annotations = deployment(manifests, "worker")["spec"]["template"]["metadata"]["annotations"]
    assert not [k for k in annotations if k.startswith("prometheus.io/")]
    assert "livenessProbe" in _worker_container(manifests)


def test_config_values_become_the_mounted_config_file() -> None:
    manifests = render({"config": {"policy": {"agent_autonomy": 3, "kill_switch": True}}})
    (cm,) = manifests["ConfigMap"]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["policy"] == {"agent_autonomy": 3, "kill_switch": True, "mode": "live"}
    # a config change rolls the pods
    before = deployment(render(), "worker")["spec"]["template"]["metadata"]["annotations"]
    after = deployment(manifests, "worker")["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/config"] != after["checksum/config"]


def test_secrets_come_from_secret_refs_never_values() -> None:
    manifests = render({"secretEnv": [AUDIT_KEY_REF]})
    container = deployment(manifests, "worker")["spec"]["template"]["spec"]["containers"][0]
    (ref,) = [e for e in container["env"] if e["name"] == "SOC_AGENT_AUDIT_KEY"]
    assert ref["valueFrom"]["secretKeyRef"] == {"name": "soc-secrets", "key": "audit"}
    assert "value" not in ref


def test_workers_accept_no_ingress_and_only_the_api_port_is_open() -> None:
    policies = {p["metadata"]["name"]: p for p in render()["NetworkPolicy"]}
    assert policies["soc-soc-agent-worker"]["spec"]["ingress"] == []
    (rule,) = policies["soc-soc-agent-api"]["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_scrapers_named_in_values_may_reach_only_the_worker_health_port() -> None:
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    policies = {
        p["metadata"]["name"]: p
        for p in render({"networkPolicy": {"metricsFrom": [monitoring]}})["NetworkPolicy"]
    }
    (rule,) = policies["soc-soc-agent-worker"]["spec"]["ingress"]
    assert rule == {"from": [monitoring], "ports": [{"port": 8081, "protocol": "TCP"}]}
    (api_rule,) = policies["soc-soc-agent-api"]["spec"]["ingress"]
    assert api_rule == {"ports": [{"port": 8080, "protocol": "TCP"}]}


def test_the_stream_app_binds_its_pod_ip_never_a_wildcard_and_is_probed() -> None:
    manifests = render({"networkPolicy": {"metricsFrom": [{"podSelector": {}}]}})
    stream = deployment(manifests, "stream")
    pod = stream["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["args"] == ["stream", "--host", "$(POD_IP)", "--port", "6066"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["ports"] == [{"name": "health", "containerPort": 6066}]
    policies = {p["metadata"]["name"]: p for p in manifests["NetworkPolicy"]}
    (rule,) = policies["soc-soc-agent-stream"]["spec"]["ingress"]
    assert rule["ports"] == [{"port": 6066, "protocol": "TCP"}]
    assert stream["spec"]["replicas"] == 2


def test_components_can_be_disabled() -> None:
    manifests = render(
        {"api": {"enabled": False}, "stream": {"enabled": False, "replicas": 0, "port": 6066}}
    )
    assert [d["metadata"]["name"] for d in manifests["Deployment"]] == ["soc-soc-agent-worker"]
    assert "Service" not in manifests


@pytest.mark.parametrize(
    "values",
    [
        {"worker": {"replicas": -1}},
        {"worker": {"replicas": 1, "health": {"port": 0}}},
        {"worker": {"replicas": 1, "health": {"port": 70000}}},
        {"stream": {"replicas": 1, "port": 80}},
        {"networkPolicy": {"metricsFrom": "everyone"}},
        {"config": {"policy": {"agent_autonomy": 9}}},
        {"config": {"policy": {"mode": "yolo"}}},
        {"secretEnv": [{"name": "bad name", "secretKeyRef": {"name": "s", "key": "k"}}]},
        {"secretFiles": [{"secretName": "../etc"}]},
        {"secretFiles": [{"name": "forgot-secret-name"}]},
    ],
)
def test_invalid_values_are_refused_by_the_schema(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        helm.Chart.load(CHART).render(values, name="soc")


def test_pods_share_state_through_elasticsearch_by_default() -> None:
    manifests = render()
    assert deployment(manifests, "worker")["spec"]["replicas"] == 2
    (config_map,) = manifests["ConfigMap"]
    config = yaml.safe_load(next(iter(config_map["data"].values())))
    assert config["store_backend"] == "elasticsearch"


def test_more_than_one_pod_on_per_pod_sqlite_stores_is_refused() -> None:
    with pytest.raises(Exception, match="store_backend: elasticsearch"):
        render({"config": {"store_backend": "sqlite"}})
    alone = render(
        {
            "config": {"store_backend": "sqlite"},
            "worker": {"replicas": 1},
            "api": {"enabled": False},
        }
    )
    assert deployment(alone, "worker")["spec"]["replicas"] == 1


def test_the_shared_audit_chain_needs_its_key_from_a_secret() -> None:
    with pytest.raises(Exception, match="SOC_AGENT_AUDIT_KEY"):
        render({"secretEnv": []})
    # one pod on its own SQLite store generates its key beside the store
    alone = {"config": {"store_backend": "sqlite"}, "worker": {"replicas": 1}}
    assert render({**alone, "secretEnv": [], "api": {"enabled": False}})["Deployment"]


def test_secret_files_are_mounted_where_file_credentials_may_point(tmp_path: Path) -> None:
    credential = "file:/run/secrets/vendor-keys/vt-api-key"
    manifests = render(
        {
            "secretFiles": [{"secretName": "vendor-keys"}],
            "config": {"connectors": {"vt": {"use": "virustotal", "credentials": credential}}},
        }
    )
    for component in ("worker", "api"):
        pod = deployment(manifests, component)["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"] == {"secretName": "vendor-keys", "defaultMode": 0o440}
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
        assert (mount["mountPath"], mount["readOnly"]) == ("/run/secrets/vendor-keys", True)
    # the rendered configuration allows the credential there, with the default secret_dirs
    (config_map,) = manifests["ConfigMap"]
    config = tmp_path / "config.yaml"
    config.write_text(config_map["data"]["config.yaml"])
    allowed = allowed_secret_dirs(load_settings(config))
    assert any(Path(mount["mountPath"]).is_relative_to(d) for d in allowed)
