package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"layeh.com/radius"
	"layeh.com/radius/rfc2869"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
)

const testSecret = "in-process-test-secret-0123456789"

// testSetup is a configuration file over a test PKI.
type testSetup struct {
	dir       string
	cfgPath   string
	accessLog string
	devices   map[string]testpki.Files
}

// newTestSetup writes a PKI (root, intermediate, CRLs with one revoked
// device), a server certificate, devices and a config using them, with
// listeners on 127.0.0.1:0.
func newTestSetup(t *testing.T) *testSetup {
	t.Helper()
	dir := t.TempDir()
	s := &testSetup{dir: dir, devices: map[string]testpki.Files{}, accessLog: filepath.Join(dir, "logs", "access.log")}
	root := testpki.NewRoot(t, "Test Council Root")
	inter := root.NewIntermediate(t, "Test Council Devices")
	other := testpki.NewRoot(t, "Someone Else")
	rootFile := root.WriteCert(t, dir, "root")
	interFile := inter.WriteCert(t, dir, "inter")
	server := inter.IssueServer(t, "nacd.test", testpki.ECDSAP256).WriteFiles(t, dir, "server")

	cm, personal := policy.OwnershipCouncilManaged, policy.OwnershipPersonal
	devices := map[string]struct {
		ca *testpki.CA
		d  testpki.Device
	}{
		"staff-laptop":  {inter, testpki.Device{CommonName: "WF-LT-1", Email: "alice@eastherts.gov.uk", UUID: "6f1c7a36-0001-4c1e-9a53-2d6f0e1a0001", Ownership: cm, Role: policy.RoleStaff, IL3: true}},
		"member-tablet": {inter, testpki.Device{CommonName: "cllr-ipad", Email: "cllr@eastherts.gov.uk", Ownership: personal, Role: policy.RoleMember}},
		"revoked":       {inter, testpki.Device{CommonName: "WF-LT-2", Ownership: cm, Role: policy.RoleStaff, IL3: true}},
		"untrusted":     {other, testpki.Device{CommonName: "WF-LT-3", Ownership: cm, Role: policy.RoleStaff, IL3: true}},
	}
	var revoked []*testpki.Leaf
	for name, dv := range devices {
		leaf := dv.ca.IssueDevice(t, dv.d)
		s.devices[name] = leaf.WriteFiles(t, dir, name)
		if name == "revoked" {
			revoked = append(revoked, leaf)
		}
	}
	now := time.Now()
	writeCRL := func(name string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rootCRL := writeCRL("root.crl", root.CRL(t, 1, now.Add(-time.Minute), now.Add(24*time.Hour)))
	interCRL := writeCRL("inter.crl", inter.CRL(t, 1, now.Add(-time.Minute), now.Add(24*time.Hour), revoked[0].Cert.SerialNumber))

	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`data_dir: %q
listen:
  radius_auth: 127.0.0.1:0
  radius_acct: 127.0.0.1:0
  metrics: 127.0.0.1:0
clients:
  - name: loopback
    networks: [127.0.0.1]
    secret_file: %q
    site: Wallfields
sites:
  - name: Wallfields
    vlans: {il3: 310, general: 110, guest: 120, onboarding: 130}
  - name: Hertford Theatre
    vlans: {general: 210, guest: 220}
tls:
  certificate: %q
  key: %q
trust_anchors:
  - name: council
    il3: true
    ca_files: [%q, %q]
    crls: [%q, %q]
    require_crl: true
policy:
  rules:
    - name: council-il3
      match: {ownership: [council-managed], roles: [staff], clearance_il3: true}
      segment: il3
      fallback: general
    - name: members-own-devices
      match: {ownership: [personal], roles: [member]}
      segment: general
      session_timeout: 12h
log:
  access_log: %q
`, filepath.Join(dir, "data"), secretFile, server.Chain, server.Key, rootFile, interFile, rootCRL, interCRL, s.accessLog)
	s.cfgPath = filepath.Join(dir, "nacd.yaml")
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// noDefaultConfig makes the default config path one that does not exist.
func noDefaultConfig(t *testing.T) {
	t.Helper()
	old := defaultConfigPath
	defaultConfigPath = filepath.Join(t.TempDir(), "no-such-nacd.yaml")
	t.Cleanup(func() { defaultConfigPath = old })
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRunUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{name: "no command", args: nil, code: exitUsage, stderr: "usage:"},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitUsage, stderr: `unknown command "frobnicate"`},
		{name: "config without check", args: []string{"config"}, code: exitUsage, stderr: "nacd config check"},
		{name: "policy without explain", args: []string{"policy", "decide"}, code: exitUsage, stderr: "nacd policy explain"},
		{name: "unknown flag", args: []string{"config", "check", "--cfg", "x"}, code: exitUsage, stderr: "flag provided but not defined: -cfg"},
		{name: "stray argument", args: []string{"serve", "now"}, code: exitUsage, stderr: `unexpected argument "now"`},
		{name: "explain without site", args: []string{"policy", "explain", "--cert", "x.crt"}, code: exitUsage, stderr: "--cert and --site are required"},
		{name: "help", args: []string{"help"}, code: exitOK, stdout: "nacd serve"},
		{name: "version", args: []string{"version"}, code: exitOK, stdout: "nacd dev (go1."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			if !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stdout %q / stderr %q, want them to contain %q / %q", stdout, stderr, tc.stdout, tc.stderr)
			}
		})
	}
}

