package pki

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herts-council/nacd/internal/testtool"
	"github.com/herts-council/nacd/policy"
)

func TestParseRevocationReason(t *testing.T) {
	tests := []struct {
		in      string
		want    RevocationReason
		wantErr bool
	}{
		{"keyCompromise", ReasonKeyCompromise, false},
		{"key-compromise", ReasonKeyCompromise, false},
		{"AFFILIATION_CHANGED", ReasonAffiliationChanged, false},
		{"superseded", ReasonSuperseded, false},
		{"cessationOfOperation", ReasonCessationOfOperation, false},
		{"privilegeWithdrawn", ReasonPrivilegeWithdrawn, false},
		{"0", ReasonUnspecified, false},
		{"9", ReasonPrivilegeWithdrawn, false},
		{"certificateHold", 0, true}, // nacd never suspends
		{"removeFromCRL", 0, true},   // delta CRLs only
		{"7", 0, true},               // unused code
		{"left-the-council", 0, true},
		{"", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRevocationReason(tc.in)
			if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
				t.Fatalf("got %v, %v", got, err)
			}
		})
	}
}

// issueDevices issues n certificates for each (holder, device) pair.
func issueDevices(t *testing.T, ca *ctCA, holder string, devices []string, n int) map[string][]*x509.Certificate {
	t.Helper()
	out := map[string][]*x509.Certificate{}
	for _, d := range devices {
		for i := 0; i < n; i++ {
			f := ctStaffFacts(holder)
			f.DeviceUUID = d
			chain, err := ca.Issue(context.Background(), ctCSR(t, nil, nil), f, "test")
			if err != nil {
				t.Fatal(err)
			}
			out[d] = append(out[d], chain[0])
		}
	}
	return out
}

func TestRevokeByHolderAndDevice(t *testing.T) {
	const (
		d1 = "11111111-1111-4111-8111-111111111111"
		d2 = "22222222-2222-4222-8222-222222222222"
		d3 = "33333333-3333-4333-8333-333333333333"
	)
	for _, kind := range ctStoreKinds {
		t.Run(kind, func(t *testing.T) {
			ca := ctOpen(t, kind)
			ts := ctTrustStore(t, ca.CA)
			ctx := context.Background()
			member := issueDevices(t, ca, "Member.Leaving@EastHerts.gov.uk", []string{d1, d2}, 2)
			other := issueDevices(t, ca, "staying@eastherts.gov.uk", []string{d3}, 1)
			verify := func(c *x509.Certificate) policy.CertStatus {
				return ts.VerifyClient([]*x509.Certificate{c, ca.Intermediate()}, time.Now()).Status
			}

			// A member leaving office loses every device at once (holder
			// matched case-insensitively).
			serials, err := ca.RevokeHolder(ctx, "member.leaving@eastherts.gov.uk", ReasonAffiliationChanged, "clerk")
			if err != nil || len(serials) != 4 {
				t.Fatalf("RevokeHolder: %v %v", serials, err)
			}
			for _, certs := range member {
				for _, c := range certs {
					if s := verify(c); s != policy.CertRevoked {
						t.Fatalf("holder's certificate %x: %s", c.SerialNumber, s)
					}
				}
			}
			if s := verify(other[d3][0]); s != policy.CertOK {
				t.Fatalf("another holder's certificate: %s", s)
			}
			// Again: nothing left to revoke, no error.
			if serials, err := ca.RevokeHolder(ctx, "member.leaving@eastherts.gov.uk", ReasonAffiliationChanged, "clerk"); err != nil || len(serials) != 0 {
				t.Fatalf("second RevokeHolder: %v %v", serials, err)
			}
			if _, err := ca.RevokeHolder(ctx, "nobody@eastherts.gov.uk", ReasonUnspecified, "clerk"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("unknown holder: %v", err)
			}

			if serials, err := ca.RevokeDevice(ctx, "URN:UUID:"+strings.ToUpper(d3), ReasonKeyCompromise, "clerk"); err != nil || len(serials) != 1 {
				t.Fatalf("RevokeDevice: %v %v", serials, err)
			}
			if s := verify(other[d3][0]); s != policy.CertRevoked {
				t.Fatalf("device certificate after RevokeDevice: %s", s)
			}
			if _, err := ca.RevokeDevice(ctx, "44444444-4444-4444-8444-444444444444", ReasonUnspecified, "clerk"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("unknown device: %v", err)
			}
			if _, err := ca.RevokeDevice(ctx, d1, RevocationReason(7), "clerk"); err == nil {
				t.Fatal("reason 7 accepted")
			}

			revoked, err := ca.List(ctx, ListFilter{Status: StatusRevoked})
			if err != nil || len(revoked) != 5 {
				t.Fatalf("revoked records: %d %v", len(revoked), err)
			}
			if got := testutil.ToFloat64(ca.metrics.revoked.WithLabelValues("affiliationChanged")); got != 4 {
				t.Fatalf("revoked_total{affiliationChanged} = %v", got)
			}
			var events int
			for _, e := range ca.audit.All() {
				if e.Message == ActionCertificateRevoked && e.ContextMap()["user.name"] == "clerk" {
					events++
				}
			}
			if events != 5 {
				t.Fatalf("revocation audit events: %d", events)
			}
		})
	}
}

