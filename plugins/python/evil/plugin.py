"""evil-py: a Python plugin that misbehaves on purpose, to test that the host contains Python
plugins exactly as it contains Rust ones. The configuration `{"mode": …}` picks how:

| mode | what `on_batch` does |
|---|---|
| `none` (or absent) | returns one `Notify("evil", "<batch token>")` per batch |
| `raise` | raises an uncaught ZeroDivisionError |
| `loop` | loops forever |
| `memory` | grows a list of 32 MiB buffers without bound |
"""

import streamhost
from streamhost import Notify

MODES = ("none", "raise", "loop", "memory")


class Evil(streamhost.Plugin):
    name = "evil-py"
    version = "0.1.0"
    streams = ["messages"]

    def __init__(self, config, resume_after):
        self.mode = (config or {}).get("mode", "none")
        if self.mode not in MODES:
            raise streamhost.Fatal(f"unknown mode {self.mode!r}; one of {', '.join(MODES)}")

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
        return [Notify("evil", str(batch.token))]


Handler = streamhost.export(Evil)
