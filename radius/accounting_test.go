package radius

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
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
	"github.com/herts-council/nacd/internal/testtool"
	"github.com/herts-council/nacd/policy"
)

// acctEnv is a server with accounting over a real session store, the
// authentication and accounting sockets on loopback, and the NAS
// 127.0.0.1 ("ap-wallfields") as its client.
type acctEnv struct {
	srv       *Server
	auth      *net.UDPAddr
	acct      *net.UDPAddr
	table     *SessionTable
	reg       *prometheus.Registry
	accessLog *observer.ObservedLogs
	pki       *testDevicePKI
	clock     *testClock
}

type acctOptions struct {
	store   SessionStore // nil: a fresh embedded store
	coaPort int
	dynAuth DynAuthMode
	idle    time.Duration
	logger  *zap.Logger
}

// testClock is a settable clock (for idle expiry); zero = real time.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func newAcctEnv(tb testing.TB, o acctOptions) *acctEnv {
	tb.Helper()
	e := &acctEnv{reg: prometheus.NewRegistry(), pki: newDevicePKI(tb), clock: &testClock{}}
	if o.store == nil {
		st, err := OpenBoltSessions(tb.TempDir() + "/" + SessionsDBFile)
		if err != nil {
			tb.Fatal(err)
		}
		o.store = st
	}
	table, err := NewSessionTable(SessionTableConfig{Store: o.store, IdleTimeout: o.idle, Registerer: e.reg, Now: e.clock.now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { table.Close() })
	e.table = table
	core, logs := observer.New(zapcore.InfoLevel)
	e.accessLog = logs
	srv, err := NewServer(Config{
		Clients: []Client{{Name: "ap-wallfields", Networks: []netip.Prefix{netip.MustParsePrefix(nasIP + "/32")},
			Secret: testSecret, Site: testSite, CoAPort: o.coaPort, DynAuth: o.dynAuth}},
		EAPTLS:     testEAPTLSConfig(tb),
		Verifier:   e.pki.verifier,
		Policy:     testPolicy(tb),
		Sessions:   table,
		Logger:     o.logger,
		AccessLog:  zap.New(core),
		Registerer: e.reg,
	})
	if err != nil {
		tb.Fatalf("NewServer: %v", err)
	}
	e.srv = srv
	authConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	acctConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e.auth, e.acct = authConn.LocalAddr().(*net.UDPAddr), acctConn.LocalAddr().(*net.UDPAddr)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(authConn) }()
	go func() { defer wg.Done(); srv.ServeAccounting(acctConn) }()
	tb.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return e
}

// staffLeaf issues a staff device certificate (placed on general).
func (e *acctEnv) staffLeaf(tb testing.TB, email, uuid string) *testpki.Leaf {
	return e.pki.issuing.IssueDevice(tb, testpki.Device{CommonName: "laptop", Email: email, UUID: uuid,
		Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff})
}

// accept runs a real EAP-TLS authentication of leaf over UDP and returns
// the Access-Accept's Class.
func (e *acctEnv) accept(tb testing.TB, leaf *testpki.Leaf, calling string) []byte {
	tb.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(nasIP)}, e.auth)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	p, _ := authenticate(tb, c, newPeer(tb, leaf, 0), tattr{attrCallingStationID, []byte(calling)})
	if p.Code != radius.CodeAccessAccept {
		tb.Fatalf("authentication: %v, want Access-Accept", p.Code)
	}
	class := p.Get(attrClass)
	if !bytes.HasPrefix(class, []byte("nacd:")) {
		tb.Fatalf("Accept Class %q, want nacd:<id>", class)
	}
	return class
}

