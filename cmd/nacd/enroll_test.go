package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/smtptest"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
)

func TestEnrollUsage(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{name: "no subcommand", args: []string{"enroll"}, code: exitUsage, want: "usage:"},
		{name: "unknown subcommand", args: []string{"enroll", "revoke"}, code: exitUsage, want: "usage:"},
		{name: "help", args: []string{"enroll", "--help"}, code: exitOK},
		{name: "missing facts", args: []string{"enroll", "invite", "--email", "a@herts.example"}, code: exitUsage, want: "missing --role, --ownership"},
		{name: "unknown role", args: []string{"enroll", "invite", "--email", "a@herts.example", "--role", "boss", "--ownership", "personal"}, code: exitUsage, want: "role"},
		{name: "il3 on a personal device", args: []string{"enroll", "invite", "--email", "a@herts.example", "--role", "staff", "--ownership", "personal", "--il3"}, code: exitUsage, want: "il3"},
		{name: "token for two months", args: []string{"enroll", "invite", "--email", "a@herts.example", "--role", "staff", "--ownership", "personal", "--valid", "1440h"}, code: exitUsage, want: "validity"},
		{name: "plain-HTTP server", args: []string{"enroll", "invite", "--email", "a@herts.example", "--role", "staff", "--ownership", "personal", "--server", "http://127.0.0.1:9443"}, code: exitUsage, want: "https"},
		{name: "smtp without sender", args: []string{"enroll", "invite", "--email", "a@herts.example", "--role", "staff", "--ownership", "personal", "--smtp", "127.0.0.1:25"}, code: exitUsage, want: "--smtp-from"},
		{name: "positional argument", args: []string{"enroll", "invite", "extra"}, code: exitUsage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
				t.Fatalf("exit %d, want %d; output %q %q", code, tc.code, out.String(), errb.String())
			}
		})
	}
}

// pkiServer is nacd's PKI HTTPS API on 127.0.0.1 over the CA in dataDir.
type pkiServer struct {
	ca  *pki.CA
	url string
}

func startPKIServer(t *testing.T, dataDir string) *pkiServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ca, err := pki.OpenCA(ctx, pki.CAConfig{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	enr, err := pki.NewEnroller(pki.EnrollConfig{Issuer: ca, Tokens: ca.Tokens(), BaseURL: url})
	if err != nil {
		t.Fatal(err)
	}
	api, err := pki.NewAPI(pki.APIConfig{CA: ca, Enroller: enr, AdminTokenFile: filepath.Join(dataDir, pki.AdminTokenFileName)})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.ServerCertificate(ctx, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = api.Serve(ctx, ln, cert); close(done) }()
	t.Cleanup(func() { cancel(); <-done; ca.Close() })
	return &pkiServer{ca: ca, url: url}
}

// enrolWith posts a fresh CSR with tok and returns the chain.
func enrolWith(t *testing.T, dataDir, server, tok string) []*x509.Certificate {
	t.Helper()
	chain, _ := enrolWithKey(t, dataDir, server, tok)
	return chain
}

// enrolWithKey is enrolWith that also returns the device key (PKCS#8 DER).
func enrolWithKey(t *testing.T, dataDir, server, tok string) ([]*x509.Certificate, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", server+"/v1/enroll", bytes.NewReader(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := pkiClient(t, dataDir, server).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("enrol: %d %s", resp.StatusCode, body)
	}
	var chain []*x509.Certificate
	for rest := body; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, cert)
	}
	if len(chain) < 2 {
		t.Fatalf("chain of %d certificates", len(chain))
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return chain, keyDER
}

func inviteJSON(t *testing.T, args ...string) (pki.InviteResponse, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"enroll", "invite", "--json"}, args...), &out, &errb)
	if code != exitOK {
		t.Fatalf("nacd enroll invite: exit %d: %s", code, errb.String())
	}
	var inv pki.InviteResponse
	if err := json.Unmarshal(out.Bytes(), &inv); err != nil {
		t.Fatalf("JSON output: %v\n%s", err, out.String())
	}
	return inv, errb.String()
}

