//! Property tests (issue 8) for what the core computes without the network:
//!
//! - SAS signing: the string-to-sign of a service SAS and of an account SAS is built
//!   here again, field by field, from the layout in Azure's documentation ("Create a
//!   service SAS" / "Create an account SAS", versions 2020-12-06 up to 2025-07-05), and
//!   the signature is recomputed with `ring` (the crate signs with `hmac` + `sha2`);
//!   known answers from Microsoft's Python SDK pin both against a second implementation.
//! - Name validation: names generated from an independent statement of Azure's naming
//!   rule are accepted; names that break exactly one rule are rejected with an input
//!   error that names the value.

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use proptest::prelude::*;
use proptest::sample::subsequence;
use proptest::string::string_regex;
use proptest::test_runner::Config;
use serverless_core::blob::sas::{AccountSas, ServiceSas, SAS_VERSION};
use serverless_core::error::{ErrorKind, Result};
use std::collections::BTreeMap;
use time::macros::datetime;
use time::OffsetDateTime;

/// Cases per property: enough to cover every rule many times, fast in release.
const CASES: u32 = 512;

// ---------------------------------------------------------------------------------
// SAS signing
// ---------------------------------------------------------------------------------

/// Blob permissions of a service SAS in the order the service requires.
const SERVICE_PERMISSIONS: &str = "racwdxyltmeopi";
/// Account SAS permissions (the Blob subset we sign with) in the SDKs' order.
const ACCOUNT_PERMISSIONS: &str = "rwdlac";

/// `YYYY-MM-DDThh:mm:ssZ`, written from the parts (not with the crate's formatter).
fn iso_seconds(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn hmac_sha256_b64(key: &[u8], text: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    B64.encode(ring::hmac::sign(&key, text.as_bytes()).as_ref())
}

fn query(q: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        assert!(
            map.insert(k.to_string(), v.to_string()).is_none(),
            "`{k}` twice in {q}"
        );
    }
    map
}

/// Letters of `order` that occur in `given`, in `order`'s order.
fn in_order(order: &str, given: &str) -> String {
    order.chars().filter(|c| given.contains(*c)).collect()
}

/// Times from 2000 to 2100 with arbitrary nanoseconds (a SAS carries whole seconds).
fn sas_time() -> impl Strategy<Value = OffsetDateTime> {
    (946_684_800i64..4_102_444_800, 0u32..1_000_000_000).prop_map(|(s, ns)| {
        OffsetDateTime::from_unix_timestamp(s)
            .unwrap()
            .replace_nanosecond(ns)
            .unwrap()
    })
}

/// Some letters, each at most once, in any order.
fn permissions(letters: &'static str) -> impl Strategy<Value = String> {
    subsequence(letters.chars().collect::<Vec<_>>(), 1..=letters.len())
        .prop_shuffle()
        .prop_map(|v| v.into_iter().collect())
}

fn storage_account() -> impl Strategy<Value = String> {
    "[a-z0-9]{3,24}"
}

/// Azure: 3-63 of `a-z 0-9 -`, starting and ending with a letter or digit, every dash
/// between two letters or digits.
fn container_rule() -> impl Strategy<Value = String> {
    "[a-z0-9](-?[a-z0-9]){2,31}"
}

/// Blob names: any printable text, with `/` for virtual directories.
fn blob_name() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{1,80}", "[a-z0-9]{1,8}(/[a-zA-Z0-9 ._-]{1,12}){0,5}",]
}

/// The documented service SAS string-to-sign (2020-12-06 <= sv < 2025-07-05).
#[allow(clippy::too_many_arguments)]
fn service_string_to_sign(
    sp: &str,
    st: &str,
    se: &str,
    account: &str,
    container: &str,
    blob: Option<&str>,
    sv: &str,
    sr: &str,
) -> String {
    let resource = match blob {
        Some(b) => format!("/blob/{account}/{container}/{b}"),
        None => format!("/blob/{account}/{container}"),
    };
    [
        sp,        // signedPermissions
        st,        // signedStart
        se,        // signedExpiry
        &resource, // canonicalizedResource
        "",        // signedIdentifier
        "",        // signedIP
        "",        // signedProtocol
        sv,        // signedVersion
        sr,        // signedResource
        "",        // signedSnapshotTime
        "",        // signedEncryptionScope
        "",        // rscc
        "",        // rscd
        "",        // rsce
        "",        // rscl
        "",        // rsct
    ]
    .join("\n")
}

