// Package deployments holds no code: it is the home of nacd's deployment
// material (the hardened systemd unit, the container image, the Kubernetes
// manifests, the Prometheus alert rules and the Grafana dashboard) and of
// the test that validates them with the real tools (systemd-analyze,
// promtool, nacd config check) and checks them against the code (metric
// names, drop causes, listener ports).
//
// Nothing may import it. It must never hold a real secret, address or
// certificate: every value in the manifests is a placeholder from the
// documentation ranges (RFC 5737, example.org).
package deployments
