package policy_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/herts-council/nacd/policy"
)

func TestValidateRealisticPolicy(t *testing.T) {
	if err := councilPolicy().Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
}

// TestValidateRefuses: each bad policy is refused with a message naming the
// field (and the rule by index and name).
func TestValidateRefuses(t *testing.T) {
	cm := []policy.Ownership{policy.OwnershipCouncilManaged}
	il3Rule := func(f func(r *policy.Rule)) func(p *policy.Policy) {
		return func(p *policy.Policy) {
			r := policy.Rule{Name: "il3-x", Ownership: cm, ClearanceIL3: ptr(true), Segment: policy.SegmentIL3, Fallback: policy.SegmentGeneral}
			f(&r)
			p.Rules = append([]policy.Rule{r}, p.Rules...)
		}
	}
	rule0 := func(f func(r *policy.Rule)) func(p *policy.Policy) {
		return func(p *policy.Policy) { f(&p.Rules[0]) }
	}
	site := func(name string, f func(s *policy.Site)) func(p *policy.Policy) {
		return func(p *policy.Policy) {
			s := p.Sites[name]
			v := map[policy.Segment]int{}
			for k, x := range s.VLANs {
				v[k] = x
			}
			s.VLANs = v
			f(&s)
			p.Sites[name] = s
		}
	}
	tests := []struct {
		name   string
		change func(p *policy.Policy)
		want   []string // substrings of the error, each must appear
	}{
		// The invariants.
		{"il3 rule without ownership condition could match a personal device",
			il3Rule(func(r *policy.Rule) { r.Ownership = nil }), []string{`rules[0] "il3-x": ownership:`, "personal"}},
		{"il3 rule for personal devices",
			il3Rule(func(r *policy.Rule) { r.Ownership = []policy.Ownership{policy.OwnershipPersonal} }), []string{`rules[0] "il3-x": ownership:`}},
		{"il3 rule for either ownership",
			il3Rule(func(r *policy.Rule) {
				r.Ownership = []policy.Ownership{policy.OwnershipCouncilManaged, policy.OwnershipPersonal}
			}), []string{`rules[0] "il3-x": ownership:`}},
		{"il3 rule without clearance condition",
			il3Rule(func(r *policy.Rule) { r.ClearanceIL3 = nil }), []string{`rules[0] "il3-x": clearance_il3:`}},
		{"il3 rule for uncleared devices",
			il3Rule(func(r *policy.Rule) { r.ClearanceIL3 = ptr(false) }), []string{`rules[0] "il3-x": clearance_il3:`}},
		{"il3 fallback to il3", il3Rule(func(r *policy.Rule) { r.Fallback = policy.SegmentIL3 }), []string{`rules[0] "il3-x": fallback:`}},
		{"il3 fallback to guest", il3Rule(func(r *policy.Rule) { r.Fallback = policy.SegmentGuest }), []string{`rules[0] "il3-x": fallback:`}},
		{"il3 fallback unknown", il3Rule(func(r *policy.Rule) { r.Fallback = "genral" }), []string{`rules[0] "il3-x": fallback:`}},
		{"il3 rule without maximum revocation age",
			func(p *policy.Policy) { p.MaxRevocationAge = 0 }, []string{"max_revocation_age:", "il3"}},
		{"negative maximum revocation age",
			func(p *policy.Policy) { p.MaxRevocationAge = -time.Minute }, []string{"max_revocation_age:", "negative"}},

		// Rule names.
		{"empty rule name", rule0(func(r *policy.Rule) { r.Name = "" }), []string{`rules[0] "": name:`}},
		{"blank rule name", rule0(func(r *policy.Rule) { r.Name = "  " }), []string{`rules[0] "  ": name:`}},
		{"duplicate rule name", func(p *policy.Policy) { p.Rules[3].Name = p.Rules[1].Name },
			[]string{`rules[3] "retired-ssid": name: duplicate of rules[1]`}},
		{"built-in rule name", rule0(func(r *policy.Rule) { r.Name = policy.RuleDefaultDeny }), []string{`rules[0] "default-deny": name:`, "built-in"}},

		// Conditions.
		{"unknown ownership", rule0(func(r *policy.Rule) { r.Ownership = []policy.Ownership{"byod"} }), []string{`rules[0] "guest-ssid": ownership[0]:`, `"byod"`}},
		{"unknown role", rule0(func(r *policy.Rule) { r.Roles = []policy.Role{policy.RoleStaff, "councillor"} }), []string{`rules[0] "guest-ssid": roles[1]:`, `"councillor"`}},
		{"unknown site", rule0(func(r *policy.Rule) { r.Sites = []string{wallfields, "stevenage"} }), []string{`rules[0] "guest-ssid": sites[1]:`, `"stevenage"`}},
		{"bad policy OID", rule0(func(r *policy.Rule) { r.PolicyOIDs = []string{"kiosk"} }), []string{`rules[0] "guest-ssid": policy_oids[0]:`}},
		{"e-mail domain with @", rule0(func(r *policy.Rule) { r.EmailDomains = []string{"@nhs.net"} }), []string{`rules[0] "guest-ssid": email_domains[0]:`}},
		{"empty e-mail domain", rule0(func(r *policy.Rule) { r.EmailDomains = []string{""} }), []string{`rules[0] "guest-ssid": email_domains[0]:`}},
		{"empty anchor", rule0(func(r *policy.Rule) { r.Anchors = []string{""} }), []string{`rules[0] "guest-ssid": anchors[0]:`}},
		{"empty SSID", rule0(func(r *policy.Rule) { r.SSIDs = []string{ssidGuest, ""} }), []string{`rules[0] "guest-ssid": ssids[1]:`}},

		// Actions.
		{"unknown segment", rule0(func(r *policy.Rule) { r.Segment = "internet" }), []string{`rules[0] "guest-ssid": segment:`, `"internet"`}},
		{"empty segment", rule0(func(r *policy.Rule) { r.Segment = "" }), []string{`rules[0] "guest-ssid": segment:`}},
		{"negative session timeout", rule0(func(r *policy.Rule) { r.SessionTimeout = -time.Hour }), []string{`rules[0] "guest-ssid": session_timeout:`, "negative"}},
		{"sub-second session timeout", rule0(func(r *policy.Rule) { r.SessionTimeout = time.Millisecond }), []string{`rules[0] "guest-ssid": session_timeout:`}},
		{"session timeout beyond RADIUS range", rule0(func(r *policy.Rule) { r.SessionTimeout = policy.MaxSessionTimeout + time.Second }), []string{`rules[0] "guest-ssid": session_timeout:`}},
		{"reject rule with session timeout", func(p *policy.Policy) { p.Rules[1].SessionTimeout = time.Hour },
			[]string{`rules[1] "retired-ssid": session_timeout:`, "reject"}},
		{"reject rule with unknown reason", func(p *policy.Policy) { p.Rules[1].RejectReason = "because" },
			[]string{`rules[1] "retired-ssid": reject_reason:`}},
		{"reject rule with rule-matched reason", func(p *policy.Policy) { p.Rules[1].RejectReason = policy.ReasonRuleMatched },
			[]string{`rules[1] "retired-ssid": reject_reason:`}},
		{"reject reason on an accepting rule", rule0(func(r *policy.Rule) { r.RejectReason = policy.ReasonRuleReject }),
			[]string{`rules[0] "guest-ssid": reject_reason:`}},
		{"fallback on a non-il3 rule", rule0(func(r *policy.Rule) { r.Fallback = policy.SegmentReject }),
			[]string{`rules[0] "guest-ssid": fallback:`}},

		// Sites.
		{"VLAN 0", site(wallfields, func(s *policy.Site) { s.VLANs[policy.SegmentGuest] = 0 }), []string{"sites.wallfields.vlans.guest:", "out of range"}},
		{"VLAN 4095", site(hertford, func(s *policy.Site) { s.VLANs[policy.SegmentGeneral] = 4095 }), []string{"sites.hertford-theatre.vlans.general:", "4095"}},
		{"negative VLAN", site(bishops, func(s *policy.Site) { s.VLANs[policy.SegmentIL3] = -1 }), []string{"sites.bishops-stortford.vlans.il3:"}},
		{"unknown segment at a site", site(wallfields, func(s *policy.Site) { s.VLANs["voice"] = 50 }), []string{"sites.wallfields.vlans.voice:", "unknown segment"}},
		{"VLAN for reject", site(wallfields, func(s *policy.Site) { s.VLANs[policy.SegmentReject] = 99 }), []string{"sites.wallfields.vlans.reject:"}},
		{"il3 sharing the general VLAN", site(wallfields, func(s *policy.Site) { s.VLANs[policy.SegmentIL3] = 20 }),
			[]string{"sites.wallfields.vlans.il3:", "also the general VLAN"}},
		{"name differs from key", site(hertford, func(s *policy.Site) { s.Name = "Hertford" }), []string{"sites.hertford-theatre.name:"}},
		{"empty site key", func(p *policy.Policy) { p.Sites[""] = policy.Site{} }, []string{"sites: a site has an empty name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := councilPolicy()
			tc.change(p)
			err := p.Validate()
			if err == nil {
				t.Fatal("Validate accepted the policy")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q\nwant it to contain %q", err, w)
				}
			}
			var fe *policy.FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Errorf("Validate error carries no *FieldError: %v", err)
			}
		})
	}
}

