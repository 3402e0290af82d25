//! tokenvend against the real monitoring tools, `prometheus` and `promtool` from PATH (the
//! Debian package `prometheus`; `.ci/ensure-prometheus` installs it): the alerts and their unit
//! tests, the dashboard's queries, the live `/metrics` lint, a real Prometheus scraping
//! tokenvend, and a monitoring agent scraping the Kubernetes API stand-in with the token that
//! `tokenvend token --watch` keeps in a file.

mod agent;
mod dashboard;
mod prom;
mod rules;
mod scrape;