// radclient sends the packets (radclient attribute lists) to the
// accounting port with secret and returns its output; err when a packet
// got no answer.
func radclient(tb testing.TB, addr *net.UDPAddr, secret string, packets ...string) (string, error) {
	tb.Helper()
	// A generous timeout: under -race on a loaded CI machine a stored
	// reply may take more than radclient's usual second.
	timeout := "3"
	if secret != string(testSecret) {
		timeout = "1" // no answer is expected: do not wait long
	}
	bin := testtool.Require(tb, "radclient")
	cmd := exec.Command(bin, "-x", "-r", "1", "-t", timeout, addr.String(), "acct", secret)
	cmd.Stdin = strings.NewReader(strings.Join(packets, "\n\n") + "\n")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func acctPacket(status, sessionID string, extra ...string) string {
	lines := append([]string{
		"Acct-Status-Type = " + status,
		fmt.Sprintf("Acct-Session-Id = %q", sessionID),
		"NAS-IP-Address = 127.0.0.1",
		`NAS-Identifier = "wf-ap-01"`,
		`User-Name = "alice@herts.example"`,
		`Calling-Station-Id = "AA-BB-CC-00-00-01"`,
		`Called-Station-Id = "00-11-22-33-44-55:Council"`,
	}, extra...)
	return strings.Join(lines, "\n")
}

func (e *acctEnv) acctCount(status string) float64 {
	return testutil.ToFloat64(e.srv.acct.requests.WithLabelValues(status, "ap-wallfields"))
}

func (e *acctEnv) dropped(cause string) float64 {
	return testutil.ToFloat64(e.srv.metrics.dropped.WithLabelValues(cause))
}

func (e *acctEnv) sessions(tb testing.TB, f SessionFilter) []*Session {
	tb.Helper()
	ss, err := e.table.List(context.Background(), f)
	if err != nil {
		tb.Fatal(err)
	}
	return ss
}

// TestAccountingRadclient: radclient as the NAS. A full EAP-TLS Accept
// first, then Start (echoing its Class) / Interim-Update / Stop.
func TestAccountingRadclient(t *testing.T) {
	e := newAcctEnv(t, acctOptions{})
	const uuid = "6ba7b810-9dad-11d1-80b4-00c04fd43001"
	leaf := e.staffLeaf(t, "alice@herts.example", uuid)
	class := e.accept(t, leaf, "AA-BB-CC-00-00-01")
	classAttr := "Class = 0x" + hex.EncodeToString(class)
	serial := policy.IdentityFromCertificate(leaf.Cert, policy.DefaultOIDs()).Serial

	steps := []struct {
		name   string
		packet string
		check  func(t *testing.T, ss []*Session)
	}{
		{"start links the Accept through Class", acctPacket("Start", "sess-0001", classAttr), func(t *testing.T, ss []*Session) {
			if len(ss) != 1 {
				t.Fatalf("%d sessions, want 1", len(ss))
			}
			s := ss[0]
			want := Session{ID: "sess-0001", NASIP: "127.0.0.1", NASName: "ap-wallfields", NASIdentifier: "wf-ap-01", NASIPAddress: "127.0.0.1",
				Site: testSite, UserName: "alice@herts.example", Calling: "AA-BB-CC-00-00-01", Called: "00-11-22-33-44-55:Council", SSID: "Council",
				ClassID: string(class[len("nacd:"):]), Serial: serial, DeviceUUID: uuid, Email: "alice@herts.example", Segment: "general", VLAN: testVLANGen}
			got := *s
			got.Started, got.Updated, got.Identity = time.Time{}, time.Time{}, nil
			if id := s.Identity; id == nil || id.Serial != serial || id.Role != policy.RoleStaff || id.Status != policy.CertOK {
				t.Errorf("session identity %+v, want the Accept's verified identity", id)
			}
			if got != want {
				t.Errorf("session\n got %+v\nwant %+v", got, want)
			}
			if s.Started.IsZero() || time.Since(s.Started) > time.Minute {
				t.Errorf("Started = %v", s.Started)
			}
		}},
		{"interim counts octets with gigawords, keeps the link", acctPacket("Interim-Update", "sess-0001",
			"Acct-Session-Time = 600", "Acct-Input-Octets = 1000", "Acct-Input-Gigawords = 2", "Acct-Output-Octets = 3000",
			"Acct-Input-Packets = 40", "Acct-Output-Packets = 50"), func(t *testing.T, ss []*Session) {
			if len(ss) != 1 {
				t.Fatalf("%d sessions, want 1", len(ss))
			}
			s := ss[0]
			if s.InOctets != 2<<32+1000 || s.OutOctets != 3000 || s.InPackets != 40 || s.OutPackets != 50 || s.SessionTime != 600 {
				t.Errorf("counters: %+v", s)
			}
			if s.DeviceUUID != uuid || s.Serial != serial || s.VLAN != testVLANGen {
				t.Errorf("interim lost the Class linkage: %+v", s)
			}
		}},
		{"start of a second session with Message-Authenticator", acctPacket("Start", "sess-0002", "Message-Authenticator = 0x00",
			`Calling-Station-Id = "AA-BB-CC-00-00-02"`), func(t *testing.T, ss []*Session) {
			if len(ss) != 2 {
				t.Fatalf("%d sessions, want 2", len(ss))
			}
		}},
		{"stop removes it", acctPacket("Stop", "sess-0001", "Acct-Session-Time = 700", "Acct-Terminate-Cause = User-Request"), func(t *testing.T, ss []*Session) {
			if len(ss) != 1 || ss[0].ID != "sess-0002" {
				t.Errorf("sessions %v, want only sess-0002", sessionKeys(ss))
			}
		}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			out, err := radclient(t, e.acct, string(testSecret), st.packet)
			if err != nil || !strings.Contains(out, "Accounting-Response") {
				t.Fatalf("radclient: %v\n%s", err, out)
			}
			st.check(t, e.sessions(t, SessionFilter{}))
		})
	}
	for status, want := range map[string]float64{AcctStatusStart: 2, AcctStatusInterim: 1, AcctStatusStop: 1} {
		if got := e.acctCount(status); got != want {
			t.Errorf("accounting_requests_total{status_type=%s} = %v, want %v", status, got, want)
		}
	}
	var lines []string
	for _, l := range e.accessLog.All() {
		if strings.HasPrefix(l.Message, "accounting-") {
			lines = append(lines, l.Message)
		}
	}
	if strings.Join(lines, ",") != "accounting-start,accounting-interim-update,accounting-start,accounting-stop" {
		t.Errorf("access log accounting lines = %v", lines)
	}
	stop := e.accessLog.FilterMessage("accounting-stop").All()
	if len(stop) != 1 || stop[0].ContextMap()[FieldAcctTerminateCause] != "user-request" || stop[0].ContextMap()[FieldDeviceUUID] != uuid {
		t.Errorf("stop line = %v", stop)
	}
}

