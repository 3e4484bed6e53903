"""test_csi_register.py — self-registration with the kubelet's plugin
watcher, with a real gRPC client in the kubelet's place: the socket
appears under the registration directory as <driver>-reg.sock, GetInfo
answers what the kubelet's CSI handler checks (type, name, a 1.x version,
the endpoint it will dial), the endpoint it names answers Probe,
NotifyRegistrationStatus is logged and shown in metrics (refusals with the
kubelet's reason), a stale socket is replaced, SIGTERM removes the socket,
and --self-register=false serves no socket at all. No mount, no registry."""
import os
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import csiclient  # noqa: E402
import logs  # noqa: E402
import mounts  # noqa: E402
from checks import Checks  # noqa: E402
from csidaemon import Daemon, csi_binary  # noqa: E402

DRIVER = "modelvol.csi.io"


def metric(d, name):
    for line in d.metrics().splitlines():
        if line.startswith(name + " "):
            return line.split()[1]
    return None


def registration(t, work):
    d = Daemon(work, os.path.join(work, "cache")).start()
    try:
        sock = d.reg_socket()
        t.check("the registration socket is <dir>/<driver>-reg.sock", os.path.exists(sock), sock)
        t.check("metrics say not registered before the kubelet answers",
                metric(d, "modelvol_kubelet_registered") == "0", d.metrics())
        reg = csiclient.Registration(sock)
        try:
            info = reg.get_info()
            t.check("GetInfo: type CSIPlugin", info.type == "CSIPlugin", info.type)
            t.check("GetInfo: name is the driver", info.name == DRIVER, info.name)
            t.check("GetInfo: a 1.x CSI version, as the kubelet requires",
                    any(v.startswith("1.") for v in info.supported_versions),
                    list(info.supported_versions))
            t.check("GetInfo: the endpoint is the CSI socket path", info.endpoint == d.sock_path,
                    info.endpoint)
            # The kubelet dials the endpoint it was given for every CSI call.
            c = csiclient.Client(info.endpoint)
            try:
                t.check("the advertised endpoint answers Probe", c.probe(timeout=5))
            finally:
                c.close()
            reg.notify(True)
            t.check("NotifyRegistrationStatus(true) is logged",
                    any(e.get("registered") == "true"
                        for e in logs.log_events(d.read_log(), "registration_status")), d.read_log())
            t.check("metrics say registered", metric(d, "modelvol_kubelet_registered") == "1",
                    d.metrics())
            reg.notify(False, error="driver name modelvol.csi.io already registered")
            refused = [e for e in logs.log_events(d.read_log(), "registration_status")
                       if e.get("registered") == "false"]
            t.check("a refusal is logged as an error with the kubelet's reason",
                    refused and refused[-1].get("level") == "error"
                    and "already registered" in refused[-1].get("error", ""), d.read_log())
            t.check("metrics say not registered after a refusal",
                    metric(d, "modelvol_kubelet_registered") == "0", d.metrics())
        finally:
            reg.close()
        rc = d.stop()
        t.check("SIGTERM: clean exit", rc == 0, rc)
        t.check("SIGTERM removes the registration socket, deregistering the driver",
                not os.path.exists(sock))
    finally:
        d.stop()


def kubelet_path(t, work):
    w = os.path.join(work, "path")
    os.makedirs(w)
    d = Daemon(w, os.path.join(w, "cache"),
               args=["--kubelet-registration-path", "/var/lib/kubelet/plugins/modelvol/csi.sock"])
    d.start()
    try:
        reg = csiclient.Registration(d.reg_socket())
        try:
            info = reg.get_info()
            t.check("--kubelet-registration-path is the endpoint GetInfo gives",
                    info.endpoint == "/var/lib/kubelet/plugins/modelvol/csi.sock", info.endpoint)
        finally:
            reg.close()
    finally:
        d.stop()


def stale_socket(t, work):
    w = os.path.join(work, "stale")
    d = Daemon(w, os.path.join(w, "cache"))
    os.makedirs(d.reg_dir)
    # A socket left by a killed plugin: bound, nobody listening.
    s = socket.socket(socket.AF_UNIX)
    s.bind(d.reg_socket())
    s.close()
    d.start()
    try:
        reg = csiclient.Registration(d.reg_socket())
        try:
            t.check("a stale registration socket is replaced and served",
                    reg.get_info().name == DRIVER)
        finally:
            reg.close()
        t.check("the replacement is logged",
                any(e.get("path") == d.reg_socket()
                    for e in logs.log_events(d.read_log(), "stale_socket_removed")), d.read_log())
    finally:
        d.stop()


def switched_off(t, work):
    w = os.path.join(work, "off")
    os.makedirs(w)
    d = Daemon(w, os.path.join(w, "cache"), register=False).start()
    try:
        t.check("--self-register=false: no registration socket",
                not os.path.exists(d.reg_socket()), d.reg_socket())
        t.check("--self-register=false: no registration metric",
                "modelvol_kubelet_registered" not in d.metrics())
        t.check("--self-register=false: CSI still served", d.client.probe(timeout=5))
    finally:
        d.stop()


def bad_flags(t, work):
    binary = csi_binary()
    base = [binary, "--endpoint", f"unix://{work}/bad.sock", "--node-id", "n", "--cache",
            os.path.join(work, "bad-cache"), "--metrics-addr", "off"]
    r = subprocess.run(base + ["--self-register", "maybe"], capture_output=True, text=True,
                       timeout=30)
    t.check("--self-register takes true or false, in one line",
            r.returncode == 2 and "--self-register" in r.stderr and r.stderr.count("\n") == 1,
            r.stderr)
    missing = os.path.join(work, "no-such-registry")
    r = subprocess.run(base + ["--kubelet-registration-dir", missing], capture_output=True,
                       text=True, timeout=30)
    t.check("a named registration dir that is missing is refused, named",
            r.returncode != 0 and missing in r.stderr, r.stderr)
    r = subprocess.run(base + ["--kubelet-registration-dir", work, "--kubelet-registration-path",
                               "relative/csi.sock"], capture_output=True, text=True, timeout=30)
    t.check("a relative --kubelet-registration-path is refused",
            r.returncode != 0 and "--kubelet-registration-path" in r.stderr, r.stderr)


def main():
    t = Checks()
    work = tempfile.mkdtemp(prefix="test-csi-register.")
    try:
        registration(t, work)
        kubelet_path(t, work)
        stale_socket(t, work)
        switched_off(t, work)
        bad_flags(t, work)
    finally:
        mounts.remove_tree(work)
    t.done()


if __name__ == "__main__":
    main()
