package pki

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smallstep/nosql"
	"github.com/smallstep/nosql/database"
)

// boltBackend keeps nacd's tables in step's bbolt file. bbolt allows one
// process per file and one writer at a time; mu makes each read-modify-write
// of nacd's tables atomic within the process, and every write is one bbolt
// transaction (fsynced on commit).
type boltBackend struct {
	mu sync.Mutex
	db nosql.DB
}

var (
	bktCerts   = []byte("nacd_certs")
	bktHolder  = []byte("nacd_idx_holder")
	bktDevice  = []byte("nacd_idx_device")
	bktRevLog  = []byte("nacd_revlog")
	bktMeta    = []byte("nacd_meta")
	bktTokens  = []byte("nacd_tokens")
	keyRevSeq  = []byte("rev_seq")
	keyCRLHead = []byte("crl")
	keyCRLNum  = []byte("crl_number")
)

func newBoltBackend(db nosql.DB) (*boltBackend, error) {
	for _, b := range [][]byte{bktCerts, bktHolder, bktDevice, bktRevLog, bktMeta, bktTokens} {
		if err := db.CreateTable(b); err != nil {
			return nil, fmt.Errorf("create table %s: %w", b, err)
		}
	}
	return &boltBackend{db: db}, nil
}

func (b *boltBackend) close() {} // step's DB.Shutdown closes the file

