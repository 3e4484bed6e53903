"""test_deploy_manifests.py — the Kubernetes manifests under deploy/ are
valid and agree with each other and with the binaries they run:

- every YAML file parses (python3-yaml, multi-document) and passes yamllint;
- the kustomize base lists every manifest, and renders (kubectl kustomize,
  when kubectl is installed);
- the CSI driver name is the same everywhere;
- the node plugin is one container that registers itself: the socket it
  serves (--endpoint) and the one it tells the kubelet about
  (--kubelet-registration-path) are the same host file, resolved through
  its volumeMounts and the pod's hostPath volumes, its
  --kubelet-registration-dir is the kubelet's plugins_registry, and the
  kubelet's probes hit its own /healthz;
- the registrar-sidecar overlay (rendered with kubectl kustomize) switches
  self-registration off and its node-driver-registrar dials the same
  socket and tells the kubelet the same path;
- the cache is the same hostPath in the plugin and the pre-warm DaemonSet;
- only the node plugin mounts an API token, and its ServiceAccount may
  create and patch core/v1 events and nothing else; the pre-warm DaemonSet
  runs as its own ServiceAccount without a token;
- every flag a manifest passes to modelvol-csi, modelpull or modelpush is
  in that binary's --help (modelpull: global flags in `modelpull --help`,
  verb flags in `modelpull VERB --help`);
- every registry config.json in a ConfigMap is accepted by the real parser;
- the node plugin and the pre-warm command start with the DaemonSets' exact
  arguments and ConfigMaps (paths moved under a temp dir, metrics on
  loopback), the plugin serving its registration socket, and stop cleanly
  on SIGTERM;
- the Dockerfile is multi-stage on Debian 12, its runtime packages exist,
  and every library a built binary links comes from one of them.

No cluster is needed. Run with Debian's /usr/bin/python3."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import Checks  # noqa: E402
from util import BUILD_DIR, SOURCE_DIR, free_port, stop_process, wait_for  # noqa: E402

DEPLOY = os.path.join(SOURCE_DIR, "deploy")
BASE = os.path.join(DEPLOY, "kubernetes")
DRIVER = "modelvol.csi.io"
OUR_BINARIES = ("modelvol-csi", "modelpull", "modelpush")

T = Checks()
check = T.check


def yaml_files():
    files = []
    for pattern in ("**/*.yaml", "**/*.yml"):
        files += glob.glob(os.path.join(DEPLOY, pattern), recursive=True)
    return sorted(set(files))


def load_all():
    """{path: [documents]} for every manifest; parse failures are reported."""
    docs = {}
    for path in yaml_files():
        rel = os.path.relpath(path, SOURCE_DIR)
        try:
            with open(path) as f:
                docs[path] = [d for d in yaml.safe_load_all(f) if d is not None]
            check(f"parses: {rel}", len(docs[path]) > 0, "no documents")
        except yaml.YAMLError as e:
            check(f"parses: {rel}", False, str(e).replace("\n", " "))
    return docs


def objects(docs, kind=None):
    for path, ds in docs.items():
        for d in ds:
            if isinstance(d, dict) and (kind is None or d.get("kind") == kind):
                yield path, d


def find(docs, kind, name, under=BASE):
    for path, d in objects(docs, kind):
        if path.startswith(under + os.sep) and d.get("metadata", {}).get("name") == name:
            return d
    return None


def walk(node, fn, parent_key=None):
    """Calls fn(key, value, parent_mapping) for every mapping entry."""
    if isinstance(node, dict):
        for k, v in node.items():
            fn(k, v, node)
            walk(v, fn, k)
    elif isinstance(node, list):
        for v in node:
            walk(v, fn, parent_key)


# ---- flags --------------------------------------------------------------------


def arg_flags(args):
    """Flags in an argument list: '--x=y', '--x y', '-f FILE'. Returns the
    flag names in order, with their position."""
    out = []
    for i, a in enumerate(args):
        a = str(a)
        if a.startswith("-") and a != "-" and a != "--":
            out.append((i, a.split("=", 1)[0]))
    return out


def flag_value(args, flag):
    """The value of --flag=value or --flag value, or None."""
    args = [str(a) for a in args]
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def help_text(binary, *verb):
    path = os.path.join(BUILD_DIR, binary)
    if not os.access(path, os.X_OK):
        return None
    r = subprocess.run([path, *verb, "--help"], capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def in_help(flag, text):
    return re.search(r"(?<![\w-])" + re.escape(flag) + r"(?![\w-])", text) is not None


# Global options of modelpull that take a value: the verb is the first
# argument after them.
MODELPULL_GLOBAL_WITH_VALUE = ("--cache", "--config")


def split_modelpull(args):
    """(global args, verb, verb args) for a modelpull command line."""
    args = [str(a) for a in args]
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] in MODELPULL_GLOBAL_WITH_VALUE:
            i += 1
        i += 1
    if i >= len(args):
        return args, None, []
    return args[:i], args[i], args[i + 1:]


def container_command(c):
    cmd = [str(x) for x in (c.get("command") or [])]
    args = [str(x) for x in (c.get("args") or [])]
    full = cmd + args
    if not full:
        return None, []
    return os.path.basename(full[0]), full[1:]


def check_flags(docs):
    helps = {}
    skipped = set()
    seen_any = {b: False for b in OUR_BINARIES}
    for path, d in objects(docs):
        rel = os.path.relpath(path, SOURCE_DIR)
        containers = []

        def collect(k, v, parent):
            if k in ("containers", "initContainers") and isinstance(v, list):
                containers.extend(c for c in v if isinstance(c, dict))

        walk(d, collect)
        for c in containers:
            binary, args = container_command(c)
            if binary not in OUR_BINARIES:
                continue
            seen_any[binary] = True
            if binary not in helps:
                helps[binary] = help_text(binary)
            top = helps[binary]
            if top is None:
                if binary not in skipped:
                    print(f"SKIP: {binary} is not built in {BUILD_DIR}: its flags are not checked")
                    skipped.add(binary)
                continue
            where = f"{rel} container {c.get('name')}"
            if binary == "modelpull":
                glob_args, verb, verb_args = split_modelpull(args)
                for _, flag in arg_flags(glob_args):
                    check(f"flag {flag} of modelpull in --help ({where})", in_help(flag, top))
                check(f"verb {verb} in modelpull --help ({where})",
                      verb is not None and re.search(r"^\s+" + re.escape(verb) + r"\s", top, re.M))
                if verb:
                    key = f"modelpull {verb}"
                    if key not in helps:
                        helps[key] = help_text("modelpull", verb) or ""
                    for _, flag in arg_flags(verb_args):
                        check(f"flag {flag} of modelpull {verb} in --help ({where})",
                              in_help(flag, helps[key]))
            else:
                for _, flag in arg_flags(args):
                    check(f"flag {flag} of {binary} in --help ({where})", in_help(flag, top))
    check("the node plugin and pre-warm containers run our binaries",
          seen_any["modelvol-csi"] and seen_any["modelpull"])


# ---- paths through volumes -----------------------------------------------------


def resolve(pod_spec, container, path):
    """Maps a path inside a container to ("hostPath", host path) or
    ("configMap", name, key) or ("secret", name, key) through the longest
    matching volumeMount. None when nothing is mounted there."""
    best = None
    for m in container.get("volumeMounts") or []:
        mp = m["mountPath"].rstrip("/") or "/"
        if path == mp or path.startswith(mp + "/"):
            if best is None or len(mp) > len(best["mountPath"].rstrip("/")):
                best = m
    if best is None:
        return None
    mp = best["mountPath"].rstrip("/")
    rest = path[len(mp):].lstrip("/")
    if best.get("subPath"):
        rest = os.path.join(best["subPath"], rest) if rest else best["subPath"]
    vol = next((v for v in pod_spec.get("volumes") or [] if v["name"] == best["name"]), None)
    if vol is None:
        return ("missing-volume", best["name"])
    if "hostPath" in vol:
        return ("hostPath", os.path.normpath(os.path.join(vol["hostPath"]["path"], rest)))
    for kind in ("configMap", "secret"):
        if kind in vol:
            name = vol[kind].get("name") or vol[kind].get("secretName")
            return (kind, name, rest)
    return ("other", best["name"], rest)


def container_by_command(pod_spec, binary):
    for c in pod_spec.get("containers") or []:
        if container_command(c)[0] == binary:
            return c
    return None


def container_by_image(pod_spec, fragment):
    for c in pod_spec.get("containers") or []:
        if fragment in str(c.get("image", "")):
            return c
    return None


REG_DIR = "/var/lib/kubelet/plugins_registry"


def check_node_daemonset(docs):
    ds = find(docs, "DaemonSet", "modelvol-node")
    check("node DaemonSet modelvol-node exists in deploy/kubernetes", ds is not None)
    if ds is None:
        return None
    spec = ds["spec"]["template"]["spec"]
    plugin = container_by_command(spec, "modelvol-csi")
    check("node DaemonSet is the one modelvol-csi container (no sidecars)",
          plugin is not None and len(spec["containers"]) == 1,
          str([c["name"] for c in spec["containers"]]))
    if not plugin:
        return None
    args = plugin.get("args", [])

    # Self-registration: the CSI socket, seen by the plugin and by the kubelet.
    endpoint = flag_value(args, "--endpoint") or ""
    check("plugin --endpoint is a unix:// socket", endpoint.startswith("unix://"), endpoint)
    plugin_sock = resolve(spec, plugin, endpoint[len("unix://"):])
    kubelet_path = flag_value(args, "--kubelet-registration-path")
    check("plugin socket is on a hostPath", plugin_sock and plugin_sock[0] == "hostPath",
          str(plugin_sock))
    check("--kubelet-registration-path is the plugin socket's host path",
          plugin_sock is not None and kubelet_path == plugin_sock[-1],
          f"{kubelet_path} vs {plugin_sock}")
    check("plugin socket lives in /var/lib/kubelet/plugins/<driver>/",
          plugin_sock is not None
          and os.path.dirname(plugin_sock[-1]) == f"/var/lib/kubelet/plugins/{DRIVER}")
    reg_dir = resolve(spec, plugin, flag_value(args, "--kubelet-registration-dir") or "")
    check("--kubelet-registration-dir is the kubelet's plugins_registry",
          reg_dir == ("hostPath", REG_DIR), str(reg_dir))
    check("self-registration is on in the base", flag_value(args, "--self-register") != "false")

    # Mounts, privilege, propagation.
    check("modelvol-csi is privileged",
          (plugin.get("securityContext") or {}).get("privileged") is True)
    kubelet_mount = next((m for m in plugin.get("volumeMounts", [])
                          if m["mountPath"] == "/var/lib/kubelet"), None)
    check("/var/lib/kubelet is mounted with Bidirectional propagation",
          kubelet_mount is not None and kubelet_mount.get("mountPropagation") == "Bidirectional"
          and resolve(spec, plugin, "/var/lib/kubelet") == ("hostPath", "/var/lib/kubelet"))
    cache = resolve(spec, plugin, flag_value(args, "--cache") or "")
    check("plugin --cache is the hostPath /var/lib/modelvol",
          cache == ("hostPath", "/var/lib/modelvol"), str(cache))

    # Scheduling and resources.
    tols = spec.get("tolerations") or []
    check("node DaemonSet tolerates nvidia.com/gpu NoSchedule",
          any(t.get("key") == "nvidia.com/gpu" and t.get("operator") == "Exists"
              and t.get("effect") in (None, "NoSchedule") for t in tols)
          or any(t.get("operator") == "Exists" and "key" not in t for t in tols))
    for c in spec["containers"]:
        res = c.get("resources") or {}
        check(f"container {c['name']} has resource requests and limits",
              bool(res.get("requests")) and bool(res.get("limits")))

    # Ports: metrics declared where the plugin listens; the kubelet's probes
    # hit the plugin's own /healthz there.
    ports = {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports") or []}
    maddr = flag_value(args, "--metrics-addr") or ""
    check("--metrics-addr listens beyond loopback (scrapable, probeable)",
          not maddr.startswith("127.") and not maddr.startswith("[::1]"), maddr)
    check("metrics containerPort matches --metrics-addr",
          "metrics" in ports and maddr.rsplit(":", 1)[-1] == str(ports["metrics"]),
          f"{maddr} vs {ports.get('metrics')}")
    for probe in ("livenessProbe", "startupProbe"):
        hg = (plugin.get(probe) or {}).get("httpGet", {})
        port = ports.get(hg.get("port"), hg.get("port"))
        check(f"modelvol-csi {probe} hits its own /healthz on --metrics-addr",
              hg.get("path") == "/healthz" and maddr.rsplit(":", 1)[-1] == str(port),
              f"{hg} vs --metrics-addr={maddr}")
    return spec, plugin


def check_registrar_overlay():
    """deploy/examples/registrar-sidecar: the base with node-driver-registrar
    doing the registration instead, rendered as kubectl would apply it."""
    d = os.path.join(DEPLOY, "examples", "registrar-sidecar")
    check("deploy/examples/registrar-sidecar exists",
          os.path.exists(os.path.join(d, "kustomization.yaml")))
    kubectl = shutil.which("kubectl")
    if not kubectl:
        print("SKIP: kubectl not installed: the registrar-sidecar overlay is not rendered")
        return
    r = subprocess.run([kubectl, "kustomize", d], capture_output=True, text=True, timeout=60)
    if not check("registrar-sidecar overlay renders", r.returncode == 0, r.stderr.strip()[:300]):
        return
    ds = next((x for x in yaml.safe_load_all(r.stdout)
               if x and x.get("kind") == "DaemonSet" and x["metadata"]["name"] == "modelvol-node"),
              None)
    if not check("registrar-sidecar overlay has the node DaemonSet", ds is not None):
        return
    spec = ds["spec"]["template"]["spec"]
    plugin = container_by_command(spec, "modelvol-csi")
    registrar = container_by_image(spec, "csi-node-driver-registrar")
    if not check("overlay: modelvol-csi and node-driver-registrar",
                 plugin is not None and registrar is not None):
        return
    check("overlay: modelvol-csi runs with --self-register=false",
          flag_value(plugin.get("args", []), "--self-register") == "false",
          str(plugin.get("args")))
    check("overlay: the registrar gets no modelvol-csi flag",
          flag_value(registrar.get("args", []), "--self-register") is None)
    endpoint = flag_value(plugin.get("args", []), "--endpoint") or ""
    plugin_sock = resolve(spec, plugin, endpoint[len("unix://"):])
    reg_sock = resolve(spec, registrar, flag_value(registrar.get("args", []), "--csi-address") or "")
    check("overlay: registrar --csi-address is the plugin's --endpoint",
          reg_sock == plugin_sock and plugin_sock and plugin_sock[0] == "hostPath",
          f"{reg_sock} vs {plugin_sock}")
    check("overlay: registrar --kubelet-registration-path is the plugin socket's host path",
          plugin_sock is not None
          and flag_value(registrar.get("args", []), "--kubelet-registration-path") == plugin_sock[-1])
    check("overlay: registrar's /registration is the kubelet's plugins_registry",
          resolve(spec, registrar, "/registration") == ("hostPath", REG_DIR))
    ports = [p["containerPort"] for c in spec["containers"] for p in c.get("ports") or []]
    check("overlay: ports are distinct", len(set(ports)) == len(ports), str(ports))


def check_prewarm(docs, node):
    ds = find(docs, "DaemonSet", "modelvol-prewarm")
    check("pre-warm DaemonSet modelvol-prewarm exists in deploy/kubernetes", ds is not None)
    if ds is None:
        return
    spec = ds["spec"]["template"]["spec"]
    c = container_by_command(spec, "modelpull")
    check("pre-warm runs modelpull", c is not None)
    if c is None:
        return
    glob_args, verb, verb_args = split_modelpull(container_command(c)[1])
    check("pre-warm runs the prewarm verb with --watch", verb == "prewarm" and "--watch" in verb_args)
    cache = resolve(spec, c, flag_value(glob_args, "--cache") or "/var/lib/modelvol")
    if node:
        nspec, plugin = node
        ncache = resolve(nspec, plugin, flag_value(plugin.get("args", []), "--cache") or "")
        check("pre-warm cache hostPath is the plugin's", cache == ncache and cache[0] == "hostPath",
              f"{cache} vs {ncache}")
        pconf = resolve(spec, c, flag_value(glob_args, "--config") or "/etc/modelvol/config.json")
        nconf = resolve(nspec, plugin, flag_value(plugin.get("args", []), "--config") or "")
        check("pre-warm and plugin read the same registry config", pconf == nconf and pconf,
              f"{pconf} vs {nconf}")
    lst = resolve(spec, c, flag_value(verb_args, "-f") or flag_value(verb_args, "--file") or "")
    check("pre-warm list is a key of a mounted ConfigMap", lst and lst[0] == "configMap", str(lst))
    mount = next((m for m in c.get("volumeMounts") or [] if lst and m["name"] and
                  any(v["name"] == m["name"] and v.get("configMap", {}).get("name") == lst[1]
                      for v in spec.get("volumes") or [])), None)
    check("pre-warm list is mounted as a directory (no subPath), so --watch sees updates",
          mount is not None and not mount.get("subPath"))
    if lst and lst[0] == "configMap":
        cm = find(docs, "ConfigMap", lst[1])
        check(f"ConfigMap {lst[1]} has key {lst[2]}", cm is not None and lst[2] in cm.get("data", {}))


def check_rbac(docs):
    def sa_of(ds_name):
        ds = find(docs, "DaemonSet", ds_name)
        spec = ds["spec"]["template"]["spec"] if ds else {}
        sa = find(docs, "ServiceAccount", spec.get("serviceAccountName", "default"))
        token = spec.get("automountServiceAccountToken")
        if token is None and sa is not None:
            token = sa.get("automountServiceAccountToken", True)
        return spec.get("serviceAccountName"), sa, token
    node_sa, sa, token = sa_of("modelvol-node")
    check("the node plugin's ServiceAccount exists", sa is not None, str(node_sa))
    check("the node plugin mounts its API token (pod events)", token is True, str(token))
    warm_sa, wsa, wtoken = sa_of("modelvol-prewarm")
    check("pre-warm runs as its own ServiceAccount", wsa is not None and warm_sa != node_sa,
          f"{warm_sa} vs {node_sa}")
    check("pre-warm mounts no API token", wtoken is False, str(wtoken))
    bindings = [d for _, d in [*objects(docs, "ClusterRoleBinding"), *objects(docs, "RoleBinding")]
                if any(s.get("kind") == "ServiceAccount" and s.get("name") == node_sa
                       and s.get("namespace") == "modelvol" for s in d.get("subjects", []))]
    check("one ClusterRoleBinding for the node plugin's ServiceAccount",
          len(bindings) == 1 and bindings[0]["kind"] == "ClusterRoleBinding", str(bindings))
    for b in bindings:
        role = find(docs, b["roleRef"]["kind"], b["roleRef"]["name"])
        rules = role.get("rules", []) if role else None
        check("its role grants create and patch on core/v1 events, nothing else",
              rules == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}],
              str(rules))
    others = [d for _, d in [*objects(docs, "ClusterRoleBinding"), *objects(docs, "RoleBinding")]
              if any(s.get("name") == warm_sa for s in d.get("subjects", []))]
    check("no role is bound to the pre-warm ServiceAccount", others == [], str(others))


def check_driver_name(docs):
    names = set()
    driver = find(docs, "CSIDriver", DRIVER)
    check("CSIDriver is named " + DRIVER, driver is not None)
    if driver:
        s = driver["spec"]
        check("CSIDriver: attachRequired false, podInfoOnMount true",
              s.get("attachRequired") is False and s.get("podInfoOnMount") is True)
        check("CSIDriver: volumeLifecycleModes Ephemeral and Persistent",
              sorted(s.get("volumeLifecycleModes", [])) == ["Ephemeral", "Persistent"])
        check("CSIDriver: fsGroupPolicy None", s.get("fsGroupPolicy") == "None")
    for _, d in objects(docs, "CSIDriver"):
        names.add(d["metadata"]["name"])

    def collect(k, v, parent):
        if k == "driver" and isinstance(v, str):
            names.add(v)

    for _, d in objects(docs):
        walk(d, collect)
    # Any *.csi.* name in the raw text (paths, comments) too.
    for path in yaml_files():
        with open(path) as f:
            names.update(re.findall(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*\.csi\.[a-z0-9.-]*[a-z0-9]", f.read()))
    names.discard("")
    check("the driver name is identical everywhere", names == {DRIVER}, str(sorted(names)))


def check_examples(docs):
    attrs_known = {"reference", "pullPolicy", "include", "exclude", "path"}
    secrets = {(d["metadata"].get("namespace", "default"), d["metadata"]["name"]): d
               for _, d in objects(docs, "Secret")}
    inline = 0
    for path, d in objects(docs):
        rel = os.path.relpath(path, SOURCE_DIR)
        vols = []

        def collect(k, v, parent):
            if k == "csi" and isinstance(v, dict) and "driver" in v:
                vols.append(v)

        walk(d, collect)
        for v in vols:
            attrs = v.get("volumeAttributes") or {}
            what = f"{rel} {d['kind']} {d['metadata']['name']}"
            is_pv = d["kind"] == "PersistentVolume"
            inline += 0 if is_pv else 1
            check(f"csi volume is readOnly ({what})", v.get("readOnly") is True)
            check(f"csi volume names a reference ({what})",
                  bool(attrs.get("reference") or (is_pv and v.get("volumeHandle"))))
            check(f"csi volumeAttributes are ones the plugin reads ({what})",
                  set(attrs) <= attrs_known, str(sorted(set(attrs) - attrs_known)))
            check(f"pullPolicy is IfNotPresent, Always or Never ({what})",
                  attrs.get("pullPolicy", "IfNotPresent") in ("IfNotPresent", "Always", "Never"))
            ref = v.get("nodePublishSecretRef")
            if ref:
                ns = ref.get("namespace") or d["metadata"].get("namespace", "default")
                s = secrets.get((ns, ref["name"]))
                check(f"nodePublishSecretRef names a dockerconfigjson Secret ({what})",
                      s is not None and s.get("type") == "kubernetes.io/dockerconfigjson"
                      and ".dockerconfigjson" in (s.get("stringData") or s.get("data") or {}))
    check("examples include inline ephemeral volumes", inline > 0)
    pvs = [d for _, d in objects(docs, "PersistentVolume")]
    pvcs = [d for _, d in objects(docs, "PersistentVolumeClaim")]
    check("examples include a static PV and PVC, both ReadOnlyMany",
          pvs and pvcs and all(x["spec"]["accessModes"] == ["ReadOnlyMany"] for x in pvs + pvcs))
    for pvc in pvcs:
        pv = next((p for p in pvs if p["metadata"]["name"] == pvc["spec"].get("volumeName")), None)
        check(f"PVC {pvc['metadata']['name']} binds its PV",
              pv is not None and pv["spec"].get("claimRef", {}).get("name") == pvc["metadata"]["name"])

    # Metrics: Service -> node pods' metrics port; ServiceMonitor -> Service.
    node = find(docs, "DaemonSet", "modelvol-node")
    svc = next((d for _, d in objects(docs, "Service")
                if any(p.get("name") == "metrics" for p in d["spec"].get("ports", []))), None)
    sm = next((d for _, d in objects(docs, "ServiceMonitor")), None)
    check("examples include a metrics Service and a ServiceMonitor", svc is not None and sm is not None)
    if svc and sm and node:
        labels = node["spec"]["template"]["metadata"]["labels"]
        sel = svc["spec"]["selector"]
        check("metrics Service selects the node plugin pods",
              all(labels.get(k) == v for k, v in sel.items()))
        port = next(p for p in svc["spec"]["ports"] if p["name"] == "metrics")
        declared = {p["name"] for c in node["spec"]["template"]["spec"]["containers"]
                    for p in c.get("ports") or []}
        check("metrics Service targets the declared metrics port", port["targetPort"] in declared)
        check("ServiceMonitor selects the metrics Service",
              all(svc["metadata"]["labels"].get(k) == v
                  for k, v in sm["spec"]["selector"]["matchLabels"].items())
              and any(e.get("port") == "metrics" for e in sm["spec"]["endpoints"]))


NAMESPACED = {"ServiceAccount", "DaemonSet", "Deployment", "ConfigMap", "Secret", "Service",
              "ServiceMonitor", "PersistentVolumeClaim", "Pod"}


def check_objects(docs):
    """What the API server would refuse at apply time: missing identity
    fields, selectors that do not select their own pods, mounts of volumes
    that do not exist, probes on undeclared ports."""
    # Kustomize patches are partial objects by design.
    patches = set()
    for path, d in objects(docs, "Kustomization"):
        patches |= {os.path.normpath(os.path.join(os.path.dirname(path), p["path"]))
                    for p in d.get("patches", []) if "path" in p}
    for path, d in objects(docs):
        if d.get("kind") in ("Kustomization", None) or os.path.normpath(path) in patches:
            continue
        rel = f"{os.path.relpath(path, SOURCE_DIR)} {d.get('kind')} {d.get('metadata', {}).get('name')}"
        check(f"has apiVersion, kind and metadata.name ({rel})",
              bool(d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name")))
        if path.startswith(BASE + os.sep) and d["kind"] in NAMESPACED:
            check(f"lives in namespace modelvol ({rel})", d["metadata"].get("namespace") == "modelvol")
        if d["kind"] in ("DaemonSet", "Deployment"):
            tmpl = d["spec"]["template"]
            sel = d["spec"]["selector"]["matchLabels"]
            labels = tmpl["metadata"].get("labels", {})
            check(f"selector selects its own pods ({rel})",
                  all(labels.get(k) == v for k, v in sel.items()))
            pod = tmpl["spec"]
        elif d["kind"] == "Pod":
            pod = d["spec"]
        else:
            continue
        vols = {v["name"] for v in pod.get("volumes") or []}
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            mounts = [m["name"] for m in c.get("volumeMounts") or []]
            check(f"container {c['name']} mounts only declared volumes ({rel})",
                  set(mounts) <= vols, str(sorted(set(mounts) - vols)))
            ports = {p.get("name") for p in c.get("ports") or []} | {
                p.get("name") for cc in pod["containers"] for p in cc.get("ports") or []}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str):
                    check(f"{c['name']} {probe} names a declared port ({rel})", port in ports, port)


def check_kustomization(docs):
    for kfile in glob.glob(os.path.join(DEPLOY, "**", "kustomization.yaml"), recursive=True):
        rel = os.path.relpath(kfile, SOURCE_DIR)
        k = docs.get(kfile, [{}])[0]
        d = os.path.dirname(kfile)
        listed = list(k.get("resources", [])) + [p["path"] for p in k.get("patches", []) if "path" in p]
        check(f"{rel}: every listed file exists",
              all(os.path.exists(os.path.join(d, r)) for r in listed))
        if d == BASE:
            own = {os.path.basename(p) for p in glob.glob(os.path.join(BASE, "*.yaml"))}
            own.discard("kustomization.yaml")
            check(f"{rel}: lists every manifest of the base", own == set(k.get("resources", [])),
                  str(sorted(own ^ set(k.get("resources", [])))))
        kubectl = shutil.which("kubectl")
        if not kubectl:
            print(f"SKIP: kubectl not installed: {rel} is not rendered")
            continue
        r = subprocess.run([kubectl, "kustomize", d], capture_output=True, text=True, timeout=60)
        check(f"{rel}: kubectl kustomize renders it", r.returncode == 0, r.stderr.strip()[:300])


def check_registry_configs(docs):
    modelpull = os.path.join(BUILD_DIR, "modelpull")
    n = 0
    for path, d in objects(docs, "ConfigMap"):
        text = (d.get("data") or {}).get("config.json")
        if text is None:
            continue
        n += 1
        rel = f"{os.path.relpath(path, SOURCE_DIR)} ConfigMap {d['metadata']['name']}"
        try:
            cfg = json.loads(text)
            check(f"config.json is JSON with a registries object ({rel})",
                  isinstance(cfg.get("registries"), dict))
        except ValueError as e:
            check(f"config.json is JSON ({rel})", False, str(e))
            continue
        if not os.access(modelpull, os.X_OK):
            print(f"SKIP: modelpull is not built: {rel} is not checked by the real parser")
            continue
        # prewarm loads the config before anything else; an empty list makes
        # it a pure config check.
        with tempfile.TemporaryDirectory(prefix="modelvol-deploy.") as tmp:
            conf = os.path.join(tmp, "config.json")
            lst = os.path.join(tmp, "models.txt")
            with open(conf, "w") as f:
                f.write(text)
            with open(lst, "w") as f:
                f.write("# empty\n")
            r = subprocess.run([modelpull, "--cache", os.path.join(tmp, "cache"), "--config", conf,
                                "prewarm", "-f", lst], capture_output=True, text=True, timeout=60)
            check(f"config.json is accepted by modelpull ({rel})", r.returncode == 0,
                  r.stderr.strip()[:300])
    check("a registry config.json ConfigMap exists", n > 0)


def check_dockerfile():
    path = os.path.join(DEPLOY, "Dockerfile")
    check("deploy/Dockerfile exists", os.path.exists(path))
    if not os.path.exists(path):
        return
    text = open(path).read()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    check("Dockerfile is multi-stage on Debian 12",
          len(stages) >= 2 and all(s.startswith("debian:12") for s in stages), str(stages))
    runtime = text[text.rfind("\nFROM "):]
    check("runtime stage installs no -dev package", not re.search(r"\S+-dev\b", runtime))
    for b in OUR_BINARIES:
        check(f"runtime image gets {b}", b in runtime or f"build/{b}" in text)
    pkgs = apt_packages(runtime)
    check("runtime stage installs packages with apt-get", len(pkgs) > 0)
    if shutil.which("apt-cache"):
        r = subprocess.run(["apt-cache", "policy", *pkgs], capture_output=True, text=True,
                           timeout=120)
        cands = dict(re.findall(r"^(\S+):\n\s+Installed:.*\n\s+Candidate:\s*(\S+)", r.stdout, re.M))
        for p in pkgs:
            check(f"runtime package {p} exists in Debian 12", cands.get(p, "(none)") != "(none)",
                  r.stdout.strip()[:200])
    else:
        print("SKIP: apt-cache not installed: runtime package names are not checked")
    check_runtime_libs(set(pkgs))


def apt_packages(stage):
    """Package names of the apt-get install lines in a Dockerfile stage."""
    pkgs = []
    joined = stage.replace("\\\n", " ")
    for m in re.finditer(r"apt-get install ([^&\n]*)", joined):
        pkgs += [t for t in m.group(1).split() if not t.startswith("-")]
    return pkgs


# Present in every Debian image (Essential: yes, or required by it).
BASE_PACKAGES = {"libc6", "libgcc-s1"}


def packages_of(paths):
    """{library path: owning Debian package}, usrmerge-aware, in one dpkg call."""
    variants = {}
    for path in paths:
        for c in {path, os.path.realpath(path)}:
            for v in (c, c[len("/usr"):] if c.startswith("/usr/") else "/usr" + c):
                variants[v] = path
    r = subprocess.run(["dpkg", "-S", *sorted(variants)], capture_output=True, text=True,
                       timeout=120)
    out = {}
    for line in r.stdout.splitlines():
        pkg, _, owned = line.partition(": ")
        for f in owned.split(", "):
            if f.strip() in variants:
                out[variants[f.strip()]] = pkg.split(":", 1)[0].split(",")[0].strip()
    return out


def dependency_closure(pkgs):
    """The packages apt installs for pkgs: pkgs and their Depends/PreDepends,
    recursively (apt-cache works from the local package lists, offline)."""
    r = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                        "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                        *sorted(pkgs)], capture_output=True, text=True, timeout=120)
    return {line.strip() for line in r.stdout.splitlines()
            if line and not line.startswith((" ", "<"))} | set(pkgs)


def check_runtime_libs(runtime_pkgs):
    """Every library a built binary links directly comes from a package the
    runtime stage installs, one apt pulls in for them, or the base image."""
    if not all(shutil.which(t) for t in ("readelf", "dpkg", "ldd", "apt-cache")):
        print("SKIP: readelf, ldd, dpkg or apt-cache missing: runtime libraries are not checked")
        return
    installed = dependency_closure(runtime_pkgs) | BASE_PACKAGES
    for b in OUR_BINARIES:
        path = os.path.join(BUILD_DIR, b)
        if not os.access(path, os.X_OK):
            print(f"SKIP: {b} is not built: its runtime libraries are not checked")
            continue
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                            subprocess.run(["readelf", "-d", path], capture_output=True, text=True,
                                           timeout=60).stdout)
        where = dict(re.findall(r"^\s*(\S+) => (/\S+)", subprocess.run(
            ["ldd", path], capture_output=True, text=True, timeout=60).stdout, re.M))
        owners = packages_of([where[lib] for lib in needed if lib in where])
        missing = []
        for lib in needed:
            pkg = owners.get(where.get(lib, ""))
            if pkg is None or pkg not in installed:
                missing.append(f"{lib} ({pkg or 'no package'})")
        check(f"runtime image has every library {b} links ({len(needed)} checked)", not missing,
              ", ".join(missing))


# ---- the manifests' command lines, run for real ------------------------------


def materialise(docs, spec, container, root):
    """Lays out under root what the container would see at each mount that
    its arguments name: hostPath mounts become empty directories, ConfigMap
    mounts become their files. Returns the argument list with every absolute
    path moved under root and $(VAR) references expanded."""
    env = {"NODE_NAME": "test-node"}
    for m in container.get("volumeMounts") or []:
        vol = next((v for v in spec.get("volumes") or [] if v["name"] == m["name"]), None)
        if vol is None:
            continue  # reported by check_objects
        dst = root + m["mountPath"]
        if "configMap" in vol:
            cm = find(docs, "ConfigMap", vol["configMap"]["name"])
            data = (cm or {}).get("data", {})
            if m.get("subPath"):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(dst, "w") as f:
                    f.write(data.get(m["subPath"], ""))
            else:
                os.makedirs(dst, exist_ok=True)
                for k, v in data.items():
                    with open(os.path.join(dst, k), "w") as f:
                        f.write(v)
        else:
            os.makedirs(dst, exist_ok=True)
    out = []
    for a in container_command(container)[1]:
        a = re.sub(r"\$\((\w+)\)", lambda mm: env.get(mm.group(1), ""), a)
        a = re.sub(r"(^|=|unix://)(/[^\s]*)", lambda mm: mm.group(1) + root + mm.group(2), a)
        out.append(a)
    return out


def http_get(url):
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode(errors="replace")
    except Exception as e:  # noqa: BLE001 - any failure means "not up yet"
        return None, str(e)


def check_plugin_starts(docs):
    """modelvol-csi runs with the DaemonSet's exact arguments (paths moved
    under a temp dir, and the metrics address moved to loopback: tests
    listen on 127.0.0.1 only), serves /metrics, and stops cleanly."""
    exe = os.path.join(BUILD_DIR, "modelvol-csi")
    ds = find(docs, "DaemonSet", "modelvol-node")
    if not os.access(exe, os.X_OK) or ds is None:
        print("SKIP: modelvol-csi is not built: it is not started with the manifest's arguments")
        return
    spec = ds["spec"]["template"]["spec"]
    c = container_by_command(spec, "modelvol-csi")
    with tempfile.TemporaryDirectory(prefix="modelvol-deploy.") as tmp:
        args = materialise(docs, spec, c, tmp)
        port = free_port()
        args = [re.sub(r"^--metrics-addr=.*", f"--metrics-addr=127.0.0.1:{port}", a) for a in args]
        sock = (flag_value(args, "--endpoint") or "")[len("unix://"):]
        reg_sock = os.path.join(flag_value(args, "--kubelet-registration-dir") or "",
                                f"{DRIVER}-reg.sock")
        log = open(os.path.join(tmp, "plugin.log"), "w")
        proc = subprocess.Popen([exe, *args], stdout=log, stderr=subprocess.STDOUT)
        try:
            up = wait_for(lambda: http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200
                          or proc.poll() is not None, 60)
            status, body = http_get(f"http://127.0.0.1:{port}/metrics")
            check("modelvol-csi starts with the manifest's arguments and serves /metrics",
                  up and status == 200 and "modelvol_ready" in body,
                  open(os.path.join(tmp, "plugin.log")).read()[-1500:])
            check("modelvol-csi listens on its --endpoint socket",
                  wait_for(lambda: os.path.exists(sock), 30), sock)
            check("modelvol-csi serves its registration socket in --kubelet-registration-dir",
                  wait_for(lambda: os.path.exists(reg_sock), 30), reg_sock)
        finally:
            rc = stop_process(proc)
            log.close()
        check("modelvol-csi exits 0 on SIGTERM and removes both sockets",
              rc == 0 and not os.path.exists(sock) and not os.path.exists(reg_sock), f"rc={rc}")


def check_prewarm_starts(docs):
    """The pre-warm DaemonSet's command runs against its ConfigMap (the
    shipped list is all comments) and exits 0 on SIGTERM."""
    exe = os.path.join(BUILD_DIR, "modelpull")
    ds = find(docs, "DaemonSet", "modelvol-prewarm")
    if not os.access(exe, os.X_OK) or ds is None:
        print("SKIP: modelpull is not built: prewarm is not started with the manifest's arguments")
        return
    spec = ds["spec"]["template"]["spec"]
    c = container_by_command(spec, "modelpull")
    with tempfile.TemporaryDirectory(prefix="modelvol-deploy.") as tmp:
        args = materialise(docs, spec, c, tmp)
        log_path = os.path.join(tmp, "prewarm.log")
        log = open(log_path, "w")
        proc = subprocess.Popen([exe, *args], stdout=log, stderr=subprocess.STDOUT)
        try:
            done = wait_for(lambda: "event=cycle_done" in open(log_path).read()
                            or proc.poll() is not None, 60)
            check("prewarm runs with the manifest's arguments and ConfigMap",
                  done and proc.poll() is None and "failed=0" in open(log_path).read(),
                  open(log_path).read()[-1500:])
        finally:
            rc = stop_process(proc)
            log.close()
        check("prewarm --watch exits 0 on SIGTERM", rc == 0, f"rc={rc}")


def main():
    docs = load_all()
    lint = shutil.which("yamllint")
    if lint:
        r = subprocess.run([lint, "-s", "-f", "parsable", "-c", os.path.join(DEPLOY, ".yamllint"), DEPLOY],
                           capture_output=True, text=True, timeout=120)
        check("yamllint -s passes on deploy/", r.returncode == 0, (r.stdout + r.stderr).strip()[:2000])
    else:
        check("yamllint is installed (scripts/install-deps)", False)
    check_objects(docs)
    check_driver_name(docs)
    node = check_node_daemonset(docs)
    check_prewarm(docs, node)
    check_rbac(docs)
    check_examples(docs)
    check_kustomization(docs)
    check_registrar_overlay()
    check_registry_configs(docs)
    check_flags(docs)
    check_plugin_starts(docs)
    check_prewarm_starts(docs)
    check_dockerfile()
    return T.summary()


if __name__ == "__main__":
    sys.exit(main())