/// The documented account SAS string-to-sign (sv >= 2020-12-06): ten fields, each
/// followed by a newline.
fn account_string_to_sign(account: &str, sp: &str, st: &str, se: &str, sv: &str) -> String {
    let fields = [
        account, // accountname
        sp,      // signedpermissions
        "b",     // signedservice
        "sco",   // signedresourcetype
        st,      // signedstart
        se,      // signedexpiry
        "",      // signedIP
        "",      // signedProtocol
        sv,      // signedversion
        "",      // signedEncryptionScope
    ];
    fields.iter().map(|f| format!("{f}\n")).collect()
}

#[test]
fn the_signed_version_uses_the_layout_tested_here() {
    // The layouts above hold from 2020-12-06 (encryption scope) until 2025-07-05.
    assert!(("2020-12-06".."2025-07-05").contains(&SAS_VERSION));
}

proptest! {
    #![proptest_config(Config::with_cases(CASES))]

    #[test]
    fn service_sas_follows_the_documented_layout_and_signature(
        account in storage_account(),
        container in container_rule(),
        blob in proptest::option::of(blob_name()),
        sp in permissions(SERVICE_PERMISSIONS),
        start in sas_time(),
        expiry in sas_time(),
        key in proptest::collection::vec(any::<u8>(), 1..=64),
    ) {
        let sas = ServiceSas {
            account: &account,
            container: &container,
            blob: blob.as_deref(),
            permissions: &sp,
            start,
            expiry,
        };
        let sr = if blob.is_some() { "b" } else { "c" };
        let canonical = in_order(SERVICE_PERMISSIONS, &sp);
        let (st, se) = (iso_seconds(start), iso_seconds(expiry));
        let expected = service_string_to_sign(
            &canonical, &st, &se, &account, &container, blob.as_deref(), SAS_VERSION, sr,
        );
        let sts = sas.string_to_sign();
        prop_assert_eq!(&sts, &expected);
        if !blob.as_deref().unwrap_or("").contains('\n') {
            prop_assert_eq!(sts.split('\n').count(), 16);
        }

        let q = query(&sas.sign(&B64.encode(&key)).unwrap());
        let keys: Vec<&str> = q.keys().map(String::as_str).collect();
        prop_assert_eq!(keys, vec!["se", "sig", "sp", "sr", "st", "sv"]);
        prop_assert_eq!(&q["sv"], SAS_VERSION);
        prop_assert_eq!(&q["sr"], sr);
        prop_assert_eq!(&q["sp"], &canonical);
        prop_assert_eq!(&q["st"], &st);
        prop_assert_eq!(&q["se"], &se);
        prop_assert_eq!(&q["sig"], &hmac_sha256_b64(&key, &expected));
    }

    #[test]
    fn account_sas_follows_the_documented_layout_and_signature(
        account in storage_account(),
        sp in permissions(ACCOUNT_PERMISSIONS),
        start in sas_time(),
        expiry in sas_time(),
        key in proptest::collection::vec(any::<u8>(), 1..=64),
    ) {
        let sas = AccountSas { account: &account, permissions: &sp, start, expiry };
        let canonical = in_order(ACCOUNT_PERMISSIONS, &sp);
        let (st, se) = (iso_seconds(start), iso_seconds(expiry));
        let expected = account_string_to_sign(&account, &canonical, &st, &se, SAS_VERSION);
        prop_assert_eq!(&sas.string_to_sign(), &expected);

        let q = query(&sas.sign(&B64.encode(&key)).unwrap());
        let keys: Vec<&str> = q.keys().map(String::as_str).collect();
        prop_assert_eq!(keys, vec!["se", "sig", "sp", "srt", "ss", "st", "sv"]);
        prop_assert_eq!(&q["sv"], SAS_VERSION);
        prop_assert_eq!(&q["ss"], "b");
        prop_assert_eq!(&q["srt"], "sco");
        prop_assert_eq!(&q["sp"], &canonical);
        prop_assert_eq!(&q["st"], &st);
        prop_assert_eq!(&q["se"], &se);
        prop_assert_eq!(&q["sig"], &hmac_sha256_b64(&key, &expected));
    }

    #[test]
    fn a_key_that_is_not_base64_is_an_input_error(
        key in "[A-Za-z0-9+/]{0,40}[^A-Za-z0-9+/=\\s]{1,4}",
    ) {
        let sas = ServiceSas {
            account: "acct",
            container: "models",
            blob: None,
            permissions: "r",
            start: datetime!(2026-01-01 00:00:00 UTC),
            expiry: datetime!(2026-01-01 01:00:00 UTC),
        };
        let err = sas.sign(&key).unwrap_err();
        prop_assert_eq!(err.kind, ErrorKind::Input);
        // The message explains, and never echoes the key.
        prop_assert!(err.message.contains("not valid base64"), "{}", err.message);
        prop_assert!(!err.message.contains(&key), "{}", err.message);
    }
}

