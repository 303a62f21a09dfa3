//go:build benchcompare

// The side-by-side benchmark against FreeRADIUS (scripts/bench-compare):
// behind a build tag so that `make test` neither runs nor skips it.

package loadtest_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/freeradiustest"
	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius/loadtest"
)

// The side-by-side benchmark (scripts/bench-compare, `make bench-compare`)
// is this test run with -bench-compare; without the flag it skips.
var (
	benchCompare     = flag.Bool("bench-compare", false, "run the nacd vs FreeRADIUS side-by-side benchmark")
	benchSeconds     = flag.Duration("bench-seconds", 10*time.Second, "bench-compare: measured load per cell and server")
	benchConcurrency = flag.Int("bench-concurrency", 16, "bench-compare: authentications in flight")
	benchNacdBin     = flag.String("nacd-bin", "", "bench-compare: the nacd binary (default: go build ./cmd/nacd)")
	benchOut         = flag.String("bench-out", "", "bench-compare: also write the result table (markdown) to this file")
	benchCurves      = flag.String("bench-curves", "", "bench-compare: key exchanges the client offers (x25519,p256,x25519mlkem768; empty: Go's default, hybrid ML-KEM first)")
)

var curveNames = map[string]tls.CurveID{"x25519": tls.X25519, "p256": tls.CurveP256, "p384": tls.CurveP384, "x25519mlkem768": tls.X25519MLKEM768}

func benchCurvePreferences(t *testing.T) []tls.CurveID {
	var out []tls.CurveID
	for _, c := range strings.Split(*benchCurves, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		id, ok := curveNames[c]
		if !ok {
			t.Fatalf("-bench-curves: unknown %q", c)
		}
		out = append(out, id)
	}
	return out
}

// benchPKI is one key type's PKI written to files: the server certificate
// and the device certificates both use the key type.
type benchPKI struct {
	dir                    string
	rootFile, crlFile      string
	serverChain, serverKey string
	serverRoots            *x509.CertPool
	identities             []loadtest.Identity
	vlanByCN               map[string]int
	curves                 []tls.CurveID
}

const (
	benchVLANGeneral    = 110
	benchVLANGuest      = 120
	benchVLANOnboarding = 130
	benchSecret         = "bench-compare-shared-secret-0123456789"
)

