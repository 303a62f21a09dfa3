package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herts-council/nacd/policy"
)

func TestCheckCSR(t *testing.T) {
	f := Facts{Email: "alice@herts.example", DeviceUUID: "6f1c2b7e-9d7a-4d0e-8f55-0c2a0f6d1e11", DeviceName: "alice-laptop"}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	uuidURI := &url.URL{Scheme: "urn", Opaque: "uuid:" + f.DeviceUUID}
	cases := []struct {
		name string
		key  any
		tmpl x509.CertificateRequest
		want error
	}{
		{name: "P-256, empty", key: p256},
		{name: "P-384, empty", key: p384},
		{name: "RSA-2048", key: rsa2048},
		{name: "names repeated exactly", key: p256, tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice-laptop"},
			EmailAddresses: []string{"Alice@Herts.example"}, URIs: []*url.URL{uuidURI}}},
		{name: "RSA-1024", key: rsa1024, want: ErrWeakKey},
		{name: "P-224", key: p224, want: ErrWeakKey},
		{name: "Ed25519 (unsupported)", key: ed, want: ErrWeakKey},
		{name: "DNS SAN", key: p256, tmpl: x509.CertificateRequest{DNSNames: []string{"alice.herts.example"}}, want: ErrCSRMismatch},
		{name: "IP SAN", key: p256, tmpl: x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}, want: ErrCSRMismatch},
		{name: "another e-mail", key: p256, tmpl: x509.CertificateRequest{EmailAddresses: []string{"alice@evil.example"}}, want: ErrCSRMismatch},
		{name: "holder's e-mail plus another", key: p256, tmpl: x509.CertificateRequest{EmailAddresses: []string{"alice@herts.example", "x@herts.example"}}, want: ErrCSRMismatch},
		{name: "another URI", key: p256, tmpl: x509.CertificateRequest{URIs: []*url.URL{{Scheme: "https", Host: "evil.example"}}}, want: ErrCSRMismatch},
		{name: "another CN (ignored: the CA replaces the subject)", key: p256, tmpl: x509.CertificateRequest{Subject: pkix.Name{CommonName: "bob-laptop"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			der, err := x509.CreateCertificateRequest(rand.Reader, &tc.tmpl, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := ParseCSR(der)
			if err != nil {
				t.Fatal(err)
			}
			err = CheckCSR(csr, f)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("CheckCSR: %v, want %v", err, tc.want)
			}
		})
	}
	if err := CheckCSR(nil, f); !errors.Is(err, ErrBadCSR) {
		t.Fatalf("nil CSR: %v", err)
	}
}

func TestParseCSR(t *testing.T) {
	p, _ := newCSR(t, nil, nil)
	blk, _ := pem.Decode(p)
	cases := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{name: "PEM", in: p, ok: true},
		{name: "PEM with leading blank lines", in: append([]byte("\n\n  "), p...), ok: true},
		{name: "NEW CERTIFICATE REQUEST PEM", in: pem.EncodeToMemory(&pem.Block{Type: "NEW CERTIFICATE REQUEST", Bytes: blk.Bytes}), ok: true},
		{name: "DER", in: blk.Bytes, ok: true},
		{name: "certificate PEM", in: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: blk.Bytes})},
		{name: "broken PEM", in: []byte("-----BEGIN CERTIFICATE REQUEST-----\nzz")},
		{name: "garbage", in: []byte{0x30, 0x03, 0x02, 0x01}},
		{name: "empty"},
		{name: "too large", in: make([]byte, MaxCSRSize+1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCSR(tc.in)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadCSR)) {
				t.Fatalf("ParseCSR: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func FuzzParseCSR(f *testing.F) {
	p, _ := newCSR(f, nil, nil)
	blk, _ := pem.Decode(p)
	f.Add(p)
	f.Add(blk.Bytes)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n"))
	fa := Facts{Email: "a@b.example", DeviceUUID: "6f1c2b7e-9d7a-4d0e-8f55-0c2a0f6d1e11"}
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			return
		}
		_ = CheckCSR(csr, fa) // must not panic
	})
}

