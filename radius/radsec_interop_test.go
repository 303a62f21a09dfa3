package radius

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/internal/eapoltest"
	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/internal/testtool"
	"github.com/herts-council/nacd/policy"
)

// radsecproxyUDPSecret is the secret between eapol_test and radsecproxy.
const radsecproxyUDPSecret = "eapol-to-radsecproxy-secret"

// freeUDPPort returns a loopback UDP port that was free a moment ago.
func freeUDPPort(tb testing.TB) int {
	tb.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// syncBuffer is a goroutine-safe bytes.Buffer for a child's output.
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

// startRadsecproxy runs radsecproxy in the foreground, listening for UDP on
// udpPort and forwarding every realm over TLS to nacd at radsecAddr,
// presenting nas (chain and key files). It is killed at cleanup.
func startRadsecproxy(tb testing.TB, bin, dir string, udpPort int, radsecAddr string, nas testpki.Files, serverCA string) *syncBuffer {
	tb.Helper()
	host, port, _ := net.SplitHostPort(radsecAddr)
	conf := fmt.Sprintf(`ListenUDP 127.0.0.1:%d
LogLevel 4
tls nacd {
    CACertificateFile %s
    CertificateFile %s
    CertificateKeyFile %s
}
client eapol {
    host 127.0.0.1
    type udp
    secret %s
}
server nacd {
    host %s
    port %s
    type tls
    tls nacd
    secret radsec
    CertificateNameCheck off
    MatchCertificateAttribute CN:/^radius\.nacd\.test$/
    StatusServer on
}
realm * {
    server nacd
}
`, udpPort, serverCA, nas.Chain, nas.Key, radsecproxyUDPSecret, host, port)
	path := filepath.Join(dir, "radsecproxy.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, bin, "-f", "-c", path)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		tb.Fatalf("start radsecproxy: %v", err)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
		cancel()
		if tb.Failed() {
			tb.Logf("radsecproxy output:\n%s", out.String())
		}
	})
	return out
}

// TestRadSecInteropRadsecproxy: eapol_test -> radsecproxy (UDP) -> nacd
// (RadSec). A device is accepted on its VLAN with MPPE keys that survive
// radsecproxy's re-encryption ("radsec" secret to the UDP secret);
// radsecproxy's Status-Server keepalives are answered; a controller
// certificate from an untrusted CA is refused at the TLS handshake and
// counted, and no authentication gets through it.
// startInteropRadSec runs a Server with RadSec for the controller
// radsecNASName under nasCA (VerifyPeer verifyPeer, may be nil) on a
// loopback listener until the test ends; it returns the server and the
// RadSec address.
func startInteropRadSec(t *testing.T, devices *testDevicePKI, nasCA *testpki.CA, verifyPeer func([]*x509.Certificate, time.Time) error) (*Server, string) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(nasCA.Cert)
	srv, err := NewServer(Config{
		Clients: []Client{{Name: "wlc-wallfields", Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Secret: testSecret, Site: testSite,
			RadSec: true, RadSecIdentities: []string{radsecNASName}}},
		EAPTLS:     testEAPTLSConfig(t),
		Verifier:   devices.verifier,
		Policy:     testPolicy(t),
		RadSec:     &RadSecConfig{Certificates: testEAPTLSConfig(t).Certificates, ClientCAs: pool, VerifyPeer: verifyPeer},
		Logger:     zap.NewNop(),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeRadSec(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; err != nil {
			t.Errorf("ServeRadSec: %v", err)
		}
	})
	return srv, ln.Addr().String()
}

