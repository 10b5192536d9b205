"""The Helm chart (helm/tocsin), rendered offline with default values and with the multi-pool
example (helm/tocsin/ci/multipool-values.yaml): schema validity and the properties that
matter in production."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deploy_support import (
    CHART,
    DRAIN_STEPS,
    DUMMY_SECRETS,
    K8S_VERSIONS,
    Rendered,
    container,
    env_of,
    env_section,
    parse_duration,
    render,
    sections_for,
    tocsin_binary,
)

KEDA_CRD = Path(__file__).parent / "schemas" / "keda.sh_scaledobjects.yaml"
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}


def both(default_render: Rendered, multipool_render: Rendered) -> list[Rendered]:
    return [default_render, multipool_render]


@pytest.fixture(scope="module", params=["default", "multipool"])
def rendered(request, default_render, multipool_render) -> Rendered:
    return default_render if request.param == "default" else multipool_render


def command_of(workload: dict[str, Any]) -> str:
    return container(workload)["args"][0]


def component_of(workload: dict[str, Any]) -> str:
    return workload["metadata"]["labels"]["app.kubernetes.io/component"]


# --- rendering and schemas --------------------------------------------------------------------


def test_default_render_has_every_component(default_render: Rendered) -> None:
    names = set(default_render.names())
    for expected in [
        "Deployment/tocsin-ingest",
        "Deployment/tocsin-api",
        "Deployment/tocsin-scheduler",
        "Deployment/tocsin-worker-default",
        "Service/tocsin-ingest",
        "Service/tocsin-api",
        "HorizontalPodAutoscaler/tocsin-ingest",
        "Job/tocsin-migrate",
        "ServiceAccount/tocsin",
    ]:
        assert expected in names
    for component in ("ingest", "api", "scheduler", "worker-default"):
        assert f"PodDisruptionBudget/tocsin-{component}" in names
        assert f"NetworkPolicy/tocsin-{component}" in names
    # KEDA and the Prometheus operator are optional: nothing needs their CRDs by default.
    assert not default_render.of_kind("ScaledObject")
    assert not default_render.of_kind("ServiceMonitor")


def test_multipool_render_has_a_deployment_per_pool(multipool_render: Rendered) -> None:
    for pool in ("acme", "globex", "default"):
        multipool_render.get("Deployment", f"tocsin-worker-{pool}")
        multipool_render.get("PodDisruptionBudget", f"tocsin-worker-{pool}")
        multipool_render.get("NetworkPolicy", f"tocsin-worker-{pool}")
    assert {o["metadata"]["name"] for o in multipool_render.of_kind("ScaledObject")} == {
        "tocsin-worker-acme",
        "tocsin-worker-globex",
    }
    assert len(multipool_render.of_kind("ServiceMonitor")) == 1


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_objects_validate_against_kubernetes_schemas(rendered: Rendered, version: str) -> None:
    checked = 0
    for obj in rendered.objects:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: {error}")
        checked += 1
    assert checked >= 10


def _strict(schema: Any) -> Any:
    """A CRD's structural schema, with unknown fields rejected (the API server would prune
    them silently: a typo in a ScaledObject field would just be lost)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def scaledobject_schema() -> dict[str, Any]:
    crd = yaml.safe_load(KEDA_CRD.read_text())
    assert crd["spec"]["names"]["kind"] == "ScaledObject"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return _strict(version["schema"]["openAPIV3Schema"])


def test_scaledobjects_validate_against_the_keda_crd(multipool_render: Rendered, scaledobject_schema) -> None:
    objects = multipool_render.of_kind("ScaledObject")
    assert objects
    for obj in objects:
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        jsonschema.Draft7Validator(scaledobject_schema).validate(obj)


def test_the_keda_check_catches_a_misspelt_field(multipool_render: Rendered, scaledobject_schema) -> None:
    obj = copy.deepcopy(multipool_render.of_kind("ScaledObject")[0])
    obj["spec"]["maxReplicas"] = obj["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(scaledobject_schema).validate(obj)


@pytest.mark.parametrize("which", ["default", "multipool"])
def test_helm_lint_is_clean(which: str, multipool_values) -> None:
    import helm_python as helm

    result = helm.lint(str(CHART), multipool_values if which == "multipool" else None)
    assert result["errors"] == []
    problems = [m for m in result["messages"] if m["severity"] >= 2]  # warnings and errors
    assert problems == []


# --- probes, shutdown -------------------------------------------------------------------------


def test_ingest_and_api_probe_health_and_readiness(rendered: Rendered) -> None:
    for component, port in (("ingest", "http"), ("api", "http")):
        c = container(rendered.get("Deployment", f"tocsin-{component}"))
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}


