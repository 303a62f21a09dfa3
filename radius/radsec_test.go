package radius

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"layeh.com/radius"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius/eap"
)

const (
	radsecNASName   = "wlc01.wallfields.test"
	radsecNASIP     = "127.0.0.1" // client "wlc-wallfields", RadSec
	radsecUDPOnlyIP = "127.0.0.3" // client "udp-only", no RadSec
)

var radsecSecret = []byte(RadSecSecret)

// radsecEnv is a Server with RadSec on a loopback TCP listener.
type radsecEnv struct {
	srv      *Server
	addr     string
	reg      *prometheus.Registry
	nasCA    *testpki.CA
	nas      *testpki.Leaf // trusted, names the client
	opLog    *observer.ObservedLogs
	clients  []Client
	verifier CertificateVerifier
}

type radsecOptions struct {
	cfg      RadSecConfig
	verifier CertificateVerifier
	fake     *fakeFactory
}

func newRadSecEnv(tb testing.TB, opt radsecOptions) *radsecEnv {
	tb.Helper()
	e := &radsecEnv{reg: prometheus.NewRegistry(), nasCA: testpki.NewRoot(tb, "nas ca")}
	e.nas = e.nasCA.IssueDevice(tb, testpki.Device{CommonName: radsecNASName})
	pool := x509.NewCertPool()
	pool.AddCert(e.nasCA.Cert)
	cfg := opt.cfg
	cfg.Certificates = testEAPTLSConfig(tb).Certificates
	cfg.ClientCAs = pool
	if opt.verifier == nil {
		opt.verifier = &fixedVerifier{id: staffIdentity()}
	}
	e.verifier = opt.verifier
	e.clients = []Client{
		{Name: "wlc-wallfields", Networks: []netip.Prefix{netip.MustParsePrefix(radsecNASIP + "/32")}, Secret: testSecret, Site: testSite,
			RadSec: true, RadSecIdentities: []string{radsecNASName}},
		{Name: "udp-only", Networks: []netip.Prefix{netip.MustParsePrefix(radsecUDPOnlyIP + "/32")}, Secret: testSecret, Site: testSite},
	}
	opCore, opLogs := observer.New(zapcore.DebugLevel)
	e.opLog = opLogs
	srv, err := NewServer(Config{
		Clients:    e.clients,
		EAPTLS:     testEAPTLSConfig(tb),
		Verifier:   opt.verifier,
		Policy:     testPolicy(tb),
		RadSec:     &cfg,
		Logger:     zap.New(opCore),
		Registerer: e.reg,
	})
	if err != nil {
		tb.Fatalf("NewServer: %v", err)
	}
	if opt.fake != nil {
		srv.access.newSession = opt.fake.new
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e.srv, e.addr = srv, ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.ServeRadSec(ln) }()
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			tb.Errorf("ServeRadSec returned %v after Close", err)
		}
	})
	return e
}

// dialTLS connects from the loopback address from with the given client
// certificate (nil: none) and completes the handshake.
func (e *radsecEnv) dialTLS(tb testing.TB, from string, cert *testpki.Leaf) (*tls.Conn, error) {
	tb.Helper()
	raw := e.dialTCP(tb, from)
	roots := x509.NewCertPool()
	roots.AddCert(serverRoot.Cert)
	cfg := &tls.Config{RootCAs: roots, ServerName: "radius.nacd.test", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.TLSCertificate()}
	}
	c := tls.Client(raw, cfg)
	tb.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return c, err
	}
	// A TLS 1.3 server rejects a client certificate after the client's
	// handshake completes: read to see whether the connection survives.
	return c, nil
}

func (e *radsecEnv) dialTCP(tb testing.TB, from string) net.Conn {
	tb.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	raw, err := d.Dial("tcp", e.addr)
	if err != nil {
		tb.Fatalf("dial from %s: %v", from, err)
	}
	tb.Cleanup(func() { raw.Close() })
	return raw
}

// mustConnect opens an authenticated RadSec connection as the NAS.
func (e *radsecEnv) mustConnect(tb testing.TB) *tls.Conn {
	tb.Helper()
	c, err := e.dialTLS(tb, radsecNASIP, e.nas)
	if err != nil {
		tb.Fatalf("handshake: %v", err)
	}
	e.waitResult(tb, RadSecAccepted, 1)
	return c
}

