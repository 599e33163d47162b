#!/usr/bin/env python3
"""Checks the Helm chart helm/climate-api with Helm's own engine, offline.

    .venv/bin/python tests/deploy/check_chart.py [--chart helm/climate-api] [-v]

- lints the chart (Helm v4 SDK through the helm-python-sdk package; no helm binary, no cluster)
  with the default values and with ci/production-values.yaml;
- renders both, and checks that bad values (a misspelt key, a wrong type, a credential inlined
  into the configuration, a writable root filesystem, max below min replicas) fail to render;
- validates every rendered object against the Kubernetes JSON schemas bundled by the
  kubernetes-validate package (strict: unknown fields fail), for the oldest Kubernetes the chart
  supports and the newest bundled; KEDA and Prometheus Operator objects, which those schemas do
  not cover, against the subset of their CRDs the chart uses;
- asserts the essentials: probes, the KEDA trigger, the worker grace period, the migrations hook,
  security contexts, no plaintext secrets, and a configuration file the product accepts (key by
  key against config.rs, and, when a climate-api binary is built, by loading it with the binary:
  `climate-api migrate` on a throw-away SQLite file).

Exits 1 with one line per failure; prints "N passed, 0 failed" on success.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import product_config  # noqa: E402
from checks import Checks  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RELEASE = "climate-api"
NAMESPACE = "climate"
MIN_KUBE = "1.27.0"  # Chart.yaml kubeVersion
PRODUCT_BINARY: Path | None = None  # set in main(): a built climate-api, to load the config with

try:
    import helm_python as helm
except ImportError:  # pragma: no cover - environment problem, reported clearly
    sys.exit("helm-python-sdk is missing: run scripts/setup-python.sh (tests/interop/requirements.txt)")
try:
    import jsonschema
    import kubernetes_validate
    from kubernetes_validate import utils as kv_utils
except ImportError:  # pragma: no cover
    sys.exit("kubernetes-validate is missing: run scripts/setup-python.sh (tests/interop/requirements.txt)")



# --- rendering --------------------------------------------------------------------------------


def render(chart_dir: Path, values: dict) -> dict[str, str]:
    with helm.Chart.load(chart_dir) as chart:
        return chart.render(values=values, name=RELEASE, namespace=NAMESPACE, revision=1, is_install=True)


def objects(rendered: dict[str, str]) -> list[dict]:
    """The Kubernetes objects of a render (NOTES.txt and empty documents left out)."""
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("__source__", path)
                out.append(doc)
    return out


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o.get("kind") == kind]


def one(objs: list[dict], kind: str, component: str | None = None) -> dict:
    found = [
        o
        for o in by_kind(objs, kind)
        if component is None or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
    ]
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return spec.get("initContainers", []) + spec["containers"]


def strip_meta(obj: dict) -> dict:
    clean = copy.deepcopy(obj)
    clean.pop("__source__", None)
    return clean


# --- schema validation ------------------------------------------------------------------------

# The parts of the KEDA 2.x and Prometheus Operator CRDs this chart uses; unknown fields fail,
# as they would with a strict server-side apply.
_STR = {"type": "string"}
_INT = {"type": "integer"}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _STR, "namespace": _STR, "labels": {"type": "object"}, "annotations": {"type": "object"}},
}


def _resource(spec: dict) -> dict:
    """A custom resource (apiVersion, kind, metadata) whose `spec` matches `spec`."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"apiVersion": _STR, "kind": _STR, "metadata": _META, "spec": spec},
    }


