package policy_test

import (
	"testing"
	"time"

	"github.com/herts-council/nacd/policy"
)

const year = 365 * 24 * time.Hour

func TestDecidePersonas(t *testing.T) {
	cm, personal := policy.OwnershipCouncilManaged, policy.OwnershipPersonal
	staff, member, contractor, visitor := policy.RoleStaff, policy.RoleMember, policy.RoleContractor, policy.RoleVisitor
	clearedLaptop := person(cm, staff, true)
	remaining := clearedLaptop.NotAfter.Sub(now) // session timeout when a rule sets none

	type want struct {
		seg     policy.Segment
		vlan    int
		rule    string
		reason  policy.Reason
		timeout time.Duration
	}
	rej := func(rule string, reason policy.Reason) want {
		return want{seg: policy.SegmentReject, rule: rule, reason: reason}
	}
	cs := policy.RuleCertificateStatus

	tests := []struct {
		name string
		id   policy.Identity
		site string
		ssid string
		want want
	}{
		// Staff on a council laptop with clearance.
		{"staff council laptop cleared at Wallfields gets il3", clearedLaptop, wallfields, ssidCorp,
			want{policy.SegmentIL3, 10, "il3-council-cleared", policy.ReasonRuleMatched, remaining}},
		{"staff council laptop cleared at Bishops Stortford gets il3", clearedLaptop, bishops, "",
			want{policy.SegmentIL3, 210, "il3-council-cleared", policy.ReasonRuleMatched, remaining}},
		{"staff council laptop cleared at Hertford Theatre falls back to general", clearedLaptop, hertford, ssidCorp,
			want{policy.SegmentGeneral, 120, "il3-council-cleared", policy.ReasonSegmentNotOffered, remaining}},
		{"staff council laptop without clearance gets general", person(cm, staff, false), wallfields, ssidCorp,
			want{policy.SegmentGeneral, 20, "staff-council", policy.ReasonRuleMatched, remaining}},
		{"staff on own phone gets guest", person(personal, staff, false), wallfields, ssidCorp,
			want{policy.SegmentGuest, 30, "staff-own-device", policy.ReasonRuleMatched, remaining}},
		{"staff on own phone asserting il3 clearance is never il3", person(personal, staff, true), wallfields, ssidCorp,
			want{policy.SegmentGuest, 30, "staff-own-device", policy.ReasonRuleMatched, remaining}},
		{"device asserting no ownership is personal", person("", staff, true), wallfields, ssidCorp,
			want{policy.SegmentGuest, 30, "staff-own-device", policy.ReasonRuleMatched, remaining}},
		{"unknown ownership value is personal", person("Council-Managed", staff, true), wallfields, ssidCorp,
			want{policy.SegmentGuest, 30, "staff-own-device", policy.ReasonRuleMatched, remaining}},
		{"member on own tablet gets general", person(personal, member, false), wallfields, ssidCorp,
			want{policy.SegmentGeneral, 20, "members-byod", policy.ReasonRuleMatched, remaining}},
		{"member on own tablet at Hertford Theatre gets general", person(personal, member, false), hertford, "",
			want{policy.SegmentGeneral, 120, "members-byod", policy.ReasonRuleMatched, remaining}},
		{"member with clearance on own tablet is not il3", person(personal, member, true), bishops, "",
			want{policy.SegmentGeneral, 220, "members-byod", policy.ReasonRuleMatched, remaining}},
		{"contractor gets general for 8h", person(personal, contractor, false), wallfields, ssidCorp,
			want{policy.SegmentGeneral, 20, "contractors", policy.ReasonRuleMatched, 8 * time.Hour}},
		{"visitor gets guest for 12h", person(personal, visitor, false), hertford, ssidCorp,
			want{policy.SegmentGuest, 130, "visitors", policy.ReasonRuleMatched, 12 * time.Hour}},
		{"no role goes to onboarding", person(personal, policy.RoleUnknown, false), wallfields, "",
			want{policy.SegmentOnboarding, 40, "onboarding", policy.ReasonRuleMatched, remaining}},
		{"unknown role value is matched as unknown", person(personal, "mayor", false), wallfields, "",
			want{policy.SegmentOnboarding, 40, "onboarding", policy.ReasonRuleMatched, remaining}},
		{"no role at a site without onboarding is rejected", person(personal, policy.RoleUnknown, false), bishops, "",
			rej("onboarding", policy.ReasonSegmentNotOffered)},

		// Certificate status: rejected before any rule.
		{"revoked", with(clearedLaptop, func(i *policy.Identity) { i.Status = policy.CertRevoked }), wallfields, "", rej(cs, policy.ReasonRevoked)},
		{"revoked per revocation data though status ok",
			with(clearedLaptop, func(i *policy.Identity) { i.Revocation.Revoked = true }), wallfields, "", rej(cs, policy.ReasonRevoked)},
		{"expired", with(clearedLaptop, func(i *policy.Identity) { i.Status = policy.CertExpired }), wallfields, "", rej(cs, policy.ReasonExpired)},
		{"expired per NotAfter though status ok",
			with(clearedLaptop, func(i *policy.Identity) { i.NotAfter = now.Add(-time.Second) }), wallfields, "", rej(cs, policy.ReasonExpired)},
		{"expiring within the second is expired",
			with(clearedLaptop, func(i *policy.Identity) { i.NotAfter = now.Add(999 * time.Millisecond) }), wallfields, "", rej(cs, policy.ReasonExpired)},
		{"zero NotAfter is expired",
			with(clearedLaptop, func(i *policy.Identity) { i.NotAfter = time.Time{} }), wallfields, "", rej(cs, policy.ReasonExpired)},
		{"not yet valid", with(clearedLaptop, func(i *policy.Identity) { i.Status = policy.CertNotYetValid }), wallfields, "", rej(cs, policy.ReasonNotYetValid)},
		{"not yet valid per NotBefore though status ok",
			with(clearedLaptop, func(i *policy.Identity) { i.NotBefore = now.Add(time.Minute) }), wallfields, "", rej(cs, policy.ReasonNotYetValid)},
		{"untrusted", with(clearedLaptop, func(i *policy.Identity) { i.Status = policy.CertUntrusted }), wallfields, "", rej(cs, policy.ReasonUntrusted)},
		{"wrong EKU", with(clearedLaptop, func(i *policy.Identity) { i.Status = policy.CertWrongEKU }), wallfields, "", rej(cs, policy.ReasonWrongEKU)},
		{"CRL stale for every segment", with(clearedLaptop, func(i *policy.Identity) { i.Status = policy.CertRevocationStale }), wallfields, "", rej(cs, policy.ReasonCRLStale)},
		{"invalid", with(clearedLaptop, func(i *policy.Identity) { i.Status = policy.CertInvalid }), wallfields, "", rej(cs, policy.ReasonInvalidCertificate)},
		{"empty status fails closed", with(clearedLaptop, func(i *policy.Identity) { i.Status = "" }), wallfields, "", rej(cs, policy.ReasonInvalidCertificate)},
		{"unknown status fails closed", with(clearedLaptop, func(i *policy.Identity) { i.Status = "OK" }), wallfields, "", rej(cs, policy.ReasonInvalidCertificate)},
		{"certificate status checked before the site", with(clearedLaptop, func(i *policy.Identity) { i.Status = policy.CertRevoked }), "nowhere", "", rej(cs, policy.ReasonRevoked)},

		// il3 conditions: fall back to general with the precise reason.
		{"CRL stale for il3 falls back to general",
			with(clearedLaptop, func(i *policy.Identity) { i.Revocation.Stale = true }), wallfields, "",
			want{policy.SegmentGeneral, 20, "il3-council-cleared", policy.ReasonIL3RevocationStale, remaining}},
		{"revocation data older than the maximum falls back to general",
			with(clearedLaptop, func(i *policy.Identity) { i.Revocation.Age = maxRevAge + time.Second }), wallfields, "",
			want{policy.SegmentGeneral, 20, "il3-council-cleared", policy.ReasonIL3RevocationStale, remaining}},
		{"revocation data exactly the maximum age is fresh",
			with(clearedLaptop, func(i *policy.Identity) { i.Revocation.Age = maxRevAge }), wallfields, "",
			want{policy.SegmentIL3, 10, "il3-council-cleared", policy.ReasonRuleMatched, remaining}},
		{"revocation data from the future is not trusted for il3",
			with(clearedLaptop, func(i *policy.Identity) { i.Revocation.Age = -time.Minute }), wallfields, "",
			want{policy.SegmentGeneral, 20, "il3-council-cleared", policy.ReasonIL3RevocationStale, remaining}},
		{"revocation unchecked falls back to general",
			with(clearedLaptop, func(i *policy.Identity) { i.Revocation = policy.Revocation{} }), wallfields, "",
			want{policy.SegmentGeneral, 20, "il3-council-cleared", policy.ReasonIL3RevocationUnknown, remaining}},
		{"anchor not il3 falls back to general",
			with(clearedLaptop, func(i *policy.Identity) { i.AnchorIL3 = false }), bishops, "",
			want{policy.SegmentGeneral, 220, "il3-council-cleared", policy.ReasonIL3AnchorNotIL3, remaining}},
		{"the first failed il3 condition is the reason",
			with(clearedLaptop, func(i *policy.Identity) { i.AnchorIL3 = false; i.Revocation = policy.Revocation{} }), wallfields, "",
			want{policy.SegmentGeneral, 20, "il3-council-cleared", policy.ReasonIL3AnchorNotIL3, remaining}},

		// Sites.
		{"unknown site", clearedLaptop, "stevenage", "", rej(policy.RuleUnknownSite, policy.ReasonUnknownSite)},
		{"empty site", clearedLaptop, "", "", rej(policy.RuleUnknownSite, policy.ReasonUnknownSite)},
		{"site names are case-sensitive", clearedLaptop, "Wallfields", "", rej(policy.RuleUnknownSite, policy.ReasonUnknownSite)},

		// Conditions.
		{"guest SSID gives guest even to cleared staff", clearedLaptop, wallfields, ssidGuest,
			want{policy.SegmentGuest, 30, "guest-ssid", policy.ReasonRuleMatched, remaining}},
		{"SSID match is exact", clearedLaptop, wallfields, "ehc-guest",
			want{policy.SegmentIL3, 10, "il3-council-cleared", policy.ReasonRuleMatched, remaining}},
		{"retired SSID is rejected by its rule", person(personal, member, false), hertford, ssidLegacy,
			rej("retired-ssid", policy.ReasonRuleReject)},
		{"set-up SSID gives onboarding", person(personal, member, false), hertford, ssidSetup,
			want{policy.SegmentOnboarding, 140, "onboarding-ssid", policy.ReasonRuleMatched, remaining}},
		{"set-up SSID at a site without onboarding is rejected", person(personal, member, false), bishops, ssidSetup,
			rej("onboarding-ssid", policy.ReasonSegmentNotOffered)},
		{"NHS e-mail domain contractor at Wallfields gets 4h",
			with(person(personal, contractor, false), func(i *policy.Identity) { i.Email = "a.nurse@nhs.net" }), wallfields, "",
			want{policy.SegmentGeneral, 20, "nhs-partners", policy.ReasonRuleMatched, 4 * time.Hour}},
		{"e-mail domain is case-insensitive",
			with(person(personal, contractor, false), func(i *policy.Identity) { i.Email = "A.Nurse@NHS.NET" }), wallfields, "",
			want{policy.SegmentGeneral, 20, "nhs-partners", policy.ReasonRuleMatched, 4 * time.Hour}},
		{"e-mail subdomain does not match",
			with(person(personal, contractor, false), func(i *policy.Identity) { i.Email = "a.nurse@evil.nhs.net" }), wallfields, "",
			want{policy.SegmentGeneral, 20, "contractors", policy.ReasonRuleMatched, 8 * time.Hour}},
		{"e-mail domain suffix without @ does not match",
			with(person(personal, contractor, false), func(i *policy.Identity) { i.Email = "nhs.net" }), wallfields, "",
			want{policy.SegmentGeneral, 20, "contractors", policy.ReasonRuleMatched, 8 * time.Hour}},
		{"NHS contractor elsewhere falls to the contractors rule (site condition)",
			with(person(personal, contractor, false), func(i *policy.Identity) { i.Email = "a.nurse@nhs.net" }), hertford, "",
			want{policy.SegmentGeneral, 120, "contractors", policy.ReasonRuleMatched, 8 * time.Hour}},
		{"legacy AD CS anchor gives guest even to cleared staff",
			with(clearedLaptop, func(i *policy.Identity) { i.Anchor = anchorADCS }), wallfields, "",
			want{policy.SegmentGuest, 30, "legacy-adcs", policy.ReasonRuleMatched, remaining}},
		{"kiosk policy OID gives guest for an hour",
			with(person(cm, staff, false), func(i *policy.Identity) { i.PolicyOIDs = []string{policy.OIDRoleStaff, oidKiosk} }), hertford, "",
			want{policy.SegmentGuest, 130, "kiosk", policy.ReasonRuleMatched, time.Hour}},

		// Session timeout never outlives the certificate.
		{"contractor timeout capped at NotAfter",
			with(person(personal, contractor, false), func(i *policy.Identity) { i.NotAfter = now.Add(90 * time.Minute) }), wallfields, "",
			want{policy.SegmentGeneral, 20, "contractors", policy.ReasonRuleMatched, 90 * time.Minute}},
		{"timeout capped at NotAfter in whole seconds",
			with(person(personal, contractor, false), func(i *policy.Identity) { i.NotAfter = now.Add(90*time.Second + 700*time.Millisecond) }), wallfields, "",
			want{policy.SegmentGeneral, 20, "contractors", policy.ReasonRuleMatched, 90 * time.Second}},
		{"rule without timeout gets the certificate's remaining lifetime",
			with(person(personal, member, false), func(i *policy.Identity) { i.NotAfter = now.Add(3 * time.Hour) }), wallfields, "",
			want{policy.SegmentGeneral, 20, "members-byod", policy.ReasonRuleMatched, 3 * time.Hour}},
		{"remaining lifetime beyond RADIUS range is capped",
			with(person(personal, member, false), func(i *policy.Identity) { i.NotAfter = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC) }), wallfields, "",
			want{policy.SegmentGeneral, 20, "members-byod", policy.ReasonRuleMatched, policy.MaxSessionTimeout}},
	}
	p := councilPolicy()
	if err := p.Validate(); err != nil {
		t.Fatalf("the realistic policy does not validate: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.id, policy.Request{Site: tc.site, SSID: tc.ssid, Now: now})
			got := want{d.Segment, d.VLAN, d.Rule, d.Reason, d.SessionTimeout}
			if got != tc.want {
				t.Errorf("Decide = %+v\nwant     %+v", got, tc.want)
			}
			if d.Accepted() != (tc.want.seg != policy.SegmentReject) {
				t.Errorf("Accepted() = %v for %+v", d.Accepted(), d)
			}
		})
	}
}