func (e *radsecEnv) result(r string) float64 {
	return testutil.ToFloat64(e.srv.radsec.results.WithLabelValues(r))
}

func (e *radsecEnv) closed(cause string) float64 {
	return testutil.ToFloat64(e.srv.radsec.closes.WithLabelValues(cause))
}

func (e *radsecEnv) waitResult(tb testing.TB, r string, atLeast float64) {
	tb.Helper()
	waitFor(tb, "radsec_connections_total{result="+r+"}", func() bool { return e.result(r) >= atLeast })
}

// streamExchange writes b and reads one length-framed reply.
func streamExchange(tb testing.TB, c net.Conn, b []byte) []byte {
	tb.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(b); err != nil {
		tb.Fatalf("write: %v", err)
	}
	resp, err := readFramed(c)
	if err != nil {
		tb.Fatalf("read reply: %v", err)
	}
	return resp
}

func readFramed(c net.Conn) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[2:4]))
	if n < 20 {
		return nil, errors.New("short length")
	}
	b := make([]byte, n)
	copy(b, hdr[:])
	_, err := io.ReadFull(c, b[4:])
	return b, err
}

// assertClosed requires the server to close c (EOF or a TLS alert).
func assertClosed(tb testing.TB, c net.Conn) {
	tb.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			tb.Fatal("connection still open")
		}
		return
	}
}

// radsecRequest signs an Access-Request with the RadSec secret.
func radsecRequest(tb testing.TB, id byte, p *eap.Packet, state []byte) []byte {
	tb.Helper()
	attrs := []tattr{
		{attrUserName, []byte("anonymous@herts.example")},
		{attrCallingStationID, []byte("02-00-00-00-00-01")},
		{attrCalledStationID, []byte("0A-0B-0C-0D-0E-0F:Herts-Staff")},
	}
	attrs = append(attrs, eapAttrs(tb, p)...)
	if state != nil {
		attrs = append(attrs, tattr{attrState, state})
	}
	return signMA(rawPacket(byte(radius.CodeAccessRequest), id, randomAuth(tb), attrs...), radsecSecret)
}

// checkRadSecResponse is checkResponse with the RadSec secret.
func checkRadSecResponse(tb testing.TB, resp, req []byte) *radius.Packet {
	tb.Helper()
	p, err := radius.Parse(resp, radsecSecret)
	if err != nil {
		tb.Fatalf("reply does not parse: %v", err)
	}
	if resp[1] != req[1] || !radius.IsAuthenticResponse(resp, req, radsecSecret) {
		tb.Fatalf("reply id %d for request %d, or bad Response Authenticator", resp[1], req[1])
	}
	if resp[20] != attrMessageAuthenticator {
		tb.Fatal("first attribute is not Message-Authenticator")
	}
	return p
}

