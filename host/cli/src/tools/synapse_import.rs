//! `streamhost synapse import homeserver.yaml [worker.yaml]`: the `[reader]` and
//! `[reader.synapse]` TOML that follows that Synapse deployment, read from Synapse's own YAML
//! (`docs/synapse.md`, "Configuration").
//!
//! A worker's file is read over `homeserver.yaml` as Synapse reads its `-c` files: each of its
//! top-level keys replaces the homeserver's. Every key written carries a comment naming the
//! file and key it came from. The reader's own instance name must be one no Synapse process
//! uses (`master`/`main`, the `instance_map` entries, `worker_name`, the `stream_writers`):
//! `--name` is refused on a clash, and the default is the first free `streamhostN`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_yaml_ng::{Mapping, Value};
use streamhost_server::config::ConfigFile;

/// Flags of `streamhost synapse import`.
#[derive(Debug, clap::Args)]
pub struct SynapseImportArgs {
    /// Synapse's `homeserver.yaml`.
    #[arg(value_name = "HOMESERVER_YAML")]
    pub homeserver: PathBuf,
    /// A worker's configuration file, read over `homeserver.yaml` as Synapse reads it.
    #[arg(value_name = "WORKER_YAML")]
    pub worker: Option<PathBuf>,
    /// Write the TOML to this file (created readable by its owner only: it holds Synapse's
    /// secrets) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The reader's instance name [default: the first of streamhost1, streamhost2, ... that
    /// no Synapse instance uses].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// Reads the files, writes the TOML (to `--out` or `out`).
pub fn run(args: &SynapseImportArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut sources = vec![read_yaml(&args.homeserver)?];
    if let Some(worker) = &args.worker {
        sources.push(read_yaml(worker)?);
    }
    let toml = import(&sources, args.name.as_deref())?;
    match &args.out {
        None => out.write_all(toml.as_bytes())?,
        Some(path) => {
            write_private(path, &toml).with_context(|| format!("writing {}", path.display()))?;
            writeln!(
                out,
                "wrote {}: start the reader with `streamhost reader --config {}`",
                path.display(),
                path.display()
            )?;
        }
    }
    Ok(())
}

/// Creates (or truncates) `path` with owner-only permissions and writes `text`.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

/// One YAML file: its name for the comments, and its top-level mapping.
pub struct Source {
    /// The file's name (`homeserver.yaml`), as the comments cite it.
    pub name: String,
    /// Its top-level keys.
    pub mapping: Mapping,
}

/// Reads and parses a Synapse YAML file.
pub fn read_yaml(path: &Path) -> anyhow::Result<Source> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    parse_yaml(&name, &text)
}

/// Parses a Synapse YAML file's text; `name` names it in errors and comments.
pub fn parse_yaml(name: &str, text: &str) -> anyhow::Result<Source> {
    let value: Value = serde_yaml_ng::from_str(text).with_context(|| format!("parsing {name}"))?;
    let mapping = match value {
        Value::Mapping(mapping) => mapping,
        Value::Null => Mapping::new(),
        _ => anyhow::bail!("{name}: expected a mapping of settings at the top level"),
    };
    Ok(Source {
        name: name.to_owned(),
        mapping,
    })
}

/// The files merged as Synapse merges them: a later file's top-level key replaces an earlier
/// one's. Each value with the name of the file it came from.
struct Merged<'a> {
    keys: Vec<(&'a str, &'a Value, &'a str)>,
}

impl<'a> Merged<'a> {
    fn new(sources: &'a [Source]) -> anyhow::Result<Merged<'a>> {
        let mut keys: Vec<(&str, &Value, &str)> = Vec::new();
        for source in sources {
            for (key, value) in &source.mapping {
                let key = key
                    .as_str()
                    .with_context(|| format!("{}: a top-level key is not a string", source.name))?;
                keys.retain(|(k, _, _)| *k != key);
                keys.push((key, value, &source.name));
            }
        }
        Ok(Merged { keys })
    }

    /// The value of `key` and the file it came from; YAML `null` counts as absent.
    fn get(&self, key: &str) -> Option<(&'a Value, &'a str)> {
        self.keys
            .iter()
            .find(|(k, v, _)| *k == key && !v.is_null())
            .map(|(_, v, file)| (*v, *file))
    }
}

/// The Redis keys of Synapse's `redis` section that the reader takes, with their kinds.
const REDIS_KEYS: [(&str, Kind); 12] = [
    ("host", Kind::String),
    ("port", Kind::Integer),
    ("path", Kind::String),
    ("dbid", Kind::Integer),
    ("username", Kind::String),
    ("password", Kind::String),
    ("password_path", Kind::String),
    ("use_tls", Kind::Bool),
    ("certificate_file", Kind::String),
    ("private_key_file", Kind::String),
    ("ca_file", Kind::String),
    ("ca_path", Kind::String),
];

/// What a YAML value must be to be copied.
#[derive(Clone, Copy)]
enum Kind {
    String,
    Integer,
    Bool,
}

/// `value` as the TOML value of `kind`; `what` names the key in errors.
fn toml_value(value: &Value, kind: Kind, what: &str) -> anyhow::Result<toml::Value> {
    let converted = match kind {
        Kind::String => value.as_str().map(|s| toml::Value::String(s.to_owned())),
        Kind::Integer => value.as_i64().map(toml::Value::Integer),
        Kind::Bool => value.as_bool().map(toml::Value::Boolean),
    };
    converted.with_context(|| {
        let expected = match kind {
            Kind::String => "a string",
            Kind::Integer => "a number",
            Kind::Bool => "true or false",
        };
        format!("{what} must be {expected}, got {}", describe(value))
    })
}

/// A YAML value, shortly, for errors (never a secret's text: only its kind).
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A TOML key, quoted when it is not bare.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        toml::Value::String(key.to_owned()).to_string()
    }
}

