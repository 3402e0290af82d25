//! Claim matchers: compiled once from the `match:` block, applied to verified claims.
//!
//! Claims are data, never patterns: a matcher's value comes only from the config file.

use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

/// Where a matcher looks: a top-level claim by name, or a nested one by JSON pointer (`/a/b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimPath {
    Name(String),
    Pointer(String),
}

impl ClaimPath {
    /// A key starting with `/` is a JSON pointer (RFC 6901); anything else is a claim name.
    pub fn parse(key: &str) -> Self {
        if key.starts_with('/') {
            Self::Pointer(key.to_owned())
        } else {
            Self::Name(key.to_owned())
        }
    }

    /// The claim's value, if present.
    pub fn lookup<'c>(&self, claims: &'c Map<String, Value>) -> Option<&'c Value> {
        match self {
            Self::Name(name) => claims.get(name),
            Self::Pointer(pointer) => {
                let (first, rest) = split_first_segment(pointer);
                let top = claims.get(&unescape(first))?;
                if rest.is_empty() {
                    Some(top)
                } else {
                    top.pointer(rest)
                }
            }
        }
    }

    /// The key as written in the config.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Name(text) | Self::Pointer(text) => text,
        }
    }

    /// The top-level claim this path reads (`/a/b` reads inside `a`).
    pub fn top_claim(&self) -> String {
        match self {
            Self::Name(name) => name.clone(),
            Self::Pointer(pointer) => unescape(split_first_segment(pointer).0),
        }
    }

    /// Whether the claim can say who is asking: every token of an issuer carries the same
    /// issuer, audiences and authorised party, and times say nothing about identity.
    pub fn identifies_caller(&self) -> bool {
        !NON_IDENTIFYING_CLAIMS.contains(&self.top_claim().as_str())
    }
}

/// Claims that cannot tell the callers of one issuer apart.
pub const NON_IDENTIFYING_CLAIMS: &[&str] =
    &["iss", "aud", "azp", "exp", "iat", "nbf", "auth_time"];

/// Claim values of very different shapes (identifiers, refs, subjects, URLs, e-mail, a single
/// letter, non-ASCII). A regex that accepts every one of them is taken to accept any value:
/// `.*`, `.+`, `[\s\S]*`, `\S+`, `(.*)|x` all do; a pattern that constrains anything refuses
/// at least one. Deciding "matches every string" exactly is not needed: a pattern that misses
/// only exotic values still tells no callers apart.
const ANY_VALUE_PROBES: &[&str] = &[
    "a",
    "Z",
    "7",
    "-",
    "true",
    "123456",
    "production",
    "refs/heads/main",
    "repo:acme/app:ref:refs/heads/main",
    "acme/pipelines/.github/workflows/deploy.yml@refs/tags/v1",
    "https://example.com/x?y=1",
    "someone@example.com",
    "Zürich-Ωμέγα",
];

