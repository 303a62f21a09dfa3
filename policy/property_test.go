package policy_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/herts-council/nacd/policy"
)

// The property: whatever the identity, request and policy,
//   - no decision is il3 unless every condition of invariant 2 holds (and so
//     no device that is not council-managed is ever on il3: invariant 1);
//   - no certificate that is revoked, expired, not yet valid or not OK is
//     ever accepted (invariant 3);
//   - every reject has VLAN 0 and no session timeout;
//   - every accept has the site's VLAN for its segment, in 1..4094, and a
//     session timeout of at least a second that ends no later than the
//     certificate's NotAfter;
//   - every reason is one of Reasons().
// It is checked for random valid policies (which Validate must accept) and
// for random policies that Validate may refuse: the invariants do not depend
// on Validate.

const propertySeed = 0x6e616364 // "nacd"

var (
	propOwnerships = []policy.Ownership{policy.OwnershipCouncilManaged, policy.OwnershipPersonal, "", "Council-Managed"}
	propRoles      = []policy.Role{policy.RoleStaff, policy.RoleMember, policy.RoleContractor, policy.RoleVisitor, policy.RoleUnknown, "", "mayor"}
	propStatuses   = []policy.CertStatus{policy.CertExpired, policy.CertNotYetValid, policy.CertUntrusted, policy.CertWrongEKU,
		policy.CertRevoked, policy.CertRevocationStale, policy.CertInvalid, "", "OK"}
	propAnchors  = []string{"", anchorNacd, anchorADCS, "partner-ca"}
	propEmails   = []string{"", "a@eastherts.gov.uk", "b@nhs.net", "c@NHS.net", "nobody", "@", "d@"}
	propOIDs     = []string{policy.OIDRoleStaff, oidKiosk, "1.2.3.4", policy.OIDClearanceIL3}
	propSites    = []string{wallfields, hertford, bishops, "depot", "", "stevenage"}
	propSSIDs    = []string{"", ssidGuest, ssidLegacy, ssidSetup, ssidCorp}
	propSegments = []policy.Segment{policy.SegmentIL3, policy.SegmentGeneral, policy.SegmentGuest, policy.SegmentOnboarding, policy.SegmentReject}
)

func pick[T any](r *rand.Rand, list []T) T { return list[r.IntN(len(list))] }

