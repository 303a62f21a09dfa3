package policy

import (
	"math"
	"strings"
	"time"
)

// MaxSessionTimeout is the longest Session-Timeout Decide returns: the
// largest value the RADIUS Session-Timeout attribute (32-bit seconds) can
// carry.
const MaxSessionTimeout = time.Duration(math.MaxUint32) * time.Second

// minValidity is the least remaining certificate lifetime Decide accepts.
// Session-Timeout is sent in whole seconds and 0 means "no timeout", so a
// certificate with under a second left could not be given a timeout that
// ends at its NotAfter: it is treated as expired.
const minValidity = time.Second

// Decide places a device on a segment. It is pure and safe for concurrent
// use (the Policy is only read), runs in O(rules) and does not allocate.
// It does not rely on Validate having been called: every invariant of
// design section 4 is enforced here too.
//
// The steps, in order:
//
//  1. The certificate: a Status other than CertOK (an empty Status
//     included), Revocation.Revoked, or req.Now outside
//     [NotBefore, NotAfter) with at least a second to spare, rejects with
//     Rule "certificate-status" and the matching reason.
//  2. The site: a req.Site that is not configured rejects with Rule
//     "unknown-site", reason unknown-site.
//  3. The rules, in order; the first whose every condition matches
//     decides. None: reject, Rule "default-deny", reason no-rule-matched.
//     An identity whose Ownership is not council-managed is matched as
//     personal; an unknown Role as unknown.
//  4. A rule that rejects gives its RejectReason (default rule-reject).
//  5. A rule that targets il3 grants il3 only when the device is
//     council-managed, holds il3 clearance, chains to an anchor marked il3,
//     its revocation status was checked and is neither stale nor older than
//     MaxRevocationAge, and the site offers il3. Otherwise the decision is
//     the rule's Fallback (general, or reject when Fallback is empty,
//     reject or anything else) with the reason of the first failed
//     condition, checked in that order (segment-not-offered for the site).
//     A fallback segment the site does not offer rejects, keeping that
//     reason.
//  6. Any other segment the site does not offer rejects with
//     segment-not-offered.
//  7. SessionTimeout is the rule's timeout, or the certificate's remaining
//     lifetime when the rule sets none or a longer one: a session never
//     outlives the certificate. It is whole seconds, at least one second
//     and at most MaxSessionTimeout.
//
// Finally a decision for il3 is re-checked against invariants 1 and 2 by
// code independent of step 5 and rejected (Rule "il3-guard") if it fails.
// A rejection always has VLAN 0 and SessionTimeout 0.
func (p *Policy) Decide(id Identity, req Request) Decision {
	if p == nil {
		return reject(RuleDefaultDeny, ReasonNoRuleMatched)
	}
	if r := certificateRejection(&id, req.Now); r != "" {
		return reject(RuleCertificateStatus, r)
	}
	site, ok := p.Sites[req.Site]
	if !ok || req.Site == "" {
		return reject(RuleUnknownSite, ReasonUnknownSite)
	}

	own := id.Ownership
	if own != OwnershipCouncilManaged {
		own = OwnershipPersonal
	}
	role := id.Role
	if !role.Valid() {
		role = RoleUnknown
	}

	for i := range p.Rules {
		r := &p.Rules[i]
		if !r.matches(&id, own, role, &req) {
			continue
		}
		d := p.apply(r, &id, own, &site, req.Now)
		return guardIL3(d, &id, &site, p.MaxRevocationAge)
	}
	return reject(RuleDefaultDeny, ReasonNoRuleMatched)
}

func reject(rule string, reason Reason) Decision {
	return Decision{Segment: SegmentReject, Rule: rule, Reason: reason}
}

// certificateRejection returns the reason a certificate is not acceptable
// at all, or "".
func certificateRejection(id *Identity, now time.Time) Reason {
	switch id.Status {
	case CertOK:
	case CertExpired:
		return ReasonExpired
	case CertNotYetValid:
		return ReasonNotYetValid
	case CertUntrusted:
		return ReasonUntrusted
	case CertWrongEKU:
		return ReasonWrongEKU
	case CertRevoked:
		return ReasonRevoked
	case CertRevocationStale:
		return ReasonCRLStale
	default: // CertInvalid, "" and anything unknown: fail closed
		return ReasonInvalidCertificate
	}
	if id.Revocation.Revoked {
		return ReasonRevoked
	}
	if now.Before(id.NotBefore) {
		return ReasonNotYetValid
	}
	if id.NotAfter.Sub(now) < minValidity {
		return ReasonExpired
	}
	return ""
}

// matches reports whether every condition of r holds.
func (r *Rule) matches(id *Identity, own Ownership, role Role, req *Request) bool {
	if len(r.Ownership) > 0 && !containsOwnership(r.Ownership, own) {
		return false
	}
	if len(r.Roles) > 0 && !containsRole(r.Roles, role) {
		return false
	}
	if r.ClearanceIL3 != nil && *r.ClearanceIL3 != id.ClearanceIL3 {
		return false
	}
	if len(r.Anchors) > 0 && (id.Anchor == "" || !containsString(r.Anchors, id.Anchor)) {
		return false
	}
	for _, o := range r.PolicyOIDs {
		if !containsString(id.PolicyOIDs, o) {
			return false
		}
	}
	if len(r.EmailDomains) > 0 && !emailDomainIn(id.Email, r.EmailDomains) {
		return false
	}
	if len(r.Sites) > 0 && !containsString(r.Sites, req.Site) {
		return false
	}
	if len(r.SSIDs) > 0 && (req.SSID == "" || !containsString(r.SSIDs, req.SSID)) {
		return false
	}
	return true
}