def test_scheduler_and_worker_probe_the_observability_listener_by_default(default_render: Rendered) -> None:
    for name in ("tocsin-scheduler", "tocsin-worker-default"):
        c = container(default_render.get("Deployment", name))
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert env_of(c)["TOCSIN_TELEMETRY__LISTEN"] == "0.0.0.0:9090"


def test_scheduler_and_worker_probe_the_telemetry_port_when_enabled(multipool_render: Rendered) -> None:
    workloads = [multipool_render.get("Deployment", "tocsin-scheduler")] + [
        d for d in multipool_render.of_kind("Deployment") if component_of(d) == "worker"
    ]
    for workload in workloads:
        c = container(workload)
        assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in c["ports"]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert env_of(c)["TOCSIN_TELEMETRY__LISTEN"] == "0.0.0.0:9090"


def test_termination_grace_outlasts_every_drain_step(rendered: Rendered) -> None:
    for workload in rendered.of_kind("Deployment"):
        component = component_of(workload)
        pod = workload["spec"]["template"]["spec"]
        c = container(workload)
        grace = parse_duration(env_of(c)["TOCSIN_SHUTDOWN__GRACE"])
        pre_stop = 0
        if "lifecycle" in c:
            pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
        needed = pre_stop + DRAIN_STEPS[component] * grace
        assert pod["terminationGracePeriodSeconds"] > needed, workload["metadata"]["name"]
        assert pod["terminationGracePeriodSeconds"] > grace