func TestEnrollInviteThroughRunningServer(t *testing.T) {
	dir := t.TempDir()
	srv := startPKIServer(t, dir)
	facts := []string{"--data-dir", dir, "--server", srv.url, "--email", "cllr.jones@herts.example", "--role", "member",
		"--ownership", "personal", "--device-name", "jones-ipad", "--valid", "24h"}
	inv, _ := inviteJSON(t, facts...)
	if inv.Token == "" || inv.DeviceUUID == "" || inv.Email != "cllr.jones@herts.example" || inv.Role != policy.RoleMember ||
		!strings.HasPrefix(inv.URL, srv.url+"/enroll?token=") {
		t.Fatalf("invitation %+v", inv)
	}
	if d := time.Until(inv.ExpiresAt); d < 23*time.Hour || d > 24*time.Hour {
		t.Fatalf("expires in %s, want 24h", d)
	}
	chain := enrolWith(t, dir, srv.url, inv.Token)
	id := policy.IdentityFromCertificate(chain[0], policy.DefaultOIDs())
	if id.Email != inv.Email || id.DeviceUUID != inv.DeviceUUID || id.Ownership != policy.OwnershipPersonal || id.Role != policy.RoleMember || id.CommonName != "jones-ipad" {
		t.Fatalf("issued identity %+v", id)
	}
	recs, err := srv.ca.List(context.Background(), pki.ListFilter{Holder: inv.Email})
	if err != nil || len(recs) != 1 || !strings.HasPrefix(recs[0].IssuedBy, "token:"+inv.ID) {
		t.Fatalf("inventory %+v %v", recs, err)
	}

	// Text output: the link, the token and the device's commands.
	var out, errb bytes.Buffer
	if code := run(append([]string{"enroll", "invite"}, facts...), &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"created (via " + srv.url + ")", "Enrolment link:", "openssl req -new", "/v1/enroll/pkcs12"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}

	// A world-readable admin token is refused (and nothing is created).
	if err := os.Chmod(filepath.Join(dir, pki.AdminTokenFileName), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run(append([]string{"enroll", "invite"}, facts...), &out, &errb); code != exitFailure || !strings.Contains(errb.String(), "0600") {
		t.Fatalf("exit %d with a 0644 admin token: %s", code, errb.String())
	}
}

func TestEnrollInviteWithoutServerOpensTheCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.OpenCA(context.Background(), pki.CAConfig{DataDir: dir}) // creates the CA
	if err != nil {
		t.Fatal(err)
	}
	ca.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "https://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	inv, _ := inviteJSON(t, "--data-dir", dir, "--server", closed, "--email", "it@herts.example", "--role", "staff",
		"--ownership", "council-managed", "--il3")
	if inv.Token == "" || !inv.ClearanceIL3 {
		t.Fatalf("invitation %+v", inv)
	}
	// The token is in the store: nacd, started afterwards, honours it.
	srv := startPKIServer(t, dir)
	chain := enrolWith(t, dir, srv.url, inv.Token)
	if id := policy.IdentityFromCertificate(chain[0], policy.DefaultOIDs()); !id.ClearanceIL3 || id.Ownership != policy.OwnershipCouncilManaged {
		t.Fatalf("issued identity %+v", id)
	}
}

func TestEnrollInviteMailed(t *testing.T) {
	sink := smtptest.Start(t)
	dir := t.TempDir()
	srv := startPKIServer(t, dir)
	var out, errb bytes.Buffer
	code := run([]string{"enroll", "invite", "--data-dir", dir, "--server", srv.url, "--email", "visitor@example.org",
		"--role", "visitor", "--ownership", "personal", "--smtp", sink.Addr, "--smtp-from", "ict@herts.example"}, &out, &errb)
	if code != exitOK || !strings.Contains(out.String(), "e-mailed to visitor@example.org") {
		t.Fatalf("exit %d: %s %s", code, out.String(), errb.String())
	}
	link := ""
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "/enroll?token=") {
			link = strings.TrimSpace(l)
		}
	}
	if link == "" {
		t.Fatalf("no link printed:\n%s", out.String())
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(sink.Output(), link) {
		if time.Now().After(deadline) {
			t.Fatalf("the SMTP server never received the link %s:\n%s", link, sink.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEnrollInviteLockedStoreGivesUp(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.OpenCA(context.Background(), pki.CAConfig{DataDir: dir}) // holds the bbolt lock
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	_, err = openCAWithin(context.Background(), pki.CAConfig{DataDir: dir}, 500*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second open of a locked store: %v", err)
	}
}
