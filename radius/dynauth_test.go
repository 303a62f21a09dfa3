package radius

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"layeh.com/radius"

	"github.com/herts-council/nacd/policy"
)

// testNAS is a small NAS for Dynamic Authorization: it listens on
// loopback, verifies every request independently of the code under test
// (layeh's Request Authenticator check and its own HMAC-MD5), records it,
// and answers with the next scripted reply (the last one repeats).
type testNAS struct {
	conn    *net.UDPConn
	secret  []byte
	mu      sync.Mutex
	script  []nasReply
	got     []nasRequest
	arrived chan nasRequest
}

type nasReply struct {
	ack   bool
	cause uint32 // Error-Cause on a NAK; 0 = none
	drop  bool   // no answer at all
}

type nasRequest struct {
	raw        []byte
	from       *net.UDPAddr
	code       radius.Code
	packet     *radius.Packet
	authOK     bool // Request Authenticator (RFC 5176 section 3.3)
	maOK       bool // Message-Authenticator present and right
	receivedAt time.Time
}

func newTestNAS(tb testing.TB, secret []byte, script ...nasReply) *testNAS {
	tb.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.1")})
	if err != nil {
		tb.Fatal(err)
	}
	n := &testNAS{conn: c, secret: secret, script: script, arrived: make(chan nasRequest, 64)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			n.handle(append([]byte(nil), buf[:k]...), from)
		}
	}()
	tb.Cleanup(func() { c.Close(); <-done })
	return n
}

func (n *testNAS) port() int { return n.conn.LocalAddr().(*net.UDPAddr).Port }

func (n *testNAS) handle(b []byte, from *net.UDPAddr) {
	req := nasRequest{raw: b, from: from, authOK: radius.IsAuthenticRequest(b, n.secret), receivedAt: time.Now()}
	p, err := radius.Parse(b, n.secret)
	if err != nil {
		return
	}
	req.code, req.packet = p.Code, p
	if ma, ok := p.Lookup(attrMessageAuthenticator); ok && len(ma) == 16 {
		c := append([]byte(nil), b...)
		clear(c[4:20])
		for off := 20; off+2 <= len(c); off += int(c[off+1]) {
			if c[off] == attrMessageAuthenticator {
				clear(c[off+2 : off+18])
			}
		}
		mac := hmac.New(md5.New, n.secret)
		mac.Write(c)
		req.maOK = hmac.Equal(mac.Sum(nil), ma)
	}
	n.mu.Lock()
	n.got = append(n.got, req)
	r := nasReply{ack: true}
	if len(n.script) > 0 {
		r = n.script[0]
		if len(n.script) > 1 {
			n.script = n.script[1:]
		}
	}
	n.mu.Unlock()
	n.arrived <- req
	if r.drop {
		return
	}
	code := radius.CodeDisconnectACK
	switch {
	case p.Code == radius.CodeCoARequest && r.ack:
		code = radius.CodeCoAACK
	case p.Code == radius.CodeCoARequest:
		code = radius.CodeCoANAK
	case !r.ack:
		code = radius.CodeDisconnectNAK
	}
	resp := p.Response(code)
	if r.cause != 0 {
		v := make([]byte, 4)
		binary.BigEndian.PutUint32(v, r.cause)
		resp.Add(attrErrorCause, v)
	}
	out, err := resp.Encode()
	if err != nil {
		return
	}
	n.conn.WriteToUDP(out, from)
}

func (n *testNAS) requests() []nasRequest {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]nasRequest(nil), n.got...)
}

type dynEnv struct {
	*acctEnv
	nas   *testNAS
	dyn   *DynAuthClient
	audit *observer.ObservedLogs
}

func newDynEnv(tb testing.TB, mode DynAuthMode, script ...nasReply) *dynEnv {
	nas := newTestNAS(tb, testSecret, script...)
	e := newAcctEnv(tb, acctOptions{coaPort: nas.port(), dynAuth: mode})
	core, logs := observer.New(zapcore.InfoLevel)
	dyn, err := NewDynAuthClient(DynAuthConfig{Sessions: e.table, Clients: e.srv, Timeout: 500 * time.Millisecond, Attempts: 3,
		Backoff: 10 * time.Millisecond, AuditLog: zap.New(core), Registerer: e.reg})
	if err != nil {
		tb.Fatal(err)
	}
	return &dynEnv{acctEnv: e, nas: nas, dyn: dyn, audit: logs}
}

