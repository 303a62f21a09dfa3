package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/radius/loadtest"
)

// reloadRound is one loadtest run of the loop.
type reloadRound struct {
	started time.Time
	sum     *loadtest.Summary
	err     error
}

// TestReloadUnderLoad: `nacd serve` (in process) under a closed loop of
// EAP-TLS authentications with the demo personas (staff-laptop -> il3 310,
// member-tablet -> general 110). SIGHUP with a changed rule (members'
// own devices -> guest 120): no authentication fails, and those started
// after the reload follow the new rule. An invalid configuration, by SIGHUP
// and by POST /-/reload, is refused and the running one stays.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	radiusAddr := freeAddr(t, "udp")
	metricsAddr := freeAddr(t, "tcp")
	secret := "reload-under-load-secret-0123456789"
	example, err := os.ReadFile("../../configs/nacd.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := strings.NewReplacer("127.0.0.1:1812 ", radiusAddr+" ", "127.0.0.1:1813 ", "127.0.0.1:0 ", "127.0.0.1:9812 ", metricsAddr+" ", "127.0.0.1:9443 ", "127.0.0.1:0 ",
		"secret_file: ./nacd-data/radius-secret", fmt.Sprintf("secret: %q", secret),
		"data_dir: ./nacd-data", "data_dir: "+filepath.Join(dir, "data"),
		"access_log: stdout", "access_log: "+filepath.Join(dir, "access.log")).Replace(string(example))
	const memberRule = "    - name: members-own-devices\n      match:\n        ownership: [personal]\n        roles: [member]\n      segment: general\n"
	if !strings.Contains(base, memberRule) {
		t.Fatal("the example's members-own-devices rule changed; update this test")
	}
	changed := strings.Replace(base, memberRule, strings.Replace(memberRule, "segment: general", "segment: guest", 1), 1)
	// A personal device on il3: refused by config validation.
	invalid := strings.Replace(base, memberRule, strings.Replace(memberRule, "segment: general", "segment: il3", 1), 1)
	cfgFile := filepath.Join(dir, "nacd.yaml")
	writeConfig := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfgFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(base)

	ctx, cancel := context.WithCancel(context.Background())
	var serveWG sync.WaitGroup
	serveOut, serveErr := &lockedBuffer{}, &lockedBuffer{}
	serveWG.Add(1)
	go func() {
		defer serveWG.Done()
		runContext(ctx, []string{"serve", "--config", cfgFile}, serveOut, serveErr)
	}()
	defer func() {
		cancel()
		serveWG.Wait()
		if t.Failed() {
			t.Logf("serve stderr:\n%s", serveErr.String())
		}
	}()
	metric := func(name string) float64 {
		t.Helper()
		v, _ := scrapeMetric(t, "http://"+metricsAddr+"/metrics", name)
		return v
	}
	waitUntil(t, "serve to be ready", func() bool {
		_, ok := scrapeMetric(t, "http://"+metricsAddr+"/metrics", "nacd_config_last_reload_success_timestamp_seconds")
		return ok
	})
	started := metric("nacd_config_last_reload_success_timestamp_seconds")

	data := filepath.Join(dir, "data")
	ids, err := loadtest.LoadIdentityDir(filepath.Join(data, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := loadtest.LoadCertPool(filepath.Join(data, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}

	// The load: rounds of 4 authentications, 2 at a time, back to back.
	var mu sync.Mutex
	var rounds []reloadRound
	stop := make(chan struct{})
	var loopWG sync.WaitGroup
	loopWG.Add(1)
	go func() {
		defer loopWG.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := reloadRound{started: time.Now()}
			r.sum, r.err = loadtest.Run(context.Background(), loadtest.Config{
				Server: radiusAddr, Secret: []byte(secret), Identities: ids, RootCAs: roots,
				Count: 4, Concurrency: 2, Timeout: 2 * time.Second,
			})
			mu.Lock()
			rounds = append(rounds, r)
			mu.Unlock()
		}
	}()
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(stop)
			loopWG.Wait()
		}
	}
	defer stopLoad()
	roundsAfter := func(at time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		return roundsAfterLocked(rounds, at)
	}
	waitUntil(t, "two rounds before the reload", func() bool { return roundsAfter(time.Time{}) >= 2 })

	// A changed rule, by SIGHUP.
	writeConfig(changed)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the SIGHUP reload", func() bool { return metric(`nacd_config_reloads_total{result="success"}`) == 1 })
	reloaded := time.Now()
	if got := metric("nacd_config_last_reload_success_timestamp_seconds"); got < started {
		t.Fatalf("last reload success timestamp %v went back from %v", got, started)
	}
	waitUntil(t, "two rounds after the reload", func() bool { return roundsAfter(reloaded) >= 2 })

	// An invalid configuration, by SIGHUP then by POST /-/reload.
	writeConfig(invalid)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the refused SIGHUP reload", func() bool { return metric(`nacd_config_reloads_total{result="failure"}`) == 1 })
	resp, err := http.Post("http://"+metricsAddr+"/-/reload", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "policy.rules[2]") || !strings.Contains(string(body), "unchanged") {
		t.Fatalf("POST /-/reload of an invalid config: %d %q", resp.StatusCode, body)
	}
	if got := metric(`nacd_config_reloads_total{result="failure"}`); got != 2 {
		t.Fatalf("reloads{failure} = %v, want 2", got)
	}
	if !strings.Contains(serveErr.String(), "config reload refused") {
		t.Fatal("no 'config reload refused' log line")
	}
	refused := time.Now()
	waitUntil(t, "two rounds after the refused reloads", func() bool { return roundsAfter(refused) >= 2 })
	stopLoad()

	mu.Lock()
	defer mu.Unlock()
	for i, r := range rounds {
		if r.err != nil {
			t.Fatalf("round %d: %v", i, r.err)
		}
		s := r.sum
		if s.Completed != 4 || s.Accepts != 4 || s.Rejects != 0 || s.Errors != 0 || s.Timeouts != 0 || s.Aborted != 0 {
			t.Fatalf("round %d (started %v, reload at %v): %d completed, %d accepts, %d rejects, %d errors %v, %d timeouts",
				i, r.started.Format(time.RFC3339Nano), reloaded.Format(time.RFC3339Nano), s.Completed, s.Accepts, s.Rejects, s.Errors, s.ErrorExamples, s.Timeouts)
		}
		switch {
		case r.started.After(reloaded):
			if s.VLANs["120"] != 2 || s.VLANs["310"] != 2 || s.VLANs["110"] != 0 {
				t.Fatalf("round %d after the reload: VLANs %v, want member-tablet on guest 120 (new rule), staff on il3 310", i, s.VLANs)
			}
		case i < 2: // completed before the new configuration was written
			if s.VLANs["110"] != 2 || s.VLANs["310"] != 2 {
				t.Fatalf("round %d before the reload: VLANs %v, want 110 and 310", i, s.VLANs)
			}
		}
	}
	t.Logf("%d rounds of 4 authentications, %d started after the reload", len(rounds), roundsAfterLocked(rounds, reloaded))
	if got := metric(`nacd_config_reloads_total{result="success"}`); got != 1 {
		t.Fatalf("reloads{success} = %v, want 1", got)
	}
}

