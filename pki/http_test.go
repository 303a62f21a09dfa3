package pki

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herts-council/nacd/policy"
)

// crlServer serves a CRL on 127.0.0.1 and can misbehave on demand.
type crlServer struct {
	*httptest.Server
	mode    atomic.Value // "serve", "hang", "error", "huge"
	body    atomic.Pointer[[]byte]
	release chan struct{}
	once    sync.Once
}

func newCRLServer(t *testing.T, body []byte) *crlServer {
	t.Helper()
	s := &crlServer{release: make(chan struct{})}
	s.mode.Store("serve")
	s.body.Store(&body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch s.mode.Load().(string) {
		case "hang": // accept and never answer
			select {
			case <-r.Context().Done():
			case <-s.release:
			}
		case "error":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "huge":
			w.Header().Set("Content-Type", "application/pkix-crl")
			_, _ = w.Write(bytes.Repeat([]byte{0x30}, MaxCRLSize+1))
		default:
			w.Header().Set("Content-Type", "application/pkix-crl")
			_, _ = w.Write(*s.body.Load())
		}
	}))
	t.Cleanup(func() {
		s.once.Do(func() { close(s.release) })
		s.Close()
	})
	return s
}

func (s *crlServer) serve(body []byte) { s.body.Store(&body); s.mode.Store("serve") }

func TestRefreshFromHTTP(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := time.Now()
	leaf := f.inter.IssueDevice(t, staffLaptop)
	srv := newCRLServer(t, f.inter.CRL(t, 1, now.Add(-time.Hour), now.Add(24*time.Hour)))
	reg := prometheus.NewPedanticRegistry()
	client := &http.Client{Timeout: 4 * time.Second} // headroom for a loaded machine; the hang step waits for it
	rootCRL := f.crlFile(t, "root.crl", f.root, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	anchors := []AnchorConfig{{
		Name: "council", CAFiles: []string{f.rootFile, f.interFile}, CRLs: []string{rootCRL, srv.URL + "/inter.crl"},
	}}
	ts, err := NewTrustStore(anchors, WithRegisterer(reg), WithHTTPClient(client))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name       string
		act        func() error
		wantFail   bool  // act returns an error
		wantErr    error // ... that is (or is a timeout when DeadlineExceeded)
		wantStatus policy.CertStatus
		wantErrors float64
	}{
		{"initial load over http", nil, false, nil, policy.CertOK, 0},
		{"revocation published", func() error {
			srv.serve(f.inter.CRL(t, 2, now, now.Add(24*time.Hour), leaf.Cert.SerialNumber))
			return ts.Refresh(context.Background())
		}, false, nil, policy.CertRevoked, 0},
		{"server never answers: timeout, last good kept", func() error {
			srv.mode.Store("hang")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return ts.Refresh(ctx)
		}, true, context.DeadlineExceeded, policy.CertRevoked, 1},
		{"reload while the server fails keeps the last good CRL", func() error {
			srv.mode.Store("error")
			return ts.Reload(anchors)
		}, false, nil, policy.CertRevoked, 2},
		{"server error", func() error {
			srv.mode.Store("error")
			return ts.Refresh(context.Background())
		}, true, nil, policy.CertRevoked, 3},
		{"oversized CRL", func() error {
			srv.mode.Store("huge")
			return ts.Refresh(context.Background())
		}, true, ErrCRLTooLarge, policy.CertRevoked, 4},
		{"recovered, serial unrevoked by a newer CRL", func() error {
			srv.serve(f.inter.CRL(t, 3, now, now.Add(24*time.Hour)))
			return ts.Refresh(context.Background())
		}, false, nil, policy.CertOK, 4},
	}
	for _, s := range steps {
		if s.act != nil {
			err := s.act()
			switch {
			case (err != nil) != s.wantFail:
				t.Errorf("%s: error %v, want failure %v", s.name, err, s.wantFail)
			case s.wantErr == context.DeadlineExceeded && !isTimeout(err):
				t.Errorf("%s: error %v, want a timeout", s.name, err)
			case s.wantErr != nil && s.wantErr != context.DeadlineExceeded && !errors.Is(err, s.wantErr):
				t.Errorf("%s: error %v, want %v", s.name, err, s.wantErr)
			}
		}
		id := ts.VerifyClient(leaf.Chain, now)
		if id.Status != s.wantStatus || !id.Revocation.Checked {
			t.Errorf("%s: status %q checked %v, want %q checked", s.name, id.Status, id.Revocation.Checked, s.wantStatus)
		}
		if v, _ := metricValue(t, reg, "nacd_pki_crl_refresh_errors_total", "council"); v != s.wantErrors {
			t.Errorf("%s: refresh errors %v, want %v", s.name, v, s.wantErrors)
		}
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// A CRL URL that does not answer at start does not stop the store; until the
// CRL loads, the anchor's devices have no revocation status.
func TestHTTPUnavailableAtStart(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	now := time.Now()
	leaf := f.inter.IssueDevice(t, staffLaptop)
	srv := newCRLServer(t, f.inter.CRL(t, 1, now.Add(-time.Hour), now.Add(24*time.Hour)))
	srv.mode.Store("hang")
	reg := prometheus.NewPedanticRegistry()
	rootCRL := f.crlFile(t, "root.crl", f.root, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	ts, err := NewTrustStore([]AnchorConfig{{
		Name: "council", CAFiles: []string{f.rootFile, f.interFile}, CRLs: []string{rootCRL, srv.URL}, StaleFailClosed: true,
	}}, WithRegisterer(reg), WithHTTPClient(&http.Client{Timeout: 4 * time.Second}))
	if err != nil {
		t.Fatalf("NewTrustStore with an unreachable CRL URL: %v", err)
	}
	steps := []struct {
		name        string
		act         func()
		wantStatus  policy.CertStatus
		wantChecked bool
		wantFresh   bool
		wantErrors  float64
	}{
		{"not loaded: fail closed", nil, policy.CertRevocationStale, false, false, 1},
		{"loaded after the server recovers", func() {
			srv.mode.Store("serve")
			if err := ts.Refresh(context.Background()); err != nil {
				t.Errorf("Refresh: %v", err)
			}
		}, policy.CertOK, true, true, 1},
	}
	for _, s := range steps {
		if s.act != nil {
			s.act()
		}
		id := ts.VerifyClient(leaf.Chain, now)
		if id.Status != s.wantStatus || id.Revocation.Checked != s.wantChecked {
			t.Errorf("%s: status %q checked %v, want %q %v", s.name, id.Status, id.Revocation.Checked, s.wantStatus, s.wantChecked)
		}
		if got := ts.Fresh(now); got != s.wantFresh {
			t.Errorf("%s: Fresh %v, want %v", s.name, got, s.wantFresh)
		}
		if v, _ := metricValue(t, reg, "nacd_pki_crl_refresh_errors_total", "council"); v != s.wantErrors {
			t.Errorf("%s: refresh errors %v, want %v", s.name, v, s.wantErrors)
		}
	}
}
