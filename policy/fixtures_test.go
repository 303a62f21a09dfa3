package policy_test

import (
	"time"

	"github.com/herts-council/nacd/policy"
)

// The fixed wall clock of the table tests.
var now = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

const (
	wallfields = "wallfields"        // offers il3, general, guest, onboarding
	hertford   = "hertford-theatre"  // general, guest, onboarding: no il3
	bishops    = "bishops-stortford" // il3, general, guest: no onboarding

	ssidGuest   = "EHC-Guest"
	ssidLegacy  = "EHC-Legacy"
	ssidSetup   = "EHC-Setup"
	ssidCorp    = "EHC-Corp"
	anchorNacd  = "nacd-ca"
	anchorADCS  = "legacy-adcs"
	oidKiosk    = "1.3.6.1.4.1.99999.1"
	maxRevAge   = time.Hour
	vlanWallIL3 = 10
)

func ptr[T any](v T) *T { return &v }

func sites() map[string]policy.Site {
	return map[string]policy.Site{
		wallfields: {Name: wallfields, VLANs: map[policy.Segment]int{
			policy.SegmentIL3: 10, policy.SegmentGeneral: 20, policy.SegmentGuest: 30, policy.SegmentOnboarding: 40}},
		hertford: {Name: hertford, VLANs: map[policy.Segment]int{
			policy.SegmentGeneral: 120, policy.SegmentGuest: 130, policy.SegmentOnboarding: 140}},
		bishops: {Name: bishops, VLANs: map[policy.Segment]int{
			policy.SegmentIL3: 210, policy.SegmentGeneral: 220, policy.SegmentGuest: 230}},
	}
}

// councilPolicy is a realistic rule set (13 rules). Choices it documents:
//   - SSIDs first: the guest SSID always gives guest, the retired SSID is
//     refused, the set-up SSID gives the walled garden;
//   - devices from the legacy AD CS get guest only, kiosks (an issuance
//     policy OID of the external CA) guest for an hour;
//   - il3 for cleared staff on council-managed devices, falling back to
//     general when an il3 condition fails or the site has no il3;
//   - staff on their own devices get guest (internet only): work is done on
//     council laptops, and a personal device never sees il3 or general;
//   - members (councillors) on any device get general;
//   - NHS partner contractors get general at Wallfields only, 4h; other
//     contractors general, 8h; visitors guest, 12h;
//   - a certificate with no role goes to onboarding to be re-enrolled.
func councilPolicy() *policy.Policy {
	cm := []policy.Ownership{policy.OwnershipCouncilManaged}
	return &policy.Policy{
		Sites:            sites(),
		MaxRevocationAge: maxRevAge,
		Rules: []policy.Rule{
			{Name: "guest-ssid", SSIDs: []string{ssidGuest}, Segment: policy.SegmentGuest},
			{Name: "retired-ssid", SSIDs: []string{ssidLegacy}, Segment: policy.SegmentReject},
			{Name: "onboarding-ssid", SSIDs: []string{ssidSetup}, Segment: policy.SegmentOnboarding},
			{Name: "legacy-adcs", Anchors: []string{anchorADCS}, Segment: policy.SegmentGuest},
			{Name: "kiosk", PolicyOIDs: []string{oidKiosk}, Segment: policy.SegmentGuest, SessionTimeout: time.Hour},
			{Name: "il3-council-cleared", Ownership: cm, Roles: []policy.Role{policy.RoleStaff},
				ClearanceIL3: ptr(true), Segment: policy.SegmentIL3, Fallback: policy.SegmentGeneral},
			{Name: "staff-council", Ownership: cm, Roles: []policy.Role{policy.RoleStaff}, Segment: policy.SegmentGeneral},
			{Name: "staff-own-device", Ownership: []policy.Ownership{policy.OwnershipPersonal},
				Roles: []policy.Role{policy.RoleStaff}, Segment: policy.SegmentGuest},
			{Name: "members-byod", Roles: []policy.Role{policy.RoleMember}, Segment: policy.SegmentGeneral},
			{Name: "nhs-partners", Roles: []policy.Role{policy.RoleContractor}, EmailDomains: []string{"nhs.net"},
				Sites: []string{wallfields}, Segment: policy.SegmentGeneral, SessionTimeout: 4 * time.Hour},
			{Name: "contractors", Roles: []policy.Role{policy.RoleContractor}, Segment: policy.SegmentGeneral, SessionTimeout: 8 * time.Hour},
			{Name: "visitors", Roles: []policy.Role{policy.RoleVisitor}, Segment: policy.SegmentGuest, SessionTimeout: 12 * time.Hour},
			{Name: "onboarding", Roles: []policy.Role{policy.RoleUnknown}, Segment: policy.SegmentOnboarding},
		},
	}
}

// person returns an identity that passes every certificate check and every
// il3 condition except those its arguments take away.
func person(own policy.Ownership, role policy.Role, il3 bool) policy.Identity {
	return policy.Identity{
		Subject:      "CN=device,O=East Herts Council",
		CommonName:   "device",
		Email:        "someone@eastherts.gov.uk",
		DeviceUUID:   "0b7c3d8e-6f0a-4a51-9a43-6c1d2e3f4a5b",
		Ownership:    own,
		Role:         role,
		ClearanceIL3: il3,
		Issuer:       "CN=nacd intermediate",
		Serial:       "1f",
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		Anchor:       anchorNacd,
		AnchorIL3:    true,
		Status:       policy.CertOK,
		Revocation:   policy.Revocation{Checked: true, Source: "crl:nacd-ca", Age: 5 * time.Minute},
	}
}

func with(id policy.Identity, f func(*policy.Identity)) policy.Identity {
	f(&id)
	return id
}