func subset[T any](r *rand.Rand, list []T, p float64) []T {
	if r.Float64() >= p {
		return nil
	}
	var out []T
	for _, v := range list {
		if r.IntN(3) == 0 {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		out = append(out, pick(r, list))
	}
	return out
}

func randomIdentity(r *rand.Rand) policy.Identity {
	id := policy.Identity{
		Email:        pick(r, propEmails),
		Ownership:    pick(r, propOwnerships),
		Role:         pick(r, propRoles),
		ClearanceIL3: r.IntN(2) == 0,
		PolicyOIDs:   subset(r, propOIDs, 0.5),
		NotBefore:    now.Add(time.Duration(r.Int64N(int64(2*year))) - 2*year + time.Duration(r.Int64N(int64(2*time.Hour)))),
		NotAfter:     now.Add(time.Duration(r.Int64N(int64(2*year))) - time.Hour),
		Anchor:       pick(r, propAnchors),
		AnchorIL3:    r.IntN(4) != 0,
		Status:       policy.CertOK,
		Revocation: policy.Revocation{
			Checked: r.IntN(5) != 0,
			Revoked: r.IntN(20) == 0,
			Stale:   r.IntN(5) == 0,
			Age:     time.Duration(r.Int64N(int64(3*time.Hour))) - 10*time.Minute,
		},
	}
	if r.IntN(2) == 0 {
		// Near the il3 boundary: every il3 condition holds but (usually)
		// one, chosen at random.
		id.Ownership, id.ClearanceIL3, id.AnchorIL3 = policy.OwnershipCouncilManaged, true, true
		id.Revocation = policy.Revocation{Checked: true, Age: time.Duration(r.Int64N(int64(2 * time.Hour)))}
		id.Status = policy.CertOK
		if r.IntN(2) == 0 {
			id.Role, id.Anchor, id.PolicyOIDs = policy.RoleStaff, anchorNacd, nil
		}
		id.NotBefore, id.NotAfter = now.Add(-time.Hour), now.Add(time.Duration(1+r.Int64N(int64(year))))
		switch r.IntN(12) { // 7 cases: 5 in 12 keep every condition
		case 0:
			id.Ownership = pick(r, propOwnerships[1:])
		case 1:
			id.ClearanceIL3 = false
		case 2:
			id.AnchorIL3 = false
		case 3:
			id.Revocation.Checked = false
		case 4:
			id.Revocation.Stale = true
		case 5:
			id.Revocation.Revoked = true
		case 6:
			id.Revocation.Age = -time.Duration(1 + r.Int64N(int64(time.Minute)))
		}
	}
	if r.IntN(4) == 0 {
		id.Status = pick(r, propStatuses)
	}
	if r.IntN(20) == 0 {
		id.NotAfter = now.Add(time.Duration(r.Int64N(int64(3 * time.Second))))
	}
	return id
}

func randomRequest(r *rand.Rand) policy.Request {
	return policy.Request{Site: pick(r, propSites), SSID: pick(r, propSSIDs), Now: now}
}

func randomSites(r *rand.Rand, valid bool) map[string]policy.Site {
	out := map[string]policy.Site{}
	for _, name := range []string{wallfields, hertford, bishops, "depot"} {
		if r.IntN(5) == 0 {
			continue
		}
		vlans := map[policy.Segment]int{}
		perm := r.Perm(4094)
		for i, seg := range propSegments[:4] {
			if r.IntN(4) == 0 {
				continue
			}
			vlans[seg] = perm[i] + 1 // distinct, 1..4094
			if !valid && r.IntN(6) == 0 {
				vlans[seg] = pick(r, []int{0, -1, 4095, vlans[policy.SegmentGeneral]})
			}
		}
		out[name] = policy.Site{Name: name, VLANs: vlans}
	}
	return out
}

func randomRule(r *rand.Rand, i int, sites map[string]policy.Site, valid bool) policy.Rule {
	var siteNames []string
	for name := range sites {
		siteNames = append(siteNames, name)
	}
	slices.Sort(siteNames)
	rule := policy.Rule{
		Name:         fmt.Sprintf("rule-%d", i),
		Ownership:    subset(r, propOwnerships[:2], 0.4),
		Roles:        subset(r, propRoles[:5], 0.5),
		Anchors:      subset(r, propAnchors[1:], 0.2),
		PolicyOIDs:   subset(r, propOIDs, 0.1),
		EmailDomains: subset(r, []string{"nhs.net", "eastherts.gov.uk"}, 0.2),
		SSIDs:        subset(r, propSSIDs[1:], 0.2),
		Segment:      pick(r, propSegments),
	}
	if len(siteNames) > 0 {
		rule.Sites = subset(r, siteNames, 0.2)
	}
	if r.IntN(3) == 0 {
		rule.ClearanceIL3 = ptr(r.IntN(2) == 0)
	}
	if rule.Segment != policy.SegmentReject && r.IntN(2) == 0 {
		rule.SessionTimeout = time.Duration(1+r.IntN(24*60)) * time.Minute
	}
	if rule.Segment == policy.SegmentReject && r.IntN(2) == 0 {
		rule.RejectReason = pick(r, []policy.Reason{policy.ReasonRuleReject, policy.ReasonUntrusted, policy.ReasonSegmentNotOffered})
	}
	if rule.Segment == policy.SegmentIL3 {
		rule.Fallback = pick(r, []policy.Segment{"", policy.SegmentGeneral, policy.SegmentReject})
		if valid {
			rule.Ownership = []policy.Ownership{policy.OwnershipCouncilManaged}
			rule.ClearanceIL3 = ptr(true)
		}
	}
	if !valid && r.IntN(5) == 0 {
		// Whatever Validate would refuse.
		rule.Fallback = pick(r, append(propSegments, "junk"))
		rule.Segment = pick(r, append(propSegments, "", "junk"))
		rule.Ownership = subset(r, propOwnerships, 0.5)
	}
	return rule
}

func randomPolicy(r *rand.Rand, valid bool) *policy.Policy {
	p := &policy.Policy{Sites: randomSites(r, valid), MaxRevocationAge: time.Duration(1+r.IntN(120)) * time.Minute}
	for i := range 1 + r.IntN(15) {
		p.Rules = append(p.Rules, randomRule(r, i, p.Sites, valid))
	}
	if !valid && r.IntN(5) == 0 {
		p.MaxRevocationAge = pick(r, []time.Duration{0, -time.Minute})
	}
	return p
}

// checkDecision returns what is wrong with d, or "".
func checkDecision(p *policy.Policy, id policy.Identity, req policy.Request, d policy.Decision) string {
	if !slices.Contains(policy.Reasons(), d.Reason) {
		return fmt.Sprintf("reason %q not in Reasons()", d.Reason)
	}
	if d.Rule == "" {
		return "no rule name"
	}
	if !d.Accepted() {
		if d.Segment != policy.SegmentReject || d.VLAN != 0 || d.SessionTimeout != 0 {
			return "reject with a VLAN, a timeout or an empty segment"
		}
		return ""
	}
	// Invariant 3.
	if id.Status != policy.CertOK || id.Revocation.Revoked || req.Now.Before(id.NotBefore) || !req.Now.Before(id.NotAfter) {
		return "accepted a certificate that is not OK, revoked, or outside its validity"
	}
	site, ok := p.Sites[req.Site]
	if !ok {
		return "accepted at an unknown site"
	}
	if v, ok := site.VLANs[d.Segment]; !ok || v != d.VLAN || v < 1 || v > 4094 {
		return fmt.Sprintf("VLAN %d is not the site's %s VLAN (%v)", d.VLAN, d.Segment, site.VLANs)
	}
	if d.SessionTimeout < time.Second || d.SessionTimeout > id.NotAfter.Sub(req.Now) || d.SessionTimeout > policy.MaxSessionTimeout {
		return fmt.Sprintf("session timeout %s outside [1s, %s]", d.SessionTimeout, id.NotAfter.Sub(req.Now))
	}
	if d.Segment == policy.SegmentIL3 {
		rev := id.Revocation
		if id.Ownership != policy.OwnershipCouncilManaged {
			return "invariant 1: il3 for a device not council-managed"
		}
		if !id.ClearanceIL3 || !id.AnchorIL3 || !rev.Checked || rev.Stale || rev.Age < 0 || p.MaxRevocationAge <= 0 || rev.Age > p.MaxRevocationAge {
			return "invariant 2: il3 without every condition"
		}
	}
	return ""
}

func TestDecideProperty(t *testing.T) {
	t.Logf("seed %#x", propertySeed)
	tests := []struct {
		name     string
		valid    bool
		policies int
		ids      int
	}{
		{"valid policies", true, 300, 100},
		{"unvalidated policies", false, 300, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(propertySeed, 1))
			var il3, accepted, total int
			for pi := range tc.policies {
				p := randomPolicy(r, tc.valid)
				if tc.valid {
					if err := p.Validate(); err != nil {
						t.Fatalf("policy %d: generated a valid policy that Validate refuses: %v", pi, err)
					}
				}
				for range tc.ids {
					id, req := randomIdentity(r), randomRequest(r)
					d := p.Decide(id, req)
					total++
					if d.Accepted() {
						accepted++
					}
					if d.Segment == policy.SegmentIL3 {
						il3++
					}
					if msg := checkDecision(p, id, req, d); msg != "" {
						t.Fatalf("policy %d: %s\nidentity %+v\nrequest %+v\ndecision %+v\nrules %+v", pi, msg, id, req, d, p.Rules)
					}
				}
			}
			t.Logf("%d decisions, %d accepted, %d il3", total, accepted, il3)
			// The generator must reach the interesting cases, or the
			// property proves nothing.
			if il3 == 0 || accepted == total || accepted == 0 {
				t.Errorf("generator too narrow: %d decisions, %d accepted, %d il3", total, accepted, il3)
			}
		})
	}
}

