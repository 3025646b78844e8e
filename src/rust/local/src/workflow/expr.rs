//! The Workflow Definition Language (Logic Apps expressions) over `serde_json::Value`.
//!
//! A definition string is one of:
//! - `"@expr"`: an expression whose result (any JSON type) replaces the string;
//! - `"... @{expr} ..."`: interpolation, each segment's result turned into text;
//! - anything else: a literal, where a leading `@@` stands for one `@` (and `@@{`
//!   anywhere for a literal `@{`).
//!
//! Only the functions in [`FUNCTIONS`] exist here; any other name fails at parse time
//! (so [`check`] rejects it when the workflow is saved, as Azure does for unknown
//! functions). Parsing and evaluation never panic, whatever the input.

use serde_json::{Map, Number, Value};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Nesting limit of expressions (calls, brackets): deeper input is refused rather
/// than risking the stack.
const MAX_DEPTH: usize = 64;

/// Largest array `range()` builds (Azure's own limit is 100,000 items).
const MAX_RANGE: i64 = 100_000;

/// Every supported function: name as Azure spells it, least and most arguments.
pub const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("parameters", 1, 1),
    ("body", 1, 1),
    ("outputs", 1, 1),
    ("actions", 1, 1),
    ("triggerBody", 0, 0),
    ("triggerOutputs", 0, 0),
    ("trigger", 0, 0),
    ("items", 1, 1),
    ("variables", 1, 1),
    ("workflow", 0, 0),
    ("utcNow", 0, 1),
    ("concat", 1, usize::MAX),
    ("equals", 2, 2),
    ("and", 1, usize::MAX),
    ("or", 1, usize::MAX),
    ("not", 1, 1),
    ("greater", 2, 2),
    ("less", 2, 2),
    ("add", 2, 2),
    ("sub", 2, 2),
    ("mul", 2, 2),
    ("min", 1, usize::MAX),
    ("max", 1, usize::MAX),
    ("iterationIndexes", 1, 1),
    ("if", 3, 3),
    ("empty", 1, 1),
    ("length", 1, 1),
    ("coalesce", 1, usize::MAX),
    ("guid", 0, 1),
    ("formatDateTime", 1, 2),
    ("encodeURIComponent", 1, 1),
    ("string", 1, 1),
    ("int", 1, 1),
    ("json", 1, 1),
    ("toLower", 1, 1),
    ("substring", 2, 3),
    ("replace", 3, 3),
    ("split", 2, 2),
    ("first", 1, 1),
    ("last", 1, 1),
    ("contains", 2, 2),
    ("createArray", 1, usize::MAX),
    ("range", 2, 2),
    ("result", 1, 1),
];

/// What expressions read while a run executes.
pub trait Context {
    /// A workflow parameter's value (`properties.parameters[name].value`, else the
    /// definition's `defaultValue`).
    fn parameter(&self, name: &str) -> Option<Value>;
    /// An action's record as `actions(name)` returns it: `name`, `inputs`,
    /// `outputs` (`statusCode`, `headers`, `body`), `status`, `startTime`, `endTime`,
    /// `error`; `None` when the action is unknown or has not run.
    fn action(&self, name: &str) -> Option<Value>;
    /// `body(name)`: the action's `outputs.body` unless the action says otherwise.
    fn body(&self, name: &str) -> Option<Value> {
        self.action(name).map(|a| a["outputs"]["body"].clone())
    }
    /// The trigger's record (`name`, `inputs`, `outputs`, `startTime`, ...).
    fn trigger(&self) -> Option<Value>;
    /// The current item of the enclosing `Foreach` called `loop_name`.
    fn item(&self, loop_name: &str) -> Option<Value>;
    /// `iterationIndexes(loop_name)`: the 0-based index of the current iteration of
    /// the enclosing `Until` called `loop_name`.
    fn iteration(&self, loop_name: &str) -> Option<usize>;
    fn variable(&self, name: &str) -> Option<Value>;
    /// `workflow()`: `id`, `name`, `type`, `location`, `run`.
    fn workflow(&self) -> Value;
    /// `result(scope)`: the records of the top-level actions inside a scope.
    fn scope_result(&self, name: &str) -> Option<Value>;
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Lit(Value),
    /// A call, with the function's canonical name.
    Call(&'static str, Vec<Expr>),
    /// `x[key]`, `x.key`; `safe` for `x?[key]` / `x?.key`.
    Index {
        target: Box<Expr>,
        key: Box<Expr>,
        safe: bool,
    },
}

/// A parsed definition string.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// Not an expression: the string as it reads (escapes removed).
    Literal(String),
    /// `@expr`: the value of the expression.
    Expr(Expr),
    /// `text @{expr} text`: a string.
    Interp(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    Text(String),
    Expr(Expr),
}

/// True when the string is evaluated (not a plain literal).
pub fn is_expression(s: &str) -> bool {
    (s.starts_with('@') && !s.starts_with("@@")) || s.contains("@{")
}

/// Parse-only validation (used when a workflow is saved): the string, if it is an
/// expression, must parse and only call supported functions with valid arity.
pub fn check(s: &str) -> Result<(), String> {
    parse_template(s).map(|_| ())
}

/// Parses a definition string.
pub fn parse_template(s: &str) -> Result<Template, String> {
    if let Some(rest) = s.strip_prefix("@@") {
        return Ok(Template::Literal(format!("@{}", unescape_text(rest))));
    }
    if s.starts_with('@') && !s.starts_with("@{") {
        let mut p = Parser::new(s, 1);
        let e = p.expr()?;
        p.skip_ws();
        if p.pos < p.chars.len() {
            return Err(p.unexpected());
        }
        return Ok(Template::Expr(e));
    }
    if !s.contains("@{") {
        return Ok(Template::Literal(s.to_string()));
    }
    let chars: Vec<char> = s.chars().collect();
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' && chars.get(i + 1) == Some(&'@') && chars.get(i + 2) == Some(&'{') {
            text.push_str("@{");
            i += 3;
        } else if chars[i] == '@' && chars.get(i + 1) == Some(&'{') {
            if !text.is_empty() {
                segments.push(Segment::Text(std::mem::take(&mut text)));
            }
            let mut p = Parser::from_chars(s, chars.clone(), i + 2);
            let e = p.expr()?;
            p.skip_ws();
            if p.peek() != Some('}') {
                return Err(p.unexpected());
            }
            segments.push(Segment::Expr(e));
            i = p.pos + 1;
        } else {
            text.push(chars[i]);
            i += 1;
        }
    }
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    Ok(Template::Interp(segments))
}

fn unescape_text(s: &str) -> String {
    s.replace("@@{", "@{")
}

/// Evaluates one definition string: the expression's value, the interpolated
/// string, or the literal.
pub fn evaluate(s: &str, ctx: &dyn Context) -> Result<Value, String> {
    match parse_template(s)? {
        Template::Literal(t) => Ok(Value::String(t)),
        Template::Expr(e) => eval(&e, ctx, s),
        Template::Interp(segments) => {
            let mut out = String::new();
            for seg in segments {
                match seg {
                    Segment::Text(t) => out.push_str(&t),
                    Segment::Expr(e) => out.push_str(&to_text(&eval(&e, ctx, s)?)),
                }
            }
            Ok(Value::String(out))
        }
    }
}

