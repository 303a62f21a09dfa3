package radius

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herts-council/nacd/radius/eap"
	"github.com/herts-council/nacd/radius/eaptls"
)

// countingSession counts Close calls.
type countingSession struct{ closed atomic.Int32 }

func (s *countingSession) Start(uint8) *eap.Packet                 { return nil }
func (s *countingSession) Handle(*eap.Packet) (*eap.Packet, error) { return nil, nil }
func (s *countingSession) Result() *eaptls.Result                  { return nil }
func (s *countingSession) Close()                                  { s.closed.Add(1) }

func newConv(state string) (*conversation, *countingSession) {
	s := &countingSession{}
	return &conversation{state: state, session: s, client: &Client{Name: "nas"}}, s
}

func TestConversationsLRU(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name    string
		touch   []string // states looked up after adding a, b, c
		evicted string   // evicted when d is added
	}{
		{"untouched: oldest goes", nil, "a"},
		{"a used: b goes", []string{"a"}, "b"},
		{"a and b used: c goes", []string{"a", "b"}, "c"},
		{"c then a then b used: c goes", []string{"c", "a", "b"}, "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newConversations(3, time.Minute)
			var causes []string
			tab.onEvict = func(c string) { causes = append(causes, c) }
			sessions := map[string]*countingSession{}
			now := t0
			for _, st := range []string{"a", "b", "c"} {
				c, s := newConv(st)
				sessions[st] = s
				now = now.Add(time.Second)
				tab.add(c, now)
			}
			for _, st := range tt.touch {
				now = now.Add(time.Second)
				if tab.get(st, now) == nil {
					t.Fatalf("%s missing", st)
				}
			}
			d, _ := newConv("d")
			tab.add(d, now.Add(time.Second))
			if tab.len() != 3 {
				t.Fatalf("len %d, want 3", tab.len())
			}
			if tab.get(tt.evicted, now) != nil {
				t.Fatalf("%s still present, want it evicted", tt.evicted)
			}
			if sessions[tt.evicted].closed.Load() != 1 {
				t.Fatalf("evicted session closed %d times, want 1", sessions[tt.evicted].closed.Load())
			}
			if len(causes) != 1 || causes[0] != EvictFull {
				t.Fatalf("eviction causes %v, want [full]", causes)
			}
		})
	}
}

func TestConversationsIdleTTL(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	ttl := 30 * time.Second
	tests := []struct {
		name  string
		after time.Duration
		alive bool
	}{
		{"fresh", time.Second, true},
		{"just before the TTL", ttl - time.Nanosecond, true},
		{"at the TTL", ttl, false},
		{"long idle", time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newConversations(10, ttl)
			var idle int
			tab.onEvict = func(c string) {
				if c == EvictIdle {
					idle++
				}
			}
			c, s := newConv("x")
			tab.add(c, t0)
			got := tab.get("x", t0.Add(tt.after))
			if (got != nil) != tt.alive {
				t.Fatalf("alive = %v, want %v", got != nil, tt.alive)
			}
			if !tt.alive && (s.closed.Load() != 1 || idle != 1 || tab.len() != 0) {
				t.Fatalf("expired: closed %d, idle evictions %d, len %d", s.closed.Load(), idle, tab.len())
			}
		})
	}

	// expire sweeps without lookups; a used conversation stays.
	tab := newConversations(10, ttl)
	for i := range 5 {
		c, _ := newConv(fmt.Sprint(i))
		tab.add(c, t0)
	}
	tab.get("3", t0.Add(20*time.Second))
	tab.expire(t0.Add(40 * time.Second))
	if tab.len() != 1 || tab.get("3", t0.Add(41*time.Second)) == nil {
		t.Fatalf("after sweep len %d, want only the used conversation", tab.len())
	}
}

// TestConversationsEvictWhileHeld: an evicted conversation whose request is
// in progress is closed when the request releases it, not under it.
func TestConversationsEvictWhileHeld(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tab := newConversations(1, time.Minute)
	a, sa := newConv("a")
	tab.add(a, now)
	if !a.lock() {
		t.Fatal("fresh conversation reported closed")
	}
	b, _ := newConv("b")
	tab.add(b, now) // evicts a while held
	if sa.closed.Load() != 0 {
		t.Fatal("session closed while a request holds it")
	}
	a.unlock()
	if sa.closed.Load() != 1 {
		t.Fatalf("session closed %d times after release, want 1", sa.closed.Load())
	}
	if a.lock() {
		t.Fatal("evicted conversation reported live")
	}
	a.unlock()
	if sa.closed.Load() != 1 {
		t.Fatal("session closed twice")
	}
}

// TestConversationsBoundUnderFlood: concurrent adds and lookups never take
// the table past its bound, and every evicted session is closed.
func TestConversationsBoundUnderFlood(t *testing.T) {
	const max, workers, per = 64, 8, 500
	tab := newConversations(max, time.Minute)
	var over atomic.Int32
	var evictions atomic.Int32
	tab.onEvict = func(string) { evictions.Add(1) }
	tab.onSize = func(n int) {
		if n > max {
			over.Add(1)
		}
	}
	now := time.Unix(1_700_000_000, 0)
	var all sync.Map
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				st := fmt.Sprintf("%d-%d", w, i)
				c, s := newConv(st)
				all.Store(st, s)
				tab.add(c, now)
				if got := tab.get(st, now); got != nil {
					got.lock() // live or evicted meanwhile: unlock either way
					got.unlock()
				}
			}
		}()
	}
	wg.Wait()
	if over.Load() != 0 || tab.len() != max {
		t.Fatalf("table exceeded its bound %d times, len %d (want %d)", over.Load(), tab.len(), max)
	}
	if int(evictions.Load()) != workers*per-max {
		t.Fatalf("%d evictions, want %d", evictions.Load(), workers*per-max)
	}
	closed := 0
	all.Range(func(_, v any) bool {
		if v.(*countingSession).closed.Load() > 0 {
			closed++
		}
		return true
	})
	if closed != workers*per-max {
		t.Fatalf("%d sessions closed, want %d", closed, workers*per-max)
	}
	tab.closeAll()
	if tab.len() != 0 {
		t.Fatal("closeAll left conversations")
	}
}
