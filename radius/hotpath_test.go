package radius

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"layeh.com/radius"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

// TestDatagramBufferNotReusedEarly: the attributes of a request alias its
// pooled datagram buffer, so the buffer must not go back to the pool (which
// zeroes it) nor hold another datagram while the handler runs. Request A's
// handler is held while B, C, ... are read, processed and answered on other
// workers; then A's handler reads its User-Name, and the server adds its
// Proxy-State. Were A's buffer released or reused early, A's reply would
// carry zeros or another request's bytes. The retransmission of A is then
// answered from the duplicate cache byte for byte.
func TestDatagramBufferNotReusedEarly(t *testing.T) {
	held := make(chan struct{})
	entered := make(chan struct{})
	echo := func(w ResponseWriter, r *Request) {
		// Reply-Message = this request's User-Name, read now.
		v := append([]byte(nil), r.Get(attrUserName)...)
		if err := w.Write(radius.CodeAccessReject, radius.Attributes{{Type: attrReplyMessage, Attribute: v}}); err != nil {
			t.Errorf("write: %v", err)
		}
	}
	e := newEnv(t, envOptions{workers: 4, wrap: func(Handler) Handler {
		return HandlerFunc(func(w ResponseWriter, r *Request) {
			if bytes.HasPrefix(r.Get(attrUserName), []byte("first")) {
				close(entered)
				<-held
			}
			echo(w, r)
		})
	}})
	ca, cb := e.dial(t, nasIP), e.dial(t, nasIP) // two source ports: two NAS sockets

	name := func(prefix string, fill byte) []byte {
		return append([]byte(prefix), bytes.Repeat([]byte{fill}, 40)...)
	}
	reqA := signMA(rawPacket(byte(radius.CodeAccessRequest), 7, randomAuth(t),
		tattr{attrUserName, name("first-", 'A')}, tattr{attrProxyState, []byte("proxy-state-of-A")}), testSecret)
	if _, err := ca.Write(reqA); err != nil {
		t.Fatal(err)
	}
	select { // a synchronisation bound, not a timing assertion
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("A's handler never saw its User-Name: its datagram buffer was released before the handler ran")
	}
	for i := range 8 { // more requests than workers and pooled buffers in flight
		fill := byte('B' + i)
		reqB := signMA(rawPacket(byte(radius.CodeAccessRequest), 7, randomAuth(t),
			tattr{attrUserName, name("other-", fill)}, tattr{attrProxyState, bytes.Repeat([]byte{fill}, 16)}), testSecret)
		p := checkResponse(t, exchange(t, cb, reqB), reqB)
		if got := p.Get(attrReplyMessage); !bytes.Equal(got, name("other-", fill)) {
			t.Fatalf("B%d reply names %q", i, got)
		}
		if got := p.Get(attrProxyState); !bytes.Equal(got, bytes.Repeat([]byte{fill}, 16)) {
			t.Fatalf("B%d Proxy-State %q", i, got)
		}
	}
	close(held)
	replyA := read(t, ca)
	p := checkResponse(t, replyA, reqA)
	if got := p.Get(attrReplyMessage); !bytes.Equal(got, name("first-", 'A')) {
		t.Fatalf("A's handler read User-Name %q after other requests were served: its datagram buffer was reused", got)
	}
	if got := p.Get(attrProxyState); string(got) != "proxy-state-of-A" {
		t.Fatalf("A's Proxy-State %q: its datagram buffer was reused", got)
	}
	if again := exchange(t, ca, reqA); !bytes.Equal(again, replyA) {
		t.Fatalf("duplicate-cache replay differs from the reply sent:\n%x\n%x", again, replyA)
	}
}

// TestWriteAfterHandlerReturned: a handler that keeps its ResponseWriter
// and writes after returning gets an error and nothing is sent: by then the
// request's bytes (Proxy-State) may be another request's.
func TestWriteAfterHandlerReturned(t *testing.T) {
	kept := make(chan ResponseWriter, 1)
	e := newEnv(t, envOptions{wrap: func(inner Handler) Handler {
		return HandlerFunc(func(w ResponseWriter, r *Request) {
			if r.Identifier == 1 {
				kept <- w // and return without writing
				return
			}
			inner.ServeRADIUS(w, r)
		})
	}})
	c := e.dial(t, nasIP)
	if _, err := c.Write(statusServer(t, 1, tattr{attrProxyState, []byte("ps")})); err != nil {
		t.Fatal(err)
	}
	w := <-kept
	waitFor(t, "the request to be abandoned", func() bool { return e.srv.dups.len() == 0 })
	if err := w.Write(radius.CodeAccessAccept, nil); err != errWriteAfterReturn {
		t.Fatalf("late Write: %v, want errWriteAfterReturn", err)
	}
	assertNoReply(t, c)
}

