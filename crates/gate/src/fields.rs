//! Field selection: a read answers only the keys the agent names (`fields`), for questions that
//! need one fact of a larger answer ("is job X green?" is `get_job` with `fields: ["last_build"]`).
//!
//! Like the response budget ([`crate::budget`]), it is one mechanism for every read, taken out of
//! the arguments by the call path before the operation's strict parse and applied to the sanitized
//! answer (a selection only removes parts of a clean value, so it stays clean). A name is a key of
//! the answer, dotted for a nested one (`last_build.result`); a dotted name applies to every entry
//! of a list on the way (`builds.number`). What the boundary and the budget add to every answer
//! (`redactions`, `omitted`) is always kept. A name that matches nothing is not an error (optional
//! keys are absent from some answers): the answer lists it in `fields_unmatched` with the keys it
//! has, so a typo is seen at once.

use serde_json::{Map, Value, json};

use crate::error::GateError;

/// The most names one call may give.
const MAX_FIELDS: usize = 32;
/// The longest name (dots included).
const MAX_NAME: usize = 128;
/// Keys every answer keeps whatever was selected: the boundary's count of what it removed, the
/// budget's note of what it left out.
const ALWAYS: &[&str] = &["redactions", "omitted"];

/// The keys a call selected, as paths (`["last_build", "result"]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    paths: Vec<Vec<String>>,
}

/// Takes `fields` out of a read's arguments (before the operation's strict parse, which does not
/// know it): `None` when absent (the whole answer).
pub fn take(args: &mut Value) -> Result<Option<Selection>, GateError> {
    let Some(m) = args.as_object_mut() else {
        return Ok(None);
    };
    let bad = |why: &str| {
        GateError::Invalid(format!(
            "fields {why}: give a list of the answer's keys, dotted for nested ones, e.g. [\"last_build\", \"health.score\"] \
             (at most {MAX_FIELDS}; omit `fields` for the whole answer)"
        ))
    };
    let list = match m.remove("fields") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(bad("must be a list of names")),
    };
    if list.is_empty() || list.len() > MAX_FIELDS {
        return Err(bad(&format!("has {} names", list.len())));
    }
    let mut paths = Vec::with_capacity(list.len());
    for name in &list {
        let Some(name) = name.as_str() else {
            return Err(bad("must be a list of strings"));
        };
        let valid_key =
            |k: &str| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if name.len() > MAX_NAME || !name.split('.').all(valid_key) {
            // The name is the agent's own text: quoted with escapes, and short.
            let shown: String = name.chars().take(40).collect();
            return Err(bad(&format!("has a name that is not a key path: {shown:?}")));
        }
        paths.push(name.split('.').map(str::to_string).collect());
    }
    Ok(Some(Selection { paths }))
}

/// The `fields` property of every read tool's input schema.
pub fn schema_property() -> Value {
    json!({
        "type": "array",
        "items": {"type": "string"},
        "maxItems": MAX_FIELDS,
        "description": "Only these keys of the answer (dotted for nested ones: last_build.result); default: all.",
    })
}

/// The answer with only the selected keys (and [`ALWAYS`]); names that matched nothing are listed
/// in `fields_unmatched`, with the answer's own keys in `fields_available`.
pub fn select(answer: Value, sel: &Selection) -> Value {
    let Value::Object(mut m) = answer else {
        return answer;
    };
    let mut out = Map::new();
    let mut unmatched = Vec::new();
    for path in &sel.paths {
        if !pick(&m, path, &mut out) {
            unmatched.push(path.join("."));
        }
    }
    for key in ALWAYS {
        if let Some(v) = m.remove(*key) {
            out.insert((*key).to_string(), v);
        }
    }
    if !unmatched.is_empty() {
        let available: Vec<&String> = m.keys().filter(|k| !ALWAYS.contains(&k.as_str())).collect();
        out.insert("fields_available".into(), json!(available));
        out.insert("fields_unmatched".into(), json!(unmatched));
    }
    Value::Object(out)
}

