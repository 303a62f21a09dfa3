package radius

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"layeh.com/radius"

	"github.com/herts-council/nacd/internal/eapoltest"
	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/internal/testtool"
	"github.com/herts-council/nacd/policy"
)

// revocationHook is a VerifyPeer that refuses the serials put in it (a
// stand-in for pki's revocation set) and counts its calls.
type revocationHook struct {
	mu      sync.Mutex
	revoked map[string]bool
	calls   atomic.Int64
}

var errTestRevoked = errors.New("certificate revoked")

func (h *revocationHook) verify(chain []*x509.Certificate, now time.Time) error {
	h.calls.Add(1)
	if len(chain) == 0 || now.IsZero() {
		return errors.New("bad call")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.revoked[chain[0].SerialNumber.String()] {
		return errTestRevoked
	}
	return nil
}

func (h *revocationHook) revoke(l *testpki.Leaf) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.revoked == nil {
		h.revoked = map[string]bool{}
	}
	h.revoked[l.Cert.SerialNumber.String()] = true
}

func radsecStatusServer(tb testing.TB, id byte) []byte {
	return signMA(rawPacket(byte(radius.CodeStatusServer), id, randomAuth(tb)), radsecSecret)
}

// TestRadSecRevokedAtHandshake: a controller whose certificate VerifyPeer
// refuses (revoked) fails the handshake, counted as "revoked", logged, and
// none of its requests is processed; a good certificate of the same CA
// still connects and is answered.
func TestRadSecRevokedAtHandshake(t *testing.T) {
	h := &revocationHook{}
	e := newRadSecEnv(t, radsecOptions{cfg: RadSecConfig{VerifyPeer: h.verify}, fake: &fakeFactory{msk: testMSK()}})
	revoked := e.nasCA.IssueDevice(t, testpki.Device{CommonName: radsecNASName})
	h.revoke(revoked)

	c, err := e.dialTLS(t, radsecNASIP, revoked)
	if err == nil {
		// TLS 1.3: the client finishes first; the refusal comes next.
		c.Write(radsecStatusServer(t, 1))
		if _, err := readFramed(c); err == nil {
			t.Fatal("a request on a revoked certificate's connection was answered")
		}
		assertClosed(t, c)
	}
	e.waitResult(t, RadSecRevoked, 1)
	if got := e.result(RadSecAccepted); got != 0 {
		t.Fatalf("accepted = %v, want 0", got)
	}
	if got := e.result(RadSecHandshakeFailed); got != 0 {
		t.Fatalf("handshake_failed = %v, want 0 (the refusal is counted as revoked)", got)
	}
	if n := e.opLog.FilterMessageSnippet("refused by the revocation check").Len(); n == 0 {
		t.Fatal("refusal not logged")
	}
	if got := testutil.ToFloat64(e.srv.metrics.requests.WithLabelValues("status_server", "wlc-wallfields")); got != 0 {
		t.Fatalf("requests processed = %v, want 0", got)
	}

	good := e.mustConnect(t)
	req := radsecStatusServer(t, 2)
	checkRadSecResponse(t, streamExchange(t, good, req), req)
	if h.calls.Load() < 3 { // revoked handshake, good handshake, good request
		t.Fatalf("VerifyPeer called %d times, want at least 3", h.calls.Load())
	}
}

