package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/herts-council/nacd/internal/testtool"
	"github.com/herts-council/nacd/policy"
)

// checkEnrolled verifies chain through a TrustStore (as the RADIUS path
// does) and checks that the identity carries exactly the invitation's facts.
func checkEnrolled(t *testing.T, e *apiEnv, chain []*x509.Certificate, inv Invitation) policy.Identity {
	t.Helper()
	id := e.trustStore().VerifyClient(chain, time.Now())
	if id.Status != policy.CertOK {
		t.Fatalf("enrolled chain: status %s, want ok", id.Status)
	}
	f := inv.Facts
	if id.Email != f.Email || id.DeviceUUID != f.DeviceUUID || id.Ownership != f.Ownership || id.Role != f.Role || id.ClearanceIL3 != f.ClearanceIL3 {
		t.Fatalf("identity %+v does not carry the token's facts %+v", id, f)
	}
	want := f.DeviceName
	if want == "" {
		want = f.Email
	}
	if id.CommonName != want {
		t.Fatalf("CN %q, want %q", id.CommonName, want)
	}
	if !chain[0].NotBefore.Before(time.Now()) || !chain[0].NotAfter.After(time.Now().Add(time.Hour)) {
		t.Fatalf("validity %s..%s does not cover now", chain[0].NotBefore, chain[0].NotAfter)
	}
	return id
}

func TestEnrollEndToEndHTTPS(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, _ *CA) { testEnrollEndToEndHTTPS(t, b) })
}

func testEnrollEndToEndHTTPS(t *testing.T, b backend) {
	e := newAPIEnv(t, b)
	cases := []struct {
		name string
		mod  func(*Invite)
		csr  func(inv Invitation) *x509.CertificateRequest
		key  func() any
	}{
		{name: "council laptop with il3, empty CSR subject", mod: func(*Invite) {}},
		{name: "councillor's own phone, CSR repeats the token's names", mod: func(i *Invite) {
			i.Email, i.Role, i.Ownership, i.ClearanceIL3, i.DeviceName = "cllr.bob@herts.example", policy.RoleMember, policy.OwnershipPersonal, false, "bob-phone"
		}, csr: func(inv Invitation) *x509.CertificateRequest {
			return &x509.CertificateRequest{Subject: pkix.Name{CommonName: "bob-phone"}, EmailAddresses: []string{"cllr.bob@herts.example"},
				URIs: []*url.URL{{Scheme: "urn", Opaque: "uuid:" + inv.Facts.DeviceUUID}}}
		}},
		{name: "CSR asks for another CN: the certificate carries the token's", mod: func(*Invite) {},
			csr: func(Invitation) *x509.CertificateRequest {
				return &x509.CertificateRequest{Subject: pkix.Name{CommonName: "someone-else", Organization: []string{"Evil"}}}
			}},
		{name: "contractor RSA-2048 key, no device name", mod: func(i *Invite) {
			i.Email, i.Role, i.ClearanceIL3, i.DeviceName = "carol@contractor.example", policy.RoleContractor, false, ""
		}, key: func() any { k, _ := rsa.GenerateKey(rand.Reader, 2048); return k }},
	}
	var tokens []string
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inv := e.invite(tc.mod)
			tokens = append(tokens, inv.Token)
			if !strings.HasPrefix(inv.URL, e.url+"/enroll?token=") {
				t.Fatalf("enrolment URL %q", inv.URL)
			}
			var tmpl *x509.CertificateRequest
			if tc.csr != nil {
				tmpl = tc.csr(inv)
			}
			var csr []byte
			if tc.key != nil {
				csr, _ = newCSR(t, tc.key().(*rsa.PrivateKey), tmpl)
			} else {
				csr, _ = newCSR(t, nil, tmpl)
			}
			before := b.count()
			r := e.do(nil, "POST", "/v1/enroll", inv.Token, "application/pkcs10", csr)
			if r.code != http.StatusCreated {
				t.Fatalf("POST /v1/enroll: %d %s", r.code, r.body)
			}
			if ct := r.hdr.Get("Content-Type"); ct != "application/pem-certificate-chain" {
				t.Fatalf("content type %q", ct)
			}
			chain := parseChain(t, r.body)
			if len(chain) != 2 || !chain[1].Equal(b.auth.Intermediate()) {
				t.Fatalf("chain of %d, want leaf + intermediate", len(chain))
			}
			checkEnrolled(t, e, chain, inv)
			if got := b.count(); got != before+1 {
				t.Fatalf("inventory %d -> %d, want +1", before, got)
			}
			if r.hdr.Get("X-Nacd-Serial") != hexSerial(chain[0]) {
				t.Fatalf("X-Nacd-Serial %q", r.hdr.Get("X-Nacd-Serial"))
			}
		})
	}
	if got := testutil.ToFloat64(e.enr.tokens.WithLabelValues(TokenUsed)); got != float64(len(cases)) {
		t.Fatalf("tokens used = %v, want %d", got, len(cases))
	}
	if n := e.auditCount("token-used", ""); n != len(cases) {
		t.Fatalf("token-used audit records: %d", n)
	}
	e.noSecretsLogged(tokens...)
}

