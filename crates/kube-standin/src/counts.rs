//! The stand-in's request counters (`apiserver_request_total`) and their text exposition:
//! the data that `GET /metrics` serves. Below the handlers: it knows requests only as their
//! `RequestInfo`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::request_info::RequestInfo;

/// The labels of one `apiserver_request_total` series, as kube-apiserver names them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RequestKey {
    code: u16,
    group: String,
    resource: String,
    subresource: String,
    verb: String,
}

/// Requests served, by their labels.
#[derive(Debug, Default)]
pub struct RequestCounts(Mutex<BTreeMap<RequestKey, u64>>);

impl RequestCounts {
    /// Counts one request with its response code.
    pub fn record(&self, request: &RequestInfo, code: u16) {
        let (group, resource, subresource) = match &request.resource {
            Some(r) => (
                r.api_group.clone(),
                r.resource.clone(),
                r.subresource.clone(),
            ),
            None => Default::default(),
        };
        let key = RequestKey {
            code,
            group,
            resource,
            subresource,
            // kube reports resource verbs as LIST, GET, POST... and a non-resource request by
            // its method; both upper case.
            verb: match (&request.resource, request.verb.as_str()) {
                (Some(_), "create") => "POST".to_owned(),
                (Some(_), verb) => verb.to_ascii_uppercase(),
                (None, verb) => verb.to_ascii_uppercase(),
            },
        };
        *self.0.lock().expect("counts lock").entry(key).or_default() += 1;
    }

    /// The text exposition of the counters.
    pub fn render(&self) -> String {
        let mut body = String::from(
            "# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, group, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n",
        );
        for (key, count) in self.0.lock().expect("counts lock").iter() {
            let _ = writeln!(
                body,
                "apiserver_request_total{{code=\"{}\",group=\"{}\",resource=\"{}\",subresource=\"{}\",verb=\"{}\"}} {count}",
                key.code,
                escape(&key.group),
                escape(&key.resource),
                escape(&key.subresource),
                escape(&key.verb),
            );
        }
        body
    }
}

/// A label value in the text format: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn counters_render_in_the_text_format_with_kube_verbs() {
        let counts = RequestCounts::default();
        let token = RequestInfo::parse(
            &Method::POST,
            "/api/v1/namespaces/a/serviceaccounts/b/token",
            None,
        );
        counts.record(&token, 201);
        counts.record(&token, 201);
        counts.record(&RequestInfo::parse(&Method::GET, "/metrics", None), 403);
        counts.record(
            &RequestInfo::parse(&Method::GET, "/api/v1/secrets", None),
            200,
        );
        assert_eq!(
            counts.render(),
            "# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, group, resource and HTTP response code.\n\
             # TYPE apiserver_request_total counter\n\
             apiserver_request_total{code=\"200\",group=\"\",resource=\"secrets\",subresource=\"\",verb=\"LIST\"} 1\n\
             apiserver_request_total{code=\"201\",group=\"\",resource=\"serviceaccounts\",subresource=\"token\",verb=\"POST\"} 2\n\
             apiserver_request_total{code=\"403\",group=\"\",resource=\"\",subresource=\"\",verb=\"GET\"} 1\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