// TestParsePacketAliases: values alias the datagram with their capacity
// cut, so appending to one never overwrites the next attribute.
func TestParsePacketAliases(t *testing.T) {
	b := rawPacket(byte(radius.CodeAccessRequest), 1, [16]byte{}, tattr{attrUserName, []byte("ab")}, tattr{attrState, []byte("cd")}, tattr{attrClass, nil})
	p, err := parsePacket(b, testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Attributes) != 3 {
		t.Fatalf("%d attributes", len(p.Attributes))
	}
	v := p.Attributes[0].Attribute
	if &v[0] != &b[headerLen+2] {
		t.Fatal("value is a copy, not an alias of the datagram")
	}
	_ = append(v, 'X')
	if got := p.Get(attrState); string(got) != "cd" {
		t.Fatalf("append to User-Name overwrote State: %q", got)
	}
	if p.Attributes[2].Attribute != nil {
		t.Fatal("empty value is not nil (radius.ParseAttributes leaves it nil)")
	}
}

// FuzzParsePacket: parsePacket accepts exactly what radius.Parse accepts
// and yields the same header and attributes (types, values, nil for empty).
func FuzzParsePacket(f *testing.F) {
	f.Add(rawPacket(1, 1, [16]byte{1}, tattr{attrUserName, []byte("alice")}, tattr{attrClass, nil}))
	f.Add(accessRequest(f, 2, identityResponse(2, "bob"), []byte("0123456789abcdef")))
	f.Add([]byte{1, 1, 0, 22, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1})
	f.Add([]byte{1, 1, 0, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := radius.Parse(b, testSecret)
		got, gerr := parsePacket(b, testSecret)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("radius.Parse: %v; parsePacket: %v", werr, gerr)
		}
		if werr != nil {
			return
		}
		if got.Code != want.Code || got.Identifier != want.Identifier || got.Authenticator != want.Authenticator || !bytes.Equal(got.Secret, want.Secret) {
			t.Fatalf("header differs: %+v vs %+v", got, want)
		}
		if len(got.Attributes) != len(want.Attributes) {
			t.Fatalf("%d attributes, radius.Parse %d", len(got.Attributes), len(want.Attributes))
		}
		for i := range want.Attributes {
			g, w := got.Attributes[i], want.Attributes[i]
			if g.Type != w.Type || !bytes.Equal(g.Attribute, w.Attribute) || (g.Attribute == nil) != (w.Attribute == nil) {
				t.Fatalf("attribute %d: %d %x, radius.Parse %d %x", i, g.Type, g.Attribute, w.Type, w.Attribute)
			}
		}
	})
}

// steppingClock advances by step on every reading, so that every duration
// between two readings is at least step.
type steppingClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *steppingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

// TestRequestDurationHistogram: after a real EAP-TLS authentication and a
// Status-Server, nacd_radius_request_duration_seconds has one observation
// per reply sent, by type, none of them zero (the clock steps 1 ms per
// reading, so an observation that did not span read to send would fall in
// the lowest bucket, 100 us); a duplicate replay and a drop add nothing.
func TestRequestDurationHistogram(t *testing.T) {
	pki := newDevicePKI(t)
	clock := &steppingClock{t: time.Now(), step: time.Millisecond}
	e := newEnv(t, envOptions{verifier: pki.verifier, now: clock.now})
	c := e.dial(t, nasIP)
	leaf := pki.issuing.IssueDevice(t, testpki.Device{CommonName: "laptop-9", Email: "erin@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, KeyType: testpki.ECDSAP256})
	peer := newPeer(t, leaf, tls.VersionTLS13)
	defer peer.Close()
	p, lastReq := authenticate(t, c, peer)
	if p.Code != radius.CodeAccessAccept {
		t.Fatalf("code %v, want Access-Accept", p.Code)
	}
	ss := statusServer(t, 200)
	checkResponse(t, exchange(t, c, ss), ss)

	// Neither a duplicate replay nor a drop is observed.
	exchange(t, c, lastReq)
	e.waitDropped(t, DropDuplicateReplayed, 1)
	bad := append([]byte(nil), ss...)
	bad[len(bad)-1] ^= 1
	if _, err := c.Write(bad); err != nil {
		t.Fatal(err)
	}
	e.waitDropped(t, DropBadMessageAuthenticator, 1)

	replies := 0.0
	for _, code := range []string{"access_accept", "access_reject", "access_challenge"} {
		replies += testutil.ToFloat64(e.srv.metrics.responses.WithLabelValues(code))
	}
	if replies < 3 {
		t.Fatalf("%v Access replies counted; an EAP-TLS authentication takes several round trips", replies)
	}
	tests := []struct {
		typ  string
		want uint64
	}{
		{"access_request", uint64(replies) - 1}, // the Status-Server's Access-Accept is not an Access-Request's
		{"status_server", 1},
		{"accounting_request", 0},
		{"other", 0},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			h := histogram(t, e, tt.typ)
			if h.GetSampleCount() != tt.want {
				t.Fatalf("%d observations, want %d (replies sent)", h.GetSampleCount(), tt.want)
			}
			if tt.want == 0 {
				return
			}
			if lowest := h.GetBucket()[0]; lowest.GetCumulativeCount() != 0 {
				t.Fatalf("%d observations <= %v s: a reply observed with no time since its read", lowest.GetCumulativeCount(), lowest.GetUpperBound())
			}
			if h.GetSampleSum() <= 0 {
				t.Fatalf("sum %v", h.GetSampleSum())
			}
		})
	}
}

