package pki

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/herts-council/nacd/policy"
)

// pgBackend keeps nacd's tables in PostgreSQL next to step's: several nacd
// nodes share them. Revocations are numbered from a sequence; CRL
// generation holds the row lock of the single nacd_crl row, so one node at
// a time numbers and signs a CRL from the revocations it reads under that
// lock (every stored CRL is a superset of the previous one).
type pgBackend struct {
	pool *pgxpool.Pool
}

// pgSchemaLock is the advisory-lock key serialising schema creation by
// nodes starting together ("nacd" in ASCII).
const pgSchemaLock = 0x6e616364

var pgSchema = []string{
	`CREATE TABLE IF NOT EXISTS nacd_certificates (
		serial        TEXT PRIMARY KEY,
		email         TEXT NOT NULL,
		device_uuid   TEXT NOT NULL,
		device_name   TEXT NOT NULL,
		kind          TEXT NOT NULL,
		ownership     TEXT NOT NULL,
		role          TEXT NOT NULL,
		clearance_il3 BOOLEAN NOT NULL,
		not_before    TIMESTAMPTZ NOT NULL,
		not_after     TIMESTAMPTZ NOT NULL,
		status        TEXT NOT NULL,
		issued_at     TIMESTAMPTZ NOT NULL,
		issued_by     TEXT NOT NULL,
		renewed_from  TEXT NOT NULL DEFAULT '',
		revoked_at    TIMESTAMPTZ,
		reason        INTEGER NOT NULL DEFAULT 0,
		revoked_by    TEXT NOT NULL DEFAULT '',
		rev_seq       BIGINT,
		der           BYTEA
	)`,
	`CREATE INDEX IF NOT EXISTS nacd_certificates_email ON nacd_certificates (lower(email))`,
	`CREATE INDEX IF NOT EXISTS nacd_certificates_device ON nacd_certificates (device_uuid)`,
	`CREATE UNIQUE INDEX IF NOT EXISTS nacd_certificates_rev_seq ON nacd_certificates (rev_seq) WHERE rev_seq IS NOT NULL`,
	`CREATE SEQUENCE IF NOT EXISTS nacd_revocation_seq`,
	`CREATE TABLE IF NOT EXISTS nacd_crl (
		id          INTEGER PRIMARY KEY CHECK (id = 1),
		number      BIGINT NOT NULL,
		this_update TIMESTAMPTZ,
		next_update TIMESTAMPTZ,
		der         BYTEA
	)`,
	`INSERT INTO nacd_crl (id, number) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`,
	`CREATE TABLE IF NOT EXISTS nacd_tokens (
		id         TEXT PRIMARY KEY,
		value      BYTEA NOT NULL,
		created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
		used_at    TIMESTAMPTZ
	)`,
}

func newPGBackend(ctx context.Context, dsn string) (*pgBackend, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL DSN %s: %w", redactDSN(dsn), redactDSNErr(err, dsn))
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL %s: %w", redactDSN(dsn), redactDSNErr(err, dsn))
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgSchemaLock)); err != nil {
			return err
		}
		for _, q := range pgSchema {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", strings.Fields(q)[0:3], err)
			}
		}
		return nil
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL %s: schema: %w", redactDSN(dsn), redactDSNErr(err, dsn))
	}
	return &pgBackend{pool: pool}, nil
}

func (p *pgBackend) close() { p.pool.Close() }

const pgRecordCols = `serial, email, device_uuid, device_name, kind, ownership, role, clearance_il3,
	not_before, not_after, status, issued_at, issued_by, renewed_from, revoked_at, reason, revoked_by, der`

