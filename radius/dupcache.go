package radius

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// dupKey identifies a request for duplicate detection (RFC 5080 section
// 2.2.2): source address and port, Identifier and Request Authenticator.
type dupKey struct {
	src  netip.AddrPort
	id   byte
	auth [16]byte
}

type dupState int

const (
	dupNew        dupState = iota // first sight: process it
	dupInProgress                 // being processed: drop the retransmission
	dupAnswered                   // answered: re-send the cached reply
)

type dupEntry struct {
	key     dupKey
	reply   []byte // nil while in progress
	expires time.Time
}

// dupCache remembers requests in progress and the replies sent, bounded in
// size (oldest evicted first) and in time (an entry lives ttl from its last
// change). Replies are cached as sent bytes, so a replay is byte-identical.
type dupCache struct {
	mu  sync.Mutex
	m   map[dupKey]*list.Element
	l   list.List // front: most recently changed
	max int
	ttl time.Duration
}

func newDupCache(max int, ttl time.Duration) *dupCache {
	return &dupCache{m: make(map[dupKey]*list.Element), max: max, ttl: ttl}
}

// begin records k as in progress unless it is known. For dupAnswered it
// returns the cached reply.
func (c *dupCache) begin(k dupKey, now time.Time) (dupState, []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
	if e, ok := c.m[k]; ok {
		ent := e.Value.(*dupEntry)
		if ent.reply == nil {
			return dupInProgress, nil
		}
		return dupAnswered, ent.reply
	}
	for len(c.m) >= c.max && c.l.Len() > 0 {
		c.removeLocked(c.l.Back())
	}
	c.m[k] = c.l.PushFront(&dupEntry{key: k, expires: now.Add(c.ttl)})
	return dupNew, nil
}

// finish stores the reply sent for k.
func (c *dupCache) finish(k dupKey, reply []byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok { // evicted while in progress
		return
	}
	ent := e.Value.(*dupEntry)
	ent.reply = reply
	ent.expires = now.Add(c.ttl)
	c.l.MoveToFront(e)
}

// abandon forgets k (the request was dropped, so a retransmission is
// processed afresh).
func (c *dupCache) abandon(k dupKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[k]; ok {
		c.removeLocked(e)
	}
}

func (c *dupCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// expireLocked drops expired entries from the back; entries are ordered by
// last change and every change sets expires to now+ttl, so the back is the
// first to expire.
func (c *dupCache) expireLocked(now time.Time) {
	for e := c.l.Back(); e != nil; e = c.l.Back() {
		if now.Before(e.Value.(*dupEntry).expires) {
			return
		}
		c.removeLocked(e)
	}
}

func (c *dupCache) removeLocked(e *list.Element) {
	delete(c.m, e.Value.(*dupEntry).key)
	c.l.Remove(e)
}
