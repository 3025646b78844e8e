//! Property tests (issue 8): the Workflow Definition Language evaluator never panics.
//!
//! The unit tests in `workflow/expr.rs` throw random text at it; these build inputs
//! from the grammar (literals, calls of every supported function and of unknown ones,
//! `x[k]`, `x?[k]`, `x.k`, `x?.k`, nested parentheses, `@expr`, `@{...}` interpolation,
//! `@@` escapes) and then damage some of them (cut, a character dropped or inserted),
//! so most inputs get deep into the parser and the evaluator before they succeed or
//! fail. Every call must return `Ok` or `Err`.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};
use serverless_local::workflow::expr::{self, Context, FUNCTIONS};
use time::OffsetDateTime;

const CASES: u32 = 512;

/// A run's view with a little of everything expressions can read.
struct Ctx;

impl Context for Ctx {
    fn parameter(&self, name: &str) -> Option<Value> {
        match name {
            "n" => Some(json!(3)),
            "s" => Some(json!("a,b,,c")),
            "big" => Some(json!(i64::MAX)),
            "f" => Some(json!(-2.5e300)),
            "obj" => Some(json!({"k": [1, {"k": null}], "é": "ü"})),
            "$connections" => Some(json!({"aci": {"connectionId": "/x/aci"}})),
            _ => None,
        }
    }
    fn action(&self, name: &str) -> Option<Value> {
        match name {
            "Get" => Some(json!({
                "name": "Get", "status": "Succeeded",
                "outputs": {"statusCode": 200, "headers": {"A": "b"},
                            "body": {"properties": {"state": "Running"}, "list": [1, 2, 3]}}
            })),
            "Failed" => Some(json!({"name": "Failed", "status": "Failed", "error": {"code": "X"}})),
            _ => None,
        }
    }
    fn trigger(&self) -> Option<Value> {
        Some(
            json!({"name": "manual", "outputs": {"headers": {}, "body": {"Name": "x.csv", "Size": 10}}}),
        )
    }
    fn item(&self, loop_name: &str) -> Option<Value> {
        (loop_name == "Loop").then(|| json!({"id": 7, "tags": ["a", "b"]}))
    }
    fn iteration(&self, loop_name: &str) -> Option<usize> {
        (loop_name == "Poll").then_some(2)
    }
    fn variable(&self, name: &str) -> Option<Value> {
        match name {
            "count" => Some(json!(2)),
            "list" => Some(json!([[], {}, "", 0, null])),
            _ => None,
        }
    }
    fn workflow(&self) -> Value {
        json!({"id": "/wf", "name": "wf", "run": {"name": "0858"}})
    }
    fn scope_result(&self, name: &str) -> Option<Value> {
        (name == "Scope").then(|| json!([{"name": "A", "status": "Failed"}]))
    }
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_709_622_489).unwrap()
    }
}

fn string_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "Get",
            "Failed",
            "Loop",
            "Poll",
            "Scope",
            "n",
            "s",
            "big",
            "f",
            "obj",
            "count",
            "list",
            "k",
            "é",
            "",
            "2024-03-05T07:08:09Z",
            "yyyy-MM-ddTHH:mm:ss",
            "o",
            "N",
            "{}",
            "[1,2]",
            "{\"a\":",
            "}",
            "@{",
            "@",
            ",",
            "'",
        ])
        .prop_map(String::from),
        "\\PC{0,12}",
    ]
    // A literal is quoted, with `'` doubled.
    .prop_map(|s| format!("'{}'", s.replace('\'', "''")))
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => string_literal(),
        2 => any::<i64>().prop_map(|n| n.to_string()),
        2 => (-5i64..200).prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|x| format!("{x:?}")),
        1 => proptest::sample::select(vec![
            "null", "true", "false", "-0", "1e400", "9223372036854775808", "0.5", ".5", "1.",
            "triggerBody()", "triggerOutputs()", "trigger()", "workflow()", "utcNow()", "guid()",
        ])
        .prop_map(String::from),
    ]
}

/// Names that are not supported functions (or not names at all), and a supported
/// one spelled in another case (Azure's names are case-insensitive).
fn other_function_name() -> impl Strategy<Value = String> {
    proptest::sample::select(vec!["CONCAT", "Body", "toUpper", "nosuch", "", "1"])
        .prop_map(String::from)
}

/// A call of a supported function with a number of arguments it accepts.
fn call<S>(arg: S) -> impl Strategy<Value = String>
where
    S: Strategy<Value = String> + Clone + 'static,
{
    proptest::sample::select(FUNCTIONS).prop_flat_map(move |(name, min, max)| {
        let most = max.min(min + 3);
        proptest::collection::vec(arg.clone(), min..=most)
            .prop_map(move |args| format!("{name}({})", args.join(", ")))
    })
}

fn ident() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z_][a-zA-Z0-9_]{0,6}", Just("properties".to_string())]
}

