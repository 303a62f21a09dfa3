package radius

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/policy"
)

// Session is one live network session, as accounting (RFC 2866) reports it
// and as the Access-Accept that admitted it (linked through Class) says.
// A session is identified by the NAS it runs on (NASIP, the source address
// of its accounting) and its Acct-Session-Id.
type Session struct {
	ID            string `json:"acct_session_id"`
	NASIP         string `json:"nas_ip"`   // source address of the accounting (where CoA/Disconnect go)
	NASName       string `json:"nas_name"` // the configured client name
	NASIdentifier string `json:"nas_identifier,omitempty"`
	NASIPAddress  string `json:"nas_ip_address,omitempty"` // NAS-IP-Address / NAS-IPv6-Address attribute
	Site          string `json:"site"`
	UserName      string `json:"user_name,omitempty"`
	Calling       string `json:"calling_station_id,omitempty"` // device MAC
	Called        string `json:"called_station_id,omitempty"`  // AP MAC:SSID
	SSID          string `json:"ssid,omitempty"`

	// From the Access-Accept (Class "nacd:<ClassID>"); empty when the
	// accounting carried no Class nacd knows.
	ClassID    string `json:"class_id,omitempty"`
	Serial     string `json:"serial,omitempty"`
	DeviceUUID string `json:"device_uuid,omitempty"`
	Email      string `json:"email,omitempty"`
	Segment    string `json:"segment,omitempty"`
	VLAN       int    `json:"vlan,omitempty"`
	// Identity is the certificate identity the Accept decided on (as
	// verified then), so that a policy reload can re-decide the session
	// (DynAuthClient.Reconcile).
	Identity *policy.Identity `json:"identity,omitempty"`

	Started     time.Time `json:"started"`
	Updated     time.Time `json:"updated"`
	SessionTime uint32    `json:"session_time_s,omitempty"` // Acct-Session-Time
	InOctets    uint64    `json:"input_octets"`             // with Acct-Input-Gigawords
	OutOctets   uint64    `json:"output_octets"`
	InPackets   uint32    `json:"input_packets"`
	OutPackets  uint32    `json:"output_packets"`
}

// Key returns the session's key in the table.
func (s *Session) Key() SessionKey { return SessionKey{NASIP: s.NASIP, ID: s.ID} }

// SessionKey identifies a session: the NAS's address and its Acct-Session-Id.
type SessionKey struct {
	NASIP string
	ID    string
}

// SessionFilter selects sessions; empty fields match everything, set fields
// must all match. Holder matches case-insensitively; NAS matches the client
// name, the NAS address or NAS-Identifier.
type SessionFilter struct {
	ID     string // Acct-Session-Id
	Holder string
	Device string
	Serial string
	NAS    string
}

func (f SessionFilter) match(s *Session) bool {
	return (f.ID == "" || f.ID == s.ID) &&
		(f.Holder == "" || strings.EqualFold(f.Holder, s.Email)) &&
		(f.Device == "" || strings.EqualFold(f.Device, s.DeviceUUID)) &&
		(f.Serial == "" || normSerial(f.Serial) == normSerial(s.Serial)) &&
		(f.NAS == "" || f.NAS == s.NASName || f.NAS == s.NASIP || f.NAS == s.NASIdentifier)
}

// normSerial writes a serial as pki does: lower-case hex without "0x" and
// leading zeros.
func normSerial(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "0x")
	s = strings.ReplaceAll(s, ":", "")
	t := strings.TrimLeft(s, "0")
	if t == "" && s != "" {
		return "0"
	}
	return t
}

// SessionStore is where sessions live: an embedded bbolt file
// (OpenBoltSessions) for one node, PostgreSQL (OpenPostgresSessions) for
// several. SessionTable is its one user; the store only persists.
type SessionStore interface {
	// Upsert stores s, merged with the stored session of the same key by
	// merge (old is nil when there is none), atomically; nothing is
	// written when merge returns nil.
	Upsert(ctx context.Context, s *Session, merge func(old, cur *Session) *Session) error
	// Delete removes one session and returns it (nil when absent).
	Delete(ctx context.Context, k SessionKey) (*Session, error)
	// DeleteNAS removes every session of the NAS at nasIP.
	DeleteNAS(ctx context.Context, nasIP string) (int, error)
	// DeleteIdle removes every session last updated before t.
	DeleteIdle(ctx context.Context, before time.Time) ([]*Session, error)
	// List returns the sessions f selects, oldest start first.
	List(ctx context.Context, f SessionFilter) ([]*Session, error)
	// CountBySite counts the sessions per site.
	CountBySite(ctx context.Context) (map[string]int, error)
	Close() error
}

