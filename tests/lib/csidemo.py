"""csidemo.py — the CSI step of scripts/demo: starts modelvol-csi on a temp
socket, publishes one model read-only the way the kubelet does, shows the
mounted tree, its mount line and a refused write, then unpublishes it.

Run with /usr/bin/python3 (Debian's grpc and protobuf live there).

    csidemo.py --bin PATH --cache DIR --reference REF --workdir DIR
"""
import argparse
import errno
import os
import shutil
import sys
import tempfile
import time

from csiclient import pb
from csidaemon import Daemon
from mounts import mountinfo_line, require_root, tree_listing


def demo(args):
    require_root()
    work = tempfile.mkdtemp(prefix="csi-demo.", dir=args.workdir)
    target = os.path.join(work, "pods", "demo-pod", "volumes", "model")
    os.makedirs(os.path.dirname(target))
    d = Daemon(work, args.cache, node_id="demo-node", binary=args.bin)
    d.start()
    try:
        c = d.client
        info = c.call("Identity", "GetPluginInfo")
        print(f"plugin: {info.name} {info.vendor_version}; node: "
              f"{c.call('Node', 'NodeGetInfo').node_id}; ready: {c.probe()}")
        print(f"NodePublishVolume reference={args.reference} readonly=true -> {target}")
        t0 = time.monotonic()
        c.publish(target, args.reference, volume_id="demo-volume", timeout=args.timeout)
        print(f"published in {time.monotonic() - t0:.2f}s\n")
        print(f"mounted tree at {target}:")
        for line in tree_listing(target):
            print("  " + line)
        print("\nmount (from /proc/self/mountinfo):")
        print("  " + (mountinfo_line(target) or "(not mounted!)"))
        try:
            with open(os.path.join(target, "write-test"), "w") as f:
                f.write("x")
            print("\nwrite into the volume: SUCCEEDED (this is a bug)")
            return 1
        except OSError as e:
            print(f"\nwrite into the volume: {errno.errorcode.get(e.errno, e.errno)} "
                  f"({e.strerror}), as it should be")
        stats = c.volume_stats(target, volume_id="demo-volume")
        for u in stats.usage:
            print(f"NodeGetVolumeStats: {pb().VolumeUsage.Unit.Name(u.unit)} used={u.used}")
        c.unpublish(target, volume_id="demo-volume")
        print(f"\nunpublished: mounted={mountinfo_line(target) is not None} "
              f"target exists={os.path.exists(target)}")
    finally:
        rc = d.stop()
        print(f"modelvol-csi stopped (exit {rc}); socket removed={not os.path.exists(d.sock_path)}")
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, help="path to modelvol-csi")
    p.add_argument("--cache", required=True, help="node cache directory")
    p.add_argument("--reference", required=True, help="model reference")
    p.add_argument("--workdir", required=True, help="where the socket and target go")
    p.add_argument("--timeout", type=float, default=300, help="publish deadline in seconds")
    return demo(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
