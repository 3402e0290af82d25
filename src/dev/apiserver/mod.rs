//! The Kubernetes API stand-in: a real HTTPS server that answers the endpoints tokenvend uses
//! exactly as kube-apiserver does (see `kube-api.md`).
