"""test_csi_restart.py — modelvol-csi restarting under mounted volumes
(root, real registry, real mounts):

  * SIGTERM leaves published volumes mounted and their records on disk;
  * a volume whose mount vanished while the daemon was down (a reboot, an
    admin's umount) is dropped at start with its pin; a mounted one is kept;
  * after the restart a kubelet repeat of the publish is OK without a
    second mount, stats work, and unpublish removes mount, pin and record;
  * the same after SIGKILL: nothing is lost."""
import hashlib
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import csidaemon  # noqa: E402
import mounts  # noqa: E402
from csiclient import Checks  # noqa: E402
from csidaemon import Daemon  # noqa: E402
import mvreg  # noqa: E402
import grpc  # noqa: E402

SC = grpc.StatusCode


def records(cache):
    return sorted(n for n in os.listdir(os.path.join(cache, "csi")) if n.endswith(".rec"))


def main():
    mounts.require_root()
    t = Checks()
    work = tempfile.mkdtemp(prefix="csi-restart.")
    try:
        with mvreg.Registry(os.path.join(work, "reg")) as reg:
            reg.push_model("models/r", "v1", {"model.safetensors": os.urandom(256 * 1024),
                                              "config.json": b'{"r": 1}'})
            ref = f"{reg.addr}/models/r:v1"
            cache = os.path.join(work, "cache")
            keep = os.path.join(work, "pods", "keep", "mount")
            lost = os.path.join(work, "pods", "lost", "mount")
            killed = os.path.join(work, "pods", "killed", "mount")
            for p in (keep, lost, killed):
                os.makedirs(os.path.dirname(p))

            d = Daemon(work, cache, node_id="restart-node").start()
            t.code("publish keep", SC.OK, d.client.publish, keep, ref, volume_id="vol-keep")
            t.code("publish lost", SC.OK, d.client.publish, lost, ref, volume_id="vol-lost")
            t.check("SIGTERM exit 0", d.stop() == 0)
            t.check("volumes stay mounted across the stop", mounts.mountinfo_line(keep)
                    and mounts.mountinfo_line(lost))
            t.check("two records on disk", len(records(cache)) == 2, str(records(cache)))

            # While the daemon is down, one mount disappears.
            subprocess.run(["umount", lost], check=True)

            d = Daemon(work, cache, node_id="restart-node").start()
            c = d.client
            t.check("ready again after restart", c.probe())
            log = d.read_log()
            t.check("the mounted volume is restored", f"event=volume_restored target={keep}" in log)
            t.check("the unmounted volume is dropped", f"event=volume_dropped target={lost}" in log)
            t.check("its pin is gone", not csidaemon.owner_pinned(cache, lost))
            t.check("the kept pin remains", csidaemon.owner_pinned(cache, keep))
            t.check("one record left", len(records(cache)) == 1, str(records(cache)))
            t.code("kubelet repeats publish keep", SC.OK, c.publish, keep, ref,
                   volume_id="vol-keep")
            t.check("no second mount stacked", len(mounts.mountinfo_lines(keep)) == 1,
                    str(mounts.mountinfo_lines(keep)))
            t.code("stats of the restored volume", SC.OK, c.volume_stats, keep,
                   volume_id="vol-keep")
            t.code("another model on the restored target", SC.ALREADY_EXISTS, c.publish, keep,
                   f"{reg.addr}/models/other:v1", volume_id="vol-keep")
            t.code("unpublish lost (already gone)", SC.OK, c.unpublish, lost, volume_id="vol-lost")

            # A crash between pin and record: a pin no record explains.
            orphan = os.path.join(work, "pods", "orphan", "mount")
            os.makedirs(os.path.dirname(orphan))
            t.code("publish orphan", SC.OK, c.publish, orphan, ref, volume_id="vol-orphan")
            d.stop()
            subprocess.run(["umount", orphan], check=True)
            rec = hashlib.sha256(orphan.encode()).hexdigest() + ".rec"
            os.unlink(os.path.join(cache, "csi", rec))
            t.check("the orphan pin exists before the restart", csidaemon.owner_pinned(cache, orphan))
            d = Daemon(work, cache, node_id="restart-node").start()
            c = d.client
            t.check("a pin without a record is dropped at start",
                    not csidaemon.owner_pinned(cache, orphan)
                    and "reason=\"pin without a record\"" in d.read_log())
            t.check("the kept volume's pin survives that sweep", csidaemon.owner_pinned(cache, keep))

            t.code("publish killed", SC.OK, c.publish, killed, ref, volume_id="vol-killed")
            d.stop(signal.SIGKILL)
            d = Daemon(work, cache, node_id="restart-node").start()
            c = d.client
            t.check("after SIGKILL the volume is restored",
                    f"event=volume_restored target={killed}" in d.read_log())
            t.code("unpublish killed", SC.OK, c.unpublish, killed, volume_id="vol-killed")
            t.code("unpublish keep", SC.OK, c.unpublish, keep, volume_id="vol-keep")
            t.check("nothing mounted", not any(mounts.mountinfo_line(p)
                                               for p in (keep, lost, killed)))
            t.check("no pins", not any(csidaemon.owner_pinned(cache, p)
                                       for p in (keep, lost, killed)))
            t.check("no records", not records(cache), str(records(cache)))
            t.check("final SIGTERM exit 0", d.stop() == 0)
            if t.failed:
                print(d.read_log()[-6000:])
    finally:
        mounts.remove_tree(work)
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
