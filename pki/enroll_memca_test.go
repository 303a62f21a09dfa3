package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testpki"
)

// memCA is an in-memory Authority and TokenStore for the HTTP-layer tests
// (the CA engineer's *CA is exercised by the end-to-end tests): it signs
// in nacd's profile with a testpki intermediate and keeps an inventory.
type memCA struct {
	root, inter *testpki.CA

	mu      sync.Mutex
	recs    map[string]*Record // by serial hex
	order   []string
	tokens  map[string]memToken
	crlNum  int64
	issueFn func(f Facts) error // optional hook to fail an issuance
}

type memToken struct {
	val  []byte
	used bool
}

func newMemCA(t testing.TB) *memCA {
	t.Helper()
	root := testpki.NewRoot(t, "mem root")
	return &memCA{root: root, inter: root.NewIntermediate(t, "mem intermediate"),
		recs: map[string]*Record{}, tokens: map[string]memToken{}}
}

func (m *memCA) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.recs)
}

func (m *memCA) Issue(ctx context.Context, csr *x509.CertificateRequest, f Facts, by string) ([]*x509.Certificate, error) {
	if err := CheckCSR(csr, f); err != nil {
		return nil, err
	}
	if m.issueFn != nil {
		if err := m.issueFn(f); err != nil {
			return nil, err
		}
	}
	if f.DeviceUUID == "" {
		u, err := randomUUID()
		if err != nil {
			return nil, err
		}
		f.DeviceUUID = u
	}
	cn := f.DeviceName
	if cn == "" {
		cn = f.Email
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, err
	}
	serial.Add(serial, big.NewInt(1))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: cn},
		NotBefore:      now.Add(-time.Minute),
		NotAfter:       now.Add(24 * time.Hour),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		EmailAddresses: []string{f.Email},
		URIs:           []*url.URL{{Scheme: "urn", Opaque: "uuid:" + f.DeviceUUID}},
	}
	d := testpki.Device{Ownership: f.Ownership, Role: f.Role, IL3: f.ClearanceIL3}
	for _, s := range d.PolicyOIDs() {
		oid, _ := x509.ParseOID(s)
		tmpl.Policies = append(tmpl.Policies, oid)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.inter.Cert, csr.PublicKey, m.inter.Key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := hexSerial(leaf)
	m.recs[s] = &Record{Serial: s, Email: f.Email, DeviceUUID: f.DeviceUUID, DeviceName: cn, Ownership: f.Ownership,
		Role: f.Role, ClearanceIL3: f.ClearanceIL3, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		Status: StatusValid, IssuedAt: now, IssuedBy: by, Certificate: der, Kind: KindDevice}
	m.order = append(m.order, s)
	return []*x509.Certificate{leaf, m.inter.Cert}, nil
}

func (m *memCA) Renew(ctx context.Context, cur *x509.Certificate, csr *x509.CertificateRequest, by string) ([]*x509.Certificate, error) {
	m.mu.Lock()
	r, ok := m.recs[hexSerial(cur)]
	m.mu.Unlock()
	switch {
	case !ok:
		return nil, ErrNotIssuedHere
	case r.Status == StatusRevoked:
		return nil, ErrRevoked
	}
	return m.Issue(ctx, csr, Facts{Email: r.Email, DeviceUUID: r.DeviceUUID, DeviceName: r.DeviceName,
		Ownership: r.Ownership, Role: r.Role, ClearanceIL3: r.ClearanceIL3}, by)
}

func (m *memCA) Revoke(ctx context.Context, serial string, reason RevocationReason, by string) error {
	n, ok := serialOf(serial)
	if !ok {
		return ErrNotFound
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[n.Text(16)]
	if !ok {
		return ErrNotFound
	}
	if r.Status != StatusRevoked {
		r.Status, r.RevokedAt, r.Reason, r.RevokedBy = StatusRevoked, time.Now().Truncate(time.Second), reason, by
	}
	return nil
}

func (m *memCA) revokeWhere(match func(*Record) bool, reason RevocationReason, by string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	found := false
	for _, s := range m.order {
		r := m.recs[s]
		if !match(r) {
			continue
		}
		found = true
		if r.Status != StatusRevoked {
			r.Status, r.RevokedAt, r.Reason, r.RevokedBy = StatusRevoked, time.Now().Truncate(time.Second), reason, by
			out = append(out, s)
		}
	}
	if !found {
		return nil, ErrNotFound
	}
	return out, nil
}

func (m *memCA) RevokeDevice(ctx context.Context, uuid string, reason RevocationReason, by string) ([]string, error) {
	return m.revokeWhere(func(r *Record) bool { return r.DeviceUUID == uuid }, reason, by)
}

func (m *memCA) RevokeHolder(ctx context.Context, email string, reason RevocationReason, by string) ([]string, error) {
	return m.revokeWhere(func(r *Record) bool { return strings.EqualFold(r.Email, email) }, reason, by)
}

func (m *memCA) List(ctx context.Context, f ListFilter) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Record
	for _, s := range m.order {
		r := *m.recs[s]
		if (f.Holder == "" || strings.EqualFold(f.Holder, r.Email)) && (f.Device == "" || f.Device == r.DeviceUUID) &&
			(f.Status == "" || f.Status == r.Status) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *memCA) Status(ctx context.Context, serial *big.Int) (Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[serial.Text(16)]
	if !ok {
		return Record{}, ErrNotFound
	}
	return *r, nil
}

func (m *memCA) CRL(ctx context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crlNum++
	now := time.Now()
	tmpl := &x509.RevocationList{Number: big.NewInt(m.crlNum), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(24 * time.Hour)}
	for _, s := range m.order {
		if r := m.recs[s]; r.Status == StatusRevoked {
			n, _ := serialOf(s)
			tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
				x509.RevocationListEntry{SerialNumber: n, RevocationTime: r.RevokedAt, ReasonCode: int(r.Reason)})
		}
	}
	return x509.CreateRevocationList(rand.Reader, tmpl, m.inter.Cert, m.inter.Key)
}

func (m *memCA) Root() *x509.Certificate         { return m.root.Cert }
func (m *memCA) Intermediate() *x509.Certificate { return m.inter.Cert }
func (m *memCA) Signer() crypto.Signer           { return m.inter.Key }

// TokenStore.

func (m *memCA) Put(ctx context.Context, id string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tokens[id]; ok {
		return ErrExists
	}
	m.tokens[id] = memToken{val: append([]byte(nil), value...)}
	return nil
}

func (m *memCA) Get(ctx context.Context, id string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[id]
	if !ok {
		return nil, false, ErrNotFound
	}
	return t.val, t.used, nil
}

func (m *memCA) Consume(ctx context.Context, id string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tokens[id]
	switch {
	case !ok:
		return nil, ErrNotFound
	case t.used:
		return nil, ErrTokenUsed
	}
	t.used = true
	m.tokens[id] = t
	return t.val, nil
}

func (m *memCA) Delete(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.tokens, id)
	return nil
}

// memTokens is memCA's TokenStore (its List clashes with Authority.List).
type memTokens struct{ *memCA }

func (m memTokens) List(ctx context.Context, fn func(id string, value []byte, used bool) error) error {
	m.mu.Lock()
	snap := map[string]memToken{}
	for k, v := range m.tokens {
		snap[k] = v
	}
	m.mu.Unlock()
	for k, v := range snap {
		if err := fn(k, v.val, v.used); err != nil {
			return err
		}
	}
	return nil
}

var (
	_ Authority  = (*memCA)(nil)
	_ TokenStore = memTokens{}
)