func TestEnrollDERBody(t *testing.T) {
	b, _ := caBackend(t, "bbolt")
	e := newAPIEnv(t, b)
	inv := e.invite()
	csr, _ := newCSR(t, nil, nil)
	blk, _ := pem.Decode(csr)
	r := e.do(nil, "POST", "/v1/enroll", inv.Token, "application/pkcs10", blk.Bytes)
	if r.code != http.StatusCreated {
		t.Fatalf("DER CSR: %d %s", r.code, r.body)
	}
}

func TestEnrollRefusalsIssueNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, _ *CA) { testEnrollRefusalsIssueNothing(t, b) })
}

func testEnrollRefusalsIssueNothing(t *testing.T, b backend) {
	e := newAPIEnv(t, b)
	good, _ := newCSR(t, nil, nil)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	weakRSA, _ := newCSR(t, rsa1024, nil)
	curve224, _ := newCSR(t, p224, nil)
	curve521, _ := newCSR(t, p521, nil)
	// A CSR whose signature no longer matches: flip a byte of the subject
	// (inside the signed part).
	badSig := tamperCSR(t, "tampered-cn")
	dnsSAN, _ := newCSR(t, nil, &x509.CertificateRequest{DNSNames: []string{"evil.example"}})
	otherMail, _ := newCSR(t, nil, &x509.CertificateRequest{EmailAddresses: []string{"mallory@herts.example"}})
	otherUUID, _ := newCSR(t, nil, &x509.CertificateRequest{URIs: []*url.URL{{Scheme: "urn", Opaque: "uuid:00000000-0000-4000-8000-000000000000"}}})
	big := append([]byte("-----BEGIN CERTIFICATE REQUEST-----\n"), make([]byte, 20<<10)...)

	used := e.invite()
	if r := e.do(nil, "POST", "/v1/enroll", used.Token, "", good); r.code != http.StatusCreated {
		t.Fatalf("first use: %d %s", r.code, r.body)
	}
	expired := e.invite(func(i *Invite) { i.Valid = time.Hour })

	cases := []struct {
		name     string
		token    func() string
		csr      []byte
		expired  bool
		code     int
		errCode  string
		consumes bool // whether the token is gone afterwards
	}{
		{name: "no token", token: func() string { return "" }, csr: good, code: 401, errCode: "token_invalid"},
		{name: "malformed token", token: func() string { return "hello" }, csr: good, code: 401, errCode: "token_invalid"},
		{name: "unknown token", token: func() string { return tokenPrefix + strings.Repeat("A", 43) }, csr: good, code: 401, errCode: "token_invalid"},
		{name: "reused token", token: func() string { return used.Token }, csr: good, code: 409, errCode: "token_used"},
		{name: "unknown token and a garbage CSR: the token is reported", token: func() string { return tokenPrefix + strings.Repeat("B", 43) }, csr: []byte("junk"), code: 401, errCode: "token_invalid"},
		{name: "expired token", token: func() string { return expired.Token }, csr: good, expired: true, code: 401, errCode: "token_expired"},
		{name: "RSA-1024 key", csr: weakRSA, code: 400, errCode: "weak_key"},
		{name: "P-224 curve", csr: curve224, code: 400, errCode: "weak_key"},
		{name: "P-521 curve (unsupported)", csr: curve521, code: 400, errCode: "weak_key"},
		{name: "CSR signature invalid", csr: badSig, code: 400, errCode: "csr_signature"},
		{name: "CSR asks for a DNS name", csr: dnsSAN, code: 400, errCode: "csr_mismatch"},
		{name: "CSR asks for another e-mail", csr: otherMail, code: 400, errCode: "csr_mismatch"},
		{name: "CSR asks for another device UUID", csr: otherUUID, code: 400, errCode: "csr_mismatch"},
		{name: "garbage CSR", csr: []byte("not a CSR"), code: 400, errCode: "bad_csr"},
		{name: "empty body", csr: nil, code: 400, errCode: "bad_csr"},
		{name: "oversized body", csr: big, code: 413, errCode: "too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := ""
			if tc.token != nil {
				tok = tc.token()
			} else {
				tok = e.invite().Token // a fresh, valid token: only the CSR is wrong
			}
			if tc.expired {
				e.skew.Store(int64(2 * time.Hour))
				defer e.skew.Store(0)
			}
			before := b.count()
			rejected := e.auditCount("token-rejected", "")
			r := e.do(nil, "POST", "/v1/enroll", tok, "application/pkcs10", tc.csr)
			if r.code != tc.code || r.err.Error != tc.errCode {
				t.Fatalf("got %d %q (%s), want %d %q", r.code, r.err.Error, r.err.Reason, tc.code, tc.errCode)
			}
			if r.err.Reason == "" {
				t.Fatal("error without a reason")
			}
			if got := b.count(); got != before {
				t.Fatalf("inventory moved %d -> %d: something was issued", before, got)
			}
			if tc.code != 413 && e.auditCount("token-rejected", "") != rejected+1 {
				t.Fatalf("refusal not audit-logged")
			}
			if tc.token == nil {
				// A bad CSR does not burn the token: the holder can retry.
				if r := e.do(nil, "POST", "/v1/enroll", tok, "", good); r.code != http.StatusCreated {
					t.Fatalf("retry with a good CSR after %q: %d %s", tc.name, r.code, r.body)
				}
			}
		})
	}
	e.noSecretsLogged(used.Token, expired.Token, e.adminToken)
	for ev, want := range map[string]float64{TokenReused: 1, TokenExpired: 1, TokenInvalid: 4} {
		if got := testutil.ToFloat64(e.enr.tokens.WithLabelValues(ev)); got != want {
			t.Errorf("nacd_pki_tokens_total{event=%q} = %v, want %v", ev, got, want)
		}
	}
}

