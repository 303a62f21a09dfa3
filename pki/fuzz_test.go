package pki

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testpki"
)

// FuzzParseCRL feeds arbitrary bytes (as a CRL server could) to the CRL
// parser: it must never panic, and never accept a CRL that is not signed by
// the anchor's CA.
func FuzzParseCRL(f *testing.F) {
	ca := testpki.NewRoot(f, "fuzz root")
	now := time.Now()
	good := ca.CRL(f, 1, now, now.Add(time.Hour))
	f.Add(good)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: good}))
	f.Add([]byte("-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n"))
	f.Add([]byte{0x30, 0x03, 0x81, 0x01, 0xff})
	cas := []*x509.Certificate{ca.Cert}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseCRL(data, "fuzz", cas)
		if err != nil {
			return
		}
		if c.issuer != ca.Cert {
			t.Fatalf("accepted a CRL with issuer %v", c.issuer)
		}
	})
}

// FuzzParseIDP feeds arbitrary issuingDistributionPoint values.
func FuzzParseIDP(f *testing.F) {
	for _, seed := range [][]byte{
		{0x30, 0x00},
		{0x30, 0x03, 0x81, 0x01, 0xff},
		{0x30, 0x03, 0x82, 0x01, 0xff},
		{0x30, 0x03, 0x84, 0x01, 0xff},
		{0x30, 0x04, 0x83, 0x02, 0x07, 0x80},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var c loadedCRL
		_ = c.parseIDP(data)
	})
}
