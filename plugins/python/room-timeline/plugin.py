"""room-timeline-py: the Python twin of the Rust `room-timeline` plugin.

Keeps the last 50 messages of every room in the key-value store and answers
`GET /v1/query/room-timeline-py/timeline?room=…` with them. Behaviour, byte for byte, as
plugins/room-timeline (the conformance suite checks it): it asks the host for the field `room`
(`fields`), so it parses no JSON; rows without a string `room` are ignored; the timeline of room R is stored under the key `room:R` as the rows'
texts, each prefixed by its length in bytes (`<len>:<text>`, repeated); each batch invalidates
`room:R` in the cache `timeline` once per room touched.
"""

import streamhost
from streamhost import Invalidate, Query, kv

KEEP = 50
COLON = ord(":")


def starts(key, stored):
    """Where each entry of a stored timeline begins: `<len>:<text>` repeated."""
    offsets, at, size, find = [], 0, len(stored), stored.index
    push = offsets.append
    try:
        while at < size:
            push(at)
            colon = find(COLON, at)
            at = colon + 1 + int(stored[at:colon])
        if at > size:
            raise ValueError("truncated")
    except ValueError:
        raise streamhost.Fatal(f"timeline {key} is not `<len>:<text>` entries") from None
    return offsets


def decode(key, stored):
    """The rows (bytes) of a stored timeline."""
    offsets = starts(key, stored)
    ends = offsets[1:] + [len(stored)]
    return [stored[stored.index(b":", at) + 1:end] for at, end in zip(offsets, ends)]


def append(key, stored, texts):
    """The stored timeline with `texts` appended, keeping the last KEEP: the old entries kept
    are copied as stored (the whole value is still checked), only the new ones encoded."""
    offsets = starts(key, stored)
    new = [t.encode("utf-8") for t in texts[-KEEP:]]
    dropped = len(offsets) + len(new) - KEEP
    if dropped <= 0:
        kept = stored
    elif dropped < len(offsets):
        kept = stored[offsets[dropped]:]
    else:
        kept = b""
    return kept + b"".join([b"%d:%s" % (len(row), row) for row in new])


class RoomTimeline(streamhost.Plugin):
    name = "room-timeline-py"
    version = "0.1.0"
    streams = ["messages"]
    queries = [Query("timeline", cache="timeline", key="room:{room}")]
    fields = ["room"]

    def on_batch(self, batch):
        # New rows per room; dicts keep the rooms in order of first appearance. The rows are
        # read as columns (their texts and their `room`s), so no Row object is made per row.
        rooms = {}
        for room, text in zip(batch.column("room"), batch.texts):
            if isinstance(room, str):
                rooms.setdefault(room, []).append(text)

        effects = []
        for room, texts in rooms.items():
            key = f"room:{room}"
            kv.set(key, append(key, kv.get(key) or b"", texts))
            effects.append(Invalidate("timeline", key))
        return effects

    def query(self, name, args):
        if name != "timeline":
            raise streamhost.Fatal(f"unknown query `{name}`")
        if "room" not in args:
            # A bad request, not a broken plugin: `skip` keeps the instance (as Rust's required_arg).
            raise streamhost.Skip("missing query argument `room`")
        key = f"room:{args['room']}"
        return (b"[" + b",".join(decode(key, kv.get(key) or b"")) + b"]").decode("utf-8")


Handler = streamhost.export(RoomTimeline)
