package radius

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
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
	"github.com/herts-council/nacd/radius/eaptls"
)

var testSecret = []byte("s3cret-for-testing")

const (
	testSite       = "wallfields"
	testVLANGen    = 20
	testVLANGuest  = 30
	testSessionMax = 8 * time.Hour
)

// testPolicy: staff -> general (8h), visitors -> guest, everyone else rejected.
func testPolicy(tb testing.TB) *policy.Policy {
	tb.Helper()
	p := &policy.Policy{
		Sites: map[string]policy.Site{
			testSite: {Name: testSite, VLANs: map[policy.Segment]int{policy.SegmentGeneral: testVLANGen, policy.SegmentGuest: testVLANGuest}},
		},
		Rules: []policy.Rule{
			{Name: "staff-general", Roles: []policy.Role{policy.RoleStaff}, Segment: policy.SegmentGeneral, SessionTimeout: testSessionMax},
			{Name: "visitor-guest", Roles: []policy.Role{policy.RoleVisitor}, Segment: policy.SegmentGuest},
		},
	}
	if err := p.Validate(); err != nil {
		tb.Fatalf("test policy: %v", err)
	}
	return p
}

// fixedVerifier returns the same identity for every chain, with the
// validity window around now.
type fixedVerifier struct {
	id    policy.Identity
	calls atomic.Int32
}

func (v *fixedVerifier) VerifyClient(chain []*x509.Certificate, now time.Time) policy.Identity {
	v.calls.Add(1)
	id := v.id
	id.NotBefore = now.Add(-time.Hour)
	id.NotAfter = now.Add(365 * 24 * time.Hour)
	return id
}

func staffIdentity() policy.Identity {
	return policy.Identity{
		Subject:    "CN=laptop-042,O=East Herts Council",
		CommonName: "laptop-042",
		Email:      "alice@herts.example",
		DeviceUUID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		Ownership:  policy.OwnershipCouncilManaged,
		Role:       policy.RoleStaff,
		Issuer:     "CN=nacd test root",
		Serial:     "0a1b2c",
		Anchor:     "council",
		Status:     policy.CertOK,
		Revocation: policy.Revocation{Checked: true, Source: "crl:council", Age: 90 * time.Second},
	}
}

var (
	serverCertOnce sync.Once
	serverCert     tls.Certificate
	serverRoot     *testpki.CA
)

// testEAPTLSConfig returns a server certificate from a throwaway test PKI
// (generated once per test binary).
func testEAPTLSConfig(tb testing.TB) *eaptls.Config {
	serverCertOnce.Do(func() {
		serverRoot = testpki.NewRoot(tb, "nacd test root")
		serverCert = serverRoot.IssueServer(tb, "radius.nacd.test", testpki.ECDSAP256).TLSCertificate()
	})
	return &eaptls.Config{Certificates: []tls.Certificate{serverCert}}
}

// fakeSession stands in for an EAP-TLS session: Start sends EAP-TLS Start;
// the first Handle "completes the handshake" by calling Authorize with a
// canned ConnectionState and answers Success or Failure.
type fakeSession struct {
	authorize eaptls.Authorize
	msk       []byte
	lastID    uint8
	closed    atomic.Int32
	handles   atomic.Int32
	handle    func(*fakeSession, *eap.Packet) (*eap.Packet, error) // optional override
}

func (f *fakeSession) Start(id uint8) *eap.Packet {
	f.lastID = id
	return &eap.Packet{Code: eap.CodeRequest, Identifier: id, Type: eap.TypeTLS, Data: []byte{0x20}}
}

func (f *fakeSession) Handle(p *eap.Packet) (*eap.Packet, error) {
	f.handles.Add(1)
	if f.handle != nil {
		return f.handle(f, p)
	}
	if p.Identifier != f.lastID {
		return nil, eaptls.ErrIdentifierMismatch
	}
	cs := tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: []*x509.Certificate{{Raw: []byte{1}}}}
	if err := f.authorize(cs); err != nil {
		return eap.Failure(p.Identifier), &net.OpError{Op: "local error", Err: errBadCert{}}
	}
	return eap.Success(p.Identifier), nil
}

