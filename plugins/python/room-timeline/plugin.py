"""room-timeline-py: the Python twin of the Rust `room-timeline` plugin.

Keeps the last 50 messages of every room in the key-value store and answers
`GET /v1/query/room-timeline-py/timeline?room=…` with them. Behaviour, byte for byte, as
plugins/room-timeline (the conformance suite checks it): rows that are not JSON objects with a
string `room` are ignored; the timeline of room R is a JSON array of the rows' texts under the
key `room:R`; each batch invalidates `room:R` in the cache `timeline` once per room touched.
"""

import streamhost
from streamhost import Invalidate, Query, kv

KEEP = 50


def room_of(row):
    """The room of a message row, or None for a row this plugin ignores."""
    try:
        message = row.json()
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    room = message.get("room")
    return room if isinstance(room, str) else None


class RoomTimeline(streamhost.Plugin):
    name = "room-timeline-py"
    version = "0.1.0"
    streams = ["messages"]
    queries = [Query("timeline", cache="timeline", key="room:{room}")]

    def on_batch(self, batch):
        # New rows per room; dicts keep the rooms in order of first appearance.
        rooms = {}
        for row in batch.rows:
            room = room_of(row)
            if room is not None:
                rooms.setdefault(room, []).append(row.data)

        effects = []
        for room, texts in rooms.items():
            key = f"room:{room}"
            timeline = (kv.get_json(key) or []) + texts
            kv.set_json(key, timeline[-KEEP:])
            effects.append(Invalidate("timeline", key))
        return effects

    def query(self, name, args):
        if name != "timeline":
            raise streamhost.Fatal(f"unknown query `{name}`")
        if "room" not in args:
            # A bad request, not a broken plugin: `skip` keeps the instance (as Rust's required_arg).
            raise streamhost.Skip("missing query argument `room`")
        timeline = kv.get_json(f"room:{args['room']}") or []
        return "[" + ",".join(timeline) + "]"


Handler = streamhost.export(RoomTimeline)