// start authenticates leaf and sends accounting Start with radclient,
// echoing the Accept's Class.
func (e *dynEnv) start(tb testing.TB, email, uuid, sessionID, calling string) {
	tb.Helper()
	class := e.accept(tb, e.staffLeaf(tb, email, uuid), calling)
	out, err := radclient(tb, e.acct, string(testSecret), strings.Join([]string{
		"Acct-Status-Type = Start",
		`Acct-Session-Id = "` + sessionID + `"`,
		"NAS-IP-Address = 127.0.0.1",
		`User-Name = "` + email + `"`,
		`Calling-Station-Id = "` + calling + `"`,
		"Class = 0x" + hex.EncodeToString(class),
	}, "\n"))
	if err != nil {
		tb.Fatalf("radclient: %v\n%s", err, out)
	}
}

func (e *dynEnv) result(typ, res string) float64 {
	return testutil.ToFloat64(e.dyn.requests.WithLabelValues(typ, res))
}

// TestRevokeDisconnects: auth accept -> accounting Start -> revoke ->
// Disconnect-Request at the NAS with the session's identifiers, signed.
func TestRevokeDisconnects(t *testing.T) {
	cases := []struct {
		name    string
		revoke  func(e *dynEnv) ([]DynAuthResult, error)
		wantIDs []string
	}{
		{"holder", func(e *dynEnv) ([]DynAuthResult, error) {
			return e.dyn.OnRevoke(context.Background(), nil, nil, []string{"Alice@herts.example"})
		}, []string{"acct-alice-1", "acct-alice-2"}},
		{"device", func(e *dynEnv) ([]DynAuthResult, error) {
			return e.dyn.OnRevoke(context.Background(), nil, []string{"6ba7b810-9dad-11d1-80b4-00c04fd43002"}, nil)
		}, []string{"acct-alice-2"}},
		{"one session for the service desk", func(e *dynEnv) ([]DynAuthResult, error) {
			return e.dyn.DisconnectSession(context.Background(), "acct-bob", "")
		}, []string{"acct-bob"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newDynEnv(t, DynAuthDisconnect)
			e.start(t, "alice@herts.example", "6ba7b810-9dad-11d1-80b4-00c04fd43001", "acct-alice-1", "AA-BB-CC-00-00-01")
			e.start(t, "alice@herts.example", "6ba7b810-9dad-11d1-80b4-00c04fd43002", "acct-alice-2", "AA-BB-CC-00-00-02")
			e.start(t, "bob@herts.example", "6ba7b810-9dad-11d1-80b4-00c04fd43003", "acct-bob", "AA-BB-CC-00-00-03")

			revoked := time.Now()
			res, err := tc.revoke(e)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != len(tc.wantIDs) {
				t.Fatalf("%d results, want %d: %+v", len(res), len(tc.wantIDs), res)
			}
			got := map[string]nasRequest{}
			for range tc.wantIDs {
				select {
				case r := <-e.nas.arrived:
					got[string(r.packet.Get(attrAcctSessionID))] = r
				case <-time.After(2 * time.Second):
					t.Fatalf("Disconnect-Request did not arrive at the NAS within 2 s of the revocation")
				}
			}
			for i, id := range tc.wantIDs {
				r, ok := got[id]
				if !ok {
					t.Fatalf("no Disconnect-Request for %s (got %v)", id, got)
				}
				if r.receivedAt.Sub(revoked) > 2*time.Second {
					t.Errorf("%s arrived %v after the revocation", id, r.receivedAt.Sub(revoked))
				}
				if r.code != radius.CodeDisconnectRequest || !r.authOK || !r.maOK {
					t.Errorf("%s: code %v, Request Authenticator ok %v, Message-Authenticator ok %v", id, r.code, r.authOK, r.maOK)
				}
				if res[i].Result != DynAuthACK || res[i].Attempts != 1 {
					t.Errorf("result %d = %+v, want ack in 1 attempt", i, res[i])
				}
				calling := string(r.packet.Get(attrCallingStationID))
				user := string(r.packet.Get(attrUserName))
				if !strings.HasPrefix(calling, "AA-BB-CC-00-00-0") || !strings.Contains(user, "@herts.example") {
					t.Errorf("%s: User-Name %q Calling-Station-Id %q", id, user, calling)
				}
				if nasIP := r.packet.Get(attrNASIPAddress); len(nasIP) != 4 || net.IP(nasIP).String() != "127.0.0.1" {
					t.Errorf("%s: NAS-IP-Address % x", id, nasIP)
				}
			}
			// Disconnected sessions leave the table; the others stay.
			if left := len(e.sessions(t, SessionFilter{})); left != 3-len(tc.wantIDs) {
				t.Errorf("%d sessions left, want %d", left, 3-len(tc.wantIDs))
			}
			if got := e.result(DynAuthTypeDisconnect, DynAuthACK); got != float64(len(tc.wantIDs)) {
				t.Errorf("dynauth_requests_total{disconnect,ack} = %v", got)
			}
			if n := len(e.audit.FilterMessage("disconnect-ack").All()); n != len(tc.wantIDs) {
				t.Errorf("%d audit lines, want %d", n, len(tc.wantIDs))
			}
		})
	}
}

