//! deploy/ is in step with config/ and the code it deploys.

use serde_json::Value;
use tokenvend::http::ROUTES;

use crate::support::repo_root;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

#[test]
fn the_base_config_is_the_example_config() {
    assert_eq!(
        read("deploy/base/config.yaml"),
        read("config/github-actions.yaml"),
        "deploy/base/config.yaml is a copy of config/github-actions.yaml (kustomize loads \
         no files from outside the base): copy it again"
    );
}

#[test]
fn the_probes_ask_for_routed_health_paths_on_the_served_ports() {
    let deployment: Value = serde_saphyr::from_str(&read("deploy/base/deployment.yaml")).unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "http", "{probe}");
        assert!(ROUTES.contains(&("GET", path)), "{path} is routed");
    }
    let ports: Vec<(&str, i64)> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    // The defaults of `serve --listen` and `--admin-listen`.
    assert_eq!(ports, [("http", 8080), ("admin", 9090)]);
}

#[test]
fn the_prometheus_rule_carries_the_plain_rules_file_unchanged() {
    let rules: Value =
        serde_saphyr::from_str(&read("deploy/components/monitoring/tokenvend.rules.yaml")).unwrap();
    let resource: Value =
        serde_saphyr::from_str(&read("deploy/components/monitoring/prometheusrule.yaml")).unwrap();
    assert_eq!(resource["kind"], "PrometheusRule");
    assert!(rules["groups"].as_array().is_some_and(|g| !g.is_empty()));
    // Rule by rule first, for a short message naming the alert that differs.
    let ours = rules["groups"][0]["rules"].as_array().unwrap();
    let theirs = resource["spec"]["groups"][0]["rules"].as_array().unwrap();
    for (rule, copy) in ours.iter().zip(theirs) {
        assert_eq!(
            copy, rule,
            "{} differs in prometheusrule.yaml",
            rule["alert"]
        );
    }
    assert_eq!(
        resource["spec"]["groups"], rules["groups"],
        "the PrometheusRule's spec.groups must be tokenvend.rules.yaml's groups: copy them again"
    );
}

#[test]
fn the_dashboard_config_map_is_generated_from_the_dashboard_file() {
    let kustomization: Value =
        serde_saphyr::from_str(&read("deploy/components/monitoring/kustomization.yaml")).unwrap();
    let generator = &kustomization["configMapGenerator"][0];
    assert_eq!(
        generator["files"],
        serde_json::json!(["tokenvend-dashboard.json"])
    );
    assert_eq!(generator["options"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value = serde_json::from_str(&read(
        "deploy/components/monitoring/tokenvend-dashboard.json",
    ))
    .unwrap();
    assert_eq!(dashboard["uid"], "tokenvend");
}

#[test]
fn the_store_component_config_is_the_example_config_with_the_store_block() {
    let with_store = read("deploy/components/store/config.yaml");
    let base = read("deploy/base/config.yaml");
    let block = "# Replay records and rate limits shared by every replica (README, \"More than one replica\").\n\
                 store:\n  url: redis://tokenvend-store:6379/0\n  passwordFile: /etc/tokenvend-store/password\n  timeout: 250ms\n";
    assert_eq!(
        with_store.replacen(block, "", 1),
        base,
        "deploy/components/store/config.yaml is deploy/base/config.yaml plus the store: block"
    );
    let config = tokenvend::config::Config::parse(
        &with_store,
        std::path::Path::new("deploy/components/store/config.yaml"),
    )
    .unwrap();
    let store = config.store.unwrap();
    // The path the component mounts the Secret at, the port its Service serves.
    assert_eq!(
        store.password_file.unwrap(),
        std::path::Path::new("/etc/tokenvend-store/password")
    );
    let component = read("deploy/components/store/kustomization.yaml");
    assert!(component.contains("mountPath: /etc/tokenvend-store"));
    assert!(read("deploy/components/store/service.yaml").contains("port: 6379"));
}