/// Known answers from Microsoft's `azure-storage-blob` 12.31.1 for Python
/// (`generate_blob_sas` / `generate_container_sas` / `generate_account_sas` with the
/// signed version pinned to ours, start 2026-01-01T00:00:00Z, expiry one hour later,
/// Azurite's well-known development key).
mod python_sdk_answers {
    use super::*;

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    fn sig(q: &str) -> String {
        query(q)["sig"].clone()
    }

    #[test]
    fn blob_sas() {
        let sas = ServiceSas {
            account: "devstoreaccount1",
            container: "serverless",
            blob: Some("models/mpg/v 1/bundle.é"),
            permissions: "dwcr",
            start: datetime!(2026-01-01 00:00:00 UTC),
            expiry: datetime!(2026-01-01 01:00:00 UTC),
        };
        assert_eq!(
            sas.string_to_sign(),
            "rcwd\n2026-01-01T00:00:00Z\n2026-01-01T01:00:00Z\n/blob/devstoreaccount1/serverless/models/mpg/v 1/bundle.é\n\n\n\n2022-11-02\nb\n\n\n\n\n\n\n"
        );
        let q = sas.sign(KEY).unwrap();
        assert_eq!(sig(&q), "8ymokrLqJ8aqwQzWAM6hH7B9q/6J/amtqATlJlEpMfI=");
    }

    #[test]
    fn container_sas() {
        let sas = ServiceSas {
            account: "devstoreaccount1",
            container: "serverless",
            blob: None,
            permissions: "wlrc",
            start: datetime!(2026-01-01 00:00:00 UTC),
            expiry: datetime!(2026-01-01 01:00:00 UTC),
        };
        let q = sas.sign(KEY).unwrap();
        assert_eq!(sig(&q), "W1/6zOOnljeCRbf7B3MIYavrncD6lHEwQD4C31sZYoE=");
        assert_eq!(query(&q)["sp"], "rcwl");
    }

    #[test]
    fn account_sas() {
        let sas = AccountSas {
            account: "devstoreaccount1",
            permissions: "racwdl",
            start: datetime!(2026-01-01 00:00:00 UTC),
            expiry: datetime!(2026-01-01 01:00:00 UTC),
        };
        assert_eq!(
            sas.string_to_sign(),
            "devstoreaccount1\nrwdlac\nb\nsco\n2026-01-01T00:00:00Z\n2026-01-01T01:00:00Z\n\n\n2022-11-02\n\n"
        );
        let q = sas.sign(KEY).unwrap();
        assert_eq!(sig(&q), "6CLd58B+BL+ViR4bx8HwOWuFdBoy1/AXx7tB9/9GmbY=");
        assert_eq!(query(&q)["sp"], "rwdlac");
    }
}

// ---------------------------------------------------------------------------------
// Name validation
// ---------------------------------------------------------------------------------

/// A rule as Azure documents it, for names made of `a-z 0-9 -`.
#[derive(Clone, Copy)]
struct DashRule {
    min: usize,
    max: usize,
}

/// Names that follow a dash rule: a letter or digit, then (dash?) letter-or-digit
/// pairs, cut to the allowed lengths.
fn dash_names(rule: DashRule) -> impl Strategy<Value = String> {
    let pairs = format!("[a-z0-9](-?[a-z0-9]){{0,{}}}", rule.max - 1);
    string_regex(&pairs)
        .unwrap()
        .prop_filter(format!("{}..={} chars", rule.min, rule.max), move |s| {
            (rule.min..=rule.max).contains(&s.len())
        })
}

