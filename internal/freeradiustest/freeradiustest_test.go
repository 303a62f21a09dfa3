package freeradiustest

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/eapoltest"
	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

// captureDir, when set, receives every eapol_test output of the tests (used
// to refresh internal/eapoltest/testdata with real captures).
var captureDir = os.Getenv("EAPOLTEST_CAPTURE_DIR")

func capture(t *testing.T, name string, r *eapoltest.Result) {
	if captureDir == "" || r == nil {
		return
	}
	if err := os.WriteFile(filepath.Join(captureDir, name+".txt"), []byte(r.Raw), 0o644); err != nil {
		t.Errorf("capture: %v", err)
	}
}

// TestEAPTLSAgainstFreeRADIUS proves the eapol_test harness against the
// reference server: real eapol_test, real FreeRADIUS 3.2, a testpki PKI.
func TestEAPTLSAgainstFreeRADIUS(t *testing.T) {
	eapolTest := eapoltest.Require(t)
	dir := t.TempDir()

	root := testpki.NewRoot(t, "FR Test Root")
	inter := root.NewIntermediate(t, "FR Test Devices")
	server := inter.IssueServer(t, "radius.test", testpki.ECDSAP256).WriteFiles(t, dir, "server")
	caFile := root.WriteCert(t, dir, "root")

	laptop := inter.IssueDevice(t, testpki.Device{CommonName: "laptop-1", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, IL3: true}).WriteFiles(t, dir, "laptop")
	phone := inter.IssueDevice(t, testpki.Device{CommonName: "phone-1", Ownership: policy.OwnershipPersonal, Role: policy.RoleStaff, KeyType: testpki.RSA2048}).WriteFiles(t, dir, "phone")
	bigLeaf := inter.IssueDevice(t, testpki.Device{CommonName: "big-1", Padding: 5000})
	big := bigLeaf.WriteFiles(t, dir, "big")
	revokedLeaf := inter.IssueDevice(t, testpki.Device{CommonName: "revoked-1"})
	revoked := revokedLeaf.WriteFiles(t, dir, "revoked")
	untrusted := testpki.NewRoot(t, "Other Root").IssueDevice(t, testpki.Device{CommonName: "laptop-1"}).WriteFiles(t, dir, "untrusted")

	// check_crl needs the CRL of the issuing CA (check_all_crl is off).
	now := time.Now()
	crlFile := filepath.Join(dir, "crl.pem")
	crlPEM := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: inter.CRL(t, 1, now.Add(-time.Minute), now.Add(time.Hour), revokedLeaf.Cert.SerialNumber)})
	if err := os.WriteFile(crlFile, crlPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if bigLeaf.Cert.Raw == nil || len(bigLeaf.Cert.Raw) < 5000 {
		t.Fatalf("padded certificate is only %d bytes", len(bigLeaf.Cert.Raw))
	}

	srv := Start(t, Config{
		CACertFile:       caFile,
		ServerCertFile:   server.Chain,
		ServerKeyFile:    server.Key,
		CRLFile:          crlFile,
		FragmentSize:     500,
		VLANByCommonName: map[string]int{"laptop-1": 110, "phone-1": 120},
		DefaultVLAN:      199,
		SessionTimeout:   time.Hour,
	})

	type tc struct {
		name     string
		files    testpki.Files
		frag     int
		accept   bool
		vlan     string
		identity string
	}
	cases := []tc{
		{name: "council laptop", files: laptop, accept: true, vlan: "110", identity: "laptop-1"},
		{name: "personal phone rsa", files: phone, accept: true, vlan: "120", identity: "phone-1"},
		{name: "long chain fragment 500", files: big, frag: 500, accept: true, vlan: "199", identity: "big-1"},
		{name: "revoked", files: revoked, identity: "revoked-1"},
		{name: "untrusted root", files: untrusted, identity: "laptop-1"},
	}
	for _, ver := range []string{"1.2", "1.3"} {
		for _, c := range cases {
			t.Run("tls"+ver+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r, err := eapoltest.Run(ctx, eapoltest.Options{
					Binary:       eapolTest,
					Server:       srv.Addr,
					Secret:       srv.Secret,
					CACert:       caFile,
					ClientCert:   c.files.Chain,
					ClientKey:    c.files.Key,
					Identity:     c.identity,
					TLSVersion:   ver,
					FragmentSize: c.frag,
					Timeout:      10 * time.Second,
					Attributes:   []eapoltest.Attribute{eapoltest.CalledStationID("AA-BB-CC-DD-EE-FF", "CouncilWiFi")},
				})
				capture(t, "freeradius-tls"+ver+"-"+strings.ReplaceAll(c.name, " ", "-"), r)
				if err != nil {
					t.Fatalf("eapol_test: %v", err)
				}
				if r.TLSVersion != ver {
					t.Errorf("negotiated TLS %q, want %q", r.TLSVersion, ver)
				}
				if !c.accept {
					if !r.Rejected() {
						t.Fatalf("want Access-Reject; got success=%v code=%q timedOut=%v", r.Success, r.Code, r.TimedOut)
					}
					return
				}
				if !r.Success {
					t.Fatalf("want SUCCESS; got code=%q timedOut=%v\n%s", r.Code, r.TimedOut, tail(r.Raw, 40))
				}
				if !r.MPPEKeysOK {
					t.Error("eapol_test did not report MPPE keys OK")
				}
				if err := r.CheckKeys(); err != nil {
					t.Error(err)
				}
				a := r.Accept
				if a.TunnelPrivateGroupID != c.vlan || a.TunnelType != eapoltest.TunnelTypeVLAN || a.TunnelMediumType != eapoltest.TunnelMediumIEEE802 {
					t.Errorf("VLAN attributes %q/%d/%d, want %q/13/6", a.TunnelPrivateGroupID, a.TunnelType, a.TunnelMediumType, c.vlan)
				}
				if a.UserName != c.identity {
					t.Errorf("User-Name %q, want %q", a.UserName, c.identity)
				}
				if a.SessionTimeout != 3600 {
					t.Errorf("Session-Timeout %d, want 3600", a.SessionTimeout)
				}
				if c.frag > 0 && (r.ClientFragments < 2 || r.ServerFragments < 2) {
					t.Errorf("fragments: client sent %d, server sent %d with the M flag; want >= 2 each way", r.ClientFragments, r.ServerFragments)
				}
			})
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestSupplicantKnobsAgainstFreeRADIUS proves the harness options that the
// nacd interop tests rely on, against the reference server.
func TestSupplicantKnobsAgainstFreeRADIUS(t *testing.T) {
	eapolTest := eapoltest.Require(t)
	dir := t.TempDir()
	root := testpki.NewRoot(t, "FR Knobs Root")
	inter := root.NewIntermediate(t, "FR Knobs Devices")
	server := inter.IssueServer(t, "radius.test", testpki.ECDSAP256).WriteFiles(t, dir, "server")
	caFile := root.WriteCert(t, dir, "root")
	dev := inter.IssueDevice(t, testpki.Device{CommonName: "laptop-1"}).WriteFiles(t, dir, "laptop")
	srv := Start(t, Config{CACertFile: caFile, ServerCertFile: server.Chain, ServerKeyFile: server.Key, DefaultVLAN: 100})

	base := eapoltest.Options{Binary: eapolTest, Server: srv.Addr, Secret: srv.Secret, CACert: caFile,
		ClientCert: dev.Chain, ClientKey: dev.Key, Identity: "laptop-1", Timeout: 10 * time.Second}
	run := func(t *testing.T, o eapoltest.Options) *eapoltest.Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := eapoltest.Run(ctx, o)
		capture(t, "freeradius-"+strings.ReplaceAll(strings.TrimPrefix(t.Name(), "TestSupplicantKnobsAgainstFreeRADIUS/"), " ", "-"), r)
		if err != nil {
			t.Fatalf("eapol_test: %v", err)
		}
		return r
	}

	t.Run("tls1.2 without extended master secret", func(t *testing.T) {
		o := base
		o.TLSVersion, o.DisableExtendedMasterSecret = "1.2", true
		r := run(t, o)
		if eapoltest.HasExtension(r.ClientHelloExtensions, eapoltest.ExtExtendedMasterSecret) {
			t.Fatalf("ClientHello still offers extended_master_secret: %x", r.ClientHelloExtensions)
		}
		if eapoltest.HasExtension(r.ServerHelloExtensions, eapoltest.ExtExtendedMasterSecret) {
			t.Errorf("ServerHello has extended_master_secret although the client did not offer it")
		}
		if !r.Success || !r.MPPEKeysOK || r.CheckKeys() != nil {
			t.Errorf("FreeRADIUS without EMS: success=%v mppe=%v keys=%v", r.Success, r.MPPEKeysOK, r.CheckKeys())
		}
	})
	t.Run("tls1.2 with extended master secret", func(t *testing.T) {
		o := base
		o.TLSVersion = "1.2"
		r := run(t, o)
		if !eapoltest.HasExtension(r.ClientHelloExtensions, eapoltest.ExtExtendedMasterSecret) ||
			!eapoltest.HasExtension(r.ServerHelloExtensions, eapoltest.ExtExtendedMasterSecret) {
			t.Errorf("EMS not negotiated: client %x server %x", r.ClientHelloExtensions, r.ServerHelloExtensions)
		}
		if !r.Success {
			t.Error("not accepted")
		}
	})
	t.Run("peer offers only PEAP", func(t *testing.T) {
		o := base
		o.EAPMethod = "PEAP"
		r := run(t, o)
		if !r.Rejected() {
			t.Errorf("want Access-Reject after the NAK; got success=%v code=%q timedOut=%v", r.Success, r.Code, r.TimedOut)
		}
		if !strings.Contains(r.Raw, "EAP: Building EAP-Nak") {
			t.Errorf("supplicant did not NAK EAP-TLS")
		}
	})
	t.Run("server chain written", func(t *testing.T) {
		o := base
		o.ServerChainFile = filepath.Join(t.TempDir(), "server-chain.pem")
		r := run(t, o)
		if !r.Success {
			t.Fatal("not accepted")
		}
		certs := readCerts(t, o.ServerChainFile)
		var names []string
		for _, c := range certs {
			names = append(names, c.Subject.CommonName)
		}
		t.Logf("server chain file: %q", names)
		// eapol_test writes the chain as verified (root first), not as sent.
		if len(certs) != 3 || certs[2].Subject.CommonName != "radius.test" {
			t.Errorf("server chain file: %q, want root, intermediate, radius.test", names)
		}
		if len(r.ServerCertificates) != 2 {
			t.Errorf("FreeRADIUS sent %d certificates, want leaf + intermediate", len(r.ServerCertificates))
		}
	})
}

// readCerts reads PEM or DER certificates from a file.
func readCerts(t *testing.T, path string) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if out == nil {
		if c, err := x509.ParseCertificate(b); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// TestProxyMode: eapol_test -> FreeRADIUS proxy -> FreeRADIUS EAP server.
// The same proxy sits in front of nacd in cmd/nacd's interop test.
func TestProxyMode(t *testing.T) {
	eapolTest := eapoltest.Require(t)
	dir := t.TempDir()
	root := testpki.NewRoot(t, "FR Proxy Root")
	server := root.IssueServer(t, "radius.test", testpki.ECDSAP256).WriteFiles(t, dir, "server")
	caFile := root.WriteCert(t, dir, "root")
	dev := root.IssueDevice(t, testpki.Device{CommonName: "laptop-1"}).WriteFiles(t, dir, "laptop")
	home := Start(t, Config{Secret: "home-secret-0123456789", CACertFile: caFile, ServerCertFile: server.Chain, ServerKeyFile: server.Key, DefaultVLAN: 100})
	proxy := Start(t, Config{Secret: "nas-secret-0123456789", Proxy: &Proxy{Addr: home.Addr, Secret: home.Secret}})
	for _, ver := range []string{"1.2", "1.3"} {
		t.Run("tls"+ver, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, err := eapoltest.Run(ctx, eapoltest.Options{Binary: eapolTest, Server: proxy.Addr, Secret: proxy.Secret, CACert: caFile,
				ClientCert: dev.Chain, ClientKey: dev.Key, Identity: "laptop-1", TLSVersion: ver, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Success || !r.MPPEKeysOK || r.CheckKeys() != nil {
				t.Fatalf("through the proxy: success=%v mppe=%v keys=%v code=%q timedOut=%v", r.Success, r.MPPEKeysOK, r.CheckKeys(), r.Code, r.TimedOut)
			}
			if r.Accept.TunnelPrivateGroupID != "100" {
				t.Errorf("VLAN %q, want 100", r.Accept.TunnelPrivateGroupID)
			}
		})
	}
}

// TestRadSecProxyMode: eapol_test -> FreeRADIUS proxy over RadSec (TCP+TLS,
// RFC 6614) -> FreeRADIUS EAP server with a RadSec listener.
func TestRadSecProxyMode(t *testing.T) {
	eapolTest := eapoltest.Require(t)
	dir := t.TempDir()
	root := testpki.NewRoot(t, "FR RadSec Root")
	server := root.IssueServer(t, "radius.test", testpki.ECDSAP256).WriteFiles(t, dir, "server")
	proxyCert := root.IssueDevice(t, testpki.Device{CommonName: "proxy.test"}).WriteFiles(t, dir, "proxy")
	caFile := root.WriteCert(t, dir, "root")
	dev := root.IssueDevice(t, testpki.Device{CommonName: "laptop-1"}).WriteFiles(t, dir, "laptop")
	home := Start(t, Config{CACertFile: caFile, ServerCertFile: server.Chain, ServerKeyFile: server.Key, DefaultVLAN: 100,
		RadSec: &RadSec{CertFile: server.Chain, KeyFile: server.Key, CAFile: caFile}})
	if home.RadSecAddr == "" {
		t.Fatal("no RadSec address")
	}
	proxy := Start(t, Config{Secret: "nas-secret-0123456789", Proxy: &Proxy{Addr: home.RadSecAddr,
		TLS: &ProxyTLS{CertFile: proxyCert.Chain, KeyFile: proxyCert.Key, CAFile: caFile}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := eapoltest.Run(ctx, eapoltest.Options{Binary: eapolTest, Server: proxy.Addr, Secret: proxy.Secret, CACert: caFile,
		ClientCert: dev.Chain, ClientKey: dev.Key, Identity: "laptop-1", Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Success || !r.MPPEKeysOK || r.CheckKeys() != nil || r.Accept.TunnelPrivateGroupID != "100" {
		t.Fatalf("through the RadSec proxy: success=%v mppe=%v keys=%v code=%q timedOut=%v\n--- proxy ---\n%s", r.Success, r.MPPEKeysOK, r.CheckKeys(), r.Code, r.TimedOut, tail(proxy.Log(), 40))
	}
	// The home server logged the login from its RadSec client (named
	// "loopback"; the UDP client is "localhost").
	// The log line may trail the reply a little: wait for it (bounded).
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(home.Log(), "from client loopback"); {
		if time.Now().After(deadline) {
			t.Fatalf("home server did not log the request from its RadSec client:\n%s", tail(home.Log(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWriteConfigRefusesUnsafeValues(t *testing.T) {
	base := Config{CACertFile: "/dev/null", ServerCertFile: "/x.pem", ServerKeyFile: "/x.key"}
	tests := []struct {
		name string
		cfg  func(Config) Config
	}{
		{"quote in common name", func(c Config) Config { c.VLANByCommonName = map[string]int{`a"b`: 10}; return c }},
		{"xlat in common name", func(c Config) Config { c.VLANByCommonName = map[string]int{"%{exec:/bin/sh}": 10}; return c }},
		{"proxy to a remote host", func(c Config) Config { c.Proxy = &Proxy{Addr: "192.0.2.1:1812", Secret: "s"}; return c }},
		{"proxy secret with a quote", func(c Config) Config { c.Proxy = &Proxy{Addr: "127.0.0.1:1812", Secret: `s"`}; return c }},
		{"client secret with a newline", func(c Config) Config { c.Secret = "a\nb"; return c }},
		{"radsec without a port", func(c Config) Config { c.RadSec = &RadSec{CertFile: "/x", KeyFile: "/y", CAFile: "/z"}; return c }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := WriteConfig(t.TempDir(), 1812, tc.cfg(base)); err == nil {
				t.Error("WriteConfig accepted it")
			}
		})
	}
}
