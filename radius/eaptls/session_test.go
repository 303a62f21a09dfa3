package eaptls

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/radius/eap"
)

var versions = []struct {
	name string
	v    uint16
}{{"tls12", tls.VersionTLS12}, {"tls13", tls.VersionTLS13}}

var keyTypes = []struct {
	name string
	kt   testpki.KeyType
}{{"ecdsa", testpki.ECDSAP256}, {"rsa2048", testpki.RSA2048}}

func TestHandshakeSuccess(t *testing.T) {
	for _, ver := range versions {
		for _, kt := range keyTypes {
			t.Run(ver.name+"/"+kt.name, func(t *testing.T) {
				checkNoLeak(t)
				pki := newTestPKI(t, kt.kt, kt.kt, 0)
				var calls int
				var seen tls.ConnectionState
				s := NewSession(pki.serverConfig(0, ver.v, 0), func(cs tls.ConnectionState) error {
					calls++
					seen = cs
					return nil
				})
				defer s.Close()
				p := NewPeer(pki.peerConfig(ver.v, 0))
				defer p.Close()
				x := converse(t, s, p, 254) // identifiers wrap past 255
				if x.final != eap.CodeSuccess || x.serverErr != nil || x.peerErr != nil {
					t.Fatalf("final %d, server err %v, peer err %v", x.final, x.serverErr, x.peerErr)
				}
				if calls != 1 {
					t.Errorf("Authorize called %d times, want 1", calls)
				}
				if !seen.HandshakeComplete || len(seen.PeerCertificates) != 2 || !seen.PeerCertificates[0].Equal(pki.client.Cert) {
					t.Errorf("Authorize got complete=%v, %d certs", seen.HandshakeComplete, len(seen.PeerCertificates))
				}
				sr, pr := s.Result(), p.Result()
				if sr == nil || pr == nil {
					t.Fatalf("results: server %v, peer %v", sr, pr)
				}
				if len(sr.MSK) != 64 || len(sr.EMSK) != 64 {
					t.Fatalf("MSK %d bytes, EMSK %d bytes", len(sr.MSK), len(sr.EMSK))
				}
				if !bytes.Equal(sr.MSK, pr.MSK) || !bytes.Equal(sr.EMSK, pr.EMSK) || !bytes.Equal(sr.SessionID, pr.SessionID) {
					t.Fatalf("server and peer disagree on the keys")
				}
				if bytes.Equal(sr.MSK, sr.EMSK) || bytes.Equal(sr.MSK, make([]byte, 64)) {
					t.Fatalf("degenerate keys")
				}
				if sr.Version != ver.v || pr.Version != ver.v || sr.CipherSuite != pr.CipherSuite || sr.CipherSuite == 0 {
					t.Errorf("version %x/%x suite %x/%x", sr.Version, pr.Version, sr.CipherSuite, pr.CipherSuite)
				}
				if len(sr.SessionID) != 65 || sr.SessionID[0] != 0x0D {
					t.Errorf("Session-Id %x", sr.SessionID)
				}
				if len(sr.PeerCertificates) == 0 || !sr.PeerCertificates[0].Equal(pki.client.Cert) {
					t.Errorf("Result.PeerCertificates is not the client chain")
				}
				if len(pr.PeerCertificates) == 0 || !pr.PeerCertificates[0].Equal(pki.server.Cert) {
					t.Errorf("peer Result.PeerCertificates is not the server chain")
				}
				if got := x.indicationSeen; got != (ver.v == tls.VersionTLS13) {
					t.Errorf("success indication seen %v", got)
				}
				if s.Err() != nil {
					t.Errorf("Err() = %v after success", s.Err())
				}
			})
		}
	}
}

