use serde_json::Value;

use test_support::app::{assert_error, spawn_app, webapp_claims};

#[tokio::test]
async fn healthz_and_readyz_report_a_ready_service() {
    let app = spawn_app().await;
    let health = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["config", "issuer:local", "kubernetes", "shutdown"]);
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_503_with_a_reason_when_the_api_server_is_gone() {
    let mut app = spawn_app().await;
    app.stop_apiserver().await;
    // The service notices through a failed token request: connection refused is a 502.
    let response = app.post_token(&app.id_token(webapp_claims()), None).await;
    assert_error(response, 502, "upstream_error").await;
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "not ready");
    let checks = body["checks"].as_array().unwrap();
    let kubernetes = checks.iter().find(|c| c["name"] == "kubernetes").unwrap();
    assert_eq!(kubernetes["ok"], false, "{body}");
    assert!(kubernetes["reason"].is_string(), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_json_errors() {
    let app = spawn_app().await;
    for path in [
        "/v1/token/",
        "//v1/token",
        "/V1/TOKEN",
        "/v1/%74oken",
        "/v1/token;x",
        "/nope",
    ] {
        let response = app
            .http
            .post(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_error(response, 404, "not_found").await;
    }
    let response = app
        .http
        .get(format!("{}/v1/token", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    assert_error(response, 405, "method_not_allowed").await;
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_is_served_and_names_every_public_route() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/openapi.yaml", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for path in ["/v1/token:", "/healthz:", "/readyz:", "/openapi.yaml:"] {
        assert!(
            text.contains(&format!("  {path}")),
            "{path} missing from openapi.yaml"
        );
    }
    app.stop().await;
}

/// Whether `value` conforms to the JSON Schema subset openapi.yaml uses for this document
/// (`type`, `required`, `properties`, `const`, `enum`); `$ref`s are not followed.
fn conforms(value: &Value, schema: &Value) -> Result<(), String> {
    if let Some(kind) = schema["type"].as_str() {
        let matches = match kind {
            "object" => value.is_object(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            other => return Err(format!("unexpected schema type {other}")),
        };
        if !matches {
            return Err(format!("not of type {kind}"));
        }
    }
    if let Some(constant) = schema.get("const")
        && value != constant
    {
        return Err(format!("{value} is not {constant}"));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        return Err(format!("{value} is not one of {allowed:?}"));
    }
    for key in schema["required"].as_array().into_iter().flatten() {
        let key = key.as_str().unwrap();
        if value.get(key).is_none() {
            return Err(format!("{key} is missing"));
        }
    }
    for (key, property) in schema["properties"].as_object().into_iter().flatten() {
        if let Some(present) = value.get(key) {
            conforms(present, property).map_err(|e| format!("{key}: {e}"))?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_served_openapi_document_conforms_to_the_schema_it_declares_for_itself() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/openapi.yaml", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "application/yaml");
    // A schema-aware client parses the YAML body and checks the value against the schema.
    let served: Value = serde_saphyr::from_str(&response.text().await.unwrap()).unwrap();
    let declared = &served["paths"]["/openapi.yaml"]["get"]["responses"]["200"]["content"]["application/yaml"]
        ["schema"];
    assert!(declared.is_object(), "no schema declared");
    if let Err(violation) = conforms(&served, declared) {
        panic!("the served document violates its declared schema {declared}: {violation}");
    }
    app.stop().await;
}