func newBenchPKI(t *testing.T, kt testpki.KeyType) *benchPKI {
	dir := t.TempDir()
	b := &benchPKI{dir: dir, vlanByCN: map[string]int{}, curves: benchCurvePreferences(t)}
	serverRoot := testpki.NewRoot(t, "bench server root")
	server := serverRoot.NewIntermediate(t, "bench server CA").IssueServer(t, "radius.bench.test", kt)
	sf := server.WriteFiles(t, dir, "server")
	b.serverChain, b.serverKey = sf.Chain, sf.Key
	b.serverRoots = x509.NewCertPool()
	b.serverRoots.AddCert(serverRoot.Cert)

	root := testpki.NewRoot(t, "bench council root")
	issuing := root.NewIntermediate(t, "bench council devices")
	// The CA bundle holds root and intermediate, so that the CRL of the
	// issuing CA has its issuer in the bundle for both servers.
	b.rootFile = filepath.Join(dir, "council-ca.pem")
	writeFile(t, b.rootFile, testpki.CertPEM(root.Cert, issuing.Cert))
	now := time.Now()
	crls := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: issuing.CRL(t, 1, now.Add(-time.Hour), now.Add(24*time.Hour))})
	crls = append(crls, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: root.CRL(t, 1, now.Add(-time.Hour), now.Add(24*time.Hour))})...)
	b.crlFile = filepath.Join(dir, "council.crl.pem")
	writeFile(t, b.crlFile, crls)

	for _, d := range []struct {
		dev  testpki.Device
		vlan int
	}{
		{testpki.Device{CommonName: "staff-laptop", Email: "alice@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff}, benchVLANGeneral},
		{testpki.Device{CommonName: "visitor-phone", Role: policy.RoleVisitor}, benchVLANGuest},
		{testpki.Device{CommonName: "byod-no-role", Ownership: policy.OwnershipPersonal}, benchVLANOnboarding},
	} {
		d.dev.KeyType = kt
		leaf := issuing.IssueDevice(t, d.dev)
		b.identities = append(b.identities, loadtest.Identity{Certificate: leaf.TLSCertificate()})
		b.vlanByCN[d.dev.CommonName] = d.vlan
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte) {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// nacdConfig is the equivalent of the FreeRADIUS configuration for nacd:
// one client, one site, staff -> general, visitor -> guest, no role ->
// onboarding, the same CA bundle and CRL.
const nacdConfig = `data_dir: %[1]s/nacd-data
listen:
  radius_auth: 127.0.0.1:%[2]d
  radius_acct: 127.0.0.1:%[3]d
  metrics: 127.0.0.1:0
clients:
  - name: bench
    networks: [127.0.0.1/32]
    secret: %[4]q
    site: Wallfields
    require_message_authenticator: true
sites:
  - name: Wallfields
    vlans: {general: %[5]d, guest: %[6]d, onboarding: %[7]d}
tls:
  certificate: %[8]s
  key: %[9]s
  fragment_size: 1020
trust_anchors:
  - name: council
    ca_files: [%[10]s]
    crls: [%[11]s]
policy:
  rules:
    - name: staff
      match: {roles: [staff]}
      segment: general
    - name: visitors
      match: {roles: [visitor]}
      segment: guest
    - name: no-role
      match: {roles: [unknown]}
      segment: onboarding
log:
  level: warn
  access_log: %[1]s/access.log
`

// process is a server under measurement.
type process struct {
	name, addr string
	pid        int
}

func startNacdProcess(t *testing.T, bin string, b *benchPKI) *process {
	port, err := freeradiustest.FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	acct, err := freeradiustest.FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(b.dir, "nacd.yaml")
	writeFile(t, cfgFile, []byte(fmt.Sprintf(nacdConfig, b.dir, port, acct, benchSecret,
		benchVLANGeneral, benchVLANGuest, benchVLANOnboarding, b.serverChain, b.serverKey, b.rootFile, b.crlFile)))
	var out bytes.Buffer
	cmd := exec.Command(bin, "serve", "--config", cfgFile)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	p := &process{name: "nacd", addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), pid: cmd.Process.Pid}
	// Ready when a single authentication succeeds.
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, err := loadtest.Run(context.Background(), benchLoad(b, p.addr, 0, 1, 1, 0, time.Second))
		if err == nil && s.Accepts == 1 {
			return p
		}
		select {
		case <-done:
			t.Fatalf("nacd exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nacd did not accept within 15s (%v %+v): %s", err, s, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func startFreeRADIUSProcess(t *testing.T, b *benchPKI) *process {
	srv := freeradiustest.Start(t, freeradiustest.Config{
		Secret: benchSecret, CACertFile: b.rootFile, CRLFile: b.crlFile,
		ServerCertFile: b.serverChain, ServerKeyFile: b.serverKey,
		VLANByCommonName: b.vlanByCN,
	})
	pid := pidByCmdline(t, srv.Dir)
	return &process{name: "freeradius", addr: srv.Addr, pid: pid}
}

// pidByCmdline finds the process whose command line contains s.
func pidByCmdline(t *testing.T, s string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) && !bytes.Contains(b, []byte("-test.")) {
			return pid
		}
	}
	t.Fatalf("no process with %q in its command line", s)
	return 0
}

// cpuSeconds is utime+stime of pid (all threads) from /proc/<pid>/stat.
func cpuSeconds(t *testing.T, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks()
}

func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}

func benchLoad(b *benchPKI, addr string, v uint16, conc, count int, d, timeout time.Duration) loadtest.Config {
	return loadtest.Config{
		CurvePreferences: b.curves,
		Server:           addr, Secret: []byte(benchSecret), Identities: b.identities,
		RootCAs: b.serverRoots, ServerName: "radius.bench.test", TLSVersion: v,
		Concurrency: conc, Count: count, Duration: d, Timeout: timeout,
	}
}

type cell struct {
	key, tls, server string
	sum              *loadtest.Summary
	cpuPerAuth       float64 // seconds
}

func TestBenchCompare(t *testing.T) {
	if !*benchCompare {
		t.Skip("side-by-side benchmark: run scripts/bench-compare (go test -tags benchcompare -run TestBenchCompare -args -bench-compare)")
	}
	freeradiustest.Binary(t)
	bin := *benchNacdBin
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "nacd")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/herts-council/nacd/cmd/nacd")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build nacd: %v\n%s", err, out)
		}
	}
	var cells []cell
	for _, kt := range []testpki.KeyType{testpki.ECDSAP256, testpki.RSA2048} {
		b := newBenchPKI(t, kt)
		fr := startFreeRADIUSProcess(t, b)
		nacd := startNacdProcess(t, bin, b)
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			for _, p := range []*process{fr, nacd} {
				cells = append(cells, measure(t, b, p, string(kt), v))
			}
		}
	}
	report := benchReport(cells)
	fmt.Fprint(os.Stdout, report)
	if *benchOut != "" {
		writeFile(t, *benchOut, []byte(report))
	}
}

