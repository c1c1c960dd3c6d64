//! What every listener shares below HTTP and the replication protocol: accepting connections
//! within the listener's bounds.
//!
//! - [`accept`]: the [`accept::Acceptor`], the one accepting loop of the writer's HTTP and
//!   replication listeners and the reader's HTTP listener: at most `max_connections` open at
//!   once (a [`accept::ConnectionPermit`] per connection), refusals logged and counted, and a
//!   back-off after accept errors (out of file descriptors) instead of a spin.

pub mod accept;
