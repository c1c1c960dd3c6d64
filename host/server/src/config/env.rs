//! Settings from `STREAMHOST_…` environment variables, laid over the file's TOML tree before
//! it is deserialised, so every setting goes through the one path the file's keys take.
//!
//! The rule (`docs/configuration.md`, "Environment variables"): a setting's TOML path,
//! upper-cased, with the tables joined by a double underscore and `STREAMHOST_` in front:
//! `writer.http.address` is `STREAMHOST_WRITER__HTTP__ADDRESS`. The value is read as a TOML
//! value where it is one (`8480`, `true`, `["a", "b"]`, `{ streams = ["*"] }`, `"quoted"`) and
//! as a string otherwise; a value whose TOML type the setting does not take (a token `1234`)
//! is taken as a string. A segment matches a key of the file's table whatever its case, with
//! `-` and `_` alike, so `…__GRANTS__STREAM_STATS__KV` sets the file's
//! `[reader.plugins.grants.stream-stats]`; a table the file lacks is made with the
//! lower-cased name.
//!
//! Besides, six older names are aliases of settings ([`ALIASES`]), and some names belong to
//! the tools and the tests ([`RESERVED`], [`RESERVED_PREFIXES`]). Any other `STREAMHOST_`
//! variable is an error naming it, so a misspelled one never passes silently.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use toml::{Table, Value};

use super::ConfigFile;

/// The prefix of every variable read here.
pub const PREFIX: &str = "STREAMHOST_";

/// The variables that set one setting each, by the rule: `STREAMHOST_WRITER__…` and
/// `STREAMHOST_READER__…`.
pub const SETTING_PREFIXES: [&str; 2] = ["STREAMHOST_WRITER__", "STREAMHOST_READER__"];

/// Older names kept as aliases, each of the settings it sets (both roles' where both have it).
pub const ALIASES: [(&str, &[&str]); 6] = [
    ("STREAMHOST_WRITE_TOKEN", &["writer.write_token"]),
    (
        "STREAMHOST_REPLICATION_SECRET",
        &["writer.replication_secret", "reader.replication_secret"],
    ),
    (
        "STREAMHOST_READ_TOKEN",
        &["writer.read_token", "reader.read_token"],
    ),
    ("STREAMHOST_ADMIN_TOKEN", &["reader.plugins.admin_token"]),
    ("STREAMHOST_DATABASE_URL", &["writer.database.url"]),
    ("STREAMHOST_LOG_DATABASE_URL", &["reader.log_database_url"]),
];

/// Names that are not settings by design (the tools' own variables): ignored here.
pub const RESERVED: [&str; 3] = [
    "STREAMHOST_ADMIN_URL",
    "STREAMHOST_COMPILE_CACHE",
    "STREAMHOST_GUEST_TOOLCHAINS",
];

/// Prefixes of names that are not settings by design (the test suite's services): ignored
/// here.
pub const RESERVED_PREFIXES: [&str; 1] = ["STREAMHOST_TEST_"];

/// The `STREAMHOST_` variables of an environment (the process's, or given, for tests).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The process's `STREAMHOST_` variables; one whose value is not UTF-8 is an error
    /// naming it.
    pub fn from_process() -> anyhow::Result<Environment> {
        let mut vars = BTreeMap::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with(PREFIX)) else {
                continue;
            };
            let value = value
                .into_string()
                .map_err(|_| anyhow::anyhow!("{name}: the value is not UTF-8"))?;
            vars.insert(name.to_owned(), value);
        }
        Ok(Environment { vars })
    }

    /// An environment of these variables (those without the prefix are left out).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Environment {
        let vars = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with(PREFIX))
            .collect();
        Environment { vars }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The settings these variables make, checked by name (not yet by value).
    fn assignments(&self) -> anyhow::Result<Vec<Assignment>> {
        let mut assignments = Vec::new();
        for (name, value) in &self.vars {
            if RESERVED.contains(&name.as_str())
                || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
            {
                continue;
            }
            if let Some((_, paths)) = ALIASES.iter().find(|(alias, _)| alias == name) {
                anyhow::ensure!(!value.is_empty(), "{name} is set but empty");
                for path in *paths {
                    assignments.push(Assignment {
                        var: name.clone(),
                        path: path.split('.').map(str::to_owned).collect(),
                        value: value.clone(),
                        alias: true,
                    });
                }
                continue;
            }
            if !SETTING_PREFIXES.iter().any(|p| name.starts_with(p)) {
                anyhow::bail!("{}", unknown_name(name));
            }
            let path: Vec<String> = name[PREFIX.len()..]
                .split("__")
                .map(str::to_ascii_lowercase)
                .collect();
            anyhow::ensure!(
                path.iter().all(|s| !s.is_empty()),
                "{name}: an empty key between double underscores"
            );
            anyhow::ensure!(
                !value.is_empty(),
                "{name} is set but empty: unset it to keep the file's value or the default"
            );
            assignments.push(Assignment {
                var: name.clone(),
                path,
                value: value.clone(),
                alias: false,
            });
        }
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        for a in &assignments {
            let key = a.path.join(".").replace('-', "_");
            if let Some(other) = seen.insert(key.clone(), &a.var) {
                anyhow::bail!("{other} and {} both set {key}: set one", a.var);
            }
        }
        Ok(assignments)
    }
}

