//! Reading a token request's body before it is handled: within the body deadline and up to
//! [`MAX_BODY_BYTES`]. Only a request whose body is complete goes on to take an in-flight slot,
//! so a client that stalls mid-body holds one connection until the deadline, never a share of
//! the service's capacity.

use std::pin::Pin;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{AppState, MAX_BODY_BYTES};

/// Buffers the body (if the request has one) within the deadline, then runs the request with
/// the buffered body. A body that does not arrive in time gets 408 and the connection is
/// closed; one over the size limit gets 413.
pub(super) async fn read_within_deadline(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let deadline = app.exchange.limits().request_body_timeout();
    match tokio::time::timeout(deadline, collect(body)).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(error)) => error.into_response(),
        Err(_) => {
            tracing::debug!(
                deadline_secs = deadline.as_secs_f64(),
                "request body not received in time"
            );
            ApiError::RequestTimeout.into_response()
        }
    }
}

/// The whole body, refused as soon as it grows past the limit.
async fn collect(mut body: Body) -> Result<Bytes, ApiError> {
    let mut collected = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame
            .map_err(|_| ApiError::InvalidRequest("the request body could not be read".into()))?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > MAX_BODY_BYTES {
                return Err(ApiError::PayloadTooLarge);
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(collected))
}