CRD_SCHEMAS: dict[tuple[str, str], dict] = {
    ("keda.sh/v1alpha1", "ScaledObject"): _resource(
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {"apiVersion": _STR, "kind": _STR, "name": _STR, "envSourceContainerName": _STR},
                },
                "pollingInterval": _INT,
                "cooldownPeriod": _INT,
                "initialCooldownPeriod": _INT,
                "idleReplicaCount": _INT,
                "minReplicaCount": _INT,
                "maxReplicaCount": _INT,
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": _STR, "behavior": {"type": "object"}},
                        },
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": _STR,
                            "name": _STR,
                            "useCachedMetrics": {"type": "boolean"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            # KEDA's trigger metadata is map[string]string: numbers must be quoted.
                            "metadata": {"type": "object", "additionalProperties": _STR},
                            "authenticationRef": {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["name"],
                                "properties": {"name": _STR, "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]}},
                            },
                        },
                    },
                },
            },
        }
    ),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): _resource(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["parameter", "name", "key"],
                        "properties": {"parameter": _STR, "name": _STR, "key": _STR},
                    },
                },
                "env": {"type": "array"},
                "podIdentity": {"type": "object"},
                "configMapTargetRef": {"type": "array"},
                "hashiCorpVault": {"type": "object"},
            },
        }
    ),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _resource(
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object"},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": _STR}},
                },
                "jobLabel": _STR,
                "targetLabels": {"type": "array"},
                "podTargetLabels": {"type": "array"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": _STR,
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array"},
                            "metricRelabelings": {"type": "array"},
                            "tlsConfig": {"type": "object"},
                        },
                    },
                },
            },
        }
    ),
}


def validate_object(obj: dict, kube_version: str) -> None:
    """Raises with the path of the first schema violation."""
    data = strip_meta(obj)
    key = (data.get("apiVersion"), data.get("kind"))
    if key in CRD_SCHEMAS:
        jsonschema.validate(data, CRD_SCHEMAS[key])
        if key[1] == "ScaledObject":
            # The HPA behaviour KEDA passes on is an autoscaling/v2 HPA's: validate it as one.
            behavior = data["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
            if behavior:
                hpa = {
                    "apiVersion": "autoscaling/v2",
                    "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": "behaviour-check"},
                    "spec": {
                        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                        "maxReplicas": 2,
                        "behavior": behavior,
                    },
                }
                kubernetes_validate.validate(hpa, kube_version, strict=True)
        return
    try:
        kubernetes_validate.validate(data, kube_version, strict=True)
    except kv_utils.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path)
        raise AssertionError(f"{where}: {e.message}") from None
    except kv_utils.SchemaNotFoundError as e:
        raise AssertionError(e.message) from None


# --- the essentials ---------------------------------------------------------------------------

SENSITIVE_ENV = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY|CREDENTIAL|__URL$|_DSN$)")
URL_WITH_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s@:]+:[^/\s@]+@", re.I)