// tamperCSR returns a PEM CSR whose signature does not verify.
func tamperCSR(t *testing.T, cn string) []byte {
	t.Helper()
	p, _ := newCSR(t, nil, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}})
	blk, _ := pem.Decode(p)
	der := append([]byte(nil), blk.Bytes...)
	i := strings.Index(string(der), cn)
	if i < 0 {
		t.Fatal("CN not found in CSR")
	}
	der[i] ^= 0x01 // still valid DER, CN changes, signature breaks
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestEnrollOneTokenTwentyGoroutines(t *testing.T) {
	forEachStore(t, func(t *testing.T, b backend, _ *CA) { testEnrollOneTokenTwentyGoroutines(t, b) })
}

func testEnrollOneTokenTwentyGoroutines(t *testing.T, b backend) {
	e := newAPIEnv(t, b)
	inv := e.invite()
	before := b.count()
	const n = 20
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		csr, _ := newCSR(t, nil, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes[i] = postEnroll(t, e, inv.Token, csr)
		}()
	}
	close(start)
	wg.Wait()
	won, lost := 0, 0
	for _, c := range codes {
		switch c {
		case http.StatusCreated:
			won++
		case http.StatusConflict:
			lost++
		}
	}
	if won != 1 || lost != n-1 {
		t.Fatalf("codes %v: %d created, %d conflict; want exactly 1 and %d", codes, won, lost, n-1)
	}
	if got := b.count(); got != before+1 {
		t.Fatalf("inventory %d -> %d, want exactly one certificate", before, got)
	}
}

