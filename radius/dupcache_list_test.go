package radius

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// TestDupCacheListInvariants: after any sequence of begin, finish and
// abandon (with evictions and expiry), the intrusive list holds exactly the
// map's entries, linked both ways, ordered by last change.
func TestDupCacheListInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := newDupCache(8, 50*time.Millisecond)
	now := time.Unix(1_700_000_000, 0)
	src := netip.MustParseAddrPort("192.0.2.1:40000")
	for i := range 5000 {
		now = now.Add(time.Duration(rng.IntN(5)) * time.Millisecond)
		k := dupKey{src: src, id: byte(rng.IntN(24))}
		switch rng.IntN(3) {
		case 0:
			c.begin(k, now)
		case 1:
			c.finish(k, []byte{byte(i)}, now)
		case 2:
			c.abandon(k)
		}
		n := 0
		var prev *dupEntry
		for e := c.front; e != nil; prev, e = e, e.next {
			n++
			if e.prev != prev {
				t.Fatalf("op %d: entry %d: prev link broken", i, n)
			}
			if c.m[e.key] != e {
				t.Fatalf("op %d: listed entry not in the map", i)
			}
			if prev != nil && prev.expires.Before(e.expires) {
				t.Fatalf("op %d: list not ordered by last change", i)
			}
		}
		if c.back != prev {
			t.Fatalf("op %d: back is not the last entry", i)
		}
		if n != len(c.m) || n > 8 {
			t.Fatalf("op %d: %d listed, %d in the map (max 8)", i, n, len(c.m))
		}
	}
}
