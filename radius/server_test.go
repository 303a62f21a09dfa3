package radius

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"layeh.com/radius"

	"github.com/herts-council/nacd/radius/eap"
)

// TestDrops sends every kind of bad request over UDP and checks that it is
// silently discarded (no reply) and counted with its cause.
func TestDrops(t *testing.T) {
	e := newEnv(t, envOptions{fake: &fakeFactory{msk: make([]byte, 64)}})
	wrong := []byte("not-the-shared-secret")
	idResp := identityResponse(1, "alice")

	withLength := func(b []byte, n int) []byte {
		b = append([]byte(nil), b...)
		binary.BigEndian.PutUint16(b[2:4], uint16(n))
		return b
	}
	base := func() []byte {
		return rawPacket(byte(radius.CodeAccessRequest), 7, randomAuth(t), tattr{attrUserName, []byte("bob")})
	}

	tests := []struct {
		name  string
		from  string
		pkt   func() []byte
		cause string
	}{
		{"unknown NAS", unknownIP, func() []byte { return accessRequest(t, 1, idResp, nil) }, DropUnknownClient},
		{"EAP-Message without Message-Authenticator", nasIP, func() []byte {
			return rawPacket(byte(radius.CodeAccessRequest), 2, randomAuth(t), eapAttrs(t, idResp)...)
		}, DropMissingMessageAuthenticator},
		{"wrong shared secret", nasIP, func() []byte {
			return signMA(rawPacket(byte(radius.CodeAccessRequest), 3, randomAuth(t), eapAttrs(t, idResp)...), wrong)
		}, DropBadMessageAuthenticator},
		{"tampered after signing", nasIP, func() []byte {
			b := accessRequest(t, 4, idResp, nil)
			b[25] ^= 0x20 // inside User-Name
			return b
		}, DropBadMessageAuthenticator},
		{"strict NAS, PAP without Message-Authenticator", strictNASIP, base, DropMissingMessageAuthenticator},
		{"Proxy-State without Message-Authenticator", nasIP, func() []byte {
			return rawPacket(byte(radius.CodeAccessRequest), 5, randomAuth(t), tattr{attrUserName, []byte("bob")}, tattr{attrProxyState, []byte("p1")})
		}, DropMissingMessageAuthenticator},
		{"Status-Server without Message-Authenticator", nasIP, func() []byte {
			return rawPacket(byte(radius.CodeStatusServer), 6, randomAuth(t))
		}, DropMissingMessageAuthenticator},
		{"short datagram", nasIP, func() []byte { return base()[:10] }, DropMalformed},
		{"length field beyond datagram", nasIP, func() []byte { b := base(); return withLength(b, len(b)+10) }, DropMalformed},
		{"length field below header", nasIP, func() []byte { return withLength(base(), 19) }, DropMalformed},
		{"length field above 4096", nasIP, func() []byte { return withLength(base(), 4097) }, DropMalformed},
		{"attribute length 0", nasIP, func() []byte {
			b := append(base(), attrUserName, 0)
			return withLength(b, len(b))
		}, DropMalformed},
		{"attribute length 1", nasIP, func() []byte {
			b := append(base(), attrUserName, 1, 'x')
			return withLength(b, len(b))
		}, DropMalformed},
		{"attribute overflows the packet", nasIP, func() []byte {
			b := append(base(), attrUserName, 40, 'x', 'y')
			return withLength(b, len(b))
		}, DropMalformed},
		{"lone attribute type octet", nasIP, func() []byte {
			b := append(base(), attrUserName)
			return withLength(b, len(b))
		}, DropMalformed},
		{"two Message-Authenticators", nasIP, func() []byte {
			return signMA(signMA(base(), testSecret), testSecret)
		}, DropMalformed},
		{"Message-Authenticator of 4 bytes", nasIP, func() []byte {
			return rawPacket(byte(radius.CodeAccessRequest), 8, randomAuth(t), tattr{attrMessageAuthenticator, []byte{1, 2, 3, 4}})
		}, DropMalformed},
		{"Accounting-Request on the authentication port", nasIP, func() []byte {
			return signMA(rawPacket(byte(radius.CodeAccountingRequest), 9, randomAuth(t)), testSecret)
		}, DropUnsupportedCode},
		{"Access-Accept sent to the server", nasIP, func() []byte {
			return signMA(rawPacket(byte(radius.CodeAccessAccept), 10, randomAuth(t)), testSecret)
		}, DropUnsupportedCode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial(t, tt.from)
			before := e.droppedCount(tt.cause)
			if _, err := c.Write(tt.pkt()); err != nil {
				t.Fatal(err)
			}
			e.waitDropped(t, tt.cause, before+1)
			if tt.from != unknownIP {
				assertNoReply(t, c)
			}
		})
	}
	if n := testutil.ToFloat64(e.srv.metrics.responses.WithLabelValues("access_reject")) + testutil.ToFloat64(e.srv.metrics.responses.WithLabelValues("access_challenge")); n != 0 {
		t.Fatalf("%v Access-Reject/Challenge sent to dropped requests", n)
	}
	if e.fake.count() != 0 {
		t.Fatalf("%d EAP sessions started by dropped requests", e.fake.count())
	}
}

