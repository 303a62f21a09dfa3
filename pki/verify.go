package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"slices"
	"time"

	"github.com/herts-council/nacd/policy"
)

// VerifyClient verifies a client certificate chain (leaf first, then the
// intermediates the peer sent, in any order) at now and returns the leaf's
// identity with Anchor, AnchorIL3, Status and Revocation filled. It never
// returns Status CertOK for a chain it could not verify. Its signature
// matches radius.CertificateVerifier.
//
// In order:
//   - an empty chain, a nil certificate or a leaf that is a CA: CertInvalid;
//   - the leaf's validity window against now: CertNotYetValid, CertExpired;
//   - x509.Verify against each anchor in configuration order (roots from
//     its CA files; intermediates from the chain and from its CA files):
//     the first anchor that verifies is the chain's anchor. When none
//     does: CertExpired or CertNotYetValid if the failure was an
//     intermediate's validity, else CertUntrusted;
//   - EKU: the leaf must assert clientAuth explicitly (anyExtendedKeyUsage
//     alone, no EKU extension, or serverAuth only: CertWrongEKU), and every
//     CA certificate of the chain that restricts EKUs must allow clientAuth
//     or any;
//   - revocation: every certificate of the verified chain except the
//     anchor's root is looked up in the CRL of its issuer. Revoked:
//     CertRevoked. Revocation.Checked is true only when a CRL covered every
//     one of them; Age is that of the oldest CRL used and Stale is set when
//     any of them is stale. A certificate no CRL covers is "missing"
//     (Checked false and Stale true) when the anchor has RequireCRL or one
//     of its CRL sources has not loaded yet; otherwise (the anchor has no
//     CRL for that issuer and does not require one) it is only unchecked
//     (Checked false, Stale false: policy refuses il3, may allow general).
//     With StaleFailClosed, Stale gives CertRevocationStale.
//
// The signature work of x509.Verify is cached per presented chain (see
// chainCache and WithChainCacheSize): a hit gives exactly what x509.Verify
// would at now; EKU, validity and revocation are still checked every time.
//
// Attribute fields come from policy.IdentityFromCertificate with the
// anchor's OIDs; when no anchor verified the chain, no OID mapping applies
// (personal, role unknown) and Anchor is empty.
func (ts *TrustStore) VerifyClient(chain []*x509.Certificate, now time.Time) policy.Identity {
	if len(chain) == 0 || chain[0] == nil {
		id := policy.IdentityFromCertificate(nil, policy.OIDs{})
		id.Status = policy.CertInvalid
		return id
	}
	leaf := chain[0]
	status := policy.CertUntrusted
	switch {
	case hasNil(chain[1:]) || (leaf.BasicConstraintsValid && leaf.IsCA):
		status = policy.CertInvalid
	case now.Before(leaf.NotBefore):
		status = policy.CertNotYetValid
	case now.After(leaf.NotAfter):
		status = policy.CertExpired
	default:
		return ts.verify(chain, now)
	}
	id := policy.IdentityFromCertificate(leaf, policy.OIDs{})
	id.Status = status
	return id
}

func hasNil(certs []*x509.Certificate) bool {
	for _, c := range certs {
		if c == nil {
			return true
		}
	}
	return false
}

