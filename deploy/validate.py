#!/usr/bin/env python3
"""Validates deploy/: the Kubernetes manifests (base and every overlay, rendered the way
kustomize renders them for the features used here) against the Kubernetes schemas with
kubernetes-validate, plus the platform rules we rely on; and the compose file's structure.

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


def problem(msg):
    problems.append(msg)
    print("  ✗", msg)


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
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
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


def validate_schemas(name, objs):
    for o in objs:
        try:
            kubernetes_validate.validate(o, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            problem(f"{name}: {o['kind']}/{o['metadata']['name']}: {e.message} at {list(e.path)}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problem(f"{name}: {o['kind']}: no schema: {e}")


def check_compose():
    path = os.path.join(DEPLOY, "compose.yaml")
    c = load_all(path)[0]
    services = c.get("services", {})
    for required in ("postgres", "scylla", "minio", "migrate", "meta-service", "splitter", "compute-worker", "matcher-api"):
        if required not in services:
            problem(f"compose: no service {required}")
    for sname, s in services.items():
        if "image" not in s and "build" not in s:
            problem(f"compose: {sname} has neither image nor build")
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
            uses_work = sname in ("splitter", "compute-worker")
            if uses_work and str(env.get("MEMBERLAKE_LAKE_URL", "")).startswith("s3://") and "MEMBERLAKE_WORK_URL" not in env:
                problem(f"compose: {sname} has an S3 lake but no MEMBERLAKE_WORK_URL")
    for vol in {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}:
        if vol not in c.get("volumes", {}):
            problem(f"compose: volume {vol} is not declared")


def self_check():
    """The validator must reject a broken manifest, or its green means nothing."""
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "two"}}
    try:
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
        problem("self-check: kubernetes-validate accepted a broken Deployment")
    except kubernetes_validate.ValidationError:
        pass


def main():
    self_check()
    k8s = os.path.join(DEPLOY, "k8s")
    targets = [("base", os.path.join(k8s, "base"))] + [
        (f"overlays/{d}", os.path.join(k8s, "overlays", d)) for d in sorted(os.listdir(os.path.join(k8s, "overlays")))
    ]
    for name, directory in targets:
        objs = build(directory)
        print(f"{name}: {len(objs)} objects (Kubernetes {K8S_VERSION})")
        validate_schemas(name, objs)
        check_platform_rules(name, objs)
    check_compose()
    print("compose: checked")
    if problems:
        print(f"{len(problems)} problem(s)")
        sys.exit(1)
    print("deploy/ is valid")


if __name__ == "__main__":
    main()
