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