type errBadCert struct{}

func (errBadCert) Error() string { return "tls: bad certificate" }

func (f *fakeSession) Result() *eaptls.Result {
	return &eaptls.Result{MSK: f.msk, EMSK: make([]byte, 64), Version: tls.VersionTLS13}
}

func (f *fakeSession) Close() { f.closed.Add(1) }

// fakeFactory creates fakeSessions and remembers them.
type fakeFactory struct {
	mu       sync.Mutex
	sessions []*fakeSession
	msk      []byte
	handle   func(*fakeSession, *eap.Packet) (*eap.Packet, error)
	gate     chan struct{} // when set, session creation waits on it
	entered  chan struct{} // when set, signalled on each creation
}

func (ff *fakeFactory) new(_ *eaptls.Config, a eaptls.Authorize) eapSession {
	if ff.entered != nil {
		ff.entered <- struct{}{}
	}
	if ff.gate != nil {
		<-ff.gate
	}
	s := &fakeSession{authorize: a, msk: ff.msk, handle: ff.handle}
	ff.mu.Lock()
	ff.sessions = append(ff.sessions, s)
	ff.mu.Unlock()
	return s
}

func (ff *fakeFactory) session(i int) *fakeSession {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	return ff.sessions[i]
}

func (ff *fakeFactory) count() int {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	return len(ff.sessions)
}

func (ff *fakeFactory) closedCount() int {
	ff.mu.Lock()
	defer ff.mu.Unlock()
	n := 0
	for _, s := range ff.sessions {
		if s.closed.Load() > 0 {
			n++
		}
	}
	return n
}

type envOptions struct {
	maxConversations int
	convTimeout      time.Duration
	workers          int
	verifier         CertificateVerifier
	policy           *policy.Policy
	fake             *fakeFactory // nil: real eaptls sessions
	now              func() time.Time
	wrap             func(Handler) Handler // middleware around the handler, set before Serve
	auditGate        func(policy.Decision) error
}

type testEnv struct {
	srv       *Server
	addr      *net.UDPAddr
	reg       *prometheus.Registry
	accessLog *observer.ObservedLogs
	opLog     *observer.ObservedLogs
	verifier  *fixedVerifier
	fake      *fakeFactory
}

// Source addresses of the test NASes (all on loopback).
const (
	nasIP       = "127.0.0.1" // client "ap-wallfields"
	strictNASIP = "127.0.0.3" // client "strict", requires Message-Authenticator
	unknownIP   = "127.0.0.2" // no client
)

