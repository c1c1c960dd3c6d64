"""notifier-py: the Python twin of the Rust `notifier` plugin.

For each `messages` row `{"room": R, "mentions": [U, …], …}` it notifies `room:R`, then
`user:U` for each mention, with the row's text as the payload. It asks the host for the fields
`room` and `mentions` instead of parsing rows; rows without a string `room`, or whose `mentions`
is not a list of strings, are ignored. It counts the
notifications it sent, answers `GET /v1/query/notifier-py/sent` with the count and carries it
across reloads with snapshot/restore (8 bytes, little-endian) — byte for byte as
plugins/notifier, checked by the conformance suite.
"""

import streamhost
from streamhost import Invalidate, Notify, Query


def recipients(row):
    """(room, mentions) of a message row, or None for a row this plugin ignores."""
    room = row.fields.get("room")
    mentions = row.fields.get("mentions", [])
    if not isinstance(room, str):
        return None
    if not isinstance(mentions, list) or not all(isinstance(u, str) for u in mentions):
        return None
    return room, mentions


class Notifier(streamhost.Plugin):
    name = "notifier-py"
    version = "0.1.0"
    streams = ["messages"]
    queries = [Query("sent", cache="sent", key="all")]
    snapshots = True
    fields = ["room", "mentions"]

    def __init__(self, config, resume_after, sent=0):
        self.sent = sent

    def on_batch(self, batch):
        effects = []
        for row in batch.rows:
            found = recipients(row)
            if found is None:
                continue
            room, mentions = found
            effects.append(Notify(f"room:{room}", row.data))
            effects.extend(Notify(f"user:{user}", row.data) for user in mentions)
        if effects:
            self.sent += len(effects)
            effects.append(Invalidate("sent", "all"))  # the answer of `sent` changed
        return effects

    def query(self, name, args):
        if name != "sent":
            raise streamhost.Fatal(f"unknown query `{name}`")
        return str(self.sent)

    def snapshot(self):
        return self.sent.to_bytes(8, "little")

    @classmethod
    def restore(cls, config, state, resume_after):
        if len(state) != 8:
            raise streamhost.Fatal(f"snapshot has {len(state)} bytes, expected 8 (a u64 count)")
        return cls(config, resume_after, sent=int.from_bytes(state, "little"))


Handler = streamhost.export(Notifier)