// TestKeylogRouteMatchesExporter proves the TLS 1.2 PRF route: on an
// Extended Master Secret session, ExportKeyingMaterial("client EAP
// encryption", nil, 128) is RFC 5216's MSK||EMSK.
func TestKeylogRouteMatchesExporter(t *testing.T) {
	for _, kt := range keyTypes {
		t.Run(kt.name, func(t *testing.T) {
			checkNoLeak(t)
			pki := newTestPKI(t, kt.kt, testpki.ECDSAP256, 0)
			var exported []byte
			s := NewSession(pki.serverConfig(0, tls.VersionTLS12, 0), func(cs tls.ConnectionState) error {
				var err error
				exported, err = cs.ExportKeyingMaterial("client EAP encryption", nil, 128)
				return err
			})
			defer s.Close()
			p := NewPeer(pki.peerConfig(tls.VersionTLS12, 0))
			defer p.Close()
			if x := converse(t, s, p, 1); x.final != eap.CodeSuccess {
				t.Fatalf("final %d: %v", x.final, x.serverErr)
			}
			r := s.Result()
			if !bytes.Equal(append(bytes.Clone(r.MSK), r.EMSK...), exported) {
				t.Fatalf("keylog PRF route and exporter disagree")
			}
		})
	}
}

func TestKeylogRouteMatchesExporterSHA384(t *testing.T) {
	checkNoLeak(t)
	pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	var exported []byte
	s := NewSession(pki.serverConfig(0, tls.VersionTLS12, 0), func(cs tls.ConnectionState) error {
		var err error
		exported, err = cs.ExportKeyingMaterial("client EAP encryption", nil, 128)
		return err
	})
	defer s.Close()
	pc := pki.peerConfig(tls.VersionTLS12, 0)
	pc.TLS.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}
	p := NewPeer(pc)
	defer p.Close()
	if x := converse(t, s, p, 1); x.final != eap.CodeSuccess {
		t.Fatalf("final %d: %v", x.final, x.serverErr)
	}
	r := s.Result()
	if r.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
		t.Fatalf("suite %s", tls.CipherSuiteName(r.CipherSuite))
	}
	if !bytes.Equal(append(bytes.Clone(r.MSK), r.EMSK...), exported) {
		t.Fatalf("keylog PRF route (SHA-384) and exporter disagree")
	}
}

// TestPRFKnownAnswer checks the TLS 1.2 PRF against vectors computed once,
// independently, with OpenSSL 3.0:
//
//	openssl kdf -keylen 128 -kdfopt digest:SHA256 -kdfopt hexsecret:<secret> \
//	  -kdfopt seed:"client EAP encryption" -kdfopt hexseed:<seed> TLS1-PRF
//
// (and digest:SHA384), secret = bytes 0..47, seed = (7*i+3) mod 256 for
// i in 0..63. The SHA-256 value was also reproduced with Python's hmac.
func TestPRFKnownAnswer(t *testing.T) {
	secret := make([]byte, 48)
	for i := range secret {
		secret[i] = byte(i)
	}
	seed := make([]byte, 64)
	for i := range seed {
		seed[i] = byte(i*7 + 3)
	}
	cases := []struct {
		name  string
		suite uint16
		want  string
	}{
		{"sha256", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "9a3abb0d28a81b84a45cdff9c025957af4c9e0f57ac538e179c96bc1ec821669fee19143e1e2b552ffd846b8b22898ede6857292a21bc31cba9bb03ba2a6e3a3bad49ee3e2524cf7f332fe9167766cdc5f35f4e42f1489180660d95b8f2b8cd3a3397b62d7a9840875387edf8da12d5ce144ce419756c9e873fa9f92e94a9bc5"},
		{"sha384", tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "cd60714b6c6493f54938a3a43e54664acfa3a84d07935b7abce182a17b76919167b78905171d4a692e21c55be5d250589fe7ddfbfbf8f3964aa211e8146e3d9ec5ea861783bd1dea98ba1c7999937c25e0fcc95ee763663e683020c25f65f1d9815763ad7aa83bb42880c663c1c700eb3fd2401576ebcb01c4dfe5c031fb0160"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := hex.EncodeToString(prf12(prfHash(c.suite), secret, labelTLS12, seed, 128))
			if got != c.want {
				t.Fatalf("PRF = %s\nwant  %s", got, c.want)
			}
		})
	}
	if fmt.Sprintf("%p", prfHash(tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)) != fmt.Sprintf("%p", sha256.New) ||
		fmt.Sprintf("%p", prfHash(tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)) != fmt.Sprintf("%p", sha512.New384) {
		t.Fatalf("prfHash picks the wrong hash")
	}
}

