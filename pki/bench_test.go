package pki

import (
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/herts-council/nacd/policy"
)

// BenchmarkVerifyClient verifies an ECDSA chain of 3 (root -> intermediate
// -> leaf, the peer sending leaf + intermediate) with CRLs of both CAs.
func BenchmarkVerifyClient(b *testing.B) {
	f := newFixture(b)
	now := time.Now()
	leaf := f.inter.IssueDevice(b, staffLaptop)
	rootCRL := f.crlFile(b, "root.crl", f.root, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	interCRL := f.crlFile(b, "inter.crl", f.inter, 1, now.Add(-time.Hour), now.Add(24*time.Hour))
	ts, err := NewTrustStore([]AnchorConfig{{
		Name: "council", IL3: true, CAFiles: []string{f.rootFile, f.interFile}, CRLs: []string{rootCRL, interCRL}, OIDs: policy.DefaultOIDs(),
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if id := ts.VerifyClient(leaf.Chain, now); id.Status != policy.CertOK {
			b.Fatalf("status %q", id.Status)
		}
	}
}

// BenchmarkRevocationLookup looks a serial up in a CRL of 100,000 revoked
// serials (the per-certificate step of VerifyClient's revocation check).
func BenchmarkRevocationLookup(b *testing.B) {
	f := newFixture(b)
	now := time.Now()
	serials := make([]*big.Int, 100_000)
	for i := range serials {
		serials[i] = new(big.Int).Lsh(big.NewInt(int64(i)+1), 100) // 13-byte serials
	}
	der := f.inter.CRL(b, 1, now.Add(-time.Hour), now.Add(24*time.Hour), serials...)
	c, err := parseCRL(der, "bench", []*x509.Certificate{f.inter.Cert})
	if err != nil {
		b.Fatal(err)
	}
	if len(c.revoked) != len(serials) {
		b.Fatalf("%d revoked entries, want %d", len(c.revoked), len(serials))
	}
	revoked := serials[len(serials)/2]
	notRevoked := new(big.Int).Add(revoked, big.NewInt(1))
	b.ReportAllocs()
	for b.Loop() {
		if !c.isRevoked(revoked) || c.isRevoked(notRevoked) {
			b.Fatal("wrong answer")
		}
	}
}

// BenchmarkParseCRL100k parses and indexes a CRL of 100,000 serials (the
// cost of one refresh of a large CRL).
func BenchmarkParseCRL100k(b *testing.B) {
	f := newFixture(b)
	now := time.Now()
	serials := make([]*big.Int, 100_000)
	for i := range serials {
		serials[i] = new(big.Int).Lsh(big.NewInt(int64(i)+1), 100)
	}
	der := f.inter.CRL(b, 1, now.Add(-time.Hour), now.Add(24*time.Hour), serials...)
	b.SetBytes(int64(len(der)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseCRL(der, "bench", []*x509.Certificate{f.inter.Cert}); err != nil {
			b.Fatal(err)
		}
	}
}