func TestAccountingDrops(t *testing.T) {
	e := newAcctEnv(t, acctOptions{})
	cases := []struct {
		name   string
		send   func(t *testing.T)
		cause  string
		stored int
	}{
		{"wrong shared secret", func(t *testing.T) {
			if out, err := radclient(t, e.acct, "not-the-secret", acctPacket("Start", "wrong-secret")); err == nil {
				t.Errorf("radclient got an answer with a wrong secret:\n%s", out)
			}
		}, DropBadAuthenticator, 0},
		{"access-request on the accounting port", func(t *testing.T) {
			c := dialFrom(t, nasIP, e.acct)
			c.Write(signMA(rawPacket(byte(radius.CodeAccessRequest), 3, randomAuth(t), tattr{attrUserName, []byte("x")}), testSecret))
			assertNoAcctReply(t, c)
		}, DropUnsupportedCode, 0},
		{"accounting-request on the authentication port", func(t *testing.T) {
			c := dialFrom(t, nasIP, e.auth)
			c.Write(acctRequest(4, testSecret, statusAttr(acctStart), tattr{attrAcctSessionID, []byte("auth-port")}))
			assertNoAcctReply(t, c)
		}, DropUnsupportedCode, 0},
		{"unknown NAS", func(t *testing.T) {
			c := dialFrom(t, unknownIP, e.acct)
			c.Write(acctRequest(5, testSecret, statusAttr(acctStart), tattr{attrAcctSessionID, []byte("unknown-nas")}))
		}, DropUnknownClient, 0},
		{"no Acct-Session-Id", func(t *testing.T) {
			c := dialFrom(t, nasIP, e.acct)
			c.Write(acctRequest(6, testSecret, statusAttr(acctStart)))
			assertNoAcctReply(t, c)
		}, DropMalformed, 0},
		{"bad Message-Authenticator", func(t *testing.T) {
			c := dialFrom(t, nasIP, e.acct)
			b := acctRequest(7, testSecret, statusAttr(acctStart), tattr{attrAcctSessionID, []byte("bad-ma")}, tattr{attrMessageAuthenticator, make([]byte, 16)})
			c.Write(b) // authenticator right, Message-Authenticator all zeros
			assertNoAcctReply(t, c)
		}, DropBadMessageAuthenticator, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.dropped(tc.cause)
			tc.send(t)
			waitFor(t, "drop "+tc.cause, func() bool { return e.dropped(tc.cause) == before+1 })
			if n := len(e.sessions(t, SessionFilter{})); n != tc.stored {
				t.Errorf("%d sessions stored, want %d", n, tc.stored)
			}
		})
	}
	if got := e.acctCount(AcctStatusStart); got != 0 {
		t.Errorf("accounting_requests_total{start} = %v after drops only", got)
	}
}

