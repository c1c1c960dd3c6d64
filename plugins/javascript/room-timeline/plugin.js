// room-timeline-js: the JavaScript twin of the Rust `room-timeline` plugin.
//
// Keeps the last 50 messages of every room in the key-value store and answers
// `GET /v1/query/room-timeline-js/timeline?room=…` with them. Behaviour, byte for byte, as
// plugins/room-timeline (the conformance suite checks it): rows that are not JSON objects with
// a string `room` are ignored; the timeline of room R is stored under the key `room:R` as the
// rows' texts, each prefixed by its length in bytes (`<len>:<text>`, repeated); each batch
// invalidates `room:R` in the cache `timeline` once per room touched.
// Build: scripts/build-js-plugin plugins/javascript/room-timeline

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

const COLON = 0x3a;
const encoder = new TextEncoder();

/** The rows (Uint8Arrays) of the timeline stored under `key`: `<len>:<text>` repeated. */
function timelineOf(key) {
  const stored = kv.get(key) ?? new Uint8Array(0);
  const rows = [];
  for (let at = 0; at < stored.length; ) {
    const colon = stored.indexOf(COLON, at);
    const digits = String.fromCharCode(...stored.subarray(at, colon));
    const end = colon + 1 + Number(digits);
    if (colon < 0 || !/^[0-9]+$/.test(digits) || end > stored.length) {
      throw new Fatal(`timeline ${key} is not \`<len>:<text>\` entries`);
    }
    rows.push(stored.subarray(colon + 1, end));
    at = end;
  }
  return rows;
}

/** `parts` (Uint8Arrays and strings, as UTF-8) one after the other. */
function concat(parts) {
  const bytes = parts.map((part) => (typeof part === "string" ? encoder.encode(part) : part));
  const out = new Uint8Array(bytes.reduce((sum, b) => sum + b.length, 0));
  let at = 0;
  for (const b of bytes) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/** A timeline as stored (see `timelineOf`). */
function encode(rows) {
  return concat(rows.flatMap((row) => [`${row.length}:`, row]));
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
      const timeline = timelineOf(key).concat(texts.map((text) => encoder.encode(text)));
      kv.set(key, encode(timeline.slice(-KEEP)));
      effects.push(invalidate("timeline", key));
    }
    return effects;
  }

  query(name, args) {
    if (name !== "timeline") throw new Fatal(`unknown query \`${name}\``);
    // A bad request, not a broken plugin: `skip` keeps the instance (as Rust's required_arg).
    if (!("room" in args)) throw new Skip("missing query argument `room`");
    const rows = timelineOf(`room:${args.room}`);
    const parts = ["["];
    rows.forEach((row, i) => parts.push(...(i ? [",", row] : [row])));
    parts.push("]");
    return new TextDecoder().decode(concat(parts));
  }
}

export const handler = exportPlugin(RoomTimeline);