func TestDecideIL3FallbackReject(t *testing.T) {
	cm := []policy.Ownership{policy.OwnershipCouncilManaged}
	p := &policy.Policy{
		Sites:            sites(),
		MaxRevocationAge: maxRevAge,
		Rules: []policy.Rule{
			{Name: "il3-only", Ownership: cm, ClearanceIL3: ptr(true), Segment: policy.SegmentIL3, Fallback: policy.SegmentReject},
			{Name: "il3-default-fallback", Ownership: cm, ClearanceIL3: ptr(true), Segment: policy.SegmentIL3},
		},
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	cleared := person(policy.OwnershipCouncilManaged, policy.RoleStaff, true)
	tests := []struct {
		name   string
		id     policy.Identity
		site   string
		rule   string
		reason policy.Reason
	}{
		{"stale CRL is rejected", with(cleared, func(i *policy.Identity) { i.Revocation.Stale = true }), wallfields, "il3-only", policy.ReasonIL3RevocationStale},
		{"site without il3 is rejected", cleared, hertford, "il3-only", policy.ReasonSegmentNotOffered},
		{"anchor not il3 is rejected", with(cleared, func(i *policy.Identity) { i.AnchorIL3 = false }), bishops, "il3-only", policy.ReasonIL3AnchorNotIL3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.id, policy.Request{Site: tc.site, Now: now})
			if d.Segment != policy.SegmentReject || d.VLAN != 0 || d.Rule != tc.rule || d.Reason != tc.reason || d.SessionTimeout != 0 {
				t.Errorf("Decide = %+v, want reject by %q with %q", d, tc.rule, tc.reason)
			}
		})
	}
	t.Run("empty fallback means reject", func(t *testing.T) {
		q := &policy.Policy{Sites: sites(), MaxRevocationAge: maxRevAge, Rules: p.Rules[1:]}
		d := q.Decide(cleared, policy.Request{Site: hertford, Now: now})
		if d.Segment != policy.SegmentReject || d.Rule != "il3-default-fallback" || d.Reason != policy.ReasonSegmentNotOffered {
			t.Errorf("Decide = %+v", d)
		}
	})
}

