package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/herts-council/nacd/internal/testtool"
	"github.com/herts-council/nacd/policy"
)

// ctPostgresDSNEnv names a PostgreSQL server for the store tests: a DSN whose
// role may CREATE DATABASE (each test gets its own database, dropped after).
const ctPostgresDSNEnv = "NACD_TEST_POSTGRES_DSN"

// ctStoreKinds are the backends every store test runs against.
var ctStoreKinds = []string{"bbolt", "postgres"}

// ctStore returns the CAConfig.Store for kind: "" for bbolt, or a fresh
// PostgreSQL database (skipped loudly locally / failed in CI without a
// server, like a missing tool).
func ctStore(tb testing.TB, kind string) string {
	tb.Helper()
	if kind == "bbolt" {
		return ""
	}
	dsn := os.Getenv(ctPostgresDSNEnv)
	if dsn == "" {
		msg := fmt.Sprintf("%s is not set: no PostgreSQL server to test the shared store against "+
			"(apt-get install -y postgresql; pg_ctlcluster 15 main start; create a role with CREATEDB; "+
			"export %s=postgres://USER:PASS@127.0.0.1:5432/postgres?sslmode=disable)", ctPostgresDSNEnv, ctPostgresDSNEnv)
		if testtool.Required() {
			tb.Fatalf("REQUIRED SERVER MISSING: %s", msg)
		}
		tb.Skipf("\n*** SKIPPED: %s\n*** (in CI, %s=1 turns this skip into a failure)", msg, testtool.RequireEnv)
	}
	return ctDatabase(tb, dsn)
}

// ctDatabase creates a database named after the test and returns its
// DSN; it is dropped when the test ends.
func ctDatabase(tb testing.TB, dsn string) string {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect %s: %v", redactDSN(dsn), err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("nacd_test_%x", b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, err := url.Parse(dsn)
	if err != nil {
		tb.Fatalf("parse DSN: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// ctCA opens a CA in a temporary data dir on the given store kind.
type ctCA struct {
	*CA
	cfg   CAConfig
	audit *observer.ObservedLogs
	reg   *prometheus.Registry
}

func ctOpen(tb testing.TB, kind string, mod ...func(*CAConfig)) *ctCA {
	tb.Helper()
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	cfg := CAConfig{
		DataDir:        tb.TempDir(),
		Store:          ctStore(tb, kind),
		CRLURL:         "http://127.0.0.1:9443/crl",
		OCSPURL:        "http://127.0.0.1:9443/ocsp",
		AccessLog:      zap.New(core),
		Registerer:     reg,
		RevocationPoll: 200 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg)
	}
	ca, err := OpenCA(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("OpenCA: %v", err)
	}
	tb.Cleanup(func() { _ = ca.Close() })
	return &ctCA{CA: ca, cfg: cfg, audit: logs, reg: reg}
}

func ctCSR(tb testing.TB, key crypto.Signer, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	tb.Helper()
	if key == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tb.Fatal(err)
		}
		key = k
	}
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		tb.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		tb.Fatal(err)
	}
	return csr
}

func ctStaffFacts(email string) Facts {
	return Facts{Email: email, DeviceName: "laptop", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, ClearanceIL3: true}
}

// ctTrustStore is a TrustStore with the CA as its only anchor.
func ctTrustStore(tb testing.TB, ca *CA) *TrustStore {
	tb.Helper()
	ts, err := NewTrustStore([]AnchorConfig{ca.Anchor()})
	if err != nil {
		tb.Fatalf("NewTrustStore: %v", err)
	}
	return ts
}

func TestLifecycleIssueVerifyRevoke(t *testing.T) {
	for _, kind := range ctStoreKinds {
		t.Run(kind, func(t *testing.T) {
			ca := ctOpen(t, kind)
			ts := ctTrustStore(t, ca.CA)
			chain, err := ca.Issue(context.Background(), ctCSR(t, nil, nil), ctStaffFacts("alice@eastherts.gov.uk"), "test-operator")
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			id := ts.VerifyClient(chain, time.Now())
			if id.Status != policy.CertOK || id.Anchor != LocalAnchorName || !id.Revocation.Checked || id.Revocation.Revoked || id.Revocation.Source != "store" {
				t.Fatalf("before revocation: status %s anchor %q revocation %+v", id.Status, id.Anchor, id.Revocation)
			}
			if id.Email != "alice@eastherts.gov.uk" || id.Role != policy.RoleStaff || !id.ClearanceIL3 || id.Ownership != policy.OwnershipCouncilManaged {
				t.Fatalf("identity facts: %+v", id)
			}
			if err := ca.Revoke(context.Background(), id.Serial, ReasonKeyCompromise, "test-operator"); err != nil {
				t.Fatalf("Revoke: %v", err)
			}
			id = ts.VerifyClient(chain, time.Now())
			if id.Status != policy.CertRevoked || !id.Revocation.Checked || !id.Revocation.Revoked || id.Revocation.Source != "store" {
				t.Fatalf("after revocation: status %s revocation %+v", id.Status, id.Revocation)
			}
			rec, err := ca.Status(context.Background(), chain[0].SerialNumber)
			if err != nil || rec.Status != StatusRevoked || rec.Reason != ReasonKeyCompromise || rec.RevokedBy != "test-operator" || rec.RevokedAt.IsZero() {
				t.Fatalf("Status after revocation: %+v, %v", rec, err)
			}
			crl, err := ca.CRL(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			rl, err := x509.ParseRevocationList(crl)
			if err != nil {
				t.Fatal(err)
			}
			if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Cmp(chain[0].SerialNumber) != 0 ||
				rl.RevokedCertificateEntries[0].ReasonCode != int(ReasonKeyCompromise) {
				t.Fatalf("CRL entries: %+v", rl.RevokedCertificateEntries)
			}
			var actions []string
			for _, e := range ca.audit.All() {
				actions = append(actions, e.Message)
			}
			if got := strings.Join(actions, ","); got != "certificate-issued,certificate-revoked" {
				t.Fatalf("audit events: %s", got)
			}
		})
	}
}