func newEnv(tb testing.TB, opt envOptions) *testEnv {
	tb.Helper()
	e := &testEnv{reg: prometheus.NewRegistry(), fake: opt.fake}
	if opt.verifier == nil {
		e.verifier = &fixedVerifier{id: staffIdentity()}
		opt.verifier = e.verifier
	}
	if opt.policy == nil {
		opt.policy = testPolicy(tb)
	}
	accessCore, accessLogs := observer.New(zapcore.InfoLevel)
	opCore, opLogs := observer.New(zapcore.DebugLevel)
	e.accessLog, e.opLog = accessLogs, opLogs
	srv, err := NewServer(Config{
		Clients: []Client{
			{Name: "ap-wallfields", Networks: []netip.Prefix{netip.MustParsePrefix(nasIP + "/32")}, Secret: testSecret, Site: testSite},
			{Name: "strict", Networks: []netip.Prefix{netip.MustParsePrefix(strictNASIP + "/32")}, Secret: testSecret, Site: testSite, RequireMessageAuthenticator: true},
		},
		EAPTLS:              testEAPTLSConfig(tb),
		Verifier:            opt.verifier,
		Policy:              opt.policy,
		MaxConversations:    opt.maxConversations,
		ConversationTimeout: opt.convTimeout,
		Workers:             opt.workers,
		Logger:              zap.New(opCore),
		AccessLog:           zap.New(accessCore),
		AuditGate:           opt.auditGate,
		Registerer:          e.reg,
		Now:                 opt.now,
	})
	if err != nil {
		tb.Fatalf("NewServer: %v", err)
	}
	if opt.fake != nil {
		srv.access.newSession = opt.fake.new
	}
	if opt.wrap != nil {
		srv.handler = opt.wrap(srv.handler)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	e.srv, e.addr = srv, conn.LocalAddr().(*net.UDPAddr)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	tb.Cleanup(func() {
		if err := srv.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil && err != ErrServerClosed {
			tb.Errorf("Serve returned %v after Close", err)
		}
	})
	return e
}

// dial opens a UDP socket from the given loopback address to the server.
func (e *testEnv) dial(tb testing.TB, from string) *net.UDPConn {
	tb.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)}, e.addr)
	if err != nil {
		tb.Fatalf("dial from %s: %v", from, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// exchange sends b and returns the reply, failing the test without one.
func exchange(tb testing.TB, c *net.UDPConn, b []byte) []byte {
	tb.Helper()
	if _, err := c.Write(b); err != nil {
		tb.Fatalf("write: %v", err)
	}
	return read(tb, c)
}

func read(tb testing.TB, c *net.UDPConn) []byte {
	tb.Helper()
	buf := make([]byte, 8192)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		tb.Fatalf("read reply: %v", err)
	}
	return buf[:n]
}

// assertNoReply proves the server sent nothing on c so far: it sends a
// Status-Server probe and requires the first datagram back to be its answer.
// Call it only after the request was fully processed (its counter moved).
func assertNoReply(tb testing.TB, c *net.UDPConn) {
	tb.Helper()
	probe := statusServer(tb, 0xEE)
	resp := exchange(tb, c, probe)
	if resp[0] != byte(radius.CodeAccessAccept) || resp[1] != 0xEE {
		tb.Fatalf("got a reply (code %d id %d) before the probe's answer: the request was not dropped", resp[0], resp[1])
	}
}

// waitFor polls cond until it holds (a synchronisation aid, not a timing
// assertion: it fails only if the condition never holds).
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *testEnv) droppedCount(cause string) float64 {
	return testutil.ToFloat64(e.srv.metrics.dropped.WithLabelValues(cause))
}

// waitDropped waits until the dropped counter for cause reaches want.
func (e *testEnv) waitDropped(tb testing.TB, cause string, want float64) {
	tb.Helper()
	waitFor(tb, "nacd_radius_dropped_total{cause="+cause+"}", func() bool { return e.droppedCount(cause) >= want })
	if got := e.droppedCount(cause); got != want {
		tb.Fatalf("dropped{cause=%s} = %v, want %v", cause, got, want)
	}
}

// --- raw packet construction, independent of the code under test ---

type tattr struct {
	t byte
	v []byte
}

func randomAuth(tb testing.TB) [16]byte {
	var a [16]byte
	if _, err := rand.Read(a[:]); err != nil {
		tb.Fatal(err)
	}
	return a
}

