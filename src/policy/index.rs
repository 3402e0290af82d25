//! Which of an issuer's policies can apply to a set of claims, without testing every one.
//!
//! Policies of one issuer usually pin the same claim to fixed strings (`repository`,
//! `project_path`, `sub`): a thousand pipelines, a thousand policies. The claim pinned by most
//! of them is indexed by the strings each accepts; a request then tests only the policies
//! indexed under its own value of that claim, plus those that do not pin it. The answer is the
//! same as testing all of them: a policy left out requires the claim, or one of its elements,
//! to equal a string the caller's claim is not.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{ClaimPath, Matcher, Policy};

/// An issuer's policies (indices into the policy list, in file order) with, when at least two
/// of them pin a common claim, the index over it.
#[derive(Debug, Clone, Default)]
pub(super) struct IssuerPolicies {
    pub all: Vec<usize>,
    index: Option<ExactIndex>,
}

#[derive(Debug, Clone)]
struct ExactIndex {
    path: ClaimPath,
    /// Policies by each string they accept at `path`.
    by_value: HashMap<String, Vec<usize>>,
    /// Policies that do not pin `path` to strings: candidates whatever the claim says.
    rest: Vec<usize>,
}

/// Smallest number of policies an issuer must have for an index to be built; below it a scan
/// of them is as cheap.
const MIN_INDEXED: usize = 8;

impl IssuerPolicies {
    /// Builds the index once every policy of the issuer is known.
    pub fn build_index(&mut self, policies: &[Policy]) {
        self.index = ExactIndex::build(policies, &self.all);
    }

    /// The claim the index is over, if there is an index.
    pub fn indexed_claim(&self) -> Option<&ClaimPath> {
        self.index.as_ref().map(|index| &index.path)
    }

    /// The policies that can apply to `claims`, in file order: all of them, or the index's
    /// candidates.
    pub fn candidates(&self, claims: &Map<String, Value>) -> Cow<'_, [usize]> {
        let Some(index) = &self.index else {
            return Cow::Borrowed(&self.all);
        };
        let mut picked = index.rest.clone();
        let mut add = |value: &Value| {
            if let Some(indices) = value.as_str().and_then(|text| index.by_value.get(text)) {
                picked.extend_from_slice(indices);
            }
        };
        match index.path.lookup(claims) {
            Some(Value::Array(elements)) => elements.iter().for_each(&mut add),
            Some(scalar) => add(scalar),
            None => {}
        }
        picked.sort_unstable();
        picked.dedup();
        Cow::Owned(picked)
    }
}