// TestDecidePropertyCouncilPolicy runs the property over the realistic
// policy, where il3 is reachable by design.
func TestDecidePropertyCouncilPolicy(t *testing.T) {
	t.Logf("seed %#x", propertySeed)
	r := rand.New(rand.NewPCG(propertySeed, 2))
	p := councilPolicy()
	il3 := 0
	for range 20000 {
		id, req := randomIdentity(r), randomRequest(r)
		d := p.Decide(id, req)
		if d.Segment == policy.SegmentIL3 {
			il3++
		}
		if msg := checkDecision(p, id, req, d); msg != "" {
			t.Fatalf("%s\nidentity %+v\nrequest %+v\ndecision %+v", msg, id, req, d)
		}
	}
	t.Logf("20000 decisions, %d il3", il3)
	if il3 == 0 {
		t.Error("no identity reached il3: the generator is too narrow")
	}
}

// FuzzDecide checks the same property with fuzzed identities against the
// realistic policy and a random (possibly invalid) policy derived from seed.
func FuzzDecide(f *testing.F) {
	f.Add(uint64(1), string(policy.OwnershipCouncilManaged), string(policy.RoleStaff), true, true, true, false, false,
		int64(60), string(policy.CertOK), wallfields, "", "a@eastherts.gov.uk", int64(-3600), int64(86400))
	f.Add(uint64(2), string(policy.OwnershipPersonal), string(policy.RoleStaff), true, true, true, false, false,
		int64(60), string(policy.CertOK), wallfields, ssidCorp, "a@eastherts.gov.uk", int64(-3600), int64(86400))
	f.Add(uint64(3), "", "", false, false, false, true, true,
		int64(-5), "", "", ssidGuest, "", int64(10), int64(-10))
	f.Fuzz(func(t *testing.T, seed uint64, own, role string, clearance, anchorIL3, checked, stale, revoked bool,
		ageSeconds int64, status, site, ssid, email string, notBeforeSeconds, notAfterSeconds int64) {
		id := policy.Identity{
			Email:        email,
			Ownership:    policy.Ownership(own),
			Role:         policy.Role(role),
			ClearanceIL3: clearance,
			NotBefore:    now.Add(time.Duration(notBeforeSeconds) * time.Second),
			NotAfter:     now.Add(time.Duration(notAfterSeconds) * time.Second),
			Anchor:       anchorNacd,
			AnchorIL3:    anchorIL3,
			Status:       policy.CertStatus(status),
			Revocation:   policy.Revocation{Checked: checked, Stale: stale, Revoked: revoked, Age: time.Duration(ageSeconds) * time.Second},
		}
		req := policy.Request{Site: site, SSID: ssid, Now: now}
		for _, p := range []*policy.Policy{councilPolicy(), randomPolicy(rand.New(rand.NewPCG(seed, 0)), seed%2 == 0)} {
			d := p.Decide(id, req)
			if msg := checkDecision(p, id, req, d); msg != "" {
				t.Fatalf("%s\nidentity %+v\nrequest %+v\ndecision %+v", msg, id, req, d)
			}
		}
	})
}
