//! Optional CEL conditions over `claims`, compiled and checked when the policy loads.
//!
//! cel-rust has no type checker, so the load-time check is what can be decided statically:
//! the expression parses, it refers to no variable but `claims` (and the variables its own
//! macros bind), and it calls only functions that exist. At evaluation, anything but `true`
//! (an error, a missing claim, a non-boolean) is a denial.

use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value};
use regex::Regex;
use serde_json::{Map, Value as Json};

/// The standard CEL environment, built once (building it is far dearer than evaluating).
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Functions and operators of the standard environment (without its optional regex and time
/// extensions), as the parser names them.
const KNOWN_FUNCTIONS: &[&str] = &[
    "_==_",
    "_!=_",
    "_<_",
    "_<=_",
    "_>_",
    "_>=_",
    "_&&_",
    "_||_",
    "!_",
    "-_",
    "_+_",
    "_-_",
    "_*_",
    "_/_",
    "_%_",
    "_?_:_",
    "_[_]",
    "@in",
    "@not_strictly_false",
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "string",
    "int",
    "uint",
    "double",
    "bytes",
    "bool",
    "type",
    "dyn",
    "has",
    "max",
    "min",
];

/// Variables bound by the comprehension macros: `claims.groups.exists(g, g == "ops")`.
static MACRO_VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:all|exists|exists_one|map|filter)\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,")
        .expect("valid regex")
});

/// A compiled condition.
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<Program>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

impl Condition {
    /// Parses and checks `source`.
    pub fn compile(source: &str) -> Result<Self, String> {
        let program = ENV
            .compile(source)
            .map_err(|e| first_line(&e.to_string()))?;
        let references = program.references();
        if let Some(unknown) = references
            .functions()
            .into_iter()
            .find(|f| !KNOWN_FUNCTIONS.contains(f))
        {
            return Err(format!("unknown function `{unknown}`"));
        }
        let bound: Vec<&str> = MACRO_VARIABLE
            .captures_iter(source)
            .filter_map(|c| c.get(1))
            .map(|m| m.as_str())
            .collect();
        if let Some(unknown) = references
            .variables()
            .into_iter()
            .find(|v| *v != "claims" && !bound.contains(v))
        {
            return Err(format!(
                "unknown variable `{unknown}` (only `claims` is defined)"
            ));
        }
        Ok(Self {
            source: source.to_owned(),
            program: Arc::new(program),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against the claims: `Ok(true)` only when the expression is the boolean `true`;
    /// `Err` says why it could not be decided (and the policy does not apply).
    pub fn holds(&self, claims: &Map<String, Json>) -> Result<bool, String> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        context
            .add_variable("claims", claims)
            .map_err(|e| e.to_string())?;
        match self.program.execute(&context) {
            Ok(Value::Bool(result)) => Ok(result),
            Ok(other) => Err(format!(
                "the condition is not a boolean ({:?})",
                other.type_of()
            )),
            Err(error) => Err(format!("the condition could not be evaluated: {error}")),
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("ERROR: ")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Json) -> Map<String, Json> {
        let Json::Object(map) = value else {
            unreachable!()
        };
        map
    }

    #[test]
    fn conditions_decide_on_claims() {
        let claims =
            claims(json!({"ref_protected": "true", "groups": ["dev", "ops"], "run_attempt": 2}));
        let rows = [
            (r#"claims.ref_protected == "true""#, Ok(true)),
            (r#"claims.ref_protected == "false""#, Ok(false)),
            (
                r#"'ops' in claims.groups && size(claims.groups) == 2"#,
                Ok(true),
            ),
            (r#"claims.groups.exists(g, g.startsWith("op"))"#, Ok(true)),
            (r#"claims.run_attempt < 3"#, Ok(true)),
        ];
        for (source, expected) in rows {
            assert_eq!(
                Condition::compile(source).unwrap().holds(&claims),
                expected,
                "{source}"
            );
        }
    }

    #[test]
    fn undecidable_conditions_do_not_hold() {
        let claims = claims(json!({"a": "x"}));
        for source in [
            r#"claims.missing == "x""#,
            r#"claims.a"#,
            r#"claims.a + 1 == 2"#,
        ] {
            assert!(
                Condition::compile(source).unwrap().holds(&claims).is_err(),
                "{source}"
            );
        }
    }

    #[test]
    fn broken_conditions_are_refused_at_load() {
        for (source, message) in [
            ("claims.a +", "Syntax error"),
            ("foo(claims.a)", "unknown function `foo`"),
            ("claims.env.matches('prod.*')", "unknown function `matches`"),
            ("claim.a == 'x'", "unknown variable `claim`"),
            ("other == 1", "unknown variable `other`"),
        ] {
            let error = Condition::compile(source).unwrap_err();
            assert!(error.contains(message), "{source}: {error}");
        }
    }
}
