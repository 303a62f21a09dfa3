package radius

import (
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

	prev, next *dupEntry // the cache's list; nil at the ends
}

// dupCache remembers requests in progress and the replies sent, bounded in
// size (oldest evicted first) and in time (an entry lives ttl from its last
// change). Replies are cached as sent bytes, so a replay is byte-identical;
// they are never a pooled buffer (encodeResponse allocates each).
//
// The entries form an intrusive doubly linked list ordered by last change
// (front: most recent), so an entry is one allocation.
type dupCache struct {
	mu          sync.Mutex
	m           map[dupKey]*dupEntry
	front, back *dupEntry
	max         int
	ttl         time.Duration
}

func newDupCache(max int, ttl time.Duration) *dupCache {
	return &dupCache{m: make(map[dupKey]*dupEntry), max: max, ttl: ttl}
}

// begin records k as in progress unless it is known. For dupAnswered it
// returns the cached reply.
func (c *dupCache) begin(k dupKey, now time.Time) (dupState, []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
	if e, ok := c.m[k]; ok {
		if e.reply == nil {
			return dupInProgress, nil
		}
		return dupAnswered, e.reply
	}
	for len(c.m) >= c.max && c.back != nil {
		c.removeLocked(c.back)
	}
	e := &dupEntry{key: k, expires: now.Add(c.ttl)}
	c.pushFrontLocked(e)
	c.m[k] = e
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
	e.reply = reply
	e.expires = now.Add(c.ttl)
	c.unlinkLocked(e)
	c.pushFrontLocked(e)
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
	for e := c.back; e != nil; e = c.back {
		if now.Before(e.expires) {
			return
		}
		c.removeLocked(e)
	}
}

func (c *dupCache) removeLocked(e *dupEntry) {
	delete(c.m, e.key)
	c.unlinkLocked(e)
}

func (c *dupCache) pushFrontLocked(e *dupEntry) {
	e.prev, e.next = nil, c.front
	if c.front != nil {
		c.front.prev = e
	} else {
		c.back = e
	}
	c.front = e
}

func (c *dupCache) unlinkLocked(e *dupEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.front = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.back = e.prev
	}
	e.prev, e.next = nil, nil
}