// TestValidateListsEveryProblem: nacd config check shows all problems at once.
func TestValidateListsEveryProblem(t *testing.T) {
	p := councilPolicy()
	p.Rules[0].Name = ""
	p.Rules[2].Segment = "internet"
	p.Rules[5].Ownership = nil
	p.Sites[wallfields].VLANs[policy.SegmentGuest] = 5000
	err := p.Validate()
	if err == nil {
		t.Fatal("Validate accepted the policy")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("Validate error is not a joined error: %T", err)
	}
	var fields []string
	for _, e := range joined.Unwrap() {
		var fe *policy.FieldError
		if errors.As(e, &fe) {
			fields = append(fields, fe.Field)
		}
	}
	want := []string{"sites.wallfields.vlans.guest", "rules[0].name", "rules[2].segment", "rules[5].ownership"}
	if strings.Join(fields, " ") != strings.Join(want, " ") {
		t.Errorf("fields = %v, want %v", fields, want)
	}
}

func TestValidateNil(t *testing.T) {
	var p *policy.Policy
	if p.Validate() == nil {
		t.Error("nil policy validated")
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name string
		p    *policy.Policy
	}{
		{"empty policy", &policy.Policy{}},
		{"no il3 rule needs no revocation age", &policy.Policy{Sites: sites(), Rules: []policy.Rule{{Name: "g", Segment: policy.SegmentGeneral}}}},
		{"site without VLANs", &policy.Policy{Sites: map[string]policy.Site{"closed": {}}}},
		{"site without a Name takes its key", &policy.Policy{Sites: map[string]policy.Site{"x": {VLANs: map[policy.Segment]int{policy.SegmentGuest: 1}}}}},
		{"il3 rule with reject fallback and role condition", &policy.Policy{Sites: sites(), MaxRevocationAge: time.Hour, Rules: []policy.Rule{
			{Name: "il3", Ownership: []policy.Ownership{policy.OwnershipCouncilManaged}, ClearanceIL3: ptr(true),
				Roles: []policy.Role{policy.RoleStaff}, Segment: policy.SegmentIL3, Fallback: policy.SegmentReject, SessionTimeout: 8 * time.Hour}}}},
		{"reject rule with a specific reason", &policy.Policy{Rules: []policy.Rule{{Name: "r", Segment: policy.SegmentReject, RejectReason: policy.ReasonUntrusted}}}},
		{"VLAN bounds 1 and 4094", &policy.Policy{Sites: map[string]policy.Site{"x": {VLANs: map[policy.Segment]int{policy.SegmentGuest: 1, policy.SegmentGeneral: 4094}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.p.Validate(); err != nil {
				t.Errorf("Validate = %v", err)
			}
		})
	}
}

func TestParse(t *testing.T) {
	t.Run("segments", func(t *testing.T) {
		for _, s := range policy.Segments() {
			got, err := policy.ParseSegment(" " + strings.ToUpper(s.String()) + " ")
			if err != nil || got != s {
				t.Errorf("ParseSegment(%q) = %q, %v", s, got, err)
			}
		}
		for _, bad := range []string{"", "internet", "il-3"} {
			if _, err := policy.ParseSegment(bad); err == nil {
				t.Errorf("ParseSegment(%q) accepted", bad)
			}
		}
	})
	t.Run("ownerships", func(t *testing.T) {
		for _, o := range []policy.Ownership{policy.OwnershipCouncilManaged, policy.OwnershipPersonal} {
			if got, err := policy.ParseOwnership(o.String()); err != nil || got != o {
				t.Errorf("ParseOwnership(%q) = %q, %v", o, got, err)
			}
		}
		for _, bad := range []string{"", "byod", "council"} {
			if _, err := policy.ParseOwnership(bad); err == nil {
				t.Errorf("ParseOwnership(%q) accepted", bad)
			}
		}
	})
	t.Run("roles", func(t *testing.T) {
		for _, r := range []policy.Role{policy.RoleStaff, policy.RoleMember, policy.RoleContractor, policy.RoleVisitor, policy.RoleUnknown} {
			if got, err := policy.ParseRole("\t" + r.String()); err != nil || got != r {
				t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
			}
		}
		for _, bad := range []string{"", "councillor"} {
			if _, err := policy.ParseRole(bad); err == nil {
				t.Errorf("ParseRole(%q) accepted", bad)
			}
		}
	})
	t.Run("reasons", func(t *testing.T) {
		seen := map[policy.Reason]bool{}
		for _, r := range policy.Reasons() {
			if seen[r] {
				t.Errorf("Reasons lists %q twice", r)
			}
			seen[r] = true
			if got, err := policy.ParseReason(r.String()); err != nil || got != r {
				t.Errorf("ParseReason(%q) = %q, %v", r, got, err)
			}
		}
		if len(seen) != 17 {
			t.Errorf("Reasons has %d codes, want 17", len(seen))
		}
		if _, err := policy.ParseReason("because"); err == nil {
			t.Error("ParseReason accepted an unknown reason")
		}
	})
	t.Run("certificate status strings", func(t *testing.T) {
		if policy.CertOK.String() != "ok" || policy.CertRevocationStale.String() != "crl-stale" {
			t.Error("CertStatus.String changed")
		}
	})
}