/// Evaluates every string inside a JSON value (objects' values and arrays' items).
pub fn evaluate_value(v: &Value, ctx: &dyn Context) -> Result<Value, String> {
    evaluate_value_at(v, ctx, 0)
}

fn evaluate_value_at(v: &Value, ctx: &dyn Context, depth: usize) -> Result<Value, String> {
    if depth > 256 {
        return Err("The value is nested too deeply to evaluate.".into());
    }
    Ok(match v {
        Value::String(s) => evaluate(s, ctx)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|x| evaluate_value_at(x, ctx, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, x) in map {
                out.insert(k.clone(), evaluate_value_at(x, ctx, depth + 1)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// Every string in a JSON value that fails [`check`], with its JSON path.
pub fn check_value(v: &Value, path: &str) -> Result<(), (String, String)> {
    match v {
        Value::String(s) => check(s).map_err(|e| (path.to_string(), e)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| check_value(x, &format!("{path}[{i}]"))),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, x)| check_value(x, &format!("{path}.{k}"))),
        _ => Ok(()),
    }
}

/// The calls of one function (by canonical name) with a literal string first
/// argument, anywhere in a definition string: used to check references (`body('x')`).
pub fn literal_references(s: &str, function: &str) -> Vec<String> {
    fn walk(e: &Expr, function: &str, out: &mut Vec<String>) {
        match e {
            Expr::Lit(_) => {}
            Expr::Call(name, args) => {
                if *name == function {
                    if let Some(Expr::Lit(Value::String(a))) = args.first() {
                        out.push(a.clone());
                    }
                }
                for a in args {
                    walk(a, function, out);
                }
            }
            Expr::Index { target, key, .. } => {
                walk(target, function, out);
                walk(key, function, out);
            }
        }
    }
    let mut out = Vec::new();
    match parse_template(s) {
        Ok(Template::Expr(e)) => walk(&e, function, &mut out),
        Ok(Template::Interp(segs)) => {
            for seg in segs {
                if let Segment::Expr(e) = seg {
                    walk(&e, function, &mut out);
                }
            }
        }
        _ => {}
    }
    out
}

// ---------------------------------------------------------------------------
// Parsing

struct Parser<'a> {
    src: &'a str,
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, pos: usize) -> Parser<'a> {
        Parser::from_chars(src, src.chars().collect(), pos)
    }

    fn from_chars(src: &'a str, chars: Vec<char>, pos: usize) -> Parser<'a> {
        Parser {
            src,
            chars,
            pos,
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn invalid(&self, why: &str) -> String {
        format!(
            "The template language expression '{}' is not valid: {why}",
            self.src.trim_start_matches('@')
        )
    }

    fn unexpected(&self) -> String {
        match self.peek() {
            Some(c) => self.invalid(&format!(
                "the string character '{c}' at position '{}' is not expected.",
                self.pos
            )),
            None => {
                self.invalid("the expression is not complete or is missing a closing character.")
            }
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.invalid("the expression is nested too deeply."));
        }
        self.skip_ws();
        let mut e = self.primary()?;
        // Each `[k]` / `.k` link wraps the expression once more (and evaluating or
        // dropping it recurses once more), so links count towards the nesting limit.
        let mut links = 0;
        loop {
            let save = self.pos;
            self.skip_ws();
            if matches!(self.peek(), Some('[' | '.' | '?')) {
                links += 1;
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(self.invalid("the expression is nested too deeply."));
                }
            }
            match self.peek() {
                Some('[') => {
                    self.pos += 1;
                    let key = self.expr()?;
                    self.expect(']')?;
                    e = Expr::Index {
                        target: Box::new(e),
                        key: Box::new(key),
                        safe: false,
                    };
                }
                Some('.') => {
                    self.pos += 1;
                    let name = self.property_name()?;
                    e = Expr::Index {
                        target: Box::new(e),
                        key: Box::new(Expr::Lit(Value::String(name))),
                        safe: false,
                    };
                }
                Some('?') => {
                    self.pos += 1;
                    match self.peek() {
                        Some('[') => {
                            self.pos += 1;
                            let key = self.expr()?;
                            self.expect(']')?;
                            e = Expr::Index {
                                target: Box::new(e),
                                key: Box::new(key),
                                safe: true,
                            };
                        }
                        Some('.') => {
                            self.pos += 1;
                            let name = self.property_name()?;
                            e = Expr::Index {
                                target: Box::new(e),
                                key: Box::new(Expr::Lit(Value::String(name))),
                                safe: true,
                            };
                        }
                        _ => return Err(self.unexpected()),
                    }
                }
                _ => {
                    self.pos = save;
                    break;
                }
            }
        }
        self.depth -= 1 + links;
        Ok(e)
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn property_name(&mut self) -> Result<String, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.unexpected());
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn primary(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some('\'') => self.string_literal(),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => self.number(),
            Some(c) if c.is_alphabetic() || c == '_' => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                let after_name = self.pos;
                self.skip_ws();
                if self.peek() == Some('(') {
                    self.pos += 1;
                    return self.call(&name);
                }
                self.pos = after_name;
                match name.as_str() {
                    "true" => Ok(Expr::Lit(Value::Bool(true))),
                    "false" => Ok(Expr::Lit(Value::Bool(false))),
                    "null" => Ok(Expr::Lit(Value::Null)),
                    _ => {
                        self.pos = start;
                        Err(self.unexpected())
                    }
                }
            }
            _ => Err(self.unexpected()),
        }
    }

    fn call(&mut self, name: &str) -> Result<Expr, String> {
        let Some(&(canonical, min, max)) = FUNCTIONS
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
        else {
            return Err(format!(
                "The template function '{name}' is not defined or not valid."
            ));
        };
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                args.push(self.expr()?);
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.unexpected()),
                }
            }
        }
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                format!("{min}")
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(format!(
                "The template language function '{canonical}' expects {expected} parameter(s). The function was invoked with '{}' parameter(s). Please see https://aka.ms/logicexpressions#{} for usage details.",
                args.len(),
                canonical.to_ascii_lowercase()
            ));
        }
        Ok(Expr::Call(canonical, args))
    }

    fn string_literal(&mut self) -> Result<Expr, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.invalid("the string literal is not properly terminated.")),
                Some('\'') if self.chars.get(self.pos + 1) == Some(&'\'') => {
                    out.push('\'');
                    self.pos += 2;
                }
                Some('\'') => {
                    self.pos += 1;
                    return Ok(Expr::Lit(Value::String(out)));
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn number(&mut self) -> Result<Expr, String> {
        let start = self.pos;
        if matches!(self.peek(), Some('-' | '+')) {
            self.pos += 1;
        }
        let digits = |p: &mut Parser| {
            let s = p.pos;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.pos += 1;
            }
            p.pos - s
        };
        if digits(self) == 0 {
            return Err(self.unexpected());
        }
        let mut float = false;
        if self.peek() == Some('.')
            && self
                .chars
                .get(self.pos + 1)
                .is_some_and(char::is_ascii_digit)
        {
            self.pos += 1;
            digits(self);
            float = true;
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some('-' | '+')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                self.pos = save;
            } else {
                float = true;
            }
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        let text = text.trim_start_matches('+');
        if !float {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(Expr::Lit(Value::from(i)));
            }
        }
        match text.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Ok(Expr::Lit(Value::Number(n))),
            None => Err(self.invalid(&format!("the number '{text}' is out of range."))),
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluation

