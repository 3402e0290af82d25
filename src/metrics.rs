//! Prometheus metrics (README.md, "What it measures and records"), registered once in a registry of our own and served on the
//! admin listener. Label values come from config (issuer and policy names) or fixed sets, never
//! from callers.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Request latencies: sub-millisecond rejects up to slow upstreams.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Issued token lifetimes: 10 minutes up to a day.
const TTL_BUCKETS: &[f64] = &[
    600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];

/// Every `(endpoint, outcome)` label pair of `requests_total`: all are exported at 0 from
/// the start, and a request is counted under one of them only.
pub const REQUEST_OUTCOMES: &[(&str, &[&str])] = &[
    (
        "token",
        &[
            "issued",
            "dry_run",
            "denied",
            "invalid_token",
            "invalid_request",
            "error",
        ],
    ),
    (
        "oauth",
        &[
            "issued",
            "denied",
            "invalid_token",
            "invalid_request",
            "error",
        ],
    ),
    (
        "grants",
        &["listed", "invalid_token", "invalid_request", "error"],
    ),
    (
        "revoke",
        &["revoked", "invalid_token", "invalid_request", "error"],
    ),
];

/// How a binding was deleted: the `via` label of `revocations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedVia {
    /// `POST /oauth2/revoke` deleted it.
    OAuth2,
    /// The sweeper deleted it after its token expired.
    Expired,
}

impl RevokedVia {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OAuth2 => "oauth2",
            Self::Expired => "expired",
        }
    }
}
/// Store round trips: a tenth of a millisecond on loopback up to the longest sensible timeout.
const STORE_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The `result` values of `jwks_fetches_total` and `config_reloads_total`.
const RESULTS: [&str; 2] = ["success", "error"];

/// Every metric tokenvend exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    rejections: IntCounterVec,
    request_duration: HistogramVec,
    tokens_issued: IntCounterVec,
    issued_ttl: Histogram,
    kube_requests: IntCounterVec,
    kube_duration: Histogram,
    jwks_fetches: IntCounterVec,
    jwks_last_success: IntGaugeVec,
    jwks_keys: IntGaugeVec,
    replays: IntCounterVec,
    config_reloads: IntCounterVec,
    team_files_refused: IntCounterVec,
    config_last_reload: prometheus::IntGauge,
    rate_limited: IntCounterVec,
    revocations: IntCounterVec,
    kube_binding_requests: IntCounterVec,
    kube_binding_duration: Histogram,
    store_operations: IntCounterVec,
    store_duration: HistogramVec,
    store_up: prometheus::IntGauge,
}

/// Which limit refused a request: the `scope` label of `rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitScope {
    /// One identity's (issuer and subject) request budget was spent: 429.
    Identity,
    /// Too many requests were in flight; the request was shed: 503.
    InFlight,
}

