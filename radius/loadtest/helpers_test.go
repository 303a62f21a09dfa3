package loadtest_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"layeh.com/radius"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
	nacdradius "github.com/herts-council/nacd/radius"
	"github.com/herts-council/nacd/radius/eap"
	"github.com/herts-council/nacd/radius/eaptls"
	"github.com/herts-council/nacd/radius/loadtest"
)

var testSecret = []byte("loadtest-shared-secret-0123456789")

const (
	testSite        = "wallfields"
	vlanGeneral     = 20
	vlanGuest       = 30
	vlanOnboarding  = 40
	serverName      = "radius.nacd.test"
	personaStaff    = "staff-laptop"
	personaVisitor  = "visitor-phone"
	personaUnknown  = "byod-no-role"
	personaContract = "contractor-pc"
)

// testPKI is a server PKI (what the load generator trusts) and a device
// PKI (what the server trusts), with one certificate per persona.
type testPKI struct {
	serverRoot *testpki.CA
	server     *testpki.Leaf
	deviceRoot *testpki.CA
	issuing    *testpki.CA
	personas   map[string]*testpki.Leaf
	wantVLAN   map[string]int // 0: rejected
}

var (
	pkiOnce   sync.Once
	sharedPKI *testPKI
)

// newTestPKI returns the PKI shared by the tests of this binary.
func newTestPKI(tb testing.TB) *testPKI {
	pkiOnce.Do(func() {
		p := &testPKI{serverRoot: testpki.NewRoot(tb, "loadtest server root"), deviceRoot: testpki.NewRoot(tb, "loadtest council root")}
		p.server = p.serverRoot.NewIntermediate(tb, "loadtest server CA").IssueServer(tb, serverName, testpki.ECDSAP256)
		p.issuing = p.deviceRoot.NewIntermediate(tb, "loadtest council devices")
		p.personas = map[string]*testpki.Leaf{
			personaStaff:    p.issuing.IssueDevice(tb, testpki.Device{CommonName: personaStaff, Email: "bob@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff}),
			personaVisitor:  p.issuing.IssueDevice(tb, testpki.Device{CommonName: personaVisitor, Role: policy.RoleVisitor, KeyType: testpki.RSA2048}),
			personaUnknown:  p.issuing.IssueDevice(tb, testpki.Device{CommonName: personaUnknown, Ownership: policy.OwnershipPersonal}),
			personaContract: p.issuing.IssueDevice(tb, testpki.Device{CommonName: personaContract, Email: "carol@contractor.example", Role: policy.RoleContractor}),
		}
		p.wantVLAN = map[string]int{personaStaff: vlanGeneral, personaVisitor: vlanGuest, personaUnknown: vlanOnboarding, personaContract: 0}
		sharedPKI = p
	})
	if sharedPKI == nil {
		tb.Fatal("test PKI generation failed earlier")
	}
	return sharedPKI
}

func (p *testPKI) serverRoots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.serverRoot.Cert)
	return pool
}

func (p *testPKI) identities(names ...string) []loadtest.Identity {
	var ids []loadtest.Identity
	for _, n := range names {
		ids = append(ids, loadtest.Identity{Certificate: p.personas[n].TLSCertificate()})
	}
	return ids
}

// chainVerifier is a tiny radius.CertificateVerifier: x509 verification
// against the device root, identity from the certificate.
type chainVerifier struct{ roots *x509.CertPool }

func (v *chainVerifier) VerifyClient(chain []*x509.Certificate, now time.Time) policy.Identity {
	id := policy.IdentityFromCertificate(chain[0], policy.DefaultOIDs())
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: v.roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		id.Status = policy.CertUntrusted
		return id
	}
	id.Anchor, id.Status = "council", policy.CertOK
	id.Revocation = policy.Revocation{Checked: true, Source: "test", Age: time.Minute}
	return id
}

// testPolicy: staff -> general, visitors -> guest, no role -> onboarding,
// contractors (no rule) rejected.
func testPolicy(tb testing.TB) *policy.Policy {
	p := &policy.Policy{
		Sites: map[string]policy.Site{testSite: {Name: testSite, VLANs: map[policy.Segment]int{
			policy.SegmentGeneral: vlanGeneral, policy.SegmentGuest: vlanGuest, policy.SegmentOnboarding: vlanOnboarding,
		}}},
		Rules: []policy.Rule{
			{Name: "staff", Roles: []policy.Role{policy.RoleStaff}, Segment: policy.SegmentGeneral},
			{Name: "visitors", Roles: []policy.Role{policy.RoleVisitor}, Segment: policy.SegmentGuest},
			{Name: "no-role", Roles: []policy.Role{policy.RoleUnknown}, Segment: policy.SegmentOnboarding},
		},
	}
	if err := p.Validate(); err != nil {
		tb.Fatalf("test policy: %v", err)
	}
	return p
}

