package policy

// Arc is nacd's own OID arc: 2.25.<UUID as integer> (ITU-T X.667), so no
// registration is needed. UUID 8b5df784-3db1-469a-8d59-472ab69a48b4.
// The arc does not fit encoding/asn1.ObjectIdentifier ([]int): use x509.OID
// (x509.ParseOID, Certificate.Policies) everywhere.
const Arc = "2.25.185250595254329498034381271920077850804"

// Certificate-policy OIDs, one per fact (design section 3). pki writes these
// and IdentityFromCertificate reads them; both use these constants.
const (
	OIDOwnershipCouncilManaged = Arc + ".1.1"
	OIDOwnershipPersonal       = Arc + ".1.2"
	OIDRoleStaff               = Arc + ".2.1"
	OIDRoleMember              = Arc + ".2.2"
	OIDRoleContractor          = Arc + ".2.3"
	OIDRoleVisitor             = Arc + ".2.4"
	OIDClearanceIL3            = Arc + ".3.1"
)

// OIDs maps certificate-policy OIDs to facts. DefaultOIDs is nacd's own
// profile; an external CA (e.g. AD CS issuance policies) may use others.
type OIDs struct {
	CouncilManaged []string
	Personal       []string
	Staff          []string
	Member         []string
	Contractor     []string
	Visitor        []string
	ClearanceIL3   []string
}

// DefaultOIDs returns nacd's own OID profile.
func DefaultOIDs() OIDs {
	return OIDs{
		CouncilManaged: []string{OIDOwnershipCouncilManaged},
		Personal:       []string{OIDOwnershipPersonal},
		Staff:          []string{OIDRoleStaff},
		Member:         []string{OIDRoleMember},
		Contractor:     []string{OIDRoleContractor},
		Visitor:        []string{OIDRoleVisitor},
		ClearanceIL3:   []string{OIDClearanceIL3},
	}
}
