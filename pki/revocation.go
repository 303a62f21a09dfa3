package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"
	"github.com/smallstep/certificates/db"
	"go.uber.org/zap"
)

var reasonNames = map[RevocationReason]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonCACompromise:         "cACompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonCertificateHold:      "certificateHold",
	ReasonRemoveFromCRL:        "removeFromCRL",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
	ReasonAACompromise:         "aACompromise",
}

// String is the RFC 5280 name ("keyCompromise", ...).
func (r RevocationReason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return "reason-" + strconv.Itoa(int(r))
}

// Valid reports whether r is a reason a CA may revoke with: an RFC 5280
// code other than 7 (unused), removeFromCRL (only in delta CRLs) and
// certificateHold (nacd never suspends).
func (r RevocationReason) Valid() bool {
	_, ok := reasonNames[r]
	return ok && r != ReasonRemoveFromCRL && r != ReasonCertificateHold
}

// ParseRevocationReason parses an RFC 5280 reason name, case-insensitive
// and with or without hyphens ("keyCompromise", "key-compromise",
// "superseded", ...), or its number. removeFromCRL and certificateHold are
// refused (see Valid).
func ParseRevocationReason(s string) (RevocationReason, error) {
	t := strings.ToLower(strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.TrimSpace(s)))
	if n, err := strconv.Atoi(t); err == nil {
		if r := RevocationReason(n); r.Valid() {
			return r, nil
		}
		return 0, fmt.Errorf("pki: revocation reason %q is not allowed", s)
	}
	for r, name := range reasonNames {
		if strings.ToLower(name) == t && r.Valid() {
			return r, nil
		}
	}
	return 0, fmt.Errorf("pki: unknown revocation reason %q (want e.g. keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, unspecified)", s)
}

// Revoke revokes one certificate by serial (lower-case hex; "0x", colons
// and upper case accepted). Revoking a revoked certificate is a no-op
// success. Before it returns, the revocation is committed, in this node's
// RevocationSet, and in a new CRL.
func (ca *CA) Revoke(ctx context.Context, serial string, reason RevocationReason, by string) error {
	s, err := parseSerial(serial)
	if err != nil {
		return err
	}
	if !reason.Valid() {
		return fmt.Errorf("pki: revocation reason %d is not allowed", reason)
	}
	if _, err := ca.revoke(ctx, s, reason, by); err != nil {
		return err
	}
	return ca.afterRevocation(ctx)
}

// RevokeDevice revokes every unrevoked certificate of a device; it returns
// the serials it revoked (ErrNotFound when the device has no certificate
// at all).
func (ca *CA) RevokeDevice(ctx context.Context, deviceUUID string, reason RevocationReason, by string) ([]string, error) {
	u := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(deviceUUID)), "urn:uuid:")
	if !isCanonicalUUID(u) {
		return nil, fmt.Errorf("%w: device %q is not a UUID", ErrNotFound, deviceUUID)
	}
	rs, err := ca.be.byDevice(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("pki: revoke device %s: %w", u, err)
	}
	return ca.revokeAll(ctx, rs, reason, by, "device "+u)
}

// RevokeHolder revokes every unrevoked certificate of every device of a
// holder (e-mail, case-insensitive): a member leaving office loses every
// device at once.
func (ca *CA) RevokeHolder(ctx context.Context, email string, reason RevocationReason, by string) ([]string, error) {
	e := strings.TrimSpace(email)
	if e == "" {
		return nil, fmt.Errorf("%w: empty holder", ErrNotFound)
	}
	rs, err := ca.be.byHolder(ctx, e)
	if err != nil {
		return nil, fmt.Errorf("pki: revoke holder %s: %w", e, err)
	}
	return ca.revokeAll(ctx, rs, reason, by, "holder "+e)
}

func (ca *CA) revokeAll(ctx context.Context, rs []Record, reason RevocationReason, by, what string) ([]string, error) {
	if !reason.Valid() {
		return nil, fmt.Errorf("pki: revocation reason %d is not allowed", reason)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: no certificate for %s", ErrNotFound, what)
	}
	var out []string
	var firstErr error
	for _, r := range rs {
		if r.Status == StatusRevoked {
			continue
		}
		changed, err := ca.revoke(ctx, r.Serial, reason, by)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if changed {
			out = append(out, r.Serial)
		}
	}
	// Publish what was revoked even when one failed.
	if err := ca.afterRevocation(ctx); err != nil && firstErr == nil {
		firstErr = err
	}
	return out, firstErr
}

