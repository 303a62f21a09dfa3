package loadtest_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
	nacdradius "github.com/herts-council/nacd/radius"
	"github.com/herts-council/nacd/radius/eaptls"
	"github.com/herts-council/nacd/radius/loadtest"
)

// Environment of the load-generator child process (TestLoadgenChild).
const (
	envChild   = "NACD_LOADTEST_CHILD"
	envAddr    = "NACD_LOADTEST_ADDR"
	envCount   = "NACD_LOADTEST_COUNT"
	envConc    = "NACD_LOADTEST_CONCURRENCY"
	envTLS     = "NACD_LOADTEST_TLS"
	envDir     = "NACD_LOADTEST_DIR"
	childToken = "run-by-BenchmarkServerUnderLoad"
)

// TestLoadgenChild is not a test: BenchmarkServerUnderLoad re-executes the
// test binary with it to generate load from another process, so that the
// benchmark's CPU profile and CPU time are the server's alone.
func TestLoadgenChild(t *testing.T) {
	if os.Getenv(envChild) != childToken {
		t.Skip("helper process for BenchmarkServerUnderLoad")
	}
	dir := os.Getenv(envDir)
	ids, err := loadtest.LoadIdentityDir(filepath.Join(dir, "personas"))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := loadtest.LoadCertPool(filepath.Join(dir, "server-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	count, _ := strconv.Atoi(os.Getenv(envCount))
	conc, _ := strconv.Atoi(os.Getenv(envConc))
	v, _ := strconv.Atoi(os.Getenv(envTLS))
	s, err := loadtest.Run(context.Background(), loadtest.Config{
		Server: os.Getenv(envAddr), Secret: testSecret, Identities: ids, RootCAs: roots, ServerName: serverName,
		TLSVersion: uint16(v), Count: count, Concurrency: conc, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(s); err != nil {
		t.Fatal(err)
	}
}

// startNacdTrustStore runs radius.Server with the real pki.TrustStore (CA
// bundle and CRL from files) as its verifier.
func startNacdTrustStore(tb testing.TB, dir string) string {
	p := newTestPKI(tb)
	caFile := filepath.Join(dir, "council-ca.pem")
	if err := os.WriteFile(caFile, testpki.CertPEM(p.deviceRoot.Cert, p.issuing.Cert), 0o600); err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	crlFile := filepath.Join(dir, "council.crl")
	if err := os.WriteFile(crlFile, p.issuing.CRL(tb, 1, now.Add(-time.Hour), now.Add(24*time.Hour)), 0o600); err != nil {
		tb.Fatal(err)
	}
	ts, err := pki.NewTrustStore([]pki.AnchorConfig{{Name: "council", CAFiles: []string{caFile}, CRLs: []string{crlFile}, OIDs: policy.DefaultOIDs()}})
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := nacdradius.NewServer(nacdradius.Config{
		Clients:  []nacdradius.Client{{Name: "loopback", Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Secret: testSecret, Site: testSite, RequireMessageAuthenticator: true}},
		EAPTLS:   &eaptls.Config{Certificates: []tls.Certificate{p.server.TLSCertificate()}},
		Verifier: ts,
		Policy:   testPolicy(tb),
	})
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	tb.Cleanup(func() {
		srv.Close()
		<-done
	})
	return conn.LocalAddr().String()
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkServerUnderLoad: nacd's radius.Server with the real
// pki.TrustStore in this process, the load generator in a child process (8
// in flight), one verified authentication per op. server-cpu-ms/auth is
// this process's user+system CPU per authentication: the server's cost
// alone. Profile it with -cpuprofile; the profile has no client code.
func BenchmarkServerUnderLoad(b *testing.B) {
	dir := b.TempDir()
	addr := startNacdTrustStore(b, dir)
	p := newTestPKI(b)
	if err := os.MkdirAll(filepath.Join(dir, "personas"), 0o700); err != nil {
		b.Fatal(err)
	}
	p.personas[personaStaff].WriteFiles(b, filepath.Join(dir, "personas"), personaStaff)
	if err := os.WriteFile(filepath.Join(dir, "server-ca.pem"), testpki.CertPEM(p.serverRoot.Cert), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name string
		v    uint16
	}{{"ecdsa/TLS1.3", tls.VersionTLS13}, {"ecdsa/TLS1.2", tls.VersionTLS12}} {
		b.Run(v.name, func(b *testing.B) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestLoadgenChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), envChild+"="+childToken, envAddr+"="+addr, envDir+"="+dir,
				envCount+"="+strconv.Itoa(b.N), envConc+"=8", envTLS+"="+strconv.Itoa(int(v.v)))
			cmd.Stderr = os.Stderr
			cpu0 := processCPU()
			b.ResetTimer()
			out, err := cmd.Output()
			b.StopTimer()
			cpu := processCPU() - cpu0
			if err != nil {
				b.Fatalf("load generator: %v\n%s", err, out)
			}
			var s loadtest.Summary
			if err := json.Unmarshal(firstJSONLine(out), &s); err != nil {
				b.Fatalf("summary: %v\n%s", err, out)
			}
			if s.Accepts != int64(b.N) || !s.OK() {
				b.Fatalf("accepts %d of %d: %v %v", s.Accepts, b.N, s.ErrorCauses, s.ErrorExamples)
			}
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "server-cpu-ms/auth")
			b.ReportMetric(s.AuthsPerSecond, "auths/s")
			b.ReportMetric(s.Latency.P99, "p99-ms")
		})
	}
}

func firstJSONLine(out []byte) []byte {
	for len(out) > 0 {
		i := 0
		for i < len(out) && out[i] != '\n' {
			i++
		}
		if i > 0 && out[0] == '{' {
			return out[:i]
		}
		if i == len(out) {
			break
		}
		out = out[i+1:]
	}
	return nil
}
