"""logs.py — reads the logs tests assert on: the blob GETs in a
docker-registry or nginx access log (what was downloaded, and how much),
and modelvol's own logfmt lines (`ts=… level=… event=… key=value …`)."""
import re

BLOB_GET = re.compile(r'"GET /v2/(?P<repo>\S+?)/blobs/(?P<digest>sha\d+:[0-9a-f]+)\S* HTTP/[\d.]+" '
                      r'(?P<status>\d{3}) (?P<bytes>\d+)')


def blob_gets(access_log, digest=None):
    """(digest, status, bytes) of every blob GET in a docker-registry or
    nginx access log, optionally only for one digest."""
    out = []
    for m in BLOB_GET.finditer(access_log):
        if digest is None or m.group("digest") == digest:
            out.append((m.group("digest"), int(m.group("status")), int(m.group("bytes"))))
    return out


def blob_bytes_served(access_log, digest=None):
    """Body bytes served by successful blob GETs."""
    return sum(b for _, status, b in blob_gets(access_log, digest) if status in (200, 206))


def blob_bytes_by_digest(access_log):
    """{digest: body bytes served by successful GETs of it}."""
    out = {}
    for d, status, b in blob_gets(access_log):
        if status in (200, 206):
            out[d] = out.get(d, 0) + b
    return out


LOGFMT_PAIR = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^" =]+)')


def logfmt_fields(line):
    """{key: value} of one logfmt line, quoted values unescaped (\\" \\\\
    \\n \\xHH, as base/log.c writes them)."""
    out = {}
    for key, value in LOGFMT_PAIR.findall(line):
        if value.startswith('"'):
            value = re.sub(r'\\(x[0-9a-f]{2}|.)',
                           lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x"
                           else "\n" if m.group(1) == "n" else m.group(1), value[1:-1])
        out[key] = value
    return out


def log_events(log, event):
    """The fields of every line of a modelvol log whose event is `event`,
    in order."""
    out = []
    for line in log.splitlines():
        if f" event={event} " in line or line.endswith(f" event={event}"):
            out.append(logfmt_fields(line))
    return out