// TestReloadEndpoint: POST /-/reload only, from loopback only.
func TestReloadEndpoint(t *testing.T) {
	tests := []struct {
		name   string
		remote string
		want   bool
	}{
		{"IPv4 loopback", "127.0.0.1:5555", true},
		{"other IPv4 loopback", "127.0.0.9:5555", true},
		{"IPv6 loopback", "[::1]:5555", true},
		{"IPv4-mapped loopback", "[::ffff:127.0.0.1]:5555", true},
		{"LAN address", "10.0.0.7:5555", false},
		{"no port", "127.0.0.1", false},
		{"garbage", "nonsense", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/-/reload", nil)
			req.RemoteAddr = tt.remote
			if got := loopbackRequest(req); got != tt.want {
				t.Fatalf("loopbackRequest(%q) = %v, want %v", tt.remote, got, tt.want)
			}
			if !tt.want {
				w := httptest.NewRecorder()
				(&reloader{}).ServeHTTP(w, req)
				if w.Code != http.StatusForbidden {
					t.Fatalf("status %d, want 403", w.Code)
				}
			}
		})
	}
}

// TestRestartNeeded: settings read only at start are named; reloadable ones
// are not.
func TestRestartNeeded(t *testing.T) {
	dataDir := t.TempDir()
	load := func(t *testing.T, mutate func(string) string) *config.Config {
		t.Helper()
		example, err := os.ReadFile("../../configs/nacd.example.yaml")
		if err != nil {
			t.Fatal(err)
		}
		y := strings.Replace(string(example), "secret_file: ./nacd-data/radius-secret", `secret: "restart-needed-secret-0123"`, 1)
		cfg, err := config.Parse([]byte(mutate(y)), "t.yaml", dataDir)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	same := func(s string) string { return s }
	tests := []struct {
		name   string
		mutate func(string) string
		want   []string
	}{
		{"nothing changed", same, nil},
		{"a rule changed", func(s string) string { return strings.Replace(s, "session_timeout: 1h", "session_timeout: 2h", 1) }, nil},
		{"a client network changed", func(s string) string { return strings.Replace(s, "- ::1/128", "- ::1/128\n      - 192.0.2.1", 1) }, nil},
		{"RADIUS port", func(s string) string { return strings.Replace(s, "127.0.0.1:1812 ", "127.0.0.1:11812 ", 1) }, []string{"listen.radius_auth"}},
		{"metrics port and log level", func(s string) string {
			return strings.Replace(strings.Replace(s, "127.0.0.1:9812 ", "127.0.0.1:19812 ", 1), "level: info", "level: debug", 1)
		}, []string{"listen.metrics", "log"}},
		{"limits", func(s string) string {
			return strings.Replace(s, "conversation_timeout: 30s", "conversation_timeout: 60s", 1)
		}, []string{"limits"}},
		{"EAP-TLS fragment size", func(s string) string { return strings.Replace(s, "fragment_size: 1020", "fragment_size: 900", 1) }, []string{"tls.fragment_size"}},
		{"PKI listener and curves", func(s string) string {
			return strings.Replace(strings.Replace(s, "127.0.0.1:9443 ", "\"\" ", 1), "curve_preferences: []", "curve_preferences: [x25519]", 1)
		}, []string{"listen.pki", "tls.curve_preferences"}},
		{"PKI admin subjects", func(s string) string {
			return strings.Replace(s, "admin_subjects: []", "admin_subjects: [helpdesk]", 1)
		}, []string{"pki"}},
	}
	old := load(t, same)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := restartNeeded(old, load(t, tt.mutate))
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("restartNeeded = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("RadSec revocation check", func(t *testing.T) {
		// Built at start: its CRLs, require_crl and the CA files it
		// checks against need a restart (set directly: the example
		// configuration has RadSec off).
		cfg := load(t, same)
		cfg.RadSec.CRLs = []string{"/etc/nacd/controllers.crl"}
		cfg.RadSec.RequireCRL = true
		cfg.RadSec.Revocation.CAFiles = []string{"/etc/nacd/controllers-ca.pem"}
		want := "radsec.crls,radsec.require_crl,radsec.ca_files (revocation check)"
		if got := restartNeeded(old, cfg); strings.Join(got, ",") != want {
			t.Fatalf("restartNeeded = %v, want %s", got, want)
		}
	})
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrapeMetric returns the value of the first sample line starting with
// name (a metric name, with its labels when given) on the /metrics page.
func scrapeMetric(t *testing.T, url, name string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// waitUntil polls cond (a synchronisation aid; it fails only if cond never
// holds within a generous bound).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func roundsAfterLocked(rounds []reloadRound, at time.Time) int {
	n := 0
	for _, r := range rounds {
		if r.started.After(at) {
			n++
		}
	}
	return n
}