func measure(t *testing.T, b *benchPKI, p *process, key string, v uint16) cell {
	vs := map[uint16]string{tls.VersionTLS12: "1.2", tls.VersionTLS13: "1.3"}[v]
	// Warm up (connections, caches, thread pools), not measured.
	if _, err := loadtest.Run(context.Background(), benchLoad(b, p.addr, v, *benchConcurrency, 100, 0, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	before := cpuSeconds(t, p.pid)
	s, err := loadtest.Run(context.Background(), benchLoad(b, p.addr, v, *benchConcurrency, 0, *benchSeconds, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	after := cpuSeconds(t, p.pid)
	c := cell{key: key, tls: vs, server: p.name, sum: s}
	if s.Completed > 0 {
		c.cpuPerAuth = (after - before) / float64(s.Completed)
	}
	if !s.OK() || s.Accepts != s.Completed {
		var w strings.Builder
		s.WriteText(&w)
		t.Errorf("%s TLS %s: not every authentication was a verified accept:\n%s", p.name, vs, w.String())
	}
	// Every persona must land on its VLAN on both servers (equivalent policy).
	for _, id := range s.Identities {
		if want := strconv.Itoa(b.vlanByCN[id.Name]); id.VLANs[want] != id.Accepts {
			t.Errorf("%s TLS %s: identity %s VLANs %v, want all on %s", p.name, vs, id.Name, id.VLANs, want)
		}
	}
	fmt.Fprintf(os.Stderr, "%-10s TLS %s %-10s %8.1f auth/s  p99 %7.2f ms  cpu %6.3f ms/auth  (%d auths, %d errors)\n",
		c.key, vs, p.name, s.AuthsPerSecond, s.Latency.P99, c.cpuPerAuth*1000, s.Completed, s.Errors)
	return c
}

func benchReport(cells []cell) string {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	curves := *benchCurves
	if curves == "" {
		curves = "Go default (X25519MLKEM768, X25519, P-256, ...)"
	}
	fmt.Fprintf(w, "\n%d CPU, %s, %v per cell and server, concurrency %d, closed loop, client key exchanges: %s\n\n", runtime.NumCPU(), runtime.Version(), *benchSeconds, *benchConcurrency, curves)
	fmt.Fprintln(w, "| key | TLS | server | auths/s | p99 ms | round trips/auth | server CPU ms/auth | server-only capacity (auths/s on all cores) |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|")
	for i := 0; i+1 < len(cells); i += 2 {
		fr, n := cells[i], cells[i+1]
		for _, c := range []cell{fr, n} {
			capacity := 0.0
			if c.cpuPerAuth > 0 {
				capacity = float64(runtime.NumCPU()) / c.cpuPerAuth
			}
			fmt.Fprintf(w, "| %s | %s | %s | %.1f | %.2f | %.1f | %.3f | %.0f |\n", c.key, c.tls, c.server, c.sum.AuthsPerSecond, c.sum.Latency.P99, c.sum.RoundTripsPerAuth, c.cpuPerAuth*1000, capacity)
		}
		fmt.Fprintf(w, "| %s | %s | **nacd/FreeRADIUS** | %s | %s | | %s | |\n", n.key, n.tls,
			ratio(n.sum.AuthsPerSecond, fr.sum.AuthsPerSecond), ratio(n.sum.Latency.P99, fr.sum.Latency.P99), ratio(n.cpuPerAuth, fr.cpuPerAuth))
	}
	w.Flush()
	return b.String()
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}