// startNacd runs nacd's radius.Server on a loopback port and returns its
// address.
func startNacd(tb testing.TB) string {
	tb.Helper()
	return startNacdRegistry(tb, nil)
}

// startNacdRegistry is startNacd with the server's metrics in reg.
func startNacdRegistry(tb testing.TB, reg prometheus.Registerer) string {
	tb.Helper()
	p := newTestPKI(tb)
	roots := x509.NewCertPool()
	roots.AddCert(p.deviceRoot.Cert)
	srv, err := nacdradius.NewServer(nacdradius.Config{
		Clients:    []nacdradius.Client{{Name: "loopback", Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Secret: testSecret, Site: testSite, RequireMessageAuthenticator: true}},
		EAPTLS:     &eaptls.Config{Certificates: []tls.Certificate{p.server.TLSCertificate()}},
		Verifier:   &chainVerifier{roots: roots},
		Policy:     testPolicy(tb),
		Registerer: reg,
	})
	if err != nil {
		tb.Fatalf("NewServer: %v", err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	tb.Cleanup(func() {
		srv.Close()
		<-done
	})
	return conn.LocalAddr().String()
}

// proxy relays UDP between load generator and server, letting a test
// tamper with or drop packets. Each client address gets its own upstream
// socket.
type proxy struct {
	conn     net.PacketConn
	upstream *net.UDPAddr
	// request and reply return the packet to forward, or nil to drop it.
	request func(n int, b []byte) []byte
	reply   func(b []byte) []byte

	mu    sync.Mutex
	n     int
	peers map[string]*net.UDPConn
}

func startProxy(tb testing.TB, upstream string, request func(int, []byte) []byte, reply func([]byte) []byte) string {
	tb.Helper()
	ua, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &proxy{conn: conn, upstream: ua, request: request, reply: reply, peers: map[string]*net.UDPConn{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.serve(&wg)
	}()
	tb.Cleanup(func() {
		conn.Close()
		p.mu.Lock()
		for _, u := range p.peers {
			u.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	return conn.LocalAddr().String()
}

func (p *proxy) serve(wg *sync.WaitGroup) {
	buf := make([]byte, 4096)
	for {
		n, from, err := p.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		b := bytes.Clone(buf[:n])
		p.mu.Lock()
		p.n++
		seq := p.n
		up, ok := p.peers[from.String()]
		if !ok {
			up, err = net.DialUDP("udp", nil, p.upstream)
			if err != nil {
				p.mu.Unlock()
				return
			}
			p.peers[from.String()] = up
			wg.Add(1)
			go func() {
				defer wg.Done()
				rb := make([]byte, 4096)
				for {
					n, err := up.Read(rb)
					if err != nil {
						return
					}
					out := bytes.Clone(rb[:n])
					if p.reply != nil {
						out = p.reply(out)
					}
					if out != nil {
						p.conn.WriteTo(out, from)
					}
				}
			}()
		}
		p.mu.Unlock()
		if p.request != nil {
			b = p.request(seq, b)
		}
		if b != nil {
			up.Write(b)
		}
	}
}

// A responder fault: how a deliberately broken EAP-TLS server answers
// Access-Accepts.
type fault int

const (
	faultNone fault = iota
	faultSendKeyFromEMSK
	faultSwappedKeys
	faultNoMPPE
	faultNoMessageAuthenticator
)

// responder is a small, deliberately simple RADIUS EAP-TLS server built on
// eaptls.Session, whose Access-Accept can be broken on purpose.
type responder struct {
	conn  net.PacketConn
	cfg   *eaptls.Config
	fault fault

	mu       sync.Mutex
	sessions map[string]*eaptls.Session
}

func startResponder(tb testing.TB, f fault) string {
	tb.Helper()
	p := newTestPKI(tb)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	r := &responder{conn: conn, fault: f, sessions: map[string]*eaptls.Session{},
		cfg: &eaptls.Config{Certificates: []tls.Certificate{p.server.TLSCertificate()}}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.serve()
	}()
	tb.Cleanup(func() {
		conn.Close()
		<-done
		r.mu.Lock()
		for _, s := range r.sessions {
			s.Close()
		}
		r.mu.Unlock()
	})
	return conn.LocalAddr().String()
}

func (r *responder) serve() {
	buf := make([]byte, 4096)
	for {
		n, from, err := r.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := r.answer(bytes.Clone(buf[:n])); out != nil {
			r.conn.WriteTo(out, from)
		}
	}
}

func (r *responder) answer(b []byte) []byte {
	req, err := radius.Parse(b, testSecret)
	if err != nil {
		return nil
	}
	var msg []byte
	for _, a := range req.Attributes {
		if a.Type == 79 {
			msg = append(msg, a.Attribute...)
		}
	}
	p, err := eap.Parse(msg)
	if err != nil {
		return nil
	}
	state := string(req.Get(24))
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sessions[state]
	var out *eap.Packet
	if s == nil {
		var st [16]byte
		rand.Read(st[:])
		state = string(st[:])
		s = eaptls.NewSession(r.cfg, func(tls.ConnectionState) error { return nil })
		r.sessions[state] = s
		out = s.Start(p.Identifier + 1)
	} else if out, err = s.Handle(p); out == nil {
		return nil
	}
	var attrs []avp
	code := radius.CodeAccessChallenge
	switch out.Code {
	case eap.CodeSuccess:
		code = radius.CodeAccessAccept
		res := s.Result()
		recv, send := res.MSK[:32], res.MSK[32:64]
		switch r.fault {
		case faultSendKeyFromEMSK:
			send = res.EMSK[:32]
		case faultSwappedKeys:
			recv, send = send, recv
		}
		if r.fault != faultNoMPPE {
			attrs = append(attrs, avp{26, msVSA(17, encryptMPPE(recv, req.Authenticator[:], 0x81))}, avp{26, msVSA(16, encryptMPPE(send, req.Authenticator[:], 0x92))})
		}
		attrs = append(attrs, avp{81, []byte("20")})
	case eap.CodeFailure:
		code = radius.CodeAccessReject
	default:
		attrs = append(attrs, avp{24, []byte(state)})
	}
	m, _ := out.Marshal()
	for len(m) > 0 {
		k := min(len(m), 253)
		attrs = append(attrs, avp{79, m[:k]})
		m = m[k:]
	}
	return encodeReply(code, req.Identifier, req.Authenticator[:], attrs, r.fault != faultNoMessageAuthenticator)
}

type avp struct {
	t byte
	v []byte
}

// encodeReply builds a response: Message-Authenticator first (when ma),
// then the Response Authenticator.
func encodeReply(code radius.Code, id byte, reqAuth []byte, attrs []avp, ma bool) []byte {
	b := []byte{byte(code), id, 0, 0}
	b = append(b, reqAuth...)
	if ma {
		b = append(b, 80, 18)
		b = append(b, make([]byte, 16)...)
	}
	for _, a := range attrs {
		b = append(append(b, a.t, byte(2+len(a.v))), a.v...)
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	if ma {
		mac := hmac.New(md5.New, testSecret)
		mac.Write(b)
		mac.Sum(b[22:22])
	}
	h := md5.New()
	h.Write(b)
	h.Write(testSecret)
	h.Sum(b[4:4])
	return b
}

func msVSA(vt byte, v []byte) []byte {
	out := []byte{0, 0, 1, 55, vt, byte(2 + len(v))} // vendor 311
	return append(out, v...)
}

// encryptMPPE is RFC 2548 section 2.4.2, written independently of the
// code under test.
func encryptMPPE(key, reqAuth []byte, saltHi byte) []byte {
	salt := []byte{saltHi, 0x5a}
	plain := append([]byte{byte(len(key))}, key...)
	for len(plain)%16 != 0 {
		plain = append(plain, 0)
	}
	out := append([]byte(nil), salt...)
	prev := append(append([]byte(nil), reqAuth...), salt...)
	for i := 0; i < len(plain); i += 16 {
		h := md5.Sum(append(append([]byte(nil), testSecret...), prev...))
		c := make([]byte, 16)
		for j := range c {
			c[j] = plain[i+j] ^ h[j]
		}
		out = append(out, c...)
		prev = c
	}
	return out
}
