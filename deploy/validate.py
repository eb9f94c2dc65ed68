#!/usr/bin/env python3
"""Validates deploy/: the Kubernetes manifests (base and every overlay, rendered the way
kustomize renders them for the features used here) against the Kubernetes schemas with
kubernetes-validate, plus the platform rules we rely on; and the compose file's structure.

The platform rules include the security ones of issue 18: secrets reach a pod only as mounted
files (never the environment), no static AWS key (a ServiceAccount's role instead), probes and
Prometheus on each service's operations port, never an API port, and NetworkPolicies that deny
ingress by default and admit only the recommendation service to the matcher's API. Each rule is
checked to reject a manifest that breaks it (`self_check_rules`), or its green would mean nothing.

    python3 deploy/validate.py            (needs: pip install kubernetes-validate pyyaml)

Exit status 0 when everything is valid; every problem is printed.
"""
import copy
import os
import sys

import kubernetes_validate
import yaml

K8S_VERSION = os.environ.get("MEMBERLAKE_K8S_VERSION", "1.31")
DEPLOY = os.path.dirname(os.path.abspath(__file__))
problems = []
quiet = False

# Who may call the matcher's API (README § Security): the recommendation service's pods.
RECOMMENDER = {"app.kubernetes.io/name": "recommendation-service"}
# The services that read the lake or the work location (S3): they need a cloud role (the
# matcher reads the membership filters at the work location).
S3_USERS = ("meta-service", "splitter", "compute-worker", "matcher-api")
# Annotations by which a ServiceAccount names its cloud role (EKS, GKE, AKS).
ROLE_ANNOTATIONS = ("eks.amazonaws.com/role-arn", "iam.gke.io/gcp-service-account", "azure.workload.identity/client-id")
# Each API service's address setting and, as a file, its tokens.
API_ADDR = {"matcher-api": "MEMBERLAKE_MATCHER_ADDR", "meta-service": "MEMBERLAKE_ADMIN_ADDR"}
TOKENS_FILE = {"matcher-api": "MEMBERLAKE_MATCHER_TOKENS_FILE", "meta-service": "MEMBERLAKE_ADMIN_TOKENS_FILE"}


def problem(msg):
    problems.append(msg)
    if not quiet:
        print("  ✗", msg)


