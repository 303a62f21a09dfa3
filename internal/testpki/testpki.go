// Package testpki generates throwaway PKIs for tests: CAs, intermediates,
// device certificates in nacd's profile (design section 3), server
// certificates and CRLs. It is test plumbing only: nothing in a production
// path may import it.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herts-council/nacd/policy"
)

// KeyType selects the key algorithm of a generated certificate.
type KeyType string

const (
	ECDSAP256 KeyType = "ecdsa-p256"
	RSA2048   KeyType = "rsa-2048"
	RSA4096   KeyType = "rsa-4096"
)

// CA is a certificate authority (root or intermediate).
type CA struct {
	Cert   *x509.Certificate
	Key    crypto.Signer
	Parent *CA // nil for a root
}

// Leaf is an issued end-entity certificate with its key and chain.
type Leaf struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // leaf first, then intermediates (no root)
}

// Device describes a device certificate to issue. Zero values get sensible
// defaults: ECDSA P-256, valid from an hour ago for a year, clientAuth EKU.
type Device struct {
	CommonName string
	Email      string
	UUID       string
	Ownership  policy.Ownership // "" asserts no ownership OID
	Role       policy.Role      // "" or RoleUnknown asserts no role OID
	IL3        bool
	NotBefore  time.Time
	NotAfter   time.Time
	EKU        []x509.ExtKeyUsage // nil: clientAuth
	KeyType    KeyType
	// ExtraPolicies are extra certificate-policy OIDs (dotted strings).
	ExtraPolicies []string
	// Padding adds an extension of this many bytes, to make long chains
	// that force EAP-TLS fragmentation.
	Padding int
}

var serialLimit = new(big.Int).Lsh(big.NewInt(1), 127)

func newKey(tb testing.TB, kt KeyType) crypto.Signer {
	tb.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch kt {
	case "", ECDSAP256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case RSA2048:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case RSA4096:
		k, err = rsa.GenerateKey(rand.Reader, 4096)
	default:
		tb.Fatalf("testpki: unknown key type %q", kt)
	}
	if err != nil {
		tb.Fatalf("testpki: generate key: %v", err)
	}
	return k
}

func serial(tb testing.TB) *big.Int {
	s, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		tb.Fatalf("testpki: serial: %v", err)
	}
	return s.Add(s, big.NewInt(1))
}

func sign(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		tb.Fatalf("testpki: create certificate %q: %v", tmpl.Subject.CommonName, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testpki: parse certificate: %v", err)
	}
	return c
}

// NewRoot creates a self-signed root CA (ECDSA P-256, valid 10 years).
func NewRoot(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb, ECDSAP256)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"nacd test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return &CA{Cert: sign(tb, tmpl, tmpl, key.Public(), key), Key: key}
}

// NewIntermediate creates an intermediate CA signed by ca.
func (ca *CA) NewIntermediate(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb, ECDSAP256)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"nacd test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	return &CA{Cert: sign(tb, tmpl, ca.Cert, key.Public(), ca.Key), Key: key, Parent: ca}
}

// chain returns the CA's certificates from itself up to, but excluding, the root.
func (ca *CA) chain() []*x509.Certificate {
	var out []*x509.Certificate
	for c := ca; c != nil && c.Parent != nil; c = c.Parent {
		out = append(out, c.Cert)
	}
	return out
}

// Root returns the root of ca's hierarchy.
func (ca *CA) Root() *CA {
	c := ca
	for c.Parent != nil {
		c = c.Parent
	}
	return c
}

// PolicyOIDs returns the certificate-policy OIDs that d asserts, in nacd's
// default profile.
func (d Device) PolicyOIDs() []string {
	var oids []string
	switch d.Ownership {
	case policy.OwnershipCouncilManaged:
		oids = append(oids, policy.OIDOwnershipCouncilManaged)
	case policy.OwnershipPersonal:
		oids = append(oids, policy.OIDOwnershipPersonal)
	}
	switch d.Role {
	case policy.RoleStaff:
		oids = append(oids, policy.OIDRoleStaff)
	case policy.RoleMember:
		oids = append(oids, policy.OIDRoleMember)
	case policy.RoleContractor:
		oids = append(oids, policy.OIDRoleContractor)
	case policy.RoleVisitor:
		oids = append(oids, policy.OIDRoleVisitor)
	}
	if d.IL3 {
		oids = append(oids, policy.OIDClearanceIL3)
	}
	return append(oids, d.ExtraPolicies...)
}

