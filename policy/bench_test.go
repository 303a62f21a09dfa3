package policy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

var sinkDecision policy.Decision

// BenchmarkDecide: the realistic 13-rule policy for typical personas, and a
// 100-rule worst case where 99 rules almost match (each fails on its last
// condition) before the last one decides.
func BenchmarkDecide(b *testing.B) {
	realistic := councilPolicy()
	if err := realistic.Validate(); err != nil {
		b.Fatal(err)
	}
	worst := worstCasePolicy(100)
	if err := worst.Validate(); err != nil {
		b.Fatal(err)
	}
	contractor := with(person(policy.OwnershipPersonal, policy.RoleContractor, false), func(i *policy.Identity) { i.Email = "x@nhs.net" })
	tests := []struct {
		name string
		p    *policy.Policy
		id   policy.Identity
		req  policy.Request
	}{
		{"realistic/staff-il3", realistic, person(policy.OwnershipCouncilManaged, policy.RoleStaff, true), policy.Request{Site: wallfields, SSID: ssidCorp, Now: now}},
		{"realistic/staff-il3-fallback", realistic, person(policy.OwnershipCouncilManaged, policy.RoleStaff, true), policy.Request{Site: hertford, SSID: ssidCorp, Now: now}},
		{"realistic/nhs-contractor", realistic, contractor, policy.Request{Site: hertford, SSID: ssidCorp, Now: now}},
		{"realistic/no-role-last-rule", realistic, person(policy.OwnershipPersonal, policy.RoleUnknown, false), policy.Request{Site: wallfields, SSID: ssidCorp, Now: now}},
		{"realistic/revoked", realistic, with(person(policy.OwnershipCouncilManaged, policy.RoleStaff, true), func(i *policy.Identity) { i.Status = policy.CertRevoked }), policy.Request{Site: wallfields, Now: now}},
		{"100-rules/last-matches", worst, contractor, policy.Request{Site: wallfields, SSID: ssidCorp, Now: now}},
	}
	for _, tc := range tests {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkDecision = tc.p.Decide(tc.id, tc.req)
			}
			if !sinkDecision.Accepted() && tc.name != "realistic/revoked" {
				b.Fatalf("unexpected decision %+v", sinkDecision)
			}
		})
	}
}

// worstCasePolicy has n rules; every one but the last checks every condition
// and fails only on its SSID.
func worstCasePolicy(n int) *policy.Policy {
	p := &policy.Policy{Sites: sites(), MaxRevocationAge: time.Hour}
	for i := range n - 1 {
		p.Rules = append(p.Rules, policy.Rule{
			Name:         fmt.Sprintf("near-miss-%d", i),
			Ownership:    []policy.Ownership{policy.OwnershipCouncilManaged, policy.OwnershipPersonal},
			Roles:        []policy.Role{policy.RoleStaff, policy.RoleMember, policy.RoleContractor},
			ClearanceIL3: ptr(false),
			Anchors:      []string{anchorADCS, anchorNacd},
			EmailDomains: []string{"eastherts.gov.uk", "nhs.net"},
			Sites:        []string{bishops, hertford, wallfields},
			SSIDs:        []string{ssidGuest, ssidLegacy, fmt.Sprintf("never-%d", i)},
			Segment:      policy.SegmentGuest,
		})
	}
	p.Rules = append(p.Rules, policy.Rule{Name: "last", Roles: []policy.Role{policy.RoleContractor}, Segment: policy.SegmentGeneral, SessionTimeout: 8 * time.Hour})
	return p
}

var sinkIdentity policy.Identity

func BenchmarkIdentityFromCertificate(b *testing.B) {
	leaf := testpki.NewRoot(b, "bench root").IssueDevice(b, testpki.Device{
		CommonName: "laptop-42",
		Email:      "someone@eastherts.gov.uk",
		UUID:       "0b7c3d8e-6f0a-4a51-9a43-6c1d2e3f4a5b",
		Ownership:  policy.OwnershipCouncilManaged,
		Role:       policy.RoleStaff,
		IL3:        true,
	})
	oids := policy.DefaultOIDs()
	b.ReportAllocs()
	for b.Loop() {
		sinkIdentity = policy.IdentityFromCertificate(leaf.Cert, oids)
	}
	if !sinkIdentity.ClearanceIL3 {
		b.Fatal("clearance not read")
	}
}
