//! Editing the cluster-wide configuration as pure functions over JSON: `--set key.path=value`,
//! `--pg name=value`, merge patches (null deletes, as Patroni's PATCH /config), the checks a
//! new configuration must pass before it is written, YAML rendering and a line diff.

use serde_json::{Map, Value};

/// Parses a `--set` / `--pg` value as YAML (numbers, booleans, null) or takes it as text.
fn yaml_value(text: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// `key.path=value`: sets (or with `null`, removes) the value at the dotted path.
pub fn apply_set(config: &mut Value, assignment: &str) -> Result<(), String> {
    let (path, value) = assignment
        .split_once('=')
        .ok_or_else(|| format!("--set {assignment}: expected key.path=value"))?;
    let path: Vec<&str> = path.trim().split('.').collect();
    if path.iter().any(|part| part.is_empty()) {
        return Err(format!("--set {assignment}: empty key in the path"));
    }
    let mut patch = yaml_value(value.trim());
    for part in path.iter().rev() {
        let mut object = Map::new();
        object.insert((*part).to_owned(), patch);
        patch = Value::Object(object);
    }
    merge_patch(config, &patch);
    Ok(())
}

/// `name=value` under `postgresql.parameters` (names may hold dots, e.g.
/// `auto_explain.log_min_duration`).
pub fn apply_pg(config: &mut Value, assignment: &str) -> Result<(), String> {
    let (name, value) = assignment
        .split_once('=')
        .ok_or_else(|| format!("--pg {assignment}: expected parameter=value"))?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("--pg {assignment}: not a parameter name"));
    }
    let patch = serde_json::json!({"postgresql": {"parameters": {name: yaml_value(value.trim())}}});
    merge_patch(config, &patch);
    Ok(())
}

/// Merges `patch` into `target`: objects recursively, `null` removes the key, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn seconds(config: &Value, key: &str) -> Result<Option<f64>, String> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_f64()
            .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
            .filter(|number| *number >= 0.0)
            .map(Some)
            .ok_or_else(|| format!("{key}: expected a number of seconds, got {value}")),
    }
}

/// Refuses a configuration the agents could not run with: non-object documents, timings of
/// the wrong type, and `loop_wait + 2 × retry_timeout > ttl` (each missing one at `defaults`).
pub fn validate(config: &Value, defaults: (f64, f64, f64)) -> Result<(), String> {
    if !config.is_object() {
        return Err("the configuration must be a mapping".to_owned());
    }
    let ttl = seconds(config, "ttl")?.unwrap_or(defaults.0);
    let loop_wait = seconds(config, "loop_wait")?.unwrap_or(defaults.1);
    let retry_timeout = seconds(config, "retry_timeout")?.unwrap_or(defaults.2);
    if loop_wait + 2.0 * retry_timeout > ttl {
        return Err(format!(
            "loop_wait ({loop_wait}) + 2 × retry_timeout ({retry_timeout}) must not exceed ttl ({ttl})"
        ));
    }
    if let Some(parameters) = config.pointer("/postgresql/parameters")
        && !parameters.is_object()
    {
        return Err("postgresql.parameters must be a mapping".to_owned());
    }
    Ok(())
}

/// The configuration as YAML.
pub fn to_yaml(config: &Value) -> String {
    serde_saphyr::to_string(config).unwrap_or_else(|_| config.to_string())
}

/// Lines removed (`-`) and added (`+`) between two texts, in order (longest common
/// subsequence; the configurations are small).
pub fn diff(old: &str, new: &str) -> String {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let mut common = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            i += 1;
            j += 1;
        } else if j < new.len() && (i == old.len() || common[i][j + 1] >= common[i + 1][j]) {
            out.push_str(&format!("+{}\n", new[j]));
            j += 1;
        } else {
            out.push_str(&format!("-{}\n", old[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_builds_paths_types_values_and_null_removes() {
        let mut config = json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "4MB"}}});
        apply_set(&mut config, "loop_wait=5").unwrap();
        apply_set(&mut config, "postgresql.use_slots=true").unwrap();
        apply_set(&mut config, "ttl=null").unwrap();
        apply_pg(&mut config, "work_mem=8MB").unwrap();
        apply_pg(&mut config, "auto_explain.log_min_duration=10").unwrap();
        assert_eq!(
            config,
            json!({"loop_wait": 5, "postgresql": {"use_slots": true, "parameters": {"work_mem": "8MB", "auto_explain.log_min_duration": 10}}})
        );
        assert!(apply_set(&mut config, "novalue").is_err());
        assert!(apply_set(&mut config, "a..b=1").is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let defaults = (5.0, 1.0, 2.0);
        assert!(validate(&json!({}), defaults).is_ok());
        assert!(
            validate(
                &json!({"ttl": 10, "loop_wait": 2, "retry_timeout": 4}),
                defaults
            )
            .is_ok()
        );
        let error = validate(&json!({"ttl": 3}), defaults).unwrap_err();
        assert!(error.contains("must not exceed ttl"), "{error}");
        let error = validate(&json!({"ttl": "soon"}), defaults).unwrap_err();
        assert!(error.starts_with("ttl:"), "{error}");
        assert!(validate(&json!({"postgresql": {"parameters": 1}}), defaults).is_err());
        assert!(validate(&json!([1]), defaults).is_err());
    }

    #[test]
    fn diff_marks_changed_lines() {
        assert_eq!(diff("a\nb\nc\n", "a\nB\nc\nd\n"), "+B\n-b\n+d\n");
        assert_eq!(diff("same\n", "same\n"), "");
    }
}
