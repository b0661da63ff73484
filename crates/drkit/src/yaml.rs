//! YAML for `drkit kubernetes`: a JSON value written in block style, as
//! kubectl prints manifests. Strings that could read as something else
//! (`"0 2 * * *"`, `"true"`, `"8080"`) are double-quoted with JSON's
//! escapes, which YAML shares; text of several lines (a config file) is a
//! literal block.

use std::fmt::Write;

use serde_json::Value;

/// `value` as one YAML document (no `---`).
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            write_scalar(&mut out, scalar, 2);
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (key, value) in map {
        pad(out, indent);
        write_key(out, key);
        write_value_after(out, value, indent);
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push('-');
        if !matches!(item, Value::Array(inner) if !inner.is_empty()) {
            out.push(' ');
        }
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first entry on the dash's line, the rest below it.
                let mut entries = map.iter();
                if let Some((key, value)) = entries.next() {
                    write_key(out, key);
                    write_value_after(out, value, indent + 2);
                }
                for (key, value) in entries {
                    pad(out, indent + 2);
                    write_key(out, key);
                    write_value_after(out, value, indent + 2);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, indent + 2);
            }
            scalar => {
                write_scalar(out, scalar, indent + 2);
                out.push('\n');
            }
        }
    }
}

/// After `key:` at `indent`: a scalar on the line, a collection below.
fn write_value_after(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, indent + 2);
        }
        scalar => {
            out.push(' ');
            write_scalar(out, scalar, indent + 2);
            out.push('\n');
        }
    }
}

fn write_key(out: &mut String, key: &str) {
    if is_plain(key) {
        out.push_str(key);
    } else {
        out.push_str(&quoted(key));
    }
    out.push(':');
}

/// A scalar, or an empty collection; a literal block is indented by `indent`.
fn write_scalar(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) if is_plain(s) => out.push_str(s),
        Value::String(s) if is_literal_block(s) => {
            out.push_str(if s.ends_with('\n') { "|" } else { "|-" });
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                out.push('\n');
                if !line.is_empty() {
                    pad(out, indent);
                    out.push_str(line);
                }
            }
        }
        Value::String(s) => out.push_str(&quoted(s)),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// A string YAML reads back as the same string without quotes: a word of
/// letters, digits and `_./:@-`, not starting with a digit or a sign, and
/// not one of YAML's words for booleans and null.
fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    const RESERVED: [&str; 12] = [
        "true", "false", "yes", "no", "on", "off", "null", "y", "n", "nan", "inf", "~",
    ];
    (first.is_ascii_alphabetic() || first == '_' || first == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:@-".contains(c))
        && !s.ends_with(':')
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str())
}

/// Text of several lines that a literal block keeps exactly: printable,
/// no carriage return, at most one final line feed, and a first line not
/// starting with a space (which would be read as the block's indentation).
fn is_literal_block(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && !s.ends_with("\n\n")
        && s.chars().all(|c| c == '\n' || !c.is_control())
        && s.split('\n').all(|line| !line.ends_with(' '))
}

/// A double-quoted scalar: JSON's escapes are YAML's.
fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn round_trip(value: &Value) -> Value {
        let text = to_yaml(value);
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"))
    }

    #[test]
    fn manifests_read_back_as_written() {
        let value = json!({
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": { "name": "drkit-backup", "labels": { "app.kubernetes.io/name": "drkit" } },
            "spec": {
                "schedule": "0 2 * * *",
                "timeZone": "Asia/Jakarta",
                "suspend": false,
                "items": [1, "2", true, null, "on", [], {}, [["a"]], { "k": [ { "x": 1, "y": "z" } ] }],
                "config": "[repository]\nlocation = \"/var/lib/drkit\"\n\n# comment\n",
                "noNewline": "a\nb",
                "trailing": "a\n\n",
                "indented": " a\nb\n",
                "empty": "",
                "colon": "a: b",
                "hash": "a #b",
            }
        });
        assert_eq!(round_trip(&value), value);
        let text = to_yaml(&value);
        assert!(text.contains("schedule: \"0 2 * * *\"\n"), "{text}");
        assert!(text.contains("kind: CronJob\n"), "{text}");
        assert!(text.contains("  config: |\n    [repository]\n"), "{text}");
        assert!(text.contains("    -\n      -\n        - a\n"), "{text}");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            "[ -~\\n\\t\\r]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[ -~]{0,8}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_reads_back(value in json_value()) {
            prop_assert_eq!(round_trip(&value), value);
        }
    }
}