/// Text of a value as interpolation and `string()` produce it (booleans as .NET
/// writes them, objects and arrays as JSON).
pub fn to_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// Azure's name of a JSON type, as its errors print it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(n) if n.is_f64() => "Float",
        Value::Number(_) => "Integer",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    }
}

fn cannot_evaluate(src: &str, why: &str) -> String {
    format!(
        "The template language expression '{}' cannot be evaluated because {why} Please see https://aka.ms/logicexpressions for usage details.",
        src.trim_start_matches('@')
    )
}

fn bad_argument(src: &str, function: &str, why: &str) -> String {
    format!(
        "The template language function '{function}' {why} The expression was '{}'. Please see https://aka.ms/logicexpressions#{} for usage details.",
        src.trim_start_matches('@'),
        function.to_ascii_lowercase()
    )
}

/// Property lookup: exact name first, then ignoring case (Logic Apps objects are
/// case-insensitive).
fn get_property<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn eval(e: &Expr, ctx: &dyn Context, src: &str) -> Result<Value, String> {
    match e {
        Expr::Lit(v) => Ok(v.clone()),
        Expr::Index { target, key, safe } => {
            let t = eval(target, ctx, src)?;
            let k = eval(key, ctx, src)?;
            index(&t, &k, *safe, src)
        }
        Expr::Call(name, args) => {
            let values = args
                .iter()
                .map(|a| eval(a, ctx, src))
                .collect::<Result<Vec<_>, _>>()?;
            call(name, &values, ctx, src)
        }
    }
}

fn index(t: &Value, k: &Value, safe: bool, src: &str) -> Result<Value, String> {
    match t {
        Value::Null if safe => Ok(Value::Null),
        Value::Object(map) => {
            let key = to_text(k);
            match get_property(map, &key) {
                Some(v) => Ok(v.clone()),
                None if safe => Ok(Value::Null),
                None => {
                    let available: Vec<&str> = map.keys().map(String::as_str).collect();
                    Err(cannot_evaluate(
                        src,
                        &format!(
                            "property '{key}' doesn't exist, available properties are '{}'.",
                            available.join(", ")
                        ),
                    ))
                }
            }
        }
        Value::Array(items) => {
            let Some(i) = k.as_i64() else {
                return Err(cannot_evaluate(
                    src,
                    &format!(
                        "the array index '{}' is not an integer.",
                        to_text(k)
                    ),
                ));
            };
            match usize::try_from(i).ok().and_then(|i| items.get(i)) {
                Some(v) => Ok(v.clone()),
                None if safe => Ok(Value::Null),
                None => Err(cannot_evaluate(
                    src,
                    &format!(
                        "array index '{i}' is outside bounds (0, {}) of array.",
                        items.len() as i64 - 1
                    ),
                )),
            }
        }
        other => Err(cannot_evaluate(
            src,
            &format!(
                "property '{}' cannot be selected. Property selection is not supported on values of type '{}'.",
                to_text(k),
                type_name(other)
            ),
        )),
    }
}

fn want_str<'v>(v: &'v Value, function: &str, src: &str) -> Result<&'v str, String> {
    v.as_str().ok_or_else(|| {
        bad_argument(
            src,
            function,
            &format!(
                "expects its parameter to be a string. The provided value is of type '{}'.",
                type_name(v)
            ),
        )
    })
}

fn want_int(v: &Value, function: &str, src: &str) -> Result<i64, String> {
    v.as_i64().ok_or_else(|| {
        bad_argument(
            src,
            function,
            &format!(
                "expects its parameter to be an integer. The provided value is of type '{}'.",
                type_name(v)
            ),
        )
    })
}

fn want_bool(v: &Value, function: &str, src: &str) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| {
        bad_argument(
            src,
            function,
            &format!(
                "expects its parameters to be of type boolean. The provided value is of type '{}'.",
                type_name(v)
            ),
        )
    })
}

/// Deep equality where 1 equals 1.0.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| values_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_equal(v, w)))
        }
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value, function: &str, src: &str) -> Result<std::cmp::Ordering, String> {
    let ord = match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x
                .as_f64()
                .zip(y.as_f64())
                .and_then(|(x, y)| x.partial_cmp(&y)),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    };
    ord.ok_or_else(|| {
        bad_argument(
            src,
            function,
            &format!(
                "expects two parameters of matching types (integer, float or string). The provided values are of types '{}' and '{}'.",
                type_name(a),
                type_name(b)
            ),
        )
    })
}

#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
}

fn arith(a: &Value, b: &Value, op: Arith, function: &str, src: &str) -> Result<Value, String> {
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return Err(bad_argument(
            src,
            function,
            &format!(
                "expects numeric parameters. The provided values are of types '{}' and '{}'.",
                type_name(a),
                type_name(b)
            ),
        ));
    };
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        let r = match op {
            Arith::Add => x.checked_add(y),
            Arith::Sub => x.checked_sub(y),
            Arith::Mul => x.checked_mul(y),
        };
        return r
            .map(Value::from)
            .ok_or_else(|| bad_argument(src, function, "overflowed the integer range."));
    }
    let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
    let r = match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
    };
    Number::from_f64(r).map(Value::Number).ok_or_else(|| {
        bad_argument(
            src,
            function,
            "produced a value that is not a finite number.",
        )
    })
}

/// `min`/`max`: of one array's numbers, or of several numbers (the reference's two
/// forms).
fn extreme(a: &[Value], largest: bool, function: &str, src: &str) -> Result<Value, String> {
    let values: &[Value] = match a {
        [Value::Array(items)] => items,
        _ => a,
    };
    let mut best: Option<&Value> = None;
    for v in values {
        if !v.is_number() {
            return Err(bad_argument(
                src,
                function,
                &format!(
                    "expects numbers or an array of numbers. The provided value is of type '{}'.",
                    type_name(v)
                ),
            ));
        }
        let wanted = if largest {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Less
        };
        if best.map_or(Ok(true), |b| {
            compare(v, b, function, src).map(|o| o == wanted)
        })? {
            best = Some(v);
        }
    }
    best.cloned().ok_or_else(|| {
        bad_argument(
            src,
            function,
            "expects at least one number; the array is empty.",
        )
    })
}

