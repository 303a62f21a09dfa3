package radius

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius/eap"
	"github.com/herts-council/nacd/radius/eaptls"
)

// eapSession is what a conversation drives; *eaptls.Session implements it.
type eapSession interface {
	Start(id uint8) *eap.Packet
	Handle(resp *eap.Packet) (*eap.Packet, error)
	Result() *eaptls.Result
	Close()
}

// Eviction causes: label values of nacd_radius_eap_evictions_total.
const (
	EvictFull = "full"
	EvictIdle = "idle"
)

// conversation is one EAP conversation, keyed by its RADIUS State. mu
// serialises the requests of the conversation (the EAP-TLS session is not
// safe for concurrent use); it is never held by the table.
type conversation struct {
	mu      sync.Mutex
	state   string // the State attribute value (random bytes)
	session eapSession
	closed  atomic.Bool // evicted or finished: the session must not be used
	once    sync.Once

	// Set at creation, read-only afterwards.
	client      *Client
	started     time.Time
	eapIdentity string
	calling     string
	called      string
	ssid        string

	// Written by the Authorize callback (which may run on the EAP-TLS
	// handshake goroutine), read after Handle returns.
	authMu     sync.Mutex
	authorized bool
	identity   policy.Identity
	decision   policy.Decision
	tlsVersion uint16

	// Owned by the table, under its mutex.
	elem     *list.Element
	lastSeen time.Time
}

// lock takes the conversation for one request. It reports false if the
// conversation was closed (evicted) meanwhile; the caller must still unlock.
func (c *conversation) lock() bool {
	c.mu.Lock()
	return !c.closed.Load()
}

// unlock releases the conversation, closing its session if it was evicted
// while held.
func (c *conversation) unlock() {
	c.mu.Unlock()
	if c.closed.Load() && c.mu.TryLock() {
		c.closeSession()
		c.mu.Unlock()
	}
}

// shut marks the conversation closed and closes its session now if no
// request holds it, else when the holder unlocks.
func (c *conversation) shut() {
	c.closed.Store(true)
	if c.mu.TryLock() {
		c.closeSession()
		c.mu.Unlock()
	}
}

func (c *conversation) closeSession() {
	c.once.Do(func() {
		if c.session != nil {
			c.session.Close()
		}
	})
}

// authResult returns what Authorize recorded.
func (c *conversation) authResult() (ok bool, id policy.Identity, d policy.Decision, v uint16) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	return c.authorized, c.identity, c.decision, c.tlsVersion
}

// conversations is the EAP conversation table: keyed by State, bounded in
// size (the oldest-used conversation is evicted when full, in O(1)) and in
// idle time. Evicted conversations have their sessions closed. It owns the
// in-flight gauge and the eviction counter.
type conversations struct {
	mu  sync.Mutex
	m   map[string]*conversation
	lru list.List // front: most recently used
	max int
	ttl time.Duration

	onEvict func(cause string) // metrics; may be nil
	onSize  func(n int)        // metrics; may be nil
}

func newConversations(max int, ttl time.Duration) *conversations {
	return &conversations{m: make(map[string]*conversation), max: max, ttl: ttl}
}

// add inserts c (whose state must be unique), evicting idle conversations
// and then, while full, the least recently used one.
func (t *conversations) add(c *conversation, now time.Time) {
	var evicted []*conversation
	var causes []string
	t.mu.Lock()
	evicted, causes = t.expireLocked(now, evicted, causes)
	for len(t.m) >= t.max && t.lru.Len() > 0 {
		old := t.lru.Back().Value.(*conversation)
		t.removeLocked(old)
		evicted = append(evicted, old)
		causes = append(causes, EvictFull)
	}
	c.lastSeen = now
	c.elem = t.lru.PushFront(c)
	t.m[c.state] = c
	n := len(t.m)
	t.mu.Unlock()
	t.report(n, evicted, causes)
}

// get returns the live conversation for state and marks it used, or nil if
// there is none or it has been idle too long (it is then evicted).
func (t *conversations) get(state string, now time.Time) *conversation {
	t.mu.Lock()
	c, ok := t.m[state]
	if !ok {
		t.mu.Unlock()
		return nil
	}
	if now.Sub(c.lastSeen) >= t.ttl {
		t.removeLocked(c)
		n := len(t.m)
		t.mu.Unlock()
		t.report(n, []*conversation{c}, []string{EvictIdle})
		return nil
	}
	c.lastSeen = now
	t.lru.MoveToFront(c.elem)
	t.mu.Unlock()
	return c
}

// remove takes a finished conversation out of the table and closes it.
func (t *conversations) remove(c *conversation) {
	t.mu.Lock()
	if cur, ok := t.m[c.state]; ok && cur == c {
		t.removeLocked(c)
	}
	n := len(t.m)
	t.mu.Unlock()
	c.shut()
	if t.onSize != nil {
		t.onSize(n)
	}
}

// expire evicts every conversation idle for the TTL or longer.
func (t *conversations) expire(now time.Time) {
	t.mu.Lock()
	evicted, causes := t.expireLocked(now, nil, nil)
	n := len(t.m)
	t.mu.Unlock()
	t.report(n, evicted, causes)
}

// closeAll empties the table, closing every session.
func (t *conversations) closeAll() {
	t.mu.Lock()
	all := make([]*conversation, 0, len(t.m))
	for _, c := range t.m {
		all = append(all, c)
	}
	clear(t.m)
	t.lru.Init()
	t.mu.Unlock()
	for _, c := range all {
		c.shut()
	}
	if t.onSize != nil {
		t.onSize(0)
	}
}

func (t *conversations) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

func (t *conversations) expireLocked(now time.Time, evicted []*conversation, causes []string) ([]*conversation, []string) {
	for e := t.lru.Back(); e != nil; e = t.lru.Back() {
		c := e.Value.(*conversation)
		if now.Sub(c.lastSeen) < t.ttl {
			break
		}
		t.removeLocked(c)
		evicted = append(evicted, c)
		causes = append(causes, EvictIdle)
	}
	return evicted, causes
}

func (t *conversations) removeLocked(c *conversation) {
	delete(t.m, c.state)
	t.lru.Remove(c.elem)
	c.elem = nil
}

// report closes evicted sessions and updates metrics, outside the table lock.
func (t *conversations) report(n int, evicted []*conversation, causes []string) {
	for i, c := range evicted {
		c.shut()
		if t.onEvict != nil {
			t.onEvict(causes[i])
		}
	}
	if t.onSize != nil {
		t.onSize(n)
	}
}
