// room-timeline-js: the JavaScript twin of the Rust `room-timeline` plugin.
//
// Keeps the last 50 messages of every room in the key-value store and answers
// `GET /v1/query/room-timeline-js/timeline?room=…` with them. Behaviour, byte for byte, as
// plugins/room-timeline (the conformance suite checks it): it asks the host for the field
// `room` (`static fields`), so it parses no JSON; rows without a string `room` are ignored; the timeline of room R is stored under the key `room:R` as the
// rows' texts, each prefixed by its length in bytes (`<len>:<text>`, repeated); each batch
// invalidates `room:R` in the cache `timeline` once per room touched.
// Build: scripts/build-js-plugin plugins/javascript/room-timeline

import { Fatal, Plugin, Skip, exportPlugin, invalidate, kv } from "streamhost";

/** How many messages a room's timeline keeps. */
const KEEP = 50;

const COLON = 0x3a;
const ZERO = 0x30;
const encoder = new TextEncoder();

// The interpreter pays per operation, and a loop over bytes costs more than one native call
// doing the same: a header's colon is found with `indexOf` and the new entries are made as one
// string and encoded at once, their lengths in bytes taken from `batch.textBytes` rather than
// from encoding each text. A call costs more than a few steps, though: the digits are read in
// a loop (decoding them and checking them with a RegExp measured 40 % slower in all).

/** Where each entry of a stored timeline (`<len>:<text>` repeated) begins; checks them all. */
function startsOf(key, stored) {
  const starts = [];
  const size = stored.length;
  let at = 0;
  while (at < size) {
    const colon = stored.indexOf(COLON, at);
    let length = 0;
    for (let i = at; i < colon; i += 1) {
      const digit = stored[i] - ZERO;
      if (digit < 0 || digit > 9) {
        length = -1;
        break;
      }
      length = length * 10 + digit;
    }
    const end = colon + 1 + length;
    if (colon <= at || length < 0 || end > size) {
      throw new Fatal(`timeline ${key} is not \`<len>:<text>\` entries`);
    }
    starts.push(at);
    at = end;
  }
  return starts;
}

/** The rows (Uint8Arrays) of a stored timeline whose entries begin at `starts`. */
function rowsOf(stored, starts) {
  return starts.map((start, i) =>
    stored.subarray(stored.indexOf(COLON, start) + 1, starts[i + 1] ?? stored.length),
  );
}

/** The timeline stored under `key`. */
function storedOf(key) {
  return kv.get(key) ?? new Uint8Array(0);
}

/**
 * The stored timeline with `entries` (each `<len>:<text>`, a string) appended, keeping the last
 * KEEP: the old entries kept are copied as stored (the whole value is still checked), only the
 * new ones encoded, all at once.
 */
function append(key, stored, entries) {
  const starts = startsOf(key, stored);
  const newest = entries.slice(-KEEP);
  const encoded = encoder.encode(newest.join(""));
  const dropped = starts.length + newest.length - KEEP;
  const from = dropped <= 0 ? 0 : dropped < starts.length ? starts[dropped] : stored.length;
  const out = new Uint8Array(stored.length - from + encoded.length);
  out.set(stored.subarray(from), 0);
  out.set(encoded, stored.length - from);
  return out;
}

/** The rows joined into one JSON array. */
function answer(rows) {
  let size = 2 + Math.max(rows.length - 1, 0);
  for (const row of rows) size += row.length;
  const out = new Uint8Array(size);
  out[0] = 0x5b; // [
  let at = 1;
  rows.forEach((row, i) => {
    if (i > 0) out[at++] = 0x2c; // ,
    out.set(row, at);
    at += row.length;
  });
  out[at] = 0x5d; // ]
  return new TextDecoder().decode(out);
}

class RoomTimeline extends Plugin {
  static name = "room-timeline-js";
  static version = "0.1.0";
  static streams = ["messages"];
  static queries = [{ name: "timeline", cache: "timeline", key: "room:{room}" }];
  static fields = ["room"];

  onBatch(batch) {
    // New entries per room; a Map keeps the rooms in order of first appearance. The rows are
    // read as columns (their texts, lengths in bytes and `room`s), so no Row object is made per
    // row.
    const rooms = new Map();
    const roomOf = batch.column("room");
    const textOf = batch.texts;
    const bytesOf = batch.textBytes;
    for (let i = 0; i < roomOf.length; i += 1) {
      const room = roomOf[i];
      if (typeof room !== "string") continue;
      const entry = `${bytesOf[i]}:${textOf[i]}`;
      const entries = rooms.get(room);
      if (entries) entries.push(entry);
      else rooms.set(room, [entry]);
    }

    const effects = [];
    for (const [room, entries] of rooms) {
      const key = `room:${room}`;
      kv.set(key, append(key, storedOf(key), entries));
      effects.push(invalidate("timeline", key));
    }
    return effects;
  }

  query(name, args) {
    if (name !== "timeline") throw new Fatal(`unknown query \`${name}\``);
    // A bad request, not a broken plugin: `skip` keeps the instance (as Rust's required_arg).
    if (!("room" in args)) throw new Skip("missing query argument `room`");
    const key = `room:${args.room}`;
    const stored = storedOf(key);
    return answer(rowsOf(stored, startsOf(key, stored)));
  }
}

export const handler = exportPlugin(RoomTimeline);
