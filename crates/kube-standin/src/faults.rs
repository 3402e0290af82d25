//! Fault injection for TokenRequest calls: stalls and error statuses, applied where kube's
//! max-in-flight and priority-and-fairness filters act (after authentication, before
//! authorization).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use super::status::{ApiError, Status};

/// A misbehaviour of the API server for the next TokenRequest calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Hold each TokenRequest for this long before answering (a stalled API server), until
    /// the faults are cleared.
    Stall(Duration),
    /// Answer the next `times` TokenRequests with this status: 429 is the plain-text body of
    /// the filters with `Retry-After` (1 when not given); 503, 504 and 500 are the Status
    /// bodies kube-apiserver writes (`apiserver is shutting down`, the request timeout, an
    /// internal error), with `Retry-After` when given. Other codes get a generic Status.
    Status {
        code: u16,
        retry_after: Option<u64>,
        times: u32,
    },
}

/// The injected faults, shared by all requests.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    stall: Option<Duration>,
    /// Status faults in injection order, each with the number of answers left.
    statuses: VecDeque<(u16, Option<u64>, u32)>,
}

impl Faults {
    pub fn inject(&self, fault: Fault) {
        let mut state = self.state.lock().expect("fault state lock");
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
        *self.state.lock().expect("fault state lock") = FaultState::default();
    }

    /// Stalls if asked to, then consumes one status fault if any is pending.
    pub async fn apply(&self) -> Result<(), ApiError> {
        let stall = self.state.lock().expect("fault state lock").stall;
        if let Some(stall) = stall {
            tokio::time::sleep(stall).await;
        }
        let next = {
            let mut state = self.state.lock().expect("fault state lock");
            let next = state.statuses.front_mut().map(|(code, retry_after, left)| {
                *left -= 1;
                (*code, *retry_after, *left)
            });
            if next.is_some_and(|(_, _, left)| left == 0) {
                state.statuses.pop_front();
            }
            next
        };
        match next {
            Some((code, retry_after, _)) => Err(fault_response(code, retry_after)),
            None => Ok(()),
        }
    }
}

fn fault_response(code: u16, retry_after: Option<u64>) -> ApiError {
    let status = match code {
        // Max-in-flight sends the constant "1".
        429 => {
            return ApiError::TooManyRequests {
                retry_after: retry_after.unwrap_or(1),
            };
        }
        500 => Status::internal("failed to generate token: injected fault"),
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
        faults.inject(Fault::Status {
            code: 429,
            retry_after: Some(2),
            times: 1,
        });
        faults.inject(Fault::Status {
            code: 503,
            retry_after: None,
            times: 2,
        });
        assert_eq!(
            faults.apply().await,
            Err(ApiError::TooManyRequests { retry_after: 2 })
        );
        for _ in 0..2 {
            let Err(ApiError::Status(status)) = faults.apply().await else {
                panic!("expected a 503")
            };
            assert_eq!(
                (status.code, status.message.as_str()),
                (503, "apiserver is shutting down")
            );
        }
        assert_eq!(faults.apply().await, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_holds_every_request_until_cleared() {
        let faults = Faults::default();
        faults.inject(Fault::Stall(Duration::from_secs(30)));
        let started = tokio::time::Instant::now();
        faults.apply().await.unwrap();
        faults.apply().await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        faults.clear();
        faults.apply().await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(60));
    }

    #[test]
    fn the_timeout_fault_carries_retry_after_when_given() {
        let ApiError::Status(status) = fault_response(504, Some(5)) else {
            panic!("a Status")
        };
        assert_eq!(status.reason, "Timeout");
        assert_eq!(status.details.unwrap().retry_after_seconds, 5);
    }
}
