package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"net/url"
	"unicode/utf8"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// Key types the server generates for PKCS#12 enrolment.
const (
	KeyECDSAP256 = "ecdsa-p256" // default
	KeyRSA2048   = "rsa-2048"
)

// MinPKCS12Password is the shortest password a client may choose for its
// PKCS#12 bundle (a generated one is 32 hex characters, 128 bits).
const MinPKCS12Password = 16

// DefaultPKCS12Iterations is the PBKDF2 iteration count for a bundle
// protected by a password the client chose (which may be weaker than a
// generated one). A generated 128-bit password gets pkcs12.Modern's 2048:
// more iterations add nothing against 2^128 guesses.
const DefaultPKCS12Iterations = 100_000

// PKCS12Bundle is the result of EnrollPKCS12. Password is returned once and
// never stored; the private key exists only inside Data.
type PKCS12Bundle struct {
	Data     []byte
	Password string
	Chain    []*x509.Certificate
}

// EnrollPKCS12 is Enroll for a device that cannot make a CSR: the server
// generates the key (keyType KeyECDSAP256 or KeyRSA2048), issues the
// certificate with the token's facts and returns key + chain + root as a
// PKCS#12 encrypted with password (or, when password is "", a generated
// 128-bit one). The key is never stored or logged.
func (e *Enroller) EnrollPKCS12(ctx context.Context, tok, keyType, password, from string, root *x509.Certificate) (PKCS12Bundle, error) {
	chosen := password != ""
	if !chosen {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return PKCS12Bundle{}, err
		}
		password = hex.EncodeToString(b[:])
	} else if utf8.RuneCountInString(password) < MinPKCS12Password || !utf8.ValidString(password) {
		return PKCS12Bundle{}, fmt.Errorf("%w: a chosen PKCS#12 password needs at least %d characters", ErrBadFacts, MinPKCS12Password)
	}
	enc := pkcs12.Modern // PBES2: PBKDF2-HMAC-SHA-256 + AES-256-CBC; HMAC-SHA-256 MAC
	if chosen {
		enc = enc.WithIterations(e.pkcs12Iter)
	}
	var key crypto.Signer
	switch keyType {
	case "", KeyECDSAP256:
	case KeyRSA2048:
	default:
		return PKCS12Bundle{}, fmt.Errorf("%w: key type %q (want %s or %s)", ErrBadFacts, keyType, KeyECDSAP256, KeyRSA2048)
	}
	chain, err := e.enroll(ctx, tok, from, func(f Facts) (*x509.CertificateRequest, error) {
		// The key is made only once the token is known to be usable.
		var err error
		if keyType == KeyRSA2048 {
			key, err = rsa.GenerateKey(rand.Reader, 2048)
		} else {
			key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		}
		if err != nil {
			return nil, fmt.Errorf("pki: generate key: %w", err)
		}
		return makeCSR(key, f)
	})
	if err != nil {
		return PKCS12Bundle{}, err
	}
	cas := append([]*x509.Certificate{}, chain[1:]...)
	if root != nil {
		cas = append(cas, root)
	}
	data, err := enc.Encode(key, chain[0], cas, password)
	if err != nil {
		return PKCS12Bundle{}, fmt.Errorf("pki: encode PKCS#12: %w", err)
	}
	return PKCS12Bundle{Data: data, Password: password, Chain: chain}, nil
}

// makeCSR makes the CSR the server signs on a device's behalf: the names
// the certificate will carry, nothing else.
func makeCSR(key crypto.Signer, f Facts) (*x509.CertificateRequest, error) {
	cn := f.DeviceName
	if cn == "" {
		cn = f.Email
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, EmailAddresses: []string{f.Email}}
	if f.DeviceUUID != "" {
		tmpl.URIs = []*url.URL{{Scheme: "urn", Opaque: "uuid:" + f.DeviceUUID}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("pki: CSR: %w", err)
	}
	return x509.ParseCertificateRequest(der)
}