fn call(name: &str, a: &[Value], ctx: &dyn Context, src: &str) -> Result<Value, String> {
    let arg = |i: usize| a.get(i).unwrap_or(&Value::Null);
    match name {
        "parameters" => {
            let n = want_str(arg(0), name, src)?;
            ctx.parameter(n).ok_or_else(|| {
                cannot_evaluate(src, &format!("the workflow parameter '{n}' is not found."))
            })
        }
        "actions" | "body" | "outputs" => {
            let n = want_str(arg(0), name, src)?;
            let Some(action) = ctx.action(n) else {
                return Err(cannot_evaluate(
                    src,
                    &format!("the action '{n}' is not defined in the template or has not run yet."),
                ));
            };
            Ok(match name {
                "actions" => action,
                "outputs" => action["outputs"].clone(),
                _ => ctx.body(n).unwrap_or(Value::Null),
            })
        }
        "trigger" | "triggerOutputs" | "triggerBody" => {
            let t = ctx.trigger().unwrap_or(Value::Null);
            Ok(match name {
                "trigger" => t,
                "triggerOutputs" => t["outputs"].clone(),
                _ => t["outputs"]["body"].clone(),
            })
        }
        "items" => {
            let n = want_str(arg(0), name, src)?;
            ctx.item(n).ok_or_else(|| {
                bad_argument(
                    src,
                    name,
                    &format!("must have a single parameter that refers to a 'foreach' action that contains the current action; '{n}' is not one."),
                )
            })
        }
        "iterationIndexes" => {
            let n = want_str(arg(0), name, src)?;
            ctx.iteration(n).map(Value::from).ok_or_else(|| {
                bad_argument(
                    src,
                    name,
                    &format!("must have a single parameter that refers to an 'until' action that contains the current action; '{n}' is not one."),
                )
            })
        }
        "variables" => {
            let n = want_str(arg(0), name, src)?;
            ctx.variable(n).ok_or_else(|| {
                cannot_evaluate(src, &format!("the variable '{n}' is not initialized."))
            })
        }
        "workflow" => Ok(ctx.workflow()),
        "result" => {
            let n = want_str(arg(0), name, src)?;
            ctx.scope_result(n).ok_or_else(|| {
                cannot_evaluate(
                    src,
                    &format!("the action '{n}' is not a scope (Scope, Foreach, Until or If) that has run."),
                )
            })
        }
        "utcNow" => {
            let format = match a.first() {
                Some(f) => want_str(f, name, src)?,
                None => "o",
            };
            format_datetime(ctx.now(), format).map_err(|e| bad_argument(src, name, &e)).map(Value::String)
        }
        "formatDateTime" => {
            let ts = want_str(arg(0), name, src)?;
            let t = parse_timestamp(ts).ok_or_else(|| {
                bad_argument(
                    src,
                    name,
                    &format!("expects its first parameter to be a timestamp in ISO 8601 format; '{ts}' is not one."),
                )
            })?;
            let format = match a.get(1) {
                Some(f) => want_str(f, name, src)?,
                None => "o",
            };
            format_datetime(t, format).map_err(|e| bad_argument(src, name, &e)).map(Value::String)
        }
        "concat" => {
            if a.iter().all(Value::is_array) {
                let mut out = Vec::new();
                for x in a {
                    if let Value::Array(items) = x {
                        out.extend(items.iter().cloned());
                    }
                }
                return Ok(Value::Array(out));
            }
            if a.iter().any(Value::is_array) {
                return Err(bad_argument(
                    src,
                    name,
                    "expects either only strings or only arrays as its parameters.",
                ));
            }
            Ok(Value::String(a.iter().map(to_text).collect()))
        }
        "equals" => Ok(Value::Bool(values_equal(arg(0), arg(1)))),
        "and" => {
            let mut r = true;
            for x in a {
                r &= want_bool(x, name, src)?;
            }
            Ok(Value::Bool(r))
        }
        "or" => {
            let mut r = false;
            for x in a {
                r |= want_bool(x, name, src)?;
            }
            Ok(Value::Bool(r))
        }
        "not" => Ok(Value::Bool(!want_bool(arg(0), name, src)?)),
        "greater" => Ok(Value::Bool(compare(arg(0), arg(1), name, src)?.is_gt())),
        "less" => Ok(Value::Bool(compare(arg(0), arg(1), name, src)?.is_lt())),
        "add" => arith(arg(0), arg(1), Arith::Add, name, src),
        "sub" => arith(arg(0), arg(1), Arith::Sub, name, src),
        "mul" => arith(arg(0), arg(1), Arith::Mul, name, src),
        "min" => extreme(a, false, name, src),
        "max" => extreme(a, true, name, src),
        "if" => {
            // Azure evaluates every argument of `if` before choosing (no short circuit):
            // so do we, so a branch that fails here fails there too.
            Ok(if want_bool(arg(0), name, src)? {
                arg(1).clone()
            } else {
                arg(2).clone()
            })
        }
        "empty" => match arg(0) {
            Value::Null => Ok(Value::Bool(true)),
            Value::String(s) => Ok(Value::Bool(s.is_empty())),
            Value::Array(x) => Ok(Value::Bool(x.is_empty())),
            Value::Object(m) => Ok(Value::Bool(m.is_empty())),
            other => Err(bad_argument(
                src,
                name,
                &format!(
                    "expects a string, an array or an object. The provided value is of type '{}'.",
                    type_name(other)
                ),
            )),
        },
        "length" => match arg(0) {
            Value::String(s) => Ok(Value::from(s.encode_utf16().count() as u64)),
            Value::Array(x) => Ok(Value::from(x.len() as u64)),
            other => Err(bad_argument(
                src,
                name,
                &format!(
                    "expects its parameter to be an array or a string. The provided value is of type '{}'.",
                    type_name(other)
                ),
            )),
        },
        "coalesce" => Ok(a.iter().find(|x| !x.is_null()).cloned().unwrap_or(Value::Null)),
        "guid" => {
            let g = crate::util::new_uuid();
            let format = match a.first() {
                Some(f) => want_str(f, name, src)?,
                None => "D",
            };
            match format {
                "D" | "d" => Ok(Value::String(g)),
                "N" | "n" => Ok(Value::String(g.replace('-', ""))),
                "B" | "b" => Ok(Value::String(format!("{{{g}}}"))),
                "P" | "p" => Ok(Value::String(format!("({g})"))),
                other => Err(bad_argument(
                    src,
                    name,
                    &format!("was given the format '{other}'; the format must be one of 'N', 'D', 'B' or 'P'."),
                )),
            }
        }
        "encodeURIComponent" => Ok(Value::String(encode_uri_component(&to_text(arg(0))))),
        "string" => Ok(Value::String(to_text(arg(0)))),
        "int" => match arg(0) {
            Value::Number(n) if n.as_i64().is_some() => Ok(Value::Number(n.clone())),
            Value::String(s) => s.trim().parse::<i64>().map(Value::from).map_err(|_| {
                bad_argument(
                    src,
                    name,
                    &format!("was invoked with a parameter that is not valid. The value '{s}' cannot be converted to the target type 'Integer'."),
                )
            }),
            other => Err(bad_argument(
                src,
                name,
                &format!(
                    "was invoked with a parameter that is not valid. The value of type '{}' cannot be converted to the target type 'Integer'.",
                    type_name(other)
                ),
            )),
        },
        "json" => {
            let s = want_str(arg(0), name, src)?;
            serde_json::from_str::<Value>(s).map_err(|e| {
                bad_argument(
                    src,
                    name,
                    &format!("parameter is not valid. The provided value '{s}' cannot be parsed: {e}."),
                )
            })
        }
        "toLower" => match arg(0) {
            Value::Null => Ok(Value::String(String::new())),
            v => Ok(Value::String(want_str(v, name, src)?.to_lowercase())),
        },
        "substring" => {
            let s = want_str(arg(0), name, src)?;
            let units: Vec<u16> = s.encode_utf16().collect();
            let start = want_int(arg(1), name, src)?;
            let len = match a.get(2) {
                Some(l) => want_int(l, name, src)?,
                None => (units.len() as i64).saturating_sub(start),
            };
            let out_of_range = || {
                bad_argument(
                    src,
                    name,
                    "parameters are out of range: 'start index' and 'length' must be non-negative integers and their sum must be no larger than the length of the string.",
                )
            };
            if start < 0 || len < 0 || start.checked_add(len).is_none_or(|e| e > units.len() as i64) {
                return Err(out_of_range());
            }
            let (start, len) = (start as usize, len as usize);
            Ok(Value::String(String::from_utf16_lossy(&units[start..start + len])))
        }
        "replace" => {
            let s = want_str(arg(0), name, src)?;
            let old = want_str(arg(1), name, src)?;
            let new = want_str(arg(2), name, src)?;
            if old.is_empty() {
                return Err(bad_argument(src, name, "expects a non-empty string to replace."));
            }
            Ok(Value::String(s.replace(old, new)))
        }
        "split" => {
            let s = want_str(arg(0), name, src)?;
            let sep = want_str(arg(1), name, src)?;
            if sep.is_empty() {
                return Ok(Value::Array(vec![Value::String(s.to_string())]));
            }
            Ok(Value::Array(
                s.split(sep).map(|p| Value::String(p.to_string())).collect(),
            ))
        }
        "first" | "last" => match arg(0) {
            Value::Array(x) => Ok(if name == "first" { x.first() } else { x.last() }
                .cloned()
                .unwrap_or(Value::Null)),
            Value::String(s) => {
                let c = if name == "first" {
                    s.chars().next()
                } else {
                    s.chars().next_back()
                };
                Ok(c.map(|c| Value::String(c.to_string())).unwrap_or(Value::Null))
            }
            Value::Null => Ok(Value::Null),
            other => Err(bad_argument(
                src,
                name,
                &format!(
                    "expects its parameter to be an array or a string. The provided value is of type '{}'.",
                    type_name(other)
                ),
            )),
        },
        "contains" => match (arg(0), arg(1)) {
            (Value::String(s), x) => Ok(Value::Bool(s.contains(&to_text(x)))),
            (Value::Array(items), x) => Ok(Value::Bool(items.iter().any(|i| values_equal(i, x)))),
            (Value::Object(map), x) => Ok(Value::Bool(get_property(map, &to_text(x)).is_some())),
            (other, _) => Err(bad_argument(
                src,
                name,
                &format!(
                    "expects its first parameter to be a dictionary (object), an array or a string. The provided value is of type '{}'.",
                    type_name(other)
                ),
            )),
        },
        "createArray" => Ok(Value::Array(a.to_vec())),
        "range" => {
            let start = want_int(arg(0), name, src)?;
            let count = want_int(arg(1), name, src)?;
            if !(0..=MAX_RANGE).contains(&count) || start.checked_add(count).is_none() {
                return Err(bad_argument(
                    src,
                    name,
                    &format!("expects a count between 0 and {MAX_RANGE} whose range stays within the integer range."),
                ));
            }
            Ok(Value::Array((start..start + count).map(Value::from).collect()))
        }
        other => Err(format!("The template function '{other}' is not defined or not valid.")),
    }
}

