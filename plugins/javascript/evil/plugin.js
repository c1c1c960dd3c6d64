// evil-js: a JavaScript plugin that misbehaves on purpose, to test that the host contains
// JavaScript plugins exactly as it contains Rust ones. The configuration `{"mode": …}` picks
// how `onBatch` misbehaves:
//
// | mode               | what `onBatch` does                                          |
// |--------------------|--------------------------------------------------------------|
// | `none` (or absent) | returns one `notify("evil", "<batch token>")` per batch      |
// | `throw`            | throws an uncaught TypeError (calls undefined)               |
// | `loop`             | loops forever                                                |
// | `memory`           | keeps 32 MiB typed arrays in a list without bound            |
//
// Build: scripts/build-js-plugin plugins/javascript/evil

import { Fatal, Plugin, exportPlugin, notify } from "streamhost";

const MODES = ["none", "throw", "loop", "memory"];

class Evil extends Plugin {
  static name = "evil-js";
  static version = "0.1.0";
  static streams = ["messages"];

  constructor(config, resumeAfter) {
    super(config, resumeAfter);
    this.mode = config.mode ?? "none";
    if (!MODES.includes(this.mode)) {
      throw new Fatal(`unknown mode ${JSON.stringify(this.mode)} (one of ${MODES.join(", ")})`);
    }
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
      default:
        return [notify("evil", batch.token.toString())];
    }
  }
}

export const handler = exportPlugin(Evil);
