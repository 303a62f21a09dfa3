package policy

import (
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// FieldError is one problem Validate found. Validate returns all of them
// joined (errors.Join); a caller that wants to point at a config line can
// walk them with errors.As on each unwrapped error.
type FieldError struct {
	// Field is the config path: "rules[2].ownership",
	// "sites.wallfields.vlans.il3", "max_revocation_age".
	Field string
	// RuleIndex and Rule identify the rule when the problem is in one
	// (RuleIndex is -1 otherwise).
	RuleIndex int
	Rule      string
	Msg       string
}

func (e *FieldError) Error() string {
	if e.RuleIndex >= 0 {
		return fmt.Sprintf("rules[%d] %q: %s: %s", e.RuleIndex, e.Rule, strings.TrimPrefix(e.Field, fmt.Sprintf("rules[%d].", e.RuleIndex)), e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Field, e.Msg)
}

// Validate checks the policy once, at load; Decide may then be called
// concurrently. It returns every problem found, joined, each a *FieldError
// naming the field (and the rule by index and name):
//
//   - sites: a non-empty name (equal to the map key when set), only
//     il3/general/guest/onboarding VLANs, each in 1..4094, and no VLAN shared
//     by two segments of a site (that would undo the segregation);
//   - rules: a non-empty name, unique, not a built-in name (BuiltinRules);
//     known ownerships, roles and segments; sites that exist; well-formed
//     policy OIDs; e-mail domains without '@'; no empty anchors or SSIDs;
//     a session timeout that is not negative, at least a second when set,
//     and absent on reject rules; a reject reason only on reject rules,
//     and a known one other than rule-matched;
//   - a rule for il3 must require Ownership exactly [council-managed] and
//     ClearanceIL3 true, so no rule can put a personal or uncleared device
//     on il3 (invariant 1, also enforced by Decide); its Fallback is general
//     or reject (empty means reject); other rules have no Fallback;
//   - MaxRevocationAge is not negative, and positive when a rule targets il3.
func (p *Policy) Validate() error {
	if p == nil {
		return errors.New("policy: nil policy")
	}
	var v validator
	v.sites(p.Sites)
	names := map[string]int{}
	anyIL3 := false
	for i := range p.Rules {
		r := &p.Rules[i]
		v.rule(i, r, p.Sites, names)
		if r.Segment == SegmentIL3 {
			anyIL3 = true
		}
	}
	switch {
	case p.MaxRevocationAge < 0:
		v.add(-1, "", "max_revocation_age", "must not be negative, got %s", p.MaxRevocationAge)
	case p.MaxRevocationAge == 0 && anyIL3:
		v.add(-1, "", "max_revocation_age", "must be set (> 0) when a rule targets il3: il3 needs fresh revocation status")
	}
	return errors.Join(v.errs...)
}

type validator struct{ errs []error }

func (v *validator) add(idx int, rule, field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, RuleIndex: idx, Rule: rule, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) sites(sites map[string]Site) {
	keys := make([]string, 0, len(sites))
	for k := range sites {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic messages
	for _, key := range keys {
		s := sites[key]
		field := "sites." + key
		if strings.TrimSpace(key) == "" {
			v.add(-1, "", "sites", "a site has an empty name")
			field = "sites.<empty>"
		}
		if s.Name != "" && s.Name != key {
			v.add(-1, "", field+".name", "%q does not match the site's key %q", s.Name, key)
		}
		segs := make([]string, 0, len(s.VLANs))
		for seg := range s.VLANs {
			segs = append(segs, string(seg))
		}
		sort.Strings(segs)
		used := map[int]Segment{}
		for _, segName := range segs {
			seg := Segment(segName)
			vlan := s.VLANs[seg]
			f := field + ".vlans." + segName
			switch seg {
			case SegmentIL3, SegmentGeneral, SegmentGuest, SegmentOnboarding:
			case SegmentReject:
				v.add(-1, "", f, "reject has no VLAN")
				continue
			default:
				v.add(-1, "", f, "unknown segment %q (want il3, general, guest or onboarding)", segName)
				continue
			}
			if vlan < 1 || vlan > 4094 {
				v.add(-1, "", f, "VLAN %d out of range 1..4094", vlan)
				continue
			}
			if other, dup := used[vlan]; dup {
				v.add(-1, "", f, "VLAN %d is also the %s VLAN: segments must not share a VLAN", vlan, other)
				continue
			}
			used[vlan] = seg
		}
	}
}

func (v *validator) rule(i int, r *Rule, sites map[string]Site, names map[string]int) {
	f := func(field string) string { return fmt.Sprintf("rules[%d].%s", i, field) }
	add := func(field, format string, args ...any) { v.add(i, r.Name, f(field), format, args...) }

	switch {
	case strings.TrimSpace(r.Name) == "":
		add("name", "must not be empty")
	case isBuiltinRule(r.Name):
		add("name", "%q is a built-in rule name", r.Name)
	default:
		if prev, dup := names[r.Name]; dup {
			add("name", "duplicate of rules[%d]", prev)
		} else {
			names[r.Name] = i
		}
	}

	// Conditions.
	for j, o := range r.Ownership {
		if !o.Valid() {
			add(fmt.Sprintf("ownership[%d]", j), "unknown ownership %q (want council-managed or personal)", o)
		}
	}
	for j, ro := range r.Roles {
		if !ro.Valid() {
			add(fmt.Sprintf("roles[%d]", j), "unknown role %q (want staff, member, contractor, visitor or unknown)", ro)
		}
	}
	for j, a := range r.Anchors {
		if strings.TrimSpace(a) == "" {
			add(fmt.Sprintf("anchors[%d]", j), "must not be empty")
		}
	}
	for j, o := range r.PolicyOIDs {
		parsed, err := x509.ParseOID(o)
		switch {
		case err != nil:
			add(fmt.Sprintf("policy_oids[%d]", j), "%q is not a dotted OID", o)
		case parsed.String() != o:
			add(fmt.Sprintf("policy_oids[%d]", j), "%q is not in canonical form (write %q)", o, parsed.String())
		}
	}
	for j, d := range r.EmailDomains {
		if strings.TrimSpace(d) == "" || strings.ContainsAny(d, "@ \t") {
			add(fmt.Sprintf("email_domains[%d]", j), "%q is not a domain (write e.g. \"eastherts.gov.uk\", without '@')", d)
		}
	}
	for j, s := range r.Sites {
		if _, ok := sites[s]; !ok || s == "" {
			add(fmt.Sprintf("sites[%d]", j), "unknown site %q", s)
		}
	}
	for j, s := range r.SSIDs {
		if s == "" {
			add(fmt.Sprintf("ssids[%d]", j), "must not be empty")
		}
	}

	// Actions.
	if !r.Segment.Valid() {
		add("segment", "unknown segment %q (want il3, general, guest, onboarding or reject)", r.Segment)
	}
	if r.SessionTimeout < 0 {
		add("session_timeout", "must not be negative, got %s", r.SessionTimeout)
	} else if r.SessionTimeout > 0 && r.SessionTimeout < time.Second {
		add("session_timeout", "must be at least 1s when set (RADIUS counts seconds), got %s", r.SessionTimeout)
	} else if r.SessionTimeout > MaxSessionTimeout {
		add("session_timeout", "must be at most %s, got %s", MaxSessionTimeout, r.SessionTimeout)
	}
	if r.Segment == SegmentReject {
		if r.SessionTimeout != 0 {
			add("session_timeout", "a reject rule has no session timeout")
		}
		if r.RejectReason != "" && (!r.RejectReason.Valid() || r.RejectReason == ReasonRuleMatched) {
			add("reject_reason", "unknown reason %q", r.RejectReason)
		}
	} else if r.RejectReason != "" {
		add("reject_reason", "only a reject rule has a reject reason (segment is %q)", r.Segment)
	}

	if r.Segment != SegmentIL3 {
		if r.Fallback != "" {
			add("fallback", "only an il3 rule has a fallback (segment is %q)", r.Segment)
		}
		return
	}
	// Invariant 1 (and the clearance part of 2): an il3 rule must not be able
	// to match a device that is not council-managed and cleared.
	if len(r.Ownership) != 1 || r.Ownership[0] != OwnershipCouncilManaged {
		add("ownership", "an il3 rule must require ownership exactly [council-managed], got %v: a personal device must never reach il3", r.Ownership)
	}
	if r.ClearanceIL3 == nil || !*r.ClearanceIL3 {
		add("clearance_il3", "an il3 rule must require clearance_il3: true")
	}
	switch r.Fallback {
	case "", SegmentReject, SegmentGeneral:
	default:
		add("fallback", "%q is not allowed (want general or reject; default reject)", r.Fallback)
	}
}

func isBuiltinRule(name string) bool {
	for _, b := range BuiltinRules() {
		if name == b {
			return true
		}
	}
	return false
}
