"""Resume and mirrors. A pull killed with SIGKILL in the middle of a ranged
download (behind nginx's 307 to a rate-limited storage block) leaves its
partial file and resume record; the next pull fetches only the missing
ranges. A SIGTERM cancels cleanly (one-line error, record kept). Mirrors
from the registry config are tried in order before the
origin: a dead mirror and a mirror without the blob fall back; a mirror
that has it serves every byte; a manifest from a mirror that does not
verify is fetched again from the origin; the origin's credentials never
reach a mirror on another host."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import mvfetch  # noqa: E402
from checks import Checks  # noqa: E402
from faultserver import FaultServer  # noqa: E402
from mvreg import Registry  # noqa: E402
from nginx import Nginx  # noqa: E402
from util import free_port, sha256_file, wait_for  # noqa: E402

SIZE = 48 * 1024 * 1024 + 5
CHUNK = 4 * 1024 * 1024
FLAGS = ["--chunk-size", "4M", "--threshold", "8M", "--connections", "4"]
USER, PASSWORD = "mirroruser", "m1rror-Secret-pw"


def read_state(path):
    ivs = []
    try:
        with open(path) as f:
            for line in f.read().splitlines()[3:]:
                a, b = line.split()
                ivs.append((int(a), int(b)))
    except (OSError, ValueError):
        pass
    return ivs


def main():
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-pull-resume.")
    try:
        blob = os.path.join(tmp, "blob.bin")
        digest = mvfetch.random_file(blob, SIZE)
        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            mdigest = reg.push_model("models/r", "v1", {"w.safetensors": blob})
            with Nginx(tmp, reg.addr, redirect_blobs=True, storage_rate="1m") as ng:
                ref = f"{ng.addr}/models/r:v1"
                outf, state = os.path.join(tmp, "out"), os.path.join(tmp, "out.state")
                p = subprocess.Popen([mvfetch.binary()] + FLAGS +
                                     ["blob", ref, digest, str(SIZE), outf, state],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=dict(os.environ, DOCKER_CONFIG="/nonexistent"))
                done_before = []

                def three_chunks_recorded():
                    done_before[:] = read_state(state)
                    return p.poll() is not None or sum(b - a for a, b in done_before) >= 3 * CHUNK
                wait_for(three_chunks_recorded, 60)
                killed = p.poll() is None
                p.send_signal(signal.SIGKILL)
                pout, perr = p.communicate()
                t.check("pull was killed mid-way with ranges recorded", killed and done_before,
                        f"{done_before} {pout} {perr}")
                done_before = read_state(state)
                have = sum(b - a for a, b in done_before)
                nlog = len(ng.read_log("storage"))
                rc, out, err = mvfetch.run(FLAGS + ["--connections", "12", "blob", ref, digest,
                                                    SIZE, outf, state])
                st = mvfetch.stats(out)
                t.check("resumed pull succeeds", rc == 0, err)
                t.check("resumed bytes identical", sha256_file(outf) == digest)
                t.check("recorded ranges counted as resumed", st.get("resumed") == have,
                        f"{st} have={have}")
                t.check("only missing bytes downloaded", st.get("downloaded") == SIZE - have, str(st))
                second = ng.read_log("storage")[nlog:]
                starts = [int(l.split('range="bytes=')[1].split("-")[0])
                          for l in second if 'range="bytes=' in l]
                refetched = [s for s in starts if any(a <= s < b for a, b in done_before)]
                t.check("no completed range fetched again", starts and not refetched,
                        f"starts={starts} done={done_before}")
                t.check("record removed after success", not os.path.exists(state))

                # A record that claims bytes the partial file does not hold, as
                # a power loss after a light save leaves it: the digest fails,
                # and the blob is fetched again from zero within the same pull.
                outl, statel = os.path.join(tmp, "outl"), os.path.join(tmp, "outl.state")
                with open(outl, "wb") as f:
                    f.truncate(SIZE)
                with open(statel, "w") as f:
                    f.write(f"modelvol-ranges 1\ndigest {digest}\nsize {SIZE}\n0 {3 * CHUNK}\n")
                rc, out, err = mvfetch.run(FLAGS + ["--progress", "json", "blob", ref, digest,
                                                    SIZE, outl, statel])
                st = mvfetch.stats(out)
                t.check("a record claiming lost bytes: the pull still succeeds", rc == 0, err)
                t.check("lost bytes: result byte-identical", sha256_file(outl) == digest)
                t.check("lost bytes: one restart from zero, announced",
                        err.count("resumed bytes do not verify") == 1 and
                        st.get("resumed") == 0 and
                        st.get("downloaded") == 2 * SIZE - 3 * CHUNK, f"{st} {err[-300:]}")
                t.check("lost bytes: record removed after success", not os.path.exists(statel))

                # A polite stop (SIGTERM: the cancel flag) also keeps the record.
                outc, statec = os.path.join(tmp, "outc"), os.path.join(tmp, "outc.state")
                p = subprocess.Popen([mvfetch.binary()] + FLAGS +
                                     ["blob", ref, digest, str(SIZE), outc, statec],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, DOCKER_CONFIG="/nonexistent"))
                wait_for(lambda: p.poll() is not None or read_state(statec), 60)
                p.send_signal(signal.SIGTERM)
                pout, perr = p.communicate(timeout=60)
                t.check("SIGTERM cancels with a one-line error",
                        p.returncode == 130 and "cancelled" in perr and
                        len(perr.strip().splitlines()) == 1, f"{p.returncode} {perr}")
                t.check("cancelled pull keeps its record", read_state(statec) != [])

            # Mirrors.
            with Registry(tmp=os.path.join(tmp, "mirror")) as mirror:
                mirror.push_model("models/r", "v1", {"w.safetensors": blob})
                dead = f"http://127.0.0.1:{free_port()}"
                cfgp = os.path.join(tmp, "mirrors.json")

                def config(mirrors):
                    with open(cfgp, "w") as f:
                        json.dump({"registries": {reg.addr: {"mirrors": mirrors}}}, f)
                    return ["--config", cfgp]

                ref = f"{reg.addr}/models/r:v1"
                out2 = os.path.join(tmp, "m1")
                nreg = len(reg.access_log())
                rc, out, err = mvfetch.run(FLAGS + config([dead, f"http://{mirror.addr}"]) +
                                           ["blob", ref, digest, SIZE, out2, out2 + ".st"])
                st = mvfetch.stats(out)
                t.check("dead mirror falls back to the next mirror", rc == 0 and
                        st.get("mirror") == SIZE and st.get("origin") == 0, out + err)
                t.check("mirror bytes identical", sha256_file(out2) == digest)
                t.check("origin saw no blob request",
                        f"blobs/{digest}" not in reg.access_log()[nreg:])
                rc, out, err = mvfetch.run(config([f"http://{mirror.addr}"]) + ["manifest", ref])
                t.check("manifest from the mirror", rc == 0 and "GET /v2/models/r/manifests/v1"
                        in mirror.access_log(), err)

                with FaultServer({}, "404") as fs:
                    out3 = os.path.join(tmp, "m2")
                    rc, out, err = mvfetch.run(FLAGS + config([dead, f"http://{fs.addr}"]) +
                                               ["blob", ref, digest, SIZE, out3, out3 + ".st"])
                    st = mvfetch.stats(out)
                    t.check("mirrors without the blob fall back to the origin",
                            rc == 0 and st.get("origin") == SIZE and st.get("mirror") == 0,
                            out + err)
                    t.check("origin bytes identical", sha256_file(out3) == digest)

                mt = "application/vnd.oci.image.manifest.v1+json"
                lying = {"v1": (b'{"schemaVersion":2}', mt, "sha256:" + "1" * 64)}
                with FaultServer({}, "ok", manifests=lying) as fs:
                    rc, out, err = mvfetch.run(config([f"http://{fs.addr}"]) + ["manifest", ref])
                    t.check("a manifest from a mirror that does not verify: origin asked",
                            rc == 0 and out.splitlines()[0] == mdigest and
                            len(fs.log) == 1, out + err)

            with Nginx(tmp, reg.addr, basic=(USER, PASSWORD)) as ng, \
                    FaultServer({digest: blob}, "ok") as fs:
                dc = mvfetch.write_docker_config(os.path.join(tmp, "dc"), {
                    ng.addr: {"username": USER, "password": PASSWORD}})
                with open(cfgp, "w") as f:
                    json.dump({"registries": {ng.addr: {"mirrors": [f"http://{fs.addr}"]}}}, f)
                out4 = os.path.join(tmp, "m3")
                rc, out, err = mvfetch.run(FLAGS + ["--config", cfgp, "blob", f"{ng.addr}/models/r:v1",
                                                    digest, SIZE, out4, out4 + ".st"],
                                           env={"DOCKER_CONFIG": dc})
                t.check("authenticated origin, anonymous mirror serves",
                        rc == 0 and mvfetch.stats(out).get("mirror") == SIZE, out + err)
                t.check("origin credentials never sent to the mirror",
                        fs.auth_headers and all(a is None for a in fs.auth_headers),
                        str(fs.auth_headers[:3]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