func TestEnrollPKCS12(t *testing.T) {
	b, _ := caBackend(t, "bbolt")
	e := newAPIEnv(t, b)
	cases := []struct {
		name     string
		body     string
		code     int
		errCode  string
		password string
		rsa      bool
	}{
		{name: "default ECDSA, generated password", body: ``, code: 201},
		{name: "RSA-2048 on request", body: `{"key_type":"rsa-2048"}`, code: 201, rsa: true},
		{name: "client-chosen password", body: `{"password":"correct horse battery staple"}`, code: 201, password: "correct horse battery staple"},
		{name: "short chosen password", body: `{"password":"short"}`, code: 400, errCode: "bad_request"},
		{name: "unknown key type", body: `{"key_type":"dsa-1024"}`, code: 400, errCode: "bad_request"},
		{name: "unknown field", body: `{"keytype":"rsa-2048"}`, code: 400, errCode: "bad_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inv := e.invite(func(i *Invite) { i.Email, i.DeviceName = "dave@herts.example", "dave-printer" })
			before := b.count()
			r := e.do(nil, "POST", "/v1/enroll/pkcs12", inv.Token, "application/json", []byte(tc.body))
			if r.code != tc.code || r.err.Error != tc.errCode {
				t.Fatalf("got %d %q %s, want %d %q", r.code, r.err.Error, r.body, tc.code, tc.errCode)
			}
			if tc.code != 201 {
				if b.count() != before {
					t.Fatal("refused PKCS#12 request issued a certificate")
				}
				return
			}
			var resp PKCS12Response
			if err := json.Unmarshal(r.body, &resp); err != nil {
				t.Fatal(err)
			}
			if tc.password != "" && resp.Password != tc.password {
				t.Fatalf("password %q, want the chosen one", resp.Password)
			}
			if tc.password == "" && len(resp.Password) != 32 {
				t.Fatalf("generated password %q, want 32 hex characters", resp.Password)
			}
			pfx, err := base64.StdEncoding.DecodeString(resp.PKCS12)
			if err != nil {
				t.Fatal(err)
			}
			key, leaf, cas, err := pkcs12.DecodeChain(pfx, resp.Password)
			if err != nil {
				t.Fatalf("sslmate decode: %v", err)
			}
			if _, _, _, err := pkcs12.DecodeChain(pfx, resp.Password+"x"); err == nil {
				t.Fatal("decoded with a wrong password")
			}
			if _, isRSA := key.(*rsa.PrivateKey); isRSA != tc.rsa {
				t.Fatalf("key %T, want RSA=%v", key, tc.rsa)
			}
			if len(cas) != 2 || !cas[0].Equal(b.auth.Intermediate()) || !cas[1].Equal(b.auth.Root()) {
				t.Fatalf("CA certs in the bundle: %d", len(cas))
			}
			if resp.DeviceUUID != inv.Facts.DeviceUUID || resp.Serial != hexSerial(leaf) {
				t.Fatalf("response %+v does not match the certificate", resp)
			}
			checkEnrolled(t, e, []*x509.Certificate{leaf, cas[0]}, inv)
			checkPKCS12OpenSSL(t, e, pfx, resp.Password)
		})
	}
}

// checkPKCS12OpenSSL reads the bundle with openssl as a real client: it
// must decrypt with the password, use PBES2/AES-256-CBC and a SHA-256 MAC.
func checkPKCS12OpenSSL(t *testing.T, e *apiEnv, pfx []byte, password string) {
	t.Helper()
	openssl := testtool.Require(t, "openssl")
	f := filepath.Join(t.TempDir(), "device.p12")
	if err := os.WriteFile(f, pfx, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "pkcs12", "-info", "-noout", "-in", f, "-passin", "pass:"+password).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkcs12 -info: %v\n%s", err, out)
	}
	for _, want := range []string{"MAC: sha256", "PBES2", "AES-256-CBC"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("openssl pkcs12 -info output lacks %q:\n%s", want, out)
		}
	}
	if out, err := exec.Command(openssl, "pkcs12", "-info", "-noout", "-in", f, "-passin", "pass:wrong").CombinedOutput(); err == nil {
		t.Fatalf("openssl accepted a wrong password:\n%s", out)
	}
}

