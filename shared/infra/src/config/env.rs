//! The environment's part in a configuration: `${VAR}` substitution in the file's text and
//! `CLIMATE_API__SECTION__KEY` overrides of its values.

use std::collections::BTreeMap;

use super::ENV_PREFIX;

/// Replaces `${VAR}` and `${VAR:-default}` with values from `env`; `$$` is a literal `$`.
pub(super) fn substitute(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${…} substitution".to_owned())?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(format!("invalid variable name in ${{{expr}}}"));
            }
            match (env.get(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (use ${{{name}:-default}} to give a default)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Sets `section.key` from `CLIMATE_API__SECTION__KEY`. Values are read as YAML scalars, so
/// `true`, `4` and `null` have their natural types.
pub(super) fn apply_env_overrides(
    value: &mut serde_json::Value,
    env: &BTreeMap<String, String>,
) -> Result<(), (String, String)> {
    for (k, v) in env {
        let Some(path) = k.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        let dotted = parts.join(".");
        if parts.iter().any(String::is_empty) {
            return Err((dotted, format!("malformed variable name {k}")));
        }
        let scalar: serde_json::Value = if v.trim().is_empty() {
            serde_json::Value::String(String::new())
        } else {
            serde_saphyr::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.clone()))
        };
        // Strings that look like numbers stay strings where the existing value is a string.
        let mut node = &mut *value;
        for (i, part) in parts.iter().enumerate() {
            let map = node.as_object_mut().ok_or_else(|| {
                (
                    dotted.clone(),
                    format!("{k}: parent of '{part}' is not a section"),
                )
            })?;
            if i + 1 == parts.len() {
                map.insert(part.clone(), scalar.clone());
                break;
            }
            node = map
                .entry(part.clone())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
        }
    }
    Ok(())
}
