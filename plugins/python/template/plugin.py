"""my-plugin: counts the rows of every stream it follows and notifies the topic `count` with
the new total after each batch. Copy this folder to start a plugin (docs/plugins-python.md)."""

import streamhost
from streamhost import Invalidate, Notify, Query


class MyPlugin(streamhost.Plugin):
    name = "my-plugin"
    version = "0.1.0"
    streams = ["messages"]
    # GET /v1/query/my-plugin/count, cached in the cache `count` under the key `all`.
    queries = [Query("count", cache="count", key="all")]

    def __init__(self, config, resume_after):
        # `config`: the grant's `config` table ([reader.plugins.grants.my-plugin]), a dict.
        self.count = 0

    def on_batch(self, batch):
        self.count += len(batch.rows)
        streamhost.log.debug(f"{batch.stream}: {len(batch.rows)} rows up to {batch.token}")
        return [
            Invalidate("count", "all"),           # the cached answer of `count` is stale
            Notify("count", str(self.count)),     # wake clients waiting on the topic
        ]

    def query(self, name, args):
        if name != "count":
            raise streamhost.Fatal(f"unknown query `{name}`")
        return str(self.count)


Handler = streamhost.export(MyPlugin)