func TestEnrollPageDoesNotConsume(t *testing.T) {
	b, _ := caBackend(t, "bbolt")
	e := newAPIEnv(t, b)
	inv := e.invite()
	r := e.do(nil, "GET", "/enroll?token="+url.QueryEscape(inv.Token), "", "", nil)
	if r.code != 200 || !strings.Contains(string(r.body), inv.Facts.DeviceUUID) || !strings.Contains(string(r.body), "/v1/enroll") {
		t.Fatalf("GET /enroll: %d %s", r.code, r.body)
	}
	if r := e.do(nil, "GET", "/enroll?token=nope", "", "", nil); r.code != 401 {
		t.Fatalf("GET /enroll with a bad token: %d", r.code)
	}
	csr, _ := newCSR(t, nil, nil)
	if r := e.do(nil, "POST", "/v1/enroll", inv.Token, "", csr); r.code != 201 {
		t.Fatalf("token unusable after viewing the page: %d %s", r.code, r.body)
	}
}

// TestEnrollOneTokenTwoNodes: two nacd nodes (same CA keys, one PostgreSQL
// store) each get 10 concurrent enrolments with the same token: exactly
// one succeeds across both.
func TestEnrollOneTokenTwoNodes(t *testing.T) {
	dsn := ctStore(t, "postgres")
	dirA, dirB := t.TempDir(), t.TempDir()
	open := func(dir string) backend {
		ca, err := OpenCA(context.Background(), CAConfig{DataDir: dir, Store: dsn})
		if err != nil {
			t.Fatalf("OpenCA %s: %v", dir, err)
		}
		t.Cleanup(func() { _ = ca.Close() })
		certFile, keyFile, err := ca.ServerCertificate(context.Background(), []string{"localhost"})
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		return backend{auth: ca, tokens: ca.Tokens(), serverCert: cert, count: func() int {
			recs, err := ca.List(context.Background(), ListFilter{})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, r := range recs {
				if r.Kind == KindDevice {
					n++
				}
			}
			return n
		}}
	}
	a := open(dirA)
	// Node B: the same CA keys and certificates, its own data dir.
	if err := os.MkdirAll(CADir(dirB), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"root.crt", "root.key", "intermediate.crt", "intermediate.key"} {
		data, err := os.ReadFile(filepath.Join(CADir(dirA), f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(CADir(dirB), f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := open(dirB)
	envA, envB := newAPIEnv(t, a), newAPIEnv(t, b)
	inv := envA.invite()
	before := a.count()
	const perNode = 10
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes = map[int]int{}
	)
	start := make(chan struct{})
	for _, e := range []*apiEnv{envA, envB} {
		for range perNode {
			csr, _ := newCSR(t, nil, nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				code := postEnroll(t, e, inv.Token, csr)
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}()
		}
	}
	close(start)
	wg.Wait()
	if codes[http.StatusCreated] != 1 || codes[http.StatusConflict] != 2*perNode-1 {
		t.Fatalf("status codes %v: want exactly one 201 and %d 409 across the two nodes", codes, 2*perNode-1)
	}
	if got := a.count(); got != before+1 {
		t.Fatalf("shared inventory %d -> %d, want +1", before, got)
	}
}

// postEnroll POSTs csr to e's /v1/enroll with token and returns the status
// code (0 after reporting a transport error; safe in goroutines).
func postEnroll(t *testing.T, e *apiEnv, token string, csr []byte) int {
	req, _ := http.NewRequest("POST", e.url+"/v1/enroll", strings.NewReader(string(csr)))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.client(nil).Do(req)
	if err != nil {
		t.Error(err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
