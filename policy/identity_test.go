package policy_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

// TestIdentityFromCertificateRoundTrip: for every combination of ownership,
// role and clearance, what testpki writes into a real certificate, policy
// reads back.
func TestIdentityFromCertificateRoundTrip(t *testing.T) {
	ca := testpki.NewRoot(t, "nacd test root").NewIntermediate(t, "nacd test intermediate")
	owners := []policy.Ownership{"", policy.OwnershipCouncilManaged, policy.OwnershipPersonal}
	roles := []policy.Role{"", policy.RoleStaff, policy.RoleMember, policy.RoleContractor, policy.RoleVisitor}
	notBefore := time.Now().Add(-time.Hour).Truncate(time.Second).UTC()
	notAfter := notBefore.Add(90 * 24 * time.Hour)
	n := 0
	for _, own := range owners {
		for _, role := range roles {
			for _, il3 := range []bool{false, true} {
				n++
				name := fmt.Sprintf("ownership=%s role=%s il3=%v", orNone(string(own)), orNone(string(role)), il3)
				dev := testpki.Device{
					CommonName: fmt.Sprintf("device-%d", n),
					Email:      fmt.Sprintf("holder%d@eastherts.gov.uk", n),
					UUID:       fmt.Sprintf("0B7C3D8E-6F0A-4A51-9A43-%012X", n),
					Ownership:  own,
					Role:       role,
					IL3:        il3,
					NotBefore:  notBefore,
					NotAfter:   notAfter,
				}
				t.Run(name, func(t *testing.T) {
					leaf := ca.IssueDevice(t, dev)
					id := policy.IdentityFromCertificate(leaf.Cert, policy.DefaultOIDs())

					wantOwn := own
					if wantOwn == "" {
						wantOwn = policy.OwnershipPersonal
					}
					wantRole := role
					if wantRole == "" {
						wantRole = policy.RoleUnknown
					}
					if id.Ownership != wantOwn || id.Role != wantRole || id.ClearanceIL3 != il3 {
						t.Errorf("facts = (%s, %s, il3=%v), want (%s, %s, il3=%v)", id.Ownership, id.Role, id.ClearanceIL3, wantOwn, wantRole, il3)
					}
					if !slices.Equal(id.PolicyOIDs, dev.PolicyOIDs()) {
						t.Errorf("PolicyOIDs = %v, want %v", id.PolicyOIDs, dev.PolicyOIDs())
					}
					if id.CommonName != dev.CommonName || id.Email != dev.Email {
						t.Errorf("CN, e-mail = %q, %q, want %q, %q", id.CommonName, id.Email, dev.CommonName, dev.Email)
					}
					if id.DeviceUUID != strings.ToLower(dev.UUID) {
						t.Errorf("DeviceUUID = %q, want %q", id.DeviceUUID, strings.ToLower(dev.UUID))
					}
					if id.Subject != leaf.Cert.Subject.String() || !strings.Contains(id.Subject, "CN="+dev.CommonName) {
						t.Errorf("Subject = %q", id.Subject)
					}
					if id.Issuer != ca.Cert.Subject.String() {
						t.Errorf("Issuer = %q, want %q", id.Issuer, ca.Cert.Subject.String())
					}
					if id.Serial != leaf.Cert.SerialNumber.Text(16) || id.Serial != strings.ToLower(id.Serial) {
						t.Errorf("Serial = %q, want %q", id.Serial, leaf.Cert.SerialNumber.Text(16))
					}
					if !id.NotBefore.Equal(notBefore) || !id.NotAfter.Equal(notAfter) {
						t.Errorf("validity = %v..%v, want %v..%v", id.NotBefore, id.NotAfter, notBefore, notAfter)
					}
					if id.Anchor != "" || id.AnchorIL3 || id.Status != "" || id.Revocation != (policy.Revocation{}) {
						t.Errorf("verifier fields set: anchor=%q anchorIL3=%v status=%q revocation=%+v", id.Anchor, id.AnchorIL3, id.Status, id.Revocation)
					}
				})
			}
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func TestIdentityFromCertificateEdgeCases(t *testing.T) {
	ca := testpki.NewRoot(t, "nacd test root")
	d := policy.DefaultOIDs()
	tests := []struct {
		name      string
		dev       testpki.Device
		oids      policy.OIDs
		own       policy.Ownership
		role      policy.Role
		il3       bool
		uuid      string
		wantEmail string
	}{
		{name: "no policy OIDs is personal with role unknown", dev: testpki.Device{}, oids: d,
			own: policy.OwnershipPersonal, role: policy.RoleUnknown},
		{name: "clearance alone is personal with role unknown", dev: testpki.Device{IL3: true}, oids: d,
			own: policy.OwnershipPersonal, role: policy.RoleUnknown, il3: true},
		{name: "council-managed and personal both asserted is personal",
			dev:  testpki.Device{Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, IL3: true, ExtraPolicies: []string{policy.OIDOwnershipPersonal}},
			oids: d, own: policy.OwnershipPersonal, role: policy.RoleStaff, il3: true},
		{name: "personal then council-managed is personal",
			dev:  testpki.Device{Ownership: policy.OwnershipPersonal, ExtraPolicies: []string{policy.OIDOwnershipCouncilManaged}},
			oids: d, own: policy.OwnershipPersonal, role: policy.RoleUnknown},
		{name: "staff and visitor picks visitor",
			dev:  testpki.Device{Role: policy.RoleStaff, ExtraPolicies: []string{policy.OIDRoleVisitor}},
			oids: d, own: policy.OwnershipPersonal, role: policy.RoleVisitor},
		{name: "staff and member picks member",
			dev:  testpki.Device{Role: policy.RoleStaff, ExtraPolicies: []string{policy.OIDRoleMember}},
			oids: d, own: policy.OwnershipPersonal, role: policy.RoleMember},
		{name: "member and contractor picks contractor",
			dev:  testpki.Device{Role: policy.RoleMember, ExtraPolicies: []string{policy.OIDRoleContractor}},
			oids: d, own: policy.OwnershipPersonal, role: policy.RoleContractor},
		{name: "contractor and visitor picks visitor",
			dev:  testpki.Device{Role: policy.RoleContractor, ExtraPolicies: []string{policy.OIDRoleVisitor}},
			oids: d, own: policy.OwnershipPersonal, role: policy.RoleVisitor},
		{name: "unknown OIDs are carried but mean nothing",
			dev:  testpki.Device{ExtraPolicies: []string{"1.3.6.1.4.1.311.21.8.1.2.3", policy.Arc + ".9.9"}},
			oids: d, own: policy.OwnershipPersonal, role: policy.RoleUnknown},
		{name: "bad urn:uuid is ignored", dev: testpki.Device{UUID: "not-a-uuid"}, oids: d,
			own: policy.OwnershipPersonal, role: policy.RoleUnknown, uuid: ""},
		{name: "urn:uuid with braces is ignored", dev: testpki.Device{UUID: "{0b7c3d8e-6f0a-4a51-9a43-6c1d2e3f4a5b}"}, oids: d,
			own: policy.OwnershipPersonal, role: policy.RoleUnknown, uuid: ""},
		{name: "urn:uuid with non-hex digit is ignored", dev: testpki.Device{UUID: "0b7c3d8e-6f0a-4a51-9a43-6c1d2e3f4a5g"}, oids: d,
			own: policy.OwnershipPersonal, role: policy.RoleUnknown, uuid: ""},
		{name: "urn:uuid with a misplaced dash is ignored", dev: testpki.Device{UUID: "0b7c3d8e6-f0a-4a51-9a43-6c1d2e3f4a5b"}, oids: d,
			own: policy.OwnershipPersonal, role: policy.RoleUnknown, uuid: ""},
		{name: "urn:uuid without dashes is ignored", dev: testpki.Device{UUID: "0b7c3d8e6f0a4a519a436c1d2e3f4a5b"}, oids: d,
			own: policy.OwnershipPersonal, role: policy.RoleUnknown, uuid: ""},
		{name: "urn:uuid upper case is lowered", dev: testpki.Device{UUID: "0B7C3D8E-6F0A-4A51-9A43-6C1D2E3F4A5B"}, oids: d,
			own: policy.OwnershipPersonal, role: policy.RoleUnknown, uuid: "0b7c3d8e-6f0a-4a51-9a43-6c1d2e3f4a5b"},
		{name: "custom OIDs of an external CA are honoured",
			dev: testpki.Device{ExtraPolicies: []string{"1.3.6.1.4.1.311.21.8.100.1", "1.3.6.1.4.1.311.21.8.100.2", "1.3.6.1.4.1.311.21.8.100.3"}},
			oids: policy.OIDs{
				CouncilManaged: []string{"1.3.6.1.4.1.311.21.8.100.1"},
				Personal:       []string{"1.3.6.1.4.1.311.21.8.100.9"},
				Staff:          []string{"1.3.6.1.4.1.311.21.8.100.2"},
				ClearanceIL3:   []string{"1.3.6.1.4.1.311.21.8.100.3"},
			},
			own: policy.OwnershipCouncilManaged, role: policy.RoleStaff, il3: true},
		{name: "nacd's own OIDs mean nothing under a custom mapping",
			dev:  testpki.Device{Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, IL3: true},
			oids: policy.OIDs{CouncilManaged: []string{"1.2.3.4"}, Staff: []string{"1.2.3.5"}, ClearanceIL3: []string{"1.2.3.6"}},
			own:  policy.OwnershipPersonal, role: policy.RoleUnknown},
		{name: "empty mapping reads nothing",
			dev:  testpki.Device{Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, IL3: true},
			oids: policy.OIDs{}, own: policy.OwnershipPersonal, role: policy.RoleUnknown},
		{name: "first e-mail is the holder", dev: testpki.Device{Email: "first@eastherts.gov.uk"}, oids: d,
			own: policy.OwnershipPersonal, role: policy.RoleUnknown, wantEmail: "first@eastherts.gov.uk"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := ca.IssueDevice(t, tc.dev)
			id := policy.IdentityFromCertificate(leaf.Cert, tc.oids)
			if id.Ownership != tc.own || id.Role != tc.role || id.ClearanceIL3 != tc.il3 {
				t.Errorf("facts = (%s, %s, il3=%v), want (%s, %s, il3=%v)", id.Ownership, id.Role, id.ClearanceIL3, tc.own, tc.role, tc.il3)
			}
			if id.DeviceUUID != tc.uuid && tc.dev.UUID != "" {
				t.Errorf("DeviceUUID = %q, want %q", id.DeviceUUID, tc.uuid)
			}
			if id.Email != tc.wantEmail {
				t.Errorf("Email = %q, want %q", id.Email, tc.wantEmail)
			}
			if !slices.Equal(id.PolicyOIDs, tc.dev.PolicyOIDs()) {
				t.Errorf("PolicyOIDs = %v, want %v", id.PolicyOIDs, tc.dev.PolicyOIDs())
			}
		})
	}
}

// TestIdentityFromCertificateInMemory covers certificates that were not
// parsed: several SANs, PolicyIdentifiers only, duplicates, nil fields.
func TestIdentityFromCertificateInMemory(t *testing.T) {
	u := func(s string) *url.URL {
		v, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	oid := func(s string) x509.OID {
		o, err := x509.ParseOID(s)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	tests := []struct {
		name  string
		cert  *x509.Certificate
		check func(t *testing.T, id policy.Identity)
	}{
		{"nil certificate is personal with role unknown", nil, func(t *testing.T, id policy.Identity) {
			if id.Ownership != policy.OwnershipPersonal || id.Role != policy.RoleUnknown || id.ClearanceIL3 || id.Subject != "" {
				t.Errorf("id = %+v", id)
			}
		}},
		{"empty certificate", &x509.Certificate{}, func(t *testing.T, id policy.Identity) {
			if id.Ownership != policy.OwnershipPersonal || id.Role != policy.RoleUnknown || id.Serial != "" || id.PolicyOIDs != nil {
				t.Errorf("id = %+v", id)
			}
		}},
		{"first urn:uuid among several URIs", &x509.Certificate{URIs: []*url.URL{
			nil,
			u("https://eastherts.gov.uk/device/1"),
			u("URN:UUID:0B7C3D8E-6F0A-4A51-9A43-6C1D2E3F4A5B"),
			u("urn:uuid:11111111-2222-3333-4444-555555555555"),
		}}, func(t *testing.T, id policy.Identity) {
			if id.DeviceUUID != "0b7c3d8e-6f0a-4a51-9a43-6c1d2e3f4a5b" {
				t.Errorf("DeviceUUID = %q", id.DeviceUUID)
			}
		}},
		{"malformed first urn:uuid is not replaced by a later one", &x509.Certificate{URIs: []*url.URL{
			u("urn:uuid:zzz"), u("urn:uuid:11111111-2222-3333-4444-555555555555"),
		}}, func(t *testing.T, id policy.Identity) {
			if id.DeviceUUID != "" {
				t.Errorf("DeviceUUID = %q, want empty", id.DeviceUUID)
			}
		}},
		{"other URN namespaces are skipped", &x509.Certificate{URIs: []*url.URL{
			u("urn:isbn:0451450523"), u("urn:uuid:11111111-2222-3333-4444-555555555555"),
		}}, func(t *testing.T, id policy.Identity) {
			if id.DeviceUUID != "11111111-2222-3333-4444-555555555555" {
				t.Errorf("DeviceUUID = %q", id.DeviceUUID)
			}
		}},
		{"PolicyIdentifiers only (representable OIDs)", &x509.Certificate{PolicyIdentifiers: []asn1.ObjectIdentifier{
			{1, 2, 3, 4}, {1, 2, 3, 5},
		}}, func(t *testing.T, id policy.Identity) {
			if !slices.Equal(id.PolicyOIDs, []string{"1.2.3.4", "1.2.3.5"}) {
				t.Errorf("PolicyOIDs = %v", id.PolicyOIDs)
			}
		}},
		{"Policies and PolicyIdentifiers merged without duplicates", &x509.Certificate{
			Policies:          []x509.OID{oid(policy.OIDOwnershipCouncilManaged), oid("1.2.3.4"), oid("1.2.3.4")},
			PolicyIdentifiers: []asn1.ObjectIdentifier{{1, 2, 3, 4}, {1, 2, 3, 6}, {}},
		}, func(t *testing.T, id policy.Identity) {
			if !slices.Equal(id.PolicyOIDs, []string{policy.OIDOwnershipCouncilManaged, "1.2.3.4", "1.2.3.6"}) {
				t.Errorf("PolicyOIDs = %v", id.PolicyOIDs)
			}
			if id.Ownership != policy.OwnershipCouncilManaged {
				t.Errorf("Ownership = %s", id.Ownership)
			}
		}},
		{"serial is lower-case hex", &x509.Certificate{SerialNumber: big.NewInt(0xABCDEF)}, func(t *testing.T, id policy.Identity) {
			if id.Serial != "abcdef" {
				t.Errorf("Serial = %q", id.Serial)
			}
		}},
		{"subject and issuer strings", &x509.Certificate{
			Subject: pkix.Name{CommonName: "laptop-42", Organization: []string{"East Herts Council"}, OrganizationalUnit: []string{"ICT"}},
			Issuer:  pkix.Name{CommonName: "EHC Issuing CA"},
		}, func(t *testing.T, id policy.Identity) {
			if id.CommonName != "laptop-42" || id.Subject != "CN=laptop-42,OU=ICT,O=East Herts Council" || id.Issuer != "CN=EHC Issuing CA" {
				t.Errorf("CN=%q Subject=%q Issuer=%q", id.CommonName, id.Subject, id.Issuer)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, policy.IdentityFromCertificate(tc.cert, policy.DefaultOIDs()))
		})
	}
}

// TestIdentityToDecision: a certificate from testpki, read by policy and
// completed as the verifier would, lands where the design says.
func TestIdentityToDecision(t *testing.T) {
	ca := testpki.NewRoot(t, "nacd test root")
	p := councilPolicy()
	tests := []struct {
		name string
		dev  testpki.Device
		site string
		want policy.Segment
	}{
		{"cleared council laptop at Wallfields", testpki.Device{Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, IL3: true}, wallfields, policy.SegmentIL3},
		{"cleared council laptop at Hertford Theatre", testpki.Device{Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, IL3: true}, hertford, policy.SegmentGeneral},
		{"staff phone asserting clearance", testpki.Device{Ownership: policy.OwnershipPersonal, Role: policy.RoleStaff, IL3: true}, wallfields, policy.SegmentGuest},
		{"contradictory ownership with clearance", testpki.Device{Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, IL3: true,
			ExtraPolicies: []string{policy.OIDOwnershipPersonal}}, wallfields, policy.SegmentGuest},
		{"member tablet", testpki.Device{Ownership: policy.OwnershipPersonal, Role: policy.RoleMember}, bishops, policy.SegmentGeneral},
		{"no OIDs", testpki.Device{}, wallfields, policy.SegmentOnboarding},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := ca.IssueDevice(t, tc.dev)
			id := policy.IdentityFromCertificate(leaf.Cert, policy.DefaultOIDs())
			id.Anchor, id.AnchorIL3, id.Status = anchorNacd, true, policy.CertOK
			id.Revocation = policy.Revocation{Checked: true, Age: time.Minute}
			d := p.Decide(id, policy.Request{Site: tc.site, Now: time.Now()})
			if d.Segment != tc.want {
				t.Errorf("Decide = %+v, want %s", d, tc.want)
			}
		})
	}
}

func TestOIDsValidate(t *testing.T) {
	tests := []struct {
		name  string
		oids  policy.OIDs
		field string // "" means valid
	}{
		{"default", policy.DefaultOIDs(), ""},
		{"empty", policy.OIDs{}, ""},
		{"not an OID", policy.OIDs{Staff: []string{"staff"}}, "oids.staff[0]"},
		{"not canonical", policy.OIDs{ClearanceIL3: []string{"1.2.03"}}, "oids.clearance_il3[0]"},
		{"one OID two facts", policy.OIDs{CouncilManaged: []string{"1.2.3"}, Personal: []string{"1.2.3"}}, "oids.personal[0]"},
		{"one OID two roles", policy.OIDs{Staff: []string{"1.2.3"}, Visitor: []string{"1.2.3"}}, "oids.visitor[0]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.oids.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tc.field != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.field+": ")):
				t.Errorf("Validate = %v, want an error naming %s", err, tc.field)
			case tc.field != "":
				var fe *policy.FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field || fe.RuleIndex != -1 {
					t.Errorf("Validate = %#v, want a *FieldError for %s", err, tc.field)
				}
			}
		})
	}
}