def test_grace_and_termination_period_come_from_one_value() -> None:
    rendered = render({"shutdown": {"graceSeconds": 45, "extraSeconds": 5}})
    worker = rendered.get("Deployment", "tocsin-worker-default")
    assert env_of(container(worker))["TOCSIN_SHUTDOWN__GRACE"] == "45s"
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 4 * 45 + 5
    scheduler = rendered.get("Deployment", "tocsin-scheduler")
    assert scheduler["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 2 * 45 + 5


# --- worker pools, KEDA -----------------------------------------------------------------------


def pools(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["labels"]["tocsin.io/worker-pool"]: d
        for d in rendered.of_kind("Deployment")
        if component_of(d) == "worker"
    }


def test_default_pool_consumes_every_tenant(default_render: Rendered) -> None:
    env = env_of(container(pools(default_render)["default"]))
    assert env["TOCSIN_WORKER__FILTER_SUBJECT"] == "tocsin.runs.>"
    assert env["TOCSIN_WORKER__CONSUMER"] == "workers"


def test_each_tenant_pool_gets_its_filter_and_consumer(multipool_render: Rendered, multipool_values) -> None:
    deployments = pools(multipool_render)
    assert set(deployments) == {p["name"] for p in multipool_values["workerPools"]}
    consumers = set()
    for pool in multipool_values["workerPools"]:
        env = env_of(container(deployments[pool["name"]]))
        assert env["TOCSIN_WORKER__FILTER_SUBJECT"] == f"tocsin.runs.{pool['tenant']}.>"
        assert env["TOCSIN_WORKER__CONSUMER"] == f"workers-{pool['tenant']}"
        consumers.add(env["TOCSIN_WORKER__CONSUMER"])
    assert len(consumers) == len(deployments)


def test_pool_settings_fall_back_to_worker_defaults(multipool_render: Rendered) -> None:
    deployments = pools(multipool_render)
    acme = env_of(container(deployments["acme"]))
    globex = env_of(container(deployments["globex"]))
    default = env_of(container(deployments["default"]))
    assert (acme["TOCSIN_WORKER__RUNNERS"], acme["TOCSIN_WORKER__RUNS_PER_RUNNER"]) == ("4", "8")
    assert (globex["TOCSIN_WORKER__RUNNERS"], globex["TOCSIN_WORKER__RUNS_PER_RUNNER"]) == ("2", "16")
    assert default["TOCSIN_WORKER__ACK_WAIT"] == "60s"
    assert container(deployments["acme"])["resources"]["limits"]["memory"] == "2Gi"
    assert container(deployments["globex"])["resources"]["limits"]["memory"] == "1Gi"
    # KEDA owns the replica count of the pools it scales
    assert "replicas" not in deployments["acme"]["spec"]
    assert deployments["default"]["spec"]["replicas"] == 1


def test_scaledobjects_follow_their_pool_consumer(multipool_render: Rendered, multipool_values) -> None:
    deployments = pools(multipool_render)
    for obj in multipool_render.of_kind("ScaledObject"):
        target = obj["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment"
        deployment = multipool_render.get("Deployment", target["name"])
        pool = deployment["metadata"]["labels"]["tocsin.io/worker-pool"]
        assert deployments[pool] is deployment
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "nats-jetstream"
        meta = trigger["metadata"]
        assert meta["stream"] == "RUNS"
        assert meta["consumer"] == env_of(container(deployment))["TOCSIN_WORKER__CONSUMER"]
        assert meta["natsServerMonitoringEndpoint"] == multipool_values["nats"]["monitoringEndpoint"]
        assert meta["account"] == "$G"
        assert all(isinstance(v, str) for v in meta.values())
    acme = multipool_render.get("ScaledObject", "tocsin-worker-acme")["spec"]
    assert (acme["minReplicaCount"], acme["maxReplicaCount"]) == (2, 20)
    assert acme["triggers"][0]["metadata"]["lagThreshold"] == "64"
    globex = multipool_render.get("ScaledObject", "tocsin-worker-globex")["spec"]
    # unset lagThreshold: one pod's capacity, runners * runsPerRunner
    assert globex["triggers"][0]["metadata"]["lagThreshold"] == str(2 * 16)
    assert (globex["minReplicaCount"], globex["maxReplicaCount"]) == (1, 5)


def render_error(values: dict[str, Any]) -> str:
    import helm_python as helm

    with pytest.raises(helm.HelmError) as caught:
        render(values)
    return str(caught.value)


@pytest.mark.parametrize(
    "filters",
    [
        ["tocsin.runs.>", "tocsin.runs.acme.>"],
        ["tocsin.runs.acme.>", "tocsin.runs.*.high"],
        ["tocsin.runs.*.high", "tocsin.runs.acme.high"],
        ["tocsin.runs.acme.*", "tocsin.runs.acme.low"],
    ],
)
def test_overlapping_pool_filters_are_refused(filters: list[str]) -> None:
    values = {"workerPools": [{"name": f"p{i}", "filterSubject": f} for i, f in enumerate(filters)]}
    assert "overlapping filter subjects" in render_error(values)


@pytest.mark.parametrize(
    "filters",
    [
        ["tocsin.runs.*.high", "tocsin.runs.*.normal", "tocsin.runs.*.low"],
        ["tocsin.runs.acme.>", "tocsin.runs.acmecorp.>", "tocsin.runs.globex.>"],
        ["tocsin.runs.acme.high", "tocsin.runs.acme.low"],
    ],
)
def test_disjoint_pool_filters_render(filters: list[str]) -> None:
    values = {"workerPools": [{"name": f"p{i}", "filterSubject": f} for i, f in enumerate(filters)]}
    rendered = render(values)
    envs = [env_of(container(d)) for d in pools(rendered).values()]
    assert sorted(e["TOCSIN_WORKER__FILTER_SUBJECT"] for e in envs) == sorted(filters)
    assert len({e["TOCSIN_WORKER__CONSUMER"] for e in envs}) == len(filters)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"workerPools": [{"name": "a", "tenant": "x"}, {"name": "b", "tenant": "y", "consumer": "workers-x"}]}, "share the durable consumer"),
        ({"workerPools": [{"name": "a", "tenant": "x"}, {"name": "a", "tenant": "y"}]}, "two pools are named"),
        ({"workerPools": [{"name": "Bad_Name"}]}, "must be 1-32 characters"),
        ({"workerPools": [{"name": "a", "filterSubject": "tocsin.alerts.>"}]}, "must start with tocsin.runs."),
        ({"workerPools": []}, "at least one pool"),
        ({"telemetry": {"listen": {"enabled": False}}, "workerDefaults": {"probes": {"enabled": False}}}, "needs telemetry.listen.enabled"),
        ({"telemetry": {"listen": {"enabled": False}}, "scheduler": {"probes": {"enabled": False}}}, "needs telemetry.listen.enabled"),
        ({"telemetry": {"listen": {"enabled": False}}, "scheduler": {"probes": {"enabled": False}}, "workerDefaults": {"probes": {"enabled": False}}, "serviceMonitor": {"enabled": True}}, "needs telemetry.listen.enabled"),
        ({"nats": {"url": "nats://user:pass@nats:4222"}}, "carries credentials"),
        ({"postgres": {"existingSecret": ""}}, "postgres.existingSecret is required"),
    ],
)
def test_misconfiguration_fails_at_render_time(values: dict[str, Any], message: str) -> None:
    assert message in render_error(values)


