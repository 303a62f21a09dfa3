package policy

import (
	"fmt"
	"strings"
)

// Built-in rule names: the Decision.Rule of a decision that no configured
// rule made. Configured rules may not use these names.
const (
	RuleCertificateStatus = "certificate-status" // rejected on the certificate's status, revocation or validity window
	RuleUnknownSite       = "unknown-site"       // the request's site is not configured
	RuleDefaultDeny       = "default-deny"       // no rule matched
	RuleIL3Guard          = "il3-guard"          // the final il3 re-check refused a decision
)

// BuiltinRules lists the built-in rule names.
func BuiltinRules() []string {
	return []string{RuleCertificateStatus, RuleUnknownSite, RuleDefaultDeny, RuleIL3Guard}
}

var segments = []Segment{SegmentIL3, SegmentGeneral, SegmentGuest, SegmentOnboarding, SegmentReject}

// Segments lists every segment, reject last.
func Segments() []Segment { return append([]Segment(nil), segments...) }

var reasons = [...]Reason{
	ReasonRuleMatched,
	ReasonRuleReject,
	ReasonNoRuleMatched,
	ReasonUnknownSite,
	ReasonSegmentNotOffered,
	ReasonExpired,
	ReasonNotYetValid,
	ReasonUntrusted,
	ReasonWrongEKU,
	ReasonRevoked,
	ReasonCRLStale,
	ReasonInvalidCertificate,
	ReasonIL3NotCouncilManaged,
	ReasonIL3NoClearance,
	ReasonIL3AnchorNotIL3,
	ReasonIL3RevocationUnknown,
	ReasonIL3RevocationStale,
}

// Reasons lists every reason code Decide can return, for documentation and
// for pre-registering metric label values. The caller owns the slice.
func Reasons() []Reason { return append([]Reason(nil), reasons[:]...) }

func (s Segment) String() string   { return string(s) }
func (o Ownership) String() string { return string(o) }
func (r Role) String() string      { return string(r) }
func (r Reason) String() string    { return string(r) }
func (c CertStatus) String() string {
	return string(c)
}

// Valid reports whether s is one of the defined segments (reject included).
func (s Segment) Valid() bool {
	switch s {
	case SegmentIL3, SegmentGeneral, SegmentGuest, SegmentOnboarding, SegmentReject:
		return true
	}
	return false
}

// Valid reports whether o is one of the defined ownerships.
func (o Ownership) Valid() bool {
	return o == OwnershipCouncilManaged || o == OwnershipPersonal
}

// Valid reports whether r is one of the defined roles (unknown included).
func (r Role) Valid() bool {
	switch r {
	case RoleStaff, RoleMember, RoleContractor, RoleVisitor, RoleUnknown:
		return true
	}
	return false
}

// Valid reports whether r is one of the reason codes listed by Reasons.
func (r Reason) Valid() bool {
	for _, v := range reasons {
		if r == v {
			return true
		}
	}
	return false
}

// normalise trims and lower-cases a config value: the names are ASCII
// keywords, so "IL3" and " il3 " mean il3.
func normalise(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// ParseSegment parses a segment name (case-insensitive): il3, general,
// guest, onboarding or reject.
func ParseSegment(s string) (Segment, error) {
	seg := Segment(normalise(s))
	if !seg.Valid() {
		return "", fmt.Errorf("unknown segment %q (want il3, general, guest, onboarding or reject)", s)
	}
	return seg, nil
}

// ParseOwnership parses an ownership (case-insensitive): council-managed or
// personal.
func ParseOwnership(s string) (Ownership, error) {
	o := Ownership(normalise(s))
	if !o.Valid() {
		return "", fmt.Errorf("unknown ownership %q (want council-managed or personal)", s)
	}
	return o, nil
}

// ParseRole parses a role (case-insensitive): staff, member, contractor,
// visitor or unknown (a certificate that asserts no role).
func ParseRole(s string) (Role, error) {
	r := Role(normalise(s))
	if !r.Valid() {
		return "", fmt.Errorf("unknown role %q (want staff, member, contractor, visitor or unknown)", s)
	}
	return r, nil
}

// ParseReason parses a reason code (case-insensitive), e.g. the reject
// reason of a rule.
func ParseReason(s string) (Reason, error) {
	r := Reason(normalise(s))
	if !r.Valid() {
		return "", fmt.Errorf("unknown reason %q", s)
	}
	return r, nil
}