func TestDecideIL3FallbackNotOffered(t *testing.T) {
	// A site offering neither il3 nor general: the general fallback is not
	// possible either, so the device is rejected with the il3 reason.
	p := &policy.Policy{
		Sites: map[string]policy.Site{"depot": {Name: "depot", VLANs: map[policy.Segment]int{policy.SegmentGuest: 5}}},
		Rules: []policy.Rule{{Name: "il3", Ownership: []policy.Ownership{policy.OwnershipCouncilManaged},
			ClearanceIL3: ptr(true), Segment: policy.SegmentIL3, Fallback: policy.SegmentGeneral}},
		MaxRevocationAge: maxRevAge,
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		id     policy.Identity
		reason policy.Reason
	}{
		{"cleared device", person(policy.OwnershipCouncilManaged, policy.RoleStaff, true), policy.ReasonSegmentNotOffered},
		{"revocation unknown", with(person(policy.OwnershipCouncilManaged, policy.RoleStaff, true),
			func(i *policy.Identity) { i.Revocation.Checked = false }), policy.ReasonIL3RevocationUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.id, policy.Request{Site: "depot", Now: now})
			if d.Segment != policy.SegmentReject || d.VLAN != 0 || d.Reason != tc.reason || d.Rule != "il3" {
				t.Errorf("Decide = %+v, want reject by il3 with %q", d, tc.reason)
			}
		})
	}
}