func TestInviteValidation(t *testing.T) {
	ok := Invite{Email: "a@herts.example", Role: policy.RoleStaff, Ownership: policy.OwnershipCouncilManaged, ClearanceIL3: true}
	cases := []struct {
		name string
		mod  func(*Invite)
		ok   bool
	}{
		{name: "council-managed il3 staff", mod: func(*Invite) {}, ok: true},
		{name: "visitor personal", mod: func(i *Invite) {
			i.Role, i.Ownership, i.ClearanceIL3 = policy.RoleVisitor, policy.OwnershipPersonal, false
		}, ok: true},
		{name: "il3 on a personal device", mod: func(i *Invite) { i.Ownership = policy.OwnershipPersonal }},
		{name: "unknown role", mod: func(i *Invite) { i.Role = policy.RoleUnknown }},
		{name: "no ownership", mod: func(i *Invite) { i.Ownership = "" }},
		{name: "e-mail with a display name", mod: func(i *Invite) { i.Email = "A <a@herts.example>" }},
		{name: "e-mail with CRLF", mod: func(i *Invite) { i.Email = "a@herts.example\r\nBcc: x@y" }},
		{name: "no e-mail", mod: func(i *Invite) { i.Email = "" }},
		{name: "device name with a newline", mod: func(i *Invite) { i.DeviceName = "a\nb" }},
		{name: "device name too long", mod: func(i *Invite) { i.DeviceName = strings.Repeat("x", 65) }},
		{name: "validity over 30 days", mod: func(i *Invite) { i.Valid = 31 * 24 * time.Hour }},
		{name: "negative validity", mod: func(i *Invite) { i.Valid = -time.Hour }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inv := ok
			tc.mod(&inv)
			err := ValidateInvite(inv)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadFacts)) {
				t.Fatalf("ValidateInvite: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestTokenStoredOnlyHashedAndExpiry(t *testing.T) {
	b, m := memBackend(t)
	now := time.Now()
	clock := now
	enr, err := NewEnroller(EnrollConfig{Issuer: b.auth, Tokens: b.tokens, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := enr.Invite(context.Background(), Invite{Email: "a@herts.example", Role: policy.RoleStaff,
		Ownership: policy.OwnershipPersonal, Valid: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if inv.URL != "" {
		t.Fatalf("URL %q without a base URL", inv.URL)
	}
	if !inv.ExpiresAt.Equal(now.UTC().Add(time.Hour)) {
		t.Fatalf("expires %v", inv.ExpiresAt)
	}
	secret := strings.TrimPrefix(inv.Token, tokenPrefix)
	for id, tok := range m.tokens {
		if strings.Contains(id, secret) || strings.Contains(string(tok.val), secret) || strings.Contains(string(tok.val), inv.Token) {
			t.Fatal("the token itself is stored")
		}
		if len(id) != 64 || id[:16] != inv.ID {
			t.Fatalf("table key %q is not the token's SHA-256 (id %s)", id, inv.ID)
		}
	}
	if _, _, err := enr.Lookup(context.Background(), inv.Token); err != nil {
		t.Fatalf("lookup before expiry: %v", err)
	}
	clock = now.Add(time.Hour) // expiry is exclusive
	if _, _, err := enr.Lookup(context.Background(), inv.Token); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("lookup at expiry: %v", err)
	}
	// Sweep keeps it for a day after expiry, then deletes it.
	if n, err := enr.Sweep(context.Background(), 24*time.Hour); err != nil || n != 0 {
		t.Fatalf("sweep within the grace period: %d %v", n, err)
	}
	clock = now.Add(26 * time.Hour)
	if n, err := enr.Sweep(context.Background(), 24*time.Hour); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if _, _, err := enr.Lookup(context.Background(), inv.Token); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("lookup after sweep: %v", err)
	}
}

func TestRefusedIssuanceGivesTheTokenBack(t *testing.T) {
	b, m := memBackend(t)
	enr, err := NewEnroller(EnrollConfig{Issuer: b.auth, Tokens: b.tokens})
	if err != nil {
		t.Fatal(err)
	}
	inv, err := enr.Invite(context.Background(), Invite{Email: "a@herts.example", Role: policy.RoleStaff, Ownership: policy.OwnershipPersonal})
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, _ := newCSR(t, nil, nil)
	csr, _ := ParseCSR(csrPEM)
	m.issueFn = func(Facts) error { return ErrCSRMismatch } // the CA is stricter than CheckCSR
	if _, err := enr.Enroll(context.Background(), inv.Token, csr, "test"); !errors.Is(err, ErrCSRMismatch) {
		t.Fatalf("enrol: %v", err)
	}
	m.issueFn = func(Facts) error { return errors.New("disk on fire") }
	if _, err := enr.Enroll(context.Background(), inv.Token, csr, "test"); err == nil || RejectReason(err) != "internal" {
		t.Fatalf("enrol after the token was given back: %v", err)
	}
	m.issueFn = nil
	// An internal failure after consumption does not give the token back.
	if _, err := enr.Enroll(context.Background(), inv.Token, csr, "test"); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("enrol after an internal failure: %v", err)
	}
}

// BenchmarkEnrollCSR is invite + enrol (token put, get, consume, sign,
// inventory record) on the real CA, per store.
func BenchmarkEnrollCSR(b *testing.B) {
	for _, kind := range ctStoreKinds {
		b.Run(kind, func(b *testing.B) {
			be, _ := caBackend(b, kind)
			enr, err := NewEnroller(EnrollConfig{Issuer: be.auth, Tokens: be.tokens})
			if err != nil {
				b.Fatal(err)
			}
			csrPEM, _ := newCSR(b, nil, nil)
			csr, _ := ParseCSR(csrPEM)
			ctx := context.Background()
			for b.Loop() {
				inv, err := enr.Invite(ctx, Invite{Email: "a@herts.example", Role: policy.RoleStaff, Ownership: policy.OwnershipPersonal})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := enr.Enroll(ctx, inv.Token, csr, "bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
