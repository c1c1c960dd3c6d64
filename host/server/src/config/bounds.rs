//! The checks of the configuration's memory bounds (`docs/configuration.md`, "Memory
//! bounds"). The parts they bound build their own bounds from these settings
//! (`TailBounds::of`, `FeedBounds::of`, `RingBounds::of`), so `config` stays data.

use super::{ReaderConfig, WriterConfig};

impl WriterConfig {
    /// Checks the writer's bounds.
    pub(super) fn validate_bounds(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_append_rows > 0,
            "writer.max_append_rows must be > 0"
        );
        Ok(())
    }
}

impl ReaderConfig {
    /// Checks the reader's bounds: each > 0, a plugin's share of the ring within the ring.
    pub(super) fn validate_bounds(&self) -> anyhow::Result<()> {
        let plugins = &self.plugins;
        for (key, value) in [
            ("reader.inbound_queue", self.inbound_queue),
            ("reader.inbound_queue_mib", self.inbound_queue_mib),
            ("reader.plugins.feed_rows", plugins.feed_rows),
            ("reader.plugins.feed_mib", plugins.feed_mib),
            ("reader.plugins.notifications", plugins.notifications),
            (
                "reader.plugins.notifications_mib",
                plugins.notifications_mib,
            ),
            (
                "reader.plugins.notifications_plugin_mib",
                plugins.notifications_plugin_mib,
            ),
        ] {
            anyhow::ensure!(value > 0, "{key} must be > 0");
        }
        anyhow::ensure!(
            plugins.notifications_plugin_mib <= plugins.notifications_mib,
            "reader.plugins.notifications_plugin_mib ({}) must be at most \
             reader.plugins.notifications_mib ({})",
            plugins.notifications_plugin_mib,
            plugins.notifications_mib
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ConfigFile;

    #[test]
    fn bounds_default_and_parse() {
        let config = ConfigFile::parse(
            "[writer]\ntail_mib = 2\nmax_append_rows = 5\n\
             [reader]\ninbound_queue_mib = 3\n\
             [reader.plugins]\nnotifications_mib = 4\nnotifications_plugin_mib = 1\nfeed_mib = 6\n",
        )
        .unwrap();
        config.writer.validate().unwrap();
        config.reader.validate().unwrap();
        assert_eq!(config.writer.tail_mib, 2);
        assert_eq!(config.writer.max_append_rows, 5);
        assert_eq!(config.reader.inbound_queue_mib, 3);
        let plugins = &config.reader.plugins;
        assert_eq!(
            (plugins.notifications_mib, plugins.notifications_plugin_mib),
            (4, 1)
        );
        assert_eq!(plugins.feed_mib, 6);
        let defaults = ConfigFile::parse("").unwrap();
        assert_eq!(defaults.reader.plugins.notifications_mib, 32);
        assert_eq!(defaults.writer.max_append_rows, 10_000);
    }

    #[test]
    fn bad_bounds_are_named() {
        for (text, key) in [
            ("[writer]\nmax_append_rows = 0\n", "writer.max_append_rows"),
            (
                "[reader]\ninbound_queue_mib = 0\n",
                "reader.inbound_queue_mib",
            ),
            (
                "[reader.plugins]\nfeed_mib = 0\n",
                "reader.plugins.feed_mib",
            ),
            (
                "[reader.plugins]\nnotifications_mib = 4\nnotifications_plugin_mib = 8\n",
                "notifications_plugin_mib (8) must be at most",
            ),
        ] {
            let config = ConfigFile::parse(text).unwrap();
            let err = config
                .writer
                .validate()
                .and_then(|()| config.reader.validate())
                .unwrap_err();
            assert!(format!("{err:#}").contains(key), "{text}: {err:#}");
        }
    }
}
