package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Health endpoints on the metrics listener, for load balancers and
// Kubernetes probes (deployments/): GET /healthz says the process is up;
// GET /readyz runs the readiness checks (config loaded, session store
// reachable, CRLs fresh, audit log writable) and answers 200, or 503 with
// the checks that failed. Both bodies are JSON:
//
//	{"status":"ok"}
//	{"status":"ready","checks":{"audit":"ok","config":"ok","crl":"ok","store":"ok"}}
//	{"status":"not ready","failed":["crl"],"checks":{"crl":"trust anchor ...: CRL ... stale ...", ...}}
const (
	healthzPath = "/healthz"
	readyzPath  = "/readyz"
)

// readyCheckTimeout bounds each readiness check (a store that hangs is
// not ready).
const readyCheckTimeout = 2 * time.Second

// readyCheck is one named readiness check; nil error is ready.
type readyCheck struct {
	name  string
	check func(ctx context.Context) error
}

type healthBody struct {
	Status string            `json:"status"`
	Failed []string          `json:"failed,omitempty"`
	Checks map[string]string `json:"checks,omitempty"`
}

// healthRoutes adds /healthz and /readyz to mux.
func healthRoutes(mux *http.ServeMux, checks []readyCheck) {
	mux.HandleFunc("GET "+healthzPath, func(w http.ResponseWriter, r *http.Request) {
		writeHealth(w, http.StatusOK, healthBody{Status: "ok"})
	})
	mux.HandleFunc("GET "+readyzPath, func(w http.ResponseWriter, r *http.Request) {
		body := healthBody{Status: "ready", Checks: map[string]string{}}
		for _, c := range checks {
			ctx, cancel := context.WithTimeout(r.Context(), readyCheckTimeout)
			err := runCheck(ctx, c.check)
			cancel()
			if err != nil {
				body.Failed = append(body.Failed, c.name)
				body.Checks[c.name] = err.Error()
				continue
			}
			body.Checks[c.name] = "ok"
		}
		code := http.StatusOK
		if len(body.Failed) > 0 {
			body.Status, code = "not ready", http.StatusServiceUnavailable
		}
		writeHealth(w, code, body)
	})
}

// runCheck runs check, giving up when ctx ends.
func runCheck(ctx context.Context, check func(context.Context) error) error {
	done := make(chan error, 1)
	go func() { done <- check(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func writeHealth(w http.ResponseWriter, code int, b healthBody) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(b)
}

// serverCertExpiry is nacd_tls_server_certificate_expiry_timestamp_seconds:
// NotAfter of the EAP-TLS server certificate serve loaded (it changes only
// with a restart). nil when there is no certificate.
func serverCertExpiry(cert tls.Certificate) prometheus.Collector {
	leaf := cert.Leaf
	if leaf == nil && len(cert.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(cert.Certificate[0])
	}
	if leaf == nil {
		return nil
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nacd_tls_server_certificate_expiry_timestamp_seconds",
		Help: "NotAfter (Unix time) of the EAP-TLS server certificate in use.",
	})
	g.Set(float64(leaf.NotAfter.Unix()))
	return g
}
