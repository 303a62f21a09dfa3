package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
)

// MaxCSRSize caps a CSR (PEM or DER) accepted from a client.
const MaxCSRSize = 32 << 10

// ParseCSR parses a PKCS#10 request in PEM ("CERTIFICATE REQUEST" or "NEW
// CERTIFICATE REQUEST") or DER. Errors are ErrBadCSR.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadCSR)
	}
	if len(data) > MaxCSRSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadCSR, MaxCSRSize)
	}
	der := data
	if trimmed := strings.TrimSpace(string(data)); strings.HasPrefix(trimmed, "-----BEGIN") {
		block, _ := pem.Decode([]byte(trimmed))
		if block == nil {
			return nil, fmt.Errorf("%w: unreadable PEM", ErrBadCSR)
		}
		if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%w: PEM block %q, want CERTIFICATE REQUEST", ErrBadCSR, block.Type)
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	return csr, nil
}

// CheckKey accepts ECDSA P-256/P-384 and RSA 2048..8192 bits; anything else
// is ErrWeakKey.
func CheckKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384():
			return nil
		}
		return fmt.Errorf("%w: curve %s", ErrWeakKey, k.Curve.Params().Name)
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return fmt.Errorf("%w: RSA %d bits", ErrWeakKey, n)
		}
		if k.E < 3 || k.E%2 == 0 {
			return fmt.Errorf("%w: RSA exponent %d", ErrWeakKey, k.E)
		}
		return nil
	case nil:
		return fmt.Errorf("%w: no public key", ErrWeakKey)
	}
	return fmt.Errorf("%w: %T", ErrWeakKey, pub)
}

// CheckCSR refuses a CSR that an enrolment must not sign for facts f:
// a signature that does not verify (ErrCSRSignature), a weak or
// unsupported key (ErrWeakKey), or names other than the token's
// (ErrCSRMismatch): its SANs may only repeat the holder's e-mail and
// urn:uuid:<device>; DNS, IP and other URI SANs are refused. The subject is
// ignored: the CA replaces it with the device name. What the certificate
// asserts comes from f alone.
func CheckCSR(csr *x509.CertificateRequest, f Facts) error {
	if csr == nil {
		return fmt.Errorf("%w: missing", ErrBadCSR)
	}
	if err := CheckKey(csr.PublicKey); err != nil {
		return err
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%w (%v)", ErrCSRSignature, err)
	}
	if len(csr.DNSNames) > 0 || len(csr.IPAddresses) > 0 {
		return fmt.Errorf("%w: DNS/IP SANs requested", ErrCSRMismatch)
	}
	for _, e := range csr.EmailAddresses {
		if !strings.EqualFold(e, f.Email) {
			return fmt.Errorf("%w: e-mail SAN %q is not the holder's", ErrCSRMismatch, e)
		}
	}
	for _, u := range csr.URIs {
		if f.DeviceUUID == "" || !strings.EqualFold(u.String(), "urn:uuid:"+f.DeviceUUID) {
			return fmt.Errorf("%w: URI SAN %q is not the device's", ErrCSRMismatch, u.String())
		}
	}
	return nil
}