func (p *pgBackend) putRecord(ctx context.Context, r Record) error {
	var revokedAt *time.Time
	if !r.RevokedAt.IsZero() {
		revokedAt = &r.RevokedAt
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO nacd_certificates (`+pgRecordCols+`)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)
		ON CONFLICT (serial) DO UPDATE SET email=excluded.email, device_uuid=excluded.device_uuid,
			device_name=excluded.device_name, kind=excluded.kind, ownership=excluded.ownership, role=excluded.role,
			clearance_il3=excluded.clearance_il3, issued_by=excluded.issued_by, renewed_from=excluded.renewed_from`,
		r.Serial, r.Email, r.DeviceUUID, r.DeviceName, r.Kind, string(r.Ownership), string(r.Role), r.ClearanceIL3,
		r.NotBefore, r.NotAfter, string(r.Status), r.IssuedAt, r.IssuedBy, r.RenewedFrom, revokedAt, int(r.Reason), r.RevokedBy, r.Certificate)
	return err
}

func scanRecords(rows pgx.Rows) ([]Record, error) {
	defer rows.Close()
	var out []Record
	for rows.Next() {
		var (
			r                   Record
			ownership, role, st string
			revokedAt           *time.Time
			reason              int
		)
		if err := rows.Scan(&r.Serial, &r.Email, &r.DeviceUUID, &r.DeviceName, &r.Kind, &ownership, &role, &r.ClearanceIL3,
			&r.NotBefore, &r.NotAfter, &st, &r.IssuedAt, &r.IssuedBy, &r.RenewedFrom, &revokedAt, &reason, &r.RevokedBy, &r.Certificate); err != nil {
			return nil, err
		}
		r.Ownership, r.Role, r.Status, r.Reason = policy.Ownership(ownership), policy.Role(role), RecordStatus(st), RevocationReason(reason)
		if revokedAt != nil {
			r.RevokedAt = revokedAt.UTC()
		}
		r.NotBefore, r.NotAfter, r.IssuedAt = r.NotBefore.UTC(), r.NotAfter.UTC(), r.IssuedAt.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

func (p *pgBackend) query(ctx context.Context, where string, args ...any) ([]Record, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+pgRecordCols+` FROM nacd_certificates `+where, args...)
	if err != nil {
		return nil, err
	}
	return scanRecords(rows)
}

func (p *pgBackend) getRecord(ctx context.Context, serial string) (Record, error) {
	rs, err := p.query(ctx, `WHERE serial = $1`, serial)
	if err != nil {
		return Record{}, err
	}
	if len(rs) == 0 {
		return Record{}, ErrNotFound
	}
	return rs[0], nil
}

func (p *pgBackend) byHolder(ctx context.Context, email string) ([]Record, error) {
	return p.query(ctx, `WHERE lower(email) = lower($1) ORDER BY issued_at, serial`, email)
}

func (p *pgBackend) byDevice(ctx context.Context, uuid string) ([]Record, error) {
	return p.query(ctx, `WHERE device_uuid = $1 ORDER BY issued_at, serial`, strings.ToLower(uuid))
}

func (p *pgBackend) allRecords(ctx context.Context) ([]Record, error) {
	return p.query(ctx, `ORDER BY issued_at, serial`)
}

func (p *pgBackend) hasRecords(ctx context.Context, serials []string) (map[string]bool, error) {
	out := make(map[string]bool, len(serials))
	for _, s := range serials {
		out[s] = false
	}
	if len(serials) == 0 {
		return out, nil
	}
	rows, err := p.pool.Query(ctx, `SELECT serial FROM nacd_certificates WHERE serial = ANY($1)`, serials)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out[s] = true
	}
	return out, rows.Err()
}

func (p *pgBackend) revoke(ctx context.Context, serial string, at time.Time, reason RevocationReason, by string) (Record, bool, error) {
	tag, err := p.pool.Exec(ctx, `UPDATE nacd_certificates
		SET status = 'revoked', revoked_at = $2, reason = $3, revoked_by = $4, rev_seq = nextval('nacd_revocation_seq')
		WHERE serial = $1 AND status <> 'revoked'`, serial, at, int(reason), by)
	if err != nil {
		return Record{}, false, err
	}
	r, err := p.getRecord(ctx, serial)
	if err != nil {
		return Record{}, false, err
	}
	return r, tag.RowsAffected() == 1, nil
}

// pgRevocationOverlap: a poll re-reads this many sequence numbers below
// the last one seen, so a revocation whose transaction committed after a
// higher-numbered one is not missed.
const pgRevocationOverlap = 100

func (p *pgBackend) revocationsAfter(ctx context.Context, after int64) ([]revEntry, int64, error) {
	from := after - pgRevocationOverlap
	if after < 0 {
		from = -1
	}
	rows, err := p.pool.Query(ctx, `SELECT rev_seq, serial, revoked_at, reason, not_after FROM nacd_certificates
		WHERE rev_seq > $1 ORDER BY rev_seq`, from)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []revEntry
	last := after
	if last < 0 {
		last = 0
	}
	for rows.Next() {
		var (
			e      revEntry
			reason int
		)
		if err := rows.Scan(&e.Seq, &e.Serial, &e.RevokedAt, &reason, &e.NotAfter); err != nil {
			return nil, 0, err
		}
		e.Reason = RevocationReason(reason)
		e.RevokedAt, e.NotAfter = e.RevokedAt.UTC(), e.NotAfter.UTC()
		if e.Seq > last {
			last = e.Seq
		}
		out = append(out, e)
	}
	return out, last, rows.Err()
}

func (p *pgBackend) currentCRL(ctx context.Context) (crlHead, error) {
	var (
		h          crlHead
		this, next *time.Time
	)
	err := p.pool.QueryRow(ctx, `SELECT number, this_update, next_update, der FROM nacd_crl WHERE id = 1`).Scan(&h.Number, &this, &next, &h.DER)
	if err != nil {
		return crlHead{}, err
	}
	if this != nil {
		h.ThisUpdate = this.UTC()
	}
	if next != nil {
		h.NextUpdate = next.UTC()
	}
	return h, nil
}

func (p *pgBackend) crlNumber(ctx context.Context) (int64, error) {
	var n int64
	err := p.pool.QueryRow(ctx, `SELECT number FROM nacd_crl WHERE id = 1`).Scan(&n)
	return n, err
}

func (p *pgBackend) updateCRL(ctx context.Context, build func(cur crlHead, revoked []revEntry) (*crlHead, error)) (crlHead, error) {
	var out crlHead
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var this, next *time.Time
		// The row lock serialises CRL generation across nodes.
		err := tx.QueryRow(ctx, `SELECT number, this_update, next_update, der FROM nacd_crl WHERE id = 1 FOR UPDATE`).Scan(&out.Number, &this, &next, &out.DER)
		if err != nil {
			return err
		}
		if this != nil {
			out.ThisUpdate = this.UTC()
		}
		if next != nil {
			out.NextUpdate = next.UTC()
		}
		rows, err := tx.Query(ctx, `SELECT rev_seq, serial, revoked_at, reason, not_after FROM nacd_certificates WHERE rev_seq IS NOT NULL ORDER BY rev_seq`)
		if err != nil {
			return err
		}
		var revoked []revEntry
		for rows.Next() {
			var (
				e      revEntry
				reason int
			)
			if err := rows.Scan(&e.Seq, &e.Serial, &e.RevokedAt, &reason, &e.NotAfter); err != nil {
				rows.Close()
				return err
			}
			e.Reason = RevocationReason(reason)
			revoked = append(revoked, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		n, err := build(out, revoked)
		if err != nil || n == nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE nacd_crl SET number = $1, this_update = $2, next_update = $3, der = $4 WHERE id = 1`,
			n.Number, n.ThisUpdate, n.NextUpdate, n.DER); err != nil {
			return err
		}
		out = *n
		return nil
	})
	return out, err
}

