package config

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Accounting and dynamic authorization defaults.
const (
	DefaultSessionIdleTimeout = 2 * time.Hour
	DefaultCoAPort            = 3799
	DefaultDynAuthTimeout     = 2 * time.Second
	DefaultDynAuthAttempts    = 3
)

// DynAuth modes of a client (clients[].dynauth).
const (
	DynAuthDisconnect = "disconnect"
	DynAuthCoA        = "coa"
	DynAuthNone       = "none"
)

// Accounting configures the session table.
type Accounting struct {
	// Store is "" for the embedded store (data_dir/sessions.db) or a
	// PostgreSQL DSN (postgres://...) shared by several nodes. It may hold
	// a password: print it only through StoreName.
	Store string
	// SessionIdleTimeout expires a session with no accounting for so long.
	SessionIdleTimeout time.Duration
}

// StoreName describes Store without a password ("embedded" or the DSN
// with the password replaced).
func (a Accounting) StoreName() string {
	if a.Store == "" {
		return "embedded"
	}
	at := strings.LastIndex(a.Store, "@")
	scheme := strings.Index(a.Store, "://")
	if at > scheme && scheme >= 0 {
		if u, _, ok := strings.Cut(a.Store[scheme+3:at], ":"); ok {
			return a.Store[:scheme+3] + u + ":xxxxx" + a.Store[at:]
		}
	}
	return a.Store
}

// DynAuth configures Disconnect-Request / CoA-Request sending.
type DynAuth struct {
	Timeout  time.Duration // per attempt
	Attempts int
}

type rawAccounting struct {
	Store              string `yaml:"store"`
	StoreFile          string `yaml:"store_file"`
	SessionIdleTimeout string `yaml:"session_idle_timeout"`
}

type rawDynAuth struct {
	Timeout  string `yaml:"timeout"`
	Attempts *int   `yaml:"attempts"`
}

// buildAccounting validates the accounting and dynauth blocks and the
// clients' coa_port and dynauth (cfg.Clients is in raw.Clients order).
func buildAccounting(raw *rawConfig, cfg *Config, ps *problems) {
	ra := raw.Accounting
	a := Accounting{
		Store:              strings.TrimSpace(ra.Store),
		SessionIdleTimeout: duration(ps, "accounting.session_idle_timeout", ra.SessionIdleTimeout, DefaultSessionIdleTimeout, time.Minute),
	}
	if ra.StoreFile != "" {
		if a.Store != "" {
			ps.add("accounting.store", "give store or store_file, not both")
		} else if b, err := readFileTrim(ra.StoreFile); err != nil {
			ps.add("accounting.store_file", "cannot read: %v", err)
		} else {
			a.Store = b
		}
	}
	if a.Store != "" && a.Store != "bbolt" && !strings.HasPrefix(a.Store, "postgres://") && !strings.HasPrefix(a.Store, "postgresql://") {
		path := "accounting.store"
		if ra.StoreFile != "" {
			path = "accounting.store_file"
		}
		ps.add(path, "%q is not a store: leave it empty for the embedded store (data_dir/sessions.db) or give a postgres:// DSN", a.StoreName())
	}
	if a.Store == "bbolt" {
		a.Store = ""
	}
	cfg.Accounting = a
	cfg.DynAuth = DynAuth{
		Timeout:  duration(ps, "dynauth.timeout", raw.DynAuth.Timeout, DefaultDynAuthTimeout, 100*time.Millisecond),
		Attempts: intField(ps, "dynauth.attempts", raw.DynAuth.Attempts, DefaultDynAuthAttempts, 1, 10),
	}
	for i, rc := range raw.Clients {
		if i >= len(cfg.Clients) {
			break
		}
		path := fmt.Sprintf("clients[%d]", i)
		c := &cfg.Clients[i]
		c.CoAPort = intField(ps, path+".coa_port", rc.CoAPort, DefaultCoAPort, 1, 65535)
		switch m := strings.ToLower(strings.TrimSpace(rc.DynAuth)); m {
		case "":
			c.DynAuth = DynAuthDisconnect
		case DynAuthDisconnect, DynAuthCoA, DynAuthNone:
			c.DynAuth = m
		default:
			ps.add(path+".dynauth", "%q is not a mode (want disconnect, coa or none)", rc.DynAuth)
		}
	}
}

func readFileTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", unwrapPathError(err)
	}
	return strings.TrimSpace(string(b)), nil
}