// revoke records one revocation: step's DB (through a wrapped
// authority.Revoke: with the certificate, as mTLS, so no token is needed
// and nothing is dereferenced nil), then nacd's inventory and revocation
// sequence, then this node's RevocationSet. Each step is idempotent, so a
// revocation interrupted half-way completes when repeated.
func (ca *CA) revoke(ctx context.Context, serial string, reason RevocationReason, by string) (bool, error) {
	if ca.closed.Load() {
		return false, ErrClosed
	}
	rec, err := ca.be.getRecord(ctx, serial)
	if err != nil {
		return false, fmt.Errorf("pki: revoke %s: %w", serial, err)
	}
	if rec.Status == StatusRevoked {
		return false, nil
	}
	cert, err := x509.ParseCertificate(rec.Certificate)
	if err != nil {
		return false, fmt.Errorf("pki: revoke %s: stored certificate: %w", serial, err)
	}
	if err := ca.stepRevoke(ctx, cert, reason); err != nil {
		return false, fmt.Errorf("pki: revoke %s: %w", serial, err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	rec, changed, err := ca.be.revoke(ctx, serial, now, reason, by)
	if err != nil {
		return false, fmt.Errorf("pki: revoke %s: %w", serial, err)
	}
	ca.revs.add(cert.SerialNumber)
	if changed {
		ca.metrics.revoked.WithLabelValues(reason.String()).Inc()
		ca.audit.Load().Info(ActionCertificateRevoked,
			zap.String("event.action", ActionCertificateRevoked),
			zap.String("event.category", "pki"),
			zap.String("user.name", by),
			zap.String("holder.email", rec.Email),
			zap.String("device.uuid", rec.DeviceUUID),
			zap.String("device.name", rec.DeviceName),
			zap.String("certificate.serial", rec.Serial),
			zap.String("revocation.reason", reason.String()),
			zap.Int("revocation.reason_code", int(reason)),
		)
	}
	return changed, nil
}

// stepRevoke wraps authority.Revoke: by serial alone it demands a token,
// and with MTLS but no certificate it dereferences nil. nacd has the
// certificate from its inventory, so it always passes it, as MTLS.
func (ca *CA) stepRevoke(ctx context.Context, cert *x509.Certificate, reason RevocationReason) error {
	if cert == nil {
		return errors.New("no certificate")
	}
	ctx = provisioner.NewContextWithMethod(ctx, provisioner.RevokeMethod)
	err := ca.auth.Revoke(ctx, &authority.RevokeOptions{
		Serial:     cert.SerialNumber.String(), // step keys by decimal serial
		Reason:     reason.String(),
		ReasonCode: int(reason),
		MTLS:       true,
		Crt:        cert,
	})
	if err != nil && (errors.Is(err, db.ErrAlreadyExists) || strings.Contains(err.Error(), "is already revoked")) {
		return nil
	}
	return err
}

// afterRevocation publishes a new CRL.
func (ca *CA) afterRevocation(ctx context.Context) error {
	if _, err := ca.regenerateCRL(ctx, time.Now()); err != nil {
		return fmt.Errorf("pki: CRL after revocation: %w", err)
	}
	return nil
}

// RevocationChecker answers revocation for certificates of one CA from a
// source other than a CRL file (nacd's store). TrustStore consults it, for
// an anchor that has one, for every certificate it covers.
type RevocationChecker interface {
	// CheckRevocation reports whether it covers cert (issued by issuer),
	// whether cert is revoked, the age of its data and whether that data
	// is stale (the store could not be read for too long).
	CheckRevocation(cert, issuer *x509.Certificate, now time.Time) (covered, revoked bool, age time.Duration, stale bool)
	// Source names the source in policy.Revocation.Source ("store").
	Source() string
}

// RevocationSet is the in-memory set of revoked serial numbers of the
// certificates nacd's CA issued, kept in sync with the store. Lookups take
// a read lock and one map access.
type RevocationSet struct {
	mu      sync.RWMutex
	serials map[string]struct{} // big-endian serial bytes
	applied int64               // highest revocation sequence applied

	issuers  [][]byte // RawSubjectPublicKeyInfo of the CA's root and intermediate
	subjects [][]byte // their RawSubject
	lastSync atomic.Int64
	lastFull time.Time // last full resync (poll's goroutine only)
	maxAge   time.Duration
}

// revocationResyncEvery: the poller reloads every revocation this often,
// whatever the sequence says (a belt for a revocation whose transaction
// committed far behind a later one).
const revocationResyncEvery = 5 * time.Minute

// revocationStaleAfter: the set counts as stale (il3 fails closed) when the
// store could not be read for this many poll intervals (at least 15 s).
const revocationStaleAfter = 10

func newRevocationSet(root, inter *x509.Certificate, poll time.Duration) *RevocationSet {
	maxAge := revocationStaleAfter * poll
	if maxAge < 15*time.Second {
		maxAge = 15 * time.Second
	}
	return &RevocationSet{
		serials:  map[string]struct{}{},
		applied:  -1,
		issuers:  [][]byte{root.RawSubjectPublicKeyInfo, inter.RawSubjectPublicKeyInfo},
		subjects: [][]byte{root.RawSubject, inter.RawSubject},
		maxAge:   maxAge,
	}
}

// Source implements RevocationChecker.
func (s *RevocationSet) Source() string { return "store" }

// Len is the number of revoked serials in the set.
func (s *RevocationSet) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.serials)
}