/// `encodeURIComponent`: everything but RFC 3986 unreserved characters is
/// percent-encoded (UTF-8), as .NET's `Uri.EscapeDataString` does.
pub fn encode_uri_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Timestamps

/// Parses an ISO 8601 timestamp: `YYYY-MM-DD[(T| )hh:mm[:ss[.f+]]][Z|±hh:mm]`. No
/// offset means UTC.
pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    let (dt, offset) = parse_local_timestamp(s)?;
    Some(dt.assume_offset(offset.unwrap_or(UtcOffset::UTC)))
}

/// Parses a timestamp, keeping apart its offset (None when it has none), as
/// recurrence `startTime`s need.
pub fn parse_local_timestamp(s: &str) -> Option<(PrimitiveDateTime, Option<UtcOffset>)> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = s.get(from..from + len)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = num(0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = Month::try_from(u8::try_from(num(5, 2)?).ok()?).ok()?;
    let day = u8::try_from(num(8, 2)?).ok()?;
    let date = Date::from_calendar_date(i32::try_from(year).ok()?, month, day).ok()?;
    let mut i = 10;
    let mut time = Time::MIDNIGHT;
    if matches!(b.get(i), Some(b'T' | b't' | b' ')) {
        let hour = u8::try_from(num(i + 1, 2)?).ok()?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        let minute = u8::try_from(num(i + 4, 2)?).ok()?;
        i += 6;
        let mut second = 0u8;
        let mut nanos = 0u32;
        if b.get(i) == Some(&b':') {
            second = u8::try_from(num(i + 1, 2)?).ok()?;
            i += 3;
            if b.get(i) == Some(&b'.') {
                i += 1;
                let start = i;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                if i == start {
                    return None;
                }
                let digits = s.get(start..i)?;
                let padded: String = digits
                    .chars()
                    .chain(std::iter::repeat('0'))
                    .take(9)
                    .collect();
                nanos = padded.parse().ok()?;
            }
        }
        time = Time::from_hms_nano(hour, minute, second, nanos).ok()?;
    }
    let offset = match s.get(i..)? {
        "" => None,
        "Z" | "z" => Some(UtcOffset::UTC),
        rest => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1i8,
                b'-' => -1i8,
                _ => return None,
            };
            let (h, m) = rest.get(1..)?.split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let h: i8 = h.parse().ok()?;
            let m: i8 = m.parse().ok()?;
            Some(UtcOffset::from_hms(sign * h, sign * m, 0).ok()?)
        }
    };
    Some((PrimitiveDateTime::new(date, time), offset))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats a time with a .NET format string (invariant culture): the standard
