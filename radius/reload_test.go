package radius

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"layeh.com/radius"

	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius/eap"
)

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestIdleConversationExpires: the janitor evicts an idle conversation
// without any further request; its State is then rejected.
func TestIdleConversationExpires(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	ff := &fakeFactory{msk: testMSK()}
	e := newEnv(t, envOptions{fake: ff, now: clock.now, convTimeout: 200 * time.Millisecond})
	c := udp{e.dial(t, nasIP)}
	state, start := startConversation(t, e, c, 1)
	clock.advance(time.Second)
	waitFor(t, "the janitor to evict the idle conversation", func() bool { return e.srv.convs.len() == 0 })
	if got := testutil.ToFloat64(e.srv.metrics.evictions.WithLabelValues(EvictIdle)); got != 1 {
		t.Fatalf("evictions{idle} = %v, want 1", got)
	}
	if ff.closedCount() != 1 {
		t.Fatal("idle session not closed")
	}
	req := accessRequest(t, 2, &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}, state)
	if p := checkResponse(t, exchange(t, c.UDP(), req), req); p.Code != radius.CodeAccessReject {
		t.Fatalf("expired State answered %v", p.Code)
	}
}

// TestHotReload: SetClients and SetPolicy take effect on the next request.
func TestHotReload(t *testing.T) {
	ff := &fakeFactory{msk: testMSK()}
	e := newEnv(t, envOptions{fake: ff})
	c := udp{e.dial(t, nasIP)}

	// A policy that sends staff to guest instead of general.
	p := testPolicy(t)
	p.Rules[0].Segment = policy.SegmentGuest
	p.Rules[0].SessionTimeout = 0
	if err := e.srv.SetPolicy(p); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.SetPolicy(nil); err == nil {
		t.Fatal("SetPolicy(nil) accepted")
	}
	st, start := startConversation(t, e, c, 1)
	req := accessRequest(t, 2, &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}, st)
	resp := checkResponse(t, exchange(t, c.UDP(), req), req)
	if got := string(resp.Get(attrTunnelPrivateGroupID)); got != "30" {
		t.Fatalf("VLAN %q after SetPolicy, want 30", got)
	}

	// Drop the NAS: its next request is from an unknown client.
	if err := e.srv.SetClients([]Client{{Name: "other", Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Secret: testSecret, Site: testSite}}); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.SetClients([]Client{{Name: "bad"}}); err == nil {
		t.Fatal("invalid clients accepted")
	}
	if _, err := c.UDP().Write(statusServer(t, 9)); err != nil {
		t.Fatal(err)
	}
	e.waitDropped(t, DropUnknownClient, 1)
}
