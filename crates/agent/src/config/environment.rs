//! Patroni's `PATRONI_*` environment variables: values that override the configuration file
//! (as in Patroni, the environment wins), so a container or a unit file can set the member's
//! name, addresses, store endpoints and passwords without rewriting the file.
//!
//! Applied to the configuration as parsed from YAML, before it is typed: a value refused there
//! names its key and the variable it came from. Lists (`PATRONI_ETCD3_HOSTS`,
//! `PATRONI_RESTAPI_ALLOWLIST`) are a YAML list (`[a, b]`) or comma-separated; booleans take
//! Patroni's spellings. Variables this file does not list are ignored, as Patroni ignores
//! unknown ones.

use serde_json::{Map, Value};

use super::ConfigError;

/// How a variable's text becomes a configuration value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    List,
    Bool,
}

/// Variable → configuration key path and kind, as Patroni documents them.
const VARIABLES: &[(&str, &[&str], Kind)] = &[
    ("PATRONI_NAME", &["name"], Kind::Text),
    ("PATRONI_NAMESPACE", &["namespace"], Kind::Text),
    ("PATRONI_SCOPE", &["scope"], Kind::Text),
    ("PATRONI_RESTAPI_LISTEN", &["restapi", "listen"], Kind::Text),
    (
        "PATRONI_RESTAPI_CONNECT_ADDRESS",
        &["restapi", "connect_address"],
        Kind::Text,
    ),
    (
        "PATRONI_RESTAPI_USERNAME",
        &["restapi", "authentication", "username"],
        Kind::Text,
    ),
    (
        "PATRONI_RESTAPI_PASSWORD",
        &["restapi", "authentication", "password"],
        Kind::Text,
    ),
    (
        "PATRONI_RESTAPI_CERTFILE",
        &["restapi", "certfile"],
        Kind::Text,
    ),
    (
        "PATRONI_RESTAPI_KEYFILE",
        &["restapi", "keyfile"],
        Kind::Text,
    ),
    (
        "PATRONI_RESTAPI_KEYFILE_PASSWORD",
        &["restapi", "keyfile_password"],
        Kind::Text,
    ),
    ("PATRONI_RESTAPI_CAFILE", &["restapi", "cafile"], Kind::Text),
    (
        "PATRONI_RESTAPI_CIPHERS",
        &["restapi", "ciphers"],
        Kind::Text,
    ),
    (
        "PATRONI_RESTAPI_VERIFY_CLIENT",
        &["restapi", "verify_client"],
        Kind::Text,
    ),
    (
        "PATRONI_RESTAPI_ALLOWLIST",
        &["restapi", "allowlist"],
        Kind::List,
    ),
    (
        "PATRONI_RESTAPI_SERVER_TOKENS",
        &["restapi", "server_tokens"],
        Kind::Text,
    ),
    (
        "PATRONI_RESTAPI_ALLOWLIST_INCLUDE_MEMBERS",
        &["restapi", "allowlist_include_members"],
        Kind::Bool,
    ),
    ("PATRONI_CTL_INSECURE", &["ctl", "insecure"], Kind::Bool),
    (
        "PATRONI_CTL_USERNAME",
        &["ctl", "authentication", "username"],
        Kind::Text,
    ),
    (
        "PATRONI_CTL_PASSWORD",
        &["ctl", "authentication", "password"],
        Kind::Text,
    ),
    ("PATRONI_CTL_CACERT", &["ctl", "cacert"], Kind::Text),
    ("PATRONI_CTL_CERTFILE", &["ctl", "certfile"], Kind::Text),
    ("PATRONI_CTL_KEYFILE", &["ctl", "keyfile"], Kind::Text),
    (
        "PATRONI_CTL_KEYFILE_PASSWORD",
        &["ctl", "keyfile_password"],
        Kind::Text,
    ),
    ("PATRONI_ETCD3_PROXY", &["etcd3", "proxy"], Kind::Text),
    ("PATRONI_ETCD3_URL", &["etcd3", "url"], Kind::Text),
    ("PATRONI_ETCD3_HOSTS", &["etcd3", "hosts"], Kind::List),
    ("PATRONI_ETCD3_HOST", &["etcd3", "host"], Kind::Text),
    ("PATRONI_ETCD3_PROTOCOL", &["etcd3", "protocol"], Kind::Text),
    ("PATRONI_ETCD3_USERNAME", &["etcd3", "username"], Kind::Text),
    ("PATRONI_ETCD3_PASSWORD", &["etcd3", "password"], Kind::Text),
    ("PATRONI_ETCD3_CACERT", &["etcd3", "cacert"], Kind::Text),
    ("PATRONI_ETCD3_CERT", &["etcd3", "cert"], Kind::Text),
    ("PATRONI_ETCD3_KEY", &["etcd3", "key"], Kind::Text),
    (
        "PATRONI_ETCD3_KEY_PASSWORD",
        &["etcd3", "key_password"],
        Kind::Text,
    ),
    ("PATRONI_ETCD3_SRV", &["etcd3", "srv"], Kind::Text),
    (
        "PATRONI_POSTGRESQL_LISTEN",
        &["postgresql", "listen"],
        Kind::Text,
    ),
    (
        "PATRONI_POSTGRESQL_CONNECT_ADDRESS",
        &["postgresql", "connect_address"],
        Kind::Text,
    ),
    (
        "PATRONI_POSTGRESQL_DATA_DIR",
        &["postgresql", "data_dir"],
        Kind::Text,
    ),
    (
        "PATRONI_POSTGRESQL_CONFIG_DIR",
        &["postgresql", "config_dir"],
        Kind::Text,
    ),
    (
        "PATRONI_POSTGRESQL_BIN_DIR",
        &["postgresql", "bin_dir"],
        Kind::Text,
    ),
    (
        "PATRONI_POSTGRESQL_PGPASS",
        &["postgresql", "pgpass"],
        Kind::Text,
    ),
    (
        "PATRONI_REPLICATION_USERNAME",
        &["postgresql", "authentication", "replication", "username"],
        Kind::Text,
    ),
    (
        "PATRONI_REPLICATION_PASSWORD",
        &["postgresql", "authentication", "replication", "password"],
        Kind::Text,
    ),
    (
        "PATRONI_SUPERUSER_USERNAME",
        &["postgresql", "authentication", "superuser", "username"],
        Kind::Text,
    ),
    (
        "PATRONI_SUPERUSER_PASSWORD",
        &["postgresql", "authentication", "superuser", "password"],
        Kind::Text,
    ),
    (
        "PATRONI_REWIND_USERNAME",
        &["postgresql", "authentication", "rewind", "username"],
        Kind::Text,
    ),
    (
        "PATRONI_REWIND_PASSWORD",
        &["postgresql", "authentication", "rewind", "password"],
        Kind::Text,
    ),
];