// rawPacket encodes a packet exactly as given (no Message-Authenticator).
func rawPacket(code, id byte, auth [16]byte, attrs ...tattr) []byte {
	b := make([]byte, 20)
	b[0], b[1] = code, id
	copy(b[4:20], auth[:])
	for _, a := range attrs {
		b = append(b, a.t, byte(2+len(a.v)))
		b = append(b, a.v...)
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	return b
}

// signMA appends a Message-Authenticator to request b and computes it with
// secret: HMAC-MD5 over the packet with the attribute's value zeroed
// (RFC 3579 section 3.2).
func signMA(b, secret []byte) []byte {
	b = append(append([]byte(nil), b...), 80, 18)
	off := len(b)
	b = append(b, make([]byte, 16)...)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	mac := hmac.New(md5.New, secret)
	mac.Write(b)
	copy(b[off:], mac.Sum(nil))
	return b
}

func statusServer(tb testing.TB, id byte, attrs ...tattr) []byte {
	return signMA(rawPacket(byte(radius.CodeStatusServer), id, randomAuth(tb), attrs...), testSecret)
}

func eapAttrs(tb testing.TB, p *eap.Packet) []tattr {
	tb.Helper()
	b, err := p.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return splitRaw(attrEAPMessage, b)
}

func splitRaw(t byte, b []byte) []tattr {
	var out []tattr
	for len(b) > 0 {
		k := min(len(b), 253)
		out = append(out, tattr{t, b[:k]})
		b = b[k:]
	}
	return out
}

func identityResponse(id uint8, name string) *eap.Packet {
	return &eap.Packet{Code: eap.CodeResponse, Identifier: id, Type: eap.TypeIdentity, Data: []byte(name)}
}

// accessRequest builds a signed Access-Request carrying EAP packet p, the
// station ids, an optional State, and extra attributes.
func accessRequest(tb testing.TB, id byte, p *eap.Packet, state []byte, extra ...tattr) []byte {
	tb.Helper()
	attrs := []tattr{
		{attrUserName, []byte("alice@herts.example")},
		{attrCallingStationID, []byte("02-00-00-00-00-01")},
		{attrCalledStationID, []byte("0A-0B-0C-0D-0E-0F:Herts-Staff")},
	}
	if p != nil {
		attrs = append(attrs, eapAttrs(tb, p)...)
	}
	if state != nil {
		attrs = append(attrs, tattr{attrState, state})
	}
	attrs = append(attrs, extra...)
	return signMA(rawPacket(byte(radius.CodeAccessRequest), id, randomAuth(tb), attrs...), testSecret)
}

// checkResponse verifies what every response must satisfy: it parses,
// answers req, has a valid Response Authenticator, and carries a valid
// Message-Authenticator as its FIRST attribute. It returns the parsed reply.
func checkResponse(tb testing.TB, resp, req []byte) *radius.Packet {
	tb.Helper()
	p, err := radius.Parse(resp, testSecret)
	if err != nil {
		tb.Fatalf("reply does not parse: %v", err)
	}
	if resp[1] != req[1] {
		tb.Fatalf("reply identifier %d, request %d", resp[1], req[1])
	}
	if !radius.IsAuthenticResponse(resp, req, testSecret) {
		tb.Fatalf("Response Authenticator does not verify")
	}
	if len(resp) < 38 || resp[20] != 80 || resp[21] != 18 {
		tb.Fatalf("first attribute is not Message-Authenticator: % x", resp[20:min(len(resp), 38)])
	}
	// Independent HMAC-MD5: Request Authenticator in the header, MA zeroed.
	c := append([]byte(nil), resp...)
	copy(c[4:20], req[4:20])
	clear(c[22:38])
	mac := hmac.New(md5.New, testSecret)
	mac.Write(c)
	if !hmac.Equal(mac.Sum(nil), resp[22:38]) {
		tb.Fatalf("Message-Authenticator does not verify")
	}
	return p
}

// replyEAP reassembles and parses the EAP packet of a reply.
func replyEAP(tb testing.TB, p *radius.Packet) *eap.Packet {
	tb.Helper()
	msg, ok := eapMessage(p)
	if !ok {
		tb.Fatalf("reply without EAP-Message")
	}
	e, err := eap.Parse(msg)
	if err != nil {
		tb.Fatalf("reply EAP: %v", err)
	}
	return e
}

// udp wraps a test socket (a seam for helpers shared with benchmarks).
type udp struct{ c *net.UDPConn }

type connLike interface{ UDP() *net.UDPConn }

func (u udp) UDP() *net.UDPConn { return u.c }

func hexs(b []byte) string { return fmt.Sprintf("%x", b) }

func fmtAny(v any) string { return fmt.Sprint(v) }
