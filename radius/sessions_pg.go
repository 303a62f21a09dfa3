package radius

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgSessions is the shared session store: one PostgreSQL table, created on
// open, with the filterable facts in columns and the session as JSONB.
type pgSessions struct {
	pool *pgxpool.Pool
}

const pgSessionsSchema = `
CREATE TABLE IF NOT EXISTS nacd_sessions (
	nas_ip      text        NOT NULL,
	session_id  text        NOT NULL,
	site        text        NOT NULL,
	nas_name    text        NOT NULL,
	serial      text        NOT NULL DEFAULT '',
	device_uuid text        NOT NULL DEFAULT '',
	email       text        NOT NULL DEFAULT '',
	started     timestamptz NOT NULL,
	updated     timestamptz NOT NULL,
	data        jsonb       NOT NULL,
	PRIMARY KEY (nas_ip, session_id)
);
CREATE INDEX IF NOT EXISTS nacd_sessions_device ON nacd_sessions (device_uuid);
CREATE INDEX IF NOT EXISTS nacd_sessions_email ON nacd_sessions (lower(email));
CREATE INDEX IF NOT EXISTS nacd_sessions_serial ON nacd_sessions (serial);
CREATE INDEX IF NOT EXISTS nacd_sessions_updated ON nacd_sessions (updated);
`

// pgMaxConns is the connection pool size unless the DSN sets
// pool_max_conns.
const pgMaxConns = 16

// OpenPostgresSessions connects to dsn and creates the nacd_sessions table
// when missing. Several nodes may share it.
func OpenPostgresSessions(ctx context.Context, dsn string) (SessionStore, error) {
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("radius: session store %s: %w", redactDSN(dsn), err) // pgconn redacts the password itself
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// Accounting writes are short transactions from up to Workers
		// goroutines: more than pgx's default of max(4, CPUs) connections.
		pcfg.MaxConns = pgMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("radius: session store %s: %w", redactDSN(dsn), err) // pgconn redacts the password itself
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// Several nodes may start at once: serialise the DDL.
	_, err = pool.Exec(cctx, `SELECT pg_advisory_lock(7305716201); `+pgSessionsSchema+` SELECT pg_advisory_unlock(7305716201);`)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("radius: session store %s: create table: %w", redactDSN(dsn), err)
	}
	return &pgSessions{pool: pool}, nil
}

func (p *pgSessions) Upsert(ctx context.Context, s *Session, merge func(old, cur *Session) *Session) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		var old *Session
		var data []byte
		err := tx.QueryRow(ctx, `SELECT data FROM nacd_sessions WHERE nas_ip = $1 AND session_id = $2 FOR UPDATE`, s.NASIP, s.ID).Scan(&data)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			old = new(Session)
			if json.Unmarshal(data, old) != nil {
				old = nil
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
		_, err = tx.Exec(ctx, `INSERT INTO nacd_sessions (nas_ip, session_id, site, nas_name, serial, device_uuid, email, started, updated, data)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (nas_ip, session_id) DO UPDATE SET site = EXCLUDED.site, nas_name = EXCLUDED.nas_name,
				serial = EXCLUDED.serial, device_uuid = EXCLUDED.device_uuid, email = EXCLUDED.email,
				started = EXCLUDED.started, updated = EXCLUDED.updated, data = EXCLUDED.data`,
			m.NASIP, m.ID, m.Site, m.NASName, normSerial(m.Serial), m.DeviceUUID, m.Email, m.Started, m.Updated, v)
		return err
	})
}

func (p *pgSessions) Delete(ctx context.Context, k SessionKey) (*Session, error) {
	var data []byte
	err := p.pool.QueryRow(ctx, `DELETE FROM nacd_sessions WHERE nas_ip = $1 AND session_id = $2 RETURNING data`, k.NASIP, k.ID).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s := &Session{ID: k.ID, NASIP: k.NASIP}
	_ = json.Unmarshal(data, s)
	return s, nil
}

func (p *pgSessions) DeleteNAS(ctx context.Context, nasIP string) (int, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM nacd_sessions WHERE nas_ip = $1`, nasIP)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

func (p *pgSessions) DeleteIdle(ctx context.Context, before time.Time) ([]*Session, error) {
	rows, err := p.pool.Query(ctx, `DELETE FROM nacd_sessions WHERE updated < $1 RETURNING data`, before)
	if err != nil {
		return nil, err
	}
	return scanSessions(rows, SessionFilter{})
}

func (p *pgSessions) List(ctx context.Context, f SessionFilter) ([]*Session, error) {
	q := `SELECT data FROM nacd_sessions WHERE true`
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		q += fmt.Sprintf(" AND "+cond, len(args))
	}
	if f.Holder != "" {
		add("lower(email) = lower($%d)", f.Holder)
	}
	if f.Device != "" {
		add("lower(device_uuid) = lower($%d)", f.Device)
	}
	if f.Serial != "" {
		add("serial = $%d", normSerial(f.Serial))
	}
	rows, err := p.pool.Query(ctx, q+" ORDER BY started, nas_ip, session_id", args...)
	if err != nil {
		return nil, err
	}
	out, err := scanSessions(rows, f)
	sortSessions(out)
	return out, err
}

// scanSessions reads JSON sessions from rows, keeping those f matches.
func scanSessions(rows pgx.Rows, f SessionFilter) ([]*Session, error) {
	defer rows.Close()
	var out []*Session
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return out, err
		}
		s := new(Session)
		if json.Unmarshal(data, s) == nil && f.match(s) {
			out = append(out, s)
		}
	}
	return out, rows.Err()
}

func (p *pgSessions) CountBySite(ctx context.Context) (map[string]int, error) {
	rows, err := p.pool.Query(ctx, `SELECT site, count(*) FROM nacd_sessions GROUP BY site`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	n := map[string]int{}
	for rows.Next() {
		var site string
		var c int64
		if err := rows.Scan(&site, &c); err != nil {
			return nil, err
		}
		n[site] = int(c)
	}
	return n, rows.Err()
}

func (p *pgSessions) Close() error {
	p.pool.Close()
	return nil
}
