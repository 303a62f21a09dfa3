package pki

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"math/big"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/policy"
)

// Default lifetimes of what the CA issues.
const (
	DefaultDeviceValidity       = 365 * 24 * time.Hour
	DefaultServerValidity       = 90 * 24 * time.Hour
	DefaultRootValidity         = 20 * 365 * 24 * time.Hour
	DefaultIntermediateValidity = 10 * 365 * 24 * time.Hour
	// DefaultCRLValidity is the NextUpdate distance of the CRL; it is
	// regenerated on every revocation and every DefaultCRLValidity/3.
	DefaultCRLValidity = 24 * time.Hour
	// DefaultRevocationPoll is how often a CA polls the shared store for
	// revocations made by other nodes (PostgreSQL).
	DefaultRevocationPoll = 1500 * time.Millisecond
)

// LocalAnchorName is the trust-anchor name of nacd's own CA.
const LocalAnchorName = "nacd-local"

// Errors callers branch on (errors.Is).
var (
	ErrCAExists      = errors.New("pki: a CA already exists in the data dir (use --force to overwrite)")
	ErrNoCA          = errors.New("pki: no CA in the data dir")
	ErrWeakKey       = errors.New("pki: weak or unsupported public key (want ECDSA P-256/P-384 or RSA >= 2048)")
	ErrCSRMismatch   = errors.New("pki: CSR asks for names other than the holder's e-mail and device URI")
	ErrBadCSR        = errors.New("pki: invalid CSR")
	ErrBadFacts      = errors.New("pki: invalid certificate facts")
	ErrNotFound      = errors.New("pki: not found")
	ErrRevoked       = errors.New("pki: certificate revoked")
	ErrNotIssuedHere = errors.New("pki: certificate not issued by this CA")
	ErrExists        = errors.New("pki: already exists")
	ErrTokenUsed     = errors.New("pki: token already used")
	ErrClosed        = errors.New("pki: CA closed")
)

// CAConfig configures nacd's CA.
type CAConfig struct {
	// DataDir holds root.crt, intermediate.crt, their keys (0600) and, with
	// the embedded store, nacd-ca.db (bbolt; one process at a time: the
	// file is locked while open).
	DataDir string
	// Store is "" for the embedded bbolt DB in DataDir, or a PostgreSQL DSN
	// "postgres://user:pass@host/db?sslmode=disable" shared by several
	// nodes. The CA keys always live in DataDir (copy them to every node).
	Store string
	// PassphraseFile, when set, holds the passphrase that encrypts the CA
	// keys at rest; otherwise NACD_CA_PASSPHRASE (env) is used when set;
	// otherwise the keys are written unencrypted (0600).
	PassphraseFile string
	// CRLURL is put in issued certificates as the CRL Distribution Point
	// (e.g. "http://127.0.0.1:9443/crl"); OCSPURL as the OCSP AIA. Empty:
	// the extension is left out.
	CRLURL, OCSPURL string
	// DeviceValidity is the lifetime of device certificates (default 365d).
	DeviceValidity time.Duration
	// CRLValidity is the CRL's NextUpdate distance (default 24h).
	CRLValidity time.Duration
	// RevocationPoll is how often revocations by other nodes are picked up
	// from a shared store (default 1.5s; bbolt is single-node, no polling).
	RevocationPoll time.Duration
	// CommonName prefix of the CA certificates (default "nacd").
	CommonName string
	Logger     *zap.Logger // operational log (default no-op)
	AccessLog  *zap.Logger // audit events: certificate-issued/renewed/revoked (default no-op)
	Registerer prometheus.Registerer
}

// Facts are what an issued device certificate asserts (design section 3).
// They come from an operator (nacd ca issue) or an enrolment token, never
// from the CSR.
type Facts struct {
	Email        string // holder, SAN rfc822Name; required
	DeviceUUID   string // SAN URI urn:uuid:<uuid>; "" = a random one is generated
	DeviceName   string // subject CN; "" = the e-mail
	Ownership    policy.Ownership
	Role         policy.Role
	ClearanceIL3 bool
	// Validity overrides CAConfig.DeviceValidity when > 0.
	Validity time.Duration
}

// RecordStatus is the inventory status of a certificate.
type RecordStatus string

const (
	StatusValid   RecordStatus = "valid"
	StatusRevoked RecordStatus = "revoked"
	StatusExpired RecordStatus = "expired" // computed at read time, never stored
)

