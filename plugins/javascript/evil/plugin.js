// evil-js: a JavaScript plugin that misbehaves on purpose, to test that the host contains
// JavaScript plugins exactly as it contains Rust ones. The configuration `{"mode": …}` picks
// how `onBatch` misbehaves; `count` and `bytes` change how many of a mode's things it makes
// and how big each is:
//
// | mode               | what `onBatch` does                                                   |
// |--------------------|-----------------------------------------------------------------------|
// | `none` (or absent) | returns one `notify("evil", "<batch token>")` per batch               |
// | `throw`            | throws an uncaught TypeError (calls undefined)                        |
// | `loop`             | loops forever                                                         |
// | `memory`           | keeps 32 MiB typed arrays in a list without bound                     |
// | `counter-names`    | adds 1 to 10,000 (`count`) counters, each name 64 KiB (`bytes`)       |
// | `kv-tombstones`    | deletes 100,000 (`count`) distinct keys of 1,000 bytes (`bytes`)      |
// | `kv-values`        | sets 1 (`count`) 11-byte keys to 1 MiB (`bytes`) of `v`s; a refusal throws |
// | `giant-log`        | logs 1,000 (`count`) lines of 16 MiB (`bytes`), one line made once    |
// | `notify-flood`     | returns 400 (`count`) `notify("evil", …)` of 10,000 bytes (`bytes`)   |
//
// Build: scripts/build-js-plugin plugins/javascript/evil

import { Fatal, Plugin, counters, exportPlugin, kv, log, notify } from "streamhost";

// Each mode and its default [count, bytes].
const MODES = {
  none: [0, 0],
  throw: [0, 0],
  loop: [0, 0],
  memory: [0, 0],
  "counter-names": [10_000, 64 << 10],
  "kv-tombstones": [100_000, 1_000],
  "kv-values": [1, 1 << 20],
  "giant-log": [1_000, 16 << 20],
  "notify-flood": [400, 10_000],
};

// Calls `use` with `count` distinct names of `size` characters: a number, then `x`s.
function numbered(count, size, use) {
  const tail = "x".repeat(Math.max(size - 11, 0));
  for (let n = 0; n < count; n++) {
    use(`${String(n).padStart(10, "0")}-${tail}`);
  }
}

class Evil extends Plugin {
  static name = "evil-js";
  static version = "0.1.0";
  static streams = ["messages"];

  constructor(config, resumeAfter) {
    super(config, resumeAfter);
    this.mode = config.mode ?? "none";
    if (!Object.hasOwn(MODES, this.mode)) {
      const modes = Object.keys(MODES).join(", ");
      throw new Fatal(`unknown mode ${JSON.stringify(this.mode)} (one of ${modes})`);
    }
    const [count, bytes] = MODES[this.mode];
    this.count = config.count ?? count;
    this.bytes = config.bytes ?? bytes;
    this.giantLine = this.mode === "giant-log" ? "x".repeat(this.bytes) : "";
  }

  onBatch(batch) {
    switch (this.mode) {
      case "throw": {
        const missing = undefined;
        return missing();
      }
      case "loop":
        for (;;) {}
      case "memory": {
        // Big steps reach the memory limit well before the CPU deadline, even on a debug
        // host, where growing a memory in small steps is slow.
        const kept = [];
        for (;;) kept.push(new Uint8Array(32 << 20));
      }
      case "counter-names":
        numbered(this.count, this.bytes, (name) => counters.add(name));
        break;
      case "kv-tombstones":
        numbered(this.count, this.bytes, (key) => kv.delete(key));
        break;
      case "kv-values": {
        const value = new Uint8Array(this.bytes).fill(0x76); // "v"
        numbered(this.count, 11, (key) => kv.set(key, value));
        break;
      }
      case "giant-log":
        for (let i = 0; i < this.count; i++) log.info(this.giantLine);
        break;
      case "notify-flood": {
        const payload = "x".repeat(this.bytes);
        return Array.from({ length: this.count }, () => notify("evil", payload));
      }
      default:
        break;
    }
    return [notify("evil", batch.token.toString())];
  }
}

export const handler = exportPlugin(Evil);
