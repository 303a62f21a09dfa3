package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/smallstep/certificates/authority/provisioner"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/policy"
)

// Audit event actions (event.action in the access log).
const (
	ActionCertificateIssued  = "certificate-issued"
	ActionCertificateRenewed = "certificate-renewed"
	ActionCertificateRevoked = "certificate-revoked"
)

// Issue signs csr with the facts (never the CSR's own names: its SANs must
// be empty or equal to what f implies, else ErrCSRMismatch; its subject is
// replaced by the device name; a weak key is ErrWeakKey; bad facts are
// ErrBadFacts). The inventory record is committed before the chain is
// returned. by names who issued it (operator, "token:<id>",
// "admin-api:<cn>") for the audit log. chain is leaf, intermediate.
func (ca *CA) Issue(ctx context.Context, csr *x509.CertificateRequest, f Facts, by string) ([]*x509.Certificate, error) {
	f, err := f.normalise()
	if err != nil {
		return nil, err
	}
	if err := checkCSR(csr, f); err != nil {
		return nil, err
	}
	chain, rec, err := ca.issue(ctx, csr, f, by, "")
	if err != nil {
		return nil, err
	}
	ca.issued(rec, ActionCertificateIssued)
	return chain, nil
}

// Renew issues a new certificate with the facts of cur's inventory record
// (cur must be issued by this CA, in the inventory, unexpired and not
// revoked) for csr's key (which may be cur's key or a new one). The old
// certificate stays valid until it expires (revoke it with reason
// superseded if wanted). The new certificate has cur's lifetime, starting
// now; the new record's RenewedFrom is cur's serial.
func (ca *CA) Renew(ctx context.Context, cur *x509.Certificate, csr *x509.CertificateRequest, by string) ([]*x509.Certificate, error) {
	if ca.closed.Load() {
		return nil, ErrClosed
	}
	if cur == nil || cur.SerialNumber == nil {
		return nil, fmt.Errorf("%w: no certificate", ErrNotIssuedHere)
	}
	if err := cur.CheckSignatureFrom(ca.inter); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotIssuedHere, err)
	}
	serial := serialHex(cur.SerialNumber)
	rec, err := ca.be.getRecord(ctx, serial)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: serial %s not in the inventory", ErrNotIssuedHere, serial)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: renew %s: %w", serial, err)
	}
	if rec.Status == StatusRevoked || ca.revs.contains(cur.SerialNumber) {
		return nil, fmt.Errorf("%w: %s", ErrRevoked, serial)
	}
	if rec.Kind != KindDevice {
		return nil, fmt.Errorf("%w: %s is not a device certificate", ErrBadFacts, serial)
	}
	now := time.Now()
	if now.After(cur.NotAfter) || now.Before(cur.NotBefore) {
		return nil, fmt.Errorf("pki: renew %s: certificate not valid now (%s..%s)", serial, cur.NotBefore, cur.NotAfter)
	}
	// Same facts, same lifetime as the certificate renewed.
	f := Facts{Email: rec.Email, DeviceUUID: rec.DeviceUUID, DeviceName: rec.DeviceName,
		Ownership: rec.Ownership, Role: rec.Role, ClearanceIL3: rec.ClearanceIL3,
		Validity: cur.NotAfter.Sub(cur.NotBefore) - time.Minute}
	if f.Validity <= 0 || f.Validity > ca.maxLife {
		f.Validity = 0
	}
	if f, err = f.normalise(); err != nil {
		return nil, err
	}
	if err := checkCSR(csr, f); err != nil {
		return nil, err
	}
	chain, nrec, err := ca.issue(ctx, csr, f, by, serial)
	if err != nil {
		return nil, err
	}
	ca.issued(nrec, ActionCertificateRenewed)
	return chain, nil
}

// issue signs through step's authority and records the certificate. f is
// normalised and the CSR checked.
func (ca *CA) issue(ctx context.Context, csr *x509.CertificateRequest, f Facts, by, renewedFrom string) ([]*x509.Certificate, Record, error) {
	if ca.closed.Load() {
		return nil, Record{}, ErrClosed
	}
	life := ca.cfg.DeviceValidity
	if f.Validity > 0 {
		life = f.Validity
	}
	if life > ca.maxLife {
		return nil, Record{}, fmt.Errorf("%w: validity %s exceeds the maximum %s", ErrBadFacts, life, ca.maxLife)
	}
	now := time.Now().Truncate(time.Second)
	nb, na := now.Add(-time.Minute), now.Add(life)
	if na.After(ca.inter.NotAfter) {
		na = ca.inter.NotAfter
	}
	prof := deviceProfile{f: f, notBefore: nb, notAft: na, crlURL: ca.cfg.CRLURL, ocspURL: ca.cfg.OCSPURL}
	chain, err := ca.sign(ctx, csr, prof)
	if err != nil {
		return nil, Record{}, err
	}
	leaf := chain[0]
	rec := Record{
		Serial: serialHex(leaf.SerialNumber), Email: f.Email, DeviceUUID: f.DeviceUUID, DeviceName: f.DeviceName,
		Kind: KindDevice, Ownership: f.Ownership, Role: f.Role, ClearanceIL3: f.ClearanceIL3,
		NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(), Status: StatusValid,
		IssuedAt: time.Now().UTC(), IssuedBy: by, RenewedFrom: renewedFrom, Certificate: leaf.Raw,
	}
	// The record is committed before anyone sees the chain.
	if err := ca.be.putRecord(ctx, rec); err != nil {
		return nil, Record{}, fmt.Errorf("pki: record certificate %s: %w", rec.Serial, err)
	}
	return chain, rec, nil
}