/// Same shape, any length in `lo..=hi` (for building names that break one rule).
fn dash_shaped(lo: usize, hi: usize) -> impl Strategy<Value = String> {
    let pairs = format!("[a-z0-9](-?[a-z0-9]){{0,{}}}", hi.saturating_sub(1));
    string_regex(&pairs)
        .unwrap()
        .prop_filter(format!("{lo}..={hi} chars"), move |s| {
            (lo..=hi).contains(&s.len())
        })
}

/// Replace the letter or digit at (a position derived from) `at` with `c`.
fn replace_alnum(name: &str, at: usize, c: char) -> String {
    let spots: Vec<usize> = name
        .char_indices()
        .filter(|(_, ch)| *ch != '-')
        .map(|(i, _)| i)
        .collect();
    let i = spots[at % spots.len()];
    let mut s = name.to_string();
    s.replace_range(i..i + 1, &c.to_string());
    s
}

const BAD_ASCII: &[char] = &[
    '_', '.', ' ', '/', '\\', '!', '@', '#', '$', '%', '^', '&', '*', '(', ')', '+', '=', '~', ':',
    ';', ',', '?', '\'', '"', '<', '>', '[', ']', '{', '}', '|', '`',
];

/// A name that breaks exactly one part of a dash rule, labelled with that part.
fn broken_dash_names(rule: DashRule) -> impl Strategy<Value = (&'static str, String)> {
    let DashRule { min, max } = rule;
    let mut options: Vec<BoxedStrategy<(&'static str, String)>> = vec![
        dash_shaped(max + 1, max + 40)
            .prop_map(|s| ("too long", s))
            .boxed(),
        (
            dash_names(rule),
            any::<usize>(),
            proptest::char::range('A', 'Z'),
        )
            .prop_map(|(s, at, c)| ("uppercase", replace_alnum(&s, at, c)))
            .boxed(),
        (
            dash_names(rule),
            any::<usize>(),
            proptest::sample::select(BAD_ASCII),
        )
            .prop_map(|(s, at, c)| ("bad character", replace_alnum(&s, at, c)))
            .boxed(),
        dash_shaped(min.max(2) - 1, max - 1)
            .prop_map(|s| ("leading dash", format!("-{s}")))
            .boxed(),
        dash_shaped(min.max(2) - 1, max - 1)
            .prop_map(|s| ("trailing dash", format!("{s}-")))
            .boxed(),
        (dash_shaped(1, 20), dash_shaped(1, 20))
            .prop_filter("length within the rule", move |(a, b)| {
                (min..=max).contains(&(a.len() + b.len() + 2))
            })
            .prop_map(|(a, b)| ("double dash", format!("{a}--{b}")))
            .boxed(),
    ];
    if min > 1 {
        options.push(
            dash_shaped(1, min - 1)
                .prop_map(|s| ("too short", s))
                .boxed(),
        );
    }
    if min > 0 {
        options.push(Just(("empty", String::new())).boxed());
    }
    proptest::strategy::Union::new(options)
}

/// The error must be an input error whose message quotes the offending value.
fn rejected_naming(
    result: Result<()>,
    name: &str,
    broken: &str,
) -> std::result::Result<(), TestCaseError> {
    let err = match result {
        Ok(()) => {
            return Err(TestCaseError::fail(format!(
                "`{name}` ({broken}) was accepted"
            )))
        }
        Err(e) => e,
    };
    prop_assert_eq!(err.kind, ErrorKind::Input);
    let quoted = format!("`{name}`");
    prop_assert!(
        err.message.contains(&quoted),
        "message does not name {}: {}",
        quoted,
        err.message
    );
    Ok(())
}

const CONTAINER: DashRule = DashRule { min: 3, max: 63 };
const ACI_GROUP: DashRule = DashRule { min: 1, max: 63 };