func (b *boltBackend) get(bucket, key []byte) ([]byte, bool, error) {
	v, err := b.db.Get(bucket, key)
	if err != nil {
		if database.IsErrNotFound(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return v, true, nil
}

func (b *boltBackend) serialList(bucket []byte, key string) ([]string, error) {
	v, ok, err := b.get(bucket, []byte(key))
	if err != nil || !ok {
		return nil, err
	}
	var out []string
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, fmt.Errorf("index %s/%s: %w", bucket, key, err)
	}
	return out, nil
}

func addSerial(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func (b *boltBackend) putRecord(_ context.Context, r Record) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	holderKey := strings.ToLower(r.Email)
	holder, err := b.serialList(bktHolder, holderKey)
	if err != nil {
		return err
	}
	device, err := b.serialList(bktDevice, r.DeviceUUID)
	if err != nil {
		return err
	}
	rec, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tx := new(database.Tx)
	tx.Set(bktCerts, []byte(r.Serial), rec)
	if holderKey != "" {
		hv, _ := json.Marshal(addSerial(holder, r.Serial))
		tx.Set(bktHolder, []byte(holderKey), hv)
	}
	if r.DeviceUUID != "" {
		dv, _ := json.Marshal(addSerial(device, r.Serial))
		tx.Set(bktDevice, []byte(r.DeviceUUID), dv)
	}
	return b.db.Update(tx)
}

func (b *boltBackend) getRecord(_ context.Context, serial string) (Record, error) {
	v, ok, err := b.get(bktCerts, []byte(serial))
	if err != nil {
		return Record{}, err
	}
	if !ok {
		return Record{}, ErrNotFound
	}
	var r Record
	if err := json.Unmarshal(v, &r); err != nil {
		return Record{}, fmt.Errorf("record %s: %w", serial, err)
	}
	return r, nil
}

func (b *boltBackend) records(ctx context.Context, serials []string) ([]Record, error) {
	out := make([]Record, 0, len(serials))
	for _, s := range serials {
		r, err := b.getRecord(ctx, s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (b *boltBackend) byHolder(ctx context.Context, email string) ([]Record, error) {
	l, err := b.serialList(bktHolder, strings.ToLower(email))
	if err != nil {
		return nil, err
	}
	return b.records(ctx, l)
}

func (b *boltBackend) byDevice(ctx context.Context, uuid string) ([]Record, error) {
	l, err := b.serialList(bktDevice, strings.ToLower(uuid))
	if err != nil {
		return nil, err
	}
	return b.records(ctx, l)
}

func (b *boltBackend) allRecords(_ context.Context) ([]Record, error) {
	es, err := b.db.List(bktCerts)
	if err != nil && !database.IsErrNotFound(err) {
		return nil, err
	}
	out := make([]Record, 0, len(es))
	for _, e := range es {
		var r Record
		if err := json.Unmarshal(e.Value, &r); err != nil {
			return nil, fmt.Errorf("record %s: %w", e.Key, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (b *boltBackend) hasRecords(_ context.Context, serials []string) (map[string]bool, error) {
	out := make(map[string]bool, len(serials))
	for _, s := range serials {
		_, ok, err := b.get(bktCerts, []byte(s))
		if err != nil {
			return nil, err
		}
		out[s] = ok
	}
	return out, nil
}

func seqKey(n int64) []byte { return []byte(fmt.Sprintf("%020d", n)) }

func (b *boltBackend) revoke(ctx context.Context, serial string, at time.Time, reason RevocationReason, by string) (Record, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.getRecord(ctx, serial)
	if err != nil {
		return Record{}, false, err
	}
	if r.Status == StatusRevoked {
		return r, false, nil
	}
	seq := int64(0)
	if v, ok, err := b.get(bktMeta, keyRevSeq); err != nil {
		return Record{}, false, err
	} else if ok {
		if seq, err = strconv.ParseInt(string(v), 10, 64); err != nil {
			return Record{}, false, fmt.Errorf("revocation sequence: %w", err)
		}
	}
	seq++
	r.Status, r.RevokedAt, r.Reason, r.RevokedBy = StatusRevoked, at, reason, by
	rec, err := json.Marshal(r)
	if err != nil {
		return Record{}, false, err
	}
	ent, err := json.Marshal(revEntry{Seq: seq, Serial: serial, RevokedAt: at, Reason: reason, NotAfter: r.NotAfter})
	if err != nil {
		return Record{}, false, err
	}
	tx := new(database.Tx)
	tx.Set(bktCerts, []byte(serial), rec)
	tx.Set(bktRevLog, seqKey(seq), ent)
	tx.Set(bktMeta, keyRevSeq, []byte(strconv.FormatInt(seq, 10)))
	if err := b.db.Update(tx); err != nil {
		return Record{}, false, err
	}
	return r, true, nil
}

func (b *boltBackend) revocationsAfter(_ context.Context, after int64) ([]revEntry, int64, error) {
	v, ok, err := b.get(bktMeta, keyRevSeq)
	if err != nil {
		return nil, 0, err
	}
	last := int64(0)
	if ok {
		if last, err = strconv.ParseInt(string(v), 10, 64); err != nil {
			return nil, 0, fmt.Errorf("revocation sequence: %w", err)
		}
	}
	if after >= 0 && last <= after {
		return nil, last, nil
	}
	var out []revEntry
	if after >= 0 && last-after < 1000 {
		for n := after + 1; n <= last; n++ {
			v, ok, err := b.get(bktRevLog, seqKey(n))
			if err != nil {
				return nil, 0, err
			}
			if !ok {
				continue
			}
			var e revEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return nil, 0, err
			}
			out = append(out, e)
		}
		return out, last, nil
	}
	es, err := b.db.List(bktRevLog)
	if err != nil && !database.IsErrNotFound(err) {
		return nil, 0, err
	}
	for _, kv := range es {
		var e revEntry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			return nil, 0, err
		}
		if e.Seq > after {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, last, nil
}

func (b *boltBackend) currentCRL(_ context.Context) (crlHead, error) {
	v, ok, err := b.get(bktMeta, keyCRLHead)
	if err != nil || !ok {
		return crlHead{}, err
	}
	var h crlHead
	if err := json.Unmarshal(v, &h); err != nil {
		return crlHead{}, fmt.Errorf("stored CRL: %w", err)
	}
	return h, nil
}

// crlNumber reads the number kept next to the CRL (not the CRL itself,
// which can be megabytes).
func (b *boltBackend) crlNumber(ctx context.Context) (int64, error) {
	v, ok, err := b.get(bktMeta, keyCRLNum)
	if err != nil || !ok {
		if err == nil {
			h, err := b.currentCRL(ctx) // written before keyCRLNum existed
			return h.Number, err
		}
		return 0, err
	}
	return strconv.ParseInt(string(v), 10, 64)
}

func (b *boltBackend) updateCRL(ctx context.Context, build func(cur crlHead, revoked []revEntry) (*crlHead, error)) (crlHead, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur, err := b.currentCRL(ctx)
	if err != nil {
		return crlHead{}, err
	}
	revoked, _, err := b.revocationsAfter(ctx, -1)
	if err != nil {
		return crlHead{}, err
	}
	next, err := build(cur, revoked)
	if err != nil || next == nil {
		return cur, err
	}
	v, err := json.Marshal(next)
	if err != nil {
		return crlHead{}, err
	}
	tx := new(database.Tx)
	tx.Set(bktMeta, keyCRLHead, v)
	tx.Set(bktMeta, keyCRLNum, []byte(strconv.FormatInt(next.Number, 10)))
	if err := b.db.Update(tx); err != nil {
		return crlHead{}, err
	}
	return *next, nil
}

type boltToken struct {
	Value []byte    `json:"v"`
	Used  time.Time `json:"u,omitempty"`
}

func (b *boltBackend) tokenPut(_ context.Context, id string, value []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok, err := b.get(bktTokens, []byte(id)); err != nil {
		return err
	} else if ok {
		return ErrExists
	}
	v, err := json.Marshal(boltToken{Value: value})
	if err != nil {
		return err
	}
	return b.db.Set(bktTokens, []byte(id), v)
}

func (b *boltBackend) tokenGet(_ context.Context, id string) ([]byte, bool, error) {
	v, ok, err := b.get(bktTokens, []byte(id))
	if err != nil {
		return nil, false, err
	}
	if !ok {
		return nil, false, ErrNotFound
	}
	var t boltToken
	if err := json.Unmarshal(v, &t); err != nil {
		return nil, false, err
	}
	return t.Value, !t.Used.IsZero(), nil
}

func (b *boltBackend) tokenConsume(_ context.Context, id string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok, err := b.get(bktTokens, []byte(id))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	var t boltToken
	if err := json.Unmarshal(v, &t); err != nil {
		return nil, err
	}
	if !t.Used.IsZero() {
		return nil, ErrTokenUsed
	}
	t.Used = time.Now().UTC()
	nv, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	if err := b.db.Set(bktTokens, []byte(id), nv); err != nil {
		return nil, err
	}
	return t.Value, nil
}

func (b *boltBackend) tokenDelete(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.db.Del(bktTokens, []byte(id))
	if err != nil && database.IsErrNotFound(err) {
		return nil
	}
	return err
}

func (b *boltBackend) tokenList(_ context.Context, fn func(id string, value []byte, used bool) error) error {
	es, err := b.db.List(bktTokens)
	if err != nil && !database.IsErrNotFound(err) {
		return err
	}
	for _, e := range es {
		var t boltToken
		if err := json.Unmarshal(e.Value, &t); err != nil {
			return err
		}
		if err := fn(string(e.Key), t.Value, !t.Used.IsZero()); err != nil {
			return err
		}
	}
	return nil
}
