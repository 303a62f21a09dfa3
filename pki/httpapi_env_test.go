package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

// backend is the CA an apiEnv runs on: the in-memory test CA, or the real
// *CA (end-to-end tests).
type backend struct {
	auth       Authority
	tokens     TokenStore
	count      func() int
	serverCert tls.Certificate
}

func memBackend(t testing.TB) (backend, *memCA) {
	t.Helper()
	m := newMemCA(t)
	return backend{auth: m, tokens: memTokens{m}, count: m.count,
		serverCert: m.inter.IssueServer(t, "localhost", testpki.ECDSAP256).TLSCertificate()}, m
}

// caBackend is nacd's real CA (smallstep's embedded authority) in a
// temporary data dir, on kind "bbolt" or "postgres" (ctStore: skipped
// locally, failed in CI, without NACD_TEST_POSTGRES_DSN).
func caBackend(t testing.TB, kind string) (backend, *CA) {
	t.Helper()
	store := ctStore(t, kind)
	ca, err := OpenCA(context.Background(), CAConfig{DataDir: t.TempDir(), Store: store})
	if err != nil {
		t.Fatalf("OpenCA(%s): %v", kind, err)
	}
	t.Cleanup(func() { _ = ca.Close() })
	certFile, keyFile, err := ca.ServerCertificate(context.Background(), []string{"localhost"})
	if err != nil {
		t.Fatalf("server certificate: %v", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		recs, err := ca.List(context.Background(), ListFilter{})
		if err != nil {
			t.Fatalf("inventory: %v", err)
		}
		return len(recs)
	}
	return backend{auth: ca, tokens: ca.Tokens(), count: count, serverCert: cert}, ca
}

// forEachStore runs fn against the real CA on every store kind.
func forEachStore(t *testing.T, fn func(t *testing.T, b backend, ca *CA)) {
	for _, kind := range ctStoreKinds {
		t.Run(kind, func(t *testing.T) {
			b, ca := caBackend(t, kind)
			fn(t, b, ca)
		})
	}
}

// apiEnv is the PKI HTTP API served on 127.0.0.1: TLS (full API) and plain
// HTTP (/crl, /ocsp).
type apiEnv struct {
	t          *testing.T
	b          backend
	enr        *Enroller
	api        *API
	url        string // https://127.0.0.1:port
	pubURL     string // http://127.0.0.1:port
	dir        string
	rootFile   string // root PEM
	caFile     string // root + intermediate PEM
	interFile  string
	adminToken string
	skew       atomic.Int64 // added to the enroller's clock
	audit      *observer.ObservedLogs
	reg        *prometheus.Registry
	admins     []string
}

func newAPIEnv(t *testing.T, b backend, admins ...string) *apiEnv {
	t.Helper()
	e := &apiEnv{t: t, b: b, dir: t.TempDir(), reg: prometheus.NewRegistry(), admins: admins}
	core, logs := observer.New(zapcore.DebugLevel)
	e.audit = logs
	audit := zap.New(core)
	lnTLS, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnPub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "https://" + lnTLS.Addr().String()
	e.pubURL = "http://" + lnPub.Addr().String()
	e.enr, err = NewEnroller(EnrollConfig{Issuer: b.auth, Tokens: b.tokens, BaseURL: e.url, AccessLog: audit,
		Registerer: e.reg, PKCS12Iterations: 4096, Now: func() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	e.api, err = NewAPI(APIConfig{CA: b.auth, Enroller: e.enr, AdminTokenFile: filepath.Join(e.dir, AdminTokenFileName),
		AdminSubjects: admins, AccessLog: audit, Registerer: e.reg, MaxBodyBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	e.adminToken, err = ReadAdminToken(filepath.Join(e.dir, AdminTokenFileName))
	if err != nil {
		t.Fatal(err)
	}
	e.rootFile = e.write("root.pem", pemCerts(b.auth.Root()))
	e.interFile = e.write("inter.pem", pemCerts(b.auth.Intermediate()))
	e.caFile = e.write("ca.pem", pemCerts(b.auth.Root(), b.auth.Intermediate()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = e.api.Serve(ctx, lnTLS, b.serverCert); done <- struct{}{} }()
	go func() { _ = e.api.ServePublic(ctx, lnPub); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return e
}

func (e *apiEnv) write(name string, data []byte) string {
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func pemCerts(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// client returns an HTTPS client trusting the CA root, presenting cert
// when given.
func (e *apiEnv) client(cert *tls.Certificate) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(e.b.auth.Root())
	tc := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
}

type httpResult struct {
	code int
	body []byte
	hdr  http.Header
	err  apiError
}

func (e *apiEnv) do(c *http.Client, method, path, bearer, ctype string, body []byte) httpResult {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c == nil {
		c = e.client(nil)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := httpResult{code: resp.StatusCode, body: b, hdr: resp.Header}
	if resp.Header.Get("Content-Type") == "application/json" {
		_ = json.Unmarshal(b, &r.err)
	}
	return r
}

// invite creates a token for a council-managed il3 staff laptop unless
// mods change it.
func (e *apiEnv) invite(mods ...func(*Invite)) Invitation {
	e.t.Helper()
	inv := Invite{Email: "alice@herts.example", Role: policy.RoleStaff, Ownership: policy.OwnershipCouncilManaged,
		ClearanceIL3: true, DeviceName: "alice-laptop", By: "test"}
	for _, m := range mods {
		m(&inv)
	}
	out, err := e.enr.Invite(context.Background(), inv)
	if err != nil {
		e.t.Fatalf("invite: %v", err)
	}
	return out
}

// newCSR makes a CSR with key (P-256 when nil) and tmpl (CN/SANs).
func newCSR(t testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) ([]byte, crypto.Signer) {
	t.Helper()
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = k
	}
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{Subject: pkix.Name{}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), key
}

func parseChain(t testing.TB, data []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("no certificate in %q", data)
	}
	return out
}

// trustStore verifies device chains against the env's CA as pki's RADIUS
// path does.
func (e *apiEnv) trustStore() *TrustStore {
	e.t.Helper()
	ts, err := NewTrustStore([]AnchorConfig{{Name: "test-ca", IL3: true, CAFiles: []string{e.caFile}, OIDs: policy.DefaultOIDs()}})
	if err != nil {
		e.t.Fatal(err)
	}
	return ts
}

// tlsCert pairs a chain with its key.
func tlsCert(chain []*x509.Certificate, key crypto.Signer) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// noSecretsLogged fails when an audit record holds one of secrets
// (tokens, the admin token, passwords).
func (e *apiEnv) noSecretsLogged(secrets ...string) {
	e.t.Helper()
	for _, l := range e.audit.All() {
		rec := fmt.Sprint(l.Message, l.ContextMap())
		for _, s := range secrets {
			if s != "" && strings.Contains(rec, strings.TrimPrefix(s, tokenPrefix)) {
				e.t.Fatalf("audit record %q holds a secret", l.Message)
			}
		}
	}
}

// auditMsgs returns the audit messages logged so far with their reason
// field.
func (e *apiEnv) auditCount(msg, reason string) int {
	n := 0
	for _, l := range e.audit.All() {
		if l.Message != msg {
			continue
		}
		if reason == "" || l.ContextMap()["event.reason"] == reason {
			n++
		}
	}
	return n
}