func TestListFilters(t *testing.T) {
	ca := ctOpen(t, "bbolt")
	ctx := context.Background()
	for _, tc := range []struct {
		email    string
		validity time.Duration
	}{{"a@eastherts.gov.uk", 10 * 24 * time.Hour}, {"a@eastherts.gov.uk", 100 * 24 * time.Hour}, {"b@eastherts.gov.uk", 20 * 24 * time.Hour}} {
		f := ctStaffFacts(tc.email)
		f.Validity = tc.validity
		if _, err := ca.Issue(ctx, ctCSR(t, nil, nil), f, "test"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		filter ListFilter
		want   int
	}{
		{"all", ListFilter{}, 3},
		{"holder", ListFilter{Holder: "A@EASTHERTS.GOV.UK"}, 2},
		{"expiring 30d", ListFilter{ExpiringWithin: 30 * 24 * time.Hour}, 2},
		{"holder expiring 30d", ListFilter{Holder: "a@eastherts.gov.uk", ExpiringWithin: 30 * 24 * time.Hour}, 1},
		{"revoked", ListFilter{Status: StatusRevoked}, 0},
		{"unknown device", ListFilter{Device: "44444444-4444-4444-8444-444444444444"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := ca.List(ctx, tc.filter)
			if err != nil || len(rs) != tc.want {
				t.Fatalf("got %d records (%v), want %d", len(rs), err, tc.want)
			}
		})
	}
}

// TestCRLWithOpenSSL: the CRL is signed by the intermediate, numbered,
// lists revoked serials with reasons, and openssl verifies it.
func TestCRLWithOpenSSL(t *testing.T) {
	openssl := testtool.Require(t, "openssl")
	for _, kind := range ctStoreKinds {
		t.Run(kind, func(t *testing.T) {
			ca := ctOpen(t, kind)
			ctx := context.Background()
			n0 := ca.CRLNumber()
			var serials []string
			for i, reason := range []RevocationReason{ReasonKeyCompromise, ReasonUnspecified, ReasonCessationOfOperation} {
				chain, err := ca.Issue(ctx, ctCSR(t, nil, nil), ctStaffFacts("x@eastherts.gov.uk"), "test")
				if err != nil {
					t.Fatal(err)
				}
				s := chain[0].SerialNumber.Text(16)
				if err := ca.Revoke(ctx, "0x"+strings.ToUpper(s), reason, "test"); err != nil {
					t.Fatal(err)
				}
				serials = append(serials, s)
				if got := ca.CRLNumber(); got != n0+int64(i)+1 {
					t.Fatalf("CRL number %d after revocation %d (started at %d)", got, i+1, n0)
				}
			}
			der, err := ca.CRL(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rl, err := x509.ParseRevocationList(der)
			if err != nil {
				t.Fatal(err)
			}
			if err := rl.CheckSignatureFrom(ca.Intermediate()); err != nil {
				t.Fatalf("CRL signature: %v", err)
			}
			if rl.Number.Cmp(big.NewInt(ca.CRLNumber())) != 0 || !rl.NextUpdate.After(time.Now()) {
				t.Fatalf("CRL number %v next update %s", rl.Number, rl.NextUpdate)
			}
			dir := t.TempDir()
			crlFile := filepath.Join(dir, "crl.der")
			caFile := filepath.Join(dir, "ca.pem")
			if err := os.WriteFile(crlFile, der, 0o644); err != nil {
				t.Fatal(err)
			}
			var chainPEM []byte
			for _, c := range []*x509.Certificate{ca.Intermediate(), ca.Root()} {
				chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
			}
			if err := os.WriteFile(caFile, chainPEM, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(openssl, "crl", "-inform", "DER", "-in", crlFile, "-CAfile", caFile, "-noout", "-text").CombinedOutput()
			if err != nil {
				t.Fatalf("openssl crl: %v\n%s", err, out)
			}
			text := string(out)
			if !strings.Contains(text, "verify OK") {
				t.Fatalf("openssl did not verify the CRL:\n%s", text)
			}
			for _, s := range serials {
				if !strings.Contains(strings.ToLower(text), strings.ToLower(s)) {
					t.Fatalf("serial %s missing from openssl's listing:\n%s", s, text)
				}
			}
			for _, want := range []string{"Key Compromise", "Cessation Of Operation", "CRL Number", "Authority Key Identifier"} {
				if !strings.Contains(text, want) {
					t.Fatalf("openssl listing lacks %q:\n%s", want, text)
				}
			}
		})
	}
}

// TestRevocationAcrossNodes: two CAs (nodes) on one PostgreSQL store; a
// revocation on one reaches the other's TrustStore by polling, with no
// restart, and CRL numbers stay unique and increasing.
func TestRevocationAcrossNodes(t *testing.T) {
	a := ctOpen(t, "postgres")
	b := ctOpenShared(t, a)
	tsB := ctTrustStore(t, b.CA)
	ctx := context.Background()
	chain, err := a.Issue(ctx, ctCSR(t, nil, nil), ctStaffFacts("roaming@eastherts.gov.uk"), "node-a")
	if err != nil {
		t.Fatal(err)
	}
	if id := tsB.VerifyClient(chain, time.Now()); id.Status != policy.CertOK {
		t.Fatalf("node b before revocation: %s", id.Status)
	}
	if err := a.Revoke(ctx, chain[0].SerialNumber.Text(16), ReasonKeyCompromise, "node-a"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var id policy.Identity
	for time.Now().Before(deadline) {
		if id = tsB.VerifyClient(chain, time.Now()); id.Status == policy.CertRevoked {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if id.Status != policy.CertRevoked || id.Revocation.Source != "store" || !id.Revocation.Checked {
		t.Fatalf("node b after revocation on node a: %s %+v", id.Status, id.Revocation)
	}
	// Both nodes revoke concurrently; CRL numbers never repeat.
	var chains [][]*x509.Certificate
	for i := 0; i < 6; i++ {
		c, err := a.Issue(ctx, ctCSR(t, nil, nil), ctStaffFacts("many@eastherts.gov.uk"), "node-a")
		if err != nil {
			t.Fatal(err)
		}
		chains = append(chains, c)
	}
	errs := make(chan error, len(chains))
	for i, c := range chains {
		node := a
		if i%2 == 1 {
			node = b
		}
		go func(node *ctCA, s string) { errs <- node.Revoke(ctx, s, ReasonSuperseded, "test") }(node, c[0].SerialNumber.Text(16))
	}
	for range chains {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	der, err := b.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	// The stored CRL after all revocations returned lists all of them.
	if len(rl.RevokedCertificateEntries) != 7 {
		t.Fatalf("shared CRL lists %d entries, want 7", len(rl.RevokedCertificateEntries))
	}
	if rl.Number.Int64() != 8 { // one at open + 7 revocations, each its own number
		t.Fatalf("CRL number %v, want 8", rl.Number)
	}
}

// ctOpenShared opens a second node on a's data dir copy and store.
func ctOpenShared(t *testing.T, a *ctCA) *ctCA {
	t.Helper()
	dir := t.TempDir()
	src := CADir(a.cfg.DataDir)
	if err := os.MkdirAll(filepath.Join(dir, "ca"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"root.crt", "root.key", "intermediate.crt", "intermediate.key"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ca", f), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return ctOpen(t, "bbolt", func(c *CAConfig) { c.DataDir, c.Store = dir, a.cfg.Store })
}

func TestRevocationSetStaleness(t *testing.T) {
	ca := ctOpen(t, "bbolt")
	chain, err := ca.Issue(context.Background(), ctCSR(t, nil, nil), ctStaffFacts("a@eastherts.gov.uk"), "test")
	if err != nil {
		t.Fatal(err)
	}
	set := ca.RevocationSet()
	now := time.Now()
	tests := []struct {
		name      string
		at        time.Time
		wantStale bool
	}{
		{"just synced", now, false},
		{"store unreadable for a minute", now.Add(time.Minute), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			covered, revoked, age, stale := set.CheckRevocation(chain[0], ca.Intermediate(), tc.at)
			if !covered || revoked || stale != tc.wantStale || age < 0 {
				t.Fatalf("covered %t revoked %t age %s stale %t", covered, revoked, age, stale)
			}
		})
	}
	foreign := ctOpen(t, "bbolt")
	fc, err := foreign.Issue(context.Background(), ctCSR(t, nil, nil), ctStaffFacts("a@eastherts.gov.uk"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if covered, _, _, _ := set.CheckRevocation(fc[0], foreign.Intermediate(), now); covered {
		t.Fatal("the set claims another CA's certificate")
	}
}

// TestRevocationSetSurvivesRestart: revocations are reloaded at open.
func TestRevocationSetSurvivesRestart(t *testing.T) {
	ca := ctOpen(t, "bbolt")
	ctx := context.Background()
	var revoked []string
	for i := 0; i < 3; i++ {
		chain, err := ca.Issue(ctx, ctCSR(t, nil, nil), ctStaffFacts("a@eastherts.gov.uk"), "test")
		if err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			s := chain[0].SerialNumber.Text(16)
			if err := ca.Revoke(ctx, s, ReasonUnspecified, "test"); err != nil {
				t.Fatal(err)
			}
			revoked = append(revoked, s)
		}
	}
	if err := ca.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenCA(ctx, ca.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if n := again.RevocationSet().Len(); n != 2 {
		t.Fatalf("revocation set after restart: %d entries", n)
	}
	rs, err := again.List(ctx, ListFilter{Status: StatusRevoked})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.Serial)
	}
	sort.Strings(got)
	sort.Strings(revoked)
	if strings.Join(got, ",") != strings.Join(revoked, ",") {
		t.Fatalf("revoked after restart %v, want %v", got, revoked)
	}
}

// BenchmarkRevocationCheck100k is the revocation cost per authentication
// with 100,000 revoked serials: the set lookup alone, and VerifyClient
// through the TrustStore (chain build + EKU + set lookup).
func BenchmarkRevocationCheck100k(b *testing.B) {
	ca := ctOpen(b, "bbolt")
	chain, err := ca.Issue(context.Background(), ctCSR(b, nil, nil), ctStaffFacts("a@eastherts.gov.uk"), "bench")
	if err != nil {
		b.Fatal(err)
	}
	es := make([]revEntry, 100000)
	for i := range es {
		es[i] = revEntry{Seq: int64(i + 1), Serial: new(big.Int).Lsh(big.NewInt(int64(i)+1), 100).Text(16)}
	}
	set := ca.RevocationSet()
	set.apply(es, int64(len(es)), time.Now())
	if set.Len() < 100000 {
		b.Fatalf("set holds %d", set.Len())
	}
	ts := ctTrustStore(b, ca.CA)
	b.Run("set", func(b *testing.B) {
		b.ReportAllocs()
		now := time.Now()
		for i := 0; i < b.N; i++ {
			if _, revoked, _, _ := set.CheckRevocation(chain[0], chain[1], now); revoked {
				b.Fatal("revoked")
			}
		}
	})
	b.Run("VerifyClient", func(b *testing.B) {
		b.ReportAllocs()
		now := time.Now()
		for i := 0; i < b.N; i++ {
			if id := ts.VerifyClient(chain, now); id.Status != policy.CertOK {
				b.Fatal(id.Status)
			}
		}
	})
}

func TestCAMetrics(t *testing.T) {
	ca := ctOpen(t, "bbolt")
	ctx := context.Background()
	f := ctStaffFacts("m@eastherts.gov.uk")
	chain, err := ca.Issue(ctx, ctCSR(t, nil, nil), f, "test")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.ServerCertificate(ctx, []string{"nacd.local"}); err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(ctx, chain[0].SerialNumber.Text(16), ReasonKeyCompromise, "test"); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`nacd_pki_certificates_issued_total{ownership="council-managed",role="staff"}`: 1,
		`nacd_pki_certificates_revoked_total{reason="keyCompromise"}`:                  1,
		`nacd_pki_crl_number`:                                     float64(ca.CRLNumber()),
		`nacd_pki_revocation_set_entries`:                         1,
		`nacd_pki_ca_expiry_timestamp_seconds{ca="root"}`:         float64(ca.Root().NotAfter.Unix()),
		`nacd_pki_ca_expiry_timestamp_seconds{ca="intermediate"}`: float64(ca.Intermediate().NotAfter.Unix()),
	}
	mfs, err := ca.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				got[name] = m.Counter.GetValue()
			case m.Gauge != nil:
				got[name] = m.Gauge.GetValue()
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if s, ok := got[`nacd_pki_ca_expiry_timestamp_seconds{ca="server"}`]; !ok || s < float64(time.Now().Unix()) {
		t.Errorf("server expiry %v %t", s, ok)
	}
	if ca.CRLNumber() < 2 {
		t.Errorf("CRL number %d after a revocation", ca.CRLNumber())
	}
}

// TestRevokeCompletesAfterInterruption: a revocation interrupted after
// step's DB recorded it (nacd's inventory not yet) completes when repeated.
func TestRevokeCompletesAfterInterruption(t *testing.T) {
	ca := ctOpen(t, "bbolt")
	ctx := context.Background()
	chain, err := ca.Issue(ctx, ctCSR(t, nil, nil), ctStaffFacts("a@eastherts.gov.uk"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.stepRevoke(ctx, chain[0], ReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	if revoked, err := ca.auth.IsRevoked(chain[0].SerialNumber.String()); err != nil || !revoked {
		t.Fatalf("step does not see the revocation: %t %v", revoked, err)
	}
	if err := ca.Revoke(ctx, chain[0].SerialNumber.Text(16), ReasonKeyCompromise, "test"); err != nil {
		t.Fatalf("repeated revocation: %v", err)
	}
	if rec, err := ca.Status(ctx, chain[0].SerialNumber); err != nil || rec.Status != StatusRevoked || !ca.RevocationSet().Contains(chain[0].SerialNumber) {
		t.Fatalf("after repeat: %+v %v", rec, err)
	}
	if err := ca.Revoke(ctx, "zz-not-hex", ReasonKeyCompromise, "test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bad serial: %v", err)
	}
	if err := ca.Revoke(ctx, "0123abcd", ReasonKeyCompromise, "test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown serial: %v", err)
	}
}

// TestCRLRenewedOnTimer: without any revocation, the CRL is re-signed
// before a third of its validity has passed.
func TestCRLRenewedOnTimer(t *testing.T) {
	ca := ctOpen(t, "bbolt", func(c *CAConfig) { c.CRLValidity = 3 * time.Second })
	first := ca.CRLNumber()
	deadline := time.Now().Add(30 * time.Second)
	for ca.CRLNumber() == first && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if ca.CRLNumber() <= first {
		t.Fatalf("CRL number still %d", first)
	}
	der, err := ca.CRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil || rl.Number.Int64() <= first || !rl.NextUpdate.After(rl.ThisUpdate) {
		t.Fatalf("renewed CRL: %v number %v", err, rl.Number)
	}
}

// FuzzRevocationInput: serials and reasons come from operators and the
// admin API; parsing never panics and accepts only canonical values.
func FuzzRevocationInput(f *testing.F) {
	for _, s := range []string{"0x1F", "1f", "de:ad:be:ef", "", "-1", "0", "keyCompromise", "9", "7", "\x00", strings.Repeat("f", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, err := parseSerial(s); err == nil {
			n, ok := new(big.Int).SetString(got, 16)
			if !ok || n.Sign() <= 0 || n.Text(16) != got {
				t.Fatalf("parseSerial(%q) = %q", s, got)
			}
		}
		if r, err := ParseRevocationReason(s); err == nil && !r.Valid() {
			t.Fatalf("ParseRevocationReason(%q) = %d, not a valid reason", s, r)
		}
	})
}