// LastSync is when the set was last known to match the store.
func (s *RevocationSet) LastSync() time.Time { return time.Unix(0, s.lastSync.Load()) }

// Contains reports whether serial is revoked.
func (s *RevocationSet) Contains(serial *big.Int) bool { return s.contains(serial) }

func (s *RevocationSet) contains(serial *big.Int) bool {
	if serial == nil {
		return false
	}
	var buf [40]byte
	k := serialKey(&buf, serial)
	s.mu.RLock()
	_, ok := s.serials[string(k)]
	s.mu.RUnlock()
	return ok
}

// CheckRevocation implements RevocationChecker: it covers certificates
// whose issuer is the CA's root or intermediate.
func (s *RevocationSet) CheckRevocation(cert, issuer *x509.Certificate, now time.Time) (bool, bool, time.Duration, bool) {
	if cert == nil || issuer == nil {
		return false, false, 0, false
	}
	ours := false
	for i, k := range s.issuers {
		if bytes.Equal(k, issuer.RawSubjectPublicKeyInfo) && bytes.Equal(s.subjects[i], cert.RawIssuer) {
			ours = true
			break
		}
	}
	if !ours {
		return false, false, 0, false
	}
	age := now.Sub(s.LastSync())
	if age < 0 {
		age = 0
	}
	return true, s.contains(cert.SerialNumber), age, age > s.maxAge
}

func (s *RevocationSet) add(serial *big.Int) {
	var buf [40]byte
	k := string(serialKey(&buf, serial))
	s.mu.Lock()
	s.serials[k] = struct{}{}
	s.mu.Unlock()
}

func (s *RevocationSet) apply(es []revEntry, last int64, now time.Time) {
	s.mu.Lock()
	for _, e := range es {
		n, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok {
			continue
		}
		var buf [40]byte
		s.serials[string(serialKey(&buf, n))] = struct{}{}
	}
	if last > s.applied {
		s.applied = last
	}
	s.mu.Unlock()
	s.lastSync.Store(now.UnixNano())
}

// resync loads every revocation from the store.
func (s *RevocationSet) resync(ctx context.Context, be storeBackend) error {
	es, last, err := be.revocationsAfter(ctx, -1)
	if err != nil {
		return err
	}
	s.apply(es, last, time.Now())
	return nil
}

// poll picks up revocations made since the last poll (by any node).
func (s *RevocationSet) poll(ctx context.Context, be storeBackend, now time.Time) error {
	if now.Sub(s.lastFull) > revocationResyncEvery {
		s.lastFull = now
		return s.resync(ctx, be)
	}
	s.mu.RLock()
	after := s.applied
	s.mu.RUnlock()
	es, last, err := be.revocationsAfter(ctx, after)
	if err != nil {
		return err
	}
	if last < after { // the store went back (restored backup): start over
		return s.resync(ctx, be)
	}
	s.apply(es, last, now)
	return nil
}