def collect(check, *args):
    """The problems `check` reports, without reporting them."""
    global problems, quiet
    saved, problems, quiet = problems, [], True
    try:
        check(*args)
        return problems
    finally:
        problems, quiet = saved, False


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def deep_merge(base, patch):
    """Strategic-merge for what our patches use: maps merge, lists of named items merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = deep_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x for x in base + patch):
        out = [copy.deepcopy(x) for x in base]
        for item in patch:
            match = next((i for i, x in enumerate(out) if x["name"] == item["name"]), None)
            if match is None:
                out.append(copy.deepcopy(item))
            else:
                out[match] = deep_merge(out[match], item)
        return out
    return copy.deepcopy(patch)


def json_patch(obj, ops):
    for op in ops:
        assert op["op"] == "replace", f"unsupported op {op['op']}"
        keys = [k for k in op["path"].split("/") if k]
        target = obj
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        target[keys[-1]] = op["value"]


def build(directory):
    """Renders a kustomization: resources, namespace, labels, images, patches."""
    kpath = os.path.join(directory, "kustomization.yaml")
    k = load_all(kpath)[0]
    objs = []
    for res in k.get("resources", []):
        path = os.path.join(directory, res)
        if os.path.isdir(path):
            objs.extend(build(path))
        elif os.path.exists(path):
            objs.extend(load_all(path))
        else:
            problem(f"{kpath}: resource {res} does not exist")
    for p in k.get("patches", []):
        if "path" in p:
            patch = load_all(os.path.join(directory, p["path"]))[0]
            targets = [o for o in objs if o["kind"] == patch["kind"] and o["metadata"]["name"] == patch["metadata"]["name"]]
            if not targets:
                problem(f"{kpath}: patch {p['path']} matches no resource")
            for t in targets:
                t.update(deep_merge(t, patch))
        else:
            sel = p["target"]
            targets = [o for o in objs if o["kind"] == sel["kind"] and o["metadata"]["name"] == sel["name"]]
            if not targets:
                problem(f"{kpath}: patch for {sel} matches no resource")
            for t in targets:
                json_patch(t, yaml.safe_load(p["patch"]))
    ns = k.get("namespace")
    for o in objs:
        if ns and o["kind"] != "Namespace":
            o["metadata"]["namespace"] = ns
        for group in k.get("labels", []):
            o["metadata"].setdefault("labels", {}).update(group["pairs"])
        for image in k.get("images", []):
            for pod in pod_specs(o):
                for c in pod.get("containers", []):
                    if c["image"].split(":")[0] == image["name"]:
                        c["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return objs


def pod_specs(o):
    if o["kind"] in ("Deployment", "Job"):
        return [o["spec"]["template"]["spec"]]
    return []


def check_platform_rules(name, objs):
    by_kind = by_kind_of(objs)
    deployments = by_kind.get("Deployment", {})
    for svc in ("meta-service", "splitter", "compute-worker", "matcher-api"):
        if svc not in deployments:
            problem(f"{name}: no Deployment {svc}")
    for svc in ("meta-service", "splitter"):
        if svc in deployments and deployments[svc]["spec"]["replicas"] < 2:
            problem(f"{name}: {svc} needs two replicas (leader election / hot standby)")
    for svc in ("compute-worker", "matcher-api"):
        if svc not in by_kind.get("HorizontalPodAutoscaler", {}):
            problem(f"{name}: no HorizontalPodAutoscaler for {svc}")
    if "memberlake-migrate" not in by_kind.get("Job", {}):
        problem(f"{name}: no migration Job")
    for dname, d in deployments.items():
        if dname not in by_kind.get("PodDisruptionBudget", {}):
            problem(f"{name}: no PodDisruptionBudget for {dname}")
        spec = d["spec"]["template"]["spec"]
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            problem(f"{name}: {dname} does not run as non-root")
        if not spec.get("terminationGracePeriodSeconds"):
            problem(f"{name}: {dname} has no terminationGracePeriodSeconds")
        for c in spec["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    problem(f"{name}: {dname}/{c['name']} has no {probe}")
            res = c.get("resources", {})
            if "requests" not in res or "memory" not in res.get("limits", {}):
                problem(f"{name}: {dname}/{c['name']} lacks resource requests or a memory limit")
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if port is not None and port not in ports:
                    problem(f"{name}: {dname} {probe} uses unknown port {port}")
    for sname, s in by_kind.get("Service", {}).items():
        sel = s["spec"]["selector"]
        matched = [d for d in deployments.values() if all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        if not matched:
            problem(f"{name}: Service {sname} selects no Deployment")
        for p in s["spec"]["ports"]:
            names = {cp["name"] for d in matched for c in d["spec"]["template"]["spec"]["containers"] for cp in c.get("ports", [])}
            if p["targetPort"] not in names:
                problem(f"{name}: Service {sname} targets unknown port {p['targetPort']}")


def container_env(container, configmaps):
    """A container's environment as the kubelet builds it: envFrom ConfigMaps, then env."""
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps.get(source["configMapRef"]["name"], {}).get("data", {}))
    for e in container.get("env", []):
        env[e["name"]] = e.get("value")
    return env


def port_of(addr):
    return int(str(addr).rsplit(":", 1)[1])


def looks_secret(var, value):
    """A variable whose value is a secret: tokens, passwords, keys, a URL with a password."""
    if var.endswith("_FILE") or value is None:
        return False
    if var.endswith("_TOKENS") or "PASSWORD" in var or var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        return True
    return "://" in str(value) and "@" in str(value) and ":" in str(value).split("://", 1)[1].split("@", 1)[0]


