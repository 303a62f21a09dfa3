package eaptls

import (
	"crypto/tls"
	"crypto/x509"
	"runtime"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/radius/eap"
)

// testPKI is one generated PKI: a root, an intermediate issuing devices, a
// server certificate.
type testPKI struct {
	root   *testpki.CA
	inter  *testpki.CA
	server *testpki.Leaf
	client *testpki.Leaf
	pool   *x509.CertPool
}

func newTestPKI(tb testing.TB, serverKT, clientKT testpki.KeyType, padding int) *testPKI {
	tb.Helper()
	root := testpki.NewRoot(tb, "nacd test root")
	inter := root.NewIntermediate(tb, "nacd test devices")
	p := &testPKI{
		root:   root,
		inter:  inter,
		server: root.IssueServer(tb, "radius.example.test", serverKT),
		client: inter.IssueDevice(tb, testpki.Device{CommonName: "laptop-1", Email: "a@example.test", KeyType: clientKT, Padding: padding}),
		pool:   x509.NewCertPool(),
	}
	p.pool.AddCert(root.Cert)
	return p
}

func (p *testPKI) serverConfig(minV, maxV uint16, frag int) *Config {
	return &Config{
		Certificates: []tls.Certificate{p.server.TLSCertificate()},
		MinVersion:   minV, MaxVersion: maxV,
		FragmentSize: frag,
	}
}

func (p *testPKI) peerConfig(maxV uint16, frag int) PeerConfig {
	return PeerConfig{
		TLS: &tls.Config{
			Certificates: []tls.Certificate{p.client.TLSCertificate()},
			RootCAs:      p.pool,
			ServerName:   "radius.example.test",
			MaxVersion:   maxV,
		},
		FragmentSize: frag,
		Identity:     "anonymous@example.test",
	}
}

// exchange is what one Session<->Peer conversation did.
type exchange struct {
	final          eap.Code // Success or Failure sent by the server
	serverErr      error
	peerErr        error
	rounds         int
	serverFrags    int // server requests with M set
	peerFrags      int // peer responses with M set
	serverMaxData  int // largest TLS data in one server request
	peerMaxData    int
	serverLFlags   int // server requests with L set
	indicationSeen bool
}

// converse runs a full conversation starting with id. It checks the
// identifier rules on every packet.
func converse(tb testing.TB, s *Session, p *Peer, id uint8) exchange {
	tb.Helper()
	var x exchange
	req := s.Start(id)
	for x.rounds = 0; x.rounds < 1000; x.rounds++ {
		resp, perr := p.Handle(req)
		if req.Code == eap.CodeSuccess || req.Code == eap.CodeFailure {
			x.final, x.peerErr = req.Code, perr
			x.indicationSeen = p.GotSuccessIndication()
			return x
		}
		if perr != nil {
			tb.Fatalf("peer: %v", perr)
		}
		if resp.Identifier != req.Identifier {
			tb.Fatalf("peer answered request %d with identifier %d", req.Identifier, resp.Identifier)
		}
		if f, err := parseFrame(resp.Data); err == nil && resp.Type == eap.TypeTLS {
			if f.more() {
				x.peerFrags++
			}
			x.peerMaxData = max(x.peerMaxData, len(f.data))
		}
		next, serr := s.Handle(resp)
		if next == nil {
			tb.Fatalf("server returned no packet (err %v)", serr)
		}
		switch next.Code {
		case eap.CodeRequest:
			if serr != nil {
				tb.Fatalf("server returned a request and an error: %v", serr)
			}
			if next.Identifier != resp.Identifier+1 {
				tb.Fatalf("request identifier %d after response %d", next.Identifier, resp.Identifier)
			}
			f, err := parseFrame(next.Data)
			if err != nil {
				tb.Fatalf("server sent a bad frame: %v", err)
			}
			if f.more() {
				x.serverFrags++
			}
			if f.flags&flagLength != 0 {
				x.serverLFlags++
			}
			x.serverMaxData = max(x.serverMaxData, len(f.data))
		case eap.CodeSuccess, eap.CodeFailure:
			if next.Identifier != resp.Identifier {
				tb.Fatalf("%d identifier %d after response %d", next.Code, next.Identifier, resp.Identifier)
			}
			x.serverErr = serr
		}
		req = next
	}
	tb.Fatalf("conversation did not end in %d rounds", x.rounds)
	return x
}

// otherGoroutines is the number of goroutines that are not handshake
// runners (idle runners outlive a test by design, see runner.go).
func otherGoroutines() int { return runtime.NumGoroutine() - int(runners.Load()) }

// checkNoLeak fails the test if goroutines started during it, or handshakes
// it started, outlive its cleanups (register it first: cleanups run
// last-in first-out).
func checkNoLeak(t *testing.T) {
	t.Helper()
	base, baseBusy := otherGoroutines(), busyRunners.Load()
	t.Cleanup(func() {
		for i := 0; i < 200; i++ {
			if otherGoroutines() <= base && busyRunners.Load() <= baseBusy {
				return
			}
			time.Sleep(10 * time.Millisecond) // goroutines exit just after signalling done
		}
		buf := make([]byte, 1<<16)
		t.Errorf("goroutine leak: %d other goroutines (%d at start), %d handshakes running (%d at start)\n%s",
			otherGoroutines(), base, busyRunners.Load(), baseBusy, buf[:runtime.Stack(buf, true)])
	})
}

func tlsResp(id uint8, typeData []byte) *eap.Packet {
	return &eap.Packet{Code: eap.CodeResponse, Identifier: id, Type: eap.TypeTLS, Data: typeData}
}

func allowAll(tls.ConnectionState) error { return nil }