func TestRadSecInteropRadsecproxy(t *testing.T) {
	proxyBin := testtool.Require(t, "radsecproxy")
	eapolBin := eapoltest.Require(t)
	dir := t.TempDir()

	devices := newDevicePKI(t)
	nasCA := testpki.NewRoot(t, "controller ca")
	nas := nasCA.IssueDevice(t, testpki.Device{CommonName: radsecNASName}).WriteFiles(t, dir, "nas")
	rogue := testpki.NewRoot(t, "rogue ca").IssueDevice(t, testpki.Device{CommonName: radsecNASName}).WriteFiles(t, dir, "rogue")
	testEAPTLSConfig(t)
	serverCA := serverRoot.WriteCert(t, dir, "server-ca")
	staff := devices.issuing.IssueDevice(t, testpki.Device{CommonName: "laptop-21", Email: "hal@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff}).WriteFiles(t, dir, "staff")
	visitor := devices.issuing.IssueDevice(t, testpki.Device{CommonName: "visitor-tab", Role: policy.RoleVisitor}).WriteFiles(t, dir, "visitor")

	srv, radsecAddr := startInteropRadSec(t, devices, nasCA, nil)
	result := func(r string) float64 { return testutil.ToFloat64(srv.radsec.results.WithLabelValues(r)) }

	t.Run("trusted controller", func(t *testing.T) {
		port := freeUDPPort(t)
		startRadsecproxy(t, proxyBin, t.TempDir(), port, radsecAddr, nas, serverCA)
		// radsecproxy connects to its TLS servers at start.
		waitFor(t, "radsecproxy's RadSec connection", func() bool { return result(RadSecAccepted) >= 1 })
		tests := []struct {
			name string
			dev  testpki.Files
			tls  string
			vlan int
		}{
			{"staff laptop TLS 1.3 -> general", staff, "1.3", testVLANGen},
			{"staff laptop TLS 1.2 -> general", staff, "1.2", testVLANGen},
			{"visitor tablet -> guest", visitor, "", testVLANGuest},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				res, err := eapoltest.Run(context.Background(), eapoltest.Options{
					Binary: eapolBin, Server: "127.0.0.1:" + strconv.Itoa(port), Secret: radsecproxyUDPSecret,
					CACert: serverCA, ClientCert: tt.dev.Chain, ClientKey: tt.dev.Key, TLSVersion: tt.tls,
					Timeout: 20 * time.Second,
				})
				if err != nil {
					t.Fatalf("eapol_test: %v", err)
				}
				if !res.Success || res.Accept == nil {
					t.Fatalf("not accepted: code %q timed out %v\n%s", res.Code, res.TimedOut, res.Raw)
				}
				if !res.MPPEChecked || !res.MPPEKeysOK {
					t.Fatalf("MPPE keys not OK through radsecproxy\n%s", res.Raw)
				}
				if got := res.Accept.TunnelPrivateGroupID; got != strconv.Itoa(tt.vlan) || res.Accept.TunnelType != 13 {
					t.Fatalf("VLAN %q (tunnel type %d), want %d", got, res.Accept.TunnelType, tt.vlan)
				}
				if tt.tls != "" && res.TLSVersion != tt.tls {
					t.Fatalf("TLS %q, want %q", res.TLSVersion, tt.tls)
				}
			})
		}
		if got := result(RadSecAccepted); got < 1 {
			t.Fatalf("accepted = %v", got)
		}
	})

	t.Run("controller certificate from an untrusted CA", func(t *testing.T) {
		before := result(RadSecHandshakeFailed)
		accepted := result(RadSecAccepted)
		port := freeUDPPort(t)
		startRadsecproxy(t, proxyBin, t.TempDir(), port, radsecAddr, rogue, serverCA)
		waitFor(t, "the rogue controller's handshake to be refused", func() bool { return result(RadSecHandshakeFailed) > before })
		res, err := eapoltest.Run(context.Background(), eapoltest.Options{
			Binary: eapolBin, Server: "127.0.0.1:" + strconv.Itoa(port), Secret: radsecproxyUDPSecret,
			CACert: serverCA, ClientCert: staff.Chain, ClientKey: staff.Key, Timeout: 6 * time.Second,
		})
		if err != nil {
			t.Fatalf("eapol_test: %v", err)
		}
		if res.Success || res.Accept != nil {
			t.Fatalf("authenticated through a controller with an untrusted certificate\n%s", res.Raw)
		}
		if got := result(RadSecAccepted); got != accepted {
			t.Fatalf("accepted moved from %v to %v", accepted, got)
		}
	})
}
