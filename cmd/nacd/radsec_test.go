package main

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
)

// TestServeRadSec: `nacd serve` with radsec enabled in its configuration
// answers Status-Server over RadSec for a controller whose certificate
// chains to radsec.ca_files and names the client, refuses one from another
// CA, and a reload that changes ca_files switches which controller
// certificates are trusted for new connections.
func TestServeRadSec(t *testing.T) {
	dir := t.TempDir()
	const nasName = "wlc01.wallfields.test"
	caA, caB := testpki.NewRoot(t, "controllers A"), testpki.NewRoot(t, "controllers B")
	caAFile, caBFile := caA.WriteCert(t, dir, "ca-a"), caB.WriteCert(t, dir, "ca-b")
	nasA := caA.IssueDevice(t, testpki.Device{CommonName: nasName})
	nasB := caB.IssueDevice(t, testpki.Device{CommonName: nasName})

	radiusAddr, metricsAddr, radsecAddr := freeAddr(t, "udp"), freeAddr(t, "tcp"), freeAddr(t, "tcp")
	example, err := os.ReadFile("../../configs/nacd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	build := func(caFile string) string {
		return radsecConfigYAML(t, string(example), dir, nasName, caFile, "serve-radsec-udp-secret-0123456789",
			"127.0.0.1:1812 ", radiusAddr+" ",
			"127.0.0.1:9812 ", metricsAddr+" ",
			"  # radsec: 127.0.0.1:2083 ", "  radsec: "+radsecAddr+" ",
		)
	}
	cfgFile := filepath.Join(dir, "nacd.yaml")
	if err := os.WriteFile(cfgFile, []byte(build(caAFile)), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	serveOut, serveErr := &lockedBuffer{}, &lockedBuffer{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		runContext(ctx, []string{"serve", "--config", cfgFile}, serveOut, serveErr)
	}()
	defer func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("serve stderr:\n%s", serveErr.String())
		}
	}()
	waitUntil(t, "serve to be ready", func() bool {
		_, ok := scrapeMetric(t, "http://"+metricsAddr+"/metrics", "nacd_radius_radsec_connections")
		return ok
	})
	serverCA := x509.NewCertPool()
	serverCAPEM, err := os.ReadFile(filepath.Join(dir, "data", "pki", "ca.crt"))
	if err != nil || !serverCA.AppendCertsFromPEM(serverCAPEM) {
		t.Fatalf("bootstrap CA: %v", err)
	}
	// ca_files without crls: revocation is not checked, and serve says so.
	if !strings.Contains(serveErr.String(), "no revocation check for NAS certificates") {
		t.Errorf("no warning about the missing revocation check in:\n%s", serveErr.String())
	}

	tests := []struct {
		name  string
		nas   *testpki.Leaf
		serve bool
	}{
		{"controller from the configured CA", nasA, true},
		{"controller from another CA", nasB, false},
	}
	check := func(t *testing.T, nas *testpki.Leaf, serve bool) {
		t.Helper()
		got := radsecStatusServer(t, radsecAddr, serverCA, nas)
		if got != serve {
			t.Fatalf("Status-Server answered = %v, want %v", got, serve)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.nas, tt.serve) })
	}
	if v, _ := scrapeMetric(t, "http://"+metricsAddr+"/metrics", `nacd_radius_radsec_connections_total{result="accepted"}`); v != 1 {
		t.Fatalf("radsec accepted = %v, want 1", v)
	}
	if v, _ := scrapeMetric(t, "http://"+metricsAddr+"/metrics", `nacd_radius_radsec_connections_total{result="handshake_failed"}`); v != 1 {
		t.Fatalf("radsec handshake_failed = %v, want 1", v)
	}

	// Reload with the other CA bundle.
	if err := os.WriteFile(cfgFile, []byte(build(caBFile)), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+metricsAddr+"/-/reload", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %d %s", resp.StatusCode, body)
	}
	t.Run("after the reload: the other CA", func(t *testing.T) {
		check(t, nasB, true)
		check(t, nasA, false)
	})
}

