"""The Helm chart (deploy/helm/ditto-triton), checked offline: it renders through Helm's Go SDK with its
defaults and variants, every manifest validates against Kubernetes' schemas (strict, pinned version), helm
lint is clean, bad values fail at install naming the key, the manifests carry the serving facts (drain,
probes, GPU, shared memory, autoscaling), the Envoy config passes the real envoy binary's validation and,
on loopback, keeps a live stream on its replica while new ones go to the healthy replica. Also: the
Dockerfile lints and the prometheus-adapter values expose ditto_active_sessions."""

from __future__ import annotations

import copy
import http.server
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import grpc
import helm_python
import pytest
import support
import yaml

from ditto_triton.deploy import ASSETS_DIR, chart
from ditto_triton.model_repository import container, gpu_flavors

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ASSETS_DIR
BIN = Path(sys.executable).parent  # the virtualenv's bin/: envoy and hadolint come as wheels
ENVOY = BIN / "envoy"
HADOLINT = BIN / "hadolint"

VARIANTS = {
    "defaults": {},
    "autoscaling-off": {"autoscaling": {"enabled": False}, "replicaCount": 3},
    "servicemonitor-off": {"metrics": {"serviceMonitor": {"enabled": False}}},
    "cache-pvc": {"cache": {"existingClaim": "ditto-cache"}},
    "model-repository-s3": {
        "modelRepository": {"uri": "s3://bucket/repo", "envFrom": [{"secretRef": {"name": "ditto-s3"}}]}
    },
    "weights-pvc": {"weights": {"existingClaim": "ditto-weights"}},
    "everything-optional": {
        "ditto": {"warpRunner": "plugin", "cudaGraphs": True},
        "extraEnv": [{"name": "LOG_VERBOSE", "value": "1"}],
        "cache": {"sizeLimit": "50Gi"},
        "podDisruptionBudget": {"enabled": False},
        "envoy": {"lbPolicy": "ROUND_ROBIN", "service": {"type": "LoadBalancer"}},
        "metrics": {"serviceMonitor": {"labels": {"release": "kube-prometheus-stack"}}},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "podAnnotations": {"example.com/team": "avatars"},
        "imagePullSecrets": [{"name": "registry"}],
        "securityContext": {"allowPrivilegeEscalation": False},
    },
}


