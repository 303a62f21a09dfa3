package main

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testpki"
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
		return replaceAll(t, string(example),
			"127.0.0.1:1812 ", radiusAddr+" ",
			"127.0.0.1:1813 ", "127.0.0.1:0 ",
			"127.0.0.1:9812 ", metricsAddr+" ",
			"127.0.0.1:9443 ", "127.0.0.1:0 ",
			"  # radsec: 127.0.0.1:2083 ", "  radsec: "+radsecAddr+" ",
			"secret_file: ./nacd-data/radius-secret", `secret: "serve-radsec-udp-secret-0123456789"`,
			"data_dir: ./nacd-data", "data_dir: "+filepath.Join(dir, "data"),
			"access_log: stdout", "access_log: "+filepath.Join(dir, "access.log"),
			"    radsec: false ", "    radsec: true ",
			"    radsec_identities: [] ", "    radsec_identities: ["+nasName+"] ",
			"  enabled: false ", "  enabled: true ",
			"  ca_files: [] ", "  ca_files: ["+caFile+"] ",
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
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		RootCAs: roots, ServerName: "nacd.local", Certificates: []tls.Certificate{nas.TLSCertificate()}, MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		return false // refused during the handshake (TLS 1.2)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	secret := []byte("radsec")
	req := make([]byte, 20, 38)
	req[0], req[1] = 12, 42 // Status-Server
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
		return false // closed after the handshake (TLS 1.3 refusal)
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
	if resp[0] != 2 || resp[1] != 42 || !hmac.Equal(h.Sum(nil), resp[4:20]) {
		t.Fatalf("reply code %d id %d, or bad Response Authenticator", resp[0], resp[1])
	}
	return true
}