func replaceAll(t *testing.T, s string, oldnew ...string) string {
	t.Helper()
	for i := 0; i+1 < len(oldnew); i += 2 {
		if !strings.Contains(s, oldnew[i]) {
			t.Fatalf("the example has no %q; update this test", oldnew[i])
		}
		s = strings.Replace(s, oldnew[i], oldnew[i+1], 1)
	}
	return s
}

// radsecStatusServer connects to addr as the controller nas and reports
// whether a Status-Server (signed with the secret "radsec") is answered
// with a valid Access-Accept.
func radsecStatusServer(t *testing.T, addr string, roots *x509.CertPool, nas *testpki.Leaf) bool {
	t.Helper()
	c, err := radsecDial(addr, roots, nas)
	if err != nil {
		return false // refused during the handshake (TLS 1.2)
	}
	defer c.Close()
	return radsecStatus(t, c, 42)
}

func radsecDial(addr string, roots *x509.CertPool, nas *testpki.Leaf) (*tls.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		RootCAs: roots, ServerName: "nacd.local", Certificates: []tls.Certificate{nas.TLSCertificate()}, MinVersion: tls.VersionTLS12,
	})
}

// radsecStatus sends a Status-Server with identifier id on c and reports
// whether a valid Access-Accept answers it (false: the connection closed).
func radsecStatus(t *testing.T, c *tls.Conn, id byte) bool {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	secret := []byte("radsec")
	req := make([]byte, 20, 38)
	req[0], req[1] = 12, id // Status-Server
	rand.Read(req[4:20])
	req = append(req, 80, 18)
	req = append(req, make([]byte, 16)...)
	binary.BigEndian.PutUint16(req[2:4], uint16(len(req)))
	mac := hmac.New(md5.New, secret)
	mac.Write(req)
	copy(req[22:], mac.Sum(nil))
	if _, err := c.Write(req); err != nil {
		return false
	}
	hdr := make([]byte, 4)
	if _, err := io.ReadFull(c, hdr); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("no reply and the connection is still open")
		}
		return false // closed (TLS 1.3 refusal after the handshake, or a refused request)
	}
	resp := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
	copy(resp, hdr)
	if _, err := io.ReadFull(c, resp[4:]); err != nil {
		t.Fatalf("truncated reply: %v", err)
	}
	// Response Authenticator: MD5(Code+ID+Length+RequestAuth+Attributes+Secret).
	h := md5.New()
	h.Write(resp[:4])
	h.Write(req[4:20])
	h.Write(resp[20:])
	h.Write(secret)
	if resp[0] != 2 || resp[1] != id || !hmac.Equal(h.Sum(nil), resp[4:20]) {
		t.Fatalf("reply code %d id %d, or bad Response Authenticator", resp[0], resp[1])
	}
	return true
}

