package policy

import "time"

// Reason is a stable reason code; it appears in the access log, metrics and docs.
type Reason string

const (
	ReasonRuleMatched        Reason = "rule-matched"        // accepted by a rule
	ReasonRuleReject         Reason = "rule-reject"         // a rule whose action is reject matched
	ReasonNoRuleMatched      Reason = "no-rule-matched"     // default deny
	ReasonUnknownSite        Reason = "unknown-site"        // the NAS's site is not configured
	ReasonSegmentNotOffered  Reason = "segment-not-offered" // the site has no VLAN for the segment
	ReasonExpired            Reason = "expired"
	ReasonNotYetValid        Reason = "not-yet-valid"
	ReasonUntrusted          Reason = "untrusted"
	ReasonWrongEKU           Reason = "wrong-eku"
	ReasonRevoked            Reason = "revoked"
	ReasonCRLStale           Reason = "crl-stale"
	ReasonInvalidCertificate Reason = "invalid-certificate"
	// il3 refused (invariants 1 and 2); the decision is the rule's fallback.
	ReasonIL3NotCouncilManaged Reason = "il3-not-council-managed"
	ReasonIL3NoClearance       Reason = "il3-no-clearance"
	ReasonIL3AnchorNotIL3      Reason = "il3-anchor-not-il3"
	ReasonIL3RevocationUnknown Reason = "il3-revocation-unknown"
	ReasonIL3RevocationStale   Reason = "il3-revocation-stale"
)

// Site is one council site and the VLAN of each segment it offers. A site
// that has no entry for SegmentIL3 does not offer IL3.
type Site struct {
	Name  string
	VLANs map[Segment]int
}

// Rule is one entry of the ordered rule list; the first rule whose every
// non-empty condition matches decides.
type Rule struct {
	Name string

	// Conditions; an empty condition matches anything.
	Ownership    []Ownership
	Roles        []Role
	ClearanceIL3 *bool    // nil: any; else must equal
	Anchors      []string // trust anchor (issuer) names
	PolicyOIDs   []string // every OID listed must be asserted
	EmailDomains []string // domain part of the SAN e-mail, case-insensitive
	Sites        []string
	SSIDs        []string

	// Actions.
	Segment        Segment       // where to place the device; SegmentReject to reject
	Fallback       Segment       // for Segment il3: where to go when an il3 condition fails (general or reject; default reject)
	SessionTimeout time.Duration // 0: none
	RejectReason   Reason        // for Segment reject; default ReasonRuleReject
}

// Policy is the validated rule set. Build it, call Validate once at load, then
// call Decide concurrently: it is read-only after Validate.
type Policy struct {
	Sites map[string]Site
	Rules []Rule
	// MaxRevocationAge is the oldest revocation data accepted for il3
	// (in addition to the anchor's own NextUpdate check).
	MaxRevocationAge time.Duration
}
