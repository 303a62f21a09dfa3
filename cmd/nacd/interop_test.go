package main

// Interop test: the real nacd binary, started with `nacd serve --config`,
// against the real eapol_test (wpa_supplicant 2.10), for every persona of
// design section 4 and both TLS 1.2 and TLS 1.3. It proves what a Wi-Fi
// controller and a device would see: Access-Accept with the right VLAN and
// MPPE keys that match the supplicant's MSK, or Access-Reject; then the access
// log and the metrics.
//
// Groups (each with its own nacd, so its access log and metrics are its
// own): personas, fragmentation (long chain, fragment_size 500 both ways),
// edge cases (TLS 1.2 without EMS, PEAP-only NAK, no client certificate,
// wrong secret, unknown NAS), reauthentication, stale CRL, revocation
// without restart, a concurrent burst, behind a FreeRADIUS proxy (UDP and
// RadSec), an IPv6 NAS, a policy reload on SIGHUP. Under `go test -race` the nacd binary is race-built too.
//
// Environment: NACD_INTEROP_BIN tests a prebuilt binary instead of building
// this package; EAPOLTEST_CAPTURE_DIR keeps every eapol_test output.
// eapol_test (or FreeRADIUS) missing: skipped loudly locally, a failure in
// CI (internal/testtool).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/internal/eapoltest"
	"github.com/herts-council/nacd/internal/freeradiustest"
	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

// binEnv names a prebuilt nacd binary to test instead of building this
// package (e.g. one built with -race: go build -race -o /tmp/nacd ./cmd/nacd).
const binEnv = "NACD_INTEROP_BIN"

// buildNacd builds the nacd binary from this package into dir (or returns
// $NACD_INTEROP_BIN).
func buildNacd(t *testing.T, dir string) string {
	t.Helper()
	if p := os.Getenv(binEnv); p != "" {
		t.Logf("testing the prebuilt nacd binary %s ($%s)", p, binEnv)
		return p
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "nacd")
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		// Under `go test -race` (make test, CI) the server runs with the
		// race detector too: real traffic through the real binary is where
		// the EAP/TLS bridge races would show. The packages are already
		// race-compiled for this test binary, so this is mostly a link.
		args = append(args, "-race")
		t.Logf("building nacd with -race (this test binary is race-enabled)")
	}
	cmd := exec.Command(goBin, append(args, ".")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go build nacd: %v\n%s", err, out)
	}
	return bin
}

// raceEnabled reports whether this test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// interopPKI is the test PKI: the council root and its issuing
// intermediate (one trust anchor, il3: true, both CRLs), a server
// certificate, and an unrelated root for the "untrusted" persona.
type interopPKI struct {
	dir              string
	root, inter      *testpki.CA
	other            *testpki.CA
	rootFile         string
	interFile        string
	rootCRL          string
	interCRL         string
	server           testpki.Files
	revokedSerials   []*big.Int
	personaFiles     map[string]testpki.Files
	personaLeaves    map[string]*testpki.Leaf
	fragmentDevice   testpki.Files
	fragmentLeafSize int
	crlNumber        int64
}

// persona is one kind of device and where nacd must put it.
type persona struct {
	name   string
	device testpki.Device
	issuer string // "inter" (default) or "other" (untrusted root)
	// clientIP selects the NAS, hence the site: 127.0.0.1 is the
	// Wallfields AP, 127.0.0.2 the Hertford Theatre AP (no il3).
	clientIP string
	revoked  bool

	accept         bool
	segment        policy.Segment
	vlan           int
	rule           string
	reason         string
	sessionTimeout int // seconds
	// sessionTimeoutMax, when set, replaces sessionTimeout: the
	// certificate expires first, so 0 < Session-Timeout <= this.
	sessionTimeoutMax int
}

const (
	wallfieldsIP = "127.0.0.1"
	theatreIP    = "127.0.0.2"
)