func TestStatusServer(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial(t, nasIP)
	tests := []struct {
		name string
		ps   []string
	}{
		{"plain", nil},
		{"with Proxy-State, copied back in order", []string{"first", "second", "third"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var attrs []tattr
			for _, p := range tt.ps {
				attrs = append(attrs, tattr{attrProxyState, []byte(p)})
			}
			req := statusServer(t, byte(i+1), attrs...)
			resp := exchange(t, c, req)
			p := checkResponse(t, resp, req)
			if p.Code != radius.CodeAccessAccept {
				t.Fatalf("code %v, want Access-Accept (RFC 5997)", p.Code)
			}
			var got []string
			for _, a := range p.Attributes {
				if a.Type == attrProxyState {
					got = append(got, string(a.Attribute))
				}
			}
			if !equalStrings(got, tt.ps) {
				t.Fatalf("Proxy-State %q, want %q", got, tt.ps)
			}
		})
	}
	if got := testutil.ToFloat64(e.srv.metrics.requests.WithLabelValues("status_server", "ap-wallfields")); got != 2 {
		t.Fatalf("requests_total{status_server} = %v, want 2", got)
	}
}

// TestRejects covers requests that are answered with Access-Reject before
// or without EAP-TLS.
func TestRejects(t *testing.T) {
	e := newEnv(t, envOptions{fake: &fakeFactory{msk: make([]byte, 64)}})
	c := e.dial(t, nasIP)

	lying, err := (&eap.Packet{Code: eap.CodeResponse, Identifier: 9, Type: eap.TypeTLS, Data: []byte{0, 1, 2}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint16(lying[2:4], uint16(len(lying)+100))

	tests := []struct {
		name       string
		req        func() []byte
		wantEAP    bool
		wantID     uint8
		reason     string
		accessLine bool
	}{
		{"PAP, no EAP", func() []byte {
			return signMA(rawPacket(byte(radius.CodeAccessRequest), 1, randomAuth(t), tattr{attrUserName, []byte("bob")}, tattr{2, bytes.Repeat([]byte{1}, 16)}), testSecret)
		}, false, 0, string(ReasonNoEAP), true},
		{"State that does not exist", func() []byte {
			return accessRequest(t, 2, &eap.Packet{Code: eap.CodeResponse, Identifier: 5, Type: eap.TypeTLS, Data: []byte{0}}, []byte("0123456789abcdef"))
		}, true, 5, string(ReasonUnknownState), true},
		{"EAP length lies", func() []byte {
			return signMA(rawPacket(byte(radius.CodeAccessRequest), 3, randomAuth(t), splitRaw(attrEAPMessage, lying)...), testSecret)
		}, true, 9, string(ReasonEAPMalformed), true},
		{"EAP-Response/TLS without State", func() []byte {
			return accessRequest(t, 4, &eap.Packet{Code: eap.CodeResponse, Identifier: 6, Type: eap.TypeTLS, Data: []byte{0}}, nil)
		}, true, 6, string(ReasonEAPUnexpected), true},
		{"EAP-Request from the NAS", func() []byte {
			return accessRequest(t, 5, &eap.Packet{Code: eap.CodeRequest, Identifier: 7, Type: eap.TypeIdentity}, nil)
		}, true, 7, string(ReasonEAPUnexpected), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := e.accessLog.Len()
			before := testutil.ToFloat64(e.srv.metrics.decisions.WithLabelValues(ResultReject, rejectSegment(tt.reason), testSite, tt.reason))
			req := tt.req()
			p := checkResponse(t, exchange(t, c, req), req)
			if p.Code != radius.CodeAccessReject {
				t.Fatalf("code %v, want Access-Reject", p.Code)
			}
			assertMinimalReject(t, p, tt.wantEAP)
			if tt.wantEAP {
				if f := replyEAP(t, p); f.Code != eap.CodeFailure || f.Identifier != tt.wantID {
					t.Fatalf("EAP %v id %d, want Failure id %d", f.Code, f.Identifier, tt.wantID)
				}
			}
			if got := testutil.ToFloat64(e.srv.metrics.decisions.WithLabelValues(ResultReject, rejectSegment(tt.reason), testSite, tt.reason)); got != before+1 {
				t.Fatalf("decisions{reject,%s} = %v, want %v", tt.reason, got, before+1)
			}
			wantLines := lines
			if tt.accessLine {
				wantLines++
			}
			if got := e.accessLog.Len(); got != wantLines {
				t.Fatalf("%d access log lines, want %d", got, wantLines)
			}
			if tt.accessLine {
				last := e.accessLog.All()[e.accessLog.Len()-1].ContextMap()
				if last[FieldResult] != ResultReject || last[FieldReason] != tt.reason || last[FieldNASName] != "ap-wallfields" {
					t.Fatalf("access log line %v", last)
				}
			}
		})
	}
}

// rejectSegment is the segment label of every reject.
func rejectSegment(string) string { return "reject" }

// assertMinimalReject checks that an Access-Reject carries nothing but
// Message-Authenticator, EAP-Message (when expected) and Proxy-State.
func assertMinimalReject(tb testing.TB, p *radius.Packet, wantEAP bool) {
	tb.Helper()
	sawEAP := false
	for _, a := range p.Attributes {
		switch a.Type {
		case attrMessageAuthenticator, attrProxyState:
		case attrEAPMessage:
			sawEAP = true
		default:
			tb.Fatalf("Access-Reject carries attribute %d", a.Type)
		}
	}
	if sawEAP != wantEAP {
		tb.Fatalf("EAP-Message present %v, want %v", sawEAP, wantEAP)
	}
}

// TestManyEAPMessageAttributes sends an EAP packet of almost 4 KiB split over
// 15 EAP-Message attributes: it is reassembled and handled.
func TestManyEAPMessageAttributes(t *testing.T) {
	e := newEnv(t, envOptions{fake: &fakeFactory{msk: make([]byte, 64)}})
	c := e.dial(t, nasIP)
	name := string(bytes.Repeat([]byte("n"), 3700))
	req := accessRequest(t, 1, identityResponse(3, name), nil)
	if len(req) > 4096 {
		t.Fatalf("test packet of %d bytes", len(req))
	}
	p := checkResponse(t, exchange(t, c, req), req)
	if p.Code != radius.CodeAccessChallenge {
		t.Fatalf("code %v, want Access-Challenge", p.Code)
	}
	if start := replyEAP(t, p); start.Code != eap.CodeRequest || start.Type != eap.TypeTLS || start.Identifier != 4 {
		t.Fatalf("challenge EAP %+v, want EAP-TLS Start id 4", start)
	}
	if e.srv.convs.len() != 1 {
		t.Fatalf("%d conversations, want 1", e.srv.convs.len())
	}
}

// TestDuplicateReplayed: a retransmission of an answered request gets the
// very same bytes and is not processed again.
func TestDuplicateReplayed(t *testing.T) {
	ff := &fakeFactory{msk: make([]byte, 64)}
	e := newEnv(t, envOptions{fake: ff})
	c := e.dial(t, nasIP)
	req := accessRequest(t, 1, identityResponse(1, "alice"), nil)
	first := exchange(t, c, req)
	second := exchange(t, c, req)
	if !bytes.Equal(first, second) {
		t.Fatal("replayed reply differs from the first")
	}
	if ff.count() != 1 || e.srv.convs.len() != 1 {
		t.Fatalf("%d sessions, %d conversations: the duplicate was processed again", ff.count(), e.srv.convs.len())
	}
	if got := e.droppedCount(DropDuplicateReplayed); got != 1 {
		t.Fatalf("dropped{duplicate_replayed} = %v, want 1", got)
	}
	// Same Identifier, different Request Authenticator: a new request.
	req2 := accessRequest(t, 1, identityResponse(1, "alice"), nil)
	checkResponse(t, exchange(t, c, req2), req2)
	if ff.count() != 2 {
		t.Fatalf("%d sessions, want 2 (a new authenticator is a new request)", ff.count())
	}
}

// TestDuplicateInProgress: a retransmission of a request still being
// processed is dropped, and the original is answered once.
func TestDuplicateInProgress(t *testing.T) {
	ff := &fakeFactory{msk: make([]byte, 64), gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	e := newEnv(t, envOptions{fake: ff})
	c := e.dial(t, nasIP)
	req := accessRequest(t, 1, identityResponse(1, "alice"), nil)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	<-ff.entered // the first copy is inside the handler
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	e.waitDropped(t, DropDuplicateInProgress, 1)
	close(ff.gate)
	checkResponse(t, read(t, c), req)
	assertNoReply(t, c) // exactly one answer
	if ff.count() != 1 {
		t.Fatalf("%d sessions, want 1", ff.count())
	}
}

// TestPanicRecovered: a handler panic drops the request, is counted, and
// the server keeps serving.
func TestPanicRecovered(t *testing.T) {
	e := newEnv(t, envOptions{wrap: func(inner Handler) Handler {
		return HandlerFunc(func(w ResponseWriter, r *Request) {
			if r.Code == radius.CodeAccessRequest {
				panic("boom")
			}
			inner.ServeRADIUS(w, r)
		})
	}})
	c := e.dial(t, nasIP)
	if _, err := c.Write(accessRequest(t, 1, identityResponse(1, "alice"), nil)); err != nil {
		t.Fatal(err)
	}
	e.waitDropped(t, DropPanic, 1)
	assertNoReply(t, c)
	if e.opLog.FilterMessageSnippet("panic").Len() == 0 {
		t.Fatal("panic not logged")
	}
}

func TestNewServerValidates(t *testing.T) {
	good := func() Config {
		return Config{
			Clients:  []Client{{Name: "a", Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, Secret: []byte("s"), Site: testSite}},
			EAPTLS:   testEAPTLSConfig(t),
			Verifier: &fixedVerifier{},
			Policy:   testPolicy(t),
		}
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"valid", func(*Config) {}, true},
		{"no EAP-TLS config", func(c *Config) { c.EAPTLS = nil }, false},
		{"no verifier", func(c *Config) { c.Verifier = nil }, false},
		{"no policy", func(c *Config) { c.Policy = nil }, false},
		{"client without secret", func(c *Config) { c.Clients[0].Secret = nil }, false},
		{"client without networks", func(c *Config) { c.Clients[0].Networks = nil }, false},
		{"same network twice", func(c *Config) {
			c.Clients = append(c.Clients, Client{Name: "b", Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}, Secret: []byte("t")})
		}, false},
		{"negative MaxConversations", func(c *Config) { c.MaxConversations = -1 }, false},
		{"negative timeout", func(c *Config) { c.ConversationTimeout = -1 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			tt.mutate(&cfg)
			s, err := NewServer(cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("NewServer error %v, want ok=%v", err, tt.ok)
			}
			if s != nil {
				s.Close()
			}
		})
	}
}