def rendered_config(objs: list[dict], name_suffix: str = "-config") -> dict:
    cms = [
        o
        for o in by_kind(objs, "ConfigMap")
        if o["metadata"]["name"].endswith(name_suffix)
        and (name_suffix == "-migrations-config" or not o["metadata"]["name"].endswith("-migrations-config"))
    ]
    assert len(cms) == 1, f"expected one ConfigMap *{name_suffix}, found {[o['metadata']['name'] for o in cms]}"
    text = cms[0]["data"]["climate-api.yaml"]
    # The product substitutes before parsing; the chart writes no variables, only '$$'.
    assert not product_config.variables(text), f"the rendered configuration uses variables: {product_config.variables(text)}"
    return yaml.safe_load(product_config.substitute(text, {}))


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def port_of(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


def assert_essentials(c: Checks, label: str, objs: list[dict], values: dict) -> None:
    merged = values  # values as Helm merged them (defaults + overrides)
    cfg = c.run(f"{label}: rendered ConfigMap holds a configuration", lambda: rendered_config(objs))
    if cfg is None:
        return

    def config_keys() -> None:
        errors = product_config.validate_config(cfg)
        assert not errors, "; ".join(errors)

    c.run(f"{label}: configuration uses only keys and types the product accepts (config.rs)", config_keys)

    if PRODUCT_BINARY:

        def product_loads() -> None:
            cm = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-config")
                  and not o["metadata"]["name"].endswith("-migrations-config")][0]
            env: dict[str, str] = {}
            for d in by_kind(objs, "Deployment"):
                for ctr in containers(d):
                    plain = {e["name"]: e["value"] for e in ctr.get("env", []) if "value" in e and "$(" not in e["value"]}
                    secret = [e["name"] for e in ctr.get("env", []) if "valueFrom" in e]
                    env.update({k: v for k, v in plain.items() if k.startswith(product_config.ENV_PREFIX)})
                    env.update({k: v for k, v in product_config.placeholder_env(secret).items()
                                if k.startswith(product_config.ENV_PREFIX)})
            product_config.product_accepts(PRODUCT_BINARY, cm["data"]["climate-api.yaml"], env)

        c.run(f"{label}: {PRODUCT_BINARY.name} itself loads the rendered configuration with the pods' overrides", product_loads)

    def hook_config_same() -> None:
        hook_cfg = rendered_config(objs, "-migrations-config")
        assert hook_cfg == cfg, "the migrations Job's configuration differs from the release's"

    if merged["migrations"]["enabled"]:
        c.run(f"{label}: migrations Job reads the same configuration", hook_config_same)

    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind(objs, "Deployment")}
    c.check(f"{label}: Deployments for api, worker and scheduler", set(deployments) == {"api", "worker", "scheduler"}, str(sorted(deployments)))

    # Every env override names a real configuration key; secrets come from secretKeyRef.
    def env_overrides() -> None:
        for o in by_kind(objs, "Deployment") + by_kind(objs, "Job"):
            for ctr in containers(o):
                env = {n: "x" for n in env_of(ctr)}
                overridden = product_config.apply_overrides(copy.deepcopy(cfg), env)
                errors = [e for e in product_config.validate_config(overridden) if "unknown key" in e]
                assert not errors, f"{o['metadata']['name']}/{ctr['name']}: " + "; ".join(errors)

    c.run(f"{label}: CLIMATE_API__* variables name real configuration keys", env_overrides)

    # --- api
    def api_probes() -> None:
        api = deployments["api"]
        (ctr,) = [x for x in containers(api) if x["name"] == "api"]
        assert ctr["livenessProbe"]["httpGet"]["path"] == "/health", ctr["livenessProbe"]
        assert ctr["readinessProbe"]["httpGet"]["path"] == "/ready", ctr["readinessProbe"]
        ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
        assert ctr["livenessProbe"]["httpGet"]["port"] in ("http", ports.get("http")), "liveness probe port"
        assert ports["http"] == port_of(cfg["server"]["bind"]), f"container port {ports['http']} vs server.bind {cfg['server']['bind']}"
        bind_env = env_of(ctr).get("CLIMATE_API__SERVER__BIND", {}).get("value")
        assert bind_env in (None, cfg["server"]["bind"]), f"CLIMATE_API__SERVER__BIND {bind_env} != server.bind {cfg['server']['bind']}"
        assert ctr["args"] == ["api"], ctr.get("args")

    c.run(f"{label}: api liveness GET /health, readiness GET /ready on the configured port", api_probes)

    def api_service() -> None:
        svc = one(objs, "Service", "api")
        pod_labels = pod_spec_labels(deployments["api"])
        assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selector does not match the api pods"
        assert svc["spec"]["ports"][0]["targetPort"] == "http"

    c.run(f"{label}: api Service selects the api pods", api_service)

    api_v = merged["api"]
    if api_v["podDisruptionBudget"]["enabled"]:
        c.run(f"{label}: api PodDisruptionBudget selects the api pods", lambda: selects(one(objs, "PodDisruptionBudget", "api"), deployments["api"]))
    if api_v["autoscaling"]["enabled"]:

        def hpa() -> None:
            h = one(objs, "HorizontalPodAutoscaler", "api")
            assert h["spec"]["scaleTargetRef"]["name"] == deployments["api"]["metadata"]["name"]
            assert "replicas" not in deployments["api"]["spec"], "replicas set although the HPA owns them"

        c.run(f"{label}: api HPA targets the api Deployment (which leaves replicas to it)", hpa)
    if api_v["ingress"]["enabled"]:

        def ingress() -> None:
            ing = one(objs, "Ingress", "api")
            backends = [p["backend"]["service"]["name"] for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
            assert set(backends) == {one(objs, "Service", "api")["metadata"]["name"]}, backends
            if api_v["ingress"]["tls"]:
                assert ing["spec"].get("tls"), "TLS configured but not rendered"

        c.run(f"{label}: Ingress routes to the api Service", ingress)

    # --- worker
    worker = deployments["worker"]
    grace_cfg = int(cfg.get("worker", {}).get("shutdown_grace_seconds", 25))
    tgps = pod_spec(worker).get("terminationGracePeriodSeconds", 30)
    c.check(
        f"{label}: worker terminationGracePeriodSeconds ({tgps}) > worker.shutdown_grace_seconds ({grace_cfg})",
        tgps > grace_cfg,
    )

    def metrics_probe(component: str, section: str) -> None:
        d = deployments[component]
        (ctr,) = pod_spec(d)["containers"]
        port = port_of(cfg[section]["metrics_bind"])
        ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
        assert ports.get("metrics") == port, f"metrics port {ports} vs {section}.metrics_bind {cfg[section]['metrics_bind']}"
        probe = ctr["livenessProbe"]["tcpSocket"]["port"]
        assert probe in ("metrics", port), f"liveness probe on {probe}"
        assert ctr["args"] == [component], ctr.get("args")

    c.run(f"{label}: worker liveness is a TCP probe on worker.metrics_bind", lambda: metrics_probe("worker", "worker"))
    c.run(f"{label}: scheduler liveness is a TCP probe on scheduler.metrics_bind", lambda: metrics_probe("scheduler", "scheduler"))
    c.check(
        f"{label}: scheduler replicas as configured ({merged['scheduler']['replicaCount']})",
        deployments["scheduler"]["spec"].get("replicas") == merged["scheduler"]["replicaCount"],
    )

    keda = merged["worker"]["keda"]
    scaled = by_kind(objs, "ScaledObject")
    if keda["enabled"]:

        def keda_trigger() -> None:
            (so,) = scaled
            spec = so["spec"]
            assert spec["scaleTargetRef"]["name"] == worker["metadata"]["name"], "ScaledObject does not target the worker Deployment"
            assert "replicas" not in worker["spec"], "worker replicas set although KEDA owns them"
            (trig,) = spec["triggers"]
            md = trig["metadata"]
            assert trig["type"] == "rabbitmq", trig["type"]
            assert md.get("protocol") == "http", f"protocol {md.get('protocol')} (the management API counts unacked messages)"
            assert md.get("mode") == "QueueLength", md.get("mode")
            assert md.get("queueName") == cfg["queue"]["name"], f"queueName {md.get('queueName')} != queue.name {cfg['queue']['name']}"
            assert int(md["value"]) == keda["messagesPerReplica"], md["value"]
            assert "host" not in md, "the management URL (with credentials) must come from TriggerAuthentication"
            assert spec["minReplicaCount"] == keda["minReplicaCount"] and spec["maxReplicaCount"] == keda["maxReplicaCount"]
            assert 0 <= spec["minReplicaCount"] < spec["maxReplicaCount"], "min/max replicas"
            assert spec["cooldownPeriod"] == keda["cooldownPeriod"], "cooldownPeriod"
            behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
            assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 60, "scale-down stabilisation"
            (ta,) = by_kind(objs, "TriggerAuthentication")
            assert trig["authenticationRef"]["name"] == ta["metadata"]["name"]
            (ref,) = [r for r in ta["spec"]["secretTargetRef"] if r["parameter"] == "host"]
            assert ref["name"] and ref["key"], ref

        c.run(f"{label}: worker ScaledObject: rabbitmq, protocol http, QueueLength, queue, min/max, cooldown, secret host", keda_trigger)
    else:
        c.check(f"{label}: no ScaledObject when worker.keda.enabled is false", not scaled)
        c.check(
            f"{label}: worker replicas as configured",
            worker["spec"].get("replicas") == merged["worker"]["replicaCount"],
        )
    if merged["worker"]["podDisruptionBudget"]["enabled"]:
        c.run(f"{label}: worker PodDisruptionBudget selects the worker pods", lambda: selects(one(objs, "PodDisruptionBudget", "worker"), worker))

    # --- migrations hook
    if merged["migrations"]["enabled"]:

        def migrations() -> None:
            job = one(objs, "Job", "migrations")
            ann = job["metadata"]["annotations"]
            hooks = set(ann["helm.sh/hook"].split(","))
            assert {"pre-install", "pre-upgrade"} <= hooks, ann["helm.sh/hook"]
            assert "helm.sh/hook-delete-policy" in ann and "helm.sh/hook-weight" in ann, ann
            (ctr,) = pod_spec(job)["containers"]
            assert ctr["args"] == ["migrate"], ctr.get("args")
            assert pod_spec(job)["restartPolicy"] == "Never"
            # What the Job mounts must exist before it: hooks with a lower weight.
            weight = int(ann["helm.sh/hook-weight"])
            for vol in pod_spec(job)["volumes"]:
                if "configMap" in vol:
                    (cm,) = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"] == vol["configMap"]["name"]]
                    cm_ann = cm["metadata"].get("annotations", {})
                    assert set(cm_ann.get("helm.sh/hook", "").split(",")) >= hooks, f"ConfigMap {cm['metadata']['name']} is not a {hooks} hook"
                    assert int(cm_ann.get("helm.sh/hook-weight", "0")) < weight, "the ConfigMap hook must come first"
                if "secret" in vol:
                    raise AssertionError("the Job mounts a Secret")
            sa = pod_spec(job).get("serviceAccountName")
            own_sa = [o["metadata"]["name"] for o in by_kind(objs, "ServiceAccount")]
            assert sa not in own_sa, f"the Job uses the release's ServiceAccount {sa}, which does not exist yet on install"

        c.run(f"{label}: migrations Job is a pre-install,pre-upgrade hook with its config created before it", migrations)

    # --- security
    def security() -> None:
        for o in by_kind(objs, "Deployment") + by_kind(objs, "Job"):
            pod_sc = pod_spec(o).get("securityContext", {})
            for ctr in containers(o):
                sc = ctr.get("securityContext", {})
                who = f"{o['metadata']['name']}/{ctr['name']}"
                assert sc.get("readOnlyRootFilesystem") is True, f"{who}: readOnlyRootFilesystem"
                assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{who}: runAsNonRoot"
                uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
                assert uid is None or uid > 0, f"{who}: runAsUser {uid}"
                assert sc.get("allowPrivilegeEscalation") is False, f"{who}: allowPrivilegeEscalation"
                assert "ALL" in sc.get("capabilities", {}).get("drop", []), f"{who}: capabilities not dropped"
                mounts = {m["mountPath"] for m in ctr.get("volumeMounts", [])}
                assert "/tmp" in mounts and cfg["data_dir"] in mounts, f"{who}: /tmp and data_dir must be writable mounts ({mounts})"

    c.run(f"{label}: every container non-root with a read-only root filesystem", security)

    def no_plaintext_secrets() -> None:
        secrets = by_kind(objs, "Secret")
        assert not secrets, f"the chart renders Secret objects: {[s['metadata']['name'] for s in secrets]}"
        for o in objs:
            text = yaml.safe_dump(strip_meta(o))
            m = URL_WITH_USERINFO.search(text)
            assert not m, f"{o['kind']}/{o['metadata']['name']}: URL with credentials {m.group(0)!r}"
            assert not re.search(r"(?im)^\s*[\w.-]*password[\w.-]*:\s*\S", text), f"{o['kind']}/{o['metadata']['name']}: a password value"
        for o in by_kind(objs, "Deployment") + by_kind(objs, "Job"):
            for ctr in containers(o):
                for name, e in env_of(ctr).items():
                    if SENSITIVE_ENV.search(name):
                        assert "value" not in e and "secretKeyRef" in e.get("valueFrom", {}), (
                            f"{o['metadata']['name']}/{ctr['name']}: {name} must come from a secretKeyRef"
                        )
        provider_secrets = [k for p in cfg.get("providers", {}).values() for k in ("api_key", "netrc") if k in p]
        assert not provider_secrets, "provider credentials in the ConfigMap"
        for section in ("database", "queue", "cache"):
            assert "url" not in cfg.get(section, {}), f"{section}.url is in the ConfigMap (it carries credentials)"

    c.run(f"{label}: no plaintext secrets (no Secret objects, credentials only via secretKeyRef)", no_plaintext_secrets)

    if merged["customTemplates"]:

        def templates() -> None:
            tdir = cfg["templates_dir"]
            tcm = [o for o in by_kind(objs, "ConfigMap") if o["metadata"]["name"].endswith("-templates")]
            assert len(tcm) == 1 and set(tcm[0]["data"]) == set(merged["customTemplates"]), "templates ConfigMap"
            for component, d in deployments.items():
                mounts = {m["mountPath"]: m["name"] for m in pod_spec(d)["containers"][0]["volumeMounts"]}
                assert mounts.get(tdir) == "templates", f"{component}: templates not mounted at {tdir}"
            for text in tcm[0]["data"].values():
                assert isinstance(yaml.safe_load(text), list), "a templates file must hold a list of templates"

        c.run(f"{label}: custom templates ConfigMap mounted at templates_dir", templates)

    if merged["metrics"]["serviceMonitor"]["enabled"]:

        def service_monitor() -> None:
            sm = one(objs, "ServiceMonitor")
            sel = sm["spec"]["selector"]["matchLabels"]
            ports = {ep["port"] for ep in sm["spec"]["endpoints"]}
            assert all(ep["path"] == "/metrics" for ep in sm["spec"]["endpoints"])
            for svc in by_kind(objs, "Service"):
                labels = svc["metadata"]["labels"]
                assert all(labels.get(k) == v for k, v in sel.items()), f"ServiceMonitor does not select {svc['metadata']['name']}"
                assert {p["name"] for p in svc["spec"]["ports"]} & ports, f"no scraped port on {svc['metadata']['name']}"

        c.run(f"{label}: ServiceMonitor scrapes /metrics of api, workers and scheduler", service_monitor)

    if merged["otel"]["enabled"]:

        def otel() -> None:
            for component, d in deployments.items():
                env = env_of(pod_spec(d)["containers"][0])
                assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == merged["otel"]["endpoint"], component
                assert env["OTEL_SERVICE_NAME"]["value"] == f"climate-{'api' if component == 'api' else component}"

        c.run(f"{label}: OTLP endpoint and service names set", otel)


def pod_spec_labels(obj: dict) -> dict:
    return obj["spec"]["template"]["metadata"]["labels"]


def selects(selector_owner: dict, workload: dict) -> None:
    sel = selector_owner["spec"]["selector"]["matchLabels"]
    labels = pod_spec_labels(workload)
    assert all(labels.get(k) == v for k, v in sel.items()), f"{selector_owner['kind']} selector {sel} does not match {labels}"


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chart", default=str(REPO / "helm/climate-api"))
    ap.add_argument("--product", type=Path, help="a built climate-api to load the rendered configuration with "
                    "(default: target/release or target/debug when built; the check is skipped otherwise)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print passing checks too")
    args = ap.parse_args()
    chart_dir = Path(args.chart)
    global PRODUCT_BINARY
    PRODUCT_BINARY = args.product or product_config.default_binary()
    PRODUCT_BINARY = PRODUCT_BINARY.resolve() if PRODUCT_BINARY else None
    if PRODUCT_BINARY is None:
        print("skip  loading the configuration with the product: no built climate-api (or pass --product)")
    c = Checks(args.verbose)
    print(f"helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}); chart {chart_dir}")

    with helm.Chart.load(chart_dir) as chart:
        defaults = chart.values
        c.check("chart ships values.schema.json (draft-07)", (chart.schema or {}).get("$schema", "").startswith("http://json-schema.org/draft-07"))
        c.check("Chart.yaml apiVersion v2", chart.metadata.get("apiVersion") == "v2")

    value_sets = {"default values": {}}
    for path in sorted((chart_dir / "ci").glob("*.yaml")):
        value_sets[f"ci/{path.name}"] = yaml.safe_load(path.read_text()) or {}
    kube_versions = [MIN_KUBE, kv_utils.latest_version()]

    for label, values in value_sets.items():
        for strict in (False, True):

            def lint(values: dict = values, strict: bool = strict) -> None:
                report = helm.lint(chart_dir, values, strict=strict, namespace=NAMESPACE, kube_version=f"v{kube_versions[-1]}")
                problems = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report.get("errors", [])]
                assert not problems, "; ".join(f"{m.get('path', '')}: {m['error']}" for m in problems)

            c.run(f"{label}: helm lint{' --strict' if strict else ''}", lint)

        rendered = c.run(f"{label}: helm template", lambda values=values: render(chart_dir, values))
        if rendered is None:
            continue
        objs = objects(rendered)
        c.check(f"{label}: renders objects", len(objs) > 5, str(len(objs)))
        for kube in kube_versions:
            bad = []
            for o in objs:
                try:
                    validate_object(o, kube)
                except Exception as e:  # noqa: BLE001
                    bad.append(f"{o.get('kind')}/{o.get('metadata', {}).get('name')}: {str(e).splitlines()[0]}")
            c.check(f"{label}: {len(objs)} objects valid for Kubernetes {kube} (strict schemas; KEDA/ServiceMonitor CRD subset)", not bad, "; ".join(bad))
        assert_essentials(c, label, objs, deep_merge(defaults, values))

    # Values that must not render: the schema (or a template check) stops them.
    bad_values = {
        "misspelt key (api.replicaCont)": {"api": {"replicaCont": 3}},
        "misspelt product key (config.worker.concurency)": {"config": {"worker": {"concurency": 4}}},
        "unknown top-level key (workers)": {"workers": {"replicaCount": 2}},
        "wrong type (worker.replicaCount: 'two')": {"worker": {"replicaCount": "two"}},
        "wrong type (config.auth.enabled: 'yes')": {"config": {"auth": {"enabled": "yes"}}},
        "credential inlined (config.database.url)": {"config": {"database": {"url": "postgres://u:p@db/climate"}}},
        "provider key inlined (config.providers.era5_land_cds.api_key)": {"config": {"providers": {"era5_land_cds": {"api_key": "k"}}}},
        "writable root filesystem": {"securityContext": {"readOnlyRootFilesystem": False}},
        "store on a pod's own disk (config.store.url: file://…)": {"config": {"store": {"url": "file:///var/lib/climate-api/store"}}},
        "bad extent id": {"config": {"extents": [{"extent_id": "Sierra Leone", "name": "x", "bbox": [0, 0, 1, 1]}]}},
        "KEDA maxReplicaCount below minReplicaCount": {"worker": {"keda": {"enabled": True, "minReplicaCount": 5, "maxReplicaCount": 2}}},
        "OTLP on without an endpoint": {"otel": {"enabled": True}},
    }
    for label, values in bad_values.items():
        try:
            render(chart_dir, values)
        except helm.HelmError as e:
            c.check(f"rejected: {label}", True)
            if c.verbose:
                print(f"      {str(e).strip().splitlines()[-1]}")
        else:
            c.check(f"rejected: {label}", False, "rendered without error")

    failed = len(c.failures)
    print(f"{c.passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
