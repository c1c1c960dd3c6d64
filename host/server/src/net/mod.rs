//! What every listener and outgoing connection of Streamhost's own shares below the
//! protocols: TLS ([`tls`]: the listeners' acceptors with certificate reload and the
//! `allowed_clients` check, the reader's client side towards its writer, PEM files).

pub mod tls;
