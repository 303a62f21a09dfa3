package pki

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smallstep/certificates/db"
	"github.com/smallstep/nosql/database"
)

// The store holds, in one backend (bbolt in the data dir, or PostgreSQL):
//   - step-ca's own tables (x509_certs, revoked_x509_certs, ...), written by
//     step's authority;
//   - nacd's inventory: one record per certificate issued, with the facts,
//     status and revocation (serial, holder e-mail, device UUID, name,
//     ownership, role, clearance, validity, issued/revoked by), looked up by
//     serial, holder and device;
//   - a revocation sequence: every revocation gets a strictly increasing
//     number, so other nodes pick up new revocations by polling "what is
//     after the last number I saw";
//   - the current CRL and its number (generation serialised across nodes:
//     a row lock in PostgreSQL, the single writer in bbolt);
//   - enrolment tokens (TokenTable).
//
// Write ordering of an issuance (so that a kill -9 never leaves a handed-out
// certificate unrecorded): step signs and stores the certificate in
// x509_certs; nacd then writes the inventory record (committed: bbolt
// fsyncs on commit, PostgreSQL commits) and only then returns the chain. A
// crash between the two leaves a certificate nobody received in x509_certs
// only; OpenCA reconciles such certificates into the inventory (facts read
// back from the certificate, IssuedBy "recovered"), so the inventory is a
// superset of every certificate handed out.

// storeBackend is nacd's part of the store.
type storeBackend interface {
	// putRecord inserts or replaces the record of r.Serial (an issuance
	// always writes a new serial; replace only when OpenCA's reconcile on
	// another node got there first).
	putRecord(ctx context.Context, r Record) error
	getRecord(ctx context.Context, serial string) (Record, error)
	byHolder(ctx context.Context, email string) ([]Record, error)
	byDevice(ctx context.Context, uuid string) ([]Record, error)
	allRecords(ctx context.Context) ([]Record, error)
	// hasRecords reports which of serials have a record.
	hasRecords(ctx context.Context, serials []string) (map[string]bool, error)
	// revoke marks serial revoked if it is not yet, giving it the next
	// revocation sequence number; changed is false when it was already
	// revoked (ErrNotFound when absent).
	revoke(ctx context.Context, serial string, at time.Time, reason RevocationReason, by string) (rec Record, changed bool, err error)
	// revocationsAfter returns revocations with sequence > after (all with
	// after < 0), in sequence order, and the highest sequence seen.
	revocationsAfter(ctx context.Context, after int64) ([]revEntry, int64, error)
	// updateCRL runs build with the current CRL head under the store's
	// CRL lock (one generator at a time across nodes) and stores what
	// build returns (nil: keep the current one).
	updateCRL(ctx context.Context, build func(cur crlHead, revoked []revEntry) (*crlHead, error)) (crlHead, error)
	// currentCRL returns the stored CRL (Number 0 when none yet).
	currentCRL(ctx context.Context) (crlHead, error)
	// crlNumber is the stored CRL's number (cheap: no CRL bytes).
	crlNumber(ctx context.Context) (int64, error)

	tokenPut(ctx context.Context, id string, value []byte) error
	tokenGet(ctx context.Context, id string) ([]byte, bool, error)
	tokenConsume(ctx context.Context, id string) ([]byte, error)
	tokenDelete(ctx context.Context, id string) error
	tokenList(ctx context.Context, fn func(id string, value []byte, used bool) error) error

	close()
}

// revEntry is one revocation, as the CRL and the revocation set need it.
type revEntry struct {
	Seq       int64            `json:"q"`
	Serial    string           `json:"s"`
	RevokedAt time.Time        `json:"t"`
	Reason    RevocationReason `json:"r"`
	NotAfter  time.Time        `json:"na"`
}

// crlHead is the current CRL.
type crlHead struct {
	Number     int64     `json:"number"`
	ThisUpdate time.Time `json:"this_update"`
	NextUpdate time.Time `json:"next_update"`
	DER        []byte    `json:"der,omitempty"`
}

// authDBCloser is step's DB.
type authDBCloser = db.AuthDB

// isPostgres reports whether store is a PostgreSQL DSN.
func isPostgres(store string) bool {
	return strings.HasPrefix(store, "postgres://") || strings.HasPrefix(store, "postgresql://")
}