/// formats `o`/`O`, `s`, `u`, `r`/`R`, or a custom format (`yyyy`, `MM`, `dd`, `HH`,
/// `hh`, `mm`, `ss`, `f`.., `F`.., `tt`, `MMM(M)`, `ddd(d)`, `K`, `zzz`, quoted
/// literals, `\c`).
pub fn format_datetime(t: OffsetDateTime, format: &str) -> Result<String, String> {
    let t = t.to_offset(UtcOffset::UTC);
    match format {
        "" | "o" | "O" => return format_datetime(t, "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK"),
        "s" => return format_datetime(t, "yyyy'-'MM'-'dd'T'HH':'mm':'ss"),
        "u" => return format_datetime(t, "yyyy'-'MM'-'dd HH':'mm':'ss'Z'"),
        "r" | "R" => return format_datetime(t, "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'"),
        f if f.chars().count() == 1 => {
            return Err(format!(
                "was given the format '{f}', which is not supported here: use 'o', 's', 'u', 'r' or a custom format such as 'yyyy-MM-ddTHH:mm:ss'."
            ))
        }
        _ => {}
    }
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        match c {
            'y' => {
                let y = t.year();
                match n {
                    1 => out.push_str(&(y % 100).to_string()),
                    2 => out.push_str(&format!("{:02}", y % 100)),
                    _ => out.push_str(&format!("{y:0n$}")),
                }
            }
            'M' => {
                let m = u8::from(t.month());
                match n {
                    1 => out.push_str(&m.to_string()),
                    2 => out.push_str(&format!("{m:02}")),
                    3 => out.push_str(&MONTHS[usize::from(m - 1)][..3]),
                    _ => out.push_str(MONTHS[usize::from(m - 1)]),
                }
            }
            'd' => {
                let d = t.day();
                let wd = usize::from(t.weekday().number_days_from_monday());
                match n {
                    1 => out.push_str(&d.to_string()),
                    2 => out.push_str(&format!("{d:02}")),
                    3 => out.push_str(&DAYS[wd][..3]),
                    _ => out.push_str(DAYS[wd]),
                }
            }
            'H' => push_num(&mut out, u32::from(t.hour()), n),
            'h' => {
                let h = match t.hour() % 12 {
                    0 => 12,
                    h => h,
                };
                push_num(&mut out, u32::from(h), n)
            }
            'm' => push_num(&mut out, u32::from(t.minute()), n),
            's' => push_num(&mut out, u32::from(t.second()), n),
            'f' | 'F' => {
                if n > 7 {
                    return Err("was given a format with more than seven 'f' characters.".into());
                }
                let digits = format!("{:09}", t.nanosecond());
                let part = &digits[..n];
                if c == 'f' {
                    out.push_str(part);
                } else {
                    let trimmed = part.trim_end_matches('0');
                    if trimmed.is_empty() && out.ends_with('.') {
                        out.pop();
                    }
                    out.push_str(trimmed);
                }
            }
            't' => {
                let am = t.hour() < 12;
                out.push_str(match (n, am) {
                    (1, true) => "A",
                    (1, false) => "P",
                    (_, true) => "AM",
                    (_, false) => "PM",
                });
            }
            // Always UTC here.
            'K' => {
                for _ in 0..n {
                    out.push('Z');
                }
            }
            'z' => out.push_str(match n {
                1 => "+0",
                2 => "+00",
                _ => "+00:00",
            }),
            '\'' | '"' => {
                let mut j = i + 1;
                while j < chars.len() && chars[j] != c {
                    out.push(chars[j]);
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(format!(
                        "was given a format with an unterminated quote: '{format}'."
                    ));
                }
                i = j + 1;
                continue;
            }
            '\\' => {
                match chars.get(i + 1) {
                    Some(x) => out.push(*x),
                    None => {
                        return Err(format!(
                            "was given a format ending in an escape: '{format}'."
                        ))
                    }
                }
                i += 2;
                continue;
            }
            '%' if n == 1 => {}
            other => {
                for _ in 0..n {
                    out.push(other);
                }
            }
        }
        i += n;
    }
    Ok(out)
}