def check_secrets(name, by_kind):
    """Secrets reach pods as mounted files only; no static AWS key anywhere."""
    configmaps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    for sname, secret in secrets.items():
        for key in {**secret.get("data", {}), **secret.get("stringData", {})}:
            if key.startswith("AWS_"):
                problem(f"{name}: Secret {sname} holds a static AWS key ({key}): give the workload a role through its ServiceAccount")
    for cname, cm in configmaps.items():
        for var, value in cm.get("data", {}).items():
            if looks_secret(var, value):
                problem(f"{name}: ConfigMap {cname} holds a secret ({var})")
    for oname, o in workloads(by_kind):
        pod = pod_specs(o)[0]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            where = f"{name}: {oname}/{c['name']}"
            for source in c.get("envFrom", []):
                if "secretRef" in source:
                    problem(f"{where} takes Secret {source['secretRef']['name']} into its environment: mount it as files")
            for e in c.get("env", []):
                if "secretKeyRef" in e.get("valueFrom", {}):
                    problem(f"{where}: {e['name']} comes from a Secret into the environment: mount it as a file")
            env = container_env(c, configmaps)
            for var, value in env.items():
                if looks_secret(var, value):
                    problem(f"{where}: {var} is a secret in the environment: use {var}_FILE and a mounted Secret")
            mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts", [])}
            for var, path in env.items():
                if not var.endswith("_FILE") or not path:
                    continue
                directory, _, key = str(path).rpartition("/")
                mount = mounts.get(directory)
                volume = volumes.get(mount["name"]) if mount else None
                if volume is None:
                    problem(f"{where}: {var}={path} is not in a mounted volume")
                    continue
                if "secret" in volume:
                    source = secrets.get(volume["secret"]["secretName"])
                    keys = {**source.get("data", {}), **source.get("stringData", {})} if source else None
                    mode = volume["secret"].get("defaultMode", 0o644)
                    if mode & 0o007:
                        problem(f"{where}: Secret volume {mount['name']} is readable by others (defaultMode {mode:o})")
                    elif mode & 0o070 and not pod.get("securityContext", {}).get("fsGroup"):
                        problem(f"{where}: Secret volume {mount['name']} is group-readable but the pod sets no fsGroup")
                elif "configMap" in volume:
                    source = configmaps.get(volume["configMap"]["name"])
                    keys = source.get("data", {}) if source else None
                else:
                    problem(f"{where}: {var}={path} is on a volume that is neither a Secret nor a ConfigMap")
                    continue
                if keys is None:
                    problem(f"{where}: {var}: volume {mount['name']} names a Secret or ConfigMap that does not exist")
                elif key not in keys:
                    problem(f"{where}: {var}={path}: no key {key} in volume {mount['name']}")
            service = c["name"]
            if service in TOKENS_FILE and not env.get(TOKENS_FILE[service]):
                problem(f"{where}: no {TOKENS_FILE[service]}: the API would be open to anyone who reaches it")


def check_service_accounts(name, by_kind):
    """Each workload runs as a ServiceAccount of its own, without an API token; the services that
    reach S3 get a role from it, the others none."""
    accounts = by_kind.get("ServiceAccount", {})
    for oname, o in workloads(by_kind):
        pod = pod_specs(o)[0]
        sa_name = pod.get("serviceAccountName")
        sa = accounts.get(sa_name)
        if sa is None:
            problem(f"{name}: {oname} does not run as a ServiceAccount of ours ({sa_name or 'default'})")
            continue
        if pod.get("automountServiceAccountToken", sa.get("automountServiceAccountToken", True)) is not False:
            problem(f"{name}: {oname} mounts a Kubernetes API token it never uses")
        roles = [a for a in sa["metadata"].get("annotations", {}) if a in ROLE_ANNOTATIONS]
        if oname in S3_USERS and not roles:
            problem(f"{name}: {oname} reaches S3 but its ServiceAccount {sa_name} names no cloud role")
        if oname not in S3_USERS and roles:
            problem(f"{name}: {oname} reaches no bucket but its ServiceAccount {sa_name} has a cloud role")


