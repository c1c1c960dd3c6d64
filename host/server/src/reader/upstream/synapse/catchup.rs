//! Where a Synapse-mode reader fetches what it missed: Synapse's in-memory streams
//! (`typing`, `presence`, `presence_federation`, `federation`) over the writer instance's
//! HTTP replication endpoint (docs/replication.md, "Catch-up endpoint") when `instance_map`
//! says where it is; every other
//! stream's rows are only in Synapse's database, so a fetch answers
//! [`CatchupError::Unavailable`] and the caller reports a gap.

use std::collections::HashMap;
use std::sync::Arc;

use streamhost_proto::{StreamName, Token};

use super::rows;
use crate::config::SynapseConfig;
use crate::net::tls::ClientTls;
use crate::reader::BoxFuture;
use crate::reader::catchup::{CatchupError, CatchupPage, CatchupSource, HttpCatchup};

/// The streams Synapse itself catches up over HTTP: their rows live in the writer's memory.
pub const HTTP_STREAMS: &[&str] = &["typing", "presence", "presence_federation", "federation"];

/// The catch-up source of a Synapse-mode reader.
#[derive(Debug)]
pub struct SynapseCatchup {
    /// The HTTP clients of the in-memory streams whose writer is in `instance_map`.
    http: HashMap<&'static str, HttpCatchup>,
    /// The writer of each in-memory stream, for error messages.
    writers: HashMap<&'static str, String>,
}

impl SynapseCatchup {
    /// Routes each in-memory stream to its writer's `instance_map` entry, if any; `tls`
    /// (`[reader.writer_tls]`) verifies and authenticates its `tls = true` entries, else the
    /// system's roots do.
    pub fn new(config: &SynapseConfig, tls: Option<Arc<ClientTls>>) -> SynapseCatchup {
        let mut http = HashMap::new();
        let mut writers = HashMap::new();
        for stream in HTTP_STREAMS {
            let writer = config.writer_of(stream);
            if let Some(location) = config.instance_map.get(writer) {
                let scheme = if location.tls { "https" } else { "http" };
                let base = format!("{scheme}://{}:{}", location.host, location.port);
                http.insert(
                    *stream,
                    HttpCatchup::new(&base, config.worker_replication_secret.clone(), tls.clone()),
                );
            }
            writers.insert(*stream, writer.to_owned());
        }
        SynapseCatchup { http, writers }
    }

    /// Whether `stream` can be caught up at all.
    #[cfg(test)]
    pub fn can_fetch(&self, stream: &str) -> bool {
        self.http.contains_key(stream)
    }
}

impl CatchupSource for SynapseCatchup {
    fn fetch<'a>(
        &'a self,
        stream: &'a StreamName,
        from: Token,
        upto: Token,
    ) -> BoxFuture<'a, Result<CatchupPage, CatchupError>> {
        Box::pin(async move {
            let Some(client) = self.http.get(stream.as_str()) else {
                return Err(CatchupError::Unavailable(
                    match self.writers.get(stream.as_str()) {
                        Some(writer) => format!(
                            "{stream} is kept in the memory of Synapse instance {writer}; set \
                             reader.synapse.instance_map.{writer} to fetch it over HTTP"
                        ),
                        None => format!("{stream} rows are only in Synapse's database"),
                    },
                ));
            };
            let mut page = client.fetch(stream, from, upto).await?;
            page.updates.retain_mut(|(token, row)| match rows::to_object(stream, row) {
                Ok(object) => {
                    *row = object;
                    true
                }
                Err(error) => {
                    tracing::warn!(%error, token = token.0, "failed to parse a caught-up Synapse row; dropped");
                    false
                }
            });
            Ok(page)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::config::ConfigFile;

    fn config(extra: &str) -> SynapseConfig {
        ConfigFile::parse(&format!(
            "[reader.synapse]\nserver_name = \"x\"\nworker_replication_secret = \"s3cret\"\n{extra}"
        ))
        .unwrap()
        .reader
        .synapse
        .unwrap()
    }

    fn stream(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    #[tokio::test]
    async fn database_streams_and_unmapped_memory_streams_are_unavailable() {
        let catchup = SynapseCatchup::new(&config(""), None);
        for (name, says) in [
            ("receipts", "only in Synapse's database"),
            ("typing", "reader.synapse.instance_map.main"),
        ] {
            match catchup.fetch(&stream(name), Token(1), Token(5)).await {
                Err(CatchupError::Unavailable(reason)) => {
                    assert!(reason.contains(says), "{reason}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn typing_is_fetched_from_its_writer_with_the_secret_and_converted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            let body = r#"{"updates":[[3,["!r:x",["@a:x"]]],[4,["bad"]],[5,["!r:x",[]]]],"upto_token":5,"limited":false}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(request).unwrap()
        });
        let catchup = SynapseCatchup::new(
            &config(&format!(
                "[reader.synapse.instance_map.typist]\nhost = \"127.0.0.1\"\nport = {port}\n[reader.synapse.stream_writers]\ntyping = \"typist\"\n"
            )),
            None,
        );
        assert!(catchup.can_fetch("typing") && !catchup.can_fetch("presence"));
        let page = catchup
            .fetch(&stream("typing"), Token(2), Token(5))
            .await
            .unwrap();
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /_synapse/replication/get_repl_stream_updates/typing/"),
            "{request}"
        );
        assert!(request.contains("?from_token=2&upto_token=5 "), "{request}");
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer s3cret"),
            "{request}"
        );
        let rows: Vec<(i64, &str)> = page
            .updates
            .iter()
            .map(|(t, r)| (t.0, r.as_str()))
            .collect();
        assert_eq!(
            rows,
            vec![
                (3, r#"{"room_id":"!r:x","user_ids":["@a:x"]}"#),
                (5, r#"{"room_id":"!r:x","user_ids":[]}"#)
            ],
            "the malformed row is dropped"
        );
    }
}
