"""The Helm chart (deploy/helm/ditto-triton): render, lint and validate it offline, and derive Envoy configs.

Everything here runs without a cluster, a network or a helm binary: charts render through Helm's Go SDK
(`helm_python`), manifests validate against Kubernetes' published OpenAPI schemas (`kubernetes_validate`,
strict, pinned to `KUBERNETES_VERSION`). Both are dev-only packages (the container image has neither) and,
like PyYAML (not a declared dependency of the package), are imported inside the functions that use them.

    >>> manifests = render_chart({"autoscaling": {"enabled": False}})
    >>> find(manifests, "Deployment")["spec"]["replicas"]
    2
    >>> envoy_config(manifests)["static_resources"]["clusters"][0]["connect_timeout"]
    '1s'
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from ditto_triton.deploy import ASSETS_DIR

CHART_DIR: Path = ASSETS_DIR / "helm" / "ditto-triton"
KUBERNETES_VERSION = "1.31.0"  # the schemas manifests are validated against; helm lint's kube_version

ENVOY_CONFIG_KEY = "envoy.yaml"
ENVOY_CLUSTER = "ditto_replicas"
# Kinds of CustomResourceDefinitions the chart uses; kubernetes_validate has no schema for them.
CRD_KINDS = ("ServiceMonitor", "PodMonitor")

Manifest = dict[str, Any]


def render_chart(
    values: dict[str, Any] | None = None, release: str = "ditto", namespace: str = "ditto"
) -> list[Manifest]:
    """Render the chart as `helm install` would and return its manifests as parsed YAML documents.

    Empty documents (disabled templates) and NOTES.txt are skipped; the documents come in template-path
    order. Bad values raise `helm_python.HelmValuesError` (values.schema.json; the message names the key)
    or `helm_python.HelmRenderError` (a template's `fail`, e.g. a cross-field check).
    """
    import helm_python
    import yaml

    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
    manifests: list[Manifest] = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt") or Path(path).name.startswith("_"):
            continue
        for document in yaml.safe_load_all(rendered[path]):
            if document is None:
                continue
            if not isinstance(document, dict) or "kind" not in document or "metadata" not in document:
                raise ValueError(f"{path}: rendered a document without kind/metadata: {document!r}")
            manifests.append(document)
    return manifests


def lint_chart(values: dict[str, Any] | None = None) -> list[str]:
    """`helm lint --strict --kube-version v<KUBERNETES_VERSION>` of the chart: its warnings and errors as
    "path: message" strings (info findings such as "icon is recommended" are left out). Empty means clean.

    Helm's lint renders leniently and skips the templates' `fail` cross-field checks; `render_chart` raises
    for those."""
    import helm_python

    report = helm_python.lint(CHART_DIR, values or {}, strict=True, kube_version=f"v{KUBERNETES_VERSION}")
    problems: list[str] = []
    for message in report.get("messages", []):
        if int(message.get("severity", 0)) >= 2:
            problems.append(f"{message.get('path', '')}: {str(message.get('error', '')).strip()}")
    reported = " ".join(problems)
    problems += [str(err).strip() for err in report.get("errors", []) if str(err).strip() not in reported]
    return problems


def _name(manifest: Manifest) -> str:
    return f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"


def _check_monitor(manifest: Manifest) -> list[str]:
    """Structural check of a ServiceMonitor/PodMonitor: only the fields this chart uses."""
    where = _name(manifest)
    problems = []
    if manifest.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"{where}: apiVersion must be monitoring.coreos.com/v1, not {manifest.get('apiVersion')!r}")
    metadata = manifest.get("metadata") or {}
    if not isinstance(metadata.get("name"), str) or not metadata["name"]:
        problems.append(f"{where}: metadata.name missing")
    labels = metadata.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        problems.append(f"{where}: metadata.labels must map strings to strings")
    spec = manifest.get("spec")
    if not isinstance(spec, dict):
        return problems + [f"{where}: spec missing"]
    match = (spec.get("selector") or {}).get("matchLabels")
    if not isinstance(match, dict) or not match or not all(isinstance(v, str) for v in match.values()):
        problems.append(f"{where}: spec.selector.matchLabels must be a non-empty map of strings")
    key = "endpoints" if manifest.get("kind") == "ServiceMonitor" else "podMetricsEndpoints"
    endpoints = spec.get(key)
    if not isinstance(endpoints, list) or not endpoints:
        return problems + [f"{where}: spec.{key} must be a non-empty list"]
    for i, endpoint in enumerate(endpoints):
        if not isinstance(endpoint, dict):
            problems.append(f"{where}: spec.{key}[{i}] must be a mapping")
            continue
        if not isinstance(endpoint.get("port"), str) or not endpoint["port"]:
            problems.append(f"{where}: spec.{key}[{i}].port must be a port name")
        if not str(endpoint.get("path", "")).startswith("/"):
            problems.append(f"{where}: spec.{key}[{i}].path must start with /")
        interval = str(endpoint.get("interval", ""))
        if not re.fullmatch(r"[0-9]+(ms|s|m|h)", interval):
            problems.append(f"{where}: spec.{key}[{i}].interval must be a duration like 5s, not {interval!r}")
    return problems


def validate_manifests(manifests: list[Manifest], version: str = KUBERNETES_VERSION) -> list[str]:
    """Problems with the manifests, as "Kind/name: message" strings; empty means valid.

    Built-in kinds are validated by `kubernetes_validate` in strict mode (unknown fields are errors) against
    the schemas of Kubernetes `version`. The CRD kinds (ServiceMonitor, PodMonitor) have no schema there:
    they get a structural check only (apiVersion, metadata.labels, spec.selector.matchLabels and every
    endpoint's port/path/interval), not a validation against the prometheus-operator CRD.
    """
    import kubernetes_validate

    problems: list[str] = []
    for manifest in manifests:
        if manifest.get("kind") in CRD_KINDS:
            problems += _check_monitor(manifest)
            continue
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            problems.append(f"{_name(manifest)}: {path + ': ' if path else ''}{err.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(
                f"{_name(manifest)}: no schema for {manifest.get('apiVersion')} {manifest.get('kind')} in Kubernetes {version}"
            )
    return problems


def find(manifests: list[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    """The one manifest of `kind` named `<fullname><name_suffix>` (a leading "-" is added when missing).

    `<fullname>` is the release's base name, the shortest name among the manifests (every object of the
    chart is `<fullname>` or `<fullname>-<something>`): `find(m, "Service")` is the ClusterIP Service,
    `find(m, "Service", "replicas")` the headless one. Raises LookupError naming what there is otherwise.
    """
    names = [str(m.get("metadata", {}).get("name", "")) for m in manifests]
    if not names:
        raise LookupError("no manifests")
    fullname = min(names, key=len)
    suffix = f"-{name_suffix}" if name_suffix and not name_suffix.startswith("-") else name_suffix
    wanted = fullname + suffix
    hits = [m for m in manifests if m.get("kind") == kind and m.get("metadata", {}).get("name") == wanted]
    if len(hits) != 1:
        there = sorted(_name(m) for m in manifests)
        raise LookupError(f"{len(hits)} manifests {kind}/{wanted} (want exactly one); rendered: {', '.join(there)}")
    return hits[0]


def envoy_config(manifests: list[Manifest]) -> dict[str, Any]:
    """The Envoy bootstrap config (envoy.yaml of the `<fullname>-envoy` ConfigMap), parsed."""
    import yaml

    data = find(manifests, "ConfigMap", "envoy").get("data") or {}
    if ENVOY_CONFIG_KEY not in data:
        raise LookupError(f"the Envoy ConfigMap has no {ENVOY_CONFIG_KEY} (keys: {sorted(data)})")
    config = yaml.safe_load(data[ENVOY_CONFIG_KEY])
    if not isinstance(config, dict):
        raise ValueError(f"{ENVOY_CONFIG_KEY} is not a mapping")
    return config


def _seconds(value: float | str) -> str:
    """An Envoy (protobuf JSON) duration: 0.5 or "0.5s" -> "0.5s"."""
    text = value if isinstance(value, str) else f"{value:g}s"
    if not text.endswith("s") or not text[:-1].replace(".", "", 1).isdigit():
        raise ValueError(f"not a duration in seconds: {value!r}")
    return text


def loopback_envoy_config(
    config: dict[str, Any],
    replicas: list[tuple[int, int]],
    listen_port: int,
    admin_port: int,
    health_check_interval: float | str = "0.5s",
) -> dict[str, Any]:
    """A copy of the chart's Envoy config that runs on one machine, in front of local replicas.

    `replicas` are (grpc_port, health_port) pairs of servers on 127.0.0.1. The upstream cluster becomes
    STATIC with one endpoint per pair (health checks go to its health port, traffic to its gRPC port), the
    listener binds 127.0.0.1:`listen_port`, the admin interface 127.0.0.1:`admin_port`, and the active
    health check runs every `health_check_interval` (its other intervals the chart sets follow). Everything else (load-balancing policy, HTTP/2
    upstream, timeouts, circuit breakers, the health check's path and thresholds) stays as the chart has it.
    """
    if not replicas:
        raise ValueError("at least one replica (grpc_port, health_port)")
    out = copy.deepcopy(config)
    out["admin"]["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": int(admin_port)}}
    listeners = out["static_resources"]["listeners"]
    if len(listeners) != 1:
        raise ValueError(f"expected the chart's one listener, got {len(listeners)}")
    listeners[0]["address"] = {"socket_address": {"address": "127.0.0.1", "port_value": int(listen_port)}}
    clusters = [c for c in out["static_resources"]["clusters"] if c["name"] == ENVOY_CLUSTER]
    if len(clusters) != 1:
        raise ValueError(f"expected one cluster {ENVOY_CLUSTER!r} in the chart's Envoy config")
    _make_static(clusters[0], replicas)
    _set_health_check_interval(clusters[0], _seconds(health_check_interval))
    return out


def _make_static(cluster: dict[str, Any], replicas: list[tuple[int, int]]) -> None:
    """The cluster with one loopback endpoint per (grpc_port, health_port) instead of the chart's DNS discovery."""
    # The chart's DNS discovery (the envoy.cluster.dns extension, or the older Cluster-level fields) goes.
    for dns_only in (
        "cluster_type",
        "dns_refresh_rate",
        "respect_dns_ttl",
        "dns_lookup_family",
        "dns_failure_refresh_rate",
    ):
        cluster.pop(dns_only, None)
    cluster["type"] = "STATIC"
    endpoints = [
        {
            "endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": int(grpc)}},
                "health_check_config": {"port_value": int(health)},
            }
        }
        for grpc, health in replicas
    ]
    cluster["load_assignment"] = {"cluster_name": ENVOY_CLUSTER, "endpoints": [{"lb_endpoints": endpoints}]}


def _set_health_check_interval(cluster: dict[str, Any], interval: str) -> None:
    for check in cluster.get("health_checks", []):
        check["interval"] = interval
        for other in ("no_traffic_interval", "unhealthy_interval", "unhealthy_edge_interval", "healthy_edge_interval"):
            if other in check:
                check[other] = interval


def dump_envoy_config(config: dict[str, Any], path: Path) -> Path:
    """Write an Envoy config as YAML (for `envoy -c`); returns `path`."""
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
