package policy

import "time"

// Segment is a network segment a device can be placed on.
type Segment string

const (
	SegmentIL3        Segment = "il3"
	SegmentGeneral    Segment = "general"
	SegmentGuest      Segment = "guest"
	SegmentOnboarding Segment = "onboarding"
	SegmentReject     Segment = "reject"
)

// Ownership says who owns the device (design section 3).
type Ownership string

const (
	OwnershipCouncilManaged Ownership = "council-managed"
	OwnershipPersonal       Ownership = "personal"
)

// Role is the holder's relationship with the council.
type Role string

const (
	RoleStaff      Role = "staff"
	RoleMember     Role = "member"
	RoleContractor Role = "contractor"
	RoleVisitor    Role = "visitor"
	RoleUnknown    Role = "unknown"
)

// CertStatus is the outcome of chain verification, filled in by the verifier
// (pki) before Decide is called.
type CertStatus string

const (
	CertOK          CertStatus = "ok"
	CertExpired     CertStatus = "expired"
	CertNotYetValid CertStatus = "not-yet-valid"
	CertUntrusted   CertStatus = "untrusted"
	CertWrongEKU    CertStatus = "wrong-eku"
	CertRevoked     CertStatus = "revoked"
	// CertRevocationStale: the anchor's revocation data is past NextUpdate or
	// older than allowed and the anchor is configured to fail closed for
	// every segment (not only il3).
	CertRevocationStale CertStatus = "crl-stale"
	CertInvalid         CertStatus = "invalid"
)

// Revocation is what the verifier learnt about the certificate's revocation
// status.
type Revocation struct {
	Checked bool          // a revocation source answered for this certificate
	Revoked bool          // the certificate is revoked
	Source  string        // e.g. "crl:council-ca", "store"
	Age     time.Duration // age of the revocation data (now - thisUpdate)
	Stale   bool          // past NextUpdate or older than the anchor's maximum
}

// Identity is everything policy knows about the device and its certificate.
// Attribute fields come from IdentityFromCertificate; Anchor*, Status and
// Revocation come from the verifier.
type Identity struct {
	Subject      string
	CommonName   string
	Email        string // SAN rfc822Name (the holder)
	DeviceUUID   string // SAN URI urn:uuid:<uuid>, lower-case, without prefix
	Ownership    Ownership
	Role         Role
	ClearanceIL3 bool
	Issuer       string
	Serial       string // hex, lower-case
	PolicyOIDs   []string
	NotBefore    time.Time
	NotAfter     time.Time

	Anchor     string // trust anchor name the chain verified to ("" if none)
	AnchorIL3  bool   // that anchor is marked il3: true
	Status     CertStatus
	Revocation Revocation
}

// Request is the context of one authentication.
type Request struct {
	Site string    // site of the NAS (from the client table)
	SSID string    // from Called-Station-Id, may be empty
	Now  time.Time // wall clock of the decision
}

// Decision is the result of Decide.
type Decision struct {
	Segment        Segment
	VLAN           int           // 0 when Segment is reject
	SessionTimeout time.Duration // 0 on reject; on accept always set (whole seconds), never beyond the certificate's NotAfter
	Rule           string        // name of the rule that decided, or a built-in name
	Reason         Reason
}

// Accepted reports whether the decision admits the device.
func (d Decision) Accepted() bool { return d.Segment != SegmentReject && d.Segment != "" }
