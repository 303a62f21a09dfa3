package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
)

func writeTestCSR(t *testing.T, dir, name string, tmpl *x509.CertificateRequest) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func runCACmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"ca"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestCAUsageErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no subcommand", nil, exitUsage},
		{"unknown subcommand", []string{"sign"}, exitUsage},
		{"issue without facts", []string{"issue", "--data-dir", dir, "--csr", "x.csr"}, exitUsage},
		{"revoke without reason", []string{"revoke", "--data-dir", dir, "--serial", "01"}, exitUsage},
		{"revoke two selectors", []string{"revoke", "--data-dir", dir, "--serial", "01", "--holder", "a@b.uk", "--reason", "superseded"}, exitUsage},
		{"revoke hold", []string{"revoke", "--data-dir", dir, "--serial", "01", "--reason", "certificateHold"}, exitUsage},
		{"revoke plain-HTTP server", []string{"revoke", "--data-dir", dir, "--serial", "01", "--reason", "superseded", "--server", "http://127.0.0.1:9443"}, exitUsage},
		{"list bad status", []string{"list", "--data-dir", dir, "--status", "lost"}, exitUsage},
		{"list bad expiring", []string{"list", "--data-dir", dir, "--expiring", "soon"}, exitUsage},
		{"list without a CA", []string{"list", "--data-dir", dir}, exitFailure},
		{"help", []string{"--help"}, exitOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, stderr := runCACmd(t, tc.args...); code != tc.want {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.want, stderr)
			}
		})
	}
}

// TestCACommands: init, issue, list, renew, revoke by holder, crl, as an
// operator runs them with the daemon stopped.
func TestCACommands(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if code, _, stderr := runCACmd(t, "init", "--data-dir", data); code != exitOK {
		t.Fatalf("init: %d %s", code, stderr)
	}
	if code, _, stderr := runCACmd(t, "init", "--data-dir", data); code != exitFailure || !strings.Contains(stderr, "--force") {
		t.Fatalf("second init: %d %s", code, stderr)
	}
	csr := writeTestCSR(t, dir, "laptop.csr", nil)
	crt := filepath.Join(dir, "laptop.crt")
	code, stdout, stderr := runCACmd(t, "issue", "--data-dir", data, "--csr", csr, "--email", "alice@eastherts.gov.uk",
		"--role", "staff", "--ownership", "council-managed", "--il3", "--name", "alice-laptop", "--valid", "20d",
		"--crl-url", "http://127.0.0.1:9443/crl", "--out", crt)
	if code != exitOK {
		t.Fatalf("issue: %d %s", code, stderr)
	}
	if !strings.Contains(stdout, "issued serial") {
		t.Fatalf("issue output: %s", stdout)
	}
	pemData, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(pemData)
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if b2, _ := pem.Decode(rest); b2 == nil {
		t.Fatal("chain lacks the intermediate")
	}
	id := policy.IdentityFromCertificate(leaf, policy.DefaultOIDs())
	if id.Role != policy.RoleStaff || !id.ClearanceIL3 || id.Ownership != policy.OwnershipCouncilManaged || id.CommonName != "alice-laptop" {
		t.Fatalf("issued identity %+v", id)
	}
	// A CSR asking for another holder's e-mail is refused.
	bad := writeTestCSR(t, dir, "bad.csr", &x509.CertificateRequest{EmailAddresses: []string{"mallory@eastherts.gov.uk"}})
	if code, _, stderr := runCACmd(t, "issue", "--data-dir", data, "--csr", bad, "--email", "alice@eastherts.gov.uk",
		"--role", "staff", "--ownership", "personal", "--out", filepath.Join(dir, "bad.crt")); code != exitFailure || !strings.Contains(stderr, "CSR") {
		t.Fatalf("mismatched CSR: %d %s", code, stderr)
	}

	renewed := filepath.Join(dir, "renewed.crt")
	if code, _, stderr := runCACmd(t, "renew", "--data-dir", data, "--cert", crt, "--csr", writeTestCSR(t, dir, "renew.csr", nil), "--out", renewed); code != exitOK {
		t.Fatalf("renew: %d %s", code, stderr)
	}

	code, stdout, stderr = runCACmd(t, "list", "--data-dir", data, "--expiring", "30d", "--json")
	if code != exitOK {
		t.Fatalf("list: %d %s", code, stderr)
	}
	var rows []listRecord
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("list --json: %v %s", err, stdout)
	}
	if rows[0].Serial != id.Serial || rows[1].RenewedFrom != id.Serial || rows[1].Role != "staff" {
		t.Fatalf("list rows %+v", rows)
	}

	// No nacd listens at --server: the CLI revokes in the store itself and
	// says that live sessions are not disconnected.
	noServer := "https://" + freeAddr(t, "tcp")
	code, stdout, stderr = runCACmd(t, "revoke", "--data-dir", data, "--server", noServer, "--holder", "ALICE@eastherts.gov.uk", "--reason", "affiliation-changed")
	if code != exitOK || strings.Count(stdout, " ") < 3 || !strings.Contains(stdout, "in the store of "+data) ||
		!strings.Contains(stderr, "no nacd listening at "+noServer) || !strings.Contains(stderr, "not disconnected") {
		t.Fatalf("revoke --holder: %d %s %s", code, stdout, stderr)
	}
	code, stdout, _ = runCACmd(t, "list", "--data-dir", data, "--status", "revoked")
	if code != exitOK || strings.Count(stdout, "affiliationChanged") != 2 {
		t.Fatalf("list --status revoked:\n%s", stdout)
	}

	crlFile := filepath.Join(dir, "crl.der")
	if code, _, stderr := runCACmd(t, "crl", "--data-dir", data, "--out", crlFile); code != exitOK {
		t.Fatalf("crl: %d %s", code, stderr)
	}
	der, err := os.ReadFile(crlFile)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil || len(rl.RevokedCertificateEntries) != 2 {
		t.Fatalf("CRL: %v, %d entries", err, len(rl.RevokedCertificateEntries))
	}
	code, stdout, _ = runCACmd(t, "crl", "--data-dir", data)
	if blk, _ := pem.Decode([]byte(stdout)); code != exitOK || blk == nil || blk.Type != "X509 CRL" {
		t.Fatalf("crl to stdout: %d %q", code, stdout)
	}
}

// TestCAStoreInUse: with bbolt, a running nacd holds the store; the CLI
// says so instead of hanging.
func TestCAStoreInUse(t *testing.T) {
	data := t.TempDir()
	ca, err := pki.OpenCA(context.Background(), pki.CAConfig{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	code, _, stderr := runCACmd(t, "list", "--data-dir", data)
	if code != exitFailure || !strings.Contains(stderr, "store in use") {
		t.Fatalf("list while the store is held: %d %s", code, stderr)
	}
}