// stepCerts lists step's x509_certs table (serial in decimal -> DER).
func stepCerts(adb db.AuthDB) ([]*database.Entry, error) {
	sdb, ok := adb.(*db.DB)
	if !ok {
		return nil, errors.New("unexpected step DB type")
	}
	es, err := sdb.List([]byte("x509_certs"))
	if err != nil && !database.IsErrNotFound(err) {
		return nil, err
	}
	return es, nil
}

// openBackend opens step's DB and nacd's backend over the same store.
func openBackend(ctx context.Context, cfg CAConfig, p caPaths) (db.AuthDB, storeBackend, error) {
	switch {
	case cfg.Store == "" || cfg.Store == "bbolt":
		adb, err := db.New(&db.Config{Type: "bbolt", DataSource: p.db})
		if err != nil {
			return nil, nil, fmt.Errorf("open %s: %w", p.db, err)
		}
		sdb, ok := adb.(*db.DB)
		if !ok {
			_ = adb.Shutdown()
			return nil, nil, errors.New("unexpected step DB type")
		}
		be, err := newBoltBackend(sdb.DB)
		if err != nil {
			_ = adb.Shutdown()
			return nil, nil, err
		}
		return adb, be, nil
	case isPostgres(cfg.Store):
		be, err := newPGBackend(ctx, cfg.Store)
		if err != nil {
			return nil, nil, err
		}
		adb, err := db.New(&db.Config{Type: "postgresql", DataSource: cfg.Store})
		if err != nil {
			be.close()
			return nil, nil, fmt.Errorf("open step tables on PostgreSQL: %w", redactDSNErr(err, cfg.Store))
		}
		return adb, be, nil
	default:
		return nil, nil, fmt.Errorf("unsupported store %q (want \"\" for bbolt or a postgres:// DSN)", redactDSN(cfg.Store))
	}
}

// redactDSN hides a DSN's password.
func redactDSN(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if i := strings.Index(userinfo, ":"); i >= 0 {
		return dsn[:scheme+3] + userinfo[:i] + ":xxxxx" + dsn[at:]
	}
	return dsn
}

func redactDSNErr(err error, dsn string) error {
	if err == nil {
		return nil
	}
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at > 0 && scheme >= 0 && at > scheme {
		if i := strings.Index(dsn[scheme+3:at], ":"); i >= 0 {
			pw := dsn[scheme+3+i+1 : at]
			if pw != "" && strings.Contains(err.Error(), pw) {
				return errors.New(strings.ReplaceAll(err.Error(), pw, "xxxxx"))
			}
		}
	}
	return err
}

// TokenTable stores opaque values by id in the CA's store (same backend:
// bbolt or PostgreSQL, so tokens survive restarts and are shared by nodes).
type TokenTable struct{ be storeBackend }

// Put stores value under id; ErrExists if id is already present.
func (t *TokenTable) Put(ctx context.Context, id string, value []byte) error {
	if err := checkTokenID(id); err != nil {
		return err
	}
	return t.be.tokenPut(ctx, id, value)
}

// Get returns the value of id (ErrNotFound) and whether it was consumed.
func (t *TokenTable) Get(ctx context.Context, id string) (value []byte, used bool, err error) {
	if err := checkTokenID(id); err != nil {
		return nil, false, err
	}
	return t.be.tokenGet(ctx, id)
}

// Consume atomically marks id used and returns its value: exactly one of
// any number of concurrent callers (on any node) gets the value; the
// others get ErrTokenUsed. ErrNotFound when absent.
func (t *TokenTable) Consume(ctx context.Context, id string) ([]byte, error) {
	if err := checkTokenID(id); err != nil {
		return nil, err
	}
	return t.be.tokenConsume(ctx, id)
}

// Delete removes id (no error when absent).
func (t *TokenTable) Delete(ctx context.Context, id string) error {
	if err := checkTokenID(id); err != nil {
		return err
	}
	return t.be.tokenDelete(ctx, id)
}

// List calls fn for every id, value and used flag (for expiry sweeps); an
// error from fn stops the walk and is returned.
func (t *TokenTable) List(ctx context.Context, fn func(id string, value []byte, used bool) error) error {
	return t.be.tokenList(ctx, fn)
}

// checkTokenID bounds ids: 1-200 bytes (PostgreSQL keys are limited).
func checkTokenID(id string) error {
	if id == "" || len(id) > 200 {
		return fmt.Errorf("%w: token id must be 1-200 bytes", ErrNotFound)
	}
	return nil
}