var errNotAllowed = errors.New("policy: device not allowed here")

func TestAuthorizeRefused(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		wantAlert tls.AlertError
	}{
		{"plain error sends access denied", errNotAllowed, AlertAccessDenied},
		{"revoked chooses its alert", fmt.Errorf("serial 42 revoked: %w", AlertCertificateRevoked), AlertCertificateRevoked},
	}
	for _, ver := range versions {
		for _, c := range cases {
			t.Run(ver.name+"/"+c.name, func(t *testing.T) {
				checkNoLeak(t)
				pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
				s := NewSession(pki.serverConfig(0, ver.v, 0), func(tls.ConnectionState) error { return c.err })
				defer s.Close()
				p := NewPeer(pki.peerConfig(ver.v, 0))
				defer p.Close()
				x := converse(t, s, p, 7)
				if x.final != eap.CodeFailure {
					t.Fatalf("final %d, want Failure", x.final)
				}
				if !errors.Is(x.serverErr, c.err) || !errors.Is(x.serverErr, ErrRejected) {
					t.Fatalf("server error %v does not wrap the Authorize error", x.serverErr)
				}
				var ae *AlertError
				if !errors.As(x.serverErr, &ae) || !ae.Sent || ae.Alert != c.wantAlert {
					t.Fatalf("server error %v: alert %+v, want sent %v", x.serverErr, ae, c.wantAlert)
				}
				if !strings.Contains(x.serverErr.Error(), c.wantAlert.Error()) {
					t.Errorf("error %q does not name the alert", x.serverErr)
				}
				// The peer really received that alert (crypto/tls decoded it).
				if x.peerErr == nil || !strings.Contains(x.peerErr.Error(), "remote error: "+c.wantAlert.Error()) {
					t.Errorf("peer error %v, want remote %s", x.peerErr, c.wantAlert)
				}
				if x.indicationSeen {
					t.Fatalf("peer received the TLS 1.3 success indication before the Failure")
				}
				if s.Result() != nil || p.Result() != nil {
					t.Errorf("result after a refusal")
				}
			})
		}
	}
}

func TestNilAuthorizeRefuses(t *testing.T) {
	checkNoLeak(t)
	pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	s := NewSession(pki.serverConfig(0, 0, 0), nil)
	defer s.Close()
	p := NewPeer(pki.peerConfig(0, 0))
	defer p.Close()
	x := converse(t, s, p, 1)
	if x.final != eap.CodeFailure || !errors.Is(x.serverErr, ErrRejected) {
		t.Fatalf("final %d err %v", x.final, x.serverErr)
	}
}

