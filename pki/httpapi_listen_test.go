package pki

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herts-council/nacd/internal/testtool"
)

// TestServeSplitOnePort: one port serves the whole API over TLS and only
// /crl, /ocsp, /ca.crt over plain HTTP (the CRL DP and OCSP URL).
func TestServeSplitOnePort(t *testing.T) {
	openssl := testtool.Require(t, "openssl")
	b, _ := caBackend(t, "bbolt")
	// The TLS/plain listeners of apiEnv are not used here; its files and
	// clients are.
	e := newAPIEnv(t, b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.api.ServeSplit(ctx, ln, b.serverCert) }()
	split := ln.Addr().String()
	e.url = "https://" + split // e.do now talks to the split port

	// A silent client must not hold up anything else.
	silent, err := net.Dial("tcp", split)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	chain, _, inv := e.enrolDevice(t)
	checkEnrolled(t, e, chain, inv)

	cases := []struct {
		name   string
		method string
		path   string
		code   int
	}{
		{name: "CRL over plain HTTP", method: "GET", path: "/crl", code: 200},
		{name: "root over plain HTTP", method: "GET", path: "/ca.crt", code: 200},
		{name: "enrolment refused over plain HTTP", method: "POST", path: "/v1/enroll", code: 404},
		{name: "admin API refused over plain HTTP", method: "GET", path: "/v1/admin/certificates", code: 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://"+split+tc.path, strings.NewReader(""))
			req.Header.Set("Authorization", "Bearer "+e.adminToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("%s %s: %d", tc.method, tc.path, resp.StatusCode)
			}
			if tc.path == "/crl" {
				if _, err := x509.ParseRevocationList(body); err != nil {
					t.Fatalf("CRL: %v", err)
				}
			}
		})
	}
	certFile := filepath.Join(t.TempDir(), "leaf.pem")
	if err := os.WriteFile(certFile, pemCerts(chain[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "ocsp", "-issuer", e.interFile, "-cert", certFile, "-url", "http://"+split+"/ocsp",
		"-CAfile", e.rootFile, "-timeout", "20").CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": good") || !strings.Contains(string(out), "Response verify OK") {
		t.Fatalf("openssl ocsp on the split port: %v\n%s", err, out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeSplit: %v", err)
	}
}
