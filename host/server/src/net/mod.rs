//! What every listener and outgoing connection of Streamhost's own shares below HTTP and the
//! replication protocol.
//!
//! - [`accept`]: the [`accept::Acceptor`], the one accepting loop of the writer's HTTP and
//!   replication listeners and the reader's HTTP listener: at most `max_connections` open at
//!   once (a [`accept::ConnectionPermit`] per connection), refusals logged and counted, and a
//!   back-off after accept errors (out of file descriptors) instead of a spin.
//! - [`tls`]: the listeners' TLS acceptors with certificate reload and the `allowed_clients`
//!   check, the reader's client side towards its writer, PEM files.

pub mod accept;
pub mod tls;
