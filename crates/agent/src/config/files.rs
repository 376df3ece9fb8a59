//! Where the configuration comes from: one YAML file, or, as Patroni allows, a directory of
//! YAML files (`*.yml`, `*.yaml`) merged in name order — a later file's mapping merges into
//! the earlier ones key by key, and any other value replaces what came before.

use std::path::Path;

use serde_json::Value;

use super::ConfigError;

/// The configuration at `path` as a YAML value: the file, or the merge of a directory's files.
pub(crate) fn read(path: &Path) -> Result<Value, ConfigError> {
    if !path.is_dir() {
        return parse_file(path);
    }
    let entries = std::fs::read_dir(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let file = entry.path();
        let yaml = file
            .extension()
            .is_some_and(|extension| extension == "yml" || extension == "yaml");
        if yaml && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(ConfigError::Yaml(format!(
            "{}: no *.yml or *.yaml file in this directory",
            path.display()
        )));
    }
    let mut merged = Value::Null;
    for file in &files {
        merge(&mut merged, parse_file(file)?);
    }
    Ok(merged)
}

fn parse_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_saphyr::from_str(&text)
        .map_err(|error| ConfigError::Yaml(format!("{}: {error}", path.display())))
}

/// `next` merged into `into`: mappings key by key, anything else replaced.
fn merge(into: &mut Value, next: Value) {
    match (into, next) {
        (Value::Object(base), Value::Object(next)) => {
            for (key, value) in next {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (slot, next) => *slot = next,
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn a_directory_merges_its_yaml_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("10-base.yml"),
            "scope: demo\nrestapi: {listen: '127.0.0.1:8008', connect_address: '127.0.0.1:8008'}\ntags: {a: 1}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("20-local.yaml"),
            "restapi: {listen: '0.0.0.0:8008'}\ntags: [replaced]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("README"), "not: yaml: at all: [").unwrap();
        let value = read(dir.path()).unwrap();
        assert_eq!(value["scope"], "demo");
        assert_eq!(value["restapi"]["listen"], "0.0.0.0:8008");
        assert_eq!(value["restapi"]["connect_address"], "127.0.0.1:8008");
        assert_eq!(value["tags"], serde_json::json!(["replaced"]));
    }

    #[test]
    fn a_bad_file_in_a_directory_is_named_and_an_empty_directory_refused() {
        let dir = tempfile::tempdir().unwrap();
        let refused = read(dir.path());
        assert!(
            matches!(&refused, Err(ConfigError::Yaml(text)) if text.contains("no *.yml")),
            "{refused:?}"
        );
        std::fs::write(dir.path().join("a.yml"), "scope: [unclosed\n").unwrap();
        let refused = read(dir.path());
        assert!(
            matches!(&refused, Err(ConfigError::Yaml(text)) if text.contains("a.yml")),
            "{refused:?}"
        );
    }
}
