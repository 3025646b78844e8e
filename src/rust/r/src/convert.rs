//! The one conversion boundary: R values <-> JSON values (serde), and core errors ->
//! the plain lists that R turns into classed conditions.

use extendr_api::prelude::*;
use serde_json::{Map, Number, Value};
use serverless_core::Error;

/// R -> JSON: named lists become objects, unnamed lists arrays, length-1 atomic
/// vectors scalars, longer ones arrays, NULL and NA null.
pub fn robj_to_json(x: &Robj) -> Value {
    if x.is_null() {
        return Value::Null;
    }
    if let Some(list) = x.as_list() {
        let names: Option<Vec<String>> = x.names().map(|n| n.map(|s| s.to_string()).collect());
        return match names {
            // A named list is an object; so is an empty one that has a names attribute
            // (R's way of writing `{}`).
            Some(names) if names.iter().any(|n| !n.is_empty()) || list.is_empty() => {
                let mut map = Map::new();
                for (name, value) in names.into_iter().zip(list.values()) {
                    map.insert(name, robj_to_json(&value));
                }
                Value::Object(map)
            }
            _ => Value::Array(list.values().map(|v| robj_to_json(&v)).collect()),
        };
    }
    let values: Vec<Value> = if let Some(s) = x.as_str_iter() {
        s.map(|v| {
            if v.is_na() {
                Value::Null
            } else {
                Value::String(v.to_string())
            }
        })
        .collect()
    } else if let Some(v) = x.as_logical_slice() {
        v.iter()
            .map(|b| {
                if b.is_na() {
                    Value::Null
                } else {
                    Value::Bool(b.is_true())
                }
            })
            .collect()
    } else if let Some(v) = x.as_integer_slice() {
        v.iter()
            .map(|i| {
                if i.is_na() {
                    Value::Null
                } else {
                    Value::from(*i)
                }
            })
            .collect()
    } else if let Some(v) = x.as_real_slice() {
        v.iter()
            .map(|d| {
                if d.is_na() {
                    Value::Null
                } else {
                    Number::from_f64(*d)
                        .map(Value::Number)
                        .unwrap_or(Value::Null)
                }
            })
            .collect()
    } else {
        return Value::Null;
    };
    if values.len() == 1 {
        values.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(values)
    }
}

/// JSON -> R: objects become named lists, arrays of one scalar type atomic vectors,
/// other arrays lists, null NULL.
pub fn json_to_robj(x: &Value) -> Robj {
    match x {
        Value::Null => Robj::from(()),
        Value::Bool(b) => Robj::from(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) if i32::try_from(i).is_ok() && i != i32::MIN as i64 => Robj::from(i as i32),
            _ => Robj::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Robj::from(s.as_str()),
        Value::Array(items) => array_to_robj(items),
        Value::Object(map) => {
            let names: Vec<&str> = map.keys().map(String::as_str).collect();
            let values: Vec<Robj> = map.values().map(json_to_robj).collect();
            List::from_names_and_values(names, values)
                .map(Robj::from)
                .unwrap_or_else(|_| Robj::from(()))
        }
    }
}

fn array_to_robj(items: &[Value]) -> Robj {
    if !items.is_empty() && items.iter().all(Value::is_string) {
        let v: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
        return Robj::from(v);
    }
    if !items.is_empty() && items.iter().all(Value::is_boolean) {
        let v: Vec<bool> = items.iter().filter_map(Value::as_bool).collect();
        return Robj::from(v);
    }
    if !items.is_empty() && items.iter().all(Value::is_number) {
        let v: Vec<f64> = items.iter().filter_map(Value::as_f64).collect();
        return Robj::from(v);
    }
    let v: Vec<Robj> = items.iter().map(json_to_robj).collect();
    Robj::from(List::from_values(v))
}

/// A result for R: `list(ok = TRUE, value = ...)` or `list(ok = FALSE, error = ...)`.
/// Errors are returned, never raised from Rust, so nothing unwinds through Rust frames
/// and the R side raises one classed condition (`serverless_error_<kind>`).
pub fn result_to_robj(result: std::result::Result<Value, Error>) -> Robj {
    match result {
        Ok(value) => list!(ok = true, value = json_to_robj(&value)).into(),
        Err(err) => error_to_robj(&err),
    }
}

/// Like `result_to_robj`, for a value that is already an R object (e.g. a table).
pub fn robj_result(result: std::result::Result<Robj, Error>) -> Robj {
    match result {
        Ok(value) => list!(ok = true, value = value).into(),
        Err(err) => error_to_robj(&err),
    }
}

pub fn error_to_robj(err: &Error) -> Robj {
    let value = serde_json::to_value(err).unwrap_or(Value::Null);
    list!(ok = false, error = json_to_robj(&value)).into()
}
