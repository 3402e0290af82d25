//! The Kubernetes API misbehaving: throttling, unavailability and errors, against the
//! stand-in through the real kube client. The config's deadline is 2 s.

use std::time::{Duration, Instant};

use kube_standin::Fault;

use crate::metrics::sample;
use test_support::app::{assert_error, spawn_app, webapp_claims};

/// Well above the 2 s deadline: this checks that the deadline holds, not how fast we are.
const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

fn fail(code: u16, retry_after: Option<u64>, times: u32) -> Fault {
    Fault::Status {
        code,
        retry_after,
        times,
    }
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_that_wait_and_succeeds() {
    let app = spawn_app().await;
    app.apiserver().inject(fail(429, Some(1), 1));
    let started = Instant::now();
    let response = app.post_token(&app.id_token(webapp_claims()), None).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(app.apiserver().token_requests(), 2);
    assert!(
        elapsed >= Duration::from_secs(1),
        "Retry-After not honoured: {elapsed:?}"
    );
    assert!(elapsed < DEADLINE_MARGIN, "{elapsed:?}");
    let metrics = app.metrics().await;
    for (series, expected) in [
        (r#"tokenvend_kube_token_requests_total{code="429"}"#, 1.0),
        (r#"tokenvend_kube_token_requests_total{code="201"}"#, 1.0),
        (
            r#"tokenvend_requests_total{endpoint="token",outcome="issued"}"#,
            1.0,
        ),
        ("tokenvend_kube_token_request_duration_seconds_count", 2.0),
    ] {
        assert_eq!(
            sample(&metrics, series),
            Some(expected),
            "{series}\n{metrics}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_persistent_503_is_retried_a_bounded_number_of_times_then_answered_within_the_deadline() {
    let app = spawn_app().await;
    app.apiserver().inject(fail(503, None, 1000));
    let started = Instant::now();
    let response = app.post_token(&app.id_token(webapp_claims()), None).await;
    let elapsed = started.elapsed();
    assert_eq!(response.headers()["retry-after"], "5");
    let body = assert_error(response, 503, "temporarily_unavailable").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("503 ServiceUnavailable"),
        "{body}"
    );
    assert!(elapsed < DEADLINE_MARGIN, "{elapsed:?}");
    let attempts = app.apiserver().token_requests();
    assert!((2..=3).contains(&attempts), "{attempts} attempts");
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_kube_token_requests_total{code="503"}"#
        ),
        Some(attempts as f64),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_requests_total{endpoint="token",outcome="error"}"#
        ),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_is_passed_on_at_once_instead_of_waited_for() {
    let app = spawn_app().await;
    app.apiserver().inject(fail(429, Some(30), 1));
    let started = Instant::now();
    let response = app.post_token(&app.id_token(webapp_claims()), None).await;
    let elapsed = started.elapsed();
    assert_eq!(response.headers()["retry-after"], "30");
    assert_error(response, 503, "temporarily_unavailable").await;
    // One attempt: a 30 s wait could not fit the 2 s deadline, so none was taken.
    assert_eq!(app.apiserver().token_requests(), 1);
    assert!(elapsed < DEADLINE_MARGIN, "{elapsed:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_api_server_504_is_retried_and_a_500_is_not() {
    let app = spawn_app().await;
    app.apiserver().inject(fail(504, None, 1));
    let id_token = app.id_token(webapp_claims());
    assert_eq!(app.post_token(&id_token, None).await.status(), 200);
    assert_eq!(app.apiserver().token_requests(), 2);

    app.apiserver().inject(fail(500, None, 1));
    let id_token = app.id_token(webapp_claims());
    let body = assert_error(app.post_token(&id_token, None).await, 502, "upstream_error").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("500 InternalError"),
        "{body}"
    );
    assert_eq!(app.apiserver().token_requests(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_stall_that_outlasts_the_deadline_is_not_retried() {
    let app = spawn_app().await;
    app.apiserver()
        .inject(Fault::Stall(Duration::from_secs(30)));
    let started = Instant::now();
    let response = app.post_token(&app.id_token(webapp_claims()), None).await;
    assert_error(response, 504, "upstream_timeout").await;
    assert!(started.elapsed() < DEADLINE_MARGIN);
    assert_eq!(app.apiserver().token_requests(), 1);
    let metrics = app.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"tokenvend_kube_token_requests_total{code="timeout"}"#
        ),
        Some(1.0)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retry_after_over_a_minute_is_passed_on_as_a_minute() {
    let app = spawn_app().await;
    // Throttled with an hour's wait (the plain-text 429), then unavailable for two minutes
    // (a Status body): neither wait fits the deadline, and callers are told at most 60 s.
    app.apiserver().inject(fail(429, Some(3600), 1));
    app.apiserver().inject(fail(503, Some(120), 1));
    for _ in 0..2 {
        let response = app.post_token(&app.id_token(webapp_claims()), None).await;
        assert_eq!(response.headers()["retry-after"], "60");
        assert_error(response, 503, "temporarily_unavailable").await;
    }
    assert_eq!(app.apiserver().token_requests(), 2);
    app.stop().await;
}
