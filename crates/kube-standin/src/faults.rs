//! Fault injection: stalls and error statuses for one kind of request (TokenRequest,
//! TokenReview, Secret writes) or for all of them, applied where kube's max-in-flight and
//! priority-and-fairness filters act (after authentication, before authorization).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::status::{ApiError, Status};

/// Which requests a [`Fault`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultTarget {
    /// `POST .../serviceaccounts/{name}/token`.
    TokenRequest,
    /// `POST /apis/authentication.k8s.io/v1/tokenreviews`.
    TokenReview,
    /// `POST /api/v1/namespaces/{ns}/secrets`.
    SecretCreate,
    /// `DELETE /api/v1/namespaces/{ns}/secrets/{name}`.
    SecretDelete,
    /// `DELETE /api/v1/namespaces/{ns}/secrets?labelSelector=...`.
    SecretDeleteCollection,
    /// The whole API server down or overloaded: every resource request (the five above,
    /// SelfSubjectReview, and gets and lists) gets the fault. Faults injected for `Any` are
    /// consumed before those of the request's own target.
    Any,
}

/// A misbehaviour of the API server for the next calls of a [`FaultTarget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Hold each request of the target for this long before answering (a stalled API
    /// server), until the faults are cleared.
    Stall(Duration),
    /// Answer the next `times` requests of the target with this status: 429 is the plain-text body of
    /// the filters with `Retry-After` (1 when not given); 503, 504 and 500 are the Status
    /// bodies kube-apiserver writes (`apiserver is shutting down`, the request timeout, an
    /// internal error; for TokenRequest `failed to generate token: ...`), with `Retry-After` when given. Other codes get a generic Status.
    Status {
        code: u16,
        retry_after: Option<u64>,
        times: u32,
    },
}

/// The injected faults by target, shared by all requests.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<BTreeMap<FaultTarget, FaultState>>,
}

#[derive(Debug, Default)]
struct FaultState {
    stall: Option<Duration>,
    /// Status faults in injection order, each with the number of answers left.
    statuses: VecDeque<(u16, Option<u64>, u32)>,
}

impl Faults {
    pub fn inject(&self, target: FaultTarget, fault: Fault) {
        let mut targets = self.state.lock().expect("fault state lock");
        let state = targets.entry(target).or_default();
        match fault {
            Fault::Stall(duration) => state.stall = Some(duration),
            Fault::Status { times: 0, .. } => {}
            Fault::Status {
                code,
                retry_after,
                times,
            } => state.statuses.push_back((code, retry_after, times)),
        }
    }

    pub fn clear(&self) {
        self.state.lock().expect("fault state lock").clear();
    }

    /// For a request of `target` (`None`: a request only [`FaultTarget::Any`] applies to):
    /// stalls if asked to, then consumes one status fault if any is pending.
    pub async fn apply(&self, target: Option<FaultTarget>) -> Result<(), ApiError> {
        let targets: Vec<FaultTarget> = std::iter::once(FaultTarget::Any).chain(target).collect();
        let stall = {
            let state = self.state.lock().expect("fault state lock");
            targets
                .iter()
                .filter_map(|t| state.get(t).and_then(|s| s.stall))
                .max()
        };
        if let Some(stall) = stall {
            tokio::time::sleep(stall).await;
        }
        let next = {
            let mut state = self.state.lock().expect("fault state lock");
            targets.iter().find_map(|t| {
                let statuses = &mut state.get_mut(t)?.statuses;
                let next = statuses.front_mut().map(|(code, retry_after, left)| {
                    *left -= 1;
                    (*code, *retry_after, *left)
                })?;
                if next.2 == 0 {
                    statuses.pop_front();
                }
                Some(next)
            })
        };
        match next {
            Some((code, retry_after, _)) => Err(fault_response(target, code, retry_after)),
            None => Ok(()),
        }
    }
}

fn fault_response(target: Option<FaultTarget>, code: u16, retry_after: Option<u64>) -> ApiError {
    let status = match code {
        // Max-in-flight sends the constant "1".
        429 => {
            return ApiError::TooManyRequests {
                retry_after: retry_after.unwrap_or(1),
            };
        }
        500 if target == Some(FaultTarget::TokenRequest) => {
            Status::internal("failed to generate token: injected fault")
        }
        500 => Status::internal("injected fault"),
        503 => Status::service_unavailable("apiserver is shutting down"),
        504 => Status::timeout(),
        other => Status::generic(other),
    };
    match retry_after {
        Some(seconds) if seconds > 0 => status.with_retry_after(seconds).into(),
        _ => status.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn status_faults_answer_the_given_number_of_times_in_order() {
        let faults = Faults::default();
        faults.inject(
            FaultTarget::TokenRequest,
            Fault::Status {
                code: 429,
                retry_after: Some(2),
                times: 1,
            },
        );
        faults.inject(
            FaultTarget::TokenRequest,
            Fault::Status {
                code: 503,
                retry_after: None,
                times: 2,
            },
        );
        assert_eq!(
            faults.apply(Some(FaultTarget::TokenRequest)).await,
            Err(ApiError::TooManyRequests { retry_after: 2 })
        );
        for _ in 0..2 {
            let Err(ApiError::Status(status)) = faults.apply(Some(FaultTarget::TokenRequest)).await
            else {
                panic!("expected a 503")
            };
            assert_eq!(
                (status.code, status.message.as_str()),
                (503, "apiserver is shutting down")
            );
        }
        assert_eq!(faults.apply(Some(FaultTarget::TokenRequest)).await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_holds_every_request_until_cleared() {
        let faults = Faults::default();
        faults.inject(
            FaultTarget::TokenRequest,
            Fault::Stall(Duration::from_secs(30)),
        );
        let started = tokio::time::Instant::now();
        faults.apply(Some(FaultTarget::TokenRequest)).await.unwrap();
        faults.apply(Some(FaultTarget::TokenRequest)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        faults.clear();
        faults.apply(Some(FaultTarget::TokenRequest)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }

    #[test]
    fn the_timeout_fault_carries_retry_after_when_given() {
        let ApiError::Status(status) =
            fault_response(Some(FaultTarget::TokenRequest), 504, Some(5))
        else {
            panic!("a Status")
        };
        assert_eq!(status.reason, "Timeout");
        assert_eq!(status.details.unwrap().retry_after_seconds, 5);
    }
}