func TestFragmentation(t *testing.T) {
	cases := []struct {
		name      string
		frag      int
		padding   int
		wantSplit bool
	}{
		{"long chain, 300-byte fragments", 300, 6000, true},
		{"long chain, default 1020", 0, 6000, true},
		{"short chain, default 1020", 0, 0, true}, // the server flight still exceeds 1020 bytes
	}
	for _, ver := range versions {
		for _, c := range cases {
			t.Run(ver.name+"/"+c.name, func(t *testing.T) {
				checkNoLeak(t)
				pki := newTestPKI(t, testpki.RSA2048, testpki.ECDSAP256, c.padding)
				s := NewSession(pki.serverConfig(0, ver.v, c.frag), allowAll)
				defer s.Close()
				p := NewPeer(pki.peerConfig(ver.v, c.frag))
				defer p.Close()
				x := converse(t, s, p, 100)
				if x.final != eap.CodeSuccess {
					t.Fatalf("final %d: server %v, peer %v", x.final, x.serverErr, x.peerErr)
				}
				size := c.frag
				if size == 0 {
					size = DefaultFragmentSize
				}
				if x.serverMaxData > size || x.peerMaxData > size {
					t.Errorf("fragment of %d/%d bytes, limit %d", x.serverMaxData, x.peerMaxData, size)
				}
				if c.wantSplit && x.serverFrags < 1 {
					t.Errorf("server did not fragment")
				}
				if c.padding > 0 && x.peerFrags < 6000/size {
					t.Errorf("peer sent %d non-final fragments, want at least %d", x.peerFrags, 6000/size)
				}
				if !bytes.Equal(s.Result().MSK, p.Result().MSK) {
					t.Errorf("keys differ")
				}
			})
		}
	}
}

// TestFragmenterFlags pins the framing choice: L only on the first fragment
// of a fragmented message.
func TestFragmenterFlags(t *testing.T) {
	msg := bytes.Repeat([]byte{0xAB}, 250)
	cases := []struct {
		name  string
		size  int
		flags []byte
	}{
		{"fits", 300, []byte{0}},
		{"exact", 250, []byte{0}},
		{"three fragments", 100, []byte{flagLength | flagMore, flagMore, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := fragmenter{size: c.size}
			g.load(msg)
			var got []byte
			var flags []byte
			for g.pending() {
				td, more := g.next()
				f, err := parseFrame(td)
				if err != nil {
					t.Fatal(err)
				}
				if more != f.more() {
					t.Fatalf("more %v but flags %x", more, f.flags)
				}
				if f.flags&flagLength != 0 && f.length != len(msg) {
					t.Fatalf("length %d", f.length)
				}
				flags = append(flags, f.flags)
				got = append(got, f.data...)
			}
			if !bytes.Equal(flags, c.flags) || !bytes.Equal(got, msg) {
				t.Fatalf("flags %x, reassembled %d bytes", flags, len(got))
			}
		})
	}
}