// sign runs step's SignWithContext with nacd's profile (modifier) and the
// lifetime check (validator), and checks what came back.
func (ca *CA) sign(ctx context.Context, csr *x509.CertificateRequest, prof provisioner.CertificateModifier) ([]*x509.Certificate, error) {
	chain, err := ca.auth.SignWithContext(ctx, csr, provisioner.SignOptions{},
		ca.prov, prof, validityCheck{max: ca.maxLife, inter: ca.inter})
	if err != nil {
		return nil, fmt.Errorf("pki: sign: %w", err)
	}
	if len(chain) == 0 || chain[0] == nil {
		return nil, errors.New("pki: sign: empty chain")
	}
	leaf := chain[0]
	if !leaf.NotAfter.After(leaf.NotBefore) || time.Now().After(leaf.NotAfter) {
		return nil, fmt.Errorf("pki: sign: issued certificate has no usable validity (%s..%s)", leaf.NotBefore, leaf.NotAfter)
	}
	if err := leaf.CheckSignatureFrom(ca.inter); err != nil {
		return nil, fmt.Errorf("pki: sign: %w", err)
	}
	return chain, nil
}

// issued counts and audits an issuance or renewal.
func (ca *CA) issued(r Record, action string) {
	ca.metrics.issued.WithLabelValues(string(r.Role), string(r.Ownership)).Inc()
	fields := []zap.Field{
		zap.String("event.action", action),
		zap.String("event.category", "pki"),
		zap.String("user.name", r.IssuedBy),
		zap.String("holder.email", r.Email),
		zap.String("device.uuid", r.DeviceUUID),
		zap.String("device.name", r.DeviceName),
		zap.String("certificate.serial", r.Serial),
		zap.String("certificate.ownership", string(r.Ownership)),
		zap.String("certificate.role", string(r.Role)),
		zap.Bool("certificate.clearance_il3", r.ClearanceIL3),
		zap.Time("certificate.not_after", r.NotAfter),
	}
	if r.RenewedFrom != "" {
		fields = append(fields, zap.String("certificate.renewed_from", r.RenewedFrom))
	}
	ca.audit.Load().Info(action, fields...)
}

// serialHex is the inventory form of a serial: lower-case hex, as
// policy.Identity.Serial.
func serialHex(s *big.Int) string { return s.Text(16) }

// parseSerial accepts hex ("0x" prefix, colons and upper case allowed).
func parseSerial(s string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimPrefix(t, "0x")
	t = strings.ReplaceAll(t, ":", "")
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || n.Sign() <= 0 || len(t) > 64 {
		return "", fmt.Errorf("%w: serial %q is not a positive hex number", ErrNotFound, s)
	}
	return n.Text(16), nil
}

// List returns the inventory records matching filter, oldest first.
// Status "expired" is computed (valid and past NotAfter).
func (ca *CA) List(ctx context.Context, filter ListFilter) ([]Record, error) {
	var (
		rs  []Record
		err error
	)
	switch {
	case filter.Holder != "":
		rs, err = ca.be.byHolder(ctx, strings.TrimSpace(filter.Holder))
	case filter.Device != "":
		rs, err = ca.be.byDevice(ctx, strings.TrimPrefix(strings.ToLower(strings.TrimSpace(filter.Device)), "urn:uuid:"))
	default:
		rs, err = ca.be.allRecords(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: list: %w", err)
	}
	now := time.Now()
	out := rs[:0]
	for _, r := range rs {
		r = withComputedStatus(r, now)
		if filter.Device != "" && !strings.EqualFold(r.DeviceUUID, strings.TrimPrefix(strings.ToLower(strings.TrimSpace(filter.Device)), "urn:uuid:")) {
			continue
		}
		if filter.Status != "" && r.Status != filter.Status {
			continue
		}
		if filter.ExpiringWithin > 0 && (r.Status != StatusValid || r.NotAfter.After(now.Add(filter.ExpiringWithin))) {
			continue
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].IssuedAt.Equal(out[j].IssuedAt) {
			return out[i].IssuedAt.Before(out[j].IssuedAt)
		}
		return out[i].Serial < out[j].Serial
	})
	return out, nil
}