func TestDecideDefaultDeny(t *testing.T) {
	p := &policy.Policy{Sites: sites(), Rules: []policy.Rule{
		{Name: "members", Roles: []policy.Role{policy.RoleMember}, Segment: policy.SegmentGeneral},
	}}
	tests := []struct {
		name string
		p    *policy.Policy
	}{
		{"no rule matches", p},
		{"no rules at all", &policy.Policy{Sites: sites()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.p.Decide(person(policy.OwnershipCouncilManaged, policy.RoleStaff, true), policy.Request{Site: wallfields, Now: now})
			want := policy.Decision{Segment: policy.SegmentReject, Rule: policy.RuleDefaultDeny, Reason: policy.ReasonNoRuleMatched}
			if d != want {
				t.Errorf("Decide = %+v, want %+v", d, want)
			}
		})
	}
	t.Run("nil policy", func(t *testing.T) {
		var p *policy.Policy
		if d := p.Decide(person(policy.OwnershipCouncilManaged, policy.RoleStaff, true), policy.Request{Site: wallfields, Now: now}); d.Accepted() {
			t.Errorf("nil policy accepted: %+v", d)
		}
	})
}

// TestDecideUnvalidatedPolicy: Decide enforces the invariants even for a
// policy Validate would refuse, so they cannot be configured around.
func TestDecideUnvalidatedPolicy(t *testing.T) {
	tests := []struct {
		name   string
		rule   policy.Rule
		maxAge time.Duration
		id     policy.Identity
		want   policy.Reason
		seg    policy.Segment
	}{
		{"il3 rule with no conditions, personal device",
			policy.Rule{Name: "all-il3", Segment: policy.SegmentIL3, Fallback: policy.SegmentGeneral}, maxRevAge,
			person(policy.OwnershipPersonal, policy.RoleStaff, true), policy.ReasonIL3NotCouncilManaged, policy.SegmentGeneral},
		{"il3 rule matching personal devices explicitly",
			policy.Rule{Name: "personal-il3", Ownership: []policy.Ownership{policy.OwnershipPersonal}, Segment: policy.SegmentIL3}, maxRevAge,
			person(policy.OwnershipPersonal, policy.RoleStaff, true), policy.ReasonIL3NotCouncilManaged, policy.SegmentReject},
		{"il3 rule without clearance condition",
			policy.Rule{Name: "cm-il3", Ownership: []policy.Ownership{policy.OwnershipCouncilManaged}, Segment: policy.SegmentIL3, Fallback: policy.SegmentGeneral}, maxRevAge,
			person(policy.OwnershipCouncilManaged, policy.RoleStaff, false), policy.ReasonIL3NoClearance, policy.SegmentGeneral},
		{"no maximum revocation age",
			policy.Rule{Name: "il3", Segment: policy.SegmentIL3, Fallback: policy.SegmentGeneral}, 0,
			person(policy.OwnershipCouncilManaged, policy.RoleStaff, true), policy.ReasonIL3RevocationStale, policy.SegmentGeneral},
		{"il3 as fallback is not honoured",
			policy.Rule{Name: "il3", Segment: policy.SegmentIL3, Fallback: policy.SegmentIL3}, maxRevAge,
			person(policy.OwnershipPersonal, policy.RoleStaff, true), policy.ReasonIL3NotCouncilManaged, policy.SegmentReject},
		{"guest as fallback is not honoured",
			policy.Rule{Name: "il3", Segment: policy.SegmentIL3, Fallback: policy.SegmentGuest}, maxRevAge,
			person(policy.OwnershipPersonal, policy.RoleStaff, true), policy.ReasonIL3NotCouncilManaged, policy.SegmentReject},
		{"unknown segment rejects",
			policy.Rule{Name: "typo", Segment: "genral"}, maxRevAge,
			person(policy.OwnershipCouncilManaged, policy.RoleStaff, true), policy.ReasonRuleReject, policy.SegmentReject},
		{"empty segment rejects",
			policy.Rule{Name: "empty"}, maxRevAge,
			person(policy.OwnershipCouncilManaged, policy.RoleStaff, true), policy.ReasonRuleReject, policy.SegmentReject},
		{"reject rule with rule-matched reason still says reject",
			policy.Rule{Name: "odd", Segment: policy.SegmentReject, RejectReason: policy.ReasonRuleMatched}, maxRevAge,
			person(policy.OwnershipCouncilManaged, policy.RoleStaff, true), policy.ReasonRuleReject, policy.SegmentReject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &policy.Policy{Sites: sites(), Rules: []policy.Rule{tc.rule}, MaxRevocationAge: tc.maxAge}
			if p.Validate() == nil {
				t.Fatalf("Validate accepted a policy this test expects it to refuse")
			}
			d := p.Decide(tc.id, policy.Request{Site: wallfields, Now: now})
			if d.Segment != tc.seg || d.Reason != tc.want {
				t.Errorf("Decide = %+v, want %s with %q", d, tc.seg, tc.want)
			}
		})
	}
}