func TestStartCostsNoGoroutine(t *testing.T) {
	checkNoLeak(t)
	pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	before, busyBefore := runtime.NumGoroutine(), busyRunners.Load()
	var ss []*Session
	for i := 0; i < 50; i++ {
		s := NewSession(pki.serverConfig(0, 0, 0), allowAll)
		s.Start(uint8(i))
		ss = append(ss, s)
	}
	if n := runtime.NumGoroutine(); n != before {
		t.Fatalf("%d goroutines after 50 Starts, %d before", n, before)
	}
	// The first TLS data starts exactly one handshake per session (on a
	// runner goroutine); Close releases it (checkNoLeak).
	p := NewPeer(pki.peerConfig(0, 0))
	defer p.Close()
	req := ss[0].Start(1)
	resp, err := p.Handle(req)
	if err != nil {
		t.Fatal(err)
	}
	for resp != nil {
		next, err := ss[0].Handle(resp)
		if err != nil {
			t.Fatal(err)
		}
		if f, _ := parseFrame(resp.Data); !f.more() {
			break // the ClientHello is in: the server answered with its flight
		}
		resp, err = p.Handle(next)
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := busyRunners.Load(); n < busyBefore+1 { // the server's, and the peer's (it runs crypto/tls the same way)
		t.Fatalf("no handshake running after the ClientHello (%d, %d before)", n, busyBefore)
	}
	for _, s := range ss {
		s.Close()
		s.Close() // idempotent
	}
}

func TestPeerAlerts(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name+"/peer does not trust the server", func(t *testing.T) {
			checkNoLeak(t)
			pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
			other := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
			s := NewSession(pki.serverConfig(0, ver.v, 0), allowAll)
			defer s.Close()
			pc := pki.peerConfig(ver.v, 0)
			pc.TLS.RootCAs = other.pool
			p := NewPeer(pc)
			defer p.Close()
			x := converse(t, s, p, 1)
			if x.final != eap.CodeFailure || !errors.Is(x.serverErr, ErrHandshake) {
				t.Fatalf("final %d, err %v", x.final, x.serverErr)
			}
			// crypto/tls's client sends bad_certificate for an unknown root.
			var ae *AlertError
			if !errors.As(x.serverErr, &ae) || ae.Sent || ae.Alert != AlertBadCertificate {
				t.Fatalf("server error %v, alert %+v", x.serverErr, ae)
			}
			if !strings.Contains(x.serverErr.Error(), "tls: bad certificate") {
				t.Errorf("error %q does not name the alert", x.serverErr)
			}
			if x.peerErr == nil || !strings.Contains(x.peerErr.Error(), "unknown authority") {
				t.Errorf("peer error %v", x.peerErr)
			}
		})
	}
	t.Run("tls12/unknown CA alert from the peer", func(t *testing.T) {
		checkNoLeak(t)
		pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
		s := NewSession(pki.serverConfig(0, tls.VersionTLS12, 0), allowAll)
		defer s.Close()
		p := NewPeer(pki.peerConfig(tls.VersionTLS12, 0))
		defer p.Close()
		req := s.Start(1)
		resp, err := p.Handle(req) // ClientHello, maybe fragmented
		for err == nil {
			req, err = s.Handle(resp)
			if err != nil {
				t.Fatal(err)
			}
			if f, _ := parseFrame(req.Data); f.more() || len(f.data) == 0 {
				resp, err = p.Handle(req)
				continue
			}
			break // the last fragment of the server's first flight
		}
		// Instead of its certificate, the peer sends unknown_ca in the clear.
		fin, err := s.Handle(tlsResp(req.Identifier, appendFrame(nil, 0, 0, plainAlert(AlertUnknownCA))))
		if fin == nil || fin.Code != eap.CodeFailure {
			t.Fatalf("got %+v, want Failure", fin)
		}
		if !strings.Contains(fmt.Sprint(err), "tls: unknown certificate authority") {
			t.Fatalf("error %v does not name the alert", err)
		}
		var ae *AlertError
		if !errors.As(err, &ae) || ae.Alert != AlertUnknownCA || ae.Sent || ae.Name() != "unknown certificate authority" {
			t.Fatalf("alert %+v", ae)
		}
	})
}

// TestServerAlertNamed: when crypto/tls itself refuses the peer, the alert
// it wrote is delivered and named, for both versions (TLS 1.3's is
// decrypted with the captured server traffic secret).
func TestServerAlertNamed(t *testing.T) {
	for _, ver := range versions {
		t.Run(ver.name+"/no client certificate", func(t *testing.T) {
			checkNoLeak(t)
			pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
			s := NewSession(pki.serverConfig(0, ver.v, 0), allowAll)
			defer s.Close()
			pc := pki.peerConfig(ver.v, 0)
			pc.TLS.Certificates = nil
			p := NewPeer(pc)
			defer p.Close()
			x := converse(t, s, p, 1)
			if x.final != eap.CodeFailure || !errors.Is(x.serverErr, ErrHandshake) {
				t.Fatalf("final %d, err %v", x.final, x.serverErr)
			}
			want := tls.AlertError(40) // TLS 1.2: crypto/tls sends handshake_failure
			if ver.v == tls.VersionTLS13 {
				want = 116 // certificate_required
			}
			var ae *AlertError
			if !errors.As(x.serverErr, &ae) || !ae.Sent || ae.Alert != want {
				t.Fatalf("server error %v, alert %+v, want sent %v", x.serverErr, ae, want)
			}
			if x.peerErr == nil || !strings.Contains(x.peerErr.Error(), want.Error()) {
				t.Errorf("peer error %v", x.peerErr)
			}
		})
	}
}