// TestServeRadSecRevocation: with nacd's own CA as the RadSec CA bundle
// (the default), a controller certificate issued by that CA connects over
// RadSec; once revoked through the admin API, its live connection is
// closed at its next request (unanswered) and a new connection is refused,
// counted as "revoked". Another controller certificate keeps working.
func TestServeRadSecRevocation(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	const nasName = "wlc01.wallfields.test"
	metricsAddr, radsecAddr, pkiAddr := freeAddr(t, "tcp"), freeAddr(t, "tcp"), freeAddr(t, "tcp")
	example, err := os.ReadFile("../../configs/nacd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := replaceAll(t, string(example),
		"127.0.0.1:1812 ", "127.0.0.1:0 ",
		"127.0.0.1:1813 ", "127.0.0.1:0 ",
		"127.0.0.1:9812 ", metricsAddr+" ",
		"127.0.0.1:9443 ", pkiAddr+" ",
		"  # radsec: 127.0.0.1:2083 ", "  radsec: "+radsecAddr+" ",
		"secret_file: ./nacd-data/radius-secret", `secret: "serve-radsec-revocation-0123456789"`,
		"data_dir: ./nacd-data", "data_dir: "+dataDir,
		"access_log: stdout", "access_log: "+filepath.Join(dir, "access.log"),
		"    radsec: false ", "    radsec: true ",
		"    radsec_identities: [] ", "    radsec_identities: ["+nasName+"] ",
		"  enabled: false ", "  enabled: true ",
	)
	cfgFile := filepath.Join(dir, "nacd.yaml")
	if err := os.WriteFile(cfgFile, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	info, _ := startServe(t, cfgFile)
	if info.RadSec != radsecAddr || info.PKI != pkiAddr {
		t.Fatalf("radsec on %q, pki on %q", info.RadSec, info.PKI)
	}
	pkiURL := "https://" + info.PKI
	serverCA := x509.NewCertPool()
	serverCAPEM, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
	if err != nil || !serverCA.AppendCertsFromPEM(serverCAPEM) {
		t.Fatalf("bootstrap CA: %v", err)
	}

	// Two controller certificates from nacd's CA, by invitation and enrolment.
	enrolController := func() *testpki.Leaf {
		inv, _ := inviteJSON(t, "--data-dir", dataDir, "--server", pkiURL,
			"--email", "netops@herts.example", "--role", "staff", "--ownership", "council-managed", "--device-name", nasName)
		chain, keyDER := enrolWithKey(t, dataDir, pkiURL, inv.Token)
		key, err := x509.ParsePKCS8PrivateKey(keyDER)
		if err != nil {
			t.Fatal(err)
		}
		if chain[0].Subject.CommonName != nasName {
			t.Fatalf("enrolled certificate CN %q, want %q", chain[0].Subject.CommonName, nasName)
		}
		return &testpki.Leaf{Cert: chain[0], Key: key.(crypto.Signer), Chain: chain}
	}
	nas, spare := enrolController(), enrolController()
	metric := func(series string) float64 {
		v, _ := scrapeMetric(t, "http://"+metricsAddr+"/metrics", series)
		return v
	}

	live, err := radsecDial(radsecAddr, serverCA, nas)
	if err != nil {
		t.Fatalf("controller certificate from nacd's CA refused: %v", err)
	}
	defer live.Close()
	if !radsecStatus(t, live, 1) {
		t.Fatal("Status-Server not answered before revocation")
	}

	serial := nas.Cert.SerialNumber.Text(16)
	code, out, errOut := runCACmd(t, "revoke", "--data-dir", dataDir, "--server", pkiURL, "--serial", serial, "--reason", "keyCompromise")
	if code != exitOK || !strings.Contains(out, serial) {
		t.Fatalf("nacd ca revoke: %d %q %q", code, out, errOut)
	}

	// The live connection: the next request is not answered, the connection closes.
	if radsecStatus(t, live, 2) {
		t.Fatal("Status-Server answered on the live connection of a revoked controller")
	}
	waitUntil(t, "closed{revoked}", func() bool {
		return metric(`nacd_radius_radsec_closed_total{cause="revoked"}`) == 1
	})
	// A new connection is refused at the handshake.
	if radsecStatusServer(t, radsecAddr, serverCA, nas) {
		t.Fatal("revoked controller certificate accepted on a new connection")
	}
	waitUntil(t, "connections_total{revoked}", func() bool {
		return metric(`nacd_radius_radsec_connections_total{result="revoked"}`) == 1
	})
	// The other controller certificate still works.
	if !radsecStatusServer(t, radsecAddr, serverCA, spare) {
		t.Fatal("a good controller certificate refused after another was revoked")
	}
	if got := metric(`nacd_radius_radsec_connections_total{result="accepted"}`); got != 2 {
		t.Fatalf("accepted = %v, want 2", got)
	}
}

// TestServeRadSecCRL: with radsec.ca_files and radsec.crls, a controller
// certificate the CRL lists is refused at the handshake (counted as
// "revoked"); one it does not list is served.
func TestServeRadSecCRL(t *testing.T) {
	dir := t.TempDir()
	const nasName = "wlc01.wallfields.test"
	ca := testpki.NewRoot(t, "controllers")
	caFile := ca.WriteCert(t, dir, "controllers-ca")
	good := ca.IssueDevice(t, testpki.Device{CommonName: nasName})
	revoked := ca.IssueDevice(t, testpki.Device{CommonName: nasName})
	crlFile := filepath.Join(dir, "controllers.crl")
	if err := os.WriteFile(crlFile, ca.CRL(t, 1, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), revoked.Cert.SerialNumber), 0o600); err != nil {
		t.Fatal(err)
	}
	metricsAddr, radsecAddr := freeAddr(t, "tcp"), freeAddr(t, "tcp")
	example, err := os.ReadFile("../../configs/nacd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := radsecConfigYAML(t, string(example), dir, nasName, caFile, "serve-radsec-crl-0123456789",
		"127.0.0.1:1812 ", "127.0.0.1:0 ",
		"127.0.0.1:9812 ", metricsAddr+" ",
		"  # radsec: 127.0.0.1:2083 ", "  radsec: "+radsecAddr+" ",
		"  crls: [] ", "  crls: ["+crlFile+"] ",
	)
	cfgFile := filepath.Join(dir, "nacd.yaml")
	if err := os.WriteFile(cfgFile, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	startServe(t, cfgFile)
	serverCA := x509.NewCertPool()
	serverCAPEM, err := os.ReadFile(filepath.Join(dir, "data", "pki", "ca.crt"))
	if err != nil || !serverCA.AppendCertsFromPEM(serverCAPEM) {
		t.Fatalf("bootstrap CA: %v", err)
	}
	metric := func(series string) float64 {
		v, _ := scrapeMetric(t, "http://"+metricsAddr+"/metrics", series)
		return v
	}
	tests := []struct {
		name   string
		nas    *testpki.Leaf
		serve  bool
		result string
	}{
		{"controller the CRL does not list", good, true, "accepted"},
		{"controller the CRL lists", revoked, false, "revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			series := `nacd_radius_radsec_connections_total{result="` + tt.result + `"}`
			before := metric(series)
			if got := radsecStatusServer(t, radsecAddr, serverCA, tt.nas); got != tt.serve {
				t.Fatalf("Status-Server answered = %v, want %v", got, tt.serve)
			}
			waitUntil(t, series, func() bool { return metric(series) == before+1 })
		})
	}
}