// TestRadSecEAPTLS: a real EAP-TLS conversation over RadSec takes the UDP
// request path: accepted on the policy's VLAN, MPPE keys encrypted with
// the "radsec" secret; a Status-Server keepalive is answered; a revoked
// device is rejected the same way as over UDP.
func TestRadSecEAPTLS(t *testing.T) {
	pki := newDevicePKI(t)
	e := newRadSecEnv(t, radsecOptions{verifier: pki.verifier})
	c := e.mustConnect(t)

	ss := signMA(rawPacket(byte(radius.CodeStatusServer), 7, randomAuth(t)), radsecSecret)
	if p := checkRadSecResponse(t, streamExchange(t, c, ss), ss); p.Code != radius.CodeAccessAccept {
		t.Fatalf("Status-Server answered %v", p.Code)
	}

	staff := pki.issuing.IssueDevice(t, testpki.Device{CommonName: "laptop-9", Email: "fay@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff})
	revoked := pki.issuing.IssueDevice(t, testpki.Device{CommonName: "lost", Email: "gus@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff})
	pki.verifier.mu.Lock()
	pki.verifier.revoked[revoked.Cert.SerialNumber.Text(16)] = true
	pki.verifier.mu.Unlock()
	tests := []struct {
		name   string
		leaf   *testpki.Leaf
		tlsV   uint16
		accept bool
	}{
		{"staff laptop TLS 1.3", staff, tls.VersionTLS13, true},
		{"staff laptop TLS 1.2", staff, tls.VersionTLS12, true},
		{"revoked laptop", revoked, tls.VersionTLS13, false},
	}
	id := byte(10)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			peer := newPeer(t, tt.leaf, tt.tlsV)
			resp, err := peer.Handle(&eap.Packet{Code: eap.CodeRequest, Type: eap.TypeIdentity})
			if err != nil {
				t.Fatal(err)
			}
			var state, req []byte
			var p *radius.Packet
			for round := 0; ; round++ {
				if round > 64 {
					t.Fatal("no decision after 64 round trips")
				}
				id++
				req = radsecRequest(t, id, resp, state)
				p = checkRadSecResponse(t, streamExchange(t, c, req), req)
				if p.Code != radius.CodeAccessChallenge {
					break
				}
				state = p.Get(attrState)
				if resp, err = peer.Handle(replyEAP(t, p)); err != nil {
					t.Fatalf("peer: %v", err)
				}
			}
			if !tt.accept {
				if p.Code != radius.CodeAccessReject {
					t.Fatalf("code %v, want Access-Reject", p.Code)
				}
				return
			}
			if p.Code != radius.CodeAccessAccept {
				t.Fatalf("code %v, want Access-Accept", p.Code)
			}
			if _, err := peer.Handle(replyEAP(t, p)); err != nil {
				t.Fatalf("peer on EAP-Success: %v", err)
			}
			if got := string(p.Get(attrTunnelPrivateGroupID)); got != itoa(testVLANGen) {
				t.Fatalf("VLAN %q, want %d", got, testVLANGen)
			}
			msk := peer.Result().MSK
			var reqAuth [16]byte
			copy(reqAuth[:], req[4:20])
			keys := map[byte][]byte{}
			for _, v := range attrsOf(p, attrVendorSpecific) {
				if binary.BigEndian.Uint32(v) == 311 {
					keys[v[4]] = rfc2548Decrypt(t, v[6:], radsecSecret, reqAuth)
				}
			}
			if !bytes.Equal(keys[msMPPERecvKey], msk[:32]) || !bytes.Equal(keys[msMPPESendKey], msk[32:64]) {
				t.Fatal("MPPE keys do not decrypt with the radsec secret to the peer's MSK halves")
			}
		})
	}
	if got := testutil.ToFloat64(e.srv.metrics.requests.WithLabelValues("status_server", "wlc-wallfields")); got != 1 {
		t.Fatalf("requests{status_server,wlc-wallfields} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.srv.radsec.conns); got != 1 {
		t.Fatalf("nacd_radius_radsec_connections = %v, want 1", got)
	}
}

// TestRadSecRefused: connections that must not carry RADIUS are closed and
// counted by result.
func TestRadSecRefused(t *testing.T) {
	e := newRadSecEnv(t, radsecOptions{fake: &fakeFactory{msk: testMSK()}})
	stranger := testpki.NewRoot(t, "untrusted ca").IssueDevice(t, testpki.Device{CommonName: radsecNASName})
	wrongName := e.nasCA.IssueDevice(t, testpki.Device{CommonName: "wlc99.elsewhere.test"})
	serverEKU := e.nasCA.IssueDevice(t, testpki.Device{CommonName: radsecNASName, EKU: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	tests := []struct {
		name   string
		from   string
		cert   *testpki.Leaf
		result string
	}{
		{"certificate from an untrusted CA", radsecNASIP, stranger, RadSecHandshakeFailed},
		{"no client certificate", radsecNASIP, nil, RadSecHandshakeFailed},
		{"certificate without clientAuth", radsecNASIP, serverEKU, RadSecHandshakeFailed},
		{"trusted certificate naming another NAS", radsecNASIP, wrongName, RadSecIdentityMismatch},
		{"client without radsec", radsecUDPOnlyIP, e.nas, RadSecUnknownClient},
		{"unknown source address", unknownIP, e.nas, RadSecUnknownClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.result(tt.result)
			c, err := e.dialTLS(t, tt.from, tt.cert)
			if err == nil {
				// TLS 1.3: the client finishes first; the refusal comes next.
				ss := signMA(rawPacket(byte(radius.CodeStatusServer), 1, randomAuth(t)), radsecSecret)
				c.Write(ss)
				assertClosed(t, c)
			}
			e.waitResult(t, tt.result, before+1)
			if got := e.result(RadSecAccepted); got != 0 {
				t.Fatalf("accepted = %v", got)
			}
		})
	}
	if got := testutil.ToFloat64(e.srv.radsec.conns); got != 0 {
		t.Fatalf("connections gauge = %v, want 0", got)
	}
}

// TestRadSecFraming: a Length field outside 20..4096 or a truncated packet
// closes the connection; it is counted as framing and malformed.
func TestRadSecFraming(t *testing.T) {
	valid := signMA(rawPacket(byte(radius.CodeStatusServer), 1, randomAuth(t)), radsecSecret)
	withLength := func(n int) []byte {
		b := append([]byte(nil), valid...)
		binary.BigEndian.PutUint16(b[2:4], uint16(n))
		return b
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"length 0", withLength(0)},
		{"length 19", withLength(19)},
		{"length 4097", withLength(4097)},
		{"length 65535", withLength(65535)},
		{"partial header then EOF", valid[:3]},
		{"truncated body then EOF", withLength(200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newRadSecEnv(t, radsecOptions{fake: &fakeFactory{msk: testMSK()}})
			c := e.mustConnect(t)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(tt.b); err != nil {
				t.Fatal(err)
			}
			if tt.name == "partial header then EOF" || tt.name == "truncated body then EOF" {
				c.CloseWrite()
			}
			assertClosed(t, c)
			waitFor(t, "closed{framing}", func() bool { return e.closed(RadSecClosedFraming) == 1 })
			if got := testutil.ToFloat64(e.srv.metrics.dropped.WithLabelValues(DropMalformed)); got != 1 {
				t.Fatalf("dropped{malformed} = %v, want 1", got)
			}
			if got := testutil.ToFloat64(e.srv.metrics.responses.WithLabelValues("access_accept")); got != 0 {
				t.Fatalf("a reply was sent: %v", got)
			}
		})
	}
}

// TestRadSecMaxLengthServed: a packet of exactly 4096 bytes is served.
func TestRadSecMaxLengthServed(t *testing.T) {
	e := newRadSecEnv(t, radsecOptions{fake: &fakeFactory{msk: testMSK()}})
	c := e.mustConnect(t)
	// Status-Server padded with Proxy-State... to exactly 4096 bytes:
	// 20 header + 18 Message-Authenticator + 16 attributes.
	var attrs []tattr
	left := RadSecMaxPacket - 20 - 18
	for left > 0 {
		n := min(left, 255)
		if left-n > 0 && left-n < 3 {
			n -= 3
		}
		attrs = append(attrs, tattr{attrUserName + 17, make([]byte, n-2)}) // type 18 Reply-Message
		left -= n
	}
	req := signMA(rawPacket(byte(radius.CodeStatusServer), 3, randomAuth(t), attrs...), radsecSecret)
	if len(req) != RadSecMaxPacket {
		t.Fatalf("test packet is %d bytes", len(req))
	}
	if p := checkRadSecResponse(t, streamExchange(t, c, req), req); p.Code != radius.CodeAccessAccept {
		t.Fatalf("code %v", p.Code)
	}
}

// TestRadSecIdleTimeout: a connection with no request within the idle
// timeout is closed and counted; a request before it keeps it open.
func TestRadSecIdleTimeout(t *testing.T) {
	e := newRadSecEnv(t, radsecOptions{cfg: RadSecConfig{IdleTimeout: 300 * time.Millisecond}, fake: &fakeFactory{msk: testMSK()}})
	c := e.mustConnect(t)
	ss := signMA(rawPacket(byte(radius.CodeStatusServer), 1, randomAuth(t)), radsecSecret)
	checkRadSecResponse(t, streamExchange(t, c, ss), ss)
	assertClosed(t, c)
	waitFor(t, "closed{idle}", func() bool { return e.closed(RadSecClosedIdle) == 1 })
	waitFor(t, "the connections gauge to drop", func() bool { return testutil.ToFloat64(e.srv.radsec.conns) == 0 })
}

// TestRadSecConnectionLimits: past the per-client or global limit a new
// connection is refused (counted as limit); closing one frees a slot.
func TestRadSecConnectionLimits(t *testing.T) {
	tests := []struct {
		name string
		cfg  RadSecConfig
	}{
		{"per client", RadSecConfig{MaxConnectionsPerClient: 2}},
		{"global", RadSecConfig{MaxConnections: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newRadSecEnv(t, radsecOptions{cfg: tt.cfg, fake: &fakeFactory{msk: testMSK()}})
			c1 := e.mustConnect(t)
			e.mustConnect(t)
			e.waitResult(t, RadSecAccepted, 2)
			c3, err := e.dialTLS(t, radsecNASIP, e.nas)
			if err == nil {
				assertClosed(t, c3)
			}
			e.waitResult(t, RadSecLimit, 1)
			c1.Close()
			waitFor(t, "a slot to free", func() bool { return testutil.ToFloat64(e.srv.radsec.conns) == 1 })
			c4 := e.mustConnect(t)
			ss := signMA(rawPacket(byte(radius.CodeStatusServer), 4, randomAuth(t)), radsecSecret)
			checkRadSecResponse(t, streamExchange(t, c4, ss), ss)
			if got := e.result(RadSecAccepted); got != 3 {
				t.Fatalf("accepted = %v, want 3", got)
			}
		})
	}
}

// TestRadSecReload: a reload that drops the client's RadSec flag closes its
// open connection at the next request; a reload that keeps it does not;
// an invalid reload changes nothing.
func TestRadSecReload(t *testing.T) {
	e := newRadSecEnv(t, radsecOptions{fake: &fakeFactory{msk: testMSK()}})
	c := e.mustConnect(t)
	ss := func(id byte) []byte {
		return signMA(rawPacket(byte(radius.CodeStatusServer), id, randomAuth(t)), radsecSecret)
	}

	bad := append([]Client(nil), e.clients...)
	bad[0].RadSecIdentities = nil
	if err := e.srv.Reload(Reload{Clients: bad, Policy: testPolicy(t)}); err == nil {
		t.Fatal("RadSec client without identity accepted")
	}
	if err := e.srv.Reload(Reload{Clients: e.clients, Policy: nil}); err == nil {
		t.Fatal("nil policy accepted")
	}
	// Same clients (new table): the connection stays.
	if err := e.srv.Reload(Reload{Clients: e.clients, Policy: testPolicy(t)}); err != nil {
		t.Fatal(err)
	}
	req := ss(1)
	checkRadSecResponse(t, streamExchange(t, c, req), req)

	off := append([]Client(nil), e.clients...)
	off[0].RadSec = false
	if err := e.srv.Reload(Reload{Clients: off, Policy: testPolicy(t)}); err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(ss(2))
	assertClosed(t, c)
	waitFor(t, "closed{client}", func() bool { return e.closed(RadSecClosedClient) == 1 })
	if _, err := e.dialTLS(t, radsecNASIP, e.nas); err == nil {
		e.waitResult(t, RadSecUnknownClient, 1)
	}
}

// BenchmarkRadSecStatusServer: one Status-Server round trip on an open
// RadSec connection (framing, verification, response).
func BenchmarkRadSecStatusServer(b *testing.B) {
	e := newRadSecEnv(b, radsecOptions{fake: &fakeFactory{msk: testMSK()}})
	c := e.mustConnect(b)
	req := signMA(rawPacket(byte(radius.CodeStatusServer), 1, randomAuth(b)), radsecSecret)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req[1] = byte(i)
		copy(req[4:20], []byte{byte(i), byte(i >> 8), byte(i >> 16), byte(i >> 24)})
		req = signMA(req[:len(req)-18], radsecSecret)
		streamExchange(b, c, req)
	}
}

// FuzzRadSecFrame: readFrame never panics, never returns a packet outside
// 20..4096 bytes or one whose Length field differs from its size, and never
// reads past what it returns.
func FuzzRadSecFrame(f *testing.F) {
	valid := rawPacket(byte(radius.CodeStatusServer), 1, [16]byte{}, tattr{attrUserName, []byte("x")})
	f.Add(valid)
	f.Add(append(append([]byte(nil), valid...), valid...))
	f.Add([]byte{1, 2, 0x10, 0x01})
	f.Add([]byte{1, 2, 0, 19, 0})
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		consumed := 0
		for {
			b, err := readFrame(r, nil, nil)
			if err != nil {
				var fe *frameError
				if !errors.As(err, &fe) {
					t.Fatalf("error %v is not a frameError", err)
				}
				return
			}
			if len(b) < 20 || len(b) > RadSecMaxPacket || int(binary.BigEndian.Uint16(b[2:4])) != len(b) {
				t.Fatalf("frame of %d bytes with length field %d", len(b), binary.BigEndian.Uint16(b[2:4]))
			}
			consumed += len(b)
			if consumed != len(data)-r.Len() {
				t.Fatalf("read %d bytes, returned %d", len(data)-r.Len(), consumed)
			}
		}
	})
}