def triton(manifests: list[dict]) -> dict:
    """The Triton container of the replicas' Deployment."""
    containers = chart.find(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["triton"]
    return containers[0]


def env_of(manifests: list[dict]) -> dict[str, str]:
    env = triton(manifests)["env"]
    assert all(set(e) == {"name", "value"} for e in env)  # plain values, no valueFrom
    return {e["name"]: e["value"] for e in env}


def lb_policy(cluster: dict) -> tuple[str, str | None]:
    """(policy, selection method) of an Envoy cluster's load_balancing_policy extension."""
    [policy] = cluster["load_balancing_policy"]["policies"]
    extension = policy["typed_extension_config"]
    return extension["name"].removeprefix("envoy.load_balancing_policies."), extension["typed_config"].get(
        "selection_method"
    )


def kinds(manifests: list[dict]) -> list[str]:
    return sorted(m["kind"] for m in manifests)


@pytest.fixture(scope="module")
def defaults() -> list[dict]:
    return chart.render_chart()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_chart_renders_validates_and_lints(variant):
    values = VARIANTS[variant]
    manifests = chart.render_chart(values)
    assert chart.validate_manifests(manifests) == []
    assert chart.lint_chart(values) == []
    for m in manifests:
        assert m["metadata"]["namespace"] == "ditto", m["metadata"]["name"]  # the release's namespace
        assert m["metadata"]["labels"]["app.kubernetes.io/instance"] == "ditto"
    env = env_of(manifests)
    deployment = chart.find(manifests, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in triton(manifests)["volumeMounts"]}
    if variant == "autoscaling-off":
        assert deployment["spec"]["replicas"] == 3
        assert "HorizontalPodAutoscaler" not in kinds(manifests)
    else:
        assert "replicas" not in deployment["spec"]  # the HPA owns the count
        chart.find(manifests, "HorizontalPodAutoscaler")
    if variant == "servicemonitor-off":
        assert "ServiceMonitor" not in kinds(manifests)
    else:
        chart.find(manifests, "ServiceMonitor")
    if variant == "cache-pvc":
        assert volumes["cache"] == {"name": "cache", "persistentVolumeClaim": {"claimName": "ditto-cache"}}
    elif variant == "everything-optional":
        assert volumes["cache"]["emptyDir"] == {"sizeLimit": "50Gi"}
    else:
        assert volumes["cache"] == {"name": "cache", "emptyDir": {}}
    assert mounts["/cache"]["name"] == "cache" and env["DITTO_CACHE"] == "/cache"
    if variant == "model-repository-s3":
        assert env["DITTO_MODEL_REPOSITORY"] == "s3://bucket/repo"
        assert triton(manifests)["envFrom"] == [{"secretRef": {"name": "ditto-s3"}}]
    else:
        assert "DITTO_MODEL_REPOSITORY" not in env and "envFrom" not in triton(manifests)
    if variant == "weights-pvc":
        assert env["DITTO_WEIGHTS"] == "/weights"
        assert volumes["weights"]["persistentVolumeClaim"] == {"claimName": "ditto-weights", "readOnly": True}
        assert mounts["/weights"] == {"name": "weights", "mountPath": "/weights", "readOnly": True}
    else:
        assert env["DITTO_WEIGHTS"] == "synthetic" and "/weights" not in mounts and "weights" not in volumes
    if variant == "everything-optional":
        assert env["DITTO_WARP_RUNNER"] == "plugin" and env["DITTO_CUDA_GRAPHS"] == "true"
        assert env["LOG_VERBOSE"] == "1"
        assert "PodDisruptionBudget" not in kinds(manifests)
        assert chart.find(manifests, "Service", "envoy")["spec"]["type"] == "LoadBalancer"
        assert lb_policy(chart.envoy_config(manifests)["static_resources"]["clusters"][0]) == ("round_robin", None)
        assert chart.find(manifests, "ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        pod = deployment["spec"]["template"]
        assert pod["metadata"]["annotations"] == {"example.com/team": "avatars"}
        assert pod["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
        assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    else:
        assert "DITTO_WARP_RUNNER" not in env and env["DITTO_CUDA_GRAPHS"] == "false"
    # What the chart sets is what the image's entrypoint accepts.
    settings = container.Settings.from_env(env)
    assert settings.flavor == "tensorrt" and settings.profile == "full" and settings.max_sessions == 8


def test_default_chart_objects(defaults):
    assert kinds(defaults) == sorted(
        [
            "ConfigMap",
            "Deployment",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Service",
            "Service",
            "Service",
            "ServiceMonitor",
        ]
    )
    assert sorted(m["metadata"]["name"] for m in defaults if m["kind"] == "Service") == [
        "ditto-ditto-triton",
        "ditto-ditto-triton-envoy",
        "ditto-ditto-triton-replicas",
    ]
    # A release named after the chart does not repeat it; another namespace is used everywhere.
    other = chart.render_chart(release="ditto-triton", namespace="avatars")
    assert chart.find(other, "Deployment")["metadata"]["name"] == "ditto-triton"
    assert {m["metadata"]["namespace"] for m in other} == {"avatars"}
    cluster = chart.envoy_config(other)["static_resources"]["clusters"][0]
    address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"]["address"] == "ditto-triton-replicas.avatars.svc.cluster.local"
    with pytest.raises(LookupError, match="Deployment/ditto-ditto-triton-nope"):
        chart.find(defaults, "Deployment", "nope")


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"sessions": {"maxPerReplica": 0}}, "/sessions/maxPerReplica"),
        ({"sessions": {"maxPerReplica": "8"}}, "/sessions/maxPerReplica"),
        ({"envoy": {"lbPolicy": "RANDOM"}}, "/envoy/lbPolicy"),
        ({"drain": {"timeoutSeconds": -1}}, "/drain/timeoutSeconds"),
        ({"ditto": {"flavor": "tflite"}}, "/ditto/flavor"),
        ({"modelRepository": {"uri": "http://bucket/repo"}}, "/modelRepository/uri"),
        ({"shm": {"sizeLimit": "4 gigs"}}, "/shm/sizeLimit"),
        ({"envoy": {"healthCheck": {"interval": "2"}}}, "/envoy/healthCheck/interval"),
        ({"autoscaling": {"targetSessionPerReplica": 6}}, "targetSessionPerReplica"),  # a typo
    ],
)
def test_bad_values_fail_naming_the_key(values, key):
    with pytest.raises(helm_python.HelmValuesError, match=key):
        chart.render_chart(values)
    assert any(key in problem for problem in chart.lint_chart(values))