func (p *pgBackend) tokenPut(ctx context.Context, id string, value []byte) error {
	tag, err := p.pool.Exec(ctx, `INSERT INTO nacd_tokens (id, value) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, id, value)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrExists
	}
	return nil
}

func (p *pgBackend) tokenGet(ctx context.Context, id string) ([]byte, bool, error) {
	var (
		v    []byte
		used *time.Time
	)
	err := p.pool.QueryRow(ctx, `SELECT value, used_at FROM nacd_tokens WHERE id = $1`, id).Scan(&v, &used)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, ErrNotFound
	}
	if err != nil {
		return nil, false, err
	}
	return v, used != nil, nil
}

func (p *pgBackend) tokenConsume(ctx context.Context, id string) ([]byte, error) {
	var v []byte
	err := p.pool.QueryRow(ctx, `UPDATE nacd_tokens SET used_at = now() WHERE id = $1 AND used_at IS NULL RETURNING value`, id).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, _, gerr := p.tokenGet(ctx, id); gerr != nil {
			return nil, gerr
		}
		return nil, ErrTokenUsed
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (p *pgBackend) tokenDelete(ctx context.Context, id string) error {
	_, err := p.pool.Exec(ctx, `DELETE FROM nacd_tokens WHERE id = $1`, id)
	return err
}

func (p *pgBackend) tokenList(ctx context.Context, fn func(id string, value []byte, used bool) error) error {
	rows, err := p.pool.Query(ctx, `SELECT id, value, used_at IS NOT NULL FROM nacd_tokens ORDER BY created_at, id`)
	if err != nil {
		return err
	}
	type tok struct {
		id   string
		v    []byte
		used bool
	}
	var all []tok
	for rows.Next() {
		var t tok
		if err := rows.Scan(&t.id, &t.v, &t.used); err != nil {
			rows.Close()
			return err
		}
		all = append(all, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range all {
		if err := fn(t.id, t.v, t.used); err != nil {
			return err
		}
	}
	return nil
}