// TestDisconnectRetransmission: after a timeout the same request is sent
// again byte for byte (same Identifier, Request Authenticator,
// Event-Timestamp) from the same source port, so the NAS can recognise the
// retransmission (RFC 5080 section 2.2.1); after a NAK the retry is a new
// request with a new Request Authenticator.
func TestDisconnectRetransmission(t *testing.T) {
	t.Run("timeout: identical retransmission", func(t *testing.T) {
		e := newDynEnv(t, DynAuthDisconnect, nasReply{drop: true}, nasReply{drop: true}, nasReply{ack: true})
		e.start(t, "dave@herts.example", "6ba7b810-9dad-11d1-80b4-00c04fd4300a", "acct-dave", "AA-BB-CC-00-00-0A")
		res, err := e.dyn.DisconnectHolder(context.Background(), "dave@herts.example")
		if err != nil || len(res) != 1 || res[0].Result != DynAuthACK || res[0].Attempts != 3 {
			t.Fatalf("DisconnectHolder = %+v, %v; want ack after 3 attempts", res, err)
		}
		got := e.nas.requests()
		if len(got) != 3 {
			t.Fatalf("NAS got %d requests, want 3", len(got))
		}
		for i := 1; i < len(got); i++ {
			if !bytes.Equal(got[i].raw, got[0].raw) {
				t.Errorf("transmission %d differs from the first (Identifier %d vs %d): not a retransmission", i+1, got[i].raw[1], got[0].raw[1])
			}
			if got[i].from.Port != got[0].from.Port {
				t.Errorf("transmission %d from port %d, the first from %d", i+1, got[i].from.Port, got[0].from.Port)
			}
		}
	})
	t.Run("NAK: a new request", func(t *testing.T) {
		e := newDynEnv(t, DynAuthDisconnect, nasReply{cause: 506}, nasReply{ack: true})
		e.start(t, "erin@herts.example", "6ba7b810-9dad-11d1-80b4-00c04fd4300b", "acct-erin", "AA-BB-CC-00-00-0B")
		res, err := e.dyn.DisconnectHolder(context.Background(), "erin@herts.example")
		if err != nil || len(res) != 1 || res[0].Result != DynAuthACK || res[0].Attempts != 2 {
			t.Fatalf("DisconnectHolder = %+v, %v; want ack after 2 attempts", res, err)
		}
		got := e.nas.requests()
		if len(got) != 2 {
			t.Fatalf("NAS got %d requests, want 2", len(got))
		}
		if bytes.Equal(got[0].raw[4:20], got[1].raw[4:20]) {
			t.Error("the request after a NAK has the same Request Authenticator: it must be a new request")
		}
		for i, r := range got {
			if !r.authOK || !r.maOK {
				t.Errorf("request %d: Request Authenticator ok %v, Message-Authenticator ok %v", i+1, r.authOK, r.maOK)
			}
		}
	})
}