// TestReadFrameCauses: each way a stream can end maps to its close cause.
func TestReadFrameCauses(t *testing.T) {
	valid := rawPacket(byte(radius.CodeStatusServer), 1, [16]byte{})
	long := append([]byte(nil), valid...)
	binary.BigEndian.PutUint16(long[2:4], 4097)
	tests := []struct {
		name  string
		data  []byte
		cause string
	}{
		{"clean end", nil, RadSecClosedPeer},
		{"partial header", valid[:2], RadSecClosedFraming},
		{"length 4097", long, RadSecClosedFraming},
		{"truncated packet", valid[:10], RadSecClosedFraming},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readFrame(bytes.NewReader(tt.data), nil, nil)
			var fe *frameError
			if !errors.As(err, &fe) || fe.cause != tt.cause {
				t.Fatalf("err %v, want cause %s", err, tt.cause)
			}
		})
	}
	if b, err := readFrame(bytes.NewReader(valid), nil, nil); err != nil || !bytes.Equal(b, valid) {
		t.Fatalf("valid frame: %v", err)
	}
}

// TestRadSecHandshakesCountAgainstLimit: connections still in their TLS
// handshake count against max_connections, so a flood of unfinished
// handshakes cannot exceed it; the handshake timeout frees the slot.
func TestRadSecHandshakesCountAgainstLimit(t *testing.T) {
	e := newRadSecEnv(t, radsecOptions{cfg: RadSecConfig{MaxConnections: 1, HandshakeTimeout: 500 * time.Millisecond}, fake: &fakeFactory{msk: testMSK()}})
	stalled := e.dialTCP(t, radsecNASIP) // never sends a ClientHello
	waitFor(t, "the stalled handshake to take the slot", func() bool {
		e.srv.radsec.mu.Lock()
		defer e.srv.radsec.mu.Unlock()
		return len(e.srv.radsec.handshaking) == 1
	})
	if c, err := e.dialTLS(t, radsecNASIP, e.nas); err == nil {
		assertClosed(t, c)
	}
	e.waitResult(t, RadSecLimit, 1)
	assertClosed(t, stalled) // the handshake timeout ends it
	e.waitResult(t, RadSecHandshakeFailed, 1)
	waitFor(t, "the slot to be freed", func() bool {
		e.srv.radsec.mu.Lock()
		defer e.srv.radsec.mu.Unlock()
		return len(e.srv.radsec.handshaking) == 0
	})
	e.mustConnect(t)
}