// histogram gathers nacd_radius_request_duration_seconds{type=typ}.
func histogram(t *testing.T, e *testEnv, typ string) *dto.Histogram {
	t.Helper()
	m := gatherSeries(t, e.reg, "nacd_radius_request_duration_seconds", "type", typ)
	if m == nil {
		t.Fatalf("no nacd_radius_request_duration_seconds{type=%q}", typ)
	}
	return m.GetHistogram()
}

// gatherSeries returns the series of metric name whose label has value,
// or nil.
func gatherSeries(tb testing.TB, g prometheus.Gatherer, name, label, value string) *dto.Metric {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m
				}
			}
		}
	}
	return nil
}

// TestInterleavedAuthentications: EAP-TLS conversations run concurrently
// through the server, their round trips interleaved on the workers, so
// datagram buffers and the EAP encoding scratch buffers pass between
// conversations. Any buffer given back before its request or reply was done
// with (they are zeroed when given back) corrupts a TLS flight or a State,
// and that conversation fails instead of ending in Access-Accept with its
// own identity.
func TestInterleavedAuthentications(t *testing.T) {
	pki := newDevicePKI(t)
	e := newEnv(t, envOptions{verifier: pki.verifier, workers: 4})
	const n = 6
	type result struct {
		code       radius.Code
		user, want string
		err        string
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for i := range n {
		name := "laptop-" + itoa(i)
		email := "user" + itoa(i) + "@herts.example"
		leaf := pki.issuing.IssueDevice(t, testpki.Device{CommonName: name, Email: email, Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff})
		c := e.dial(t, nasIP)
		v := uint16(tls.VersionTLS13)
		if i%2 == 1 {
			v = tls.VersionTLS12
		}
		peer := newPeer(t, leaf, v)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer peer.Close()
			rt := &recordingTB{TB: t}
			p, _ := func() (p *radius.Packet, req []byte) {
				defer func() { recover() }() // recordingTB.Fatalf panics to stop this goroutine
				return authenticate(rt, c, peer)
			}()
			if p == nil {
				results <- result{err: rt.msg}
				return
			}
			results <- result{code: p.Code, user: string(p.Get(attrUserName)), want: email}
		}()
	}
	wg.Wait()
	close(results)
	seen := map[string]bool{}
	for r := range results {
		if r.code != radius.CodeAccessAccept {
			t.Fatalf("a conversation did not end in Access-Accept: code %v: %s", r.code, r.err)
		}
		if r.user != r.want {
			t.Fatalf("Access-Accept names %q, want %q", r.user, r.want)
		}
		seen[r.user] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct accepted identities, want %d", len(seen), n)
	}
}

// recordingTB lets a helper that calls Fatalf run off the test goroutine:
// it records the message and stops the goroutine by panicking.
type recordingTB struct {
	testing.TB
	msg string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(r.msg)
}
func (r *recordingTB) Fatal(args ...any) {
	r.msg = fmt.Sprint(args...)
	panic(r.msg)
}

// TestRequestTypesBounded: every packet's requestType is one of
// requestTypes, whose duration series exist from the start.
func TestRequestTypesBounded(t *testing.T) {
	for code := range 256 {
		typ := requestType([]byte{byte(code)})
		if !slices.Contains(requestTypes, typ) {
			t.Fatalf("code %d: type %q not in requestTypes", code, typ)
		}
	}
	if typ := requestType(nil); !slices.Contains(requestTypes, typ) {
		t.Fatalf("empty datagram: type %q not in requestTypes", typ)
	}
}
