package policy

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// roleOrder is the order in which IdentityFromCertificate picks a role when a
// certificate asserts several: the least privileged first. A visitor only
// gets guest access, a contractor is time-limited, a member (councillor) is
// usually on a personal device, staff gets the most. Asserting several roles
// therefore never gains anything.
var roleOrder = [...]Role{RoleVisitor, RoleContractor, RoleMember, RoleStaff}

// IdentityFromCertificate extracts the attribute fields of an Identity from a
// device certificate (design section 3):
//
//   - CommonName, Subject (RFC 2253 string), Issuer (RFC 2253 string);
//   - Email: the first SAN rfc822Name;
//   - DeviceUUID: the first SAN URI of the form urn:uuid:<uuid>, lower-cased.
//     If that URI does not hold a well-formed RFC 4122 textual UUID the
//     field is left empty (a malformed identifier is not guessed at);
//   - Serial: the serial number in lower-case hex;
//   - PolicyOIDs: every certificate-policy OID, dotted, in certificate order,
//     without duplicates. Certificate.Policies is read first;
//     Certificate.PolicyIdentifiers is read too, for certificates built in
//     memory rather than parsed;
//   - Ownership, Role, ClearanceIL3: from the policy OIDs, mapped through oids.
//     Ownership is council-managed only when a council-managed OID is
//     asserted and no personal OID is: none or both give personal (fail
//     closed). No role OID gives RoleUnknown; several give the least
//     privileged (visitor, then contractor, member, staff);
//   - NotBefore, NotAfter.
//
// It never sets Anchor, AnchorIL3, Status or Revocation: the verifier does.
// A nil certificate gives an Identity that is personal with role unknown.
func IdentityFromCertificate(cert *x509.Certificate, oids OIDs) Identity {
	id := Identity{Ownership: OwnershipPersonal, Role: RoleUnknown}
	if cert == nil {
		return id
	}
	id.Subject = cert.Subject.String()
	id.CommonName = cert.Subject.CommonName
	id.Issuer = cert.Issuer.String()
	if cert.SerialNumber != nil {
		id.Serial = cert.SerialNumber.Text(16)
	}
	if len(cert.EmailAddresses) > 0 {
		id.Email = cert.EmailAddresses[0]
	}
	id.DeviceUUID = deviceUUID(cert)
	id.NotBefore = cert.NotBefore
	id.NotAfter = cert.NotAfter
	id.PolicyOIDs = certificatePolicyOIDs(cert)

	var councilManaged, personal, clearance bool
	var roles [len(roleOrder)]bool
	for _, o := range id.PolicyOIDs {
		councilManaged = councilManaged || containsString(oids.CouncilManaged, o)
		personal = personal || containsString(oids.Personal, o)
		clearance = clearance || containsString(oids.ClearanceIL3, o)
		roles[0] = roles[0] || containsString(oids.Visitor, o)
		roles[1] = roles[1] || containsString(oids.Contractor, o)
		roles[2] = roles[2] || containsString(oids.Member, o)
		roles[3] = roles[3] || containsString(oids.Staff, o)
	}
	if councilManaged && !personal {
		id.Ownership = OwnershipCouncilManaged
	}
	for i, r := range roleOrder {
		if roles[i] {
			id.Role = r
			break
		}
	}
	id.ClearanceIL3 = clearance
	return id
}

// certificatePolicyOIDs returns the certificate's policy OIDs as dotted
// strings, deduplicated, Policies first then any PolicyIdentifiers not
// already seen.
func certificatePolicyOIDs(cert *x509.Certificate) []string {
	n := len(cert.Policies) + len(cert.PolicyIdentifiers)
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for _, o := range cert.Policies {
		s := o.String()
		if s != "" && !containsString(out, s) {
			out = append(out, s)
		}
	}
	for _, o := range cert.PolicyIdentifiers {
		if len(o) == 0 {
			continue
		}
		s := o.String()
		if !containsString(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// deviceUUID returns the UUID of the first SAN URI urn:uuid:..., lower-case,
// or "" when there is none or it is malformed.
func deviceUUID(cert *x509.Certificate) string {
	for _, u := range cert.URIs {
		if u == nil || !strings.EqualFold(u.Scheme, "urn") {
			continue
		}
		nss, ok := cutPrefixFold(u.Opaque, "uuid:")
		if !ok {
			continue
		}
		if !validUUID(nss) {
			return ""
		}
		return strings.ToLower(nss)
	}
	return ""
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// validUUID reports whether s is the 36-character textual form of a UUID
// (8-4-4-4-12 hex digits, either case).
func validUUID(s string) bool {
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
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func oidError(field string, i int, format string, args ...any) error {
	return &FieldError{Field: fmt.Sprintf("oids.%s[%d]", field, i), RuleIndex: -1, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks an OID mapping (e.g. one configured for an external CA):
// every OID must be a well-formed dotted OID in canonical form (the form
// certificates are compared in), and no OID may stand for two facts (an OID
// that meant both council-managed and personal, or two roles, would make the
// mapping ambiguous). A mapping with no council-managed OID is allowed (every
// device of that CA is then personal). Each problem is a *FieldError whose
// Field is "oids.<fact>[<index>]", e.g. "oids.staff[0]".
func (o OIDs) Validate() error {
	fields := []struct {
		name string
		oids []string
	}{
		{"council_managed", o.CouncilManaged},
		{"personal", o.Personal},
		{"staff", o.Staff},
		{"member", o.Member},
		{"contractor", o.Contractor},
		{"visitor", o.Visitor},
		{"clearance_il3", o.ClearanceIL3},
	}
	var errs []error
	seen := map[string]string{}
	for _, f := range fields {
		for i, s := range f.oids {
			parsed, err := x509.ParseOID(s)
			if err != nil {
				errs = append(errs, oidError(f.name, i, "%q is not a dotted OID: %v", s, err))
				continue
			}
			if c := parsed.String(); c != s {
				errs = append(errs, oidError(f.name, i, "%q is not in canonical form (write %q)", s, c))
				continue
			}
			if prev, ok := seen[s]; ok && prev != f.name {
				errs = append(errs, oidError(f.name, i, "%q already stands for %s", s, prev))
				continue
			}
			seen[s] = f.name
		}
	}
	return errors.Join(errs...)
}