// BenchmarkRadSecRevocationCheck: the check run before every RadSec request
// (pki.TrustStore.VerifyClient of the controller's chain, a verified-chain
// cache hit and one CRL lookup).
func BenchmarkRadSecRevocationCheck(b *testing.B) {
	dir := b.TempDir()
	ca := testpki.NewRoot(b, "controllers")
	nas := ca.IssueDevice(b, testpki.Device{CommonName: "wlc01.wallfields.test"})
	crlFile := filepath.Join(dir, "controllers.crl")
	if err := os.WriteFile(crlFile, ca.CRL(b, 1, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)), 0o600); err != nil {
		b.Fatal(err)
	}
	rv, err := newRadSecRevocation(pki.AnchorConfig{Name: "radsec", CAFiles: []string{ca.WriteCert(b, dir, "ca")}, CRLs: []string{crlFile},
		RequireCRL: true, StaleFailClosed: true, OIDs: policy.DefaultOIDs()}, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	chain, now := []*x509.Certificate{nas.Cert}, time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if err := rv.verifyPeer(chain, now); err != nil {
			b.Fatal(err)
		}
	}
}

// radsecConfigYAML is the example configuration with RadSec on for one
// client (loopback, identity nasName) under caFile, state and access log
// in dir, the accounting and PKI listeners on free ports, and the extra
// old/new replacements (listen addresses, crls, ...).
func radsecConfigYAML(t *testing.T, example, dir, nasName, caFile, secret string, extra ...string) string {
	t.Helper()
	pairs := append([]string{
		"127.0.0.1:1813 ", "127.0.0.1:0 ",
		"127.0.0.1:9443 ", "127.0.0.1:0 ",
		"secret_file: ./nacd-data/radius-secret", "secret: " + strconv.Quote(secret),
		"data_dir: ./nacd-data", "data_dir: " + filepath.Join(dir, "data"),
		"access_log: stdout", "access_log: " + filepath.Join(dir, "access.log"),
		"    radsec: false ", "    radsec: true ",
		"    radsec_identities: [] ", "    radsec_identities: [" + nasName + "] ",
		"  enabled: false ", "  enabled: true ",
		"  ca_files: [] ", "  ca_files: [" + caFile + "] ",
	}, extra...)
	return replaceAll(t, example, pairs...)
}