fn push_num(out: &mut String, v: u32, width: usize) {
    if width >= 2 {
        out.push_str(&format!("{v:02}"));
    } else {
        out.push_str(&v.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Ctx {
        params: HashMap<String, Value>,
        actions: HashMap<String, Value>,
        trigger: Option<Value>,
        items: HashMap<String, Value>,
        vars: HashMap<String, Value>,
        results: HashMap<String, Value>,
    }

    impl Context for Ctx {
        fn parameter(&self, name: &str) -> Option<Value> {
            self.params.get(name).cloned()
        }
        fn action(&self, name: &str) -> Option<Value> {
            self.actions.get(name).cloned()
        }
        fn trigger(&self) -> Option<Value> {
            self.trigger.clone()
        }
        fn item(&self, loop_name: &str) -> Option<Value> {
            self.items.get(loop_name).cloned()
        }
        fn iteration(&self, loop_name: &str) -> Option<usize> {
            (loop_name == "Poll").then_some(4)
        }
        fn variable(&self, name: &str) -> Option<Value> {
            self.vars.get(name).cloned()
        }
        fn workflow(&self) -> Value {
            json!({"name": "wf", "run": {"name": "0858"}})
        }
        fn scope_result(&self, name: &str) -> Option<Value> {
            self.results.get(name).cloned()
        }
        fn now(&self) -> OffsetDateTime {
            parse_timestamp("2024-03-05T07:08:09.1234567Z").unwrap()
        }
    }

    fn ctx() -> Ctx {
        let mut c = Ctx::default();
        c.params.insert(
            "$connections".into(),
            json!({"aci": {"connectionId": "/x/aci"}}),
        );
        c.params.insert("n".into(), json!(3));
        c.actions.insert(
            "Get".into(),
            json!({"name": "Get", "status": "Succeeded", "outputs": {"statusCode": 200, "headers": {"A": "b"}, "body": {"properties": {"state": "Running"}, "list": [1, 2]}}}),
        );
        c.trigger = Some(
            json!({"name": "manual", "outputs": {"headers": {}, "body": {"Name": "x.csv", "Size": 10}}}),
        );
        c.items.insert("Loop".into(), json!({"id": 7}));
        c.vars.insert("count".into(), json!(2));
        c.results
            .insert("Scope".into(), json!([{"name": "A", "status": "Failed"}]));
        c
    }

    fn ev(s: &str) -> Value {
        evaluate(s, &ctx()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        evaluate(s, &ctx()).expect_err(s)
    }

    #[test]
    fn literals_and_escapes() {
        assert_eq!(ev("plain"), json!("plain"));
        assert_eq!(ev("a@b.com"), json!("a@b.com"));
        assert_eq!(ev("@@literal"), json!("@literal"));
        assert_eq!(ev("@'it''s'"), json!("it's"));
        assert_eq!(ev("@42"), json!(42));
        assert_eq!(ev("@-3"), json!(-3));
        assert_eq!(ev("@2.5"), json!(2.5));
        assert_eq!(ev("@true"), json!(true));
        assert_eq!(ev("@false"), json!(false));
        assert_eq!(ev("@null"), Value::Null);
        assert_eq!(ev("a @@{not} b"), json!("a @{not} b"));
        assert!(!is_expression("@@x"));
        assert!(is_expression("@x()"));
        assert!(is_expression("x @{y}"));
    }

    #[test]
    fn arithmetic_extremes_and_until_indexes() {
        assert_eq!(ev("@mul(6, 7)"), json!(42));
        assert_eq!(ev("@mul(1.5, 2)"), json!(3.0));
        assert_eq!(ev("@min(3, 1, 2)"), json!(1));
        assert_eq!(ev("@max(createArray(3, 9, 2))"), json!(9));
        assert_eq!(ev("@min(createArray(2.5, 4))"), json!(2.5));
        assert!(err("@min(json('[]'))").contains("empty"));
        assert!(err("@max(1, 'two')").contains("numbers"));
        assert!(err("@mul(9223372036854775807, 2)").contains("overflowed"));
        assert_eq!(ev("@iterationIndexes('Poll')"), json!(4));
        assert_eq!(
            ev("@createArray(30, 10, 20)[min(iterationIndexes('Poll'), 2)]"),
            json!(20)
        );
        assert!(err("@iterationIndexes('Loop')").contains("'until'"));
    }

    #[test]
    fn interpolation_converts_to_text() {
        assert_eq!(ev("n=@{parameters('n')}!"), json!("n=3!"));
        assert_eq!(ev("@{true}"), json!("True"));
        assert_eq!(ev("x@{null}y"), json!("xy"));
        assert_eq!(ev("o=@{body('Get')?['list']}"), json!("o=[1,2]"));
        assert_eq!(ev("@{'a'}-@{'b'}"), json!("a-b"));
        assert_eq!(ev("@{concat('}', '{')}"), json!("}{"));
    }

    #[test]
    fn property_access() {
        assert_eq!(ev("@body('Get')['properties']['state']"), json!("Running"));
        assert_eq!(ev("@body('Get').properties.state"), json!("Running"));
        assert_eq!(ev("@body('Get')?['list'][1]"), json!(2));
        assert_eq!(ev("@body('Get')?['missing']?['deeper']"), Value::Null);
        assert_eq!(ev("@body('Get')?.missing"), Value::Null);
        assert_eq!(ev("@triggerBody()?['name']"), json!("x.csv"));
        let e = err("@body('Get')['missing']");
        assert!(e.contains("property 'missing' doesn't exist"), "{e}");
        assert!(
            e.contains("available properties are 'list, properties'"),
            "{e}"
        );
        let e = err("@body('Get')['list'][5]");
        assert!(e.contains("outside bounds"), "{e}");
        let e = err("@body('Get')['missing']['x']");
        assert!(e.contains("doesn't exist"), "{e}");
        let e = err("@'s'['x']");
        assert!(e.contains("type 'String'"), "{e}");
    }

    #[test]
    fn context_functions() {
        assert_eq!(
            ev("@parameters('$connections')['aci']['connectionId']"),
            json!("/x/aci")
        );
        assert_eq!(ev("@outputs('Get')['statusCode']"), json!(200));
        assert_eq!(ev("@actions('Get')['status']"), json!("Succeeded"));
        assert_eq!(ev("@triggerOutputs()['body']['Size']"), json!(10));
        assert_eq!(ev("@trigger()['name']"), json!("manual"));
        assert_eq!(ev("@items('Loop')['id']"), json!(7));
        assert_eq!(ev("@variables('count')"), json!(2));
        assert_eq!(ev("@workflow()['run']['name']"), json!("0858"));
        assert_eq!(ev("@result('Scope')[0]['status']"), json!("Failed"));
        assert!(err("@parameters('nope')").contains("'nope' is not found"));
        assert!(err("@body('Nope')").contains("'Nope'"));
        assert!(err("@items('Other')").contains("foreach"));
        assert!(err("@variables('v')").contains("not initialized"));
        assert!(err("@result('Get')").contains("scope"));
    }

    #[test]
    fn logic_and_comparison() {
        assert_eq!(ev("@equals(1, 1.0)"), json!(true));
        assert_eq!(ev("@equals('a', 'A')"), json!(false));
        assert_eq!(
            ev("@equals(createArray(1, 'x'), createArray(1, 'x'))"),
            json!(true)
        );
        assert_eq!(ev("@and(true, true, false)"), json!(false));
        assert_eq!(ev("@or(false, true)"), json!(true));
        assert_eq!(ev("@not(false)"), json!(true));
        assert_eq!(ev("@greater(3, 2)"), json!(true));
        assert_eq!(ev("@greater(2.5, 3)"), json!(false));
        assert_eq!(ev("@less('a', 'b')"), json!(true));
        assert_eq!(ev("@if(equals(1, 2), 'yes', 'no')"), json!("no"));
        assert!(err("@and(true, 1)").contains("boolean"));
        assert!(err("@greater('a', 1)").contains("matching types"));
        assert!(err("@if('x', 1, 2)").contains("boolean"));
    }

    #[test]
    fn arithmetic() {
        assert_eq!(ev("@add(1, 2)"), json!(3));
        assert_eq!(ev("@add(1, 0.5)"), json!(1.5));
        assert_eq!(ev("@sub(variables('count'), 5)"), json!(-3));
        assert!(err("@add('1', 2)").contains("numeric"));
        assert!(err("@add(9223372036854775807, 1)").contains("overflow"));
    }

    #[test]
    fn collections() {
        assert_eq!(ev("@empty('')"), json!(true));
        assert_eq!(ev("@empty(null)"), json!(true));
        assert_eq!(ev("@empty(createArray(1))"), json!(false));
        assert_eq!(ev("@empty(json('{}'))"), json!(true));
        assert!(err("@empty(1)").contains("Integer"));
        assert_eq!(ev("@length('héllo')"), json!(5));
        assert_eq!(ev("@length(createArray(1, 2))"), json!(2));
        assert!(err("@length(1)").contains("array or a string"));
        assert_eq!(ev("@coalesce(null, null, 'x')"), json!("x"));
        assert_eq!(ev("@coalesce(null)"), Value::Null);
        assert_eq!(ev("@first(createArray(1, 2))"), json!(1));
        assert_eq!(ev("@last(createArray(1, 2))"), json!(2));
        assert_eq!(ev("@first('abc')"), json!("a"));
        assert_eq!(ev("@last('abc')"), json!("c"));
        assert_eq!(ev("@first(json('[]'))"), Value::Null);
        assert_eq!(ev("@contains('abc', 'b')"), json!(true));
        assert_eq!(ev("@contains(createArray(1, 2), 2)"), json!(true));
        assert_eq!(ev("@contains(body('Get'), 'list')"), json!(true));
        assert_eq!(ev("@contains(body('Get'), 'nope')"), json!(false));
        assert_eq!(ev("@createArray('a', 1)"), json!(["a", 1]));
        assert_eq!(ev("@range(2, 3)"), json!([2, 3, 4]));
        assert_eq!(ev("@range(0, 0)"), json!([]));
        assert!(err("@range(0, 1000000)").contains("count"));
        assert!(err("@range(0, -1)").contains("count"));
        assert_eq!(
            ev("@concat(createArray(1), createArray(2, 3))"),
            json!([1, 2, 3])
        );
        assert!(err("@concat('a', createArray(1))").contains("only strings or only arrays"));
    }

    #[test]
    fn strings() {
        assert_eq!(ev("@concat('job-', 1, '-', true)"), json!("job-1-True"));
        assert_eq!(ev("@string(12)"), json!("12"));
        assert_eq!(ev("@string(json('{\"a\":1}'))"), json!("{\"a\":1}"));
        assert_eq!(ev("@int('42')"), json!(42));
        assert!(err("@int('4x')").contains("Integer"));
        assert!(err("@int(1.5)").contains("Integer"));
        assert_eq!(ev("@json('[1, {\"a\": null}]')"), json!([1, {"a": null}]));
        assert!(err("@json('{')").contains("cannot be parsed"));
        assert_eq!(ev("@toLower('AbC')"), json!("abc"));
        assert_eq!(ev("@substring('hello', 1, 3)"), json!("ell"));
        assert_eq!(ev("@substring('hello', 2)"), json!("llo"));
        assert!(err("@substring('hello', 3, 5)").contains("out of range"));
        assert!(err("@substring('hello', -1, 1)").contains("out of range"));
        assert_eq!(ev("@replace('a-b-c', '-', '+')"), json!("a+b+c"));
        assert!(err("@replace('a', '', 'b')").contains("non-empty"));
        assert_eq!(ev("@split('a,b,,c', ',')"), json!(["a", "b", "", "c"]));
        assert_eq!(
            ev("@encodeURIComponent('a b/c?d=é')"),
            json!("a%20b%2Fc%3Fd%3D%C3%A9")
        );
        assert_eq!(ev("@encodeURIComponent('A-z_0.9~')"), json!("A-z_0.9~"));
    }

    #[test]
    fn dates_and_guids() {
        assert_eq!(ev("@utcNow()"), json!("2024-03-05T07:08:09.1234567Z"));
        assert_eq!(ev("@utcNow('yyyyMMddHHmmss')"), json!("20240305070809"));
        assert_eq!(
            ev("@utcNow('yyyy-MM-ddTHH:mm:ss.fff')"),
            json!("2024-03-05T07:08:09.123")
        );
        assert_eq!(
            ev("@formatDateTime('2024-12-31T23:59:58.5+01:00', 'yyyy-MM-dd HH:mm:ss')"),
            json!("2024-12-31 22:59:58")
        );
        assert_eq!(
            ev("@formatDateTime('2024-01-02', 'dd/MM/yyyy ''at'' h tt')"),
            json!("02/01/2024 at 12 AM")
        );
        assert_eq!(
            ev("@formatDateTime('2024-01-02T03:04:05Z')"),
            json!("2024-01-02T03:04:05.0000000Z")
        );
        assert_eq!(
            ev("@formatDateTime('2024-01-02T03:04:05Z', 's')"),
            json!("2024-01-02T03:04:05")
        );
        assert_eq!(
            ev("@formatDateTime('2024-01-02T03:04:05Z', 'u')"),
            json!("2024-01-02 03:04:05Z")
        );
        assert_eq!(
            ev("@formatDateTime('2024-01-02T03:04:05Z', 'r')"),
            json!("Tue, 02 Jan 2024 03:04:05 GMT")
        );
        assert_eq!(
            ev("@formatDateTime('2024-01-02T03:04:05Z', 'MMM dddd')"),
            json!("Jan Tuesday")
        );
        assert!(err("@formatDateTime('yesterday')").contains("ISO 8601"));
        assert!(err("@formatDateTime('2024-01-02', 'q')").contains("not supported"));
        assert!(err("@formatDateTime('2024-01-02', 'ffffffff')").contains("seven"));
        let g = ev("@guid()");
        assert!(crate::util::is_guid(g.as_str().unwrap()));
        assert_eq!(ev("@length(guid('N'))"), json!(32));
        assert_ne!(ev("@guid()"), ev("@guid()"));
        assert!(err("@guid('Q')").contains("format"));
    }

    #[test]
    fn check_rejects_unknown_functions_and_bad_syntax() {
        assert!(check("@foo()")
            .unwrap_err()
            .contains("The template function 'foo' is not defined or not valid"));
        assert!(check("x @{bar(1)} y").unwrap_err().contains("'bar'"));
        assert!(check("@equals(1)")
            .unwrap_err()
            .contains("expects 2 parameter"));
        assert!(check("@utcNow('a', 'b')").unwrap_err().contains("0 to 1"));
        assert!(check("@concat('a'").is_err());
        assert!(check("@'abc")
            .unwrap_err()
            .contains("not properly terminated"));
        assert!(check("@body('x') junk").is_err());
        assert!(check("@{'x'").is_err());
        assert!(check("@x").is_err());
        assert!(check("@").is_err());
        assert!(check("@UTCNOW()").is_ok());
        assert!(check("no expression here").is_ok());
        assert!(check("@@foo()").is_ok());
        assert!(check(&format!("@{}1{}", "not(".repeat(100), ")".repeat(100))).is_err());
        assert!(
            check_value(&json!({"a": ["ok", {"b": "@nope()"}]}), "inputs")
                .unwrap_err()
                .0
                == "inputs.a[1].b"
        );
        assert_eq!(
            literal_references("@{body('A')} @outputs('B')", "body"),
            vec!["A"]
        );
        assert_eq!(
            literal_references("@concat(body('A'), body('C'))", "body"),
            vec!["A", "C"]
        );
    }

    #[test]
    fn evaluate_value_walks_json() {
        let v = json!({"uri": "https://x/@{encodeURIComponent('a b')}", "n": "@add(1, 1)", "keep": 5, "list": ["@true"]});
        assert_eq!(
            evaluate_value(&v, &ctx()).unwrap(),
            json!({"uri": "https://x/a%20b", "n": 2, "keep": 5, "list": [true]})
        );
    }

    #[test]
    fn timestamps() {
        let (dt, off) = parse_local_timestamp("2025-01-01T02:00:00").unwrap();
        assert_eq!(off, None);
        assert_eq!(dt.hour(), 2);
        assert!(parse_timestamp("2025-02-30T00:00:00Z").is_none());
        assert!(parse_timestamp("2025-01-01T25:00:00Z").is_none());
        assert!(parse_timestamp("2025-01-01T00:00:00+05:30").is_some());
        assert!(parse_timestamp("2025-01-01T00:00:00.Z").is_none());
        assert!(parse_timestamp("").is_none());
        assert!(parse_timestamp("é").is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = check(&s);
            let _ = evaluate(&s, &ctx());
            let _ = evaluate(&format!("@{s}"), &ctx());
            let _ = evaluate(&format!("x @{{{s}}}"), &ctx());
        }

        #[test]
        fn never_panics_on_expression_like_input(
            s in "[@{}()\\[\\]?.,' a-z0-9A-Z_-]{0,60}"
        ) {
            let _ = evaluate(&s, &ctx());
            let _ = evaluate(&format!("@{s}"), &ctx());
            let _ = evaluate(&format!("@concat({s})"), &ctx());
        }

        #[test]
        fn never_panics_calling_functions(
            f in proptest::sample::select(FUNCTIONS.iter().map(|f| f.0).collect::<Vec<_>>()),
            args in proptest::collection::vec(
                proptest::sample::select(vec![
                    "1", "-1", "0", "2.5", "'a'", "''", "null", "true", "createArray(1, 2)",
                    "json('{}')", "9223372036854775807", "-9223372036854775808", "'2024-01-01'",
                    "'yyyy'", "'N'", "body('Get')", "'Get'", "'Loop'", "'count'", "'é'",
                ]),
                0..4,
            )
        ) {
            let e = format!("@{f}({})", args.join(", "));
            let _ = evaluate(&e, &ctx());
        }
    }
}