// TestDisconnectNAK: a NAK is retried with backoff, then reported with its
// Error-Cause (metric + audit line); a NAK "session context not found" is
// final and the session leaves the table; no answer is a timeout.
func TestDisconnectNAK(t *testing.T) {
	cases := []struct {
		name      string
		script    []nasReply
		result    string
		attempts  int
		cause     string
		sessionIn bool
	}{
		{"NAK retried then reported", []nasReply{{cause: 506}}, DynAuthNAK, 3, "resources-unavailable", true},
		{"NAK then ACK", []nasReply{{cause: 506}, {ack: true}}, DynAuthACK, 2, "", false},
		{"session gone at the NAS is final", []nasReply{{cause: 503}}, DynAuthNAK, 1, "session-context-not-found", false},
		{"no answer", []nasReply{{drop: true}}, DynAuthTimeout, 3, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newDynEnv(t, DynAuthDisconnect, tc.script...)
			e.start(t, "carol@herts.example", "6ba7b810-9dad-11d1-80b4-00c04fd43009", "acct-carol", "AA-BB-CC-00-00-09")
			res, err := e.dyn.DisconnectHolder(context.Background(), "carol@herts.example")
			if err != nil || len(res) != 1 {
				t.Fatalf("DisconnectHolder = %+v, %v", res, err)
			}
			r := res[0]
			if r.Result != tc.result || r.Attempts != tc.attempts || r.CauseName != tc.cause {
				t.Errorf("result %+v, want %s after %d attempts, cause %q", r, tc.result, tc.attempts, tc.cause)
			}
			if n := len(e.nas.requests()); n != tc.attempts {
				t.Errorf("NAS got %d requests, want %d", n, tc.attempts)
			}
			if got := e.result(DynAuthTypeDisconnect, tc.result); got != 1 {
				t.Errorf("dynauth_requests_total{disconnect,%s} = %v, want 1", tc.result, got)
			}
			if got := testutil.ToFloat64(e.dyn.retries.WithLabelValues(DynAuthTypeDisconnect)); got != float64(tc.attempts-1) {
				t.Errorf("retries = %v, want %d", got, tc.attempts-1)
			}
			lines := e.audit.FilterMessage("disconnect-" + tc.result).All()
			if len(lines) != 1 {
				t.Fatalf("audit lines %v", e.audit.All())
			}
			f := lines[0].ContextMap()
			if tc.cause != "" && f[FieldDynAuthCause] != tc.cause {
				t.Errorf("audit error cause %v, want %s", f[FieldDynAuthCause], tc.cause)
			}
			if f[FieldAcctSessionID] != "acct-carol" || f[FieldEmail] != "carol@herts.example" || f[FieldDynAuthAttempts] != int64(tc.attempts) {
				t.Errorf("audit fields %v", f)
			}
			if in := len(e.sessions(t, SessionFilter{})) == 1; in != tc.sessionIn {
				t.Errorf("session still in the table: %v, want %v", in, tc.sessionIn)
			}
		})
	}
}

func TestReauthorize(t *testing.T) {
	cases := []struct {
		name     string
		mode     DynAuthMode
		wantCode radius.Code
		result   string
	}{
		{"NAS that re-VLANs gets CoA", DynAuthCoA, radius.CodeCoARequest, DynAuthACK},
		{"NAS that cannot gets Disconnect", DynAuthDisconnect, radius.CodeDisconnectRequest, DynAuthACK},
		{"NAS without dynamic authorization", DynAuthNone, 0, DynAuthSkipped},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newDynEnv(t, tc.mode)
			e.start(t, "dave@herts.example", "6ba7b810-9dad-11d1-80b4-00c04fd43010", "acct-dave", "AA-BB-CC-00-00-10")
			s := e.sessions(t, SessionFilter{ID: "acct-dave"})[0]
			r := e.dyn.Reauthorize(context.Background(), s, testVLANGuest, "policy-reload")
			if r.Result != tc.result {
				t.Errorf("result %+v, want %s", r, tc.result)
			}
			reqs := e.nas.requests()
			if tc.wantCode == 0 {
				if len(reqs) != 0 {
					t.Errorf("NAS got %d requests, want none", len(reqs))
				}
				return
			}
			if len(reqs) != 1 || reqs[0].code != tc.wantCode || !reqs[0].authOK || !reqs[0].maOK {
				t.Fatalf("NAS got %+v, want one signed %v", reqs, tc.wantCode)
			}
			if tc.wantCode == radius.CodeCoARequest && string(reqs[0].packet.Get(attrTunnelPrivateGroupID)) != "30" {
				t.Errorf("CoA VLAN %q, want 30", reqs[0].packet.Get(attrTunnelPrivateGroupID))
			}
		})
	}
}

