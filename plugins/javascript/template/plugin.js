// my-plugin-js: counts the rows of every stream it follows and notifies the topic `count` with
// the new total after each batch. Copy this folder to start a plugin
// (docs/plugins-javascript.md); build it with `scripts/build-js-plugin FOLDER [OUT]`.

import { Fatal, Plugin, exportPlugin, invalidate, log, notify } from "streamhost";

class MyPlugin extends Plugin {
  static name = "my-plugin-js";
  static version = "0.1.0";
  static streams = ["messages"];
  // GET /v1/query/my-plugin-js/count, cached in the cache `count` under the key `all`.
  static queries = [{ name: "count", cache: "count", key: "all" }];

  constructor(config, resumeAfter) {
    // `config`: the grant's `config` table ([reader.plugins.grants.my-plugin-js]), parsed.
    super(config, resumeAfter);
    this.count = 0;
  }

  onBatch(batch) {
    this.count += batch.rows.length;
    log.debug(`${batch.stream}: ${batch.rows.length} rows up to ${batch.token}`);
    return [
      invalidate("count", "all"), // the cached answer of `count` is stale
      notify("count", String(this.count)), // wake clients waiting on the topic
    ];
  }

  query(name, args) {
    if (name !== "count") throw new Fatal(`unknown query \`${name}\``);
    return String(this.count);
  }
}

export const handler = exportPlugin(MyPlugin);