def check_ops_ports(name, by_kind):
    """Probes and Prometheus on the operations port (MEMBERLAKE_METRICS_ADDR), which no Service
    exposes; an API port serves the API only."""
    configmaps = by_kind.get("ConfigMap", {})
    ops_ports = {}
    for dname, d in by_kind.get("Deployment", {}).items():
        pod = pod_specs(d)[0]
        c = pod["containers"][0]
        env = container_env(c, configmaps)
        if "MEMBERLAKE_METRICS_ADDR" not in env:
            problem(f"{name}: {dname} sets no MEMBERLAKE_METRICS_ADDR (its operations port)")
            continue
        ops = port_of(env["MEMBERLAKE_METRICS_ADDR"])
        by_number = {p["containerPort"]: p["name"] for p in c.get("ports", [])}
        if ops not in by_number:
            problem(f"{name}: {dname}: the operations port {ops} is not a container port")
            continue
        ops_ports[dname] = (ops, by_number[ops])
        if dname in API_ADDR and port_of(env.get(API_ADDR[dname], ":0")) == ops:
            problem(f"{name}: {dname} serves its API on its operations port")
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
            get = c.get(probe, {}).get("httpGet")
            if get and (get.get("path") != path or get.get("port") not in (ops, by_number[ops])):
                problem(f"{name}: {dname} {probe} is not {path} on the operations port ({by_number[ops]})")
        annotation = d["spec"]["template"]["metadata"].get("annotations", {}).get("prometheus.io/port")
        if annotation != str(ops):
            problem(f"{name}: {dname}: prometheus.io/port {annotation} is not the operations port {ops}")
    for sname, s in by_kind.get("Service", {}).items():
        for dname, (number, port_name) in ops_ports.items():
            labels = by_kind["Deployment"][dname]["spec"]["template"]["metadata"]["labels"]
            if selects(s["spec"]["selector"], labels) and any(p["targetPort"] in (number, port_name) for p in s["spec"]["ports"]):
                problem(f"{name}: Service {sname} exposes {dname}'s operations port")


def selects(selector, labels):
    """Whether a label selector (matchLabels/matchExpressions, or a Service's plain map) matches."""
    if selector is None:
        return False
    plain = {k: v for k, v in selector.items() if k not in ("matchLabels", "matchExpressions")}
    wanted = {**plain, **selector.get("matchLabels", {})}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return False
    for e in selector.get("matchExpressions", []):
        value, op = labels.get(e["key"]), e["operator"]
        if (op == "In" and value not in e["values"]) or (op == "NotIn" and value in e["values"]) \
                or (op == "Exists" and value is None) or (op == "DoesNotExist" and value is not None):
            return False
    return True


