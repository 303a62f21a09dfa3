package radius

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"layeh.com/radius"
)

// memSessions is an in-memory SessionStore for fuzzing (no disk per input).
type memSessions struct {
	mu sync.Mutex
	m  map[SessionKey]*Session
}

func (m *memSessions) Upsert(_ context.Context, s *Session, merge func(old, cur *Session) *Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v := merge(m.m[s.Key()], s); v != nil {
		m.m[s.Key()] = v
	}
	return nil
}

func (m *memSessions) Delete(_ context.Context, k SessionKey) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.m[k]
	delete(m.m, k)
	return s, nil
}

func (m *memSessions) DeleteNAS(_ context.Context, nas string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k := range m.m {
		if k.NASIP == nas {
			delete(m.m, k)
			n++
		}
	}
	return n, nil
}

func (m *memSessions) DeleteIdle(_ context.Context, before time.Time) ([]*Session, error) {
	return nil, nil
}

func (m *memSessions) List(_ context.Context, f SessionFilter) ([]*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Session
	for _, s := range m.m {
		if f.match(s) {
			out = append(out, s)
		}
	}
	sortSessions(out)
	return out, nil
}

func (m *memSessions) CountBySite(context.Context) (map[string]int, error) { return nil, nil }
func (m *memSessions) Close() error                                        { return nil }

// replyConn is a PacketConn that counts what the server writes.
type replyConn struct {
	net.PacketConn
	replies atomic.Int32
}

func (c *replyConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.replies.Add(1)
	return len(b), nil
}

// FuzzAccountingRequest drives the whole accounting request path (client
// lookup, verification, duplicate cache, handler, store) with arbitrary
// attributes in a correctly signed Accounting-Request, and with arbitrary
// raw datagrams. It must never panic, and must answer only a request that
// carries an Acct-Status-Type (and an Acct-Session-Id for Start, Stop and
// Interim-Update).
func FuzzAccountingRequest(f *testing.F) {
	f.Add([]byte{attrAcctStatusType, 6, 0, 0, 0, 1, attrAcctSessionID, 5, 'a', 'b', 'c'}, false)
	f.Add([]byte{attrAcctStatusType, 6, 0, 0, 0, 3, attrAcctSessionID, 3, 'x', attrClass, 9, 'n', 'a', 'c', 'd', ':', 'i', 'd'}, false)
	f.Add([]byte{attrAcctStatusType, 6, 0, 0, 0, 7}, false)
	f.Add([]byte{attrAcctStatusType, 6, 0, 0, 0, 2, attrAcctSessionID, 3, 'x', attrAcctInputGigawords, 6, 255, 255, 255, 255}, false)
	f.Add([]byte{attrTunnelPrivateGroupID, 4, 0, '1', '0', attrNASIPv6Address, 18, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, false)
	f.Add(acctRequest(1, testSecret, statusAttr(acctStart), tattr{attrAcctSessionID, []byte("s")}), true)
	st := &memSessions{m: map[SessionKey]*Session{}}
	table, err := NewSessionTable(SessionTableConfig{Store: st})
	if err != nil {
		f.Fatal(err)
	}
	srv, err := NewServer(Config{
		Clients:  []Client{{Name: "nas", Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Secret: testSecret, Site: testSite}},
		EAPTLS:   testEAPTLSConfig(f),
		Verifier: &fixedVerifier{id: staffIdentity()},
		Policy:   testPolicy(f),
		Sessions: table,
	})
	if err != nil {
		f.Fatal(err)
	}
	srv.links.put("id", classLink{Identity: staffIdentity(), Segment: "general", VLAN: testVLANGen}, time.Now())
	var id atomic.Uint32
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		pkt := data
		if !raw {
			if len(data) > radius.MaxPacketLength-headerLen {
				return
			}
			b := make([]byte, headerLen, headerLen+len(data))
			b[0], b[1] = byte(radius.CodeAccountingRequest), byte(id.Add(1))
			b = append(b, data...)
			b[2], b[3] = byte(len(b)>>8), byte(len(b))
			pkt = signAcct(b, testSecret)
		}
		c := &replyConn{}
		srv.process(inbound{port: portAcct, conn: c, addr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1000 + int(id.Load()%1000)}, b: pkt, at: time.Now()})
		if raw || c.replies.Load() == 0 {
			return
		}
		p, err := radius.Parse(pkt, testSecret)
		if err != nil {
			t.Fatalf("answered an unparseable request")
		}
		stv, ok := attrUint32(p, attrAcctStatusType)
		if !ok {
			t.Fatalf("answered a request without Acct-Status-Type")
		}
		if (stv == acctStart || stv == acctStop || stv == acctInterimUpdate) && len(p.Get(attrAcctSessionID)) == 0 {
			t.Fatalf("answered status %d without Acct-Session-Id", stv)
		}
	})
}

// signAcct sets the RFC 2866 Request Authenticator of Accounting-Request b.
func signAcct(b, secret []byte) []byte {
	clear(b[4:headerLen])
	return acctRequestRaw(b, secret)
}