func TestDynAuthResponseChecks(t *testing.T) {
	s := &Session{ID: "x", NASIP: "127.0.0.1", UserName: "u", Calling: "m"}
	req, err := encodeDynAuthRequest(DynAuthTypeDisconnect, 7, testSecret, s, 0, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !radius.IsAuthenticRequest(req, testSecret) {
		t.Fatal("request authenticator wrong")
	}
	rp, _ := radius.Parse(req, testSecret)
	good := func(code radius.Code) []byte {
		b, err := rp.Response(code).Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"ack", good(radius.CodeDisconnectACK), true},
		{"wrong identifier", func() []byte { b := good(radius.CodeDisconnectACK); b[1]++; return b }(), false},
		{"wrong secret", func() []byte {
			p := rp.Response(radius.CodeDisconnectACK)
			p.Secret = []byte("other")
			b, _ := p.Encode()
			return b
		}(), false},
		{"truncated", good(radius.CodeDisconnectACK)[:10], false},
		{"length beyond datagram", func() []byte { b := good(radius.CodeDisconnectACK); b[3] += 10; return b }(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, ok := checkDynAuthResponse(tc.b, req, testSecret); ok != tc.ok {
				t.Errorf("ok = %v, want %v", ok, tc.ok)
			}
		})
	}
}

// TestReconcile: a policy reload that moves a live session re-VLANs it by
// CoA on a NAS that can, disconnects it elsewhere or when the new rules
// reject it, and leaves unchanged placements alone.
func TestReconcile(t *testing.T) {
	staffTo := func(t *testing.T, seg policy.Segment) *policy.Policy {
		p := testPolicy(t)
		p.Rules = []policy.Rule{{Name: "staff-moved", Roles: []policy.Role{policy.RoleStaff}, Segment: seg}}
		if seg == policy.SegmentReject {
			p.Rules[0].RejectReason = "rule-reject"
		}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name     string
		mode     DynAuthMode
		seg      policy.Segment
		wantCode radius.Code
		wantVLAN int // in the table afterwards; 0: session gone
	}{
		{"unchanged placement: nothing sent", DynAuthCoA, policy.SegmentGeneral, 0, testVLANGen},
		{"moved, NAS re-VLANs by CoA", DynAuthCoA, policy.SegmentGuest, radius.CodeCoARequest, testVLANGuest},
		{"moved, NAS cannot: Disconnect", DynAuthDisconnect, policy.SegmentGuest, radius.CodeDisconnectRequest, 0},
		{"now rejected: Disconnect even with CoA", DynAuthCoA, policy.SegmentReject, radius.CodeDisconnectRequest, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newDynEnv(t, tc.mode)
			e.start(t, "erin@herts.example", "6ba7b810-9dad-11d1-80b4-00c04fd43011", "acct-erin", "AA-BB-CC-00-00-11")
			res, err := e.dyn.Reconcile(context.Background(), staffTo(t, tc.seg), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			reqs := e.nas.requests()
			if tc.wantCode == 0 {
				if len(res) != 0 || len(reqs) != 0 {
					t.Errorf("results %+v, NAS got %d requests; want none", res, len(reqs))
				}
			} else if len(res) != 1 || res[0].Result != DynAuthACK || len(reqs) != 1 || reqs[0].code != tc.wantCode {
				t.Fatalf("results %+v, NAS got %+v; want one acknowledged %v", res, reqs, tc.wantCode)
			}
			ss := e.sessions(t, SessionFilter{ID: "acct-erin"})
			switch {
			case tc.wantVLAN == 0 && len(ss) != 0:
				t.Errorf("session still in the table: %+v", ss[0])
			case tc.wantVLAN != 0 && (len(ss) != 1 || ss[0].VLAN != tc.wantVLAN):
				t.Errorf("sessions %v, want VLAN %d", sessionKeys(ss), tc.wantVLAN)
			}
			if tc.wantVLAN != 0 {
				// Reconciled: a second run sends nothing more.
				if res, _ := e.dyn.Reconcile(context.Background(), staffTo(t, tc.seg), time.Now()); len(res) != 0 {
					t.Errorf("second Reconcile sent %+v", res)
				}
			}
		})
	}
}
