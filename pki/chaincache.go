package pki

import (
	"container/list"
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"time"

	"github.com/herts-council/nacd/policy"
)

// DefaultChainCacheSize is the number of verified chains a TrustStore keeps
// when WithChainCacheSize is not given.
const DefaultChainCacheSize = 4096

// WithChainCacheSize bounds the verified-chain cache to n entries
// (least recently used out first); n <= 0 turns the cache off.
func WithChainCacheSize(n int) Option {
	return func(o *options) { o.chainCache = n; o.chainCacheSet = true }
}

// chainCache remembers, per set of trust anchors (one storeState: Reload
// starts an empty one), the outcome of x509.Verify for a presented chain:
// which anchor verified it and the chains it built. It saves the signature
// verifications of a device that authenticates again with the same
// certificate and intermediates.
//
// Only the signature work is cached. x509.Verify depends on its CurrentTime
// only through the validity window of each candidate certificate (the leaf,
// the intermediates the peer sent, the CA certificates of the anchors tried),
// so an entry records the interval around the time it was made in which
// none of those certificates becomes valid or invalid, and is used only for
// a time inside it: within it x509.Verify would build exactly the same
// chains for every anchor tried. Outside it the chain is verified afresh.
// EKU and revocation (CRLs and the store) are checked on every
// authentication against the time given, as without the cache; only
// positive outcomes are cached.
//
// The key is the SHA-256 of the DER of the leaf and of every intermediate,
// in the order presented: another chain with the same leaf is another key.
type chainCache struct {
	max int

	mu  sync.Mutex
	ll  *list.List // of *chainEntry, most recently used at the front
	idx map[[sha256.Size]byte]*list.Element
}

type chainEntry struct {
	key    [sha256.Size]byte
	anchor int                   // index in storeState.anchors
	chains [][]*x509.Certificate // from x509.Verify; read-only
	lo, hi time.Time             // usable for lo <= now <= hi
	// id is the leaf's attributes under the anchor's OIDs
	// (policy.IdentityFromCertificate, a pure function of the leaf's DER,
	// which the key covers, and of the anchor's configuration, fixed for
	// the cache's life), without status or revocation; read-only.
	id policy.Identity
}

func newChainCache(max int) *chainCache {
	if max <= 0 {
		return nil
	}
	return &chainCache{max: max, ll: list.New(), idx: make(map[[sha256.Size]byte]*list.Element)}
}

// chainKey hashes the DER of every certificate of chain, each preceded by
// its length so that two different splits of the same bytes differ.
func chainKey(chain []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var n [4]byte
	for _, c := range chain {
		l := len(c.Raw)
		n[0], n[1], n[2], n[3] = byte(l>>24), byte(l>>16), byte(l>>8), byte(l)
		h.Write(n[:])
		h.Write(c.Raw)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// get returns the entry for key when it is usable at now.
func (cc *chainCache) get(key [sha256.Size]byte, now time.Time) (*chainEntry, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	el, ok := cc.idx[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*chainEntry)
	if now.Before(e.lo) || now.After(e.hi) {
		return nil, false
	}
	cc.ll.MoveToFront(el)
	return e, true
}

func (cc *chainCache) put(e *chainEntry) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if el, ok := cc.idx[e.key]; ok {
		el.Value = e
		cc.ll.MoveToFront(el)
		return
	}
	cc.idx[e.key] = cc.ll.PushFront(e)
	for cc.ll.Len() > cc.max {
		last := cc.ll.Back()
		cc.ll.Remove(last)
		delete(cc.idx, last.Value.(*chainEntry).key)
	}
}

// len is the number of entries (tests).
func (cc *chainCache) len() int {
	if cc == nil {
		return 0
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.ll.Len()
}

// validityWindow narrows [lo, hi] to the interval around now in which the
// validity of none of certs changes: x509 treats a certificate as valid at
// t when NotBefore <= t <= NotAfter.
func validityWindow(lo, hi, now time.Time, certs []*x509.Certificate) (time.Time, time.Time) {
	for _, c := range certs {
		switch {
		case now.Before(c.NotBefore): // not yet valid until NotBefore
			if t := c.NotBefore.Add(-time.Nanosecond); t.Before(hi) {
				hi = t
			}
		case now.After(c.NotAfter): // expired from just after NotAfter on
			if t := c.NotAfter.Add(time.Nanosecond); t.After(lo) {
				lo = t
			}
		default:
			if c.NotBefore.After(lo) {
				lo = c.NotBefore
			}
			if c.NotAfter.Before(hi) {
				hi = c.NotAfter
			}
		}
	}
	return lo, hi
}