// emailDomainIn reports whether the domain part of email (after the last
// '@') equals one of domains, ignoring case. Subdomains do not match.
func emailDomainIn(email string, domains []string) bool {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || at == len(email)-1 {
		return false
	}
	d := email[at+1:]
	for _, want := range domains {
		if want != "" && strings.EqualFold(d, want) {
			return true
		}
	}
	return false
}

func containsOwnership(list []Ownership, o Ownership) bool {
	for _, v := range list {
		if v == o {
			return true
		}
	}
	return false
}

func containsRole(list []Role, r Role) bool {
	for _, v := range list {
		if v == r {
			return true
		}
	}
	return false
}

// vlan returns the site's VLAN for seg, if it offers seg with a usable VLAN ID.
func (s *Site) vlan(seg Segment) (int, bool) {
	if seg == SegmentReject || seg == "" {
		return 0, false
	}
	v, ok := s.VLANs[seg]
	if !ok || v < 1 || v > 4094 {
		return 0, false
	}
	return v, true
}

// apply turns a matching rule into a decision (steps 4 to 7 of Decide).
func (p *Policy) apply(r *Rule, id *Identity, own Ownership, site *Site, now time.Time) Decision {
	switch r.Segment {
	case SegmentReject:
		reason := r.RejectReason
		if reason == "" || reason == ReasonRuleMatched {
			reason = ReasonRuleReject
		}
		return reject(r.Name, reason)
	case SegmentIL3:
		reason := il3Refusal(id, own, p.MaxRevocationAge)
		if reason == "" {
			if v, ok := site.vlan(SegmentIL3); ok {
				return accept(r, SegmentIL3, v, ReasonRuleMatched, id, now)
			}
			reason = ReasonSegmentNotOffered
		}
		if r.Fallback == SegmentGeneral {
			if v, ok := site.vlan(SegmentGeneral); ok {
				return accept(r, SegmentGeneral, v, reason, id, now)
			}
		}
		return reject(r.Name, reason)
	case SegmentGeneral, SegmentGuest, SegmentOnboarding:
		v, ok := site.vlan(r.Segment)
		if !ok {
			return reject(r.Name, ReasonSegmentNotOffered)
		}
		return accept(r, r.Segment, v, ReasonRuleMatched, id, now)
	default: // an unknown segment in an unvalidated policy: fail closed
		return reject(r.Name, ReasonRuleReject)
	}
}

// il3Refusal returns why id may not be placed on il3 (invariants 1 and 2),
// or "" if it may. The conditions are checked in a fixed order so the
// reason is deterministic.
func il3Refusal(id *Identity, own Ownership, maxAge time.Duration) Reason {
	switch {
	case own != OwnershipCouncilManaged:
		return ReasonIL3NotCouncilManaged
	case !id.ClearanceIL3:
		return ReasonIL3NoClearance
	case !id.AnchorIL3:
		return ReasonIL3AnchorNotIL3
	case !id.Revocation.Checked:
		return ReasonIL3RevocationUnknown
	case id.Revocation.Stale, maxAge <= 0, id.Revocation.Age < 0, id.Revocation.Age > maxAge:
		// A negative age means the revocation data claims to come from the
		// future: the clocks disagree, so its freshness is unknown.
		return ReasonIL3RevocationStale
	}
	return ""
}

func accept(r *Rule, seg Segment, vlan int, reason Reason, id *Identity, now time.Time) Decision {
	return Decision{
		Segment:        seg,
		VLAN:           vlan,
		SessionTimeout: sessionTimeout(r.SessionTimeout, id.NotAfter.Sub(now)),
		Rule:           r.Name,
		Reason:         reason,
	}
}

// sessionTimeout caps the rule's timeout (0: none) at the certificate's
// remaining lifetime and at MaxSessionTimeout, in whole seconds, at least
// one second (remaining is at least minValidity, checked in step 1).
func sessionTimeout(rule, remaining time.Duration) time.Duration {
	t := remaining
	if rule > 0 && rule < t {
		t = rule
	}
	if t > MaxSessionTimeout {
		t = MaxSessionTimeout
	}
	t = t.Truncate(time.Second)
	if t < time.Second {
		t = time.Second
	}
	return t
}

// guardIL3 is the last line of defence: a decision for il3 is re-checked
// against invariants 1 and 2, and against the site, by code that shares
// nothing with apply, and rejected if anything fails. Every other decision
// is only made consistent (a reject never carries a VLAN or a timeout).
func guardIL3(d Decision, id *Identity, site *Site, maxAge time.Duration) Decision {
	if d.Segment == SegmentReject || d.Segment == "" {
		return Decision{Segment: SegmentReject, Rule: d.Rule, Reason: d.Reason}
	}
	if d.Segment != SegmentIL3 {
		return d
	}
	var why Reason
	rev := id.Revocation
	switch {
	case id.Status != CertOK:
		why = ReasonInvalidCertificate
	case rev.Revoked:
		why = ReasonRevoked
	case id.Ownership != OwnershipCouncilManaged:
		why = ReasonIL3NotCouncilManaged
	case !id.ClearanceIL3:
		why = ReasonIL3NoClearance
	case !id.AnchorIL3:
		why = ReasonIL3AnchorNotIL3
	case !rev.Checked:
		why = ReasonIL3RevocationUnknown
	case rev.Stale || maxAge <= 0 || rev.Age < 0 || rev.Age > maxAge:
		why = ReasonIL3RevocationStale
	case site == nil || d.VLAN < 1 || d.VLAN > 4094 || site.VLANs[SegmentIL3] != d.VLAN:
		why = ReasonSegmentNotOffered
	default:
		return d
	}
	return reject(RuleIL3Guard, why)
}