/// An expression from the grammar, up to a few levels of nesting.
fn expression() -> impl Strategy<Value = String> {
    leaf().prop_recursive(6, 64, 4, |inner| {
        prop_oneof![
            6 => call(inner.clone()),
            // Unknown names, or any number of arguments.
            1 => (
                prop_oneof![other_function_name(), proptest::sample::select(FUNCTIONS).prop_map(|f| f.0.to_string())],
                proptest::collection::vec(inner.clone(), 0..5),
            )
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            2 => (inner.clone(), inner.clone(), any::<bool>())
                .prop_map(|(x, k, safe)| format!("{x}{}[{k}]", if safe { "?" } else { "" })),
            2 => (inner.clone(), ident(), any::<bool>())
                .prop_map(|(x, k, safe)| format!("{x}{}.{k}", if safe { "?" } else { "" })),
            // Not WDL syntax (there is no grouping), but parentheses must not confuse it.
            1 => inner.prop_map(|x| format!("({x})")),
        ]
    })
}

/// A definition string: an expression, an interpolated string, an escape or text.
fn template() -> impl Strategy<Value = String> {
    let text = "[^@{}]{0,8}|@@\\{|\\}";
    prop_oneof![
        4 => expression().prop_map(|e| format!("@{e}")),
        3 => proptest::collection::vec((text, expression()), 1..4).prop_map(|parts| {
            parts
                .into_iter()
                .map(|(t, e)| format!("{t}@{{{e}}}"))
                .collect::<String>()
        }),
        1 => expression().prop_map(|e| format!("@@{e}")),
        1 => expression(),
    ]
}

/// Damage: none, cut at a character, drop one, or insert one of the grammar's symbols.
fn damaged(s: String, how: u8, at: usize, c: char) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return s;
    }
    let i = at % chars.len();
    match how % 4 {
        0 => s,
        1 => chars[..i].iter().collect(),
        2 => chars[..i].iter().chain(&chars[i + 1..]).collect(),
        _ => chars[..i]
            .iter()
            .chain(std::iter::once(&c))
            .chain(&chars[i..])
            .collect(),
    }
}

fn run_all(s: &str) {
    let ctx = Ctx;
    let _ = expr::is_expression(s);
    let _ = expr::check(s);
    let _ = expr::parse_template(s);
    let _ = expr::evaluate(s, &ctx);
    let _ = expr::literal_references(s, "body");
    let _ = expr::evaluate_value(&json!({"a": [s, {"b": s}]}), &ctx);
}

proptest! {
    #![proptest_config(Config::with_cases(CASES))]

    #[test]
    fn grammar_built_definitions_never_panic(
        s in template(),
        how in any::<u8>(),
        at in any::<usize>(),
        c in proptest::sample::select(vec!['(', ')', '[', ']', '{', '}', '?', '.', ',', '\'', '@', ' ', '-', 'é']),
    ) {
        run_all(&damaged(s, how, at, c));
    }

    #[test]
    fn arbitrary_unicode_never_panics(s in any::<String>()) {
        run_all(&s);
        run_all(&format!("@{s}"));
        run_all(&format!("@{{{s}}}"));
        run_all(&format!("x @{{concat('{s}')}} y"));
    }
}

/// Chains well within the nesting limit still evaluate.
#[test]
fn ordinary_chains_evaluate() {
    let s = format!("@parameters('obj')?['k'][1]{}", "?['k']".repeat(30));
    assert_eq!(expr::evaluate(&s, &Ctx), Ok(Value::Null));
    assert_eq!(
        expr::evaluate("@body('Get').properties.state", &Ctx),
        Ok(json!("Running"))
    );
}

/// Nesting far beyond the limit is refused with an error, not a stack overflow.
#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for n in [65usize, 1_000, 20_000] {
        for (open, close) in [("(", ")"), ("concat(", ")"), ("createArray(", ")")] {
            let s = format!("@{}1{}", open.repeat(n), close.repeat(n));
            assert!(expr::evaluate(&s, &Ctx).is_err(), "{open} x {n}");
            let s = format!("a @{{{}1{}}}", open.repeat(n), close.repeat(n));
            assert!(
                expr::evaluate(&s, &Ctx).is_err(),
                "interpolated {open} x {n}"
            );
        }
        // Chains of `[k]` / `.k` nest too (each link wraps the expression).
        let s = format!("@parameters('obj'){}", "?['k']".repeat(n));
        assert!(expr::evaluate(&s, &Ctx).is_err(), "?['k'] x {n}");
        let s = format!("@parameters('obj'){}", "?.k".repeat(n));
        assert!(expr::evaluate(&s, &Ctx).is_err(), "?.k x {n}");
        let s = format!("@{}", "[".repeat(n));
        assert!(expr::evaluate(&s, &Ctx).is_err());
    }
}
