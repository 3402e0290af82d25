//! openapi.yaml and the public router agree: every documented operation is routed, every
//! route is documented, and each answers over HTTP from its handler, not the fallbacks.

use std::collections::BTreeSet;

use serde_json::Value;
use tokenvend::http::{OPENAPI_YAML, ROUTES};

use test_support::app::spawn_app;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `(METHOD, path)` of every operation in openapi.yaml.
fn documented() -> BTreeSet<(String, String)> {
    let spec: Value = serde_saphyr::from_str(OPENAPI_YAML).unwrap();
    let mut operations = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.as_str()) {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

fn routed() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect()
}

#[test]
fn every_documented_operation_is_routed_and_every_route_documented() {
    let documented = documented();
    let routed = routed();
    assert_eq!(
        documented.difference(&routed).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented in openapi.yaml but not in http::ROUTES"
    );
    assert_eq!(
        routed.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in http::ROUTES but not documented in openapi.yaml"
    );
}

/// `ROUTES` is a list kept by hand; the `.route(...)` calls of `public_router` are what
/// the router serves. Every path and method registered there must be listed, and nothing
/// else (routes merged or nested from elsewhere would need this check extended).
#[test]
fn every_route_the_public_router_registers_is_listed() {
    let source = include_str!("../../src/http/mod.rs");
    let start = source
        .find("pub fn public_router")
        .expect("public_router exists");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").expect("public_router ends")];
    let routed = routed();
    let mut registered = 0;
    for call in body.split(".route(").skip(1) {
        let path = call.split('"').nth(1).expect("a literal path");
        for method in METHODS {
            if calls(call, method) {
                let key = (method.to_uppercase(), path.to_owned());
                assert!(
                    routed.contains(&key),
                    "{key:?} is routed but not in http::ROUTES"
                );
                registered += 1;
            }
        }
    }
    assert_eq!(
        registered,
        ROUTES.len(),
        "http::ROUTES lists a route public_router lacks"
    );
}

/// Whether `code` calls the function `name` (`get(`, not `budget(`).
fn calls(code: &str, name: &str) -> bool {
    code.match_indices(&format!("{name}(")).any(|(at, _)| {
        code[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_')
    })
}

#[tokio::test]
async fn every_route_is_served_by_its_handler() {
    let app = spawn_app().await;
    for (method, path) in ROUTES {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .http
            .request(method.clone(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path} reached a fallback: {status}"
        );
    }
    app.stop().await;
}