proptest! {
    #![proptest_config(Config::with_cases(CASES))]

    // Blob containers (Azure: 3-63 characters, lowercase letters, digits and dashes;
    // start with a letter or digit; every dash preceded and followed by one).
    #[test]
    fn container_names_following_azure_are_accepted(name in dash_names(CONTAINER)) {
        prop_assert!(serverless_core::blob::check_container_name(&name).is_ok(), "{}", name);
    }

    #[test]
    fn container_names_breaking_one_rule_are_rejected((rule, name) in broken_dash_names(CONTAINER)) {
        rejected_naming(serverless_core::blob::check_container_name(&name), &name, rule)?;
    }

    // Model names: the container rule (they become blob prefixes and resource tags).
    #[test]
    fn model_names_following_the_container_rule_are_accepted(name in dash_names(CONTAINER)) {
        prop_assert!(serverless_core::store::check_model_name(&name).is_ok(), "{}", name);
    }

    #[test]
    fn model_names_breaking_one_rule_are_rejected((rule, name) in broken_dash_names(CONTAINER)) {
        rejected_naming(serverless_core::store::check_model_name(&name), &name, rule)?;
    }

    // ACI container groups (Azure: 1-63 characters, lowercase letters, digits and
    // hyphens; cannot start or end with a hyphen; no consecutive hyphens).
    #[test]
    fn container_group_names_following_azure_are_accepted(name in dash_names(ACI_GROUP)) {
        prop_assert!(serverless_core::aci::check_name("container group", &name).is_ok(), "{}", name);
    }

    #[test]
    fn container_group_names_breaking_one_rule_are_rejected((rule, name) in broken_dash_names(ACI_GROUP)) {
        rejected_naming(serverless_core::aci::check_name("container group", &name), &name, rule)?;
    }

    // Container registries (Azure: 5-50 alphanumerics).
    #[test]
    fn registry_names_following_azure_are_accepted(name in "[a-zA-Z0-9]{5,50}") {
        prop_assert!(serverless_core::acr::check_registry_name(&name).is_ok(), "{}", name);
    }

    #[test]
    fn registry_names_breaking_one_rule_are_rejected(
        name in prop_oneof![
            "[a-zA-Z0-9]{51,90}",
            "[a-zA-Z0-9]{0,4}",
            ("[a-zA-Z0-9]{5,50}", any::<usize>(), proptest::sample::select(vec!['-', '_', '.', ' ', 'é', '/']))
                .prop_map(|(s, at, c)| {
                    let i = at % s.len();
                    format!("{}{c}{}", &s[..i], &s[i + 1..])
                }),
        ]
    ) {
        rejected_naming(serverless_core::acr::check_registry_name(&name), &name, "registry rule")?;
    }

    // Blob paths `container/name` (Azure: a blob name is 1 to 1,024 characters, any
    // characters; serveRless also refuses the `.`, `..` and empty segments a URL
    // would resolve or that string building leaves, and a trailing dot).
    #[test]
    fn blob_paths_following_azure_are_accepted(
        container in dash_names(CONTAINER),
        blob in prop_oneof![
            "\\PC{1,200}".prop_filter("no `.`, `..` or empty segment, no trailing dot", |b| {
                !b.ends_with('.') && b.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
            }),
            (1usize..=1024).prop_map(|n| "é".repeat(n)),
        ],
    ) {
        let path = format!("{container}/{blob}");
        let (c, b) = serverless_core::blob::split_path(&path).unwrap();
        prop_assert_eq!(c, container.as_str());
        prop_assert_eq!(b, blob.as_str());
    }

    #[test]
    fn blob_paths_breaking_one_rule_are_rejected(
        (container, blob) in prop_oneof![
            // no blob name
            dash_names(CONTAINER).prop_map(|c| (c, String::new())),
            // a blob name longer than 1,024 characters
            (dash_names(CONTAINER), 1025usize..1100).prop_map(|(c, n)| (c, "b".repeat(n))),
            // a segment a URL would resolve into another path, or an empty one
            (dash_names(CONTAINER), "[a-z]{1,10}", proptest::sample::select(vec!["..", ".", ""]))
                .prop_map(|(c, b, seg)| (c, format!("{b}/{seg}/x.csv"))),
            // a container name that breaks its rule
            (broken_dash_names(CONTAINER), "[a-z]{1,10}")
                .prop_filter("has a container part", |((_, c), _)| !c.is_empty() && !c.contains('/'))
                .prop_map(|((_, c), b)| (c, b)),
        ],
    ) {
        let path = format!("{container}/{blob}");
        let err = match serverless_core::blob::split_path(&path) {
            Ok(_) => return Err(TestCaseError::fail(format!("`{path}` was accepted"))),
            Err(e) => e,
        };
        prop_assert_eq!(err.kind, ErrorKind::Input);
        let names_it = err.message.contains(&format!("`{path}`"))
            || err.message.contains(&format!("`{container}`"));
        prop_assert!(names_it, "{}", err.message);
    }
}
