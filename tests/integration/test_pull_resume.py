"""Resume and mirrors. A pull killed with SIGKILL in the middle of a ranged
download (behind nginx's 307 to a rate-limited storage block) leaves its
partial file and resume record; the next pull fetches only the missing
ranges. Byte-level resume: `modelpull` killed several times before any
range completes, on storage capped per connection, keeps what each run
wrote (the record holds the written prefix of every range in flight), so
the storage serves little more than the model in all; a blob below the
range threshold (one stream) resumes at its first missing byte too. A
SIGTERM cancels
cleanly (one-line error, record kept). Mirrors
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
import hardlib  # noqa: E402
import logs  # noqa: E402
import mvfetch  # noqa: E402
from checks import Checks  # noqa: E402
from faultserver import FaultServer  # noqa: E402
from mvreg import Registry  # noqa: E402
from nginx import Nginx  # noqa: E402
from util import free_port, sha256_file, tree_digests, wait_for  # noqa: E402

SIZE = 48 * 1024 * 1024 + 5
CHUNK = 4 * 1024 * 1024
FLAGS = ["--chunk-size", "4M", "--threshold", "8M", "--connections", "4"]
STREAM_SIZE = 6 * 1024 * 1024 + 3  # below --threshold: one stream
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


# Byte-level resume: 4 connections at 2 MiB/s each on a 128 MiB blob cut
# into 32 MiB ranges, so no range completes before any of the kills and
# only the written prefixes of ranges in flight can be kept.
KILL_SIZE = 128 * 1024 * 1024 + 7
KILL_CHUNK = 32 * 1024 * 1024
KILLS = 4
KILL_STEP = 1536 * 1024  # bytes range 0 grows by in each run before its kill
# A kill loses up to ~250 ms of 8 MiB/s (the record trails the disk by at
# most 50 + 200 ms), ~1.2 MiB on average: 4 kills stay well within 1.1x.
KILL_PULL = ["pull", "--progress=none", "--connections", "4", "--chunk-size", "32M"]


def settled_log(ng):
    """The storage log once it stops growing: a killed client's GETs are
    logged when nginx notices it is gone, which may be after the kill."""
    last = [None]

    def stable():
        n = len(ng.read_log("storage"))
        same, last[0] = last[0] == n, n
        return same
    wait_for(stable, 10, 0.25)
    return ng.read_log("storage")


def range0_prefix(state):
    """Bytes of range 0 the record holds (from offset 0 without a gap)."""
    for a, b in read_state(state):
        if a == 0:
            return b
    return 0


def written_at(partial, off):
    """Whether the page at off of the partial file holds blob bytes: the
    file is allocated in full up front, and the blob is random, so a page
    still all zero is one not written yet."""
    try:
        with open(partial, "rb") as f:
            f.seek(off)
            page = f.read(4096)
        return len(page) == 4096 and page.count(0) < len(page)
    except OSError:
        return False


def byte_resume(t, tmp, reg):
    blob = os.path.join(tmp, "kill.bin")
    digest = mvfetch.random_file(blob, KILL_SIZE)
    reg.push_model("models/k", "v1", {"w.safetensors": blob})
    total = sum(hardlib.manifest_sizes(reg, "models/k", "v1").values())
    cache = os.path.join(tmp, "kcache")
    hx = digest.split(":", 1)[1]
    partial = os.path.join(cache, "ingest", hx + ".partial")
    state = os.path.join(cache, "ingest", hx + ".state")
    with Nginx(tmp, reg.addr, redirect_blobs=True, storage_rate="2m") as ng:
        ref = f"{ng.addr}/models/k:v1"
        killed, kept = 0, []
        for i in range(KILLS):
            # Kill once range 0 has grown KILL_STEP past what the record
            # held: a moment the pull does not choose, unlike a save.
            target = range0_prefix(state) + KILL_STEP
            p = subprocess.Popen([hardlib.MODELPULL, "--cache", cache] + KILL_PULL + [ref],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 env=hardlib.ENV)
            wait_for(lambda: p.poll() is not None or written_at(partial, target), 60)
            alive = p.poll() is None
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=60)
            killed += alive
            kept.append(sum(b - a for a, b in read_state(state)))
        t.check(f"byte resume: {KILLS} pulls killed before any range completed",
                killed == KILLS and all(b - a < KILL_CHUNK for a, b in read_state(state)),
                f"killed={killed} record={read_state(state)}")
        t.check("byte resume: each kill kept more than the one before (partial ranges recorded)",
                all(b > a for a, b in zip([0] + kept, kept)), str(kept))
        rc, out, err = hardlib.modelpull(cache, *KILL_PULL, ref)
        tree = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
        t.check("byte resume: the clean pull is byte-identical",
                rc == 0 and tree and sha256_file(os.path.join(tree, "w.safetensors")) == digest,
                err)
        ok, vout = hardlib.verify_clean(cache)
        t.check("byte resume: verify clean", ok, vout)

        served = logs.blob_bytes_served("\n".join(settled_log(ng)))
        print(f"   byte resume: {KILLS} kills, kept {kept}, storage served {served} B "
              f"= {served / total:.3f}x the model", flush=True)
        t.check("byte resume: storage served at most 1.1x the model in all",
                total <= served <= 1.1 * total, f"{served} vs {total}")


def main():
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="modelvol-pull-resume.")
    try:
        blob = os.path.join(tmp, "blob.bin")
        digest = mvfetch.random_file(blob, SIZE)
        with Registry(tmp=os.path.join(tmp, "reg")) as reg:
            byte_resume(t, tmp, reg)
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
                nlog = len(settled_log(ng))
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

                # A blob below the range threshold is one stream: it keeps a
                # record of its written prefix too, and resumes from there.
                sblob = os.path.join(tmp, "stream.bin")
                sdigest = mvfetch.random_file(sblob, STREAM_SIZE)
                reg.push_model("models/s", "v1", {"s.bin": sblob})
                sref = f"{ng.addr}/models/s:v1"
                outs, states = os.path.join(tmp, "outs"), os.path.join(tmp, "outs.state")
                p = subprocess.Popen([mvfetch.binary()] + FLAGS +
                                     ["blob", sref, sdigest, str(STREAM_SIZE), outs, states],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=dict(os.environ, DOCKER_CONFIG="/nonexistent"))
                wait_for(lambda: p.poll() is not None or
                         sum(b - a for a, b in read_state(states)) >= 2 << 20, 60)
                alive = p.poll() is None
                p.send_signal(signal.SIGKILL)
                p.communicate()
                have_s = read_state(states)
                t.check("stream killed mid-way with its prefix recorded",
                        alive and len(have_s) == 1 and have_s[0][0] == 0 and
                        have_s[0][1] < STREAM_SIZE, str(have_s))
                nlog = len(settled_log(ng))
                rc, out, err = mvfetch.run(FLAGS + ["blob", sref, sdigest, STREAM_SIZE, outs,
                                                    states])
                st = mvfetch.stats(out)
                prefix = have_s[0][1] if have_s else -1
                ranges = [line.split('range="')[1].split('"')[0]
                          for line in ng.read_log("storage")[nlog:] if 'range="' in line]
                t.check("stream resumes at its first missing byte",
                        rc == 0 and sha256_file(outs) == sdigest and
                        st.get("resumed") == prefix and
                        st.get("downloaded") == STREAM_SIZE - prefix and
                        ranges == [f"bytes={prefix}-{STREAM_SIZE - 1}"],
                        f"{rc} {st} {ranges} {err[-300:]}")

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
