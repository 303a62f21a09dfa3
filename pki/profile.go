package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smallstep/certificates/authority/provisioner"

	"github.com/herts-council/nacd/policy"
)

// maxRSABits bounds RSA keys (a huge modulus is a CPU cost on every
// handshake).
const maxRSABits = 8192

// checkPublicKey refuses weak or unsupported keys: ECDSA P-256/P-384 and
// RSA 2048-8192 only.
func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("%w: ECDSA curve %s", ErrWeakKey, k.Curve.Params().Name)
		}
		return nil
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 || n > maxRSABits {
			return fmt.Errorf("%w: RSA %d bits", ErrWeakKey, n)
		}
		if k.E < 3 || k.E%2 == 0 {
			return fmt.Errorf("%w: RSA exponent %d", ErrWeakKey, k.E)
		}
		return nil
	default:
		return fmt.Errorf("%w: %T", ErrWeakKey, pub)
	}
}

// normalise checks f and fills defaults: lower-case e-mail and UUID, a
// random UUID when none, the e-mail as device name when none.
func (f Facts) normalise() (Facts, error) {
	f.Email = strings.TrimSpace(f.Email)
	a, err := mail.ParseAddress(f.Email)
	if err != nil || a.Address != f.Email || a.Name != "" || len(f.Email) > 254 || strings.ContainsAny(f.Email, " <>\"") {
		return f, fmt.Errorf("%w: e-mail %q is not a plain address", ErrBadFacts, f.Email)
	}
	at := strings.LastIndexByte(f.Email, '@')
	f.Email = f.Email[:at] + "@" + strings.ToLower(f.Email[at+1:])
	if f.DeviceUUID == "" {
		if f.DeviceUUID, err = randomUUID(); err != nil {
			return f, err
		}
	}
	f.DeviceUUID = strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(f.DeviceUUID, "urn:uuid:"), "URN:UUID:"))
	if !isCanonicalUUID(f.DeviceUUID) {
		return f, fmt.Errorf("%w: device UUID %q is not a UUID", ErrBadFacts, f.DeviceUUID)
	}
	f.DeviceName = strings.TrimSpace(f.DeviceName)
	if f.DeviceName == "" {
		f.DeviceName = f.Email
	}
	if len(f.DeviceName) > 64 || !utf8.ValidString(f.DeviceName) || strings.ContainsFunc(f.DeviceName, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return f, fmt.Errorf("%w: device name must be 1-64 printable characters", ErrBadFacts)
	}
	switch f.Ownership {
	case policy.OwnershipCouncilManaged, policy.OwnershipPersonal:
	default:
		return f, fmt.Errorf("%w: ownership %q (want council-managed or personal)", ErrBadFacts, f.Ownership)
	}
	switch f.Role {
	case policy.RoleStaff, policy.RoleMember, policy.RoleContractor, policy.RoleVisitor:
	default:
		return f, fmt.Errorf("%w: role %q (want staff, member, contractor or visitor)", ErrBadFacts, f.Role)
	}
	if f.Validity < 0 {
		return f, fmt.Errorf("%w: negative validity", ErrBadFacts)
	}
	return f, nil
}

func isCanonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// policyOIDs are the certificate-policy OIDs asserting f (design section 3).
func (f Facts) policyOIDs() ([]x509.OID, error) {
	names := []string{}
	switch f.Ownership {
	case policy.OwnershipCouncilManaged:
		names = append(names, policy.OIDOwnershipCouncilManaged)
	case policy.OwnershipPersonal:
		names = append(names, policy.OIDOwnershipPersonal)
	}
	switch f.Role {
	case policy.RoleStaff:
		names = append(names, policy.OIDRoleStaff)
	case policy.RoleMember:
		names = append(names, policy.OIDRoleMember)
	case policy.RoleContractor:
		names = append(names, policy.OIDRoleContractor)
	case policy.RoleVisitor:
		names = append(names, policy.OIDRoleVisitor)
	}
	if f.ClearanceIL3 {
		names = append(names, policy.OIDClearanceIL3)
	}
	out := make([]x509.OID, 0, len(names))
	for _, n := range names {
		o, err := x509.ParseOID(n)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// checkCSR verifies the CSR's signature and key and that it asks for
// nothing but what f implies: its SANs must be empty or exactly the
// holder's e-mail and the device's urn:uuid URI; no DNS names or IPs. Its
// subject is ignored (replaced by the device name).
func checkCSR(csr *x509.CertificateRequest, f Facts) error {
	if csr == nil {
		return fmt.Errorf("%w: no CSR", ErrBadCSR)
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return err
	}
	if len(csr.DNSNames) > 0 || len(csr.IPAddresses) > 0 {
		return fmt.Errorf("%w: DNS or IP SANs %v %v", ErrCSRMismatch, csr.DNSNames, csr.IPAddresses)
	}
	for _, e := range csr.EmailAddresses {
		if !strings.EqualFold(e, f.Email) {
			return fmt.Errorf("%w: e-mail %q (holder is %q)", ErrCSRMismatch, e, f.Email)
		}
	}
	for _, u := range csr.URIs {
		if u == nil || !strings.EqualFold(u.String(), "urn:uuid:"+f.DeviceUUID) {
			return fmt.Errorf("%w: URI %v (device is urn:uuid:%s)", ErrCSRMismatch, u, f.DeviceUUID)
		}
	}
	return nil
}

// deviceProfile is the step CertificateModifier that writes nacd's device
// profile over whatever step's default template copied from the CSR:
// subject, SANs, EKU, key usage, policies, CRL DP / OCSP AIA and validity.
type deviceProfile struct {
	f                 Facts
	notBefore, notAft time.Time
	crlURL, ocspURL   string
}

func (p deviceProfile) Modify(c *x509.Certificate, _ provisioner.SignOptions) error {
	oids, err := p.f.policyOIDs()
	if err != nil {
		return err
	}
	u, err := url.Parse("urn:uuid:" + p.f.DeviceUUID)
	if err != nil {
		return err
	}
	c.Subject = pkix.Name{CommonName: p.f.DeviceName}
	c.EmailAddresses = []string{p.f.Email}
	c.URIs = []*url.URL{u}
	c.DNSNames, c.IPAddresses = nil, nil
	setLeafCommon(c, p.notBefore, p.notAft, p.crlURL, p.ocspURL)
	c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	c.Policies = oids
	c.PolicyIdentifiers = nil
	return nil
}

// serverProfile is the profile of nacd's own server certificate.
type serverProfile struct {
	names             []string
	notBefore, notAft time.Time
	crlURL, ocspURL   string
}

func (p serverProfile) Modify(c *x509.Certificate, _ provisioner.SignOptions) error {
	c.Subject = pkix.Name{CommonName: p.names[0], Organization: []string{"nacd"}}
	c.DNSNames, c.IPAddresses = splitServerNames(p.names)
	c.EmailAddresses, c.URIs = nil, nil
	setLeafCommon(c, p.notBefore, p.notAft, p.crlURL, p.ocspURL)
	c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	c.Policies, c.PolicyIdentifiers = nil, nil
	return nil
}

func setLeafCommon(c *x509.Certificate, nb, na time.Time, crlURL, ocspURL string) {
	c.NotBefore, c.NotAfter = nb, na
	c.KeyUsage = x509.KeyUsageDigitalSignature
	if _, ok := c.PublicKey.(*rsa.PublicKey); ok {
		c.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	c.BasicConstraintsValid, c.IsCA = true, false
	c.MaxPathLen, c.MaxPathLenZero = 0, false
	c.UnknownExtKeyUsage = nil
	c.ExtraExtensions, c.Extensions = nil, nil
	c.CRLDistributionPoints, c.OCSPServer, c.IssuingCertificateURL = nil, nil, nil
	if crlURL != "" {
		c.CRLDistributionPoints = []string{crlURL}
	}
	if ocspURL != "" {
		c.OCSPServer = []string{ocspURL}
	}
}

// validityCheck is a step CertificateValidator: the certificate's lifetime
// is positive and within the provisioner's maximum (the claims), and it
// does not outlive the intermediate.
type validityCheck struct {
	max   time.Duration
	inter *x509.Certificate
}

func (v validityCheck) Valid(c *x509.Certificate, _ provisioner.SignOptions) error {
	life := c.NotAfter.Sub(c.NotBefore)
	switch {
	case !c.NotAfter.After(c.NotBefore):
		return fmt.Errorf("certificate validity %s..%s is empty", c.NotBefore, c.NotAfter)
	case life > v.max+2*time.Minute:
		return fmt.Errorf("certificate lifetime %s exceeds the maximum %s", life, v.max)
	case c.NotAfter.After(v.inter.NotAfter):
		return fmt.Errorf("certificate would outlive the intermediate (%s)", v.inter.NotAfter)
	}
	return nil
}