// FuzzIdentityFromCertificate: whatever certificate a device presents (and
// crypto/x509 parses), reading it never panics and yields only defined
// facts.
func FuzzIdentityFromCertificate(f *testing.F) {
	ca := testpki.NewRoot(f, "fuzz root")
	for _, d := range []testpki.Device{
		{Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, IL3: true, Email: "a@eastherts.gov.uk", UUID: "0b7c3d8e-6f0a-4a51-9a43-6c1d2e3f4a5b"},
		{Ownership: policy.OwnershipPersonal, Role: policy.RoleMember, ExtraPolicies: []string{"1.2.3.4"}},
		{UUID: "not-a-uuid"},
	} {
		f.Add(ca.IssueDevice(f, d).Cert.Raw)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		id := policy.IdentityFromCertificate(cert, policy.DefaultOIDs())
		if !id.Ownership.Valid() || !id.Role.Valid() {
			t.Fatalf("undefined facts: %q, %q", id.Ownership, id.Role)
		}
		if id.DeviceUUID != "" && (len(id.DeviceUUID) != 36 || id.DeviceUUID != strings.ToLower(id.DeviceUUID)) {
			t.Fatalf("DeviceUUID %q", id.DeviceUUID)
		}
		if id.Ownership == policy.OwnershipCouncilManaged && slices.Contains(id.PolicyOIDs, policy.OIDOwnershipPersonal) {
			t.Fatal("council-managed although personal is asserted")
		}
	})
}