func TestConfigCheck(t *testing.T) {
	s := newTestSetup(t)
	base, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(s.dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badCA := write("bad-ca.pem", "not a certificate\n")
	tests := []struct {
		name   string
		config string // file content; "" uses the test setup's config
		code   int
		stdout []string
		stderr []string
	}{
		{name: "valid config", code: exitOK, stdout: []string{"ok: " + s.cfgPath, "clients (1)", "loopback: 127.0.0.1/32", "council-il3 -> il3 (fallback general)"}},
		{
			name:   "every problem listed with its line",
			config: strings.Replace(strings.Replace(string(base), "networks: [127.0.0.1]", "networks: [10.0.0.300]", 1), "site: Wallfields\n", "site: Wallfeilds\n", 1),
			code:   exitFailure,
			stderr: []string{"2 problem(s)", `config: line 8: clients[0].networks[0]: "10.0.0.300" is not an IP or CIDR`, `config: line 10: clients[0].site: unknown site "Wallfeilds"`},
		},
		{
			name:   "rule putting a personal device on il3",
			config: strings.Replace(string(base), "match: {ownership: [council-managed], roles: [staff], clearance_il3: true}", "match: {ownership: [personal, council-managed], clearance_il3: true}", 1),
			code:   exitFailure,
			stderr: []string{`policy.rules[0].match.ownership: rule "council-il3": an il3 rule must require ownership exactly [council-managed]`},
		},
		{
			name:   "unknown field",
			config: string(base) + "limits:\n  max_conversation: 10\n",
			code:   exitFailure,
			stderr: []string{`limits.max_conversation: unknown field "max_conversation"`},
		},
		{
			name:   "CA file that does not parse",
			config: strings.Replace(string(base), "ca_files: [", fmt.Sprintf("ca_files: [%q, ", badCA), 1),
			code:   exitFailure,
			stderr: []string{"config: trust_anchors:", "bad-ca.pem"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := s.cfgPath
			if tc.config != "" {
				path = write("case.yaml", tc.config)
			}
			code, stdout, stderr := runCmd("config", "check", "--config", path)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout)
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stdout+stderr, testSecret) {
				t.Error("the shared secret was printed")
			}
		})
	}

	t.Run("missing config file", func(t *testing.T) {
		code, _, stderr := runCmd("config", "check", "--config", filepath.Join(s.dir, "nope.yaml"))
		if code != exitFailure || !strings.Contains(stderr, "no such file") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
	t.Run("built-in configuration creates nothing", func(t *testing.T) {
		noDefaultConfig(t)
		dataDir := filepath.Join(t.TempDir(), "data")
		code, stdout, stderr := runCmd("config", "check", "--data-dir", dataDir)
		if code != exitOK || !strings.Contains(stdout, "ok: built-in") || !strings.Contains(stdout, "generated by nacd serve") {
			t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Errorf("config check created the data dir (stat: %v)", err)
		}
	})
}

func TestPolicyExplain(t *testing.T) {
	s := newTestSetup(t)
	tests := []struct {
		name    string
		device  string
		site    string
		status  string
		accept  bool
		segment string
		vlan    int
		rule    string
		reason  string
	}{
		{name: "cleared staff laptop at Wallfields", device: "staff-laptop", site: "Wallfields", status: "ok", accept: true, segment: "il3", vlan: 310, rule: "council-il3", reason: "rule-matched"},
		{name: "cleared staff laptop at a site without il3", device: "staff-laptop", site: "Hertford Theatre", status: "ok", accept: true, segment: "general", vlan: 210, rule: "council-il3", reason: "segment-not-offered"},
		{name: "member own tablet", device: "member-tablet", site: "Wallfields", status: "ok", accept: true, segment: "general", vlan: 110, rule: "members-own-devices", reason: "rule-matched"},
		{name: "revoked laptop", device: "revoked", site: "Wallfields", status: "revoked", segment: "reject", rule: "certificate-status", reason: "revoked"},
		{name: "untrusted root", device: "untrusted", site: "Wallfields", status: "untrusted", segment: "reject", rule: "certificate-status", reason: "untrusted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := s.devices[tc.device]
			code, stdout, stderr := runCmd("policy", "explain", "--config", s.cfgPath, "--cert", f.Cert, "--chain", f.Chain, "--site", tc.site, "--json")
			if code != exitOK {
				t.Fatalf("exit %d\nstderr: %s", code, stderr)
			}
			var ex explanation
			if err := json.Unmarshal([]byte(stdout), &ex); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, stdout)
			}
			d := ex.Decision
			if ex.Status != tc.status || d.Accepted != tc.accept || d.Segment != tc.segment || d.VLAN != tc.vlan || d.Rule != tc.rule || d.Reason != tc.reason {
				t.Errorf("status %q decision %+v, want status %q %v %s %d %s %s", ex.Status, d, tc.status, tc.accept, tc.segment, tc.vlan, tc.rule, tc.reason)
			}

			code, text, _ := runCmd("policy", "explain", "--config", s.cfgPath, "--cert", f.Cert, "--chain", f.Chain, "--site", tc.site)
			want := "REJECT"
			if tc.accept {
				want = fmt.Sprintf("ACCEPT\n  segment         %s\n  vlan            %d", tc.segment, tc.vlan)
			}
			if code != exitOK || !strings.Contains(text, want) || !strings.Contains(text, "reason          "+tc.reason) {
				t.Errorf("text output lacks %q / reason %q:\n%s", want, tc.reason, text)
			}
		})
	}

	errTests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unknown site", args: []string{"--cert", s.devices["staff-laptop"].Cert, "--site", "Hertford"}, want: `unknown site "Hertford"`},
		{name: "missing certificate", args: []string{"--cert", filepath.Join(s.dir, "nope.crt"), "--site", "Wallfields"}, want: "no such file"},
		{name: "not a certificate", args: []string{"--cert", s.cfgPath, "--site", "Wallfields"}, want: "no certificate"},
	}
	for _, tc := range errTests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCmd(append([]string{"policy", "explain", "--config", s.cfgPath}, tc.args...)...)
			if code != exitFailure || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, tc.want)
			}
		})
	}
}