// TestRadSecRevokedWhileConnected: a live connection whose certificate
// becomes revoked is closed at its next request, which is not answered
// (cause "revoked"); a reload keeps the check; another controller's
// connection is unaffected.
func TestRadSecRevokedWhileConnected(t *testing.T) {
	h := &revocationHook{}
	e := newRadSecEnv(t, radsecOptions{cfg: RadSecConfig{VerifyPeer: h.verify}, fake: &fakeFactory{msk: testMSK()}})
	other := e.nasCA.IssueDevice(t, testpki.Device{CommonName: radsecNASName})

	c := e.mustConnect(t)
	c2, err := e.dialTLS(t, radsecNASIP, other)
	if err != nil {
		t.Fatal(err)
	}
	e.waitResult(t, RadSecAccepted, 2)
	req := radsecStatusServer(t, 1)
	checkRadSecResponse(t, streamExchange(t, c, req), req)

	// A reload (new certificate and CA pool, no hook given) keeps VerifyPeer.
	pool := x509.NewCertPool()
	pool.AddCert(e.nasCA.Cert)
	if err := e.srv.Reload(Reload{Clients: e.clients, Policy: testPolicy(t), RadSec: &RadSecConfig{
		Certificates: testEAPTLSConfig(t).Certificates, ClientCAs: pool, MinVersion: tls.VersionTLS12,
	}}); err != nil {
		t.Fatal(err)
	}

	h.revoke(e.nas)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(radsecStatusServer(t, 2)); err != nil {
		t.Fatal(err)
	}
	if resp, err := readFramed(c); err == nil {
		t.Fatalf("request answered after revocation: code %d", resp[0])
	}
	assertClosed(t, c)
	waitFor(t, "closed{revoked}", func() bool { return e.closed(RadSecClosedRevoked) == 1 })
	if n := e.opLog.FilterMessageSnippet("connection closed, request dropped").Len(); n == 0 {
		t.Fatal("live refusal not logged")
	}
	if got := testutil.ToFloat64(e.srv.metrics.dropped.WithLabelValues(DropCertificateRefused)); got != 1 {
		t.Fatalf("dropped{certificate_refused} = %v, want 1 (the unanswered request)", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.dropped.WithLabelValues(DropUnknownClient)); got != 0 {
		t.Fatalf("dropped{unknown_client} = %v, want 0", got)
	}

	// The other controller keeps its connection.
	req = radsecStatusServer(t, 3)
	checkRadSecResponse(t, streamExchange(t, c2, req), req)

	// A new connection with the revoked certificate is refused (after the reload).
	if c3, err := e.dialTLS(t, radsecNASIP, e.nas); err == nil {
		c3.Write(radsecStatusServer(t, 4))
		if _, err := readFramed(c3); err == nil {
			t.Fatal("a request on a revoked certificate's new connection was answered")
		}
	}
	e.waitResult(t, RadSecRevoked, 1)
	if got := e.result(RadSecAccepted); got != 2 {
		t.Fatalf("accepted = %v, want 2", got)
	}
}

// TestRadSecRevokedLabelsPreCreated: the new result and cause exist from
// the start (zero), like the others.
func TestRadSecRevokedLabelsPreCreated(t *testing.T) {
	e := newRadSecEnv(t, radsecOptions{fake: &fakeFactory{msk: testMSK()}})
	for _, tt := range []struct {
		name, metric string
	}{
		{`nacd_radius_radsec_connections_total{result="revoked"}`, "nacd_radius_radsec_connections_total"},
		{`nacd_radius_radsec_closed_total{cause="revoked"}`, "nacd_radius_radsec_closed_total"},
	} {
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, mf := range mfs {
			if mf.GetName() != tt.metric {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetValue() == "revoked" {
						found = true
					}
				}
			}
		}
		if !found {
			t.Errorf("%s not pre-created", tt.name)
		}
	}
	if n := e.opLog.FilterMessageSnippet("no revocation check").Len(); n != 1 {
		t.Fatalf("warning about the missing revocation check logged %d times, want 1", n)
	}
}

// TestRadSecInteropRadsecproxyRevoked: radsecproxy presenting a revoked
// controller certificate (trusted CA, right name) is refused at the TLS
// handshake, counted as "revoked", and no authentication gets through it.
func TestRadSecInteropRadsecproxyRevoked(t *testing.T) {
	proxyBin := testtool.Require(t, "radsecproxy")
	eapolBin := eapoltest.Require(t)
	dir := t.TempDir()

	devices := newDevicePKI(t)
	nasCA := testpki.NewRoot(t, "controller ca")
	leaf := nasCA.IssueDevice(t, testpki.Device{CommonName: radsecNASName})
	nas := leaf.WriteFiles(t, dir, "nas")
	h := &revocationHook{}
	h.revoke(leaf)
	testEAPTLSConfig(t)
	serverCA := serverRoot.WriteCert(t, dir, "server-ca")
	staff := devices.issuing.IssueDevice(t, testpki.Device{CommonName: "laptop-21", Email: "hal@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff}).WriteFiles(t, dir, "staff")

	srv, radsecAddr := startInteropRadSec(t, devices, nasCA, h.verify)
	result := func(r string) float64 { return testutil.ToFloat64(srv.radsec.results.WithLabelValues(r)) }

	port := freeUDPPort(t)
	startRadsecproxy(t, proxyBin, t.TempDir(), port, radsecAddr, nas, serverCA)
	waitFor(t, "the revoked controller's handshake to be refused", func() bool { return result(RadSecRevoked) >= 1 })
	res, err := eapoltest.Run(context.Background(), eapoltest.Options{
		Binary: eapolBin, Server: "127.0.0.1:" + strconv.Itoa(port), Secret: radsecproxyUDPSecret,
		CACert: serverCA, ClientCert: staff.Chain, ClientKey: staff.Key, Timeout: 6 * time.Second,
	})
	if err != nil {
		t.Fatalf("eapol_test: %v", err)
	}
	if res.Success || res.Accept != nil {
		t.Fatalf("authenticated through a controller with a revoked certificate\n%s", res.Raw)
	}
	if got := result(RadSecAccepted); got != 0 {
		t.Fatalf("accepted = %v, want 0", got)
	}
}