/// Copies `path` of `from` into `into` (merging with what earlier paths copied); whether it matched.
fn pick(from: &Map<String, Value>, path: &[String], into: &mut Map<String, Value>) -> bool {
    let Some((key, rest)) = path.split_first() else {
        return false;
    };
    let Some(value) = from.get(key) else {
        return false;
    };
    if rest.is_empty() {
        into.insert(key.clone(), value.clone());
        return true;
    }
    match value {
        Value::Object(inner) => {
            let slot = into.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(slot) = slot else {
                // The whole value was selected already: it holds this part too.
                return true;
            };
            pick(inner, rest, slot)
        }
        Value::Array(items) => {
            let slot =
                into.entry(key.clone()).or_insert_with(|| Value::Array(vec![Value::Object(Map::new()); items.len()]));
            let Value::Array(slots) = slot else {
                return true;
            };
            let mut any = false;
            for (item, slot) in items.iter().zip(slots.iter_mut()) {
                match (item, slot) {
                    (Value::Object(item), Value::Object(slot)) => any |= pick(item, rest, slot),
                    // An entry that is not an object has no keys to select: kept whole.
                    (item, slot) if !item.is_object() => *slot = item.clone(),
                    _ => {}
                }
            }
            any || items.is_empty()
        }
        // A scalar has no nested keys.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(names: &[&str]) -> Selection {
        take(&mut json!({"fields": names})).expect("valid").expect("some")
    }

    fn answer() -> Value {
        json!({
            "name": "team/app",
            "last_build": {"number": 3, "result": "FAILURE", "url": "u"},
            "health": {"score": 40, "description": "d"},
            "builds": [{"number": 3, "result": "FAILURE"}, {"number": 2, "result": "SUCCESS"}],
            "redactions": 1,
        })
    }

    #[test]
    fn selects_top_level_and_nested_keys() {
        let v = select(answer(), &sel(&["last_build.result", "last_build.number", "health"]));
        assert_eq!(
            v,
            json!({"last_build": {"result": "FAILURE", "number": 3}, "health": {"score": 40, "description": "d"}, "redactions": 1})
        );
    }

    #[test]
    fn a_dotted_name_applies_to_every_entry_of_a_list() {
        let v = select(answer(), &sel(&["builds.number"]));
        assert_eq!(v["builds"], json!([{"number": 3}, {"number": 2}]));
    }

    #[test]
    fn the_boundary_count_is_always_kept_and_unmatched_names_are_said() {
        let v = select(answer(), &sel(&["last_bild", "name"]));
        assert_eq!(v["name"], "team/app");
        assert_eq!(v["redactions"], 1, "{v}");
        assert_eq!(v["fields_unmatched"], json!(["last_bild"]));
        let available = v["fields_available"].as_array().expect("list");
        assert!(available.contains(&json!("last_build")) && !available.contains(&json!("redactions")), "{v}");
        // Nothing unmatched: no note.
        assert!(select(answer(), &sel(&["name"])).get("fields_unmatched").is_none());
    }

    #[test]
    fn a_whole_value_and_a_part_of_it_merge() {
        let v = select(answer(), &sel(&["last_build", "last_build.result"]));
        assert_eq!(v["last_build"], json!({"number": 3, "result": "FAILURE", "url": "u"}));
    }

    #[test]
    fn bad_selections_are_refused_with_the_fix() {
        for bad in [
            json!("name"),
            json!([]),
            json!([1]),
            json!(["a..b"]),
            json!(["a b"]),
            json!([".a"]),
            Value::from(vec!["x"; 33]),
        ] {
            let err = take(&mut json!({"fields": bad})).expect_err("refused").to_string();
            assert!(err.contains("fields") && err.contains("e.g."), "{err}");
        }
        let mut a = json!({"job": "x"});
        assert_eq!(take(&mut a).expect("ok"), None);
        let mut a = json!({"job": "x", "fields": ["name"]});
        assert!(take(&mut a).expect("ok").is_some());
        assert_eq!(a, json!({"job": "x"}), "taken out before the strict parse");
    }
}