func TestDecideInvalidVLANNotOffered(t *testing.T) {
	// An unvalidated site with out-of-range VLANs offers nothing.
	p := &policy.Policy{
		Sites: map[string]policy.Site{"bad": {VLANs: map[policy.Segment]int{policy.SegmentGeneral: 0, policy.SegmentGuest: 4095}}},
		Rules: []policy.Rule{
			{Name: "general", Roles: []policy.Role{policy.RoleStaff}, Segment: policy.SegmentGeneral},
			{Name: "guest", Segment: policy.SegmentGuest},
		},
	}
	for _, role := range []policy.Role{policy.RoleStaff, policy.RoleVisitor} {
		d := p.Decide(person(policy.OwnershipPersonal, role, false), policy.Request{Site: "bad", Now: now})
		if d.Segment != policy.SegmentReject || d.Reason != policy.ReasonSegmentNotOffered || d.VLAN != 0 {
			t.Errorf("%s: Decide = %+v, want reject segment-not-offered", role, d)
		}
	}
}

// TestGuardIL3 proves the final re-check on its own: it is handed il3
// decisions that Decide would never build and must refuse each.
func TestGuardIL3(t *testing.T) {
	s := sites()
	wall := s[wallfields]
	good := person(policy.OwnershipCouncilManaged, policy.RoleStaff, true)
	il3 := policy.Decision{Segment: policy.SegmentIL3, VLAN: vlanWallIL3, SessionTimeout: time.Hour, Rule: "forged", Reason: policy.ReasonRuleMatched}
	tests := []struct {
		name   string
		d      policy.Decision
		id     policy.Identity
		site   *policy.Site
		maxAge time.Duration
		want   policy.Reason
	}{
		{"personal", il3, with(good, func(i *policy.Identity) { i.Ownership = policy.OwnershipPersonal }), &wall, maxRevAge, policy.ReasonIL3NotCouncilManaged},
		{"no ownership", il3, with(good, func(i *policy.Identity) { i.Ownership = "" }), &wall, maxRevAge, policy.ReasonIL3NotCouncilManaged},
		{"no clearance", il3, with(good, func(i *policy.Identity) { i.ClearanceIL3 = false }), &wall, maxRevAge, policy.ReasonIL3NoClearance},
		{"anchor not il3", il3, with(good, func(i *policy.Identity) { i.AnchorIL3 = false }), &wall, maxRevAge, policy.ReasonIL3AnchorNotIL3},
		{"revocation unchecked", il3, with(good, func(i *policy.Identity) { i.Revocation.Checked = false }), &wall, maxRevAge, policy.ReasonIL3RevocationUnknown},
		{"revocation stale", il3, with(good, func(i *policy.Identity) { i.Revocation.Stale = true }), &wall, maxRevAge, policy.ReasonIL3RevocationStale},
		{"revocation too old", il3, with(good, func(i *policy.Identity) { i.Revocation.Age = 2 * maxRevAge }), &wall, maxRevAge, policy.ReasonIL3RevocationStale},
		{"revocation age negative", il3, with(good, func(i *policy.Identity) { i.Revocation.Age = -1 }), &wall, maxRevAge, policy.ReasonIL3RevocationStale},
		{"no maximum age", il3, good, &wall, 0, policy.ReasonIL3RevocationStale},
		{"revoked", il3, with(good, func(i *policy.Identity) { i.Revocation.Revoked = true }), &wall, maxRevAge, policy.ReasonRevoked},
		{"status not ok", il3, with(good, func(i *policy.Identity) { i.Status = policy.CertUntrusted }), &wall, maxRevAge, policy.ReasonInvalidCertificate},
		{"site without il3", il3, good, ptr(s[hertford]), maxRevAge, policy.ReasonSegmentNotOffered},
		{"no site", il3, good, nil, maxRevAge, policy.ReasonSegmentNotOffered},
		{"VLAN not the site's il3 VLAN", with2(il3, 20), good, &wall, maxRevAge, policy.ReasonSegmentNotOffered},
		{"VLAN 0", with2(il3, 0), good, &wall, maxRevAge, policy.ReasonSegmentNotOffered},
		{"VLAN 0 at a site whose il3 VLAN is 0", with2(il3, 0), good,
			&policy.Site{VLANs: map[policy.Segment]int{policy.SegmentIL3: 0}}, maxRevAge, policy.ReasonSegmentNotOffered},
		{"VLAN 4095 at a site whose il3 VLAN is 4095", with2(il3, 4095), good,
			&policy.Site{VLANs: map[policy.Segment]int{policy.SegmentIL3: 4095}}, maxRevAge, policy.ReasonSegmentNotOffered},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := policy.GuardIL3(tc.d, tc.id, tc.site, tc.maxAge)
			want := policy.Decision{Segment: policy.SegmentReject, Rule: policy.RuleIL3Guard, Reason: tc.want}
			if got != want {
				t.Errorf("GuardIL3 = %+v, want %+v", got, want)
			}
		})
	}
	t.Run("a sound il3 decision passes", func(t *testing.T) {
		if got := policy.GuardIL3(il3, good, &wall, maxRevAge); got != il3 {
			t.Errorf("GuardIL3 = %+v, want it unchanged", got)
		}
	})
	t.Run("a reject loses any VLAN and timeout", func(t *testing.T) {
		d := policy.Decision{Segment: policy.SegmentReject, VLAN: 20, SessionTimeout: time.Hour, Rule: "r", Reason: policy.ReasonRuleReject}
		got := policy.GuardIL3(d, good, &wall, maxRevAge)
		if got.VLAN != 0 || got.SessionTimeout != 0 || got.Rule != "r" || got.Reason != policy.ReasonRuleReject {
			t.Errorf("GuardIL3 = %+v", got)
		}
	})
}

