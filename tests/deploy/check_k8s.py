#!/usr/bin/env python3
"""Checks deploy/k8s/ offline, as TAP: without a cluster `kubectl apply --dry-run=client` still
asks the API server for its resource list, so this checks the manifests' structure against
what the daemon needs, with PyYAML, and runs `kubectl kustomize` when kubectl is installed.

Usage: check_k8s.py SOURCE_ROOT [METALIGND]
"""
import json
import os
import re
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.abspath(sys.argv[1])
METALIGND = sys.argv[2] if len(sys.argv) > 2 else None
K8S = os.path.join(ROOT, "deploy", "k8s")
results = []

API = {"ConfigMap": "v1", "Service": "v1", "PersistentVolumeClaim": "v1",
       "Deployment": "apps/v1", "HorizontalPodAutoscaler": "autoscaling/v2",
       "PodDisruptionBudget": "policy/v1"}


def ok(cond, name, diag=None):
    results.append(bool(cond))
    print(("ok" if cond else "not ok") + f" {len(results)} - {name}")
    if not cond and diag:
        for line in str(diag).splitlines()[:30]:
            print("# " + line)


def load():
    files = sorted(f for f in os.listdir(K8S) if f.endswith(".yaml") and f != "kustomization.yaml")
    docs = []
    for f in files:
        for d in yaml.safe_load_all(open(os.path.join(K8S, f))):
            if d:
                d["_file"] = f
                docs.append(d)
    return files, docs


def find(docs, kind, name=None):
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def grace_seconds(cfg):
    """The daemon's shutdown grace: the configuration's, else the default of src/config.c."""
    if isinstance(cfg.get("shutdown_grace"), int):
        return float(cfg["shutdown_grace"])
    text = open(os.path.join(ROOT, "src", "config.c")).read()
    m = re.search(r"c->shutdown_grace = ([0-9]+);", text)
    if not m:  # before the grace was an option
        m = re.search(r"#define SHUTDOWN_GRACE_SECONDS ([0-9.]+)",
                      open(os.path.join(ROOT, "src", "main.c")).read())
    return float(m.group(1)) if m else None


def config_keys():
    """The keys a config file may have: the long flags of the option table."""
    text = open(os.path.join(ROOT, "src", "config.c")).read()
    flags = re.findall(r'^\s*\{"([a-z-]+)", OPT_', text, re.M)
    return {f.replace("-", "_") for f in flags}


def early_config(spec, c, cms):
    """The ConfigMap's JSON file named by --config, or {}."""
    args = c.get("args", [])
    if "--config" not in args:
        return {}
    name = os.path.basename(args[args.index("--config") + 1])
    for cm in cms:
        if name in cm.get("data", {}):
            try:
                return json.loads(cm["data"][name])
            except ValueError:
                return {}
    return {}


