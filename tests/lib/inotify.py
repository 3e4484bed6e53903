"""inotify.py — counts how often a file is opened, with inotify(7) through
ctypes (no extra package). The kernel merges an event into an identical one
still unread, so a thread reads as events come: opens spaced by more than a
thread wake-up are each counted, and closer ones can only make the count
lower, never higher."""
import ctypes
import os
import select
import struct
import threading

IN_OPEN = 0x20
_libc = ctypes.CDLL(None, use_errno=True)


class OpenCounter:
    def __init__(self, path):
        self.path = path
        self.opens = 0
        self._fd = -1
        self._stop_r, self._stop_w = -1, -1
        self._thread = None

    def _read(self):
        while True:
            ready, _, _ = select.select([self._fd, self._stop_r], [], [])
            if self._fd in ready:
                buf = os.read(self._fd, 65536)
                off = 0
                while off < len(buf):
                    _, mask, _, name_len = struct.unpack_from("iIII", buf, off)
                    if mask & IN_OPEN:
                        self.opens += 1
                    off += 16 + name_len
            elif self._stop_r in ready:
                return

    def __enter__(self):
        self._fd = _libc.inotify_init()
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init")
        if _libc.inotify_add_watch(self._fd, os.fsencode(self.path), IN_OPEN) < 0:
            os.close(self._fd)
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {self.path}")
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *a):
        # The events of a finished process are all queued by now, and
        # _read drains the inotify fd before it looks at the stop.
        os.write(self._stop_w, b"x")
        self._thread.join()
        for fd in (self._fd, self._stop_r, self._stop_w):
            os.close(fd)