// OpenSessionStore opens the store named by dsn: "" or "bbolt" for the
// embedded file dataDir/sessions.db, or a postgres:// DSN.
func OpenSessionStore(ctx context.Context, dsn, dataDir string) (SessionStore, error) {
	switch {
	case dsn == "" || dsn == "bbolt":
		return OpenBoltSessions(sessionsDBPath(dataDir))
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://"):
		return OpenPostgresSessions(ctx, dsn)
	}
	return nil, fmt.Errorf("radius: session store %q: want \"\" (embedded) or a postgres:// DSN", redactDSN(dsn))
}

// SessionsDBFile is the embedded session store's file name in the data dir.
const SessionsDBFile = "sessions.db"

func sessionsDBPath(dataDir string) string {
	if dataDir == "" {
		return SessionsDBFile
	}
	return strings.TrimRight(dataDir, "/") + "/" + SessionsDBFile
}

// redactDSN hides a password in a DSN for error messages.
func redactDSN(dsn string) string {
	at := strings.LastIndex(dsn, "@")
	scheme := strings.Index(dsn, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return dsn
	}
	userinfo := dsn[scheme+3 : at]
	if u, _, ok := strings.Cut(userinfo, ":"); ok {
		return dsn[:scheme+3] + u + ":xxxxx" + dsn[at:]
	}
	return dsn
}

// Defaults of SessionTableConfig.
const (
	// DefaultSessionIdle expires a session with no accounting for this
	// long: NASes send Interim-Update every 5-15 minutes; two hours
	// outlasts a few lost updates without keeping dead sessions for days.
	DefaultSessionIdle = 2 * time.Hour
	// DefaultLinkTTL is how long an Accept's Class linkage waits for the
	// accounting Start that echoes it.
	DefaultLinkTTL = time.Hour
	// DefaultMaxLinks bounds the Class linkage map.
	DefaultMaxLinks = 65536
)

// SessionTableConfig configures a SessionTable.
type SessionTableConfig struct {
	Store       SessionStore
	IdleTimeout time.Duration // default DefaultSessionIdle
	Logger      *zap.Logger
	Registerer  prometheus.Registerer
	Now         func() time.Time
}

// SessionTable owns the live sessions: it applies accounting events to its
// store, expires idle sessions and exports nacd_accounting_sessions_active.
// It is the one writer of the store; the store makes it survive restarts
// and shared between nodes (PostgreSQL).
type SessionTable struct {
	store  SessionStore
	idle   time.Duration
	logger *zap.Logger
	now    func() time.Time
	active *prometheus.Desc
	closed sync.Once
}

// NewSessionTable returns a table over cfg.Store and registers its gauge.
func NewSessionTable(cfg SessionTableConfig) (*SessionTable, error) {
	if cfg.Store == nil {
		return nil, errors.New("radius: session table: Store is required")
	}
	if cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("radius: session table: IdleTimeout %v is negative", cfg.IdleTimeout)
	}
	t := &SessionTable{
		store:  cfg.Store,
		idle:   orDefault(cfg.IdleTimeout, DefaultSessionIdle),
		logger: cfg.Logger,
		now:    cfg.Now,
		active: prometheus.NewDesc("nacd_accounting_sessions_active",
			"Live sessions in the session table (all nodes sharing the store), by site.", []string{"site"}, nil),
	}
	if t.logger == nil {
		t.logger = zap.NewNop()
	}
	if t.now == nil {
		t.now = time.Now
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(t); err != nil {
			return nil, fmt.Errorf("radius: session table metrics: %w", err)
		}
	}
	return t, nil
}

// Describe implements prometheus.Collector.
func (t *SessionTable) Describe(ch chan<- *prometheus.Desc) { ch <- t.active }