// TestRadSecCloseEndsHandshakes: Server.Close ends connections that are
// still in their TLS handshake, without waiting for the handshake timeout.
func TestRadSecCloseEndsHandshakes(t *testing.T) {
	e := newRadSecEnv(t, radsecOptions{cfg: RadSecConfig{HandshakeTimeout: time.Hour}, fake: &fakeFactory{msk: testMSK()}})
	stalled := e.dialTCP(t, radsecNASIP)
	waitFor(t, "the stalled handshake", func() bool {
		e.srv.radsec.mu.Lock()
		defer e.srv.radsec.mu.Unlock()
		return len(e.srv.radsec.handshaking) == 1
	})
	closed := make(chan error, 1)
	go func() { closed <- e.srv.Close() }()
	assertClosed(t, stalled)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// TestRadSecNoResumption: a controller reconnecting with a session cache
// still gets a full handshake (its certificate checked against the current
// CA bundle every time).
func TestRadSecNoResumption(t *testing.T) {
	e := newRadSecEnv(t, radsecOptions{fake: &fakeFactory{msk: testMSK()}})
	roots := x509.NewCertPool()
	roots.AddCert(serverRoot.Cert)
	cache := tls.NewLRUClientSessionCache(4)
	for i := range 2 {
		raw := e.dialTCP(t, radsecNASIP)
		c := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: "radius.nacd.test", Certificates: []tls.Certificate{e.nas.TLSCertificate()}, ClientSessionCache: cache})
		c.SetDeadline(time.Now().Add(10 * time.Second))
		ss := signMA(rawPacket(byte(radius.CodeStatusServer), byte(i), randomAuth(t)), radsecSecret)
		checkRadSecResponse(t, streamExchange(t, c, ss), ss) // also reads any ticket
		if c.ConnectionState().DidResume {
			t.Fatalf("connection %d resumed a TLS session", i)
		}
		c.Close()
	}
	e.waitResult(t, RadSecAccepted, 2)
}