// Record is one row of nacd's certificate inventory.
type Record struct {
	Serial       string           `json:"serial"` // lower-case hex, as policy.Identity.Serial
	Email        string           `json:"email"`
	DeviceUUID   string           `json:"device_uuid"`
	DeviceName   string           `json:"device_name"`
	Ownership    policy.Ownership `json:"ownership"`
	Role         policy.Role      `json:"role"`
	ClearanceIL3 bool             `json:"clearance_il3"`
	NotBefore    time.Time        `json:"not_before"`
	NotAfter     time.Time        `json:"not_after"`
	Status       RecordStatus     `json:"status"`
	IssuedAt     time.Time        `json:"issued_at"`
	IssuedBy     string           `json:"issued_by"`
	RenewedFrom  string           `json:"renewed_from,omitempty"` // serial of the certificate this one renewed
	RevokedAt    time.Time        `json:"revoked_at,omitempty"`
	Reason       RevocationReason `json:"reason,omitempty"`
	RevokedBy    string           `json:"revoked_by,omitempty"`
	Certificate  []byte           `json:"certificate,omitempty"` // DER
}

// ListFilter selects inventory records; zero fields match everything.
type ListFilter struct {
	Holder         string        // e-mail, case-insensitive
	Device         string        // device UUID
	ExpiringWithin time.Duration // NotAfter within now+d (and not yet expired)
	Status         RecordStatus  // valid | revoked | expired
}

// RevocationReason is an RFC 5280 CRLReason code.
type RevocationReason int

// RFC 5280 section 5.3.1 reason codes (7 is unused).
const (
	ReasonUnspecified          RevocationReason = 0
	ReasonKeyCompromise        RevocationReason = 1
	ReasonCACompromise         RevocationReason = 2
	ReasonAffiliationChanged   RevocationReason = 3
	ReasonSuperseded           RevocationReason = 4
	ReasonCessationOfOperation RevocationReason = 5
	ReasonCertificateHold      RevocationReason = 6
	ReasonRemoveFromCRL        RevocationReason = 8
	ReasonPrivilegeWithdrawn   RevocationReason = 9
	ReasonAACompromise         RevocationReason = 10
)

// CA is nacd's certificate authority: smallstep's embedded authority over a
// nosql store, plus nacd's inventory in the same backend. All methods are
// safe for concurrent use.
type CA struct {
	cfg CAConfig
}

// InitCA creates the root and intermediate (ECDSA P-256) in cfg.DataDir,
// keys 0600 (encrypted when a passphrase is configured). It refuses with
// ErrCAExists when a CA is already there unless force is set (force
// replaces the CA keys and certificates, not the store).
func InitCA(cfg CAConfig, force bool) error { return errors.New("pki: InitCA not implemented yet") }

// OpenCA opens (creating it when absent) the CA in cfg.DataDir and its store
// and starts the CRL timer and, for a shared store, the revocation poller.
// Close it.
func OpenCA(ctx context.Context, cfg CAConfig) (*CA, error) {
	return nil, errors.New("pki: OpenCA not implemented yet")
}

// Close stops the CRL timer and poller and closes the store.
func (ca *CA) Close() error { return nil }

// Issue signs csr with the facts (never the CSR's own names: its SANs and
// subject must be empty or equal to what f implies, else ErrCSRMismatch; a
// weak key is ErrWeakKey). The inventory record is durable before the
// chain is returned. by names who issued it (operator, "token:<id>",
// "admin-api:<cn>") for the audit log. chain is leaf, intermediate.
func (ca *CA) Issue(ctx context.Context, csr *x509.CertificateRequest, f Facts, by string) ([]*x509.Certificate, error) {
	return nil, errors.New("pki: Issue not implemented yet")
}

// Renew issues a new certificate with the facts of cur (which must be
// issued by this CA, unexpired and not revoked) for csr's key. The old
// certificate stays valid until it expires (revoke it with reason
// superseded if wanted).
func (ca *CA) Renew(ctx context.Context, cur *x509.Certificate, csr *x509.CertificateRequest, by string) ([]*x509.Certificate, error) {
	return nil, errors.New("pki: Renew not implemented yet")
}

// Revoke revokes one certificate by serial (lower-case hex; "0x" and
// upper case accepted). Revoking a revoked certificate is a no-op success.
// The CRL is regenerated and the RevocationSet updated before it returns.
func (ca *CA) Revoke(ctx context.Context, serial string, reason RevocationReason, by string) error {
	return errors.New("pki: Revoke not implemented yet")
}

// RevokeDevice revokes every unrevoked certificate of a device; it returns
// the serials it revoked (ErrNotFound when the device has none at all).
func (ca *CA) RevokeDevice(ctx context.Context, deviceUUID string, reason RevocationReason, by string) ([]string, error) {
	return nil, errors.New("pki: RevokeDevice not implemented yet")
}