/// One setting from one variable.
struct Assignment {
    /// The variable.
    var: String,
    /// The keys of the setting, lower-cased.
    path: Vec<String>,
    /// The variable's value.
    value: String,
    /// Set by an alias: the value is always a string.
    alias: bool,
}

/// Lays the settings of `env` over `tree` (a whole configuration file's table): each in turn,
/// checked by deserialising the result, so an error names the variable that caused it.
pub(super) fn apply(tree: &mut Table, env: &Environment) -> anyhow::Result<()> {
    let assignments = env.assignments()?;
    if assignments.is_empty() {
        return Ok(());
    }
    let defaults = Table::try_from(ConfigFile::default()).context("serialising the defaults")?;
    let from_env: BTreeSet<String> = assignments.iter().map(|a| a.path.join(".")).collect();
    for a in &assignments {
        let dotted = a.path.join(".");
        let raw = Value::String(a.value.clone());
        let mut candidates: Vec<Value> = if a.alias {
            Vec::new()
        } else {
            parse_value(&a.value).into_iter().collect()
        };
        if !candidates.contains(&raw) {
            candidates.push(raw);
        }
        let (last, parent) = a.path.split_last().context("no key")?;
        let remove: Vec<String> = counterparts(last)
            .into_iter()
            .filter(|c| {
                let mut sibling = parent.to_vec();
                sibling.push(c.clone());
                !from_env.contains(&sibling.join("."))
            })
            .collect();
        let mut tried = Vec::new();
        for value in candidates {
            let mut candidate = tree.clone();
            set(&mut candidate, Some(&defaults), &a.path, value, &remove)
                .with_context(|| format!("{} (setting {dotted})", a.var))?;
            match candidate.clone().try_into::<ConfigFile>() {
                Ok(_) => {
                    *tree = candidate;
                    tried.clear();
                    break;
                }
                Err(e) => tried.push(e),
            }
        }
        if let Some(e) = tried.into_iter().next() {
            let message = e.message().trim_end().to_owned();
            let hint = if message.contains("unknown field") {
                suggestion(&a.path)
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default()
            } else {
                String::new()
            };
            anyhow::bail!("{} (setting {dotted}): {message}{hint}", a.var);
        }
    }
    Ok(())
}

/// `text` as a TOML value, if it is one.
fn parse_value(text: &str) -> Option<Value> {
    let mut table: Table = toml::from_str(&format!("v = {text}")).ok()?;
    (table.len() == 1).then(|| table.remove("v")).flatten()
}