func withComputedStatus(r Record, now time.Time) Record {
	if r.Status == StatusValid && now.After(r.NotAfter) {
		r.Status = StatusExpired
	}
	return r
}

// Status returns the inventory record of a serial (ErrNotFound when this
// CA never issued it), for OCSP: Status (valid, revoked or expired),
// RevokedAt, Reason.
func (ca *CA) Status(ctx context.Context, serial *big.Int) (Record, error) {
	if serial == nil || serial.Sign() <= 0 {
		return Record{}, ErrNotFound
	}
	r, err := ca.be.getRecord(ctx, serialHex(serial))
	if err != nil {
		return Record{}, err
	}
	return withComputedStatus(r, time.Now()), nil
}

// recordFromCert reads the facts back from a certificate this CA issued.
func recordFromCert(c *x509.Certificate, by string) Record {
	id := policy.IdentityFromCertificate(c, policy.DefaultOIDs())
	r := Record{
		Serial: serialHex(c.SerialNumber), Email: id.Email, DeviceUUID: id.DeviceUUID, DeviceName: c.Subject.CommonName,
		Kind: KindDevice, Ownership: id.Ownership, Role: id.Role, ClearanceIL3: id.ClearanceIL3,
		NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(), Status: StatusValid,
		IssuedAt: c.NotBefore.Add(time.Minute).UTC(), IssuedBy: by, Certificate: c.Raw,
	}
	if !hasEKU(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		r.Kind = KindServer
	}
	return r
}

// reconcile records every certificate in step's table that this CA issued
// and the inventory lacks (issued, then the process died before the
// record was written: nobody received it, but it exists).
func (ca *CA) reconcile(ctx context.Context) error {
	es, err := stepCerts(ca.authDB)
	if err != nil {
		return err
	}
	certs := make(map[string]*x509.Certificate, len(es))
	serials := make([]string, 0, len(es))
	for _, e := range es {
		n, ok := new(big.Int).SetString(string(e.Key), 10)
		if !ok {
			continue
		}
		s := serialHex(n)
		serials = append(serials, s)
		certs[s] = nil
		_ = e
	}
	have, err := ca.be.hasRecords(ctx, serials)
	if err != nil {
		return err
	}
	for _, e := range es {
		n, ok := new(big.Int).SetString(string(e.Key), 10)
		if !ok || have[serialHex(n)] {
			continue
		}
		c, err := x509.ParseCertificate(e.Value)
		if err != nil || c.CheckSignatureFrom(ca.inter) != nil {
			continue // not ours (an older CA replaced with --force)
		}
		r := recordFromCert(c, "recovered")
		if err := ca.be.putRecord(ctx, r); err != nil {
			return err
		}
		ca.log.Warn("recorded a certificate missing from the inventory (issuance interrupted)",
			zap.String("serial", r.Serial), zap.String("holder", r.Email), zap.String("device", r.DeviceUUID))
	}
	return nil
}

// issueServer issues a server certificate for names with a fresh P-256 key.
func (ca *CA) issueServer(ctx context.Context, names []string, life time.Duration, by string) ([]*x509.Certificate, crypto.Signer, error) {
	if ca.closed.Load() {
		return nil, nil, ErrClosed
	}
	if len(names) == 0 {
		return nil, nil, fmt.Errorf("%w: no server name", ErrBadFacts)
	}
	for _, n := range names {
		if _, err := netip.ParseAddr(n); err != nil && !validDNSName(n) {
			return nil, nil, fmt.Errorf("%w: server name %q", ErrBadFacts, n)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, err
	}
	req, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now().Truncate(time.Second)
	na := now.Add(life)
	if na.After(ca.inter.NotAfter) {
		na = ca.inter.NotAfter
	}
	chain, err := ca.sign(ctx, req, serverProfile{names: names, notBefore: now.Add(-time.Minute), notAft: na, crlURL: ca.cfg.CRLURL, ocspURL: ca.cfg.OCSPURL})
	if err != nil {
		return nil, nil, err
	}
	leaf := chain[0]
	rec := Record{Serial: serialHex(leaf.SerialNumber), DeviceName: names[0], Kind: KindServer,
		NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(), Status: StatusValid,
		IssuedAt: now.UTC(), IssuedBy: by, Certificate: leaf.Raw, Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleUnknown}
	if err := ca.be.putRecord(ctx, rec); err != nil {
		return nil, nil, fmt.Errorf("pki: record server certificate: %w", err)
	}
	ca.audit.Load().Info(ActionCertificateIssued, zap.String("event.action", ActionCertificateIssued), zap.String("event.category", "pki"),
		zap.String("user.name", by), zap.String("certificate.serial", rec.Serial), zap.String("certificate.kind", KindServer),
		zap.Strings("server.names", names), zap.Time("certificate.not_after", rec.NotAfter))
	return chain, key, nil
}
