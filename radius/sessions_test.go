package radius

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herts-council/nacd/internal/testtool"
)

// PostgresDSNEnv names the PostgreSQL server the PostgreSQL session store
// tests use (e.g. postgres://nacd@127.0.0.1:5432/nacd_test?sslmode=disable).
// Unset, those tests skip on a developer machine and fail in CI.
const PostgresDSNEnv = "NACD_TEST_POSTGRES_DSN"

// testPostgresDSN returns a DSN whose search_path is a fresh schema,
// dropped when the test ends, so tests never see each other's rows.
func testPostgresDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(PostgresDSNEnv)
	if dsn == "" {
		if testtool.Required() {
			tb.Fatalf("REQUIRED SERVICE MISSING: %s is not set (a PostgreSQL server for the session store tests); %s=1 or CI=true makes this a failure", PostgresDSNEnv, testtool.RequireEnv)
		}
		tb.Skipf("\n*** SKIPPED: %s is not set, so the PostgreSQL session store test did NOT run.\n*** Set it to a PostgreSQL DSN (a database the test may create schemas in).", PostgresDSNEnv)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("connect %s: %v", PostgresDSNEnv, err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "nacd_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		conn.Close(ctx)
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return dsn + sep + "search_path=" + schema
}

// storeKind opens a store of one backend at a location that survives
// reopening within the test.
type storeKind struct {
	name string
	open func(tb testing.TB) func() SessionStore
}

var storeKinds = []storeKind{
	{"embedded", func(tb testing.TB) func() SessionStore {
		path := filepath.Join(tb.TempDir(), "data", SessionsDBFile)
		return func() SessionStore {
			s, err := OpenSessionStore(context.Background(), "", filepath.Dir(path))
			if err != nil {
				tb.Fatalf("open: %v", err)
			}
			return s
		}
	}},
	{"postgres", func(tb testing.TB) func() SessionStore {
		dsn := testPostgresDSN(tb)
		return func() SessionStore {
			s, err := OpenSessionStore(context.Background(), dsn, "")
			if err != nil {
				tb.Fatalf("open: %v", err)
			}
			return s
		}
	}},
}

func TestSessionStore(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	alice := &Session{ID: "s-1", NASIP: "10.1.0.1", NASName: "wf-ctrl", Site: "Wallfields", UserName: "alice@herts.example",
		Calling: "AA-BB-CC-00-00-01", Called: "00-11-22-33-44-55:Council", SSID: "Council", ClassID: "c1",
		Serial: "0a1b", DeviceUUID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8", Email: "Alice@herts.example", Segment: "general", VLAN: 110,
		Started: t0, Updated: t0}
	aliceTablet := &Session{ID: "s-2", NASIP: "10.2.0.1", NASName: "theatre-ctrl", Site: "Hertford Theatre", UserName: "alice@herts.example",
		Serial: "0c", DeviceUUID: "11111111-2222-3333-4444-555555555555", Email: "alice@herts.example", Started: t0.Add(time.Minute), Updated: t0.Add(time.Minute)}
	bob := &Session{ID: "s-1", NASIP: "10.2.0.1", NASName: "theatre-ctrl", Site: "Hertford Theatre", UserName: "bob@herts.example",
		Serial: "0d", DeviceUUID: "99999999-2222-3333-4444-555555555555", Email: "bob@herts.example", Started: t0.Add(2 * time.Minute), Updated: t0.Add(2 * time.Minute)}

	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			ctx := context.Background()
			open := kind.open(t)
			st := open()
			reg := prometheus.NewRegistry()
			now := t0.Add(3 * time.Minute)
			tbl, err := NewSessionTable(SessionTableConfig{Store: st, IdleTimeout: time.Hour, Registerer: reg, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []*Session{alice, aliceTablet, bob} {
				if err := tbl.Update(ctx, s); err != nil {
					t.Fatalf("Update %s: %v", s.ID, err)
				}
			}
			// An Interim-Update without Class keeps the linkage and start.
			interim := *alice
			interim.ClassID, interim.Serial, interim.DeviceUUID, interim.Email, interim.Segment = "", "", "", "", ""
			interim.Started, interim.Updated, interim.InOctets = t0.Add(time.Minute), t0.Add(2*time.Minute), 5<<32+7
			if err := tbl.Update(ctx, &interim); err != nil {
				t.Fatal(err)
			}
			if got := testutil.ToFloat64(mustGauge(t, reg, "Hertford Theatre")); got != 2 {
				t.Errorf("sessions_active{site=Hertford Theatre} = %v, want 2", got)
			}

			cases := []struct {
				name string
				f    SessionFilter
				want []string // NASIP/ID in start order
			}{
				{"everyone", SessionFilter{}, []string{"10.1.0.1/s-1", "10.2.0.1/s-2", "10.2.0.1/s-1"}},
				{"holder, case-insensitive", SessionFilter{Holder: "ALICE@herts.example"}, []string{"10.1.0.1/s-1", "10.2.0.1/s-2"}},
				{"device", SessionFilter{Device: bob.DeviceUUID}, []string{"10.2.0.1/s-1"}},
				{"serial with 0x and leading zeros", SessionFilter{Serial: "0x000A1B"}, []string{"10.1.0.1/s-1"}},
				{"nas by name", SessionFilter{NAS: "theatre-ctrl"}, []string{"10.2.0.1/s-2", "10.2.0.1/s-1"}},
				{"session id on every NAS", SessionFilter{ID: "s-1"}, []string{"10.1.0.1/s-1", "10.2.0.1/s-1"}},
				{"holder and nas", SessionFilter{Holder: "alice@herts.example", NAS: "10.2.0.1"}, []string{"10.2.0.1/s-2"}},
				{"nobody", SessionFilter{Holder: "carol@herts.example"}, nil},
			}
			for _, tc := range cases {
				got, err := tbl.List(ctx, tc.f)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if keys := sessionKeys(got); strings.Join(keys, ",") != strings.Join(tc.want, ",") {
					t.Errorf("%s: got %v, want %v", tc.name, keys, tc.want)
				}
			}

			got, _ := tbl.List(ctx, SessionFilter{Device: alice.DeviceUUID})
			if len(got) != 1 || got[0].Serial != "0a1b" || got[0].ClassID != "c1" || !got[0].Started.Equal(t0) || got[0].InOctets != 5<<32+7 || got[0].VLAN != 110 {
				t.Errorf("merged interim = %+v, want linkage, start and octets kept", got[0])
			}

			if err := tbl.SetPlacement(ctx, alice.Key(), "guest", 120); err != nil {
				t.Fatal(err)
			}
			if err := tbl.SetPlacement(ctx, SessionKey{NASIP: "10.9.9.9", ID: "ghost"}, "guest", 120); err != nil {
				t.Fatal(err)
			}
			// A later interim of the same Accept (linked again, VLAN of the
			// Accept) keeps the CoA's placement.
			again := *alice
			again.Updated = t0.Add(2 * time.Minute)
			if err := tbl.Update(ctx, &again); err != nil {
				t.Fatal(err)
			}
			got, _ = tbl.List(ctx, SessionFilter{Device: alice.DeviceUUID})
			if len(got) != 1 || got[0].Segment != "guest" || got[0].VLAN != 120 {
				t.Errorf("after SetPlacement: %+v, want guest/120", got)
			}
			if ghost, _ := tbl.List(ctx, SessionFilter{ID: "ghost"}); len(ghost) != 0 {
				t.Errorf("SetPlacement created a session: %+v", ghost)
			}

			// Reopen: everything survives.
			if err := tbl.Close(); err != nil {
				t.Fatal(err)
			}
			st = open()
			tbl, err = NewSessionTable(SessionTableConfig{Store: st, IdleTimeout: time.Hour, Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			defer tbl.Close()
			got, err = tbl.List(ctx, SessionFilter{})
			if err != nil || len(got) != 3 {
				t.Fatalf("after reopen: %d sessions (%v), want 3", len(got), err)
			}

			if old, err := tbl.Stop(ctx, bob.Key()); err != nil || old == nil || old.Email != "bob@herts.example" {
				t.Errorf("Stop bob = %+v, %v", old, err)
			}
			if old, err := tbl.Stop(ctx, bob.Key()); err != nil || old != nil {
				t.Errorf("second Stop = %+v, %v; want nil, nil", old, err)
			}
			if n, err := tbl.ClearNAS(ctx, "10.2.0.1"); err != nil || n != 1 {
				t.Errorf("ClearNAS = %d, %v; want 1", n, err)
			}
			now = t0.Add(2*time.Minute + time.Hour + time.Second) // alice's last update + idle
			gone, err := tbl.ExpireIdle(ctx)
			if err != nil || len(gone) != 1 || gone[0].ID != "s-1" {
				t.Errorf("ExpireIdle = %v, %v; want alice's session", sessionKeys(gone), err)
			}
			if got, _ := tbl.List(ctx, SessionFilter{}); len(got) != 0 {
				t.Errorf("left: %v", sessionKeys(got))
			}
		})
	}
}

func sessionKeys(ss []*Session) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.NASIP+"/"+s.ID)
	}
	return out
}

// mustGauge returns the nacd_accounting_sessions_active series of site.
func mustGauge(tb testing.TB, reg *prometheus.Registry, site string) prometheus.Gauge {
	tb.Helper()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	if m := gatherSeries(tb, reg, "nacd_accounting_sessions_active", "site", site); m != nil {
		g.Set(m.GetGauge().GetValue())
	}
	return g
}

func TestOpenSessionStoreRefusesUnknown(t *testing.T) {
	for _, tc := range []struct{ name, dsn, want string }{
		{"mysql", "mysql://u:hunter2@db/x", "want"},
		{"password never echoed", "redis://u:hunter2@db/x", "u:xxxxx@db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenSessionStore(context.Background(), tc.dsn, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("err = %v, want it to mention %q and never the password", err, tc.want)
			}
		})
	}
}
