// notifier-js: the JavaScript twin of the Rust `notifier` plugin.
//
// For each `messages` row `{"room": R, "mentions": [U, …], …}` it notifies `room:R`, then
// `user:U` for each mention, with the row's text as the payload. It asks the host for the fields
// `room` and `mentions` instead of parsing rows; rows without a string `room`, or whose
// `mentions` is not an array of strings, are ignored. It counts
// the notifications it sent (a BigInt, as the Rust u64), answers
// `GET /v1/query/notifier-js/sent` with the count and carries it across reloads with
// snapshot/restore (8 bytes, little-endian) — byte for byte as plugins/notifier, checked by the
// conformance suite. Build: scripts/build-js-plugin plugins/javascript/notifier

import { Fatal, Plugin, exportPlugin, invalidate, notify } from "streamhost";

/** [room, mentions] of a message row, or undefined for a row this plugin ignores. */
function recipients(row) {
  const { room } = row.fields;
  const mentions = "mentions" in row.fields ? row.fields.mentions : [];
  if (typeof room !== "string") return undefined;
  if (!Array.isArray(mentions) || !mentions.every((user) => typeof user === "string")) {
    return undefined;
  }
  return [room, mentions];
}

class Notifier extends Plugin {
  static name = "notifier-js";
  static version = "0.1.0";
  static streams = ["messages"];
  static queries = [{ name: "sent", cache: "sent", key: "all" }];
  static snapshots = true;
  static fields = ["room", "mentions"];

  sent = 0n;

  onBatch(batch) {
    const effects = [];
    for (const row of batch.rows) {
      const found = recipients(row);
      if (found === undefined) continue;
      const [room, mentions] = found;
      effects.push(notify(`room:${room}`, row.data));
      for (const user of mentions) effects.push(notify(`user:${user}`, row.data));
    }
    if (effects.length > 0) {
      this.sent += BigInt(effects.length);
      effects.push(invalidate("sent", "all")); // the answer of `sent` changed
    }
    return effects;
  }

  query(name, args) {
    if (name !== "sent") throw new Fatal(`unknown query \`${name}\``);
    return this.sent.toString();
  }

  snapshot() {
    const state = new Uint8Array(8);
    new DataView(state.buffer).setBigUint64(0, this.sent, true);
    return state;
  }

  static restore(config, state, resumeAfter) {
    if (state.length !== 8) {
      throw new Fatal(`snapshot has ${state.length} bytes, expected 8 (a u64 count)`);
    }
    const notifier = new Notifier(config, resumeAfter);
    notifier.sent = new DataView(state.buffer, state.byteOffset, 8).getBigUint64(0, true);
    return notifier;
  }
}

export const handler = exportPlugin(Notifier);