func TestTLS13AlertRecordRoundTrip(t *testing.T) {
	for _, suite := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			size := 32
			if suite == tls.TLS_AES_256_GCM_SHA384 {
				size = 48
			}
			p, err := newTLS13Protection(suite, bytes.Repeat([]byte{7}, size))
			if err != nil {
				t.Fatal(err)
			}
			rec := p.sealAlert(AlertAccessDenied)
			if a, ok := p.openAlert(rec); !ok || a != AlertAccessDenied {
				t.Fatalf("open: %v %v", a, ok)
			}
			rec[len(rec)-1] ^= 1
			if _, ok := p.openAlert(rec); ok {
				t.Fatalf("tampered record opened")
			}
			if _, err := newTLS13Protection(suite, make([]byte, 5)); err == nil {
				t.Fatalf("short secret accepted")
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	good := pki.serverConfig(0, 0, 0)
	cases := []struct {
		name string
		cfg  *Config
		ok   bool
	}{
		{"defaults", good, true},
		{"nil", nil, false},
		{"no certificate", &Config{}, false},
		{"TLS 1.1", &Config{Certificates: good.Certificates, MinVersion: tls.VersionTLS11}, false},
		{"min above max", &Config{Certificates: good.Certificates, MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}, false},
		{"tiny fragments", &Config{Certificates: good.Certificates, FragmentSize: 10}, false},
		{"TLS 1.3 only", &Config{Certificates: good.Certificates, MinVersion: tls.VersionTLS13}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.cfg.Validate(); (err == nil) != c.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, c.ok)
			}
		})
	}
}

func TestVersionPolicy(t *testing.T) {
	cases := []struct {
		name       string
		serverMin  uint16
		serverMax  uint16
		peerMax    uint16
		wantResult uint16
	}{
		{"default negotiates 1.3", 0, 0, 0, tls.VersionTLS13},
		{"server capped at 1.2", 0, tls.VersionTLS12, 0, tls.VersionTLS12},
		{"peer capped at 1.2", 0, 0, tls.VersionTLS12, tls.VersionTLS12},
		{"below 1.2 is clamped", tls.VersionTLS10, tls.VersionTLS12, 0, tls.VersionTLS12},
		{"server 1.3 only, peer 1.2 only", tls.VersionTLS13, 0, tls.VersionTLS12, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkNoLeak(t)
			pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
			s := NewSession(pki.serverConfig(c.serverMin, c.serverMax, 0), allowAll)
			defer s.Close()
			p := NewPeer(pki.peerConfig(c.peerMax, 0))
			defer p.Close()
			x := converse(t, s, p, 1)
			if c.wantResult == 0 {
				if x.final != eap.CodeFailure || !errors.Is(x.serverErr, ErrHandshake) {
					t.Fatalf("final %d err %v, want a handshake failure", x.final, x.serverErr)
				}
				return
			}
			if x.final != eap.CodeSuccess || s.Result().Version != c.wantResult {
				t.Fatalf("final %d err %v", x.final, x.serverErr)
			}
		})
	}
}