/// A value set from the environment: the key path (`restapi.listen`) and the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Applied {
    pub path: String,
    pub variable: &'static str,
}

/// Sets every listed variable found in `environment` into `config` (the parsed YAML); the
/// keys set, for error messages. A boolean that does not read as one is refused naming it.
pub(crate) fn apply(
    config: &mut Value,
    environment: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<Applied>, ConfigError> {
    let found: std::collections::BTreeMap<String, String> = environment
        .into_iter()
        .filter(|(name, _)| name.starts_with("PATRONI_"))
        .collect();
    let mut applied = Vec::new();
    for (variable, path, kind) in VARIABLES {
        let Some(text) = found.get(*variable) else {
            continue;
        };
        let value = match kind {
            Kind::Text => Value::String(text.clone()),
            Kind::List => list(text),
            Kind::Bool => Value::Bool(boolean(text).ok_or_else(|| ConfigError::Invalid {
                path: path.join("."),
                reason: format!(
                    "{variable}={text:?} is not a boolean (true/false, on/off, yes/no, 1/0)"
                ),
            })?),
        };
        set(config, path, value);
        applied.push(Applied {
            path: path.join("."),
            variable,
        });
    }
    Ok(applied)
}

/// Adds "(from PATRONI_…)" to a refusal of a key the environment set.
pub(crate) fn name_the_variable(error: ConfigError, applied: &[Applied]) -> ConfigError {
    match error {
        ConfigError::Invalid { path, reason } => {
            match applied
                .iter()
                .find(|set| path == set.path || path.starts_with(&format!("{}.", set.path)))
            {
                Some(set) => ConfigError::Invalid {
                    reason: format!("{reason} (from {})", set.variable),
                    path,
                },
                None => ConfigError::Invalid { path, reason },
            }
        }
        other => other,
    }
}

/// `[a, b]` as a YAML flow list, else comma-separated items (blanks trimmed, empties dropped).
fn list(text: &str) -> Value {
    let trimmed = text.trim();
    if trimmed.starts_with('[')
        && let Ok(Value::Array(items)) = serde_saphyr::from_str::<Value>(trimmed)
    {
        return Value::Array(items);
    }
    Value::Array(
        trimmed
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| Value::String(item.to_owned()))
            .collect(),
    )
}

fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Some(true),
        "false" | "off" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Sets `path` in `config`, making the sections on the way (a section that is not a mapping
/// is replaced: the environment wins).
fn set(config: &mut Value, path: &[&str], value: Value) {
    let mut here = config;
    for key in path {
        if !here.is_object() {
            *here = Value::Object(Map::new());
        }
        let Value::Object(map) = here else {
            return;
        };
        here = map.entry((*key).to_owned()).or_insert(Value::Null);
    }
    *here = value;
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// Variables (name, value) given to [`apply`].
    type Variables<'a> = &'a [(&'a str, &'a str)];

    #[test]
    fn variables_set_their_keys_over_the_file() {
        let cases: [(Variables, &str, Value); 7] = [
            (&[("PATRONI_NAME", "n7")], "/name", Value::from("n7")),
            (
                &[("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008")],
                "/restapi/listen",
                Value::from("0.0.0.0:8008"),
            ),
            (
                &[("PATRONI_SUPERUSER_PASSWORD", "s3cret")],
                "/postgresql/authentication/superuser/password",
                Value::from("s3cret"),
            ),
            (
                &[("PATRONI_ETCD3_HOSTS", "a:2379, b:2379,")],
                "/etcd3/hosts",
                serde_json::json!(["a:2379", "b:2379"]),
            ),
            (
                &[("PATRONI_ETCD3_HOSTS", "['a:2379', 'b:2379']")],
                "/etcd3/hosts",
                serde_json::json!(["a:2379", "b:2379"]),
            ),
            (
                &[("PATRONI_RESTAPI_ALLOWLIST_INCLUDE_MEMBERS", "on")],
                "/restapi/allowlist_include_members",
                Value::Bool(true),
            ),
            (
                // Unknown variables and other prefixes are ignored.
                &[("PATRONI_SOMETHING_ELSE", "x"), ("NAME", "y")],
                "/name",
                Value::from("n1"),
            ),
        ];
        for (variables, pointer, expected) in cases {
            let mut config =
                serde_json::json!({"name": "n1", "restapi": {"listen": "127.0.0.1:8008"}});
            apply(&mut config, env(variables)).unwrap();
            assert_eq!(config.pointer(pointer), Some(&expected), "{variables:?}");
        }
    }

    #[test]
    fn a_bad_boolean_is_refused_naming_the_variable() {
        let mut config = serde_json::json!({});
        let refused = apply(&mut config, env(&[("PATRONI_CTL_INSECURE", "maybe")]));
        let Err(ConfigError::Invalid { path, reason }) = refused else {
            panic!("accepted: {refused:?}");
        };
        assert_eq!(path, "ctl.insecure");
        assert!(reason.contains("PATRONI_CTL_INSECURE"), "{reason}");
    }
}