fn split_first_segment(pointer: &str) -> (&str, &str) {
    let body = &pointer[1..];
    match body.find('/') {
        Some(end) => (&body[..end], &body[end..]),
        None => (body, ""),
    }
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// What a claim value must be. Comparison is by JSON value and byte-exact for strings:
/// no trimming, no case folding, no Unicode normalisation.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// The claim equals this scalar (string, number or boolean).
    Exact(Value),
    /// The claim equals one of these scalars.
    OneOf(Vec<Value>),
    /// The claim is a string matching this glob, compiled to an anchored regex in which `*`
    /// matches any run of characters but `/` and `:`, and `**` any run crossing them.
    Glob { pattern: String, compiled: Regex },
    /// The claim is a string matching this regex, always anchored at both ends.
    Regex { pattern: String, compiled: Regex },
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::OneOf(a), Self::OneOf(b)) => a == b,
            (Self::Glob { pattern: a, .. }, Self::Glob { pattern: b, .. })
            | (Self::Regex { pattern: a, .. }, Self::Regex { pattern: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// Compiled patterns are capped: a policy file is trusted, but a typo should not cost memory.
const MAX_PATTERN_BYTES: usize = 1 << 16;

impl Matcher {
    /// Compiles a matcher from its YAML form: a scalar, or `{oneOf: [scalars]}`.
    pub fn compile(raw: &Value) -> Result<Self, String> {
        match raw {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(Self::Exact(raw.clone())),
            Value::Null => Err("a matcher cannot be null".to_owned()),
            Value::Array(_) => Err("a list is ambiguous here; write {oneOf: [...]}".to_owned()),
            Value::Object(object) => compile_operator(object),
        }
    }

    /// Whether the claim value satisfies the matcher. An array claim holds if any element does.
    pub fn holds(&self, claim: &Value) -> bool {
        match claim {
            Value::Array(elements) => elements.iter().any(|element| self.holds_scalar(element)),
            scalar => self.holds_scalar(scalar),
        }
    }

    /// Whether the matcher lets any value through, so that it tells no callers apart: a glob
    /// of nothing but `*`, or a regex accepting every one of [`ANY_VALUE_PROBES`]. Exact values
    /// and `oneOf` never do.
    pub fn accepts_anything(&self) -> bool {
        match self {
            Self::Exact(_) | Self::OneOf(_) => false,
            Self::Glob { pattern, .. } => !pattern.is_empty() && pattern.chars().all(|c| c == '*'),
            Self::Regex { compiled, .. } => ANY_VALUE_PROBES
                .iter()
                .all(|probe| compiled.is_match(probe)),
        }
    }

    /// For a glob that does not hold for `claim` but would with every `*` read as `**` (a
    /// single `*` met a `/` or `:`), a line saying so and naming the glob to write.
    pub fn separator_hint(&self, claim: &Value) -> Option<String> {
        let Self::Glob { pattern, .. } = self else {
            return None;
        };
        if self.holds(claim) {
            return None;
        }
        let crossing = crossing_glob(pattern);
        let compiled = anchored(&glob_to_regex(&crossing)).ok()?;
        let holds = |value: &Value| value.as_str().is_some_and(|text| compiled.is_match(text));
        let would = match claim {
            Value::Array(elements) => elements.iter().any(holds),
            scalar => holds(scalar),
        };
        would.then(|| {
            format!(
                "glob {pattern:?}: `*` stops at `/` and `:`; `**` crosses them: \
                 {{glob: {crossing:?}}} would match"
            )
        })
    }

    fn holds_scalar(&self, claim: &Value) -> bool {
        match self {
            Self::Exact(expected) => expected == claim,
            Self::OneOf(options) => options.iter().any(|option| option == claim),
            Self::Glob { compiled, .. } | Self::Regex { compiled, .. } => {
                claim.as_str().is_some_and(|text| compiled.is_match(text))
            }
        }
    }
}

fn compile_operator(object: &Map<String, Value>) -> Result<Matcher, String> {
    let mut entries = object.iter();
    let (Some((operator, operand)), None) = (entries.next(), entries.next()) else {
        return Err(
            "a matcher object must have exactly one operator, e.g. {oneOf: [...]}".to_owned(),
        );
    };
    match operator.as_str() {
        "oneOf" => {
            let Value::Array(options) = operand else {
                return Err("oneOf takes a list of values".to_owned());
            };
            if options.is_empty() {
                return Err("oneOf needs at least one value".to_owned());
            }
            if let Some(bad) = options.iter().find(|option| !is_scalar(option)) {
                return Err(format!(
                    "oneOf values must be strings, numbers or booleans, not {bad}"
                ));
            }
            Ok(Matcher::OneOf(options.clone()))
        }
        "glob" => {
            let pattern = operand.as_str().ok_or("glob takes a string")?;
            let compiled = anchored(&glob_to_regex(pattern))?;
            Ok(Matcher::Glob {
                pattern: pattern.to_owned(),
                compiled,
            })
        }
        "regex" => {
            let pattern = operand.as_str().ok_or("regex takes a string")?;
            let compiled = anchored(pattern)?;
            Ok(Matcher::Regex {
                pattern: pattern.to_owned(),
                compiled,
            })
        }
        other => Err(format!(
            "unknown matcher operator `{other}` (expected oneOf, glob or regex)"
        )),
    }
}

/// `*` → any run of characters except `/`, `:` and control characters (so a glob never
/// crosses a path or field boundary); `**` (two or more stars in a row) → any run of
/// characters but control characters, separators included; everything else literal.
fn glob_to_regex(glob: &str) -> String {
    glob_regex_with(glob, r"[^/:\p{Cc}]*")
}

/// The glob with every `*` read as `**`: what a user who expected `*` to cross separators meant.
fn crossing_glob(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    let mut stars = false;
    for c in glob.chars().map(Some).chain(std::iter::once(None)) {
        if c == Some('*') {
            stars = true;
            continue;
        }
        if std::mem::take(&mut stars) {
            out.push_str("**");
        }
        out.extend(c);
    }
    out
}

/// Literal runs escaped, `**` (or more stars) → any run but control characters, a lone `*` →
/// `single`.
fn glob_regex_with(glob: &str, single: &str) -> String {
    let mut out = String::new();
    let mut literal = String::new();
    let mut stars = 0;
    for c in glob.chars().map(Some).chain(std::iter::once(None)) {
        if c == Some('*') {
            stars += 1;
            continue;
        }
        if stars > 0 {
            out.push_str(&regex::escape(&literal));
            literal.clear();
            out.push_str(if stars == 1 { single } else { r"[^\p{Cc}]*" });
            stars = 0;
        }
        if let Some(c) = c {
            literal.push(c);
        }
    }
    out.push_str(&regex::escape(&literal));
    out
}

/// Compiles `pattern` so that it must match the whole claim: `^(?:pattern)$`. The pattern is
/// first compiled on its own: wrapped, `a)|(.*` would parse as `^(?:a)|(.*)$` and match anything.
fn anchored(pattern: &str) -> Result<Regex, String> {
    let build = |text: &str| {
        RegexBuilder::new(text)
            .size_limit(MAX_PATTERN_BYTES * 16)
            .build()
            .map_err(|e| format!("invalid pattern: {e}"))
    };
    build(pattern)?;
    build(&format!("^(?:{pattern})$"))
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Map<String, Value> {
        let Value::Object(map) = json!({
            "ref": "refs/heads/main",
            "job_workflow_ref": "acme/pipelines/.github/workflows/deploy.yml@refs/heads/main",
            "sub": "repo:acme/app:ref:refs/heads/main",
            "repository_id": "123456",
            "run_attempt": 2,
            "ref_protected": true,
            "groups": ["dev", "ops"],
            "a/b": "slash",
            "nested": {"claim": "x", "list": ["y"]},
        }) else {
            unreachable!()
        };
        map
    }

    #[test]
    fn matchers_hold_exactly_as_the_table_says() {
        let claims = claims();
        let rows: &[(&str, Value, bool)] = &[
            ("ref", json!("refs/heads/main"), true),
            ("ref", json!("refs/heads/Main"), false),
            ("ref", json!("refs/heads/main\n"), false),
            ("ref", json!("refs/heads/main "), false),
            ("ref", json!("refs/heads/*"), false),
            ("ref", json!("refs/heads/mаin"), false), // Cyrillic а
            ("repository_id", json!("123456"), true),
            ("repository_id", json!(123456), false),
            ("run_attempt", json!(2), true),
            ("run_attempt", json!("2"), false),
            ("ref_protected", json!(true), true),
            ("ref_protected", json!("true"), false),
            ("groups", json!("ops"), true),
            ("groups", json!("dev,ops"), false),
            ("groups", json!({"oneOf": ["qa", "ops"]}), true),
            ("groups", json!({"oneOf": ["qa"]}), false),
            ("missing", json!("x"), false),
            ("/nested/claim", json!("x"), true),
            ("/nested/list", json!("y"), true),
            ("/nested/absent", json!("y"), false),
            ("/a~1b", json!("slash"), true),
            // glob: `*` never crosses `/` or `:`, everything else is literal.
            (
                "job_workflow_ref",
                json!({"glob": "acme/pipelines/.github/workflows/deploy.yml@refs/heads/*"}),
                true,
            ),
            (
                "job_workflow_ref",
                json!({"glob": "acme/*/.github/workflows/deploy.yml@refs/heads/*"}),
                true,
            ),
            (
                "job_workflow_ref",
                json!({"glob": "acme/pipelines/.github/workflows/deploy.yml@*"}),
                false,
            ),
            ("job_workflow_ref", json!({"glob": "acme/*"}), false),
            ("job_workflow_ref", json!({"glob": "*"}), false),
            (
                "sub",
                json!({"glob": "repo:acme/*:ref:refs/heads/main"}),
                true,
            ),
            (
                "sub",
                json!({"glob": "repo:acme/app:ref:refs/heads/*"}),
                true,
            ),
            ("sub", json!({"glob": "repo:*:ref:refs/heads/main"}), false),
            ("sub", json!({"glob": "repo:acme*"}), false),
            (
                "sub",
                json!({"glob": "repo:acme/app:ref:refs/*/main"}),
                true,
            ),
            (
                "sub",
                json!({"glob": "repo:acme/ap?:ref:refs/heads/main"}),
                false,
            ),
            (
                "sub",
                json!({"glob": "repo:acme/app:ref:refs/heads/mai[n]"}),
                false,
            ),
            ("ref", json!({"glob": "refs/heads/*"}), true),
            ("ref", json!({"glob": "refs/heads/m*"}), true),
            ("ref", json!({"glob": "REFS/heads/*"}), false),
            ("ref", json!({"glob": "refs/heads/main*"}), true),
            ("run_attempt", json!({"glob": "*"}), false),
            // regex: anchored at both ends, whatever the pattern says.
            (
                "ref",
                json!({"regex": "refs/heads/(main|release-.*)"}),
                true,
            ),
            ("ref", json!({"regex": "refs/heads"}), false),
            ("ref", json!({"regex": "heads/main"}), false),
            ("ref", json!({"regex": "refs/heads/main|evil"}), true),
            ("ref", json!({"regex": "evil|refs/heads/main"}), true),
            ("ref", json!({"regex": ".*"}), true),
            ("run_attempt", json!({"regex": "2"}), false),
            ("groups", json!({"regex": "op."}), true),
        ];
        for (key, raw, expected) in rows {
            let matcher = Matcher::compile(raw).unwrap();
            let path = ClaimPath::parse(key);
            let holds = path
                .lookup(&claims)
                .is_some_and(|value| matcher.holds(value));
            assert_eq!(holds, *expected, "{key} {raw}");
        }
    }

    #[test]
    fn claim_values_that_look_like_patterns_are_data() {
        let hostile = [
            "acme/*",
            "acme/app\u{0}",
            "acme/app\n",
            "acme/app/x",
            "acme:app",
            "ACME/app",
            "acme/\u{0430}pp",
            ".*",
        ];
        for (matcher, pattern) in [
            ("glob", "acme/app"),
            ("regex", "acme/app"),
            ("glob", "acme/a*"),
        ] {
            let compiled = Matcher::compile(&json!({ matcher: pattern })).unwrap();
            for value in hostile {
                assert!(
                    !compiled.holds(&json!(value)),
                    "{matcher} {pattern} held for {value:?}"
                );
            }
        }
    }

    #[test]
    fn claim_values_with_nul_never_match_a_prefix() {
        let Value::Object(claims) = json!({"sub": "repo:acme/app\u{0}evil"}) else {
            unreachable!()
        };
        let matcher = Matcher::compile(&json!("repo:acme/app")).unwrap();
        assert!(!matcher.holds(&claims["sub"]));
    }

    #[test]
    fn malformed_matchers_are_refused_with_a_reason() {
        for raw in [
            json!(null),
            json!(["a", "b"]),
            json!({}),
            json!({"oneOf": []}),
            json!({"oneOf": "a"}),
            json!({"oneOf": [["a"]]}),
            json!({"oneOf": ["a"], "glob": "b"}),
            json!({"like": "a%"}),
        ] {
            assert!(Matcher::compile(&raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn a_regex_that_only_parses_once_wrapped_is_refused() {
        // Each is invalid alone; wrapped in `^(?:…)$` it would parse and match other refs.
        for pattern in [
            "refs/heads/main)|(.*",
            "refs/heads/main)|(?:refs/heads/evil",
            "a)(b",
            ")",
        ] {
            let refused = Matcher::compile(&json!({ "regex": pattern }));
            let message = refused.expect_err(pattern);
            assert!(message.contains("invalid pattern"), "{pattern}: {message}");
        }
    }

    #[test]
    fn double_star_crosses_separators_and_single_star_does_not() {
        // Real-shaped claims from GitHub Actions and GitLab CI.
        let rows: &[(&str, &str, bool)] = &[
            (
                "repo:acme/webapp:*",
                "repo:acme/webapp:ref:refs/heads/main",
                false,
            ),
            (
                "repo:acme/webapp:**",
                "repo:acme/webapp:ref:refs/heads/main",
                true,
            ),
            (
                "repo:acme/webapp:**",
                "repo:acme/webapp:environment:production",
                true,
            ),
            (
                "repo:acme/webapp:**",
                "repo:acme/webapp-evil:ref:refs/heads/main",
                false,
            ),
            ("repo:acme/**", "repo:acme/webapp:ref:refs/heads/main", true),
            (
                "repo:acme/**",
                "repo:acmeevil/webapp:ref:refs/heads/main",
                false,
            ),
            (
                "acme/pipelines/.github/workflows/deploy.yml@*",
                "acme/pipelines/.github/workflows/deploy.yml@refs/heads/main",
                false,
            ),
            (
                "acme/pipelines/.github/workflows/deploy.yml@**",
                "acme/pipelines/.github/workflows/deploy.yml@refs/heads/main",
                true,
            ),
            (
                "acme/pipelines/.github/workflows/deploy.yml@**",
                "acme/pipelines/.github/workflows/other.yml@refs/heads/main",
                false,
            ),
            ("refs/heads/*", "refs/heads/main", true),
            ("refs/heads/*", "refs/heads/feature/x", false),
            ("refs/heads/**", "refs/heads/feature/x", true),
            ("refs/heads/**", "refs/tags/v1", false),
            ("acme/*", "acme/web/app", false),
            ("acme/**", "acme/web/app", true),
            ("acme/**/deploy", "acme/web/app/deploy", true),
            ("acme/**/deploy", "acme/web/app/deploy/x", false),
            (
                "project_path:acme/**:ref:main",
                "project_path:acme/a/b:ref:main",
                true,
            ),
            ("a**", "a\nb", false),
            ("a**", "a\u{0}b", false),
            ("a***", "a/b:c", true),
        ];
        for (glob, value, expected) in rows {
            let matcher = Matcher::compile(&json!({ "glob": glob })).unwrap();
            assert_eq!(
                matcher.holds(&json!(value)),
                *expected,
                "{glob} on {value:?}"
            );
        }
        // A glob of nothing but stars accepts anything, `**` as much as `*`.
        for glob in ["*", "**", "***"] {
            assert!(
                Matcher::compile(&json!({ "glob": glob }))
                    .unwrap()
                    .accepts_anything(),
                "{glob}"
            );
        }
        assert!(
            !Matcher::compile(&json!({"glob": "a**"}))
                .unwrap()
                .accepts_anything()
        );
    }

    #[test]
    fn a_single_star_that_met_a_separator_suggests_double_star() {
        let glob = Matcher::compile(&json!({"glob": "repo:acme/webapp:*"})).unwrap();
        let hint = glob
            .separator_hint(&json!("repo:acme/webapp:ref:refs/heads/main"))
            .expect("a hint");
        assert!(hint.contains("repo:acme/webapp:**"), "{hint}");
        // No hint when `**` would not match either, or when the glob holds.
        assert_eq!(glob.separator_hint(&json!("repo:other/webapp:ref:x")), None);
        assert_eq!(glob.separator_hint(&json!("repo:acme/webapp:x")), None);
        let exact = Matcher::compile(&json!("repo:acme/webapp:ref:x")).unwrap();
        assert_eq!(exact.separator_hint(&json!("repo:acme/webapp:ref:y")), None);
    }
}