// TestAccountingDuplicate: a retransmission (same bytes) is answered from
// the duplicate cache with the same reply and applied and counted once.
func TestAccountingDuplicate(t *testing.T) {
	e := newAcctEnv(t, acctOptions{})
	c := dialFrom(t, nasIP, e.acct)
	req := acctRequest(42, testSecret, statusAttr(acctStart), tattr{attrAcctSessionID, []byte("dup-1")})
	first := exchange(t, c, req)
	second := exchange(t, c, req)
	if !bytes.Equal(first, second) {
		t.Errorf("replayed reply differs")
	}
	if !radius.IsAuthenticResponse(first, req, testSecret) || first[0] != byte(radius.CodeAccountingResponse) {
		t.Errorf("reply is not an authentic Accounting-Response: % x", first)
	}
	if got := e.acctCount(AcctStatusStart); got != 1 {
		t.Errorf("accounting_requests_total{start} = %v, want 1 (duplicate not counted)", got)
	}
	if got := e.dropped(DropDuplicateReplayed); got != 1 {
		t.Errorf("dropped{duplicate_replayed} = %v, want 1", got)
	}
	if n := len(e.accessLog.FilterMessage("accounting-start").All()); n != 1 {
		t.Errorf("%d access log lines, want 1", n)
	}
}

func TestAccountingOnOffClearsNAS(t *testing.T) {
	for _, status := range []string{"Accounting-On", "Accounting-Off"} {
		t.Run(status, func(t *testing.T) {
			e := newAcctEnv(t, acctOptions{})
			ctx := context.Background()
			// Another NAS's session stays.
			other := &Session{ID: "other", NASIP: "10.9.9.9", NASName: "elsewhere", Site: "x", Started: time.Now(), Updated: time.Now()}
			if err := e.table.Update(ctx, other); err != nil {
				t.Fatal(err)
			}
			if out, err := radclient(t, e.acct, string(testSecret), acctPacket("Start", "a"), acctPacket("Start", "b")); err != nil {
				t.Fatalf("radclient: %v\n%s", err, out)
			}
			if n := len(e.sessions(t, SessionFilter{NAS: "ap-wallfields"})); n != 2 {
				t.Fatalf("%d sessions before %s, want 2", n, status)
			}
			out, err := radclient(t, e.acct, string(testSecret), "Acct-Status-Type = "+status+"\nNAS-IP-Address = 127.0.0.1\nAcct-Session-Id = \"0\"")
			if err != nil {
				t.Fatalf("radclient: %v\n%s", err, out)
			}
			if got := sessionKeys(e.sessions(t, SessionFilter{})); strings.Join(got, ",") != "10.9.9.9/other" {
				t.Errorf("after %s: %v, want only the other NAS's session", status, got)
			}
			lines := e.accessLog.FilterMessage("accounting-" + strings.ToLower(status)).All()
			if len(lines) != 1 || lines[0].ContextMap()[FieldSessionsCleared] != int64(2) {
				t.Errorf("access log: %v", lines)
			}
		})
	}
}

func TestAccountingIdleExpiry(t *testing.T) {
	e := newAcctEnv(t, acctOptions{idle: 10 * time.Minute})
	t0 := time.Now()
	c := dialFrom(t, nasIP, e.acct)
	exchange(t, c, acctRequest(1, testSecret, statusAttr(acctStart), tattr{attrAcctSessionID, []byte("quiet")}))
	exchange(t, c, acctRequest(2, testSecret, statusAttr(acctStart), tattr{attrAcctSessionID, []byte("chatty")}))
	cases := []struct {
		name string
		at   time.Duration
		send string // interim for this session first
		want string
	}{
		{"both live before the idle timeout", 9 * time.Minute, "chatty", "127.0.0.1/chatty,127.0.0.1/quiet"},
		{"the quiet one expires", 11 * time.Minute, "", "127.0.0.1/chatty"},
		{"then the other", 20 * time.Minute, "", ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.send != "" {
				// The server stamps Updated with its receive time: move
				// the session's last update by writing it at the clock.
				e.clock.set(t0.Add(tc.at))
				s := e.sessions(t, SessionFilter{ID: tc.send})[0]
				s.Updated = t0.Add(tc.at)
				if err := e.table.Update(context.Background(), s); err != nil {
					t.Fatal(err)
				}
			}
			e.clock.set(t0.Add(tc.at))
			if _, err := e.table.ExpireIdle(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := sessionKeys(e.sessions(t, SessionFilter{}))
			slices.Sort(got)
			if strings.Join(got, ",") != tc.want {
				t.Errorf("step %d: sessions %v, want %q", i, got, tc.want)
			}
		})
	}
}

