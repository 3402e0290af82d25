//! The alerts: `promtool check rules`, and `promtool test rules` with a case that makes each
//! alert fire on a synthetic series (with its labels and rendered annotations) and one that
//! keeps it silent on a healthy series. Every alert must have both.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::prom::{
    ScratchDir, assert_success, exported_metric_names, metric_names_in, promtool, repo_root, text,
};

const RULES: &str = "deploy/components/monitoring/tokenvend.rules.yaml";
/// The labels every synthetic series carries, as a scrape of job "tokenvend" would.
const TARGET: &str = r#"job="tokenvend",instance="10.0.0.1:9090""#;

/// One promtool unit test: input series, an evaluation time, and the alert's expected labels
/// (beyond `alertname`); `None` expects it silent.
struct Case {
    alert: &'static str,
    series: Vec<(String, &'static str)>,
    eval: &'static str,
    fires_with: Option<Vec<(&'static str, &'static str)>>,
}

fn series(name_and_labels: &str, values: &'static str) -> (String, &'static str) {
    let (name, labels) = name_and_labels
        .split_once('{')
        .map_or((name_and_labels, ""), |(n, l)| (n, l.trim_end_matches('}')));
    let labels = if labels.is_empty() {
        TARGET.to_owned()
    } else {
        format!("{labels},{TARGET}")
    };
    (format!("{name}{{{labels}}}"), values)
}

const INSTANCE: (&str, &str) = ("instance", "10.0.0.1:9090");
const JOB: (&str, &str) = ("job", "tokenvend");

fn cases() -> Vec<Case> {
    let bucket = |le: &'static str, values| {
        series(
            &format!(r#"tokenvend_request_duration_seconds_bucket{{endpoint="token",le="{le}"}}"#),
            values,
        )
    };
    vec![
        Case {
            alert: "TokenvendDown",
            series: vec![series("up", "1 1 0x20")],
            eval: "10m",
            fires_with: Some(vec![("severity", "critical")]),
        },
        Case {
            alert: "TokenvendDown",
            series: vec![series("up", "1x20")],
            eval: "10m",
            fires_with: None,
        },
        Case {
            alert: "TokenvendReplicaDown",
            series: vec![
                series("up", "1 1 0x20"),
                (
                    r#"up{job="tokenvend",instance="10.0.0.2:9090"}"#.to_owned(),
                    "1x22",
                ),
            ],
            eval: "15m",
            fires_with: Some(vec![("severity", "warning"), JOB, INSTANCE]),
        },
        Case {
            alert: "TokenvendReplicaDown",
            series: vec![series("up", "1x20")],
            eval: "15m",
            fires_with: None,
        },
        Case {
            alert: "TokenvendKubernetesAPIErrors",
            series: vec![
                series(
                    r#"tokenvend_kube_token_requests_total{code="201"}"#,
                    "0+60x30",
                ),
                series(
                    r#"tokenvend_kube_token_requests_total{code="503"}"#,
                    "0+5x30",
                ),
                series(
                    r#"tokenvend_kube_token_requests_total{code="timeout"}"#,
                    "0+5x30",
                ),
            ],
            eval: "20m",
            fires_with: Some(vec![("severity", "critical"), JOB]),
        },
        Case {
            alert: "TokenvendKubernetesAPIErrors",
            series: vec![
                series(
                    r#"tokenvend_kube_token_requests_total{code="201"}"#,
                    "0+60x30",
                ),
                series(
                    r#"tokenvend_kube_token_requests_total{code="503"}"#,
                    "0+1x30",
                ),
                series(
                    r#"tokenvend_kube_token_requests_total{code="404"}"#,
                    "0+30x30",
                ),
            ],
            eval: "20m",
            fires_with: None,
        },
        Case {
            alert: "TokenvendKubernetesAPIForbidden",
            series: vec![
                series(
                    r#"tokenvend_kube_token_requests_total{code="201"}"#,
                    "0+60x30",
                ),
                series(
                    r#"tokenvend_kube_token_requests_total{code="403"}"#,
                    "0+1x30",
                ),
            ],
            eval: "20m",
            fires_with: Some(vec![("severity", "warning"), JOB]),
        },
        Case {
            alert: "TokenvendKubernetesAPIForbidden",
            series: vec![
                series(
                    r#"tokenvend_kube_token_requests_total{code="201"}"#,
                    "0+60x30",
                ),
                series(r#"tokenvend_kube_token_requests_total{code="403"}"#, "0x30"),
            ],
            eval: "20m",
            fires_with: None,
        },
        Case {
            alert: "TokenvendRevocationCallsFailing",
            series: vec![
                series(
                    r#"tokenvend_kube_binding_requests_total{call="create_secret",code="success"}"#,
                    "0+60x30",
                ),
                series(
                    r#"tokenvend_kube_binding_requests_total{call="delete_secrets",code="403"}"#,
                    "0+1x30",
                ),
            ],
            eval: "25m",
            fires_with: Some(vec![("severity", "warning"), JOB]),
        },
        Case {
            alert: "TokenvendRevocationCallsFailing",
            // A binding already gone (404) or replaced (409) is not a failure.
            series: vec![
                series(
                    r#"tokenvend_kube_binding_requests_total{call="create_secret",code="success"}"#,
                    "0+60x30",
                ),
                series(
                    r#"tokenvend_kube_binding_requests_total{call="delete_secret",code="404"}"#,
                    "0+1x30",
                ),
            ],
            eval: "25m",
            fires_with: None,
        },
        Case {
            alert: "TokenvendIssuerKeysStale",
            // Loaded at time 0, never again: 13 hours old at 13h.
            series: vec![series(
                r#"tokenvend_jwks_last_success_timestamp_seconds{issuer="github"}"#,
                "0x1000",
            )],
            eval: "13h",
            fires_with: Some(vec![
                ("severity", "warning"),
                ("issuer", "github"),
                JOB,
                INSTANCE,
            ]),
        },
        Case {
            alert: "TokenvendIssuerKeysStale",
            // Reloaded every hour.
            series: vec![series(
                r#"tokenvend_jwks_last_success_timestamp_seconds{issuer="github"}"#,
                "0x59 3600x59 7200x59 10800x59 14400x59 18000x59 21600x59 25200x59 28800x59 32400x59 36000x59 39600x59 43200x59 46800x59",
            )],
            eval: "13h",
            fires_with: None,
        },
        Case {
            alert: "TokenvendIssuerUnreachable",
            series: vec![
                series(
                    r#"tokenvend_jwks_fetches_total{issuer="github",result="success"}"#,
                    "1x40",
                ),
                series(
                    r#"tokenvend_jwks_fetches_total{issuer="github",result="error"}"#,
                    "0+1x40",
                ),
            ],
            eval: "30m",
            fires_with: Some(vec![
                ("severity", "warning"),
                ("issuer", "github"),
                ("result", "error"),
                JOB,
                INSTANCE,
            ]),
        },
        Case {
            alert: "TokenvendIssuerUnreachable",
            // Failures, each followed by a success: flaky, not unreachable.
            series: vec![
                series(
                    r#"tokenvend_jwks_fetches_total{issuer="github",result="success"}"#,
                    "0+1x40",
                ),
                series(
                    r#"tokenvend_jwks_fetches_total{issuer="github",result="error"}"#,
                    "0+1x40",
                ),
            ],
            eval: "30m",
            fires_with: None,
        },
        Case {
            alert: "TokenvendConfigReloadFailed",
            series: vec![
                series(
                    r#"tokenvend_config_reloads_total{result="success"}"#,
                    "0 1x10",
                ),
                series(
                    r#"tokenvend_config_reloads_total{result="error"}"#,
                    "0 0 0 1x10",
                ),
            ],
            eval: "5m",
            fires_with: Some(vec![
                ("severity", "warning"),
                ("result", "error"),
                JOB,
                INSTANCE,
            ]),
        },
        Case {
            alert: "TokenvendConfigReloadFailed",
            series: vec![
                series(
                    r#"tokenvend_config_reloads_total{result="success"}"#,
                    "0 1 2 3x10",
                ),
                series(r#"tokenvend_config_reloads_total{result="error"}"#, "0x10"),
            ],
            eval: "5m",
            fires_with: None,
        },
        Case {
            alert: "TokenvendReplayRejected",
            series: vec![series(
                r#"tokenvend_replays_rejected_total{issuer="github"}"#,
                "0 0 0 1x10",
            )],
            eval: "5m",
            fires_with: Some(vec![
                ("severity", "critical"),
                ("issuer", "github"),
                JOB,
                INSTANCE,
            ]),
        },
        Case {
            alert: "TokenvendReplayRejected",
            // The counter appears at 1: its first replay.
            series: vec![series(
                r#"tokenvend_replays_rejected_total{issuer="github"}"#,
                "_ _ _ 1x10",
            )],
            eval: "5m",
            fires_with: Some(vec![
                ("severity", "critical"),
                ("issuer", "github"),
                JOB,
                INSTANCE,
            ]),
        },
        Case {
            alert: "TokenvendReplayRejected",
            series: vec![series(
                r#"tokenvend_replays_rejected_total{issuer="github"}"#,
                "0x20",
            )],
            eval: "15m",
            fires_with: None,
        },
        Case {
            alert: "TokenvendRateLimited",
            series: vec![
                series(
                    r#"tokenvend_requests_total{endpoint="token",outcome="issued"}"#,
                    "0+60x30",
                ),
                series(
                    r#"tokenvend_rate_limited_total{scope="identity"}"#,
                    "0+20x30",
                ),
            ],
            eval: "25m",
            fires_with: Some(vec![("severity", "warning"), JOB]),
        },
        Case {
            alert: "TokenvendRateLimited",
            series: vec![
                series(
                    r#"tokenvend_requests_total{endpoint="token",outcome="issued"}"#,
                    "0+60x30",
                ),
                series(
                    r#"tokenvend_rate_limited_total{scope="identity"}"#,
                    "0+1x30",
                ),
                series(r#"tokenvend_rate_limited_total{scope="in_flight"}"#, "0x30"),
            ],
            eval: "25m",
            fires_with: None,
        },
        Case {
            alert: "TokenvendLoadShedding",
            series: vec![
                series(
                    r#"tokenvend_requests_total{endpoint="token",outcome="issued"}"#,
                    "0+60x30",
                ),
                series(
                    r#"tokenvend_rate_limited_total{scope="in_flight"}"#,
                    "0+5x30",
                ),
            ],
            eval: "20m",
            fires_with: Some(vec![("severity", "warning"), JOB]),
        },
        Case {
            alert: "TokenvendLoadShedding",
            series: vec![
                series(
                    r#"tokenvend_requests_total{endpoint="token",outcome="issued"}"#,
                    "0+60x30",
                ),
                series(r#"tokenvend_rate_limited_total{scope="in_flight"}"#, "0x30"),
                series(
                    r#"tokenvend_rate_limited_total{scope="identity"}"#,
                    "0+30x30",
                ),
            ],
            eval: "20m",
            fires_with: None,
        },
        Case {
            alert: "TokenvendSlowExchanges",
            // 90% of exchanges take between 1 and 2.5 seconds.
            series: vec![
                bucket("0.5", "0+10x30"),
                bucket("1", "0+10x30"),
                bucket("2.5", "0+100x30"),
                bucket("+Inf", "0+100x30"),
            ],
            eval: "25m",
            fires_with: Some(vec![("severity", "warning"), JOB]),
        },
        Case {
            alert: "TokenvendSlowExchanges",
            series: vec![
                bucket("0.5", "0+100x30"),
                bucket("1", "0+100x30"),
                bucket("2.5", "0+100x30"),
                bucket("+Inf", "0+100x30"),
            ],
            eval: "25m",
            fires_with: None,
        },
        Case {
            alert: "TokenvendStoreDown",
            series: vec![series("tokenvend_store_up", "1 1 0x10")],
            eval: "8m",
            fires_with: Some(vec![("severity", "critical"), JOB, INSTANCE]),
        },
        Case {
            alert: "TokenvendStoreDown",
            // One probe missed, then back: no page.
            series: vec![series("tokenvend_store_up", "1 0 1x10")],
            eval: "8m",
            fires_with: None,
        },
    ]
}

/// The alert rules of the rules file, by name.
fn alert_rules() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(repo_root().join(RULES)).unwrap();
    let document: Value = serde_saphyr::from_str(&text).unwrap();
    document["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap().iter())
        .filter(|rule| rule.get("alert").is_some())
        .map(|rule| (rule["alert"].as_str().unwrap().to_owned(), rule.clone()))
        .collect()
}

/// An annotation as Prometheus renders it for an alert with `labels`: `{{ $labels.NAME }}`
/// replaced (the rules use no other template).
fn render(template: &str, labels: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in labels {
        text = text.replace(&format!("{{{{ $labels.{name} }}}}"), value);
    }
    assert!(
        !text.contains("{{"),
        "an unrendered template in {template:?}"
    );
    text
}

/// The promtool unit-test file for `cases` against the rules file.
fn unit_tests(cases: &[Case], rules: &BTreeMap<String, Value>) -> Value {
    let tests: Vec<Value> = cases
        .iter()
        .map(|case| {
            let rule = &rules[case.alert];
            let expected = match &case.fires_with {
                None => json!([]),
                Some(labels) => {
                    let annotations: BTreeMap<&str, String> = rule["annotations"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| (k.as_str(), render(v.as_str().unwrap(), labels)))
                        .collect();
                    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
                    json!([{"exp_labels": labels, "exp_annotations": annotations}])
                }
            };
            json!({
                "name": format!("{} {}", case.alert, if case.fires_with.is_some() { "fires" } else { "stays silent" }),
                "interval": "1m",
                "input_series": case.series.iter().map(|(s, v)| json!({"series": s, "values": v})).collect::<Vec<_>>(),
                "alert_rule_test": [{"eval_time": case.eval, "alertname": case.alert, "exp_alerts": expected}],
            })
        })
        .collect();
    json!({
        "rule_files": [repo_root().join(RULES)],
        "evaluation_interval": "1m",
        "tests": tests,
    })
}

#[tokio::test]
async fn the_rules_file_passes_promtool_check_rules() {
    let path = repo_root().join(RULES);
    let output = promtool(&["check", "rules", path.to_str().unwrap()], None).await;
    assert_success(&output, "promtool check rules");
    assert!(
        text(&output.stdout).contains("SUCCESS"),
        "{}",
        text(&output.stdout)
    );
}

#[tokio::test]
async fn every_alert_fires_on_its_symptom_and_stays_silent_when_healthy() {
    let rules = alert_rules();
    let cases = cases();
    for (name, rule) in &rules {
        for field in ["summary", "description", "runbook_url"] {
            assert!(
                rule["annotations"][field]
                    .as_str()
                    .is_some_and(|v| !v.is_empty()),
                "{name} has no {field}"
            );
        }
        let anchor = name.to_lowercase();
        assert!(
            rule["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .ends_with(&format!("docs/operating.md#{anchor}")),
            "{name}'s runbook_url points into docs/operating.md"
        );
        let operating = std::fs::read_to_string(repo_root().join("docs/operating.md")).unwrap();
        assert!(
            operating.contains(&format!("### {name}\n")),
            "docs/operating.md has no section `### {name}`"
        );
        let fires = cases
            .iter()
            .any(|c| c.alert == name && c.fires_with.is_some());
        let silent = cases
            .iter()
            .any(|c| c.alert == name && c.fires_with.is_none());
        assert!(fires && silent, "{name} needs a firing and a silent case");
    }
    for case in &cases {
        assert!(rules.contains_key(case.alert), "no alert {}", case.alert);
    }
    let dir = ScratchDir::new("rule-tests");
    let file = dir.write("tests.yaml", &unit_tests(&cases, &rules).to_string());
    let output = promtool(&["test", "rules", file.to_str().unwrap()], None).await;
    assert_success(&output, "promtool test rules");
}

#[test]
fn the_alerts_name_only_metrics_tokenvend_exports() {
    let exported = exported_metric_names();
    for (name, rule) in alert_rules() {
        let used = metric_names_in(rule["expr"].as_str().unwrap());
        assert!(!used.is_empty(), "{name} selects no metric");
        for metric in used {
            assert!(
                metric == "up" || exported.contains(&metric),
                "{name} uses {metric}, which tokenvend does not export"
            );
        }
    }
}