def check_network_policies(name, by_kind):
    """Ingress denied by default; every allowed source named; the matcher's API port admits the
    recommendation service only."""
    policies = by_kind.get("NetworkPolicy", {})
    deny = [p for p in policies.values()
            if p["spec"].get("podSelector") == {} and "Ingress" in p["spec"].get("policyTypes", []) and not p["spec"].get("ingress")]
    if not deny:
        problem(f"{name}: no default-deny ingress NetworkPolicy (podSelector {{}}, no ingress rules)")
    for pname, p in policies.items():
        for rule in p["spec"].get("ingress", []):
            if not rule.get("from"):
                problem(f"{name}: NetworkPolicy {pname} admits every source (an ingress rule without `from`)")
    matcher = by_kind.get("Deployment", {}).get("matcher-api")
    if matcher is None:
        return
    labels = matcher["spec"]["template"]["metadata"]["labels"]
    c = matcher["spec"]["template"]["spec"]["containers"][0]
    api = port_of(container_env(c, by_kind.get("ConfigMap", {})).get("MEMBERLAKE_MATCHER_ADDR", ":8080"))
    api_names = {api} | {p["name"] for p in c.get("ports", []) if p["containerPort"] == api}
    admitted = False
    for pname, p in policies.items():
        if not selects(p["spec"].get("podSelector"), labels):
            continue
        for rule in p["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(q.get("port") in api_names for q in ports):
                continue
            for peer in rule.get("from", []):
                if "ipBlock" in peer or not selects(peer.get("podSelector"), RECOMMENDER):
                    problem(f"{name}: NetworkPolicy {pname} admits {peer} to the matcher's API, not only the recommendation service")
                elif not peer.get("namespaceSelector"):
                    problem(f"{name}: NetworkPolicy {pname} admits the recommendation service from the matcher's own namespace only")
                else:
                    admitted = True
    if not admitted:
        problem(f"{name}: no NetworkPolicy admits the recommendation service to the matcher's API")


def workloads(by_kind):
    for kind in ("Deployment", "Job"):
        yield from by_kind.get(kind, {}).items()


def by_kind_of(objs):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    return by_kind


def check_security(name, objs):
    by_kind = by_kind_of(objs)
    check_secrets(name, by_kind)
    check_service_accounts(name, by_kind)
    check_ops_ports(name, by_kind)
    check_network_policies(name, by_kind)


def validate_schemas(name, objs):
    for o in objs:
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            problem(f"{name}: {o['kind']}/{o['metadata']['name']}: {e.message} at {list(e.path)}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problem(f"{name}: {o['kind']}: no schema: {e}")


def load_compose():
    return load_all(os.path.join(DEPLOY, "compose.yaml"))[0]


def check_compose(c):
    services = c.get("services", {})
    for required in ("postgres", "scylla", "minio", "migrate", "meta-service", "splitter", "compute-worker", "matcher-api"):
        if required not in services:
            problem(f"compose: no service {required}")
    for sname, s in services.items():
        if "image" not in s and "build" not in s:
            problem(f"compose: {sname} has neither image nor build")
        # A pinned tag: `latest` (or none) changes under a running deployment without a change
        # here; a Debian or server upgrade is a reviewed edit of this file.
        image = s.get("image", "")
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        if image and (not tag or tag == "latest" or not any(ch.isdigit() for ch in tag)):
            problem(f"compose: {sname} uses image {image!r}: pin a versioned tag")
        deps = s.get("depends_on", {})
        for dep in deps if isinstance(deps, (dict, list)) else []:
            if dep not in services:
                problem(f"compose: {sname} depends on unknown service {dep}")
        if sname in ("meta-service", "splitter", "compute-worker", "matcher-api", "migrate"):
            env = s.get("environment", {})
            for var in ("MEMBERLAKE_DATABASE_URL", "MEMBERLAKE_SCYLLA_NODES", "MEMBERLAKE_LAKE_URL"):
                if var not in env:
                    problem(f"compose: {sname} lacks {var}")
            # An S3 lake has no default work location: the services that use one must set it.
            uses_work = sname in ("splitter", "compute-worker", "matcher-api")
            if uses_work and str(env.get("MEMBERLAKE_LAKE_URL", "")).startswith("s3://") and "MEMBERLAKE_WORK_URL" not in env:
                problem(f"compose: {sname} has an S3 lake but no MEMBERLAKE_WORK_URL")
    for vol in {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}:
        if vol not in c.get("volumes", {}):
            problem(f"compose: volume {vol} is not declared")
    check_compose_secrets(c)


def check_compose_secrets(c):
    """memberlake's secrets come from compose secrets (files under /run/secrets), never the
    environment; the APIs are not open."""
    declared = c.get("secrets", {})
    for name, secret in declared.items():
        if "file" in secret and not os.path.exists(os.path.join(DEPLOY, secret["file"])):
            problem(f"compose: secret {name}: no file {secret['file']}")
    for sname, s in c.get("services", {}).items():
        env = s.get("environment", {})
        mounted = {x if isinstance(x, str) else x["source"] for x in s.get("secrets", [])}
        for var, value in env.items():
            if var.startswith("MEMBERLAKE_") and looks_secret(var, value):
                problem(f"compose: {sname}: {var} is a secret in the environment: use {var}_FILE and a compose secret")
            if var.endswith("_FILE"):
                directory, _, secret = str(value).rpartition("/")
                if directory != "/run/secrets" or secret not in mounted or secret not in declared:
                    problem(f"compose: {sname}: {var}={value} is not a declared secret it mounts (/run/secrets/<name>)")
        if sname in TOKENS_FILE and TOKENS_FILE[sname] not in env:
            problem(f"compose: {sname}: no {TOKENS_FILE[sname]}: the API would be open")


def self_check():
    """The validator must reject a broken manifest, or its green means nothing."""
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "two"}}
    try:
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
        problem("self-check: kubernetes-validate accepted a broken Deployment")
    except kubernetes_validate.ValidationError:
        pass