# --- security ---------------------------------------------------------------------------------


def test_no_container_runs_as_root(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"].get("runAsUser", 1) != 0
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True
            assert sc.get("runAsUser", 1) != 0
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc.get("privileged", False) is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "add" not in sc["capabilities"]


def test_writable_paths_are_volumes(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
            env = env_of(c)
            if "TOCSIN_WORKER__BUNDLE_DIR" in env:
                assert "emptyDir" in volumes[mounts[env["TOCSIN_WORKER__BUNDLE_DIR"]]]


def test_secrets_come_from_secret_references_only(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        env = env_of(container(workload))
        assert env["TOCSIN_POSTGRES__URL"][0] == "secret"
        if "TOCSIN_SECRETS__MASTER_KEY" in env:
            assert env["TOCSIN_SECRETS__MASTER_KEY"][0] == "secret"
        nats = env.get("TOCSIN_NATS__URL")
        if isinstance(nats, str):
            assert "@" not in nats, "a NATS URL with credentials must come from a Secret"
    for obj in rendered.objects:
        assert obj["kind"] != "Secret", "the chart references Secrets, it never creates them"


def test_master_key_reaches_only_workers_ingest_and_api(multipool_render: Rendered) -> None:
    # Workers decrypt playbook secrets, ingest webhook signing secrets, the API stores both.
    for workload in multipool_render.workloads():
        env = env_of(container(workload))
        if command_of(workload) in ("worker", "ingest", "api"):
            assert env["TOCSIN_SECRETS__MASTER_KEY"] == ("secret", "tocsin-master-key", "master-key")
        else:
            assert "TOCSIN_SECRETS__MASTER_KEY" not in env


def test_each_container_gets_only_sections_its_command_accepts(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        c = container(workload)
        allowed = sections_for(c["args"][0])
        for name in env_of(c):
            section = env_section(name)
            assert section is None or section in allowed, f"{workload['metadata']['name']}: {name}"


def test_nats_stream_settings_are_identical_everywhere(multipool_render: Rendered) -> None:
    # every service that touches NATS creates or updates the streams: they must agree
    seen = set()
    for workload in multipool_render.workloads():
        env = env_of(container(workload))
        nats = tuple(sorted((k, str(v)) for k, v in env.items() if k.startswith("TOCSIN_NATS__")))
        if nats:
            seen.add(nats)
    assert len(seen) == 1
    assert dict(next(iter(seen)))["TOCSIN_NATS__REPLICAS"] == "3"


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(rendered: Rendered) -> None:
    job = rendered.get("Job", "tocsin-migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert container(job)["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # its NetworkPolicy exists before it runs (a hook with a lower weight)
    policy = rendered.get("NetworkPolicy", "tocsin-migrate")
    assert int(policy["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])


# --- network policies -------------------------------------------------------------------------


def policy_for(rendered: Rendered, workload: dict[str, Any]) -> dict[str, Any]:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    matching = [
        p
        for p in rendered.of_kind("NetworkPolicy")
        if all(labels.get(k) == v for k, v in p["spec"]["podSelector"]["matchLabels"].items())
    ]
    assert len(matching) == 1, workload["metadata"]["name"]
    return matching[0]


def test_every_workload_has_a_network_policy_for_both_directions(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        policy = policy_for(rendered, workload)
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_worker_egress_is_limited_to_dns_nats_postgres_and_configured_rules(
    default_render: Rendered, multipool_render: Rendered, multipool_values
) -> None:
    for rendered, extra in ((default_render, []), (multipool_render, multipool_values["workerDefaults"]["egress"])):
        for pool, deployment in pools(rendered).items():
            spec = policy_for(rendered, deployment)["spec"]
            egress = spec["egress"]
            for rule in egress:
                assert rule.get("to"), "an egress rule without `to` allows every destination"
                assert rule.get("ports"), "an egress rule without ports allows every port"
            ports = [sorted(p["port"] for p in rule["ports"]) for rule in egress]
            assert ports[:3] == [[53, 53], [4222], [5432]]
            expected_extra = [] if (rendered is multipool_render and pool == "default") else extra
            assert egress[3:] == expected_extra
            for rule in egress[:3]:
                for peer in rule["to"]:
                    assert peer.get("ipBlock", {}).get("cidr") != "0.0.0.0/0"
            # nothing may connect to a worker (but the metrics scraper, when there is a port)
            for rule in spec.get("ingress", []):
                assert [p["port"] for p in rule["ports"]] == [9090]


def test_ingest_and_api_admit_the_configured_sources_on_their_port(multipool_render: Rendered, multipool_values) -> None:
    spec = policy_for(multipool_render, multipool_render.get("Deployment", "tocsin-ingest"))["spec"]
    first = spec["ingress"][0]
    assert first["from"] == multipool_values["ingest"]["networkPolicy"]["from"]
    assert first["ports"] == [{"port": 8080, "protocol": "TCP"}]
    api = policy_for(multipool_render, multipool_render.get("Deployment", "tocsin-api"))["spec"]
    assert api["ingress"][0]["ports"] == [{"port": 8081, "protocol": "TCP"}]
    # the API has no business with NATS
    assert all(4222 not in [p["port"] for p in rule["ports"]] for rule in api["egress"])


def test_service_monitor_selects_a_metrics_service_per_component(multipool_render: Rendered) -> None:
    (monitor,) = multipool_render.of_kind("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        s
        for s in multipool_render.of_kind("Service")
        if all(s["metadata"]["labels"].get(k) == v for k, v in selector.items())
    ]
    components = {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in selected}
    assert components == {"ingest", "api", "scheduler", "worker"}
    assert len(selected) == 3 + len(pools(multipool_render))
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


# --- against the real configuration loader (when a tocsin binary is built) --------------------


def test_rendered_environment_passes_tocsin_check_config(default_render: Rendered) -> None:
    binary = tocsin_binary()
    if binary is None:
        pytest.skip("no target/debug/tocsin (build it, or set TOCSIN_BIN) to check configurations with")
    checked = 0
    for workload in default_render.workloads():
        c = container(workload)
        command = c["args"][0]
        if command not in ("ingest", "scheduler", "worker", "api"):
            continue  # `migrate` has no --check-config; its sections are checked above
        env = {"PATH": "/usr/bin:/bin"}
        for name, value in env_of(c).items():
            env[name] = DUMMY_SECRETS[name] if isinstance(value, tuple) else value
        result = subprocess.run(
            [str(binary), command, "--check-config"], env=env, capture_output=True, text=True, timeout=30
        )
        assert result.returncode == 0, f"{workload['metadata']['name']}: {result.stderr}"
        checked += 1
    assert checked == 4


def test_trace_export_reaches_every_service_and_its_network_policy() -> None:
    collector = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}]
    rendered = render({
        "telemetry": {"traces": {"endpoint": "http://otel-collector.observability:4318", "sampleRatio": 0.25,
                                 "networkPolicy": {"port": 4318, "to": collector}}},
    })
    for workload in rendered.workloads():
        if component_of(workload) == "migrate":
            continue
        env = env_of(container(workload))
        assert env["TOCSIN_TELEMETRY__TRACES__ENDPOINT"] == "http://otel-collector.observability:4318"
        assert env["TOCSIN_TELEMETRY__TRACES__SAMPLE_RATIO"] == "0.25"
        egress = policy_for(rendered, workload)["spec"]["egress"]
        assert {"to": collector, "ports": [{"port": 4318, "protocol": "TCP"}]} in egress, component_of(workload)
    # Off by default: no variable, no rule.
    default = render()
    for workload in default.workloads():
        assert "TOCSIN_TELEMETRY__TRACES__ENDPOINT" not in env_of(container(workload))
