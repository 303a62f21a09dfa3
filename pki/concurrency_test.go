package pki

import (
	"context"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herts-council/nacd/policy"
)

// TrustStore satisfies radius.CertificateVerifier structurally (pki does not
// import radius).
var _ interface {
	VerifyClient(chain []*x509.Certificate, now time.Time) policy.Identity
} = (*TrustStore)(nil)

// VerifyClient runs concurrently with Reload, Refresh, Fresh and the
// metrics collector (run with -race). A good device never gets anything but
// ok; a revoked one never anything but revoked.
func TestConcurrentVerifyReloadRefresh(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	good := f.inter.IssueDevice(t, staffLaptop)
	bad := f.inter.IssueDevice(t, staffLaptop)
	rootCRL := f.crlFile(t, "root.crl", f.root, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	interCRL := f.crlFile(t, "inter.crl", f.inter, 1, now.Add(-time.Hour), now.Add(24*time.Hour), bad.Cert.SerialNumber)
	anchors := []AnchorConfig{{Name: "council", IL3: true, CAFiles: []string{f.rootFile, f.interFile}, CRLs: []string{rootCRL, interCRL}}}
	ts, err := NewTrustStore(anchors)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts.Start(ctx)

	var wg sync.WaitGroup
	errs := make(chan string, 100)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if s := ts.VerifyClient(good.Chain, now).Status; s != policy.CertOK {
					errs <- "good device: " + string(s)
					return
				}
				if s := ts.VerifyClient(bad.Chain, now).Status; s != policy.CertRevoked {
					errs <- "revoked device: " + string(s)
					return
				}
				_ = ts.Fresh(now)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			if err := ts.Reload(anchors); err != nil {
				errs <- "reload: " + err.Error()
				return
			}
			if err := ts.Refresh(ctx); err != nil {
				errs <- "refresh: " + err.Error()
				return
			}
			ch := make(chan prometheus.Metric, 16)
			go func() { crlCollector{ts.metrics}.Collect(ch); close(ch) }()
			for range ch {
			}
		}
	}()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