func TestServeAfterClose(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.srv.Close()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := e.srv.Serve(conn); err != ErrServerClosed {
		t.Fatalf("Serve after Close = %v, want ErrServerClosed", err)
	}
}

// TestOverloadDropped: when every worker is busy and the queue is full,
// datagrams are dropped and counted (cause overloaded), and the queued ones
// are still answered once the workers free up.
func TestOverloadDropped(t *testing.T) {
	gate := make(chan struct{})
	var once sync.Once
	entered := make(chan struct{})
	e := newEnv(t, envOptions{workers: 1, wrap: func(inner Handler) Handler {
		return HandlerFunc(func(w ResponseWriter, r *Request) {
			once.Do(func() { close(entered); <-gate })
			inner.ServeRADIUS(w, r)
		})
	}})
	c := e.dial(t, nasIP)
	if _, err := c.Write(statusServer(t, 0)); err != nil {
		t.Fatal(err)
	}
	<-entered // the only worker is now blocked
	const n = 3 * queuePerWorker
	for i := 1; i <= n; i++ {
		if _, err := c.Write(statusServer(t, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "overload drops", func() bool {
		return e.droppedCount(DropOverloaded) >= n-queuePerWorker
	})
	close(gate)
	dropped := int(e.droppedCount(DropOverloaded))
	for range n + 1 - dropped {
		if resp := read(t, c); resp[0] != byte(radius.CodeAccessAccept) {
			t.Fatalf("code %d", resp[0])
		}
	}
	assertNoReply(t, c)
}

// TestMetricsRegistered: every collector is on the given registry under its
// documented name, and a signed request from the strict NAS is served.
func TestMetricsRegistered(t *testing.T) {
	e := newEnv(t, envOptions{fake: &fakeFactory{msk: testMSK()}})
	c := e.dial(t, strictNASIP)
	req := signMA(rawPacket(byte(radius.CodeAccessRequest), 1, randomAuth(t), tattr{attrUserName, []byte("bob")}), testSecret)
	if p := checkResponse(t, exchange(t, c, req), req); p.Code != radius.CodeAccessReject {
		t.Fatalf("strict NAS, PAP with Message-Authenticator: %v, want Access-Reject (no-eap)", p.Code)
	}
	c.Write([]byte{1, 2, 3})
	e.waitDropped(t, DropMalformed, 1)
	// Leave a handshake observation behind.
	st, start := startConversation(t, e, udp{e.dial(t, nasIP)}, 2)
	req = accessRequest(t, 3, &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}, st)
	exchange(t, e.dial(t, nasIP), req) // from another port: same NAS, same State
	tests := []struct {
		name string
		min  int
	}{
		{"nacd_radius_requests_total", 1},
		{"nacd_radius_dropped_total", len(dropCauses)},
		{"nacd_radius_decisions_total", 1},
		{"nacd_radius_eap_conversations", 1},
		{"nacd_radius_eap_evictions_total", 2},
		{"nacd_radius_eaptls_handshake_seconds", 1},
		{"nacd_radius_responses_total", 1},
		{"nacd_radius_request_duration_seconds", len(requestTypes)}, // one series per type, from the start
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := testutil.GatherAndCount(e.reg, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if n < tt.min {
				t.Fatalf("%d series, want at least %d", n, tt.min)
			}
		})
	}
	if got := testutil.ToFloat64(e.srv.metrics.requests.WithLabelValues("access_request", "strict")); got != 2 {
		t.Fatalf("requests_total{access_request,strict} = %v, want 2 (one served, one malformed)", got)
	}
}
