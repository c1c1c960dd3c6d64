"""evil-py: a Python plugin that misbehaves on purpose, to test that the host contains Python
plugins exactly as it contains Rust ones. The configuration `{"mode": …}` picks how; `count`
and `bytes` change how many of a mode's things it makes and how big each is:

| mode | what `on_batch` does |
|---|---|
| `none` (or absent) | returns one `Notify("evil", "<batch token>")` per batch |
| `raise` | raises an uncaught ZeroDivisionError |
| `loop` | loops forever |
| `memory` | grows a list of 32 MiB buffers without bound |
| `counter-names` | adds 1 to 10,000 (`count`) distinct counters, each name 64 KiB (`bytes`) long |
| `kv-tombstones` | deletes 100,000 (`count`) distinct keys of 1,000 bytes (`bytes`) |
| `kv-values` | sets 1 (`count`) distinct 11-byte keys to values of 1 MiB (`bytes`) of `v`s; a refused `set` raises the SDK's Fatal |
| `giant-log` | logs 1,000 (`count`) lines of 16 MiB (`bytes`) each (one line, made in `__init__`) |
| `notify-flood` | returns 400 (`count`) `Notify("evil", …)` of 10,000-byte (`bytes`) payloads |
"""

import streamhost
from streamhost import Notify

# Each mode and its default (count, bytes).
MODES = {
    "none": (0, 0),
    "raise": (0, 0),
    "loop": (0, 0),
    "memory": (0, 0),
    "counter-names": (10_000, 64 << 10),
    "kv-tombstones": (100_000, 1_000),
    "kv-values": (1, 1 << 20),
    "giant-log": (1_000, 16 << 20),
    "notify-flood": (400, 10_000),
}


def numbered(count, size):
    """`count` distinct names of `size` characters: a number, then `x`s."""
    tail = "x" * max(size - 11, 0)
    for n in range(count):
        yield f"{n:010}-" + tail


class Evil(streamhost.Plugin):
    name = "evil-py"
    version = "0.1.0"
    streams = ["messages"]

    def __init__(self, config, resume_after):
        config = config or {}
        self.mode = config.get("mode", "none")
        if self.mode not in MODES:
            raise streamhost.Fatal(f"unknown mode {self.mode!r}; one of {', '.join(MODES)}")
        count, size = MODES[self.mode]
        self.count = config.get("count", count)
        self.bytes = config.get("bytes", size)
        self.giant_line = "x" * self.bytes if self.mode == "giant-log" else ""

    def on_batch(self, batch):
        if self.mode == "raise":
            return [Notify("evil", str(batch.token // 0))]
        if self.mode == "loop":
            spins = 0
            while True:
                spins += 1
        if self.mode == "memory":
            hoard = []
            while True:
                hoard.append(bytearray(32 << 20))
        if self.mode == "counter-names":
            for name in numbered(self.count, self.bytes):
                streamhost.counters.add(name)
        if self.mode == "kv-tombstones":
            for key in numbered(self.count, self.bytes):
                streamhost.kv.delete(key)
        if self.mode == "kv-values":
            value = b"v" * self.bytes
            for key in numbered(self.count, 11):
                streamhost.kv.set(key, value)
        if self.mode == "giant-log":
            for _ in range(self.count):
                streamhost.log.info(self.giant_line)
        if self.mode == "notify-flood":
            payload = "x" * self.bytes
            return [Notify("evil", payload) for _ in range(self.count)]
        return [Notify("evil", str(batch.token))]


Handler = streamhost.export(Evil)
