package pki

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"

	"go.uber.org/zap"
)

// crlKeepExpired: a revoked certificate stays on the CRL this long after
// it expired, then drops off (the CRL does not grow forever).
const crlKeepExpired = 24 * time.Hour

// publishedCRL is this node's copy of the current CRL.
type publishedCRL struct {
	head   crlHead
	parsed *x509.RevocationList
}

// CRL returns the current CRL (DER), signed by the intermediate: the one in
// the store (any node may have generated it), regenerated first when
// missing or older than a third of its validity.
func (ca *CA) CRL(ctx context.Context) ([]byte, error) {
	if ca.closed.Load() {
		return nil, ErrClosed
	}
	p, err := ca.ensureCRL(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	return p.head.DER, nil
}

// CRLNumber is the number of this node's current CRL.
func (ca *CA) CRLNumber() int64 {
	if p := ca.crl.Load(); p != nil {
		return p.head.Number
	}
	return 0
}

// crlFresh reports whether h is a usable CRL of this CA at now.
func (ca *CA) crlFresh(h crlHead, now time.Time) bool {
	if h.Number == 0 || len(h.DER) == 0 {
		return false
	}
	if now.Sub(h.ThisUpdate) > ca.cfg.CRLValidity/3 || !now.Before(h.NextUpdate) {
		return false
	}
	return true
}

// ensureCRL returns the current CRL, loading a newer one from the store
// (another node's) and regenerating it when missing, stale, or not signed
// by this CA's intermediate (after init --force).
func (ca *CA) ensureCRL(ctx context.Context, now time.Time) (*publishedCRL, error) {
	cached := ca.crl.Load()
	n, err := ca.be.crlNumber(ctx)
	if err != nil {
		if cached != nil {
			return cached, nil // serve the last good one; the poller logs
		}
		return nil, err
	}
	if cached != nil && cached.head.Number == n && ca.crlFresh(cached.head, now) {
		return cached, nil
	}
	if cached == nil || cached.head.Number != n {
		h, err := ca.be.currentCRL(ctx)
		if err != nil {
			return nil, err
		}
		if p, err := ca.parseCRL(h); err == nil && ca.crlFresh(h, now) {
			ca.crl.Store(p)
			return p, nil
		}
	}
	return ca.regenerate(ctx, now, false)
}

// regenerateCRL signs a new CRL from every revocation in the store.
func (ca *CA) regenerateCRL(ctx context.Context, now time.Time) (*publishedCRL, error) {
	return ca.regenerate(ctx, now, true)
}

func (ca *CA) regenerate(ctx context.Context, now time.Time, force bool) (*publishedCRL, error) {
	ca.crlMu.Lock()
	defer ca.crlMu.Unlock()
	h, err := ca.be.updateCRL(ctx, func(cur crlHead, revoked []revEntry) (*crlHead, error) {
		if !force && ca.crlFresh(cur, now) {
			if _, err := ca.parseCRL(cur); err == nil {
				return nil, nil // another node just renewed it
			}
		}
		return ca.buildCRL(cur.Number+1, revoked, now)
	})
	if err != nil {
		return nil, err
	}
	p, err := ca.parseCRL(h)
	if err != nil {
		return nil, err
	}
	if old := ca.crl.Load(); old == nil || old.head.Number <= p.head.Number {
		ca.crl.Store(p)
	}
	ca.log.Debug("CRL published", zap.Int64("number", h.Number), zap.Int("entries", len(p.parsed.RevokedCertificateEntries)))
	return p, nil
}

func (ca *CA) buildCRL(number int64, revoked []revEntry, now time.Time) (*crlHead, error) {
	now = now.UTC().Truncate(time.Second)
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	seen := make(map[string]bool, len(revoked))
	for _, e := range revoked {
		if seen[e.Serial] || (!e.NotAfter.IsZero() && now.After(e.NotAfter.Add(crlKeepExpired))) {
			continue
		}
		n, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok {
			continue
		}
		seen[e.Serial] = true
		entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: e.RevokedAt.UTC(), ReasonCode: int(e.Reason)})
	}
	next := now.Add(ca.cfg.CRLValidity)
	if next.After(ca.inter.NotAfter) {
		next = ca.inter.NotAfter
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                now,
		NextUpdate:                next,
		RevokedCertificateEntries: entries,
	}, ca.inter, ca.signer)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	return &crlHead{Number: number, ThisUpdate: now, NextUpdate: next, DER: der}, nil
}

func (ca *CA) parseCRL(h crlHead) (*publishedCRL, error) {
	if len(h.DER) == 0 {
		return nil, errors.New("no CRL")
	}
	rl, err := x509.ParseRevocationList(h.DER)
	if err != nil {
		return nil, err
	}
	if err := rl.CheckSignatureFrom(ca.inter); err != nil {
		return nil, err
	}
	return &publishedCRL{head: h, parsed: rl}, nil
}