impl ExactIndex {
    /// Of the claims pinned by the issuer's policies, the one whose index leaves the fewest
    /// candidates in the worst case (on a tie, the first in file order); none when no index
    /// would leave fewer than all of them, or there are too few policies to bother.
    fn build(policies: &[Policy], members: &[usize]) -> Option<Self> {
        if members.len() < MIN_INDEXED {
            return None;
        }
        let mut paths: Vec<&ClaimPath> = Vec::new();
        for &member in members {
            for (path, matcher) in &policies[member].matchers {
                if pinned_strings(matcher).is_some() && !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
        paths
            .into_iter()
            .map(|path| Self::over(path, policies, members))
            .min_by_key(Self::worst_case)
            .filter(|index| index.worst_case() < members.len())
    }

    fn over(path: &ClaimPath, policies: &[Policy], members: &[usize]) -> Self {
        let mut index = Self {
            path: path.clone(),
            by_value: HashMap::new(),
            rest: Vec::new(),
        };
        for &member in members {
            let pinned = policies[member]
                .matchers
                .iter()
                .filter(|(candidate, _)| candidate == path)
                .find_map(|(_, matcher)| pinned_strings(matcher));
            match pinned {
                Some(values) => {
                    for value in values {
                        let entry = index.by_value.entry(value.to_owned()).or_default();
                        if entry.last() != Some(&member) {
                            entry.push(member);
                        }
                    }
                }
                None => index.rest.push(member),
            }
        }
        index
    }

    /// The most candidates a claim with one value can leave.
    fn worst_case(&self) -> usize {
        self.rest.len() + self.by_value.values().map(Vec::len).max().unwrap_or(0)
    }
}

/// The strings a matcher accepts, if it accepts nothing else: an exact string, or a `oneOf`
/// of strings only. (Numbers are left out: JSON equality of numbers is not equality of text.)
fn pinned_strings(matcher: &Matcher) -> Option<Vec<&str>> {
    match matcher {
        Matcher::Exact(Value::String(text)) => Some(vec![text.as_str()]),
        Matcher::OneOf(options) => options.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::test_support::claims;
    use super::super::{PolicySet, Trace};
    use super::*;

    fn compile(policies: Vec<Value>) -> PolicySet {
        super::super::test_support::compile(Value::Array(policies))
    }

    fn policy(n: usize, matchers: &Value) -> Value {
        json!({"name": format!("p{n}"), "issuer": "ci", "match": matchers,
               "grant": {"serviceAccounts": [format!("ns/sa{n}")]}})
    }

    /// The names of the policies that apply, found through the index and by testing all.
    fn applicable_both_ways(set: &PolicySet, claims: &Map<String, Value>) -> [Vec<String>; 2] {
        let indexed = set
            .applicable("ci", claims, &mut Trace::off())
            .iter()
            .map(|a| a.policy.name.clone())
            .collect();
        let scanned = set
            .iter()
            .filter(|policy| policy.issuer == "ci" && policy.applies(claims, &mut Trace::off()))
            .map(|policy| policy.name.clone())
            .collect();
        [indexed, scanned]
    }

    #[test]
    fn a_request_tests_only_the_policies_of_its_own_value_and_those_not_pinning_it() {
        let mut policies: Vec<Value> = (0..20)
            .map(|n| policy(n, &json!({"repository": format!("acme/app-{n}")})))
            .collect();
        policies.push(policy(20, &json!({"repository": {"glob": "acme/*"}})));
        policies.push(policy(21, &json!({"ref": "refs/heads/main"})));
        policies.push(policy(
            22,
            &json!({"repository": {"oneOf": ["acme/app-3", "acme/app-4"]}}),
        ));
        let set = compile(policies);
        let ci = &set.by_issuer["ci"];
        let caller = claims(json!({"repository": "acme/app-3", "ref": "refs/heads/dev"}));
        assert_eq!(*ci.candidates(&caller), [3, 20, 21, 22]);
        let several = claims(json!({"repository": ["acme/app-4", "acme/app-7", 7]}));
        assert_eq!(*ci.candidates(&several), [4, 7, 20, 21, 22]);
        let unpinned = claims(json!({"repository": "other/app"}));
        assert_eq!(*ci.candidates(&unpinned), [20, 21]);
        assert_eq!(*ci.candidates(&claims(json!({}))), [20, 21]);
        assert_eq!(
            applicable_both_ways(&set, &caller),
            [vec!["p3", "p20", "p22"], vec!["p3", "p20", "p22"]]
        );
    }

    #[test]
    fn an_explanation_tests_the_same_candidates_and_names_the_policies_the_index_left_out() {
        let set = compile(
            (0..10)
                .map(|n| policy(n, &json!({"repository": format!("acme/app-{n}")})))
                .collect(),
        );
        let caller = claims(json!({"repository": "acme/app-3"}));
        let (decision, lines) = set.explain("ci", &caller, &crate::policy::Request::default());
        assert_eq!(decision.unwrap().policy, "p3");
        assert!(
            lines.contains(&r#"policy "p5": claim repository does not match"#.to_owned()),
            "{lines:?}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|line| line.ends_with("does not match"))
                .count(),
            9,
            "{lines:?}"
        );
    }

    #[test]
    fn the_claim_that_leaves_the_fewest_candidates_is_indexed() {
        let set = compile(
            (0..20)
                .map(|n| {
                    policy(
                        n,
                        &json!({"ref": "refs/heads/main", "repository": format!("acme/app-{n}")}),
                    )
                })
                .collect(),
        );
        let caller = claims(json!({"ref": "refs/heads/main", "repository": "acme/app-7"}));
        assert_eq!(*set.by_issuer["ci"].candidates(&caller), [7]);
        // Pinning one shared value narrows nothing: no index.
        let shared = compile(
            (0..20)
                .map(|n| policy(n, &json!({"ref": "refs/heads/main"})))
                .collect(),
        );
        assert!(shared.by_issuer["ci"].index.is_none());
    }

    #[test]
    fn few_pinned_policies_are_scanned_without_an_index() {
        let set = compile(
            (0..MIN_INDEXED - 1)
                .map(|n| policy(n, &json!({"repository": format!("acme/app-{n}")})))
                .collect(),
        );
        let ci = &set.by_issuer["ci"];
        assert!(ci.index.is_none());
        let caller = claims(json!({"repository": "acme/app-1"}));
        assert_eq!(*ci.candidates(&caller), *ci.all);
    }

    /// Matchers over a small alphabet, so that policies and claims often meet.
    fn matcher() -> impl Strategy<Value = Value> {
        let value = prop_oneof![
            Just(json!("a")),
            Just(json!("b")),
            Just(json!("c")),
            Just(json!(1)),
        ];
        prop_oneof![
            value.clone(),
            proptest::collection::vec(value, 1..3).prop_map(|options| json!({"oneOf": options})),
            Just(json!({"glob": "*"})),
            Just(json!({"regex": "a|c"})),
        ]
    }

    fn claim() -> impl Strategy<Value = Option<Value>> {
        let scalar = prop_oneof![
            Just(json!("a")),
            Just(json!("b")),
            Just(json!("d")),
            Just(json!("1")),
            Just(json!(1)),
            Just(json!(1.0)),
            Just(json!(null)),
        ];
        proptest::option::of(prop_oneof![
            scalar.clone(),
            proptest::collection::vec(scalar, 0..3).prop_map(Value::Array),
        ])
    }

    proptest! {
        /// Through the index or by testing every policy: the same policies apply, in the same
        /// order, whatever the policies and claims.
        #[test]
        fn the_index_never_changes_which_policies_apply(
            matchers in proptest::collection::vec(
                (
                    proptest::option::of(matcher()),
                    proptest::option::of(matcher()),
                    proptest::option::of(matcher()),
                ),
                1..40,
            ),
            repository in claim(),
            environment in claim(),
        ) {
            let policies: Vec<Value> = matchers
                .into_iter()
                .enumerate()
                .map(|(n, (on_repository, on_environment, on_repository_pointer))| {
                    let mut block = Map::new();
                    if let Some(m) = on_repository {
                        block.insert("repository".into(), m);
                    }
                    // The same claim spelt as a pointer: a second path to the same value.
                    if let Some(m) = on_repository_pointer {
                        block.insert("/repository".into(), m);
                    }
                    if let Some(m) = on_environment {
                        block.insert("/environment".into(), m);
                    }
                    // Every policy must tell callers apart (a lone `{glob: "*"}` does not);
                    // a glob pins no fixed string, so the index never picks this claim.
                    block.insert("ref".into(), json!({"glob": "refs/heads/*"}));
                    policy(n, &Value::Object(block))
                })
                .collect();
            let set = compile(policies);
            let mut caller = Map::new();
            caller.insert("ref".into(), json!("refs/heads/main"));
            if let Some(value) = repository {
                caller.insert("repository".into(), value);
            }
            if let Some(value) = environment {
                caller.insert("environment".into(), value);
            }
            let [indexed, scanned] = applicable_both_ways(&set, &caller);
            prop_assert_eq!(indexed, scanned);
        }
    }
}
