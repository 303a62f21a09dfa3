package radius

import (
	"net/netip"
	"testing"
	"time"
)

func TestDupCache(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	src := netip.MustParseAddrPort("192.0.2.1:40000")
	key := func(id byte) dupKey { return dupKey{src: src, id: id} }

	t.Run("new, in progress, answered, replayed", func(t *testing.T) {
		c := newDupCache(10, 5*time.Second)
		if st, _ := c.begin(key(1), t0); st != dupNew {
			t.Fatalf("first sight %v", st)
		}
		if st, _ := c.begin(key(1), t0); st != dupInProgress {
			t.Fatalf("second sight while processing %v", st)
		}
		c.finish(key(1), []byte("reply"), t0)
		st, b := c.begin(key(1), t0.Add(time.Second))
		if st != dupAnswered || string(b) != "reply" {
			t.Fatalf("after finish %v %q", st, b)
		}
	})
	t.Run("key includes port, identifier and authenticator", func(t *testing.T) {
		c := newDupCache(10, 5*time.Second)
		c.begin(key(1), t0)
		c.finish(key(1), []byte("r"), t0)
		others := []dupKey{
			{src: netip.MustParseAddrPort("192.0.2.1:40001"), id: 1},
			{src: netip.MustParseAddrPort("192.0.2.2:40000"), id: 1},
			{src: src, id: 2},
			{src: src, id: 1, auth: [16]byte{1}},
		}
		for _, k := range others {
			if st, _ := c.begin(k, t0); st != dupNew {
				t.Fatalf("%+v seen as duplicate", k)
			}
		}
	})
	t.Run("expires after the window", func(t *testing.T) {
		c := newDupCache(10, 5*time.Second)
		c.begin(key(1), t0)
		c.finish(key(1), []byte("r"), t0)
		if st, _ := c.begin(key(1), t0.Add(5*time.Second)); st != dupNew {
			t.Fatalf("after the window %v, want new", st)
		}
	})
	t.Run("abandoned request is processed afresh", func(t *testing.T) {
		c := newDupCache(10, 5*time.Second)
		c.begin(key(1), t0)
		c.abandon(key(1))
		if st, _ := c.begin(key(1), t0); st != dupNew {
			t.Fatalf("after abandon %v", st)
		}
	})
	t.Run("bounded, oldest evicted", func(t *testing.T) {
		c := newDupCache(4, time.Hour)
		for id := range byte(10) {
			c.begin(key(id), t0.Add(time.Duration(id)*time.Millisecond))
			c.finish(key(id), []byte{id}, t0.Add(time.Duration(id)*time.Millisecond))
			if c.len() > 4 {
				t.Fatalf("len %d > 4", c.len())
			}
		}
		if st, _ := c.begin(key(9), t0.Add(time.Second)); st != dupAnswered {
			t.Fatalf("newest evicted: %v", st)
		}
		if st, _ := c.begin(key(0), t0.Add(time.Second)); st != dupNew {
			t.Fatalf("oldest kept: %v", st)
		}
	})
}