def test_cross_field_checks_fail_at_render():
    with pytest.raises(helm_python.HelmRenderError, match="targetSessionsPerReplica"):
        chart.render_chart({"autoscaling": {"targetSessionsPerReplica": 9}})  # above sessions.maxPerReplica 8
    with pytest.raises(helm_python.HelmRenderError, match="minReplicas"):
        chart.render_chart({"autoscaling": {"minReplicas": 5, "maxReplicas": 3}})
    # Without autoscaling there is no target to compare.
    chart.render_chart({"autoscaling": {"enabled": False, "targetSessionsPerReplica": 9}})


@pytest.mark.parametrize("flavor", ["tensorrt", "onnxruntime", "torch"])
def test_warp_runner_choices_match_the_entrypoints(flavor):
    for runner in ["", "torch", "plugin", "onnxruntime"]:
        try:
            gpu_flavors.check_warp_runner(flavor, runner or None)
        except ValueError:
            with pytest.raises(helm_python.HelmRenderError, match="ditto.warpRunner"):
                chart.render_chart({"ditto": {"flavor": flavor, "warpRunner": runner}})
        else:
            env = env_of(chart.render_chart({"ditto": {"flavor": flavor, "warpRunner": runner}}))
            assert container.Settings.from_env(env).warp_runner == (runner or None)