func (ts *TrustStore) verify(chain []*x509.Certificate, now time.Time) policy.Identity {
	leaf := chain[0]
	st := ts.state.Load()
	cache := st.chains
	if cache != nil && !allRaw(chain) {
		cache = nil // a hand-built certificate has no DER to key on
	}
	var key [32]byte
	if cache != nil {
		key = chainKey(chain)
		if e, ok := cache.get(key, now); ok {
			id := e.id
			id.PolicyOIDs = slices.Clone(id.PolicyOIDs) // the caller's copy
			return st.anchors[e.anchor].checked(id, e.chains, now)
		}
	}
	var peer *x509.CertPool
	if len(chain) > 1 {
		peer = x509.NewCertPool()
		for _, c := range chain[1:] {
			peer.AddCert(c)
		}
	}
	// lo..hi: where no candidate certificate's validity differs from now's.
	lo, hi := validityWindow(time.Time{}, maxTime, now, chain)
	status := policy.CertUntrusted
	for i, a := range st.anchors {
		if cache != nil {
			lo, hi = validityWindow(lo, hi, now, a.cas)
		}
		inter := peer
		switch {
		case a.inter != nil && peer != nil:
			inter = a.inter.Clone()
			for _, c := range chain[1:] {
				inter.AddCert(c)
			}
		case a.inter != nil:
			inter = a.inter
		}
		chains, err := leaf.Verify(x509.VerifyOptions{
			Roots:         a.roots,
			Intermediates: inter,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			if s := validityStatus(err, now); s != "" {
				status = s
			}
			continue
		}
		id := a.attributes(leaf)
		if cache != nil && !hi.Before(lo) {
			cache.put(&chainEntry{key: key, anchor: i, chains: chains, lo: lo, hi: hi, id: id})
			id.PolicyOIDs = slices.Clone(id.PolicyOIDs) // the entry keeps its own
		}
		return a.checked(id, chains, now)
	}
	id := policy.IdentityFromCertificate(leaf, policy.OIDs{})
	id.Status = status
	return id
}

// maxTime is later than any certificate's NotAfter.
var maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

func allRaw(certs []*x509.Certificate) bool {
	for _, c := range certs {
		if len(c.Raw) == 0 {
			return false
		}
	}
	return true
}

// attributes is the identity of leaf under a (its OIDs, its name and il3
// flag), before any status.
func (a *anchor) attributes(leaf *x509.Certificate) policy.Identity {
	id := policy.IdentityFromCertificate(leaf, a.cfg.OIDs)
	id.Anchor = a.cfg.Name
	id.AnchorIL3 = a.cfg.IL3
	return id
}

// checked is id (a's attributes of the leaf of chains, x509.Verify's
// result) with EKU and revocation checked at now.
func (a *anchor) checked(id policy.Identity, chains [][]*x509.Certificate, now time.Time) policy.Identity {
	id.Status, id.Revocation = a.check(chains, now)
	return id
}

// validityStatus maps an x509.Verify failure caused by a certificate's
// validity window (an intermediate's: the leaf's was checked before) to a
// status, or "" for any other failure.
func validityStatus(err error, now time.Time) policy.CertStatus {
	var inv x509.CertificateInvalidError
	if !errors.As(err, &inv) || inv.Reason != x509.Expired || inv.Cert == nil {
		return ""
	}
	if now.Before(inv.Cert.NotBefore) {
		return policy.CertNotYetValid
	}
	return policy.CertExpired
}

// check applies the EKU and revocation checks to the chains x509.Verify
// built (leaf first, root last) and returns the status and revocation of
// the best one: the first chain that passes, else the first failure.
func (a *anchor) check(chains [][]*x509.Certificate, now time.Time) (policy.CertStatus, policy.Revocation) {
	if !hasEKU(chains[0][0].ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return policy.CertWrongEKU, policy.Revocation{}
	}
	idx := a.crls.Load()
	var (
		firstStatus policy.CertStatus
		firstRev    policy.Revocation
	)
	for i, c := range chains {
		if !caEKUsAllowClientAuth(c) {
			if i == 0 {
				firstStatus = policy.CertWrongEKU
			}
			continue
		}
		rev := a.revocation(idx, c, now)
		status := policy.CertOK
		switch {
		case rev.Revoked:
			status = policy.CertRevoked
		case a.cfg.StaleFailClosed && rev.Stale:
			status = policy.CertRevocationStale
		}
		if status == policy.CertOK {
			return status, rev
		}
		if firstStatus == "" {
			firstStatus, firstRev = status, rev
		}
	}
	if firstStatus == "" {
		firstStatus = policy.CertWrongEKU
	}
	return firstStatus, firstRev
}

// revocation looks every certificate of chain but the last (the anchor's
// root) up in its issuer's CRL.
func (a *anchor) revocation(idx *crlIndex, chain []*x509.Certificate, now time.Time) policy.Revocation {
	var rev policy.Revocation
	covered, byStore := 0, 0
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		if rc := a.cfg.Revocations; rc != nil {
			if ok, revoked, age, stale := rc.CheckRevocation(cert, issuer, now); ok {
				covered++
				byStore++
				rev.Revoked = rev.Revoked || revoked
				rev.Stale = rev.Stale || stale
				if covered == 1 || age > rev.Age {
					rev.Age = age
				}
				continue
			}
		}
		crl := idx.byKey[string(issuer.RawSubjectPublicKeyInfo)]
		if crl == nil || !bytes.Equal(crl.issuer.RawSubject, cert.RawIssuer) || !crl.covers(cert) {
			continue
		}
		covered++
		if crl.isRevoked(cert.SerialNumber) {
			rev.Revoked = true
		}
		if age := now.Sub(crl.thisUpdate); covered == 1 || age > rev.Age {
			rev.Age = age
		}
		if crl.stale(now, a.cfg.CRLMaxAge) {
			rev.Stale = true
		}
	}
	switch {
	case byStore > 0 && byStore == covered:
		rev.Source = a.cfg.Revocations.Source()
	case covered > 0:
		rev.Source = "crl:" + a.cfg.Name
	}
	// A revocation found is known even when another certificate of the
	// chain had no CRL; "not revoked" is known only when all were covered.
	rev.Checked = rev.Revoked || covered == len(chain)-1
	if !rev.Checked && (a.cfg.RequireCRL || idx.unloaded) {
		// Missing revocation data where it is expected counts as stale.
		rev.Stale = true
	}
	return rev
}

func hasEKU(ekus []x509.ExtKeyUsage, want x509.ExtKeyUsage) bool {
	for _, e := range ekus {
		if e == want {
			return true
		}
	}
	return false
}

// caEKUsAllowClientAuth reports whether every CA certificate of the chain
// that restricts EKUs allows clientAuth (as x509.Verify would check with
// KeyUsages clientAuth).
func caEKUsAllowClientAuth(chain []*x509.Certificate) bool {
	for _, c := range chain[1:] {
		if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
			continue
		}
		if !hasEKU(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !hasEKU(c.ExtKeyUsage, x509.ExtKeyUsageAny) {
			return false
		}
	}
	return true
}
