package radius

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

var sessionsBucket = []byte("sessions")

// boltSessions is the embedded session store: one bbolt file, one bucket,
// key NAS address + 0x00 + Acct-Session-Id, value the session as JSON.
// bbolt locks the file: one process at a time (the CLI asks the daemon).
type boltSessions struct {
	db *bolt.DB
}

// OpenBoltSessions opens (creating, mode 0600) the embedded session store
// at path. It waits at most 2 s for the file lock held by another process.
func OpenBoltSessions(path string) (SessionStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("radius: session store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("radius: open session store %s: %w", path, err)
	}
	// Batch coalesces concurrent writers into one fsync; wait at most 2 ms
	// for company (bbolt's 10 ms default would be the latency of every
	// accounting reply on a quiet server).
	db.MaxBatchDelay = 2 * time.Millisecond
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(sessionsBucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("radius: session store %s: %w", path, err)
	}
	return &boltSessions{db: db}, nil
}

func boltKey(k SessionKey) []byte {
	return append(append([]byte(k.NASIP), 0), k.ID...)
}

// Upsert runs in a bbolt Batch, so concurrent accounting requests share
// one fsync.
func (b *boltSessions) Upsert(ctx context.Context, s *Session, merge func(old, cur *Session) *Session) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	key := boltKey(s.Key())
	return b.db.Batch(func(tx *bolt.Tx) error {
		bk := tx.Bucket(sessionsBucket)
		var old *Session
		if v := bk.Get(key); v != nil {
			old = new(Session)
			if err := json.Unmarshal(v, old); err != nil {
				old = nil // a damaged record is replaced
			}
		}
		m := merge(old, s)
		if m == nil {
			return nil
		}
		v, err := json.Marshal(m)
		if err != nil {
			return err
		}
		return bk.Put(key, v)
	})
}

func (b *boltSessions) Delete(ctx context.Context, k SessionKey) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var old *Session
	err := b.db.Batch(func(tx *bolt.Tx) error {
		old = nil
		bk := tx.Bucket(sessionsBucket)
		key := boltKey(k)
		v := bk.Get(key)
		if v == nil {
			return nil
		}
		s := new(Session)
		if json.Unmarshal(v, s) == nil {
			old = s
		} else {
			old = &Session{ID: k.ID, NASIP: k.NASIP}
		}
		return bk.Delete(key)
	})
	return old, err
}

func (b *boltSessions) DeleteNAS(ctx context.Context, nasIP string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	prefix := append([]byte(nasIP), 0)
	n := 0
	err := b.db.Update(func(tx *bolt.Tx) error {
		n = 0
		c := tx.Bucket(sessionsBucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

func (b *boltSessions) DeleteIdle(ctx context.Context, before time.Time) ([]*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var gone []*Session
	err := b.db.Update(func(tx *bolt.Tx) error {
		gone = gone[:0]
		bk := tx.Bucket(sessionsBucket)
		var keys [][]byte
		err := bk.ForEach(func(k, v []byte) error {
			s := new(Session)
			if json.Unmarshal(v, s) != nil || s.Updated.Before(before) {
				keys = append(keys, bytes.Clone(k))
				gone = append(gone, s)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return gone, err
}

func (b *boltSessions) List(ctx context.Context, f SessionFilter) ([]*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []*Session
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(sessionsBucket).ForEach(func(_, v []byte) error {
			s := new(Session)
			if json.Unmarshal(v, s) == nil && f.match(s) {
				out = append(out, s)
			}
			return nil
		})
	})
	sortSessions(out)
	return out, err
}

func (b *boltSessions) CountBySite(ctx context.Context) (map[string]int, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := map[string]int{}
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(sessionsBucket).ForEach(func(_, v []byte) error {
			var s struct {
				Site string `json:"site"`
			}
			if json.Unmarshal(v, &s) == nil {
				n[s.Site]++
			}
			return nil
		})
	})
	return n, err
}

func (b *boltSessions) Close() error { return b.db.Close() }

func sortSessions(s []*Session) {
	slices.SortStableFunc(s, func(a, b *Session) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		if a.NASIP != b.NASIP {
			if a.NASIP < b.NASIP {
				return -1
			}
			return 1
		}
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
}
