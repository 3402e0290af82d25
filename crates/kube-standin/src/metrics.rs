//! `GET /metrics`: the stand-in's own request counters in the Prometheus text format, behind
//! the same authentication and authorization as kube-apiserver's: no or an unknown token is
//! 401, an account without `get` on the non-resource URL `/metrics` (a ClusterRole rule with
//! `nonResourceURLs: ["/metrics"]`) is 403. What a monitoring agent scrapes with its token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::authn::Caller;
use super::request_info::RequestInfo;
use super::state::ApiState;
use super::status::Status;

/// Middleware: counts every request by its attributes and response code.
pub async fn count(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let info = RequestInfo::parse(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    let response = next.run(request).await;
    state.requests.record(&info, response.status().as_u16());
    response
}

/// `GET /metrics`.
pub async fn metrics(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    uri: Uri,
) -> Result<Response, Status> {
    state.authorize(
        &caller.0,
        &RequestInfo::parse(&Method::GET, uri.path(), uri.query()),
    )?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.requests.render(),
    )
        .into_response())
}