def main():
    print("1..15")
    files, docs = load()
    kust = yaml.safe_load(open(os.path.join(K8S, "kustomization.yaml")))
    ok(sorted(kust.get("resources", [])) == files,
       "kustomization.yaml lists every manifest, and only those", (kust.get("resources"), files))
    bad = [f"{d['_file']}: {d.get('kind')} {d.get('apiVersion')}" for d in docs
           if API.get(d.get("kind")) != d.get("apiVersion") or not d.get("metadata", {}).get("name")]
    ok(not bad, "every object has a known kind, its stable apiVersion and a name", bad)

    dep = find(docs, "Deployment", "metalignd")
    ok(len(dep) == 1, "a Deployment named metalignd")
    if not dep:
        return
    dep = dep[0]
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    c = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    rp, lp = c.get("readinessProbe", {}).get("httpGet", {}), c.get("livenessProbe", {}).get("httpGet", {})
    ok(rp.get("path") == "/readyz" and lp.get("path") == "/healthz" and
       rp.get("port") in ports and lp.get("port") in ports and ports.get("http") == 8080,
       "readiness on /readyz, liveness on /healthz, on the container's port", (rp, lp, ports))
    res = c.get("resources", {})
    ok(all(k in res.get(w, {}) for w in ("requests", "limits") for k in ("cpu", "memory")),
       "cpu and memory requests and limits", res)
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    ok(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) > 0 and
       csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
       and "ALL" in csc.get("capabilities", {}).get("drop", []),
       "non-root, read-only root filesystem, no privilege escalation, no capabilities", (psc, csc))
    grace = grace_seconds(early_config(spec, c, find(docs, "ConfigMap")))
    pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_s = float(pre[-1]) if pre and pre[0].endswith("sleep") else 0
    tgp = spec.get("terminationGracePeriodSeconds", 30)
    ok(grace and tgp > grace + pre_s,
       f"terminationGracePeriodSeconds ({tgp}) outlasts preStop ({pre_s:g} s) + the daemon's "
       f"shutdown grace ({grace} s)", (tgp, pre_s, grace))

    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    cms = {d["metadata"]["name"]: d for d in find(docs, "ConfigMap")}
    pvcs = {d["metadata"]["name"] for d in find(docs, "PersistentVolumeClaim")}
    refs_ok = all(m["name"] in vols for m in mounts.values()) and all(
        ("configMap" not in v or v["configMap"]["name"] in cms) and
        ("persistentVolumeClaim" not in v or v["persistentVolumeClaim"]["claimName"] in pvcs)
        for v in vols.values())
    data = [v for v in vols.values() if "persistentVolumeClaim" in v]
    ok(refs_ok and data and mounts.get("/data", {}).get("readOnly") is True,
       "every mount has its volume, every volume its ConfigMap or claim; the data volume is "
       "mounted read-only at /data", (mounts, vols))

    args = c.get("args", [])
    cfg_path = args[args.index("--config") + 1] if "--config" in args else None
    cm_mount = next((m for p, m in mounts.items() if cfg_path and cfg_path.startswith(p + "/")), None)
    cm = cms.get(vols.get(cm_mount["name"], {}).get("configMap", {}).get("name")) if cm_mount else None
    cfg = None
    try:
        cfg = json.loads(cm["data"][os.path.basename(cfg_path)]) if cm else None
    except (KeyError, ValueError) as e:
        cfg = None
        print(f"# {e}")
    keys = config_keys()
    unknown = [k for k in (cfg or {}) if k not in keys and not k.startswith("_") and k != "comment"]
    ok(cfg is not None and not unknown, "--config names the ConfigMap's file, a JSON object of "
       "known settings", unknown or cfg_path)
    cfg = cfg or {}
    writable = [cfg.get("cache_dir", ""), "/tmp"]
    ok(all(any(w == p or w.startswith(p + "/") for p in mounts if p not in (cm_mount or {}).get(
        "mountPath", "")) for w in writable) and cfg.get("listen", "").startswith("0.0.0.0:8080"),
       "it listens on all addresses at 8080; its cache folder and /tmp are volumes (the root "
       "filesystem is read-only)", (writable, list(mounts)))

    svc = find(docs, "Service", "metalignd")
    labels = pod["metadata"].get("labels", {})
    ok(svc and selects(svc[0]["spec"]["selector"], labels) and
       selects(dep["spec"]["selector"]["matchLabels"], labels) and
       all(p.get("targetPort") in ports or p.get("targetPort") in ports.values()
           for p in svc[0]["spec"]["ports"]),
       "the Service selects the replicas' pods and targets their port")
    m = re.match(r"redis://(?:[^@]*@)?([^:/]+):(\d+)", cfg.get("redis", ""))
    rsvc = find(docs, "Service", m.group(1)) if m else []
    rdep = [d for d in find(docs, "Deployment") if rsvc and
            selects(rsvc[0]["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
    rargs = " ".join(rdep[0]["spec"]["template"]["spec"]["containers"][0].get("args", [])) if rdep else ""
    ok(m and rsvc and rdep and any(str(p["port"]) == m.group(2) for p in rsvc[0]["spec"]["ports"])
       and "noeviction" in rargs,
       "--redis names the Redis Service and its port; that Redis never evicts", (cfg.get("redis"), rargs))
    hpa = find(docs, "HorizontalPodAutoscaler")
    tgt = hpa[0]["spec"]["scaleTargetRef"] if hpa else {}
    ok(hpa and tgt.get("kind") == "Deployment" and tgt.get("name") == "metalignd" and
       1 <= hpa[0]["spec"]["minReplicas"] <= hpa[0]["spec"]["maxReplicas"] and
       hpa[0]["spec"].get("metrics") and find(docs, "PodDisruptionBudget") and
       selects(find(docs, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"], labels),
       "the HorizontalPodAutoscaler scales the Deployment; a PodDisruptionBudget covers it")

    if METALIGND and cfg:
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            local = {k: (v.replace("/opt/metalignd", ROOT) if isinstance(v, str) else v)
                     for k, v in cfg.items()}
            local["cache_dir"] = os.path.join(d, "cache")
            path = os.path.join(d, "config.json")
            json.dump(local, open(path, "w"))
            p = subprocess.run([METALIGND, "--config", path, "--check"], capture_output=True,
                               text=True, timeout=120)
        ok(p.returncode == 0, "the daemon accepts the ConfigMap's file (--check, with the image's "
           "paths mapped onto the source tree)", p.stdout + p.stderr)
    else:
        ok(True, "no metalignd given: the configuration is not loaded")
    kubectl = shutil.which("kubectl")
    if kubectl:
        p = subprocess.run([kubectl, "kustomize", K8S], capture_output=True, text=True, timeout=60)
        built = [d for d in yaml.safe_load_all(p.stdout) if d] if p.returncode == 0 else []
        ok(p.returncode == 0 and len(built) == len(docs),
           f"kubectl kustomize builds it ({len(built)} objects)", p.stderr)
    else:
        ok(True, "kubectl is not installed: the kustomize build is not checked")


main()
sys.exit(0 if all(results) else 1)