impl RateLimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::InFlight => "in_flight",
        }
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry, plus `build_info` and process metrics.
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("tokenvend".into()), None).expect("static prefix is valid");
        let metrics = Self {
            requests: counter(
                "requests_total",
                "Requests by endpoint and outcome.",
                &["endpoint", "outcome"],
            ),
            rejections: counter(
                "rejections_total",
                "Requests refused (denied, invalid token or request, upstream error), by internal reason.",
                &["reason"],
            ),
            request_duration: HistogramVec::new(
                HistogramOpts::new("request_duration_seconds", "Request latency by endpoint.")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["endpoint"],
            )
            .expect("valid histogram"),
            tokens_issued: counter(
                "tokens_issued_total",
                "Tokens issued, by policy.",
                &["policy"],
            ),
            issued_ttl: Histogram::with_opts(
                HistogramOpts::new(
                    "issued_token_ttl_seconds",
                    "Lifetime of issued tokens as the API server granted it.",
                )
                .buckets(TTL_BUCKETS.to_vec()),
            )
            .expect("valid histogram"),
            kube_requests: counter(
                "kube_token_requests_total",
                "TokenRequest calls by HTTP status code (or `timeout`, `transport`).",
                &["code"],
            ),
            kube_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kube_token_request_duration_seconds",
                    "TokenRequest call latency.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid histogram"),
            jwks_fetches: counter(
                "jwks_fetches_total",
                "Issuer key fetches by result.",
                &["issuer", "result"],
            ),
            jwks_last_success: IntGaugeVec::new(
                Opts::new(
                    "jwks_last_success_timestamp_seconds",
                    "When each issuer's keys were last loaded.",
                ),
                &["issuer"],
            )
            .expect("valid gauge"),
            jwks_keys: IntGaugeVec::new(
                Opts::new("jwks_keys", "Usable keys cached per issuer."),
                &["issuer"],
            )
            .expect("valid gauge"),
            replays: counter(
                "replays_rejected_total",
                "Tokens refused because their (iss, jti) was already exchanged.",
                &["issuer"],
            ),
            team_files_refused: counter(
                "team_files_refused_total",
                "Team policy files refused (did not load, or reached beyond the team's ceiling), by team.",
                &["team"],
            ),
            config_reloads: counter(
                "config_reloads_total",
                "Config reloads by result (success, error).",
                &["result"],
            ),
            config_last_reload: prometheus::IntGauge::new(
                "config_last_reload_success_timestamp_seconds",
                "When the config in force was loaded.",
            )
            .expect("valid gauge"),
            rate_limited: counter(
                "rate_limited_total",
                "Requests refused by a limit: `identity` (per issuer and subject, 429) or `in_flight` (load shed, 503).",
                &["scope"],
            ),
            revocations: counter(
                "revocations_total",
                "Binding Secrets of revocable tokens deleted, by how: `oauth2` (POST /oauth2/revoke) or `expired` (swept after expiry).",
                &["via"],
            ),
            kube_binding_requests: counter(
                "kube_binding_requests_total",
                "Kubernetes API calls of revocable tokens (create_secret, delete_secret, delete_secrets, token_review) by result: `success`, the HTTP status code, `timeout` or `transport`.",
                &["call", "code"],
            ),
            kube_binding_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "kube_binding_request_duration_seconds",
                    "Latency of the Kubernetes API calls of revocable tokens.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )
            .expect("valid histogram"),
            store_operations: counter(
                "store_operations_total",
                "Shared store operations by operation and result (ok, error, timeout, skipped while the store is down).",
                &["operation", "result"],
            ),
            store_duration: HistogramVec::new(
                HistogramOpts::new(
                    "store_operation_duration_seconds",
                    "Shared store operation latency (operations sent), by operation.",
                )
                .buckets(STORE_BUCKETS.to_vec()),
                &["operation"],
            )
            .expect("valid histogram"),
            store_up: prometheus::IntGauge::new(
                "store_up",
                "1 while the shared store answers in time, 0 while it is down (only with a store).",
            )
            .expect("valid gauge"),
            registry,
        };
        metrics.register_all();
        metrics.export_fixed_series();
        metrics
    }

    /// Creates (at 0) every series whose labels come from a fixed set, so that an alert on
    /// `rate()` or `increase()` has a series before the first event.
    fn export_fixed_series(&self) {
        for (endpoint, outcomes) in REQUEST_OUTCOMES {
            for outcome in *outcomes {
                self.requests.with_label_values(&[endpoint, outcome]);
            }
            self.request_duration.with_label_values(&[endpoint]);
        }
        for scope in [RateLimitScope::Identity, RateLimitScope::InFlight] {
            self.rate_limited.with_label_values(&[scope.as_str()]);
        }
        for result in RESULTS {
            self.config_reloads.with_label_values(&[result]);
        }
        for via in [RevokedVia::OAuth2, RevokedVia::Expired] {
            self.revocations.with_label_values(&[via.as_str()]);
        }
    }

    /// Creates (at 0) the series of every issuer and policy of a config about to be put in
    /// force, at start and at each reload. Series already there keep their values.
    pub fn export_config_series<'c>(
        &self,
        issuers: impl IntoIterator<Item = &'c str>,
        policies: impl IntoIterator<Item = &'c str>,
    ) {
        for issuer in issuers {
            for result in RESULTS {
                self.jwks_fetches.with_label_values(&[issuer, result]);
            }
            self.replays.with_label_values(&[issuer]);
        }
        for policy in policies {
            self.tokens_issued.with_label_values(&[policy]);
        }
    }

    fn register_all(&self) {
        let build_info =
            IntGaugeVec::new(Opts::new("build_info", "Build information."), &["version"])
                .expect("valid gauge");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.requests.clone()),
            Box::new(self.rejections.clone()),
            Box::new(self.request_duration.clone()),
            Box::new(self.tokens_issued.clone()),
            Box::new(self.issued_ttl.clone()),
            Box::new(self.kube_requests.clone()),
            Box::new(self.kube_duration.clone()),
            Box::new(self.jwks_fetches.clone()),
            Box::new(self.jwks_last_success.clone()),
            Box::new(self.jwks_keys.clone()),
            Box::new(self.replays.clone()),
            Box::new(self.config_reloads.clone()),
            Box::new(self.team_files_refused.clone()),
            Box::new(self.config_last_reload.clone()),
            Box::new(self.rate_limited.clone()),
            Box::new(self.revocations.clone()),
            Box::new(self.kube_binding_requests.clone()),
            Box::new(self.kube_binding_duration.clone()),
            Box::new(build_info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for collector in collectors {
            self.registry
                .register(collector)
                .expect("each metric is registered once");
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }

    /// One finished request: `endpoint` and `outcome` are a pair of [`REQUEST_OUTCOMES`].
    pub fn request_finished(&self, endpoint: &'static str, outcome: &'static str, seconds: f64) {
        debug_assert!(
            REQUEST_OUTCOMES
                .iter()
                .any(|(e, outcomes)| *e == endpoint && outcomes.contains(&outcome)),
            "{endpoint}/{outcome} is missing from REQUEST_OUTCOMES"
        );
        self.requests.with_label_values(&[endpoint, outcome]).inc();
        self.request_duration
            .with_label_values(&[endpoint])
            .observe(seconds);
    }

    /// A refused request; `reason` is an internal reason code from a fixed set.
    pub fn rejected(&self, reason: &str) {
        self.rejections.with_label_values(&[reason]).inc();
    }

    pub fn token_issued(&self, policy: &str, ttl_seconds: f64) {
        self.tokens_issued.with_label_values(&[policy]).inc();
        self.issued_ttl.observe(ttl_seconds);
    }

    /// One TokenRequest call; `code` is the HTTP status or `timeout`/`transport`.
    pub fn kube_request(&self, code: &str, seconds: f64) {
        self.kube_requests.with_label_values(&[code]).inc();
        self.kube_duration.observe(seconds);
    }

    /// One binding call; `code` is `success`, the HTTP status, or `timeout`/`transport`.
    pub fn kube_binding_request(&self, call: &'static str, code: &str, seconds: f64) {
        self.kube_binding_requests
            .with_label_values(&[call, code])
            .inc();
        self.kube_binding_duration.observe(seconds);
    }

    /// `count` bindings deleted.
    pub fn revoked(&self, via: RevokedVia, count: u64) {
        self.revocations
            .with_label_values(&[via.as_str()])
            .inc_by(count);
    }

    pub fn jwks_fetched(&self, issuer: &str, keys: usize) {
        self.jwks_fetches
            .with_label_values(&[issuer, "success"])
            .inc();
        self.jwks_keys
            .with_label_values(&[issuer])
            .set(i64::try_from(keys).unwrap_or(i64::MAX));
        self.jwks_last_success
            .with_label_values(&[issuer])
            .set(unix_now_secs());
    }

    /// A config reload; the initial load counts as a success of its own (timestamp only).
    /// Creates (at 0) the series of each team of a config about to be put in force.
    pub fn export_team_series<'t>(&self, teams: impl IntoIterator<Item = &'t str>) {
        for team in teams {
            self.team_files_refused.with_label_values(&[team]);
        }
    }

    /// A team file was refused at a load.
    pub fn team_file_refused(&self, team: &str) {
        self.team_files_refused.with_label_values(&[team]).inc();
    }

    pub fn config_reload(&self, success: bool) {
        let result = if success { "success" } else { "error" };
        self.config_reloads.with_label_values(&[result]).inc();
        if success {
            self.config_loaded();
        }
    }

    /// Records that a config was put in force now.
    pub fn config_loaded(&self) {
        self.config_last_reload.set(unix_now_secs());
    }

    pub fn replay_rejected(&self, issuer: &str) {
        self.replays.with_label_values(&[issuer]).inc();
    }

    pub fn rate_limited(&self, scope: RateLimitScope) {
        self.rate_limited.with_label_values(&[scope.as_str()]).inc();
    }

    /// Registers the shared store's metrics (only a service with `store:` exports them), every
    /// `(operation, result)` pair at 0.
    pub fn enable_store<const O: usize, const R: usize>(
        &self,
        operations: [&str; O],
        results: [&str; R],
    ) {
        let collectors: [Box<dyn prometheus::core::Collector>; 3] = [
            Box::new(self.store_operations.clone()),
            Box::new(self.store_duration.clone()),
            Box::new(self.store_up.clone()),
        ];
        for collector in collectors {
            // A second store in one process (tests) shares the series.
            let _ = self.registry.register(collector);
        }
        for operation in operations {
            for result in results {
                self.store_operations
                    .with_label_values(&[operation, result]);
            }
            self.store_duration.with_label_values(&[operation]);
        }
    }

    /// One store operation; `seconds` for the ones sent (not those skipped while down).
    pub fn store_operation(&self, operation: &str, result: &str, seconds: Option<f64>) {
        self.store_operations
            .with_label_values(&[operation, result])
            .inc();
        if let Some(seconds) = seconds {
            self.store_duration
                .with_label_values(&[operation])
                .observe(seconds);
        }
    }

    pub fn store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    pub fn jwks_fetch_failed(&self, issuer: &str) {
        self.jwks_fetches
            .with_label_values(&[issuer, "error"])
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
}

fn unix_now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}