// TestPolicyExplainBuiltin is the README tour's last step: the demo member
// tablet of the bootstrap PKI under the built-in configuration.
func TestPolicyExplainBuiltin(t *testing.T) {
	noDefaultConfig(t)
	dataDir := t.TempDir()
	code, _, stderr := runCmd("policy", "explain", "--data-dir", dataDir, "--cert", filepath.Join(dataDir, "demo", "member-tablet.crt"), "--site", "Wallfields")
	if code != exitFailure || !strings.Contains(stderr, "run `nacd serve` once") {
		t.Errorf("without a bootstrap PKI: exit %d, stderr %q", code, stderr)
	}
	b, err := pki.Bootstrap(dataDir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		device, segment string
		vlan            int
	}{
		{"member-tablet", "general", 110},
		{"staff-laptop", "il3", 310},
	} {
		t.Run(tc.device, func(t *testing.T) {
			code, stdout, stderr := runCmd("policy", "explain", "--data-dir", dataDir, "--cert", b.Demo[tc.device].Cert, "--site", "Wallfields", "--json")
			var ex explanation
			if code != exitOK || json.Unmarshal([]byte(stdout), &ex) != nil {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			if ex.Anchor != "nacd-local" || ex.Decision.Segment != tc.segment || ex.Decision.VLAN != tc.vlan {
				t.Errorf("anchor %q decision %+v, want nacd-local %s %d", ex.Anchor, ex.Decision, tc.segment, tc.vlan)
			}
		})
	}
}

// syncBuffer is a goroutine-safe bytes.Buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// statusServer sends an RFC 5997 Status-Server with Message-Authenticator
// and returns the response code.
func statusServer(ctx context.Context, addr, secret string) (radius.Code, error) {
	p := radius.New(radius.CodeStatusServer, []byte(secret))
	p.Add(rfc2869.MessageAuthenticator_Type, make([]byte, 16))
	b, err := p.MarshalBinary()
	if err != nil {
		return 0, err
	}
	mac := hmac.New(md5.New, []byte(secret))
	mac.Write(b)
	p.Set(rfc2869.MessageAuthenticator_Type, mac.Sum(nil))
	resp, err := radius.Exchange(ctx, p, addr)
	if err != nil {
		return 0, err
	}
	return resp.Code, nil
}

func TestServe(t *testing.T) {
	s := newTestSetup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	readyc := make(chan readyInfo, 1)
	done := make(chan int, 1)
	go func() {
		done <- cmdServe(ctx, []string{"--config", s.cfgPath}, &stdout, &stderr, func(r readyInfo) { readyc <- r })
	}()
	var info readyInfo
	select {
	case info = <-readyc:
	case code := <-done:
		t.Fatalf("serve exited %d before ready\nstderr: %s", code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve not ready\nstderr: %s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `"msg":"ready"`) || !strings.Contains(stderr.String(), info.RADIUSAuth) {
		t.Errorf("no ready line with the bound address in:\n%s", stderr.String())
	}

	t.Run("Status-Server answered", func(t *testing.T) {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		code, err := statusServer(rctx, info.RADIUSAuth, testSecret)
		if err != nil || code != radius.CodeAccessAccept {
			t.Errorf("Status-Server: code %v, err %v; want Access-Accept", code, err)
		}
	})
	t.Run("Status-Server with the wrong secret is dropped", func(t *testing.T) {
		rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer rcancel()
		if code, err := statusServer(rctx, info.RADIUSAuth, "not-the-secret-at-all"); err == nil {
			t.Errorf("answered with code %v; want no answer", code)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		resp, err := http.Get("http://" + info.Metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: %s", resp.Status)
		}
		for _, w := range []string{"nacd_build_info{", "go_goroutines ", "process_open_fds ", "nacd_radius_"} {
			if !bytes.Contains(body, []byte(w)) {
				t.Errorf("/metrics lacks %q", w)
			}
		}
	})
	t.Run("access log file created 0600", func(t *testing.T) {
		st, err := os.Stat(s.accessLog)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("access log: %v, %v", st, err)
		}
	})

	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("serve exited %d after cancel, want 0\nstderr: %s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped line:\n%s", stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), testSecret) {
		t.Error("the shared secret was printed")
	}
}

func TestServeFailures(t *testing.T) {
	s := newTestSetup(t)
	base, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		config string
		want   string
	}{
		{name: "invalid config", config: strings.Replace(string(base), "segment: il3", "segment: vip", 1), want: `policy.rules[0].segment: rule "council-il3": unknown segment "vip"`},
		{name: "listener that cannot bind", config: strings.Replace(string(base), "radius_auth: 127.0.0.1:0", "radius_auth: 192.0.2.1:1812", 1), want: "listen.radius_auth:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(s.dir, "case.yaml")
			if err := os.WriteFile(p, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr syncBuffer
			code := cmdServe(context.Background(), []string{"--config", p}, &stdout, &stderr, nil)
			if code != exitFailure || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant 1 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

func TestShortDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{12 * time.Hour, "12h"},
		{168 * time.Hour, "168h"},
		{90 * time.Minute, "1h30m"},
		{30 * time.Second, "30s"},
		{time.Hour + time.Second, "1h0m1s"},
		{5 * time.Minute, "5m"},
	}
	for _, tc := range tests {
		if got := shortDuration(tc.in); got != tc.want {
			t.Errorf("shortDuration(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
