package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/herts-council/nacd/internal/audit"
	"github.com/herts-council/nacd/internal/testtool"
	"github.com/herts-council/nacd/radius/loadtest"
)

// startServe runs serve in-process on cfgPath until the test ends (or
// stop is called) and returns its addresses.
func startServe(t *testing.T, cfgPath string) (readyInfo, func()) {
	t.Helper()
	return startServeArgs(t, "--config", cfgPath)
}

// startServeArgs is startServe with any serve arguments.
func startServeArgs(t *testing.T, args ...string) (readyInfo, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	readyc := make(chan readyInfo, 1)
	done := make(chan int, 1)
	go func() {
		done <- cmdServe(ctx, args, &stdout, &stderr, func(r readyInfo) { readyc <- r })
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("serve exited %d\nstderr: %s", code, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	}
	t.Cleanup(stop)
	select {
	case info := <-readyc:
		return info, stop
	case code := <-done:
		t.Fatalf("serve exited %d before ready\nstderr: %s", code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve not ready\nstderr: %s", stderr.String())
	}
	return readyInfo{}, stop
}

// editConfig rewrites the setup's config.
func editConfig(t *testing.T, s *testSetup, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.cfgPath, []byte(edit(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// scrapeSamples returns every sample of /metrics as `name{labels}` -> value
// (labels in the exposition's order) and the raw body.
func scrapeSamples(t *testing.T, addr string) (map[string]float64, []byte) {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name + "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Untyped != nil:
				out[key] = m.GetUntyped().GetValue()
			case m.Histogram != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out, body
}

// TestServeAuditMetricsHealth runs serve in-process, authenticates a
// scripted set of devices over UDP (the loadtest client: real EAP-TLS),
// and checks: /healthz and /readyz; the decision counters moved by
// segment and reject reason; the audit metrics exist; promtool check
// metrics passes on the scrape; the access log verifies with the seal
// public key after shutdown and audit query finds the holder's records.
func TestServeAuditMetricsHealth(t *testing.T) {
	promtool := testtool.Require(t, "promtool")
	s := newTestSetup(t)
	editConfig(t, s, func(c string) string { return c + "  audit_seal_every: 5\n" })
	info, stop := startServe(t, s.cfgPath)

	if code, body := httpGet(t, "http://"+info.Metrics+healthzPath); code != http.StatusOK || !bytes.Contains(body, []byte(`"status":"ok"`)) {
		t.Errorf("/healthz: %d %s", code, body)
	}
	code, body := httpGet(t, "http://"+info.Metrics+readyzPath)
	var ready healthBody
	if err := json.Unmarshal(body, &ready); err != nil || code != http.StatusOK || ready.Status != "ready" {
		t.Errorf("/readyz: %d %s", code, body)
	}
	for _, c := range []string{"config", "store", "crl", "audit"} {
		if ready.Checks[c] != "ok" {
			t.Errorf("/readyz check %s = %q, want ok", c, ready.Checks[c])
		}
	}

	before, _ := scrapeSamples(t, info.Metrics)
	script := []struct {
		device  string
		count   int
		accepts bool
	}{
		{"staff-laptop", 3, true},  // council-il3 -> il3
		{"member-tablet", 2, true}, // members-own-devices -> general
		{"revoked", 2, false},      // reject, reason revoked
	}
	for _, st := range script {
		f := s.devices[st.device]
		id, err := loadtest.LoadIdentity(f.Cert, f.Key, f.Chain)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := loadtest.Run(context.Background(), loadtest.Config{Server: info.RADIUSAuth, Secret: []byte(testSecret),
			Identities: []loadtest.Identity{id}, InsecureSkipVerify: true, Count: st.count, Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		want := int64(st.count)
		if (st.accepts && sum.Accepts != want) || (!st.accepts && sum.Rejects != want) {
			t.Fatalf("%s: %d accepts %d rejects %d errors, want %d %s", st.device, sum.Accepts, sum.Rejects, sum.Errors, want, map[bool]string{true: "accepts", false: "rejects"}[st.accepts])
		}
	}
	after, raw := scrapeSamples(t, info.Metrics)
	delta := func(k string) float64 { return after[k] - before[k] }
	const dec = `nacd_radius_decisions_total{reason=%q,result=%q,segment=%q,site="Wallfields"}`
	for _, w := range []struct {
		key  string
		want float64
	}{
		{fmt.Sprintf(dec, "rule-matched", "accept", "il3"), 3},
		{fmt.Sprintf(dec, "rule-matched", "accept", "general"), 2},
		{fmt.Sprintf(dec, "revoked", "reject", "reject"), 2},
	} {
		if got := delta(w.key); got != w.want {
			t.Errorf("%s moved by %v, want %v", w.key, got, w.want)
		}
	}
	if got := delta("nacd_audit_records_total{}"); got < 7 {
		t.Errorf("nacd_audit_records_total moved by %v, want >= 7 (one per decision, plus seals)", got)
	}
	if got := delta("nacd_audit_seals_total{}"); got < 1 {
		t.Errorf("nacd_audit_seals_total moved by %v, want >= 1 (audit_seal_every 5)", got)
	}
	for _, k := range []string{"nacd_audit_write_errors_total{}", "nacd_audit_records_lost_total{}"} {
		if v, ok := after[k]; !ok || v != 0 {
			t.Errorf("%s = %v (exported %t), want 0", k, v, ok)
		}
	}
	if v := after["nacd_tls_server_certificate_expiry_timestamp_seconds{}"]; v < float64(time.Now().Unix()) {
		t.Errorf("nacd_tls_server_certificate_expiry_timestamp_seconds = %v, want the server certificate's future NotAfter", v)
	}
	if _, ok := after[fmt.Sprintf(`nacd_build_info{goversion=%q,version=%q}`, goVersion(), version)]; !ok {
		t.Error("nacd_build_info{version,goversion} not exported")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	stop()
	pub := filepath.Join(s.dir, "data", audit.SealPubKeyFile)
	if code, out, errOut := runCmd("audit", "verify", "--pubkey", pub, s.accessLog); code != exitOK || !strings.Contains(out, "chain intact") {
		t.Errorf("audit verify after shutdown: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := runCmd("audit", "query", "--holder", "alice@eastherts.gov.uk", "--format", "csv", s.accessLog)
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(rows) != 4 || !strings.HasPrefix(rows[0], "time,seq,") || !strings.Contains(rows[1], ",accept,il3,") {
		t.Errorf("audit query --holder: exit %d, %d lines\n%s%s", code, len(rows), out, errOut)
	}
	if code, out, _ := runCmd("audit", "query", "--result", "reject", s.accessLog); code != exitOK || strings.Count(out, "\n") != 2 {
		t.Errorf("audit query --result reject: exit %d\n%s", code, out)
	}
}

// TestReadyzStaleCRL: a stale CRL makes /readyz answer 503 naming the crl
// check, while /healthz stays 200.
func TestReadyzStaleCRL(t *testing.T) {
	s := newTestSetup(t)
	// The setup's CRLs were issued a minute ago: with a 1s maximum age
	// they are stale.
	editConfig(t, s, func(c string) string {
		return strings.Replace(c, "    require_crl: true\n", "    require_crl: true\n    crl_max_age: 1s\n", 1)
	})
	info, _ := startServe(t, s.cfgPath)
	if code, _ := httpGet(t, "http://"+info.Metrics+healthzPath); code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200", code)
	}
	code, body := httpGet(t, "http://"+info.Metrics+readyzPath)
	var b healthBody
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("/readyz body %s: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || b.Status != "not ready" || len(b.Failed) != 1 || b.Failed[0] != "crl" || !strings.Contains(b.Checks["crl"], "stale") {
		t.Errorf("/readyz: %d %s, want 503 failing crl (stale)", code, body)
	}
	if b.Checks["audit"] != "ok" || b.Checks["store"] != "ok" {
		t.Errorf("/readyz other checks: %s", body)
	}
}

// TestAuditCLI: usage errors and the verify exit codes.
func TestAuditCLI(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "access.log")
	key, err := audit.LoadOrCreateSealKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, audit.SealKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("seal key mode: %v %v", st, err)
	}
	sink, err := audit.OpenSink(audit.Options{Path: log, SealKey: key, SealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	sink.Logger().Info("access-accept")
	sink.Close()
	pub := filepath.Join(dir, audit.SealPubKeyFile)
	unsealed := filepath.Join(dir, "live.log")
	l2, c2, _ := audit.Open(unsealed)
	l2.Info("access-accept")
	c2.Close()
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{name: "no subcommand", args: []string{"audit"}, code: exitUsage},
		{name: "unknown subcommand", args: []string{"audit", "grep"}, code: exitUsage},
		{name: "verify without files", args: []string{"audit", "verify"}, code: exitUsage},
		{name: "query without criteria", args: []string{"audit", "query", log}, code: exitUsage},
		{name: "query bad time", args: []string{"audit", "query", "--since", "yesterday", log}, code: exitUsage},
		{name: "query bad format", args: []string{"audit", "query", "--result", "reject", "--format", "xml", log}, code: exitUsage},
		{name: "verify sealed", args: []string{"audit", "verify", "--pubkey", pub, log}, code: exitOK, out: "chain intact"},
		{name: "verify without key", args: []string{"audit", "verify", log}, code: exitVerifyUnsealed, out: "UNSEALED"},
		{name: "verify unsealed file", args: []string{"audit", "verify", "--pubkey", pub, unsealed}, code: exitVerifyUnsealed, out: "UNSEALED"},
		{name: "verify missing file", args: []string{"audit", "verify", filepath.Join(dir, "nope")}, code: exitVerifyIO},
		{name: "verify missing key", args: []string{"audit", "verify", "--pubkey", filepath.Join(dir, "nope"), log}, code: exitVerifyIO},
		{name: "verify a non-log", args: []string{"audit", "verify", pub}, code: exitVerifyBroken, out: "BROKEN"},
		{name: "query table", args: []string{"audit", "query", "--result", "accept", "--format", "table", log}, code: exitOK, out: "time "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) {
				t.Errorf("exit %d, want %d; stdout %q (want %q) stderr %q", code, tc.code, out, tc.out, errOut)
			}
		})
	}
}