/// The TOML for following the deployment the merged `sources` configure; `name` is the
/// reader's instance name (checked, or picked).
pub fn import(sources: &[Source], name: Option<&str>) -> anyhow::Result<String> {
    let merged = Merged::new(sources)?;
    let files: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    let mut out = String::new();
    let w = &mut out;

    let (server_name, server_name_file) = merged
        .get("server_name")
        .context("no server_name: is this Synapse's homeserver.yaml?")?;
    let server_name = toml_value(server_name, Kind::String, "server_name")?;

    let (redis, redis_file) = merged.get("redis").unzip();
    let redis = match redis {
        Some(Value::Mapping(redis)) => Some(redis),
        Some(other) => anyhow::bail!("redis must be a mapping, got {}", describe(other)),
        None => None,
    };
    let enabled = redis
        .and_then(|r| r.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    anyhow::ensure!(
        enabled,
        "{} has no `redis: enabled: true`: a Synapse without Redis (a monolith) publishes \
         nothing for a reader to follow. Give Synapse workers and Redis replication first \
         (Synapse's docs/workers.md), then import again",
        files.join(" + ")
    );
    let redis = redis.context("redis")?;
    let redis_file = redis_file.unwrap_or("homeserver.yaml");

    let instances = instance_names(&merged)?;
    let name = match name {
        Some(name) => {
            anyhow::ensure!(
                !name.is_empty() && !name.contains([' ', '\n', '\r']),
                "--name {name:?}: an instance name is non-empty, without spaces"
            );
            anyhow::ensure!(
                !instances.contains(name),
                "--name {name}: Synapse already has an instance called {name} (its instances: \
                 {}); pick a name no Synapse process uses, or the reader would ignore that \
                 instance's rows as its own echoes",
                instances.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            name.to_owned()
        }
        None => (1..)
            .map(|n| format!("streamhost{n}"))
            .find(|n| !instances.contains(n))
            .context("no free name")?,
    };

    writeln!(
        w,
        "# Written by `streamhost synapse import {}`: a reader following that Synapse\n\
         # deployment (docs/synapse.md). Each key names where it came from.\n",
        files.join(" ")
    )?;
    writeln!(w, "[reader]")?;
    writeln!(
        w,
        "name = {}  # this reader's instance name: no Synapse instance uses it ({})",
        toml::Value::String(name.clone()),
        instances.iter().cloned().collect::<Vec<_>>().join(", ")
    )?;
    writeln!(
        w,
        "# data = \"streamhost-data/reader\"  # its own SQLite file: positions, plugin state"
    )?;
    writeln!(
        w,
        "# http = \"127.0.0.1:8481\"          # status, metrics, plugin queries and notifications"
    )?;
    writeln!(w)?;

    writeln!(w, "[reader.synapse]")?;
    writeln!(
        w,
        "server_name = {server_name}  # {server_name_file}: server_name"
    )?;
    for key in [
        "worker_replication_secret",
        "worker_replication_secret_path",
    ] {
        if let Some((value, file)) = merged.get(key) {
            let value = toml_value(value, Kind::String, key)?;
            writeln!(w, "{key} = {value}  # {file}: {key}")?;
        }
    }
    writeln!(w)?;

    writeln!(w, "[reader.synapse.redis]  # {redis_file}: redis")?;
    for (key, kind) in REDIS_KEYS {
        let what = format!("redis.{key}");
        match redis.get(key).filter(|v| !v.is_null()) {
            Some(value) => {
                let value = toml_value(value, kind, &what)?;
                writeln!(w, "{key} = {value}  # {redis_file}: {what}")?;
            }
            None if key == "host" && redis.get("path").is_none() => {
                writeln!(w, "host = \"localhost\"  # {redis_file}: Synapse's default")?;
            }
            None if key == "port" && redis.get("path").is_none() => {
                writeln!(w, "port = 6379  # {redis_file}: Synapse's default")?;
            }
            None => {}
        }
    }
    for (key, _) in redis {
        let key = key.as_str().unwrap_or("?");
        if key != "enabled" && !REDIS_KEYS.iter().any(|(k, _)| *k == key) {
            writeln!(
                w,
                "# {redis_file}: redis.{key} is not a key Streamhost takes: left out"
            )?;
        }
    }

    if let Some((map, file)) = merged.get("instance_map") {
        let map = map
            .as_mapping()
            .with_context(|| format!("instance_map must be a mapping, got {}", describe(map)))?;
        for (instance, location) in map {
            let instance = instance
                .as_str()
                .context("instance_map: an instance name is not a string")?;
            let what = format!("instance_map.{instance}");
            let location = location
                .as_mapping()
                .with_context(|| format!("{what} must be a mapping"))?;
            writeln!(w)?;
            if location.get("path").is_some() {
                writeln!(
                    w,
                    "# {file}: {what} is a UNIX socket (path), which the reader cannot reach: \
                     left out (only needed to catch up typing and presence over HTTP)"
                )?;
                continue;
            }
            writeln!(
                w,
                "[reader.synapse.instance_map.{}]  # {file}: {what}",
                toml_key(instance)
            )?;
            for (key, kind) in [
                ("host", Kind::String),
                ("port", Kind::Integer),
                ("tls", Kind::Bool),
            ] {
                match location.get(key) {
                    Some(value) => {
                        let value = toml_value(value, kind, &format!("{what}.{key}"))?;
                        writeln!(w, "{key} = {value}")?;
                    }
                    None if key == "tls" => {}
                    None => anyhow::bail!("{what}.{key} is missing"),
                }
            }
        }
    }

    if let Some((writers, file)) = merged.get("stream_writers") {
        let writers = writers.as_mapping().with_context(|| {
            format!(
                "stream_writers must be a mapping, got {}",
                describe(writers)
            )
        })?;
        writeln!(w)?;
        writeln!(
            w,
            "[reader.synapse.stream_writers]  # {file}: stream_writers"
        )?;
        for (stream, writer) in writers {
            let stream = stream
                .as_str()
                .context("stream_writers: a stream name is not a string")?;
            let value = writer_names(writer).with_context(|| format!("stream_writers.{stream}"))?;
            let value = match value.as_slice() {
                [one] => toml::Value::String(one.clone()),
                many => toml::Value::Array(many.iter().cloned().map(toml::Value::String).collect()),
            };
            writeln!(w, "{} = {value}", toml_key(stream))?;
        }
    }

    ConfigFile::parse(&out).context("the written configuration does not parse (a bug)")?;
    Ok(out)
}

/// Every instance name the deployment uses: the main process's two names, `instance_map`'s
/// entries, the worker's `worker_name`, and the `stream_writers`.
fn instance_names(merged: &Merged<'_>) -> anyhow::Result<BTreeSet<String>> {
    let mut names: BTreeSet<String> = ["main", "master"].map(str::to_owned).into();
    if let Some((Value::Mapping(map), _)) = merged.get("instance_map") {
        names.extend(map.keys().filter_map(Value::as_str).map(str::to_owned));
    }
    if let Some((name, _)) = merged.get("worker_name") {
        names.insert(
            toml_value(name, Kind::String, "worker_name")?
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    if let Some((Value::Mapping(writers), _)) = merged.get("stream_writers") {
        for writer in writers.values() {
            names.extend(writer_names(writer)?);
        }
    }
    Ok(names)
}

/// A `stream_writers` value: one instance name or a list of them.
fn writer_names(value: &Value) -> anyhow::Result<Vec<String>> {
    match value {
        Value::String(one) => Ok(vec![one.clone()]),
        Value::Sequence(many) => many
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .context("an instance name is not a string")
            })
            .collect(),
        other => anyhow::bail!(
            "expected an instance name or a list, got {}",
            describe(other)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imported(files: &[(&str, &str)], name: Option<&str>) -> anyhow::Result<String> {
        let sources: Vec<Source> = files
            .iter()
            .map(|(n, t)| parse_yaml(n, t).unwrap())
            .collect();
        import(&sources, name)
    }

    fn reader(toml: &str) -> streamhost_server::config::ReaderConfig {
        ConfigFile::parse(toml).unwrap().reader
    }

    const BASE: &str = "server_name: example.org\nredis:\n  enabled: true\n";

    #[test]
    fn a_monolith_without_redis_is_refused() {
        for yaml in [
            "server_name: example.org\n",
            "server_name: example.org\nredis:\n  host: r\n",
            "server_name: example.org\nredis:\n  enabled: false\n",
        ] {
            let err = format!(
                "{:#}",
                imported(&[("homeserver.yaml", yaml)], None).unwrap_err()
            );
            assert!(err.contains("redis: enabled: true"), "{err}");
            assert!(err.contains("monolith"), "{err}");
        }
        let err = imported(&[("homeserver.yaml", "redis:\n  enabled: true\n")], None).unwrap_err();
        assert!(format!("{err:#}").contains("server_name"), "{err:#}");
    }

    #[test]
    fn tls_keys_password_path_and_instance_map_tls_are_carried() {
        let yaml = format!(
            "{BASE}  host: redis.internal\n  port: 6380\n  dbid: 2\n  use_tls: true\n  \
             certificate_file: /etc/c.pem\n  private_key_file: /etc/k.pem\n  ca_file: /etc/ca.pem\n  \
             password_path: /etc/redis-pw\n  username: synapse\n  future_key: 1\n\
             worker_replication_secret_path: /etc/wrs\n\
             instance_map:\n  main:\n    host: synapse.internal\n    port: 9093\n    tls: true\n  \
             sock:\n    path: /run/sock\n\
             stream_writers:\n  typing: worker1\n  events: [event1, event2]\n"
        );
        let toml = imported(&[("homeserver.yaml", &yaml)], None).unwrap();
        let synapse = reader(&toml).synapse.unwrap();
        let redis = &synapse.redis;
        assert_eq!(
            (redis.host.as_str(), redis.port, redis.dbid),
            ("redis.internal", 6380, Some(2))
        );
        assert!(redis.use_tls);
        assert_eq!(
            redis.certificate_file.as_deref(),
            Some(Path::new("/etc/c.pem"))
        );
        assert_eq!(
            redis.private_key_file.as_deref(),
            Some(Path::new("/etc/k.pem"))
        );
        assert_eq!(redis.ca_file.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(
            redis.password_path.as_deref(),
            Some(Path::new("/etc/redis-pw"))
        );
        assert_eq!(redis.username.as_deref(), Some("synapse"));
        assert_eq!(
            synapse.worker_replication_secret_path.as_deref(),
            Some(Path::new("/etc/wrs"))
        );
        assert!(synapse.instance_map["main"].tls);
        assert_eq!(synapse.instance_map["main"].host, "synapse.internal");
        assert!(!synapse.instance_map.contains_key("sock"), "{toml}");
        assert!(
            toml.contains("instance_map.sock is a UNIX socket"),
            "{toml}"
        );
        assert!(
            toml.contains("redis.future_key is not a key Streamhost takes"),
            "{toml}"
        );
        assert!(toml.contains("# homeserver.yaml: redis.ca_file"), "{toml}");
        assert_eq!(synapse.writer_of("typing"), "worker1");
        assert_eq!(synapse.writer_of("events"), "event1");
        assert_eq!(reader(&toml).name, "streamhost1");
    }

    #[test]
    fn the_worker_file_overrides_top_level_keys_and_names_are_never_shared() {
        let worker = "worker_app: synapse.app.generic_worker\nworker_name: streamhost1\n\
                      redis:\n  enabled: true\n  host: other\n  password: pw\n";
        let files = [("homeserver.yaml", BASE), ("worker.yaml", worker)];
        let toml = imported(&files, None).unwrap();
        let config = reader(&toml);
        assert_eq!(
            config.name, "streamhost2",
            "streamhost1 is the worker's name"
        );
        let redis = &config.synapse.as_ref().unwrap().redis;
        assert_eq!(redis.host, "other");
        assert_eq!(redis.password.as_deref(), Some("pw"));
        assert!(
            toml.contains("password = \"pw\"  # worker.yaml: redis.password"),
            "{toml}"
        );
        for clash in ["master", "main", "streamhost1"] {
            let err = format!("{:#}", imported(&files, Some(clash)).unwrap_err());
            assert!(err.contains("already has an instance"), "{clash}: {err}");
        }
        let toml = imported(&files, Some("follower")).unwrap();
        assert_eq!(reader(&toml).name, "follower");
    }

    #[test]
    fn bad_types_are_named() {
        let yaml = format!("{BASE}  port: six\n");
        let err = format!(
            "{:#}",
            imported(&[("homeserver.yaml", &yaml)], None).unwrap_err()
        );
        assert!(
            err.contains("redis.port must be a number, got a string"),
            "{err}"
        );
        let yaml = format!("{BASE}instance_map:\n  main:\n    host: h\n");
        let err = format!(
            "{:#}",
            imported(&[("homeserver.yaml", &yaml)], None).unwrap_err()
        );
        assert!(err.contains("instance_map.main.port is missing"), "{err}");
    }
}