func personas() []persona {
	now := time.Now()
	cm, personal := policy.OwnershipCouncilManaged, policy.OwnershipPersonal
	return []persona{
		{name: "staff council laptop with il3 clearance",
			device: testpki.Device{CommonName: "WF-LT-0001", Email: "alice.staff@eastherts.gov.uk", UUID: "6f1c7a36-0001-4c1e-9a53-2d6f0e1a0001", Ownership: cm, Role: policy.RoleStaff, IL3: true},
			accept: true, segment: policy.SegmentIL3, vlan: 310, rule: "council-il3", reason: "rule-matched", sessionTimeout: 12 * 3600},
		{name: "staff council laptop without clearance",
			device: testpki.Device{CommonName: "WF-LT-0002", Email: "bob.staff@eastherts.gov.uk", UUID: "6f1c7a36-0002-4c1e-9a53-2d6f0e1a0002", Ownership: cm, Role: policy.RoleStaff, KeyType: testpki.RSA2048},
			accept: true, segment: policy.SegmentGeneral, vlan: 110, rule: "council-managed", reason: "rule-matched", sessionTimeout: 12 * 3600},
		{name: "staff own phone",
			device: testpki.Device{CommonName: "carol-iphone", Email: "carol.staff@eastherts.gov.uk", UUID: "6f1c7a36-0003-4c1e-9a53-2d6f0e1a0003", Ownership: personal, Role: policy.RoleStaff},
			accept: true, segment: policy.SegmentGuest, vlan: 120, rule: "staff-own-devices", reason: "rule-matched", sessionTimeout: 12 * 3600},
		{name: "member own tablet",
			device: testpki.Device{CommonName: "cllr-dave-ipad", Email: "cllr.dave@eastherts.gov.uk", UUID: "6f1c7a36-0004-4c1e-9a53-2d6f0e1a0004", Ownership: personal, Role: policy.RoleMember},
			accept: true, segment: policy.SegmentGeneral, vlan: 110, rule: "members-own-devices", reason: "rule-matched", sessionTimeout: 12 * 3600},
		{name: "contractor",
			device: testpki.Device{CommonName: "contractor-erin", Email: "erin@contractor.example", UUID: "6f1c7a36-0005-4c1e-9a53-2d6f0e1a0005", Ownership: personal, Role: policy.RoleContractor},
			accept: true, segment: policy.SegmentGuest, vlan: 120, rule: "contractors", reason: "rule-matched", sessionTimeout: 8 * 3600},
		{name: "visitor",
			device: testpki.Device{CommonName: "visitor-frank", Email: "frank@visitor.example", UUID: "6f1c7a36-0006-4c1e-9a53-2d6f0e1a0006", Ownership: personal, Role: policy.RoleVisitor},
			accept: true, segment: policy.SegmentGuest, vlan: 120, rule: "visitors", reason: "rule-matched", sessionTimeout: 8 * 3600},
		{name: "personal device asserting il3 clearance",
			device: testpki.Device{CommonName: "grace-own-laptop", Email: "grace.staff@eastherts.gov.uk", UUID: "6f1c7a36-0007-4c1e-9a53-2d6f0e1a0007", Ownership: personal, Role: policy.RoleStaff, IL3: true},
			accept: true, segment: policy.SegmentGuest, vlan: 120, rule: "staff-own-devices", reason: "rule-matched", sessionTimeout: 12 * 3600},
		{name: "device without role",
			device: testpki.Device{CommonName: "unenrolled-1", UUID: "6f1c7a36-0008-4c1e-9a53-2d6f0e1a0008"},
			accept: true, segment: policy.SegmentOnboarding, vlan: 130, rule: "no-role-onboarding", reason: "rule-matched", sessionTimeout: 3600},
		{name: "il3 laptop at a site without il3", clientIP: theatreIP,
			device: testpki.Device{CommonName: "WF-LT-0009", Email: "heidi.staff@eastherts.gov.uk", UUID: "6f1c7a36-0009-4c1e-9a53-2d6f0e1a0009", Ownership: cm, Role: policy.RoleStaff, IL3: true},
			accept: true, segment: policy.SegmentGeneral, vlan: 210, rule: "council-il3", reason: "segment-not-offered", sessionTimeout: 12 * 3600},
		{name: "council laptop whose certificate expires in 30 minutes",
			device: testpki.Device{CommonName: "WF-LT-0014", Email: "nina.staff@eastherts.gov.uk", UUID: "6f1c7a36-0014-4c1e-9a53-2d6f0e1a0014", Ownership: cm, Role: policy.RoleStaff,
				NotAfter: now.Add(30 * time.Minute)},
			accept: true, segment: policy.SegmentGeneral, vlan: 110, rule: "council-managed", reason: "rule-matched", sessionTimeoutMax: 30 * 60},
		{name: "revoked", revoked: true,
			device:  testpki.Device{CommonName: "WF-LT-0010", Email: "ivan.leaver@eastherts.gov.uk", UUID: "6f1c7a36-0010-4c1e-9a53-2d6f0e1a0010", Ownership: cm, Role: policy.RoleStaff, IL3: true},
			segment: policy.SegmentReject, reason: "revoked"},
		{name: "expired",
			device: testpki.Device{CommonName: "WF-LT-0011", Email: "judy.staff@eastherts.gov.uk", Ownership: cm, Role: policy.RoleStaff,
				NotBefore: now.Add(-400 * 24 * time.Hour), NotAfter: now.Add(-24 * time.Hour)},
			segment: policy.SegmentReject, reason: "expired"},
		{name: "untrusted root", issuer: "other",
			device:  testpki.Device{CommonName: "WF-LT-0001", Email: "alice.staff@eastherts.gov.uk", Ownership: cm, Role: policy.RoleStaff, IL3: true},
			segment: policy.SegmentReject, reason: "untrusted"},
		{name: "wrong EKU",
			device: testpki.Device{CommonName: "WF-LT-0013", Email: "mallory.staff@eastherts.gov.uk", Ownership: cm, Role: policy.RoleStaff,
				EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
			segment: policy.SegmentReject, reason: "wrong-eku"},
	}
}

func newInteropPKI(t *testing.T, ps []persona) *interopPKI {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := &interopPKI{dir: dir, personaFiles: map[string]testpki.Files{}, personaLeaves: map[string]*testpki.Leaf{}}
	p.root = testpki.NewRoot(t, "East Herts Council Test Root")
	p.inter = p.root.NewIntermediate(t, "East Herts Council Test Devices")
	p.other = testpki.NewRoot(t, "Someone Else Root")
	p.rootFile = p.root.WriteCert(t, dir, "root")
	p.interFile = p.inter.WriteCert(t, dir, "intermediate")
	p.server = p.inter.IssueServer(t, "nacd.test", testpki.ECDSAP256).WriteFiles(t, dir, "server")

	for i, ps := range ps {
		ca := p.inter
		if ps.issuer == "other" {
			ca = p.other
		}
		leaf := ca.IssueDevice(t, ps.device)
		p.personaLeaves[ps.name] = leaf
		p.personaFiles[ps.name] = leaf.WriteFiles(t, dir, fmt.Sprintf("persona-%02d", i))
		if ps.revoked {
			p.revokedSerials = append(p.revokedSerials, leaf.Cert.SerialNumber)
		}
	}
	big := p.inter.IssueDevice(t, testpki.Device{CommonName: "WF-LT-BIG", Email: "oscar.staff@eastherts.gov.uk",
		Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, Padding: 5000})
	p.fragmentLeafSize = len(big.Cert.Raw)
	p.fragmentDevice = big.WriteFiles(t, dir, "fragment-device")

	now := time.Now()
	p.writeCRLs(t, now.Add(-time.Minute), now.Add(24*time.Hour), p.revokedSerials...)
	return p
}

// writeCRLs (re)writes the root's and the intermediate's CRLs as PEM with
// the next CRL number; the intermediate's lists revoked.
func (p *interopPKI) writeCRLs(t *testing.T, thisUpdate, nextUpdate time.Time, revoked ...*big.Int) {
	t.Helper()
	p.crlNumber++
	write := func(name string, der []byte) string {
		f := filepath.Join(p.dir, name)
		tmp := f + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f); err != nil { // atomic for a running nacd
			t.Fatal(err)
		}
		return f
	}
	p.rootCRL = write("root.crl", p.root.CRL(t, p.crlNumber, thisUpdate, nextUpdate))
	p.interCRL = write("intermediate.crl", p.inter.CRL(t, p.crlNumber, thisUpdate, nextUpdate, revoked...))
}

// nacdOptions are the knobs the groups turn.
type nacdOptions struct {
	fragmentSize int    // tls.fragment_size (default 1020)
	crlRefresh   string // trust_anchors[].crl_refresh (default 5m)
	ipv6         bool   // listen.radius_auth on [::1] instead of 127.0.0.1
	// radsecPort, when set, enables RadSec on 127.0.0.1:radsecPort for the
	// Wallfields client, whose certificate must name radsecIdentity.
	radsecPort     int
	radsecIdentity string
}

