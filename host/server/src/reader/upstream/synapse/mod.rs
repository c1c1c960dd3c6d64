//! The `synapse` upstream: following a live Synapse deployment (`[reader.synapse]`,
//! `docs/synapse.md`): the reader joins Synapse's Redis replication as one more instance,
//! with a name of its own, and hands Synapse's stream rows to its plugins.
//!
//! ```text
//!  Synapse main + workers ──PUBLISH <server_name>──▶ Redis ──▶ upstream::redis ──▶ processor ──▶ plugins
//!        ▲  HTTP catch-up (typing, presence: when instance_map says where)   rows::to_object      │
//!        └──────────────────────────────────── catchup::SynapseCatchup ◀──── gaps reported ────────┘
//! ```
//!
//! It reuses the `redis` upstream ([`super::redis`]) and the reader unchanged, with four
//! differences: rows become objects with Synapse's field names ([`rows`]); a stream the reader
//! has never seen starts at its announced position instead of catching up from 0; a range
//! that cannot be fetched ([`catchup`]) is reported as a gap instead of retried; and a
//! `POSITION` below the reader's position on one of the [`RESETTABLE_STREAMS`] means their
//! writer restarted, so the reader follows it back to its new run.
//!
//! What it publishes: only `REPLICATE ` after each (re)subscription, as a Synapse worker does;
//! it is the source of no stream, so it never publishes a `POSITION` or `RDATA`.

pub mod catchup;
pub mod rows;

use streamhost_proto::StreamName;

use super::redis::{RedisReaderConfig, RowFormat};
use crate::config::{ReaderConfig, SynapseConfig};
use crate::reader::processor::{FirstPosition, Processor};

/// The streams whose tokens are a counter in the writer's memory that starts again at 0 when
/// its process restarts (`TypingWriterHandler`'s serial, the federation send queue, the
/// presence-to-federation queue): a token below the reader's position means a restart
/// (docs/replication.md, "Streams that reset"), not a writer that is behind. `presence` is not
/// one: its tokens come from the database.
pub const RESETTABLE_STREAMS: &[&str] = &["typing", "federation", "presence_federation"];

/// How the status shows what the reader follows: `synapse <server_name> via redis
/// <host:port or socket>`, with ` (TLS)` when it is.
pub fn describe(config: &SynapseConfig) -> String {
    let redis = &config.redis;
    match &redis.path {
        Some(path) => format!(
            "synapse {} via redis {}",
            config.server_name,
            path.display()
        ),
        None => format!(
            "synapse {} via redis {}:{}{}",
            config.server_name,
            redis.host,
            redis.port,
            if redis.use_tls { " (TLS)" } else { "" }
        ),
    }
}

/// The subscription to Synapse's channel (`<server_name>`), rows as objects. The Redis
/// client is built once now (`password_path` and the TLS files read), so a wrong setting
/// fails at start.
pub(crate) fn subscription(
    config: &ReaderConfig,
    synapse: &SynapseConfig,
) -> anyhow::Result<RedisReaderConfig> {
    let redis = synapse.redis_config()?;
    crate::redis::check_client(&redis, "reader.synapse.redis")?;
    Ok(RedisReaderConfig {
        redis,
        channel: crate::redis::channel(&synapse.server_name),
        name: config.name.clone(),
        rows: RowFormat::SynapseObjects,
    })
}

/// The processor's rules for a Synapse: a stream never seen starts at its announced
/// position, and the [`RESETTABLE_STREAMS`] follow their writer back after a restart.
pub(crate) fn configure(processor: Processor) -> Processor {
    processor
        .with_first_position(FirstPosition::Join)
        .with_resettable_streams(
            RESETTABLE_STREAMS
                .iter()
                .map(|s| StreamName::new(*s).expect("a valid stream name")),
        )
}