def self_check_rules():
    """Each security rule rejects a manifest (or compose file) that breaks it."""
    base = build(os.path.join(DEPLOY, "k8s", "base"))

    def find(objs, kind, name):
        return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)

    def matcher(objs):
        return pod_specs(find(objs, "Deployment", "matcher-api"))[0]

    breaks = [
        ("a static AWS key in a Secret", "static AWS key",
         lambda o: find(o, "Secret", "memberlake-database")["stringData"].update(AWS_SECRET_ACCESS_KEY="x")),
        ("a Secret taken into the environment", "into its environment",
         lambda o: matcher(o)["containers"][0]["envFrom"].append({"secretRef": {"name": "memberlake-database"}})),
        ("tokens in the environment", "secret in the environment",
         lambda o: matcher(o)["containers"][0]["env"].append({"name": "MEMBERLAKE_MATCHER_TOKENS", "value": "x"})),
        ("a password in the database URL", "holds a secret",
         lambda o: find(o, "ConfigMap", "memberlake-config")["data"].update(MEMBERLAKE_DATABASE_URL="postgres://u:p@h/d")),
        ("a *_FILE on no mounted volume", "not in a mounted volume",
         lambda o: matcher(o)["containers"][0]["volumeMounts"].pop(0)),
        ("an open matcher", "would be open",
         lambda o: matcher(o)["containers"][0].update(
             env=[e for e in matcher(o)["containers"][0]["env"] if e["name"] != "MEMBERLAKE_MATCHER_TOKENS_FILE"])),
        ("readiness on the API port", "readinessProbe is not /readyz",
         lambda o: matcher(o)["containers"][0]["readinessProbe"]["httpGet"].update(port="http")),
        ("a Service exposing the operations port", "exposes matcher-api's operations port",
         lambda o: find(o, "Service", "matcher-api")["spec"]["ports"].append({"name": "ops", "port": 9100, "targetPort": "ops"})),
        ("the default ServiceAccount", "ServiceAccount of ours", lambda o: matcher(o).pop("serviceAccountName")),
        ("an S3 user without a role", "names no cloud role",
         lambda o: find(o, "ServiceAccount", "compute-worker")["metadata"].pop("annotations")),
        ("the matcher's API open to any pod", "not only the recommendation service",
         lambda o: find(o, "NetworkPolicy", "matcher-api")["spec"]["ingress"][0]["from"][0].pop("podSelector")),
        ("a rule admitting every source", "admits every source",
         lambda o: find(o, "NetworkPolicy", "meta-service")["spec"]["ingress"][0].pop("from")),
        ("no default deny", "default-deny", lambda o: o.remove(find(o, "NetworkPolicy", "default-deny-ingress"))),
    ]
    found = collect(check_security, "base", base)
    if found:
        problem(f"self-check: the base breaks the rules it is checked against: {found}")
    for what, says, mutate in breaks:
        objs = copy.deepcopy(base)
        mutate(objs)
        found = collect(check_security, "base", objs)
        if not any(says in p for p in found):
            problem(f"self-check: {what} is not caught (found: {found})")
    compose = load_compose()
    compose["services"]["matcher-api"]["environment"]["MEMBERLAKE_MATCHER_TOKENS"] = "x"
    if not any("secret in the environment" in p for p in collect(check_compose_secrets, compose)):
        problem("self-check: a token in the compose environment is not caught")


def main():
    self_check()
    self_check_rules()
    k8s = os.path.join(DEPLOY, "k8s")
    targets = [("base", os.path.join(k8s, "base"))] + [
        (f"overlays/{d}", os.path.join(k8s, "overlays", d)) for d in sorted(os.listdir(os.path.join(k8s, "overlays")))
    ]
    for name, directory in targets:
        objs = build(directory)
        print(f"{name}: {len(objs)} objects (Kubernetes {K8S_VERSION})")
        validate_schemas(name, objs)
        check_platform_rules(name, objs)
        check_security(name, objs)
    check_compose(load_compose())
    print("compose: checked")
    if problems:
        print(f"{len(problems)} problem(s)")
        sys.exit(1)
    print("deploy/ is valid")


if __name__ == "__main__":
    main()