// RevokeHolder revokes every unrevoked certificate of every device of a
// holder (e-mail, case-insensitive).
func (ca *CA) RevokeHolder(ctx context.Context, email string, reason RevocationReason, by string) ([]string, error) {
	return nil, errors.New("pki: RevokeHolder not implemented yet")
}

// List returns the inventory records matching filter, oldest first.
func (ca *CA) List(ctx context.Context, filter ListFilter) ([]Record, error) {
	return nil, errors.New("pki: List not implemented yet")
}

// Status returns the inventory record of a serial (ErrNotFound when this
// CA never issued it), for OCSP: Status RecordStatus, RevokedAt, Reason.
func (ca *CA) Status(ctx context.Context, serial *big.Int) (Record, error) {
	return Record{}, errors.New("pki: Status not implemented yet")
}

// CRL returns the current CRL (DER), signed by the intermediate.
func (ca *CA) CRL(ctx context.Context) ([]byte, error) {
	return nil, errors.New("pki: CRL not implemented yet")
}

// Root is the root certificate.
func (ca *CA) Root() *x509.Certificate { return nil }

// Intermediate is the issuing intermediate (issuer of devices, CRL and,
// as the OCSP responder's issuer, the OCSP responses).
func (ca *CA) Intermediate() *x509.Certificate { return nil }

// Signer is the intermediate's private key (sign OCSP responses with it;
// never log or export it).
func (ca *CA) Signer() crypto.Signer { return nil }

// RootFile is the path of the root certificate PEM in the data dir.
func (ca *CA) RootFile() string { return "" }

// Tokens is a table in the CA's store for the enrolment code: atomic
// single-use records.
func (ca *CA) Tokens() *TokenTable { return nil }

// TokenTable stores opaque values by id in the CA's store (same backend:
// bbolt or PostgreSQL, so tokens survive restarts and are shared by nodes).
type TokenTable struct{}

// Put stores value under id; ErrExists if id is already present.
func (t *TokenTable) Put(ctx context.Context, id string, value []byte) error {
	return errors.New("pki: TokenTable not implemented yet")
}

// Get returns the value of id (ErrNotFound) and whether it was consumed.
func (t *TokenTable) Get(ctx context.Context, id string) (value []byte, used bool, err error) {
	return nil, false, errors.New("pki: TokenTable not implemented yet")
}

// Consume atomically marks id used and returns its value: exactly one of
// any number of concurrent callers (on any node) gets the value; the
// others get ErrTokenUsed. ErrNotFound when absent.
func (t *TokenTable) Consume(ctx context.Context, id string) ([]byte, error) {
	return nil, errors.New("pki: TokenTable not implemented yet")
}

// Delete removes id (no error when absent).
func (t *TokenTable) Delete(ctx context.Context, id string) error {
	return errors.New("pki: TokenTable not implemented yet")
}

// List calls fn for every id, value and used flag (for expiry sweeps).
func (t *TokenTable) List(ctx context.Context, fn func(id string, value []byte, used bool) error) error {
	return errors.New("pki: TokenTable not implemented yet")
}

// ServerCertificate returns the RADIUS server certificate and key files in
// the data dir, issued by this CA for names (DNS names; the first is the
// CN), (re)issuing them when absent, for other names, or past 2/3 of their
// life. The chain file holds leaf + intermediate.
func (ca *CA) ServerCertificate(ctx context.Context, names []string) (certFile, keyFile string, err error) {
	return "", "", errors.New("pki: ServerCertificate not implemented yet")
}

// Anchor is the trust-anchor configuration for this CA ("nacd-local", il3,
// policy.DefaultOIDs), with revocation checked against RevocationSet
// (Source "store") instead of a CRL file.
func (ca *CA) Anchor() AnchorConfig { return AnchorConfig{} }

// RevocationSet is the in-memory set of revoked serials of this CA, kept in
// sync with the store (on this node immediately; other nodes' revocations
// within RevocationPoll).
func (ca *CA) RevocationSet() *RevocationSet { return nil }

// RevocationSet is an in-memory set of revoked serial numbers of one CA.
type RevocationSet struct{}

// ParseRevocationReason parses an RFC 5280 reason name ("keyCompromise",
// "key-compromise", "superseded", ...) or its number.
func ParseRevocationReason(s string) (RevocationReason, error) {
	return 0, errors.New("pki: ParseRevocationReason not implemented yet")
}