func with2(d policy.Decision, vlan int) policy.Decision { d.VLAN = vlan; return d }

func TestDecideConcurrent(t *testing.T) {
	// Run with -race: Decide only reads the policy.
	p := councilPolicy()
	id := person(policy.OwnershipCouncilManaged, policy.RoleStaff, true)
	done := make(chan policy.Decision, 8)
	for range 8 {
		go func() {
			var d policy.Decision
			for range 1000 {
				d = p.Decide(id, policy.Request{Site: wallfields, Now: now})
			}
			done <- d
		}()
	}
	for range 8 {
		if d := <-done; d.Segment != policy.SegmentIL3 {
			t.Errorf("Decide = %+v, want il3", d)
		}
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	p := councilPolicy()
	id := with(person(policy.OwnershipPersonal, policy.RoleContractor, false), func(i *policy.Identity) { i.Email = "x@nhs.net" })
	req := policy.Request{Site: wallfields, SSID: ssidCorp, Now: now}
	if n := testing.AllocsPerRun(100, func() { _ = p.Decide(id, req) }); n != 0 {
		t.Errorf("Decide allocates %v times per call, want 0", n)
	}
}

func TestDecideEmptySiteNeverConfigured(t *testing.T) {
	// Validate refuses a site named "", but Decide does not rely on that: a
	// request without a site is always unknown-site.
	p := &policy.Policy{
		Sites: map[string]policy.Site{"": {VLANs: map[policy.Segment]int{policy.SegmentGuest: 30}}},
		Rules: []policy.Rule{{Name: "guest", Segment: policy.SegmentGuest}},
	}
	d := p.Decide(person(policy.OwnershipPersonal, policy.RoleVisitor, false), policy.Request{Now: now})
	if d.Segment != policy.SegmentReject || d.Reason != policy.ReasonUnknownSite || d.Rule != policy.RuleUnknownSite {
		t.Errorf("Decide = %+v, want reject unknown-site", d)
	}
}
