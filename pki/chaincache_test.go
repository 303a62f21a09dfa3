package pki

import (
	"context"
	"crypto/x509"
	"math/big"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

// fakeRevocations is a RevocationChecker whose revoked serials a test sets.
type fakeRevocations struct {
	mu      sync.Mutex
	issuer  *x509.Certificate
	revoked map[string]bool
}

func (r *fakeRevocations) revoke(serial *big.Int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.revoked[serial.String()] = true
}

func (r *fakeRevocations) CheckRevocation(cert, issuer *x509.Certificate, now time.Time) (bool, bool, time.Duration, bool) {
	if !issuer.Equal(r.issuer) {
		return false, false, 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return true, r.revoked[cert.SerialNumber.String()], 0, false
}

func (r *fakeRevocations) Source() string { return "store" }

// TestChainCacheNeverAcceptsWhatVerifyRejects runs each scenario through a
// store with the verified-chain cache and one without, step by step, and
// requires the same identity from both at every step (and the expected
// status): the cache may save signature verifications, never change an
// answer. Each scenario first authenticates once so that its chain is cached.
func TestChainCacheNeverAcceptsWhatVerifyRejects(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	year := 365 * 24 * time.Hour

	leaf := f.inter.IssueDevice(t, staffLaptop)
	longLived := f.inter.IssueDevice(t, testpki.Device{CommonName: "long-lived", NotBefore: now.Add(-year), NotAfter: now.Add(20 * year)})
	shortLived := f.inter.IssueDevice(t, testpki.Device{CommonName: "short-lived", NotAfter: now.Add(time.Hour)})
	crlRevoked := f.inter.IssueDevice(t, testpki.Device{CommonName: "revoked-by-crl"})
	storeRevoked := f.inter.IssueDevice(t, testpki.Device{CommonName: "revoked-in-store"})
	// An impostor issuing CA: same name as the council's, another key.
	impostorRoot := testpki.NewRoot(t, "impostor root")
	impostor := impostorRoot.NewIntermediate(t, "council issuing")
	impostorChain := []*x509.Certificate{leaf.Cert, impostor.Cert}

	interCRL := f.crlFile(t, "inter.crl", f.inter, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	revs := &fakeRevocations{issuer: f.inter.Cert, revoked: map[string]bool{}}

	// council: root and intermediate with the intermediate's CRL;
	// rootOnly: the root alone (the peer must send the intermediate);
	// withStore: root and intermediate with a store revocation hook.
	council := []AnchorConfig{
		{Name: "council", IL3: true, CAFiles: []string{f.rootFile, f.interFile}, CRLs: []string{interCRL}, OIDs: policy.DefaultOIDs()},
	}
	rootOnly := []AnchorConfig{{Name: "council", IL3: true, CAFiles: []string{f.rootFile}, OIDs: policy.DefaultOIDs()}}
	withStore := []AnchorConfig{
		{Name: "own-ca", IL3: true, CAFiles: []string{f.rootFile, f.interFile}, Revocations: revs, OIDs: policy.DefaultOIDs()},
	}
	adcsOnly := []AnchorConfig{{Name: "ad-cs", CAFiles: []string{f.extBundle}}}

	type step struct {
		name   string
		before func(t *testing.T, stores ...*TrustStore) // e.g. revoke, reload
		chain  []*x509.Certificate
		at     time.Time
		want   policy.CertStatus
	}
	scenarios := []struct {
		name    string
		anchors []AnchorConfig
		steps   []step
	}{
		{"revoked by CRL after caching", council, []step{
			{name: "first authentication", chain: crlRevoked.Chain, at: now, want: policy.CertOK},
			{name: "CRL revokes it", before: func(t *testing.T, stores ...*TrustStore) {
				writeFile(t, interCRL, f.inter.CRL(t, 2, now, now.Add(24*time.Hour), crlRevoked.Cert.SerialNumber))
				for _, ts := range stores {
					if err := ts.Refresh(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
			}, chain: crlRevoked.Chain, at: now, want: policy.CertRevoked},
			{name: "others still accepted", chain: leaf.Chain, at: now, want: policy.CertOK},
		}},
		{"revoked in the store after caching", withStore, []step{
			{name: "first authentication", chain: storeRevoked.Chain, at: now, want: policy.CertOK},
			{name: "second authentication (cached)", chain: storeRevoked.Chain, at: now, want: policy.CertOK},
			{name: "store revokes it", before: func(t *testing.T, _ ...*TrustStore) { revs.revoke(storeRevoked.Cert.SerialNumber) },
				chain: storeRevoked.Chain, at: now, want: policy.CertRevoked},
		}},
		{"leaf expired between two authentications", council, []step{
			{name: "first authentication", chain: shortLived.Chain, at: now, want: policy.CertOK},
			{name: "two hours later", chain: shortLived.Chain, at: now.Add(2 * time.Hour), want: policy.CertExpired},
		}},
		{"intermediate expired between two authentications", council, []step{
			{name: "first authentication", chain: longLived.Chain, at: now, want: policy.CertOK},
			{name: "six years later", chain: longLived.Chain, at: now.Add(6 * year), want: policy.CertExpired},
			{name: "back to now", chain: longLived.Chain, at: now, want: policy.CertOK},
			{name: "before the intermediate was issued", chain: longLived.Chain, at: now.Add(-2 * time.Hour), want: policy.CertNotYetValid},
		}},
		{"intermediate sent by the peer expired between two authentications", rootOnly, []step{
			{name: "first authentication", chain: longLived.Chain, at: now, want: policy.CertOK},
			{name: "six years later", chain: longLived.Chain, at: now.Add(6 * year), want: policy.CertExpired},
		}},
		{"trust anchor removed by Reload", council, []step{
			{name: "first authentication", chain: leaf.Chain, at: now, want: policy.CertOK},
			{name: "council anchor removed", before: func(t *testing.T, stores ...*TrustStore) {
				for _, ts := range stores {
					if err := ts.Reload(adcsOnly); err != nil {
						t.Fatal(err)
					}
				}
			}, chain: leaf.Chain, at: now, want: policy.CertUntrusted},
		}},
		{"another chain with the same leaf", rootOnly, []step{
			{name: "first authentication", chain: leaf.Chain, at: now, want: policy.CertOK},
			{name: "same leaf, impostor intermediate", chain: impostorChain, at: now, want: policy.CertUntrusted},
			{name: "same leaf, no intermediate", chain: []*x509.Certificate{leaf.Cert}, at: now, want: policy.CertUntrusted},
			{name: "same leaf, intermediate twice", chain: []*x509.Certificate{leaf.Cert, f.inter.Cert, f.inter.Cert}, at: now, want: policy.CertOK},
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			// Fresh CRL file and store state per scenario.
			writeFile(t, interCRL, f.inter.CRL(t, 1, now.Add(-time.Hour), now.Add(24*time.Hour)))
			revs.mu.Lock()
			revs.revoked = map[string]bool{}
			revs.mu.Unlock()
			cached, err := NewTrustStore(sc.anchors)
			if err != nil {
				t.Fatal(err)
			}
			uncached, err := NewTrustStore(sc.anchors, WithChainCacheSize(0))
			if err != nil {
				t.Fatal(err)
			}
			if uncached.state.Load().chains != nil {
				t.Fatal("WithChainCacheSize(0) left a cache")
			}
			for i, s := range sc.steps {
				if s.before != nil {
					s.before(t, cached, uncached)
				}
				got := cached.VerifyClient(s.chain, s.at)
				want := uncached.VerifyClient(s.chain, s.at)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: cached store says\n %+v\nthe uncached path\n %+v", s.name, got, want)
				}
				if got.Status != s.want {
					t.Errorf("%s: status %q, want %q", s.name, got.Status, s.want)
				}
				if i == 0 && cached.state.Load().chains.len() == 0 {
					t.Errorf("%s: the verified chain was not cached", s.name)
				}
			}
		})
	}
}

// A cached chain is used only inside the validity window of every
// certificate that x509.Verify considered.
func TestValidityWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cert := func(from, to time.Time) *x509.Certificate { return &x509.Certificate{NotBefore: from, NotAfter: to} }
	cases := []struct {
		name   string
		certs  []*x509.Certificate
		lo, hi time.Time
	}{
		{"one valid certificate", []*x509.Certificate{cert(t0.Add(-time.Hour), t0.Add(time.Hour))}, t0.Add(-time.Hour), t0.Add(time.Hour)},
		{"intersection", []*x509.Certificate{cert(t0.Add(-time.Hour), t0.Add(time.Hour)), cert(t0.Add(-time.Minute), t0.Add(2*time.Hour))}, t0.Add(-time.Minute), t0.Add(time.Hour)},
		{"a candidate not yet valid caps the end", []*x509.Certificate{cert(t0.Add(-time.Hour), t0.Add(time.Hour)), cert(t0.Add(time.Minute), t0.Add(2*time.Hour))}, t0.Add(-time.Hour), t0.Add(time.Minute - time.Nanosecond)},
		{"an expired candidate raises the start", []*x509.Certificate{cert(t0.Add(-time.Hour), t0.Add(time.Hour)), cert(t0.Add(-2*time.Hour), t0.Add(-time.Minute))}, t0.Add(-time.Minute + time.Nanosecond), t0.Add(time.Hour)},
		{"valid at its last instant", []*x509.Certificate{cert(t0.Add(-time.Hour), t0)}, t0.Add(-time.Hour), t0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lo, hi := validityWindow(time.Time{}, maxTime, t0, c.certs)
			if !lo.Equal(c.lo) || !hi.Equal(c.hi) {
				t.Errorf("window [%s, %s], want [%s, %s]", lo, hi, c.lo, c.hi)
			}
		})
	}
}

// The cache holds at most its size, least recently used out first, and a
// Reload starts an empty one.
func TestChainCacheBound(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	anchors := []AnchorConfig{{Name: "council", CAFiles: []string{f.rootFile}}}
	ts, err := NewTrustStore(anchors, WithChainCacheSize(2))
	if err != nil {
		t.Fatal(err)
	}
	var leaves []*testpki.Leaf
	for _, name := range []string{"a", "b", "c"} {
		leaves = append(leaves, f.inter.IssueDevice(t, testpki.Device{CommonName: name}))
	}
	for _, l := range leaves {
		if id := ts.VerifyClient(l.Chain, now); id.Status != policy.CertOK {
			t.Fatalf("%s: %q", l.Cert.Subject.CommonName, id.Status)
		}
	}
	cc := ts.state.Load().chains
	if n := cc.len(); n != 2 {
		t.Errorf("%d entries, want 2", n)
	}
	if _, ok := cc.get(chainKey(leaves[0].Chain), now); ok {
		t.Error("the least recently used chain is still cached")
	}
	if _, ok := cc.get(chainKey(leaves[2].Chain), now); !ok {
		t.Error("the most recent chain is not cached")
	}
	if err := ts.Reload(anchors); err != nil {
		t.Fatal(err)
	}
	if n := ts.state.Load().chains.len(); n != 0 {
		t.Errorf("%d entries after Reload, want 0", n)
	}
	// Hand-built certificates (no DER) are never cached.
	bare := *leaves[0].Cert
	bare.Raw = nil
	ts.VerifyClient([]*x509.Certificate{&bare, leaves[0].Chain[1]}, now)
	if n := ts.state.Load().chains.len(); n != 0 {
		t.Errorf("a certificate without DER was cached (%d entries)", n)
	}
}

// BenchmarkVerifyClientChainCache is BenchmarkVerifyClient (root and
// intermediate in the anchor, both CRLs, the peer sending leaf +
// intermediate) with the verified-chain cache off and on.
func BenchmarkVerifyClientChainCache(b *testing.B) {
	f := newFixture(b)
	now := time.Now()
	leaf := f.inter.IssueDevice(b, staffLaptop)
	rootCRL := f.crlFile(b, "root.crl", f.root, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	interCRL := f.crlFile(b, "inter.crl", f.inter, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	anchors := []AnchorConfig{{
		Name: "council", IL3: true, CAFiles: []string{f.rootFile, f.interFile}, CRLs: []string{rootCRL, interCRL}, OIDs: policy.DefaultOIDs(),
	}}
	for _, bc := range []struct {
		name string
		size int
	}{{"cache=off", 0}, {"cache=on", DefaultChainCacheSize}} {
		b.Run(bc.name, func(b *testing.B) {
			ts, err := NewTrustStore(anchors, WithChainCacheSize(bc.size))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if id := ts.VerifyClient(leaf.Chain, now); id.Status != policy.CertOK {
					b.Fatalf("status %q", id.Status)
				}
			}
		})
	}
}

// TestChainCacheIdentityIsACopy: the cached identity (attributes computed
// once per chain) comes back equal on every hit, and a caller changing the
// identity it got (its PolicyOIDs slice included) changes nothing cached.
func TestChainCacheIdentityIsACopy(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	ts, err := NewTrustStore([]AnchorConfig{{Name: "council", IL3: true, CAFiles: []string{f.rootFile}, OIDs: policy.DefaultOIDs()}})
	if err != nil {
		t.Fatal(err)
	}
	l := f.inter.IssueDevice(t, testpki.Device{CommonName: "tablet", Email: "amy@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, IL3: true, ExtraPolicies: []string{"1.2.3.4"}})
	first := ts.VerifyClient(l.Chain, now) // miss: verified and cached
	if first.Status != policy.CertOK || len(first.PolicyOIDs) == 0 {
		t.Fatalf("first: status %q, policy OIDs %v", first.Status, first.PolicyOIDs)
	}
	want := first
	want.PolicyOIDs = slices.Clone(first.PolicyOIDs)
	first.PolicyOIDs[0] = "tampered by the caller"
	first.Email, first.ClearanceIL3 = "mallory@example.org", false
	for i := range 3 {
		got := ts.VerifyClient(l.Chain, now) // hits
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("hit %d:\n got %+v\nwant %+v", i, got, want)
		}
		got.PolicyOIDs[0] = "tampered again"
	}
}
