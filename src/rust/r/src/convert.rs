//! The one conversion boundary: R values <-> JSON values (serde), and core errors ->
//! the plain lists that R turns into classed conditions.

use extendr_api::prelude::*;
use serde_json::{Map, Number, Value};
use serverless_core::Error;
use std::ffi::CStr;

// SEXP is a pointer to R's opaque SEXPREC, as in extendr-ffi's own declarations.
#[allow(improper_ctypes)]
extern "C" {
    // R's API (Rinternals.h), not bound by extendr-ffi: a CHARSXP's declared encoding,
    // and its text in UTF-8.
    fn Rf_getCharCE(x: extendr_ffi::SEXP) -> extendr_ffi::cetype_t;
    fn Rf_translateCharUTF8(x: extendr_ffi::SEXP) -> *const std::os::raw::c_char;
}

/// The text of one CHARSXP, checked. R strings are bytes with an encoding mark;
/// extendr hands them to Rust unchecked, so a stray byte (`"\\xff"`) would be an
/// invalid `&str`. Here UTF-8 and native strings must be valid UTF-8, latin1 ones are
/// translated (always possible) and "bytes" ones are refused.
fn charsxp_text(charsxp: extendr_ffi::SEXP, what: &str) -> Result<String, Error> {
    let refuse = || {
        Error::input(format!(
            "{what} is not valid UTF-8 text: convert it with enc2utf8() or iconv(), or remove the stray bytes"
        ))
    };
    // SAFETY: `charsxp` is a live CHARSXP of an R object the caller holds; R is only
    // called from R's main thread (the bindings run there).
    unsafe {
        let ptr = match Rf_getCharCE(charsxp) {
            extendr_ffi::cetype_t::CE_LATIN1 => Rf_translateCharUTF8(charsxp),
            extendr_ffi::cetype_t::CE_BYTES => return Err(refuse()),
            _ => extendr_ffi::R_CHAR(charsxp),
        };
        let bytes = CStr::from_ptr(ptr).to_bytes();
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| refuse())
    }
}

/// One string argument from R (a character vector of length 1, not NA), checked.
pub fn text(x: &Robj, arg: &str) -> Result<String, Error> {
    if x.rtype() != Rtype::Strings || x.len() != 1 {
        return Err(Error::input(format!("`{arg}` must be a single string")));
    }
    // SAFETY: `x` is a STRSXP of length 1.
    let charsxp = unsafe { extendr_ffi::STRING_ELT(x.get(), 0) };
    if unsafe { charsxp == extendr_ffi::R_NaString } {
        return Err(Error::input(format!("`{arg}` must not be NA")));
    }
    charsxp_text(charsxp, &format!("`{arg}`"))
}

/// The strings of a character vector, checked (NA as `None`).
pub fn texts(x: &Robj, what: &str) -> Result<Vec<Option<String>>, Error> {
    let sexp = unsafe { x.get() };
    (0..x.len())
        .map(|i| {
            // SAFETY: `i` is within the STRSXP's length.
            let charsxp = unsafe { extendr_ffi::STRING_ELT(sexp, i as extendr_ffi::R_xlen_t) };
            if unsafe { charsxp == extendr_ffi::R_NaString } {
                Ok(None)
            } else {
                charsxp_text(charsxp, what).map(Some)
            }
        })
        .collect()
}

/// R -> JSON: named lists become objects, unnamed lists arrays, length-1 atomic
/// vectors scalars, longer ones arrays, NULL and NA null. Every string (names too) is
/// checked as UTF-8 text.
pub fn robj_to_json(x: &Robj) -> Result<Value, Error> {
    if x.is_null() {
        return Ok(Value::Null);
    }
    if let Some(list) = x.as_list() {
        let names = match x.get_attrib(names_symbol()) {
            Some(n) if n.rtype() == Rtype::Strings => Some(texts(&n, "a list name")?),
            _ => None,
        };
        return Ok(match names {
            // A named list is an object; so is an empty one that has a names attribute
            // (R's way of writing `{}`).
            Some(names)
                if names
                    .iter()
                    .any(|n| n.as_deref().is_some_and(|n| !n.is_empty()))
                    || list.is_empty() =>
            {
                let mut map = Map::new();
                for (name, value) in names.into_iter().zip(list.values()) {
                    map.insert(name.unwrap_or_default(), robj_to_json(&value)?);
                }
                Value::Object(map)
            }
            _ => Value::Array(
                list.values()
                    .map(|v| robj_to_json(&v))
                    .collect::<Result<_, _>>()?,
            ),
        });
    }
    let values: Vec<Value> = if x.rtype() == Rtype::Strings {
        texts(x, "a string")?
            .into_iter()
            .map(|v| v.map_or(Value::Null, Value::String))
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
        return Ok(Value::Null);
    };
    Ok(if values.len() == 1 {
        values.into_iter().next().unwrap_or(Value::Null)
    } else {
        Value::Array(values)
    })
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

/// An R value as a core type, through JSON: the request structs of every binding.
pub fn from_robj<T: serde::de::DeserializeOwned>(x: &Robj, what: &str) -> Result<T, Error> {
    serde_json::from_value(robj_to_json(x)?)
        .map_err(|e| Error::input(format!("invalid {what}: {e}")))
}