func authAddr(o nacdOptions, port int) string {
	host := "127.0.0.1"
	if o.ipv6 {
		host = "::1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// nacdProc is a running `nacd serve`.
type nacdProc struct {
	addr      string // RADIUS authentication, 127.0.0.1:port
	metrics   string // metrics HTTP, 127.0.0.1:port
	secret    string
	accessLog string
	cfgPath   string
	out       *lockedBuffer
	cmd       *exec.Cmd
	done      chan struct{}
	exitErr   error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeUDPPort(t *testing.T, ipv6 bool) int {
	t.Helper()
	addr := "127.0.0.1:0"
	if ipv6 {
		addr = "[::1]:0"
	}
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// nacdYAML renders a config in the format of configs/nacd.example.yaml.
func nacdYAML(dir string, p *interopPKI, authPort, acctPort, metricsPort int, o nacdOptions, secretFile, accessLog string) string {
	q := strconv.Quote
	if o.fragmentSize == 0 {
		o.fragmentSize = 1020
	}
	if o.crlRefresh == "" {
		o.crlRefresh = "5m"
	}
	radsecListen, radsecClient, radsecSection := "", "", ""
	if o.radsecPort != 0 {
		radsecListen = fmt.Sprintf("  radsec: 127.0.0.1:%d\n", o.radsecPort)
		radsecClient = fmt.Sprintf("    radsec: true\n    radsec_identities: [%s]\n", q(o.radsecIdentity))
		radsecSection = fmt.Sprintf("radsec:\n  enabled: true\n  ca_files: [%s]\n", q(p.rootFile))
	}
	return fmt.Sprintf(`# generated by cmd/nacd/interop_test.go
data_dir: %s
listen:
  radius_auth: %s
  radius_acct: 127.0.0.1:%d
  metrics: 127.0.0.1:%d
%sclients:
  - name: wallfields-ap
    networks: [%s/32, "::1/128"]
    secret_file: %s
    site: Wallfields
    require_message_authenticator: true
%s  - name: theatre-ap
    networks: [%s/32]
    secret_file: %s
    site: Hertford Theatre
    require_message_authenticator: true
sites:
  - name: Wallfields
    vlans: {il3: 310, general: 110, guest: 120, onboarding: 130}
  - name: Hertford Theatre
    vlans: {general: 210, guest: 220, onboarding: 230}
tls:
  certificate: %s
  key: %s
  min_version: "1.2"
  max_version: "1.3"
  fragment_size: %d
trust_anchors:
  - name: council-test-ca
    il3: true
    ca_files: [%s, %s]
    crls: [%s, %s]
    crl_refresh: %s
    require_crl: true
policy:
  max_revocation_age: 24h
  rules:
    - name: council-il3
      match: {ownership: [council-managed], roles: [staff], clearance_il3: true}
      segment: il3
      fallback: general
      session_timeout: 12h
    - name: council-managed
      match: {ownership: [council-managed], roles: [staff, member, contractor]}
      segment: general
      session_timeout: 12h
    - name: members-own-devices
      match: {ownership: [personal], roles: [member]}
      segment: general
      session_timeout: 12h
    - name: staff-own-devices
      match: {ownership: [personal], roles: [staff]}
      segment: guest
      session_timeout: 12h
    - name: contractors
      match: {roles: [contractor]}
      segment: guest
      session_timeout: 8h
    - name: visitors
      match: {roles: [visitor]}
      segment: guest
      session_timeout: 8h
    - name: no-role-onboarding
      match: {roles: [unknown]}
      segment: onboarding
      session_timeout: 1h
%slimits:
  max_conversations: 1024
  conversation_timeout: 30s
  duplicate_window: 5s
log:
  level: debug
  access_log: %s
`, q(filepath.Join(dir, "data")), q(authAddr(o, authPort)), acctPort, metricsPort, radsecListen,
		wallfieldsIP, q(secretFile), radsecClient, theatreIP, q(secretFile),
		q(p.server.Chain), q(p.server.Key), o.fragmentSize,
		q(p.rootFile), q(p.interFile), q(p.rootCRL), q(p.interCRL), o.crlRefresh,
		radsecSection, q(accessLog))
}

// startNacd writes a config and runs `nacd serve --config` until it answers
// Status-Server; it is stopped (SIGTERM, then SIGKILL) when the test ends.
func startNacd(t *testing.T, bin string, p *interopPKI, o nacdOptions) *nacdProc {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a probed free port may be taken meanwhile
		n, err := tryStartNacd(t, bin, p, o)
		if err == nil {
			return n
		}
		lastErr = err
	}
	t.Fatalf("nacd did not start: %v", lastErr)
	return nil
}

func tryStartNacd(t *testing.T, bin string, p *interopPKI, o nacdOptions) (*nacdProc, error) {
	dir := t.TempDir()
	secretBytes := make([]byte, 24)
	if _, err := rand.Read(secretBytes); err != nil {
		t.Fatal(err)
	}
	secret := hex.EncodeToString(secretBytes)
	secretFile := filepath.Join(dir, "radius-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	authPort, acctPort, metricsPort := freeUDPPort(t, o.ipv6), freeUDPPort(t, false), freeTCPPort(t)
	n := &nacdProc{
		addr:      authAddr(o, authPort),
		metrics:   net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort)),
		secret:    secret,
		accessLog: filepath.Join(dir, "access.log"),
		cfgPath:   filepath.Join(dir, "nacd.yaml"),
		out:       &lockedBuffer{},
		done:      make(chan struct{}),
	}
	yml := nacdYAML(dir, p, authPort, acctPort, metricsPort, o, secretFile, n.accessLog)
	if err := os.WriteFile(n.cfgPath, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	// The test's own config must load: a failure here is a test bug (or a
	// loader bug), reported with the loader's field/line messages.
	if _, err := config.Load(n.cfgPath, filepath.Join(dir, "data")); err != nil {
		t.Fatalf("interop config does not load: %v\n%s", err, yml)
	}

	n.cmd = exec.Command(bin, "serve", "--config", n.cfgPath)
	n.cmd.Dir = dir
	n.cmd.Stdout = n.out
	n.cmd.Stderr = n.out
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("start nacd: %v", err)
	}
	go func() {
		n.exitErr = n.cmd.Wait()
		close(n.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		select {
		case <-n.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := eapoltest.WaitStatusServer(ctx, n.addr, n.secret); err != nil {
		n.stop()
		return nil, fmt.Errorf("%v (exit: %v)\n--- nacd output ---\n%s", err, n.exitErr, n.out.String())
	}
	t.Cleanup(func() {
		n.stop()
		out := n.out.String()
		for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
			if strings.Contains(out, bad) {
				t.Errorf("nacd printed %q", bad)
			}
		}
		if t.Failed() {
			t.Logf("--- nacd output (%s) ---\n%s", n.addr, tailLines(n.out.String(), 200))
		}
	})
	return n, nil
}

func (n *nacdProc) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.done
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// interopRun is one eapol_test run and what the access log must say about it.
type interopRun struct {
	mac     string // Calling-Station-Id as eapol_test sends it (AA-BB-...)
	persona persona
	version string
	result  *eapoltest.Result
}

var (
	runsMu sync.Mutex
)

// TestInterop runs the real nacd binary (built once) against eapol_test.
// Each group starts its own nacd so that its access log and metrics are
// its own.
func TestInterop(t *testing.T) {
	eapolTest := eapoltest.Require(t)
	bin := buildNacd(t, t.TempDir())
	for _, g := range []struct {
		name string
		fn   func(t *testing.T, bin, eapolTest string)
	}{
		{"personas", interopPersonas},
		{"fragmentation", interopFragmentation},
		{"edge cases", interopEdgeCases},
		{"reauthentication", interopReauthentication},
		{"stale crl", interopStaleCRL},
		{"revocation without restart", interopLiveRevocation},
		{"concurrent burst", interopBurst},
		{"behind a FreeRADIUS proxy", interopBehindProxy},
		{"ipv6 NAS", interopIPv6},
		{"policy reload without restart", interopReload},
		{"behind a FreeRADIUS RadSec proxy", interopBehindRadSecProxy},
	} {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.fn(t, bin, eapolTest)
		})
	}
}

// interopPersonas runs every persona with TLS 1.2 and 1.3 through nacd,
// then checks the access log and the metrics.
func interopPersonas(t *testing.T, bin, eapolTest string) {
	ps := personas()
	p := newInteropPKI(t, ps)
	n := startNacd(t, bin, p, nacdOptions{})

	var runs []*interopRun
	t.Run("runs", func(t *testing.T) {
		for vi, ver := range []string{"1.2", "1.3"} {
			for pi, pc := range ps {
				r := &interopRun{
					mac:     fmt.Sprintf("02-00-00-00-%02X-%02X", vi+1, pi+1),
					persona: pc,
					version: ver,
				}
				runs = append(runs, r)
				t.Run("tls"+ver+"/"+pc.name, func(t *testing.T) {
					t.Parallel()
					files := p.personaFiles[pc.name]
					clientIP := pc.clientIP
					if clientIP == "" {
						clientIP = wallfieldsIP
					}
					res := runEapolTest(t, eapolTest, eapoltest.Options{
						Server:     n.addr,
						Secret:     n.secret,
						CACert:     p.rootFile,
						ClientCert: files.Chain,
						ClientKey:  files.Key,
						Identity:   identityFor(pc.device),
						TLSVersion: ver,
						ClientIP:   clientIP,
						MAC:        strings.ReplaceAll(r.mac, "-", ":"),
						Attributes: []eapoltest.Attribute{eapoltest.CalledStationID("AA-BB-CC-DD-EE-FF", "CouncilWiFi")},
					})
					runsMu.Lock()
					r.result = res
					runsMu.Unlock()
					checkOutcome(t, pc, ver, res)
				})
			}
		}
	})

	t.Run("access log", func(t *testing.T) {
		checkAccessLog(t, n, runs)
	})
	t.Run("metrics", func(t *testing.T) {
		checkDecisionMetrics(t, n, runs)
	})
}

// interopFragmentation: a long client chain (a padded leaf plus the
// intermediate, over 5 kB) with eapol_test fragment_size 500 and nacd
// fragment_size 500 forces several fragments each way; the device must be
// accepted with the right VLAN and keys.
func interopFragmentation(t *testing.T, bin, eapolTest string) {
	p := newInteropPKI(t, nil)
	if p.fragmentLeafSize < 5000 {
		t.Fatalf("padded leaf is %d bytes, want > 5000", p.fragmentLeafSize)
	}
	n := startNacd(t, bin, p, nacdOptions{fragmentSize: 500})
	for _, ver := range []string{"1.2", "1.3"} {
		t.Run("tls"+ver, func(t *testing.T) {
			t.Parallel()
			res := runEapolTest(t, eapolTest, eapoltest.Options{
				Server:       n.addr,
				Secret:       n.secret,
				CACert:       p.rootFile,
				ClientCert:   p.fragmentDevice.Chain,
				ClientKey:    p.fragmentDevice.Key,
				Identity:     "WF-LT-BIG",
				TLSVersion:   ver,
				FragmentSize: 500,
				ClientIP:     wallfieldsIP,
			})
			checkOutcome(t, persona{name: "long chain", accept: true, segment: policy.SegmentGeneral, vlan: 110,
				device: testpki.Device{Email: "oscar.staff@eastherts.gov.uk"}, sessionTimeout: 12 * 3600}, ver, res)
			// The client flight is > 5 kB: at least 10 fragments of 500.
			if res.ClientFragments < 10 {
				t.Errorf("eapol_test sent %d fragments with the M flag, want >= 10", res.ClientFragments)
			}
			if res.ServerFragments < 2 {
				t.Errorf("nacd sent %d fragments with the M flag, want >= 2 (server flight > 1000 bytes)", res.ServerFragments)
			}
			// fragment_size 500 is TLS data per message: EAP header (5),
			// flags (1) and TLS Message Length (4) come on top.
			if res.MaxServerEAPLength > 510 {
				t.Errorf("nacd sent an EAP-TLS packet of %d bytes with fragment_size 500", res.MaxServerEAPLength)
			}
		})
	}
}

// reauths is how many re-authentications the run was asked for, read back
// from the Access-Accepts it received.
func reauths(res *eapoltest.Result) int {
	n := 0
	for _, m := range res.Messages {
		if m.Code == 2 {
			n++
		}
	}
	return max(n-1, 0)
}

// interopEdgeCases: what real peers do that the personas do not.
func interopEdgeCases(t *testing.T, bin, eapolTest string) {
	ps := personas()[1:2] // staff council laptop without clearance: general
	pc := ps[0]
	p := newInteropPKI(t, ps)
	n := startNacd(t, bin, p, nacdOptions{})
	files := p.personaFiles[pc.name]
	base := eapoltest.Options{
		Server: n.addr, Secret: n.secret, CACert: p.rootFile,
		ClientCert: files.Chain, ClientKey: files.Key,
		Identity: identityFor(pc.device), ClientIP: wallfieldsIP,
	}
	dropsBefore := scrape(t, n.metrics, "nacd_radius_dropped_total")

	t.Run("group", func(t *testing.T) {
		// RFC 5216 key derivation for a TLS 1.2 client without Extended
		// Master Secret (RFC 7627): either the right keys or a clean
		// reject, never wrong keys or silence.
		t.Run("tls1.2 client without extended master secret", func(t *testing.T) {
			t.Parallel()
			o := base
			o.TLSVersion, o.DisableExtendedMasterSecret = "1.2", true
			o.MAC = "02:00:00:00:EE:01"
			res := runEapolTest(t, eapolTest, o)
			if eapoltest.HasExtension(res.ClientHelloExtensions, eapoltest.ExtExtendedMasterSecret) {
				t.Fatalf("harness problem: ClientHello still offers EMS")
			}
			switch {
			case res.Success:
				checkOutcome(t, pc, "1.2", res)
			case res.Rejected():
				t.Logf("nacd refuses TLS 1.2 without EMS (allowed by eaptls-notes if the reason is clear)")
				l := accessLogLineFor(t, n, "02-00-00-00-EE-01")
				if l.str("event.reason") == "" || l.str("nacd.result") != "reject" {
					t.Errorf("reject without a clear reason: %v", l)
				}
			default:
				t.Fatalf("no answer (timed out=%v, last code %q)", res.TimedOut, res.Code)
			}
		})
		// A peer that NAKs EAP-TLS gets an Access-Reject, not silence.
		t.Run("peer offers only PEAP", func(t *testing.T) {
			t.Parallel()
			o := base
			o.EAPMethod = "PEAP"
			o.MAC = "02:00:00:00:EE:02"
			res := runEapolTest(t, eapolTest, o)
			if !strings.Contains(res.Raw, "EAP: Building EAP-Nak") {
				t.Fatalf("harness problem: the supplicant did not NAK")
			}
			if !res.Rejected() {
				t.Fatalf("want Access-Reject after the NAK; got success=%v code=%q timed out=%v", res.Success, res.Code, res.TimedOut)
			}
			if got := accessLogLineFor(t, n, "02-00-00-00-EE-02").str("event.reason"); got != "eap-nak" {
				t.Errorf("access log reason %q, want eap-nak", got)
			}
		})
		// A supplicant without a client certificate: rejected, with a
		// reason, never accepted on the server certificate alone.
		for vi, ver := range []string{"1.2", "1.3"} {
			t.Run("tls"+ver+" no client certificate", func(t *testing.T) {
				t.Parallel()
				o := base
				o.TLSVersion, o.ClientCert, o.ClientKey = ver, "", ""
				mac := fmt.Sprintf("02-00-00-00-EE-1%d", vi)
				o.MAC = strings.ReplaceAll(mac, "-", ":")
				res := runEapolTest(t, eapolTest, o)
				if !res.Rejected() {
					t.Fatalf("want Access-Reject; got success=%v code=%q timed out=%v", res.Success, res.Code, res.TimedOut)
				}
				if l := accessLogLineFor(t, n, mac); l.str("nacd.result") != "reject" || l.str("event.reason") == "" {
					t.Errorf("access log: result %q reason %q, want reject with a reason", l.str("nacd.result"), l.str("event.reason"))
				}
			})
		}
		// Wrong shared secret: the Message-Authenticator does not verify,
		// nacd drops silently (RFC 3579) and counts it.
		t.Run("wrong shared secret", func(t *testing.T) {
			t.Parallel()
			o := base
			o.Secret = "not-" + n.secret
			o.Timeout = 2 * time.Second
			res := runEapolTest(t, eapolTest, o)
			if !res.TimedOut || res.Code != "" {
				t.Errorf("want silence; got code %q timed out=%v", res.Code, res.TimedOut)
			}
		})
		// A NAS that is not a configured client: dropped and counted.
		t.Run("unknown NAS", func(t *testing.T) {
			t.Parallel()
			o := base
			o.ClientIP = "127.0.0.3"
			o.Timeout = 2 * time.Second
			res := runEapolTest(t, eapolTest, o)
			if !res.TimedOut || res.Code != "" {
				t.Errorf("want silence; got code %q timed out=%v", res.Code, res.TimedOut)
			}
		})
	})

	drops := scrape(t, n.metrics, "nacd_radius_dropped_total")
	for _, cause := range []string{"bad_message_authenticator", "unknown_client"} {
		if sumBy(drops, "cause", cause) <= sumBy(dropsBefore, "cause", cause) {
			t.Errorf(`nacd_radius_dropped_total{cause=%q} did not move`, cause)
		}
	}
}

// interopStaleCRL: the anchor's CRLs are past NextUpdate. Design section
// 4, invariant 2: revocation status not fresh means no il3; the il3 rule
// falls back to general. Devices that never aimed for il3 are unaffected
// (stale_fail_closed is false).
func interopStaleCRL(t *testing.T, bin, eapolTest string) {
	ps := personas()[:2] // il3 laptop, laptop without clearance
	p := newInteropPKI(t, ps)
	now := time.Now()
	p.writeCRLs(t, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	n := startNacd(t, bin, p, nacdOptions{})
	want := map[string]struct {
		vlan   string
		reason string
	}{
		ps[0].name: {"110", "il3-revocation-stale"},
		ps[1].name: {"110", "rule-matched"},
	}
	for i, pc := range ps {
		for vi, ver := range []string{"1.2", "1.3"} {
			t.Run("tls"+ver+"/"+pc.name, func(t *testing.T) {
				t.Parallel()
				mac := fmt.Sprintf("02-00-00-00-5%d-%02X", vi, i)
				files := p.personaFiles[pc.name]
				res := runEapolTest(t, eapolTest, eapoltest.Options{
					Server: n.addr, Secret: n.secret, CACert: p.rootFile,
					ClientCert: files.Chain, ClientKey: files.Key,
					Identity: identityFor(pc.device), TLSVersion: ver, ClientIP: wallfieldsIP,
					MAC: strings.ReplaceAll(mac, "-", ":"),
				})
				if !res.Success {
					t.Fatalf("want Access-Accept (general); got code %q timed out=%v", res.Code, res.TimedOut)
				}
				if got := res.Accept.TunnelPrivateGroupID; got != want[pc.name].vlan {
					t.Errorf("VLAN %q with a stale CRL, want %s", got, want[pc.name].vlan)
				}
				if got := accessLogLineFor(t, n, mac).str("event.reason"); got != want[pc.name].reason {
					t.Errorf("access log reason %q, want %q", got, want[pc.name].reason)
				}
			})
		}
	}
}

// interopLiveRevocation: a device is accepted, then its certificate is
// revoked by publishing a new CRL while nacd runs (crl_refresh 1s). Without
// a restart, its next authentication must be rejected as revoked.
func interopLiveRevocation(t *testing.T, bin, eapolTest string) {
	ps := personas()[:1] // the il3 laptop
	pc := ps[0]
	p := newInteropPKI(t, ps)
	n := startNacd(t, bin, p, nacdOptions{crlRefresh: "1s"})
	files := p.personaFiles[pc.name]
	o := eapoltest.Options{
		Server: n.addr, Secret: n.secret, CACert: p.rootFile,
		ClientCert: files.Chain, ClientKey: files.Key,
		Identity: identityFor(pc.device), TLSVersion: "1.3", ClientIP: wallfieldsIP,
	}
	res := runEapolTest(t, eapolTest, o)
	checkOutcome(t, pc, "1.3", res)

	now := time.Now()
	p.writeCRLs(t, now.Add(-time.Second), now.Add(24*time.Hour), p.personaLeaves[pc.name].Cert.SerialNumber)
	// Poll (bounded): each attempt is a full authentication.
	deadline := time.Now().Add(20 * time.Second)
	for attempt := 1; ; attempt++ {
		res = runEapolTest(t, eapolTest, o)
		if res.Rejected() {
			t.Logf("rejected at attempt %d after the CRL was published", attempt)
			break
		}
		if !res.Success {
			t.Fatalf("attempt %d: neither accepted nor rejected (code %q, timed out=%v)", attempt, res.Code, res.TimedOut)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still accepted (VLAN %s) %d attempts after the device was revoked", res.Accept.TunnelPrivateGroupID, attempt)
		}
		time.Sleep(500 * time.Millisecond)
	}
	lines, _ := readAccessLog(t, n.accessLog)
	last := lines[len(lines)-1]
	if last.str("event.reason") != "revoked" || last.str("nacd.result") != "reject" {
		t.Errorf("last access log line: result %q reason %q, want reject/revoked", last.str("nacd.result"), last.str("event.reason"))
	}
}

// interopBurst: 16 supplicants at once (mixed personas and TLS versions),
// as after an AP reboot. Every one must get its own VLAN and keys; with the
// race-built nacd this also shakes the conversation table and the EAP/TLS
// bridge under concurrency.
func interopBurst(t *testing.T, bin, eapolTest string) {
	ps := personas()[:6] // the accepted Wallfields personas
	p := newInteropPKI(t, ps)
	n := startNacd(t, bin, p, nacdOptions{})
	const clients = 16
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		pc := ps[i%len(ps)]
		ver := []string{"1.2", "1.3"}[i%2]
		files := p.personaFiles[pc.name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := eapoltest.Run(ctx, eapoltest.Options{
				Binary: eapolTest, Server: n.addr, Secret: n.secret, CACert: p.rootFile,
				ClientCert: files.Chain, ClientKey: files.Key,
				Identity: identityFor(pc.device), TLSVersion: ver, ClientIP: wallfieldsIP,
				MAC: fmt.Sprintf("02:00:00:00:B0:%02X", i), Timeout: 30 * time.Second,
			})
			switch {
			case err != nil:
				errs <- fmt.Errorf("client %d (%s, TLS %s): %v", i, pc.name, ver, err)
			case !res.Success:
				errs <- fmt.Errorf("client %d (%s, TLS %s): not accepted (code %q, timed out %v)", i, pc.name, ver, res.Code, res.TimedOut)
			case res.Accept.TunnelPrivateGroupID != strconv.Itoa(pc.vlan):
				errs <- fmt.Errorf("client %d (%s): VLAN %q, want %d", i, pc.name, res.Accept.TunnelPrivateGroupID, pc.vlan)
			case !res.MPPEKeysOK || res.CheckKeys() != nil:
				errs <- fmt.Errorf("client %d (%s): MPPE keys wrong: %v", i, pc.name, res.CheckKeys())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	lines, _ := readAccessLog(t, n.accessLog)
	if len(lines) != clients {
		t.Errorf("%d access log lines, want %d", len(lines), clients)
	}
}

// interopBehindProxy: NAS (eapol_test) -> FreeRADIUS 3.2 proxy -> nacd, a
// common deployment while migrating. The proxy adds Proxy-State (nacd must
// echo it), requires Message-Authenticator on nacd's replies and
// re-encrypts the MPPE keys for the NAS: eapol_test's key check proves
// nacd's keys survived the trip.
func interopBehindProxy(t *testing.T, bin, eapolTest string) {
	freeradiustest.Binary(t)
	ps := []persona{personas()[0], personas()[3]} // il3 laptop, revoked
	for _, pc := range personas() {
		if pc.name == "revoked" {
			ps[1] = pc
		}
	}
	p := newInteropPKI(t, ps)
	n := startNacd(t, bin, p, nacdOptions{})
	proxy := freeradiustest.Start(t, freeradiustest.Config{
		Secret: "nas-to-proxy-secret-0123456789",
		Proxy:  &freeradiustest.Proxy{Addr: n.addr, Secret: n.secret},
	})
	for pi, pc := range ps {
		for vi, ver := range []string{"1.2", "1.3"} {
			t.Run("tls"+ver+"/"+pc.name, func(t *testing.T) {
				t.Parallel()
				checkThroughProxy(t, eapolTest, proxy, n, p, pc, fmt.Sprintf("02-00-00-00-A%d-%02X", vi, pi), ver, "the proxy")
			})
		}
	}
}

// checkThroughProxy authenticates persona pc with eapol_test through the
// FreeRADIUS proxy (calling station mac, TLS version ver) and checks the
// outcome: a reject decided by nacd itself (its access log says so, with
// pc's reason), or an accept with both MPPE keys right and pc's VLAN. via
// names the path in failures.
func checkThroughProxy(t *testing.T, eapolTest string, proxy *freeradiustest.Server, n *nacdProc, p *interopPKI, pc persona, mac, ver, via string) {
	t.Helper()
	files := p.personaFiles[pc.name]
	res := runEapolTest(t, eapolTest, eapoltest.Options{
		Server: proxy.Addr, Secret: proxy.Secret, CACert: p.rootFile,
		ClientCert: files.Chain, ClientKey: files.Key,
		Identity: identityFor(pc.device), TLSVersion: ver,
		MAC: strings.ReplaceAll(mac, "-", ":"),
	})
	if !pc.accept {
		if !res.Rejected() {
			t.Fatalf("want Access-Reject through %s; got success=%v code=%q timed out=%v", via, res.Success, res.Code, res.TimedOut)
		}
		// nacd itself decided (not the proxy, e.g. with its home server
		// unreachable).
		l := accessLogLineFor(t, n, mac)
		if l.str("nacd.result") != "reject" || l.str("event.reason") != pc.reason {
			t.Errorf("nacd access log: result %q reason %q, want reject/%s", l.str("nacd.result"), l.str("event.reason"), pc.reason)
		}
		return
	}
	if !res.Success {
		t.Fatalf("want SUCCESS through %s; got code=%q timed out=%v\n--- proxy log ---\n%s", via, res.Code, res.TimedOut, tailLines(proxy.Log(), 40))
	}
	if !res.MPPEKeysOK || res.CheckKeys() != nil {
		t.Errorf("MPPE keys through %s: eapol_test ok=%v, check %v", via, res.MPPEKeysOK, res.CheckKeys())
	}
	if got := res.Accept.TunnelPrivateGroupID; got != strconv.Itoa(pc.vlan) {
		t.Errorf("VLAN %q through %s, want %d", got, via, pc.vlan)
	}
}

// interopBehindRadSecProxy: NAS (eapol_test, UDP) -> FreeRADIUS 3.2 proxy
// -> RadSec (RFC 6614: TCP + mutual TLS, secret "radsec") -> nacd. The
// proxy's client certificate names "proxy.test", the Wallfields client's
// radsec identity.
func interopBehindRadSecProxy(t *testing.T, bin, eapolTest string) {
	freeradiustest.Binary(t)
	var ps []persona
	for _, pc := range personas() {
		if pc.name == "staff council laptop with il3 clearance" || pc.name == "revoked" {
			ps = append(ps, pc)
		}
	}
	p := newInteropPKI(t, ps)
	proxyCert := p.inter.IssueDevice(t, testpki.Device{CommonName: "proxy.test"}).WriteFiles(t, p.dir, "radsec-proxy")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	radsecPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	n := startNacd(t, bin, p, nacdOptions{radsecPort: radsecPort, radsecIdentity: "proxy.test"})
	proxy := freeradiustest.Start(t, freeradiustest.Config{
		Secret: "nas-to-proxy-secret-0123456789",
		Proxy: &freeradiustest.Proxy{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(radsecPort)),
			TLS: &freeradiustest.ProxyTLS{CertFile: proxyCert.Chain, KeyFile: proxyCert.Key, CAFile: p.rootFile}},
	})
	t.Run("runs", func(t *testing.T) { // the parallel runs end before the checks below
		for pi, pc := range ps {
			for vi, ver := range []string{"1.2", "1.3"} {
				t.Run("tls"+ver+"/"+pc.name, func(t *testing.T) {
					t.Parallel()
					checkThroughProxy(t, eapolTest, proxy, n, p, pc, fmt.Sprintf("02-00-00-00-B%d-%02X", vi, pi), ver, "RadSec")
				})
			}
		}
	})
	lines, _ := readAccessLog(t, n.accessLog)
	if len(lines) != 2*len(ps) {
		t.Errorf("%d access log lines, want %d", len(lines), 2*len(ps))
	}
	// The requests came in over RadSec: a mutually authenticated
	// connection from the proxy was accepted.
	if got := sumBy(scrape(t, n.metrics, "nacd_radius_radsec_connections_total"), "result", "accepted"); got < 1 {
		t.Errorf(`nacd_radius_radsec_connections_total{result="accepted"} = %v, want >= 1`, got)
	}
}

// interopReload: the Wallfields general VLAN changes in the config file;
// SIGHUP applies it without a restart and the next authentication lands on
// the new VLAN. A broken config on the next SIGHUP is refused and the
// running policy stays.
func interopReload(t *testing.T, bin, eapolTest string) {
	var pc persona
	for _, c := range personas() {
		if c.name == "member own tablet" { // general: 110 at Wallfields
			pc = c
		}
	}
	p := newInteropPKI(t, []persona{pc})
	n := startNacd(t, bin, p, nacdOptions{})
	files := p.personaFiles[pc.name]
	o := eapoltest.Options{
		Server: n.addr, Secret: n.secret, CACert: p.rootFile,
		ClientCert: files.Chain, ClientKey: files.Key,
		Identity: identityFor(pc.device), TLSVersion: "1.3", ClientIP: wallfieldsIP,
	}
	vlanAfter := func(want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			res := runEapolTest(t, eapolTest, o)
			if !res.Success {
				t.Fatalf("not accepted (code %q, timed out %v)", res.Code, res.TimedOut)
			}
			if got := res.Accept.TunnelPrivateGroupID; got == want {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("VLAN still %q, want %q", got, want)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	rewrite := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(n.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte(from)) {
			t.Fatalf("config lacks %q", from)
		}
		tmp := n.cfgPath + ".tmp"
		if err := os.WriteFile(tmp, bytes.Replace(b, []byte(from), []byte(to), 1), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, n.cfgPath); err != nil {
			t.Fatal(err)
		}
		if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	vlanAfter("110")
	rewrite("general: 110,", "general: 111,")
	vlanAfter("111")
	rewrite("general: 111,", "general: 111, bogus_field: 1,") // strict decoding refuses it
	deadline := time.Now().Add(15 * time.Second)
	for sumBy(scrape(t, n.metrics, "nacd_config_reloads_total"), "result", "failure") < 1 {
		if time.Now().After(deadline) {
			t.Fatal(`nacd_config_reloads_total{result="failure"} did not move after a broken config`)
		}
		time.Sleep(200 * time.Millisecond)
	}
	vlanAfter("111") // the running policy stayed
	if got := sumBy(scrape(t, n.metrics, "nacd_config_reloads_total"), "result", "success"); got < 1 {
		t.Errorf(`nacd_config_reloads_total{result="success"} = %v, want >= 1`, got)
	}
}

// interopIPv6: a NAS on the IPv6 loopback (client network ::1/128).
func interopIPv6(t *testing.T, bin, eapolTest string) {
	ps := personas()[:1] // the il3 laptop
	pc := ps[0]
	p := newInteropPKI(t, ps)
	n := startNacd(t, bin, p, nacdOptions{ipv6: true})
	for vi, ver := range []string{"1.2", "1.3"} {
		t.Run("tls"+ver, func(t *testing.T) {
			t.Parallel()
			mac := fmt.Sprintf("02-00-00-00-06-%02X", vi)
			files := p.personaFiles[pc.name]
			res := runEapolTest(t, eapolTest, eapoltest.Options{
				Server: n.addr, Secret: n.secret, CACert: p.rootFile,
				ClientCert: files.Chain, ClientKey: files.Key, ClientIP: "::1",
				Identity: identityFor(pc.device), TLSVersion: ver, MAC: strings.ReplaceAll(mac, "-", ":"),
			})
			checkOutcome(t, pc, ver, res)
			l := accessLogLineFor(t, n, mac)
			if got := l.str("nas.ip"); got != "::1" {
				t.Errorf("nas.ip %q, want ::1", got)
			}
			if got := l.str("nas.site"); got != "Wallfields" {
				t.Errorf("nas.site %q, want Wallfields", got)
			}
		})
	}
}

// accessLogLineFor returns the one access log line for a Calling-Station-Id.
func accessLogLineFor(t *testing.T, n *nacdProc, mac string) accessLine {
	t.Helper()
	lines, _ := readAccessLog(t, n.accessLog)
	var found []accessLine
	for _, l := range lines {
		if strings.EqualFold(l.str("radius.calling_station_id"), mac) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d access log lines for %s, want 1", len(found), mac)
	}
	return found[0]
}

// interopReauthentication: one supplicant authenticates three times in a
// row (eapol_test -r 2), as a device roaming between APs does. Each must
// be accepted with the VLAN and fresh keys. If nacd resumes the TLS session,
// it must still send the full authorization (VLAN, keys) each time.
func interopReauthentication(t *testing.T, bin, eapolTest string) {
	ps := personas()[:2] // council laptop with and without clearance
	p := newInteropPKI(t, ps)
	n := startNacd(t, bin, p, nacdOptions{})
	for _, ver := range []string{"1.2", "1.3"} {
		for _, pc := range ps {
			t.Run("tls"+ver+"/"+pc.name, func(t *testing.T) {
				t.Parallel()
				files := p.personaFiles[pc.name]
				res := runEapolTest(t, eapolTest, eapoltest.Options{
					Server: n.addr, Secret: n.secret, CACert: p.rootFile,
					ClientCert: files.Chain, ClientKey: files.Key,
					Identity: identityFor(pc.device), TLSVersion: ver, ClientIP: wallfieldsIP,
					Reauths: 2,
				})
				checkOutcome(t, pc, ver, res)
				if res.EAPSuccesses != 3 {
					t.Fatalf("%d EAP-Success events, want 3", res.EAPSuccesses)
				}
				if res.Resumed {
					t.Logf("nacd resumed a TLS session on re-authentication")
				}
				accepts := 0
				for _, m := range res.Messages {
					if m.Code != 2 {
						continue
					}
					accepts++
					vlan := ""
					for _, a := range m.Attributes {
						if a.Type == eapoltest.AttrTunnelPrivateGroupID {
							vlan = a.Value
						}
					}
					if want := hex.EncodeToString([]byte(strconv.Itoa(pc.vlan))); vlan != want {
						t.Errorf("Access-Accept %d: Tunnel-Private-Group-Id %q, want %q (hex)", accepts, vlan, want)
					}
				}
				if accepts != 3 {
					t.Errorf("%d Access-Accepts, want 3", accepts)
				}
			})
		}
	}
}

func identityFor(d testpki.Device) string {
	if d.Email != "" {
		return d.Email
	}
	return d.CommonName
}

func runEapolTest(t *testing.T, bin string, o eapoltest.Options) *eapoltest.Result {
	t.Helper()
	o.Binary = bin
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := eapoltest.Run(ctx, o)
	if dir := os.Getenv("EAPOLTEST_CAPTURE_DIR"); dir != "" && res != nil {
		name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
		_ = os.WriteFile(filepath.Join(dir, name+".txt"), []byte(res.Raw), 0o644)
	}
	if err != nil {
		t.Fatalf("eapol_test could not be judged: %v", err)
	}
	return res
}

// checkOutcome asserts what eapol_test saw for one run.
func checkOutcome(t *testing.T, pc persona, ver string, res *eapoltest.Result) {
	t.Helper()
	if res.TLSVersion != ver {
		t.Errorf("negotiated TLS %q, want %q", res.TLSVersion, ver)
	}
	// BlastRADIUS mitigation: Message-Authenticator first in every
	// Access-Challenge, Access-Accept and Access-Reject.
	for i, m := range res.Messages {
		if len(m.Attributes) == 0 || m.Attributes[0].Type != eapoltest.AttrMessageAuthenticator {
			t.Errorf("RADIUS message %d (%s) does not start with Message-Authenticator", i, m.CodeName)
		}
	}
	if !pc.accept {
		if !res.Rejected() {
			t.Fatalf("want Access-Reject; got success=%v last code=%q timed out=%v\n%s",
				res.Success, res.Code, res.TimedOut, tailLines(res.Raw, 30))
		}
		// A minimal Access-Reject: no identity, VLAN, Class or keys.
		for _, a := range res.Messages[len(res.Messages)-1].Attributes {
			switch a.Type {
			case eapoltest.AttrEAPMessage, eapoltest.AttrMessageAuthenticator:
			default:
				t.Errorf("Access-Reject carries attribute %d (%s)", a.Type, a.Name)
			}
		}
		// RFC 9190: never the protected success indication, then a Failure.
		if res.CommitmentMessage {
			t.Error("TLS 1.3 commitment message (0x00) received before an Access-Reject")
		}
		return
	}
	if ver == "1.3" && !res.CommitmentMessage {
		t.Error("TLS 1.3 accept without the commitment message (RFC 9190 section 2.5)")
	}
	if res.EAPSuccesses != 1+reauths(res) {
		t.Errorf("%d EAP-Success events", res.EAPSuccesses)
	}
	// The server chain goes without the root: leaf + intermediate.
	if len(res.ServerCertificates) != 2 {
		t.Errorf("nacd sent %d server certificates, want 2 (leaf + intermediate, no root)", len(res.ServerCertificates))
	}
	if !res.Success {
		t.Fatalf("want SUCCESS; got last code=%q timed out=%v\n%s", res.Code, res.TimedOut, tailLines(res.Raw, 30))
	}
	if !res.MPPEKeysOK {
		t.Error("eapol_test did not print \"MPPE keys OK: 1  mismatch: 0\"")
	}
	if err := res.CheckKeys(); err != nil {
		t.Errorf("MPPE keys against the supplicant's MSK: %v", err)
	}
	a := res.Accept
	if a.TunnelPrivateGroupID != strconv.Itoa(pc.vlan) {
		t.Errorf("Tunnel-Private-Group-Id %q, want %d", a.TunnelPrivateGroupID, pc.vlan)
	}
	if pc.device.IL3 && pc.device.Ownership != policy.OwnershipCouncilManaged && a.TunnelPrivateGroupID == "310" {
		t.Errorf("INVARIANT BROKEN: a personal device got the il3 VLAN")
	}
	if a.TunnelType != eapoltest.TunnelTypeVLAN || a.TunnelMediumType != eapoltest.TunnelMediumIEEE802 {
		t.Errorf("Tunnel-Type/Medium %d/%d, want 13 (VLAN) / 6 (IEEE-802)", a.TunnelType, a.TunnelMediumType)
	}
	if pc.sessionTimeoutMax > 0 {
		if a.SessionTimeout <= 0 || a.SessionTimeout > pc.sessionTimeoutMax {
			t.Errorf("Session-Timeout %d, want 1..%d (never beyond the certificate's NotAfter)", a.SessionTimeout, pc.sessionTimeoutMax)
		}
	} else if a.SessionTimeout != pc.sessionTimeout {
		t.Errorf("Session-Timeout %d, want %d", a.SessionTimeout, pc.sessionTimeout)
	}
	if want := identityFor(pc.device); a.UserName != want {
		t.Errorf("User-Name %q, want %q (the certificate identity)", a.UserName, want)
	}
	if len(a.Class) != 1 || !strings.HasPrefix(string(a.Class[0]), "nacd:") {
		t.Errorf("Class %q, want one \"nacd:<session id>\" (accounting linkage)", a.Class)
	}
	if len(a.Types) == 0 || a.Types[0] != eapoltest.AttrMessageAuthenticator {
		t.Errorf("first attribute of the Access-Accept is %v, want Message-Authenticator (BlastRADIUS mitigation)", a.Types)
	}
}

// accessLine is the subset of an access log line the test checks.
type accessLine map[string]any

func (l accessLine) str(k string) string {
	v, _ := l[k].(string)
	return v
}

func readAccessLog(t *testing.T, path string) ([]accessLine, string) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read access log: %v", err)
	}
	var lines []accessLine
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var l accessLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("access log line is not JSON: %v\n%s", err, sc.Text())
		}
		lines = append(lines, l)
	}
	return lines, string(raw)
}

func checkAccessLog(t *testing.T, n *nacdProc, runs []*interopRun) {
	lines, raw := readAccessLog(t, n.accessLog)
	byMAC := map[string][]accessLine{}
	for _, l := range lines {
		if l.str("event.action") != "radius-access" {
			continue
		}
		mac := strings.ToUpper(l.str("radius.calling_station_id"))
		byMAC[mac] = append(byMAC[mac], l)
	}
	decisions := 0
	for _, ls := range byMAC {
		decisions += len(ls)
	}
	if decisions != len(runs) {
		t.Errorf("access log has %d decision lines, want %d (one per eapol_test run)", decisions, len(runs))
	}
	for _, r := range runs {
		name := "tls" + r.version + "/" + r.persona.name
		ls := byMAC[r.mac]
		if len(ls) != 1 {
			t.Errorf("%s: %d access log lines for Calling-Station-Id %s, want 1", name, len(ls), r.mac)
			continue
		}
		l := ls[0]
		wantResult := "reject"
		if r.persona.accept {
			wantResult = "accept"
		}
		if got := l.str("nacd.result"); got != wantResult {
			t.Errorf("%s: nacd.result %q, want %q", name, got, wantResult)
		}
		if got := l.str("nacd.segment"); got != string(r.persona.segment) {
			t.Errorf("%s: nacd.segment %q, want %q", name, got, r.persona.segment)
		}
		if got := l.str("event.reason"); got != r.persona.reason {
			t.Errorf("%s: event.reason %q, want %q", name, got, r.persona.reason)
		}
		if !r.persona.accept {
			// Certificate rejects: the verifier's status and the TLS
			// alert that ended the handshake are in the log.
			if got := l.str("nacd.cert_status"); got != r.persona.reason {
				t.Errorf("%s: nacd.cert_status %q, want %q", name, got, r.persona.reason)
			}
			if l.str("nacd.tls_alert") == "" {
				t.Errorf("%s: no nacd.tls_alert on a certificate reject", name)
			}
			if l.str("tls.client.x509.serial_number") == "" {
				t.Errorf("%s: a rejected certificate's serial is not logged", name)
			}
		}
		if r.persona.accept {
			if v, _ := l["network.vlan.id"].(float64); int(v) != r.persona.vlan {
				t.Errorf("%s: network.vlan.id %v, want %d", name, l["network.vlan.id"], r.persona.vlan)
			}
			if got := l.str("rule.name"); got != r.persona.rule {
				t.Errorf("%s: rule.name %q, want %q", name, got, r.persona.rule)
			}
			if got := l.str("tls.version"); got != r.version {
				t.Errorf("%s: tls.version %q, want %q", name, got, r.version)
			}
			if got := l.str("user.email"); got != r.persona.device.Email {
				t.Errorf("%s: user.email %q, want %q", name, got, r.persona.device.Email)
			}
			if got := l.str("device.id"); r.persona.device.UUID != "" && got != r.persona.device.UUID {
				t.Errorf("%s: device.id %q, want %q", name, got, r.persona.device.UUID)
			}
			if l.str("tls.client.x509.serial_number") == "" {
				t.Errorf("%s: no certificate serial in the access log", name)
			}
			if got := l.str("network.ssid"); got != "CouncilWiFi" {
				t.Errorf("%s: network.ssid %q, want CouncilWiFi", name, got)
			}
			if r.result != nil && r.result.Accept != nil && len(r.result.Accept.Class) == 1 {
				if got := l.str("nacd.session_id"); got == "" || !strings.Contains(string(r.result.Accept.Class[0]), got) {
					t.Errorf("%s: nacd.session_id %q does not match the Class %q sent to the NAS", name, got, r.result.Accept.Class[0])
				}
			}
		}
		wantSite := "Wallfields"
		if r.persona.clientIP == theatreIP {
			wantSite = "Hertford Theatre"
		}
		if got := l.str("nas.site"); got != wantSite {
			t.Errorf("%s: nas.site %q, want %q", name, got, wantSite)
		}
	}

	// No key material and no secret, anywhere in the file.
	secrets := map[string]string{"RADIUS shared secret": n.secret}
	for _, r := range runs {
		if r.result == nil {
			continue
		}
		for what, b := range map[string][]byte{"MSK": r.result.MSK, "MS-MPPE-Send-Key": r.result.MPPESendKey, "MS-MPPE-Recv-Key": r.result.MPPERecvKey} {
			if len(b) >= 16 {
				secrets[what+" of "+r.mac] = hex.EncodeToString(b[:16])
			}
		}
	}
	lower := strings.ToLower(raw)
	for what, s := range secrets {
		if strings.Contains(lower, strings.ToLower(s)) {
			t.Errorf("access log contains the %s", what)
		}
	}
	if strings.Contains(raw, "PRIVATE KEY") {
		t.Error("access log contains a private key")
	}
	// The operational log (stderr) must not carry them either.
	out := strings.ToLower(n.out.String())
	for what, s := range secrets {
		if strings.Contains(out, strings.ToLower(s)) {
			t.Errorf("nacd's operational log contains the %s", what)
		}
	}
}

// sample is one series of a scraped metric.
type sample struct {
	labels map[string]string
	value  float64
}

var (
	reSample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? ([0-9.eE+-]+|NaN|[+-]Inf)$`)
	reLabel  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape returns the series of metric from nacd's /metrics (Prometheus
// text format); it fails the test when the metric is absent.
func scrape(t *testing.T, addr, metric string) []sample {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	var out []sample
	for _, line := range strings.Split(string(body), "\n") {
		m := reSample.FindStringSubmatch(line)
		if m == nil || m[1] != metric {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metric value in %q: %v", line, err)
		}
		smp := sample{labels: map[string]string{}, value: v}
		for _, lm := range reLabel.FindAllStringSubmatch(m[2], -1) {
			smp.labels[lm[1]] = lm[2]
		}
		out = append(out, smp)
	}
	if out == nil {
		t.Fatalf("no %s series in /metrics:\n%s", metric, tailLines(string(body), 80))
	}
	return out
}

// sumBy sums the samples whose label has the given value.
func sumBy(samples []sample, label, value string) float64 {
	var s float64
	for _, smp := range samples {
		if smp.labels[label] == value {
			s += smp.value
		}
	}
	return s
}

func checkDecisionMetrics(t *testing.T, n *nacdProc, runs []*interopRun) {
	var accepts, rejects float64
	for _, r := range runs {
		if r.persona.accept {
			accepts++
		} else {
			rejects++
		}
	}
	d := scrape(t, n.metrics, "nacd_radius_decisions_total")
	if got := sumBy(d, "result", "accept"); got != accepts {
		t.Errorf(`nacd_radius_decisions_total{result="accept"} sums to %v, want %v`, got, accepts)
	}
	if got := sumBy(d, "result", "reject"); got != rejects {
		t.Errorf(`nacd_radius_decisions_total{result="reject"} sums to %v, want %v`, got, rejects)
	}
	// Per segment: the il3 accepts are exactly the il3 personas.
	var il3 float64
	for _, r := range runs {
		if r.persona.segment == policy.SegmentIL3 {
			il3++
		}
	}
	if got := sumBy(d, "segment", "il3"); got != il3 {
		t.Errorf(`nacd_radius_decisions_total{segment="il3"} sums to %v, want %v`, got, il3)
	}
}