// IssueDevice issues a device certificate in nacd's profile.
func (ca *CA) IssueDevice(tb testing.TB, d Device) *Leaf {
	tb.Helper()
	key := newKey(tb, d.KeyType)
	now := time.Now()
	if d.NotBefore.IsZero() {
		d.NotBefore = now.Add(-time.Hour)
	}
	if d.NotAfter.IsZero() {
		d.NotAfter = now.Add(365 * 24 * time.Hour)
	}
	if d.EKU == nil {
		d.EKU = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if d.CommonName == "" {
		d.CommonName = "device"
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: d.CommonName, Organization: []string{"East Herts Council"}},
		NotBefore:    d.NotBefore,
		NotAfter:     d.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  d.EKU,
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	if d.Email != "" {
		tmpl.EmailAddresses = []string{d.Email}
	}
	if d.UUID != "" {
		u, err := url.Parse("urn:uuid:" + d.UUID)
		if err != nil {
			tb.Fatalf("testpki: uuid: %v", err)
		}
		tmpl.URIs = []*url.URL{u}
	}
	for _, s := range d.PolicyOIDs() {
		oid, err := x509.ParseOID(s)
		if err != nil {
			tb.Fatalf("testpki: policy OID %q: %v", s, err)
		}
		tmpl.Policies = append(tmpl.Policies, oid)
	}
	if d.Padding > 0 {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{
			Id:    []int{1, 3, 6, 1, 4, 1, 55555, 1}, // private, non-critical filler
			Value: append([]byte{0x04, 0x82, byte(d.Padding >> 8), byte(d.Padding)}, make([]byte, d.Padding)...),
		})
	}
	cert := sign(tb, tmpl, ca.Cert, key.Public(), ca.Key)
	return &Leaf{Cert: cert, Key: key, Chain: append([]*x509.Certificate{cert}, ca.chain()...)}
}

// IssueServer issues a TLS server certificate for the EAP-TLS server side.
func (ca *CA) IssueServer(tb testing.TB, dnsName string, kt KeyType) *Leaf {
	tb.Helper()
	key := newKey(tb, kt)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: dnsName},
		DNSNames:     []string{dnsName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if _, ok := key.(*rsa.PrivateKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	cert := sign(tb, tmpl, ca.Cert, key.Public(), ca.Key)
	return &Leaf{Cert: cert, Key: key, Chain: append([]*x509.Certificate{cert}, ca.chain()...)}
}

// TLSCertificate returns the leaf as a tls.Certificate (chain without root).
func (l *Leaf) TLSCertificate() tls.Certificate {
	tc := tls.Certificate{PrivateKey: l.Key, Leaf: l.Cert}
	for _, c := range l.Chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

// CRL returns a DER CRL signed by ca listing the given serials as revoked.
func (ca *CA) CRL(tb testing.TB, number int64, thisUpdate, nextUpdate time.Time, revoked ...*big.Int) []byte {
	tb.Helper()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(number),
		ThisUpdate: thisUpdate,
		NextUpdate: nextUpdate,
	}
	for _, s := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: s, RevocationTime: thisUpdate, ReasonCode: 1,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		tb.Fatalf("testpki: create CRL: %v", err)
	}
	return der
}

// CertPEM encodes certificates as PEM.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes a private key as PKCS#8 PEM.
func KeyPEM(tb testing.TB, k crypto.Signer) []byte {
	tb.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		tb.Fatalf("testpki: marshal key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Files is where WriteFiles put a leaf.
type Files struct{ Cert, Key, Chain string }

// WriteFiles writes the leaf certificate, its key (0600) and its chain
// (leaf + intermediates) as PEM files named <name>.crt, <name>.key and
// <name>-chain.crt in dir.
func (l *Leaf) WriteFiles(tb testing.TB, dir, name string) Files {
	tb.Helper()
	f := Files{
		Cert:  filepath.Join(dir, name+".crt"),
		Key:   filepath.Join(dir, name+".key"),
		Chain: filepath.Join(dir, name+"-chain.crt"),
	}
	write(tb, f.Cert, CertPEM(l.Cert), 0o644)
	write(tb, f.Key, KeyPEM(tb, l.Key), 0o600)
	write(tb, f.Chain, CertPEM(l.Chain...), 0o644)
	return f
}

// WriteCert writes the CA certificate as PEM to dir/<name>.crt and returns the path.
func (ca *CA) WriteCert(tb testing.TB, dir, name string) string {
	tb.Helper()
	p := filepath.Join(dir, name+".crt")
	write(tb, p, CertPEM(ca.Cert), 0o644)
	return p
}

func write(tb testing.TB, path string, data []byte, mode os.FileMode) {
	tb.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		tb.Fatalf("testpki: write %s: %v", path, err)
	}
}