def test_replicas_drain_probe_and_use_one_gpu():
    manifests = chart.render_chart({"drain": {"timeoutSeconds": 120}, "sessions": {"maxPerReplica": 12}})
    pod = chart.find(manifests, "Deployment")["spec"]["template"]["spec"]
    c = triton(manifests)
    assert pod["terminationGracePeriodSeconds"] == 120 + 30
    assert c["lifecycle"]["preStop"] == {"exec": {"command": ["ditto-drain", "--wait"]}}
    env = env_of(manifests)
    assert env["DITTO_DRAIN_TIMEOUT_S"] == "120" and env["DITTO_MAX_SESSIONS"] == "12"
    assert (
        env["DITTO_HEALTH_PORT"] == "8003" and env["DITTO_FLAVOR"] == "tensorrt" and env["DITTO_MAX_BATCH_SIZE"] == "8"
    )
    assert c["image"] == "ditto-triton:0.1.0" and "command" not in c and "args" not in c  # the image's entrypoint
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002, "health": 8003}
    ready = c["readinessProbe"]
    assert ready["httpGet"] == {"path": "/ready", "port": "health"} and ports[ready["httpGet"]["port"]] == 8003
    assert ready["periodSeconds"] == 2 and ready["failureThreshold"] == 1
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = c["startupProbe"]
    assert startup["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert startup["periodSeconds"] == 10 and startup["failureThreshold"] == 90
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    volumes = {v["name"]: v for v in pod["volumes"]}
    shm = next(m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm")
    assert volumes[shm["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["ditto-container"]' in dockerfile


def test_services_select_the_replicas(defaults):
    deployment = chart.find(defaults, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    envoy_labels = chart.find(defaults, "Deployment", "envoy")["spec"]["template"]["metadata"]["labels"]
    main, headless = chart.find(defaults, "Service"), chart.find(defaults, "Service", "replicas")
    for service in (main, headless):
        selector = service["spec"]["selector"]
        assert selector.items() <= pod_labels.items() and not selector.items() <= envoy_labels.items()
    assert {p["name"]: p["port"] for p in main["spec"]["ports"]} == {"grpc": 8001, "http": 8000, "metrics": 8002}
    assert main["spec"]["type"] == "ClusterIP"
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]} == {"grpc": 8001, "health": 8003}
    envoy_service = chart.find(defaults, "Service", "envoy")
    assert envoy_service["spec"]["selector"].items() <= envoy_labels.items()
    assert [(p["name"], p["port"]) for p in envoy_service["spec"]["ports"]] == [("grpc", 8001)]
    pdb = chart.find(defaults, "PodDisruptionBudget")
    assert (
        pdb["spec"]["maxUnavailable"] == 1
        and pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    )


def test_service_monitor_scrapes_the_metrics_port(defaults):
    monitor = chart.find(defaults, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selected = [
        m
        for m in defaults
        if m["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= m["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == [chart.find(defaults, "Service")["metadata"]["name"]]
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "5s"}]
    assert "metrics" in {p["name"] for p in selected[0]["spec"]["ports"]}
    # The structural check of the CRD catches what the chart uses.
    broken = copy.deepcopy(monitor)
    broken["spec"]["endpoints"][0]["interval"] = "five"
    del broken["spec"]["selector"]
    problems = chart.validate_manifests([broken])
    assert len(problems) == 2 and "matchLabels" in problems[0] and "interval" in problems[1]


def test_hpa_scales_on_active_sessions():
    manifests = chart.render_chart({"autoscaling": {"targetSessionsPerReplica": 5, "maxReplicas": 12}})
    hpa = chart.find(manifests, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    deployment = chart.find(manifests, "Deployment")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 12)
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == "ditto_active_sessions"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "5"}
    up, down = hpa["spec"]["behavior"]["scaleUp"], hpa["spec"]["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 0 and up["policies"] == [
        {"type": "Pods", "value": 2, "periodSeconds": 60}
    ]
    assert down["stabilizationWindowSeconds"] == 600 and down["policies"] == [
        {"type": "Pods", "value": 1, "periodSeconds": 300}
    ]


def test_prometheus_adapter_values_expose_active_sessions():
    text = (DEPLOY / "prometheus-adapter-values.yaml").read_text()
    assert "helm install prometheus-adapter prometheus-community/prometheus-adapter" in text
    values = yaml.safe_load(text)
    assert values["rules"]["default"] is False
    [rule] = values["rules"]["custom"]
    assert rule["seriesQuery"] == 'ditto_active_sessions{namespace!="",pod!=""}'
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
    assert rule["name"]["as"] == "ditto_active_sessions"
    assert rule["metricsQuery"] == "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"


def test_envoy_config_keeps_sessions_on_one_replica(defaults):
    config = chart.envoy_config(defaults)
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    [listener] = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8001}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["codec_type"] == "AUTO" and hcm["stream_idle_timeout"] == "300s"
    [route] = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert route["match"] == {"prefix": "/"}
    assert route["route"] == {"cluster": "ditto_replicas", "timeout": "0s"}  # no timeout, no retry policy
    [cluster] = config["static_resources"]["clusters"]
    dns = cluster["cluster_type"]["typed_config"]
    assert cluster["cluster_type"]["name"] == "envoy.cluster.dns"  # STRICT_DNS, as Envoy 1.40 spells it
    assert dns["all_addresses_in_single_endpoint"] is False  # one host per pod
    assert dns["dns_refresh_rate"] == "2s" and dns["respect_dns_ttl"] is True
    assert lb_policy(cluster) == ("least_request", "FULL_SCAN")
    http = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert http["explicit_http_config"] == {"http2_protocol_options": {}}
    assert cluster["common_lb_config"] == {
        "ignore_new_hosts_until_first_hc": True,
        "healthy_panic_threshold": {"value": 0},
        "update_merge_window": "0s",
    }
    [threshold] = cluster["circuit_breakers"]["thresholds"]
    assert threshold["max_requests"] >= 10000 and threshold["max_pending_requests"] >= 10000
    [check] = cluster["health_checks"]
    assert check["timeout"] == "1s" and check["interval"] == "2s" and check["no_traffic_interval"] == "2s"
    assert check["unhealthy_threshold"] == 1 and check["healthy_threshold"] == 1
    assert check["http_health_check"] == {"path": "/ready", "codec_client_type": "HTTP1"}
    [endpoint] = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"]["socket_address"] == {
        "address": "ditto-ditto-triton-replicas.ditto.svc.cluster.local",
        "port_value": 8001,
    }
    assert endpoint["endpoint"]["health_check_config"] == {"port_value": 8003}
    # The proxies' pods.
    envoy = chart.find(defaults, "Deployment", "envoy")
    assert envoy["spec"]["replicas"] == 2
    [c] = envoy["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "envoyproxy/envoy:v1.40.0" and c["args"] == ["-c", "/etc/envoy/envoy.yaml"]
    assert c["readinessProbe"]["tcpSocket"] == {"port": "grpc"}
    [volume] = envoy["spec"]["template"]["spec"]["volumes"]
    assert volume["configMap"]["name"] == chart.find(defaults, "ConfigMap", "envoy")["metadata"]["name"]
    assert [m["mountPath"] for m in c["volumeMounts"]] == ["/etc/envoy"]
    # The image is the envoy the tests run.
    version = subprocess.run([str(ENVOY), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"/{c['image'].rsplit(':v', 1)[1]}/" in version


def envoy_validate(config: dict, path: Path) -> subprocess.CompletedProcess:
    chart.dump_envoy_config(config, path)
    return subprocess.run(
        [str(ENVOY), "--mode", "validate", "-c", str(path), "-l", "warning"], capture_output=True, text=True, timeout=60
    )


def test_envoy_validates_the_chart_config_and_its_loopback_copy(tmp_path, defaults):
    config = chart.envoy_config(defaults)
    result = envoy_validate(config, tmp_path / "chart.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout and "Deprecated" not in result.stdout + result.stderr
    loopback = chart.loopback_envoy_config(
        config, [(18001, 18003), (18101, 18103)], listen_port=18500, admin_port=18901
    )
    result = envoy_validate(loopback, tmp_path / "loopback.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Deprecated" not in result.stdout + result.stderr
    [cluster] = loopback["static_resources"]["clusters"]
    assert cluster["type"] == "STATIC" and "cluster_type" not in cluster
    hosts = [e["endpoint"] for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    assert [(h["address"]["socket_address"]["port_value"], h["health_check_config"]["port_value"]) for h in hosts] == [
        (18001, 18003),
        (18101, 18103),
    ]
    assert {h["address"]["socket_address"]["address"] for h in hosts} == {"127.0.0.1"}
    assert cluster["health_checks"][0]["interval"] == cluster["health_checks"][0]["no_traffic_interval"] == "0.5s"
    assert loopback["static_resources"]["listeners"][0]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 18500,
    }
    assert loopback["admin"]["address"]["socket_address"]["port_value"] == 18901
    # The rest is the chart's, and the chart's config is left as it was.
    for key in (
        "load_balancing_policy",
        "typed_extension_protocol_options",
        "circuit_breakers",
        "common_lb_config",
        "connect_timeout",
    ):
        assert cluster[key] == config["static_resources"]["clusters"][0][key]
    assert (
        loopback["static_resources"]["listeners"][0]["filter_chains"]
        == config["static_resources"]["listeners"][0]["filter_chains"]
    )
    assert config == chart.envoy_config(defaults)
    # A broken config does fail validation (the check is real).
    broken = copy.deepcopy(loopback)
    broken["static_resources"]["clusters"][0]["load_balancing_policy"]["policies"][0]["typed_extension_config"][
        "typed_config"
    ]["selection_method"] = "FEWEST_SESSIONS"
    assert envoy_validate(broken, tmp_path / "broken.yaml").returncode != 0


# --- Envoy on loopback in front of two fake replicas -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeReplica:
    """A gRPC server answering a bidi stream with its name, plus the supervisor's /ready on a health port."""

    def __init__(self, name: str):
        self.name, self.ready = name, False
        self.grpc_port, self.health_port = free_port(), free_port()
        replica = self

        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                code = 200 if self.path == "/ready" and replica.ready else 503
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.health = http.server.ThreadingHTTPServer(("127.0.0.1", self.health_port), Health)
        threading.Thread(target=self.health.serve_forever, daemon=True).start()

        def stream(requests, context):
            for request in requests:
                yield self.name.encode() + b":" + request

        handler = grpc.method_handlers_generic_handler(
            "ditto.Test", {"Stream": grpc.stream_stream_rpc_method_handler(stream)}
        )
        from concurrent.futures import ThreadPoolExecutor

        self.server = grpc.server(ThreadPoolExecutor(max_workers=8), handlers=[handler])
        self.server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        self.server.start()

    def stop(self):
        self.server.stop(0)
        self.health.shutdown()
        self.health.server_close()


def host_flags(admin_port: int) -> dict[int, str]:
    """Envoy's health flags of each upstream host, by gRPC port."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/clusters", timeout=2).read().decode()
    flags = {}
    for line in text.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == "ditto_replicas" and parts[2] == "health_flags":
            flags[int(parts[1].rsplit(":", 1)[1])] = parts[3]
    return flags


def wait_for(condition, what: str):
    return support.wait_for(condition, what, retry_on=(OSError,))  # OSError: envoy still starting


class Session:
    """One bidi stream through Envoy: send a chunk, read which replica answered."""

    def __init__(self, channel: grpc.Channel):
        self.queue: list[bytes | None] = []
        self.cv = threading.Condition()
        call = channel.stream_stream("/ditto.Test/Stream")
        self.responses = call(self._requests(), timeout=30)

    def _requests(self):
        while True:
            with self.cv:
                self.cv.wait_for(lambda: self.queue)
                item = self.queue.pop(0)
            if item is None:
                return
            yield item

    def send(self, chunk: bytes) -> str:
        with self.cv:
            self.queue.append(chunk)
            self.cv.notify()
        reply = next(self.responses)
        name, echoed = reply.split(b":", 1)
        assert echoed == chunk
        return name.decode()

    def close(self):
        with self.cv:
            self.queue.append(None)
            self.cv.notify()
        assert list(self.responses) == []


def probe(channel: grpc.Channel) -> str | None:
    """The replica one short session lands on, or None when Envoy has no healthy replica for it yet."""
    try:
        session = Session(channel)
        name = session.send(b"probe")
        session.close()
        return name
    except grpc.RpcError:
        return None


def test_loopback_envoy_keeps_a_draining_replicas_streams_and_sends_new_ones_elsewhere(tmp_path, defaults):
    """Three fake replicas behind the chart's Envoy config (made loopback): a serves, b and c are starting;
    then b becomes ready and a drains. Live sessions stay on a, every new one goes to b: not to the
    draining a, although by load alone LEAST_REQUEST would pick it, and not to the still-starting c,
    although with one healthy replica of three Envoy's default panic mode would balance over all three."""
    replicas = {name: FakeReplica(name) for name in "abc"}
    a, b, c = replicas.values()
    listen, admin = free_port(), free_port()
    pairs = [(r.grpc_port, r.health_port) for r in replicas.values()]
    config = chart.loopback_envoy_config(chart.envoy_config(defaults), pairs, listen, admin)
    path = chart.dump_envoy_config(config, tmp_path / "envoy.yaml")
    log = (tmp_path / "envoy.log").open("w")
    envoy = subprocess.Popen(
        # One worker thread: once a probe sees a health change, every new stream does.
        [str(ENVOY), "-c", str(path), "--disable-hot-restart", "--concurrency", "1", "-l", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{listen}")

    def flags_are(**want: str):
        return lambda: host_flags(admin) == {replicas[n].grpc_port: f for n, f in want.items()}

    try:
        a.ready = True  # b and c are still "starting": /ready 503
        wait_for(flags_are(a="healthy", b="/failed_active_hc", c="/failed_active_hc"), "a healthy, b and c not")
        wait_for(lambda: probe(channel) == "a", "a session through Envoy")
        # By load alone LEAST_REQUEST would send some of these to the idle b or c.
        sessions = [Session(channel) for _ in range(4)]
        assert {s.send(b"chunk0") for s in sessions} == {"a"}  # nothing reaches a replica that is not ready
        b.ready = True
        wait_for(flags_are(a="healthy", b="healthy", c="/failed_active_hc"), "b healthy")
        wait_for(lambda: probe(channel) == "b", "b to get sessions")
        # a drains (within Envoy's default 1 s merge window of b's change, which the chart turns off).
        a.ready = False
        wait_for(flags_are(a="/failed_active_hc", b="healthy", c="/failed_active_hc"), "a draining")
        # More new sessions than a has: by load alone LEAST_REQUEST would send some of them to a.
        fresh = [Session(channel) for _ in range(8)]
        assert [s.send(b"chunk0") for s in fresh] == ["b"] * 8
        assert [s.send(b"chunk1") for s in sessions] == ["a"] * 4  # the draining replica's streams go on
        for s in sessions + fresh:
            s.close()
    finally:
        channel.close()
        envoy.terminate()
        envoy.wait(timeout=10)
        log.close()
        for r in replicas.values():
            r.stop()
    assert "critical" not in (tmp_path / "envoy.log").read_text()


# --- the Dockerfile ---------------------------------------------------------------------------------------


def test_dockerfile_lints(tmp_path):
    # An explicit config (fail on every finding, style included) so that no user-level hadolint config
    # can weaken the check; deploy/.hadolint.yaml would list ignored rules, none are needed.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    assert not (DEPLOY / ".hadolint.yaml").exists()
    result = subprocess.run(
        [str(HADOLINT), "--config", str(config), "deploy/Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The check bites: a shell-form ENTRYPOINT is a finding.
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        (DEPLOY / "Dockerfile").read_text().replace('ENTRYPOINT ["ditto-container"]', "ENTRYPOINT ditto-container")
    )
    result = subprocess.run(
        [str(HADOLINT), "--config", str(config), str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "DL3025" in result.stdout
