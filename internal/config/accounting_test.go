package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAccountingConfig(t *testing.T) {
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte("postgres://nacd:hunter2@db.example/nacd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	client := strings.Replace(minimal, "    site: Wallfields", "    site: Wallfields\n    coa_port: 1700\n    dynauth: CoA", 1)
	cases := []struct {
		name      string
		yaml      string
		wantAcct  Accounting
		wantDyn   DynAuth
		wantPort  int
		wantMode  string
		wantStore string
	}{
		{"defaults", minimal, Accounting{SessionIdleTimeout: 2 * time.Hour}, DynAuth{Timeout: 2 * time.Second, Attempts: 3}, 3799, "disconnect", "embedded"},
		{"postgres, per-client CoA", client + "accounting:\n  store: postgres://nacd:hunter2@db.example/nacd\n  session_idle_timeout: 30m\ndynauth:\n  timeout: 500ms\n  attempts: 5\n",
			Accounting{Store: "postgres://nacd:hunter2@db.example/nacd", SessionIdleTimeout: 30 * time.Minute}, DynAuth{Timeout: 500 * time.Millisecond, Attempts: 5}, 1700, "coa",
			"postgres://nacd:xxxxx@db.example/nacd"},
		{"store from a file", minimal + "accounting:\n  store_file: " + dsnFile + "\n",
			Accounting{Store: "postgres://nacd:hunter2@db.example/nacd", SessionIdleTimeout: 2 * time.Hour}, DynAuth{Timeout: 2 * time.Second, Attempts: 3}, 3799, "disconnect",
			"postgres://nacd:xxxxx@db.example/nacd"},
		{"bbolt is the embedded store", minimal + "accounting:\n  store: bbolt\n", Accounting{SessionIdleTimeout: 2 * time.Hour}, DynAuth{Timeout: 2 * time.Second, Attempts: 3}, 3799, "disconnect", "embedded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml), "test.yaml", dir)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Accounting != tc.wantAcct || cfg.DynAuth != tc.wantDyn {
				t.Errorf("accounting %+v dynauth %+v, want %+v %+v", cfg.Accounting, cfg.DynAuth, tc.wantAcct, tc.wantDyn)
			}
			if c := cfg.Clients[0]; c.CoAPort != tc.wantPort || c.DynAuth != tc.wantMode {
				t.Errorf("client coa_port %d dynauth %q, want %d %q", c.CoAPort, c.DynAuth, tc.wantPort, tc.wantMode)
			}
			if got := cfg.Accounting.StoreName(); got != tc.wantStore {
				t.Errorf("StoreName %q, want %q", got, tc.wantStore)
			}
		})
	}
}

func TestAccountingProblems(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		{"bad client fields", strings.Replace(minimal, "    site: Wallfields", "    site: Wallfields\n    coa_port: 70000\n    dynauth: reboot", 1),
			[]string{`line 7: clients[0].coa_port: 70000 is out of range 1..65535`, `line 8: clients[0].dynauth: "reboot" is not a mode (want disconnect, coa or none)`}},
		{"bad accounting", minimal + "accounting:\n  store: mysql://u:hunter2@db/x\n  session_idle_timeout: 5s\n",
			[]string{`accounting.store: "mysql://u:xxxxx@db/x" is not a store`, `accounting.session_idle_timeout: must be at least 1m0s, got 5s`}},
		{"store twice", minimal + "accounting:\n  store: postgres://db/x\n  store_file: /nonexistent\n",
			[]string{`accounting.store: give store or store_file, not both`}},
		{"bad dynauth", minimal + "dynauth:\n  timeout: 1ms\n  attempts: 0\n  retries: 3\n",
			[]string{`dynauth.retries`}},
		{"dynauth out of range", minimal + "dynauth:\n  timeout: 1ms\n  attempts: 0\n",
			[]string{`dynauth.timeout: must be at least 100ms, got 1ms`, `dynauth.attempts: 0 is out of range 1..10`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "test.yaml", t.TempDir())
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems do not say %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("a DSN password is printed:\n%v", err)
			}
		})
	}
}
