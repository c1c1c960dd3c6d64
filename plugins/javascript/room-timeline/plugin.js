// room-timeline-js: the JavaScript twin of the Rust `room-timeline` plugin.
//
// Keeps the last 50 messages of every room in the key-value store and answers
// `GET /v1/query/room-timeline-js/timeline?room=…` with them. Behaviour, byte for byte, as
// plugins/room-timeline (the conformance suite checks it): rows that are not JSON objects with
// a string `room` are ignored; the timeline of room R is a JSON array of the rows' texts under
// the key `room:R`; each batch invalidates `room:R` in the cache `timeline` once per room
// touched. Build: scripts/build-js-plugin plugins/javascript/room-timeline

import { Fatal, Plugin, Skip, exportPlugin, invalidate, kv } from "streamhost";

/** How many messages a room's timeline keeps. */
const KEEP = 50;

/** The room of a message row, or undefined for a row this plugin ignores. */
function roomOf(row) {
  let message;
  try {
    message = row.json();
  } catch {
    return undefined;
  }
  const isObject = message !== null && typeof message === "object" && !Array.isArray(message);
  return isObject && typeof message.room === "string" ? message.room : undefined;
}

/** The timeline of a room as stored: a JSON array of the rows' texts, oldest first. */
function timelineOf(key) {
  const timeline = kv.getJson(key) ?? [];
  if (!Array.isArray(timeline) || !timeline.every((text) => typeof text === "string")) {
    throw new Fatal(`kv value of ${key} is not a JSON array of strings`);
  }
  return timeline;
}

class RoomTimeline extends Plugin {
  static name = "room-timeline-js";
  static version = "0.1.0";
  static streams = ["messages"];
  static queries = [{ name: "timeline", cache: "timeline", key: "room:{room}" }];

  onBatch(batch) {
    // New rows per room; a Map keeps the rooms in order of first appearance.
    const rooms = new Map();
    for (const row of batch.rows) {
      const room = roomOf(row);
      if (room === undefined) continue;
      const texts = rooms.get(room);
      if (texts) texts.push(row.data);
      else rooms.set(room, [row.data]);
    }

    const effects = [];
    for (const [room, texts] of rooms) {
      const key = `room:${room}`;
      kv.setJson(key, timelineOf(key).concat(texts).slice(-KEEP));
      effects.push(invalidate("timeline", key));
    }
    return effects;
  }

  query(name, args) {
    if (name !== "timeline") throw new Fatal(`unknown query \`${name}\``);
    // A bad request, not a broken plugin: `skip` keeps the instance (as Rust's required_arg).
    if (!("room" in args)) throw new Skip("missing query argument `room`");
    return "[" + timelineOf(`room:${args.room}`).join(",") + "]";
  }
}

export const handler = exportPlugin(RoomTimeline);