/// A key as a variable's segment compares it: lower case, `-` as `_`.
fn normalise(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

/// Sets `path` in `table` to `value`. A missing table on the way is made (from `defaults`
/// where it has one, so a listener keeps its default address); a listener written as its
/// address becomes a table with that address. The keys in `remove` go from the last table
/// (the file's other spelling of a secret set here: `write_token_file` for `write_token`).
fn set(
    table: &mut Table,
    defaults: Option<&Table>,
    path: &[String],
    value: Value,
    remove: &[String],
) -> anyhow::Result<()> {
    let (first, rest) = path.split_first().context("no key")?;
    let wanted = normalise(first);
    let key = table
        .keys()
        .chain(defaults.into_iter().flat_map(|d| d.keys()))
        .find(|k| normalise(k) == wanted)
        .cloned()
        .unwrap_or_else(|| first.clone());
    let default_child = defaults.and_then(|d| d.get(&key)).and_then(Value::as_table);
    if rest.is_empty() {
        for sibling in remove {
            table.remove(sibling);
        }
        table.insert(key, value);
        return Ok(());
    }
    let entry = table
        .entry(key.clone())
        .or_insert_with(|| Value::Table(default_child.cloned().unwrap_or_default()));
    if let Value::String(address) = entry
        && let Some(default) = default_child.filter(|d| d.contains_key("address"))
    {
        let mut listener = default.clone();
        listener.insert("address".into(), Value::String(address.clone()));
        *entry = Value::Table(listener);
    }
    match entry {
        Value::Table(child) => set(child, default_child, rest, value, remove),
        other => anyhow::bail!("{key} is a {}, not a table", other.type_str()),
    }
}

/// The keys that hold the same secret as `key` another way: `write_token` and
/// `write_token_file`, `password` and `password_path`.
fn counterparts(key: &str) -> Vec<String> {
    match key
        .strip_suffix("_file")
        .or_else(|| key.strip_suffix("_path"))
    {
        Some(base) if base.ends_with("token") || base.ends_with("secret") || base == "password" => {
            vec![base.to_owned()]
        }
        Some(_) => Vec::new(),
        None if key.ends_with("token") || key.ends_with("secret") || key == "password" => {
            vec![format!("{key}_file"), format!("{key}_path")]
        }
        None => Vec::new(),
    }
}

/// The variable a misspelled setting's path most likely meant, found among the keys of the
/// defaults (tables that are unset by default, and map keys, offer none).
fn suggestion(path: &[String]) -> Option<String> {
    let schema = serde_json::to_value(ConfigFile::default()).ok()?;
    let mut node = &schema;
    let mut fixed = Vec::new();
    for segment in path {
        let object = node.as_object()?;
        let (key, child) = object
            .iter()
            .find(|(k, _)| normalise(k) == *segment)
            .or_else(|| {
                object
                    .iter()
                    .map(|(k, v)| (distance(k, segment), k, v))
                    .filter(|(d, k, _)| *d <= 2.max(k.len() / 4))
                    .min_by_key(|(d, _, _)| *d)
                    .map(|(_, k, v)| (k, v))
            })?;
        fixed.push(key.clone());
        node = child;
    }
    (fixed != path).then(|| variable_of(&fixed))
}

/// The variable of a setting's keys by the rule.
pub fn variable_of(path: &[impl AsRef<str>]) -> String {
    let joined: Vec<String> = path
        .iter()
        .map(|k| k.as_ref().to_ascii_uppercase().replace('-', "_"))
        .collect();
    format!("{PREFIX}{}", joined.join("__"))
}

/// The error for a `STREAMHOST_` variable that is no setting, alias or reserved name.
fn unknown_name(name: &str) -> String {
    for role in ["WRITER", "READER"] {
        if let Some(rest) = name.strip_prefix(&format!("{PREFIX}{role}_"))
            && !rest.starts_with('_')
        {
            return format!(
                "{name} names no setting: settings are {PREFIX}{role}__<KEY>, with a double \
                 underscore between tables (did you mean {PREFIX}{role}__{rest}?)"
            );
        }
    }
    let known = ALIASES
        .iter()
        .map(|(alias, _)| *alias)
        .chain(RESERVED)
        .map(|k| (distance(k, name), k))
        .filter(|(d, _)| *d <= 3)
        .min();
    let hint = known
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default();
    format!(
        "{name} names no setting{hint}: settings are {PREFIX}WRITER__<KEY> and \
         {PREFIX}READER__<KEY> (docs/configuration.md, \"Environment variables\")"
    )
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(file: &str, vars: &[(&str, &str)]) -> anyhow::Result<ConfigFile> {
        let mut tree: Table = toml::from_str(file).unwrap();
        apply(&mut tree, &Environment::from_pairs(vars.iter().copied()))?;
        Ok(tree.try_into()?)
    }

    fn error(file: &str, vars: &[(&str, &str)]) -> String {
        format!("{:#}", resolve(file, vars).unwrap_err())
    }

    #[test]
    fn the_rule_reaches_nested_keys_with_typed_values() {
        let config = resolve(
            "",
            &[
                ("STREAMHOST_WRITER__HTTP__ADDRESS", "0.0.0.0:8480"),
                ("STREAMHOST_WRITER__HTTP__ALLOW_INSECURE", "true"),
                ("STREAMHOST_WRITER__STREAMS", r#"["a", "b"]"#),
                ("STREAMHOST_WRITER__TAIL_ROWS", "5"),
                ("STREAMHOST_READER__PLUGINS__QUERIES__QUEUE_DEPTH", "7"),
                ("STREAMHOST_READER__PLUGINS__GRANTS__STATS__KV", "true"),
                (
                    "STREAMHOST_READER__PLUGINS__GRANTS__MEMBERSHIP",
                    r#"{ streams = ["events"], topics = ["membership:*"] }"#,
                ),
                ("STREAMHOST_READER__SERVER_NAME", "1234"),
            ],
        )
        .unwrap();
        let writer = &config.writer;
        assert_eq!(writer.http.address.to_string(), "0.0.0.0:8480");
        assert!(writer.http.allow_insecure);
        assert_eq!(writer.streams, ["a", "b"]);
        assert_eq!(writer.tail_rows, 5);
        assert_eq!(writer.replication.address.to_string(), "127.0.0.1:9092");
        let reader = &config.reader;
        assert_eq!(reader.plugins.queries.queue_depth, 7);
        assert_eq!(reader.plugins.queries.cache_keys, 1_000);
        assert!(reader.plugins.grants["stats"].kv);
        assert_eq!(reader.plugins.grants["membership"].topics, ["membership:*"]);
        assert_eq!(
            reader.server_name.as_deref(),
            Some("1234"),
            "a string after all"
        );
    }

    #[test]
    fn a_variable_beats_the_file_and_matches_its_keys_with_dashes() {
        let file = "[writer]\nhttp = \"127.0.0.1:1\"\nserver_name = \"file\"\n\
                    [reader.plugins.grants.stream-stats]\nstreams = [\"*\"]\n";
        let config = resolve(
            file,
            &[
                ("STREAMHOST_WRITER__SERVER_NAME", "env"),
                ("STREAMHOST_WRITER__HTTP__MAX_CONNECTIONS", "3"),
                (
                    "STREAMHOST_READER__PLUGINS__GRANTS__STREAM_STATS__KV",
                    "true",
                ),
            ],
        )
        .unwrap();
        assert_eq!(config.writer.server_name, "env");
        assert_eq!(config.writer.http.address.to_string(), "127.0.0.1:1");
        assert_eq!(config.writer.http.max_connections, 3);
        let grant = &config.reader.plugins.grants["stream-stats"];
        assert!(grant.kv && grant.streams == ["*"], "{grant:?}");
        assert_eq!(config.reader.plugins.grants.len(), 1);
    }

    #[test]
    fn aliases_set_both_roles_and_replace_the_files_secret_file() {
        let file = "[writer]\nwrite_token_file = \"/nonexistent\"\n";
        let config = resolve(
            file,
            &[
                ("STREAMHOST_WRITE_TOKEN", "12345"),
                ("STREAMHOST_REPLICATION_SECRET", "r"),
                ("STREAMHOST_TEST_REDIS", "ignored"),
                ("STREAMHOST_COMPILE_CACHE", "ignored"),
                ("PATH", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(config.writer.write_token.as_deref(), Some("12345"));
        assert!(config.writer.write_token_file.is_none());
        assert_eq!(config.writer.replication_secret.as_deref(), Some("r"));
        assert_eq!(config.reader.replication_secret.as_deref(), Some("r"));
        let err = error(
            "",
            &[
                ("STREAMHOST_WRITE_TOKEN", "a"),
                ("STREAMHOST_WRITER__WRITE_TOKEN", "b"),
            ],
        );
        assert!(
            err.contains("STREAMHOST_WRITER__WRITE_TOKEN and STREAMHOST_WRITE_TOKEN both set"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_and_unknown_names_are_errors_naming_the_variable() {
        let cases = [
            (
                "STREAMHOST_WRITER__HTTP__ADDRESS",
                "not-an-address",
                "STREAMHOST_WRITER__HTTP__ADDRESS (setting writer.http.address)",
            ),
            (
                "STREAMHOST_READER__SYNAPSE__REDIS__PORT",
                "six",
                "STREAMHOST_READER__SYNAPSE__REDIS__PORT (setting reader.synapse.redis.port): invalid type: string \"six\"",
            ),
            (
                "STREAMHOST_WRITER__TAIL_ROWZ",
                "1",
                "did you mean STREAMHOST_WRITER__TAIL_ROWS?",
            ),
            (
                "STREAMHOST_WRITER__HTTTP__ADDRESS",
                "1",
                "did you mean STREAMHOST_WRITER__HTTP__ADDRESS?",
            ),
            (
                "STREAMHOST_WRITER_SERVER_NAME",
                "x",
                "did you mean STREAMHOST_WRITER__SERVER_NAME?",
            ),
            (
                "STREAMHOST_WRITE_TOKN",
                "x",
                "did you mean STREAMHOST_WRITE_TOKEN?",
            ),
            ("STREAMHOST_WRITER__STREAMS", "", "set but empty"),
            ("STREAMHOST_WRITER____X", "1", "empty key"),
            (
                "STREAMHOST_WRITER__SERVER_NAME__X",
                "1",
                "server_name is a string, not a table",
            ),
        ];
        for (name, value, expected) in cases {
            let file = if name.ends_with("SERVER_NAME__X") {
                "[writer]\nserver_name = \"s\"\n"
            } else {
                ""
            };
            let err = error(file, &[(name, value)]);
            assert!(err.contains(expected), "{name}={value}: {err}");
        }
    }

    #[test]
    fn variable_names_follow_the_rule() {
        assert_eq!(
            variable_of(&["reader", "plugins", "grants", "stream-stats", "kv"]),
            "STREAMHOST_READER__PLUGINS__GRANTS__STREAM_STATS__KV"
        );
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(
            counterparts("write_token"),
            ["write_token_file", "write_token_path"]
        );
        assert_eq!(counterparts("password_path"), ["password"]);
        assert!(counterparts("ca_file").is_empty());
    }
}