// assertNoAcctReply is assertNoReply for either port: the Status-Server
// probe's answer must be the first datagram back.
func assertNoAcctReply(tb testing.TB, c *net.UDPConn) {
	tb.Helper()
	resp := exchange(tb, c, statusServer(tb, 0xEE))
	if resp[1] != 0xEE || (resp[0] != byte(radius.CodeAccessAccept) && resp[0] != byte(radius.CodeAccountingResponse)) {
		tb.Fatalf("got a reply (code %d id %d) before the probe's answer: the request was not dropped", resp[0], resp[1])
	}
}

func dialFrom(tb testing.TB, from string, to *net.UDPAddr) *net.UDPConn {
	tb.Helper()
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(from)}, to)
	if err != nil {
		tb.Fatalf("dial from %s: %v", from, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func statusAttr(v uint32) tattr {
	return tattr{attrAcctStatusType, []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}}
}

// acctRequest builds an Accounting-Request with the RFC 2866 Request
// Authenticator (a Message-Authenticator attribute given is left as is).
func acctRequest(id byte, secret []byte, attrs ...tattr) []byte {
	return acctRequestRaw(rawPacket(byte(radius.CodeAccountingRequest), id, [16]byte{}, attrs...), secret)
}

// acctRequestRaw signs b (Authenticator field zero) in place.
func acctRequestRaw(b, secret []byte) []byte {
	h := md5.New()
	h.Write(b)
	h.Write(secret)
	copy(b[4:20], h.Sum(nil))
	return b
}

// BenchmarkAccounting measures Accounting-Requests handled per second over
// UDP loopback, each answered only after the store has it: parallel NAS
// sockets each sending Interim-Updates for their own session.
func BenchmarkAccounting(b *testing.B) {
	for _, kind := range storeKinds {
		b.Run(kind.name, func(b *testing.B) {
			e := newAcctEnv(b, acctOptions{store: kind.open(b)()})
			var n atomic.Int32
			b.SetParallelism(4) // 8 NASes at once on 2 cores: bbolt batches their writes
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := dialFrom(b, nasIP, e.acct)
				sid := []byte(fmt.Sprintf("bench-%d", n.Add(1)))
				buf := make([]byte, 4096)
				var id byte
				for pb.Next() {
					id++
					req := acctRequest(id, testSecret, statusAttr(acctInterimUpdate), tattr{attrAcctSessionID, sid},
						tattr{attrUserName, []byte("alice@herts.example")}, tattr{attrCallingStationID, []byte("AA-BB-CC-00-00-01")},
						tattr{attrAcctInputOctets, []byte{0, 0, 1, id}})
					if _, err := c.Write(req); err != nil {
						b.Error(err)
						return
					}
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Read(buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// TestAccountingStatusServer: radclient's Status-Server on the accounting
// port gets an Accounting-Response (RFC 5997 section 3) it accepts.
func TestAccountingStatusServer(t *testing.T) {
	e := newAcctEnv(t, acctOptions{})
	bin := testtool.Require(t, "radclient")
	cmd := exec.Command(bin, "-x", "-r", "1", "-t", "2", e.acct.String(), "status", string(testSecret))
	cmd.Stdin = strings.NewReader("Message-Authenticator = 0x00\n")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Received Accounting-Response") {
		t.Errorf("radclient status: %v\n%s", err, out)
	}
	if n := len(e.sessions(t, SessionFilter{})); n != 0 {
		t.Errorf("Status-Server stored %d sessions", n)
	}
}
