//! The Grafana dashboard: every panel query parses (promtool checks them as recording rules)
//! and selects only metrics tokenvend exports.

use serde_json::{Value, json};

use crate::prom::{
    ScratchDir, assert_success, exported_metric_names, metric_names_in, promtool, repo_root,
};

const DASHBOARD: &str = "deploy/components/monitoring/tokenvend-dashboard.json";

/// Every `(panel title, expr)` of the dashboard, with Grafana's variables as Grafana would
/// substitute them.
fn queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join(DASHBOARD)).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m")
                .replace("$job", "tokenvend");
            assert!(!expr.contains('$'), "an unknown variable in {expr}");
            queries.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    queries
}

#[tokio::test]
async fn every_dashboard_query_parses() {
    let queries = queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
        .collect();
    let dir = ScratchDir::new("dashboard");
    let file = dir.write(
        "dashboard-rules.yaml",
        &json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    );
    let output = promtool(&["check", "rules", file.to_str().unwrap()], None).await;
    assert_success(&output, "promtool check rules on the dashboard's queries");
}

#[test]
fn the_dashboard_selects_only_metrics_tokenvend_exports() {
    let exported = exported_metric_names();
    for (title, expr) in queries() {
        let used = metric_names_in(&expr);
        assert!(!used.is_empty(), "{title}: {expr} selects no metric");
        for metric in used {
            assert!(
                metric == "up" || exported.contains(&metric),
                "{title}: {metric} is not a metric tokenvend exports"
            );
        }
    }
}