// Collect implements prometheus.Collector: it counts the sessions in the
// store at scrape time, so every node reports the shared table.
func (t *SessionTable) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := t.store.CountBySite(ctx)
	if err != nil {
		t.logger.Warn("radius: count sessions", zap.Error(err))
		ch <- prometheus.NewInvalidMetric(t.active, err)
		return
	}
	for site, c := range n {
		ch <- prometheus.MustNewConstMetric(t.active, prometheus.GaugeValue, float64(c), site)
	}
}

// Update records a Start or Interim-Update: s replaces the stored session
// of its key, keeping the stored start time, and the stored Class linkage
// when s has none.
func (t *SessionTable) Update(ctx context.Context, s *Session) error {
	return t.store.Upsert(ctx, s, mergeSession)
}

func mergeSession(old, cur *Session) *Session {
	if old == nil {
		return cur
	}
	m := *cur
	if !old.Started.IsZero() && (m.Started.IsZero() || old.Started.Before(m.Started)) {
		m.Started = old.Started
	}
	// The stored linkage, and the placement (which a CoA may have moved
	// since the Accept), win over what a later packet of the same Accept
	// brings; a new Class (a re-authentication) replaces them.
	sameAccept := m.ClassID == "" || m.ClassID == old.ClassID
	unlinked := m.DeviceUUID == "" && m.Serial == "" && m.Email == ""
	if (old.ClassID != "" && sameAccept) || unlinked {
		if m.ClassID == "" {
			m.ClassID = old.ClassID
		}
		m.Serial, m.DeviceUUID, m.Email, m.Identity = old.Serial, old.DeviceUUID, old.Email, old.Identity
		if old.Segment != "" || m.Segment == "" {
			m.Segment = old.Segment
		}
		if old.VLAN != 0 || m.VLAN == 0 {
			m.VLAN = old.VLAN
		}
	}
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&m.UserName, old.UserName}, {&m.Calling, old.Calling}, {&m.Called, old.Called},
		{&m.SSID, old.SSID}, {&m.NASIdentifier, old.NASIdentifier}, {&m.NASIPAddress, old.NASIPAddress},
	} {
		if *f.dst == "" {
			*f.dst = f.src
		}
	}
	return &m
}

// SetPlacement records that session k was moved (CoA acknowledged) to
// segment and vlan. An unknown session stays unknown.
func (t *SessionTable) SetPlacement(ctx context.Context, k SessionKey, segment string, vlan int) error {
	return t.store.Upsert(ctx, &Session{ID: k.ID, NASIP: k.NASIP}, func(old, _ *Session) *Session {
		if old == nil {
			return nil
		}
		m := *old
		m.Segment, m.VLAN = segment, vlan
		return &m
	})
}

// Stop removes a session (Acct-Status-Type Stop) and returns what was
// stored (nil when it was unknown).
func (t *SessionTable) Stop(ctx context.Context, k SessionKey) (*Session, error) {
	return t.store.Delete(ctx, k)
}

// ClearNAS removes every session of the NAS at nasIP (Accounting-On/Off:
// the NAS rebooted or stops, so none of its sessions lives on).
func (t *SessionTable) ClearNAS(ctx context.Context, nasIP string) (int, error) {
	return t.store.DeleteNAS(ctx, nasIP)
}

// List returns the sessions f selects.
func (t *SessionTable) List(ctx context.Context, f SessionFilter) ([]*Session, error) {
	return t.store.List(ctx, f)
}

// ExpireIdle removes the sessions with no accounting for IdleTimeout and
// returns them.
func (t *SessionTable) ExpireIdle(ctx context.Context) ([]*Session, error) {
	gone, err := t.store.DeleteIdle(ctx, t.now().Add(-t.idle))
	for _, s := range gone {
		t.logger.Info("radius: session expired (no accounting)", zap.String("nas", s.NASName),
			zap.String("acct_session_id", s.ID), zap.Time("updated", s.Updated))
	}
	return gone, err
}

// Run expires idle sessions every minute (or idle/4, if shorter) until ctx
// is done.
func (t *SessionTable) Run(ctx context.Context) {
	every := min(max(t.idle/4, 50*time.Millisecond), time.Minute)
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			if _, err := t.ExpireIdle(ctx); err != nil && ctx.Err() == nil {
				t.logger.Warn("radius: expire idle sessions", zap.Error(err))
			}
		}
	}
}

// Close closes the store.
func (t *SessionTable) Close() error {
	var err error
	t.closed.Do(func() { err = t.store.Close() })
	return err
}