// TestTLS13ChaCha20 covers the ChaCha20-Poly1305 suite, which crypto/tls
// only picks when AES-GCM has no hardware support: the test re-runs itself
// with GODEBUG=cpu.aes=off (both sides then prefer ChaCha20). It checks a
// success and a refusal, whose alert nacd protects itself.
func TestTLS13ChaCha20(t *testing.T) {
	if os.Getenv("EAPTLS_CHACHA_CHILD") != "1" {
		checkNoLeak(t)
		cmd := exec.Command(os.Args[0], "-test.run=^TestTLS13ChaCha20$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "EAPTLS_CHACHA_CHILD=1", "GODEBUG=cpu.aes=off")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "chacha20 checked") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	for _, refuse := range []bool{false, true} {
		s := NewSession(pki.serverConfig(0, 0, 0), func(tls.ConnectionState) error {
			if refuse {
				return errNotAllowed
			}
			return nil
		})
		p := NewPeer(pki.peerConfig(0, 0))
		x := converse(t, s, p, 1)
		var suite uint16
		if refuse {
			if x.final != eap.CodeFailure || !errors.Is(x.serverErr, errNotAllowed) ||
				x.peerErr == nil || !strings.Contains(x.peerErr.Error(), "remote error: tls: access denied") {
				t.Fatalf("refusal: final %d, server %v, peer %v", x.final, x.serverErr, x.peerErr)
			}
		} else {
			if x.final != eap.CodeSuccess {
				t.Fatalf("final %d: %v", x.final, x.serverErr)
			}
			suite = s.Result().CipherSuite
			if suite != tls.TLS_CHACHA20_POLY1305_SHA256 {
				t.Skipf("suite %s: GODEBUG=cpu.aes=off had no effect here", tls.CipherSuiteName(suite))
			}
		}
		s.Close()
		p.Close()
	}
	t.Log("chacha20 checked")
}

func handshakeRecord(msgType byte, body []byte) []byte {
	msg := append([]byte{msgType, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	return append([]byte{recordHandshake, 3, 3, byte(len(msg) >> 8), byte(len(msg))}, msg...)
}

func serverHelloBody(random []byte) []byte {
	return append(append([]byte{3, 3}, random...), 0, 0x13, 0x01, 0) // session id, suite, compression
}

// TestHelloScanner: the ServerHello random is found across records and
// feeds, a HelloRetryRequest is skipped, anything else before a ServerHello
// gives up (and TLS 1.2 key derivation then fails closed).
func TestHelloScanner(t *testing.T) {
	random := bytes.Repeat([]byte{0x5A}, 32)
	sh := handshakeRecord(handshakeServerHelo, serverHelloBody(random))
	hrr := handshakeRecord(handshakeServerHelo, serverHelloBody(helloRetryRandom))
	ccs := []byte{recordCCS, 3, 3, 0, 1, 1}
	cases := []struct {
		name  string
		feeds [][]byte
		want  []byte
	}{
		{"one record", [][]byte{sh}, random},
		{"split across feeds", [][]byte{sh[:3], sh[3:20], sh[20:]}, random},
		{"after HelloRetryRequest and CCS", [][]byte{append(bytes.Clone(hrr), ccs...), sh}, random},
		{"handshake message split over records", [][]byte{
			{recordHandshake, 3, 3, 0, 10}, sh[5:15], {recordHandshake, 3, 3, byte((len(sh) - 15) >> 8), byte(len(sh) - 15)}, sh[15:]}, random},
		{"alert first", [][]byte{plainAlert(AlertAccessDenied), sh}, nil},
		{"only a HelloRetryRequest", [][]byte{hrr}, nil},
		{"truncated", [][]byte{sh[:30]}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var h helloScanner
			for _, f := range c.feeds {
				h.feed(f)
			}
			if !bytes.Equal(h.random, c.want) {
				t.Fatalf("random %x, want %x", h.random, c.want)
			}
		})
	}
}

// TestAbandonedSessionReleased: a mid-handshake session dropped without
// Close does not keep its goroutine once collected.
func TestAbandonedSessionReleased(t *testing.T) {
	pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	ch := realClientHello(t, pki)
	runtime.GC()
	base := busyRunners.Load()
	func() {
		s := NewSession(pki.serverConfig(0, 0, 0), allowAll)
		s.Start(1)
		if req, err := s.Handle(tlsResp(1, ch)); err != nil || req.Code != eap.CodeRequest {
			t.Fatalf("ClientHello: %v", err)
		}
		if busyRunners.Load() <= base {
			t.Fatalf("no handshake running")
		}
	}()
	for i := 0; i < 200; i++ {
		runtime.GC()
		if busyRunners.Load() <= base {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("handshake of an abandoned session still running (%d, base %d)", busyRunners.Load(), base)
}
