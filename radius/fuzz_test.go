package radius

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"layeh.com/radius"

	"github.com/herts-council/nacd/radius/eap"
)

// captureConn is a net.PacketConn that records what the server sends.
type captureConn struct {
	mu  sync.Mutex
	out [][]byte
}

func (c *captureConn) ReadFrom([]byte) (int, net.Addr, error) { return 0, nil, net.ErrClosed }
func (c *captureConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, append([]byte(nil), b...))
	return len(b), nil
}
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzPacket feeds arbitrary datagrams from a known client into the
// server's request path (verification, duplicate cache, EAP handler with
// real EAP-TLS sessions). When the first input byte is odd, the rest is
// given a valid Message-Authenticator first, so the fuzzer reaches the
// handler rather than stopping at the HMAC. Nothing may panic, and every
// reply must be a well-formed, authentic response.
func FuzzPacket(f *testing.F) {
	seeds := [][]byte{
		accessRequest(f, 1, identityResponse(1, "alice"), nil),
		accessRequest(f, 2, &eap.Packet{Code: eap.CodeResponse, Identifier: 2, Type: eap.TypeTLS, Data: []byte{0x80, 0, 0, 0, 10}}, []byte("0123456789abcdef")),
		statusServer(f, 3, tattr{attrProxyState, []byte("p")}),
		rawPacket(byte(radius.CodeAccessRequest), 4, [16]byte{}, tattr{attrUserName, []byte("bob")}),
	}
	for _, s := range seeds {
		f.Add(append([]byte{0}, s...))
		f.Add(append([]byte{1}, s[:len(s)-18]...)) // unsigned, to be signed
	}
	f.Add([]byte{1})
	f.Add([]byte{0, 1, 2, 0, 20})

	srv, err := NewServer(Config{
		Clients:          []Client{{Name: "fuzz", Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}, Secret: testSecret, Site: testSite}},
		EAPTLS:           testEAPTLSConfig(f),
		Verifier:         &fixedVerifier{id: staffIdentity()},
		Policy:           testPolicy(f),
		MaxConversations: 32,
		Logger:           zap.NewNop(),
		Registerer:       prometheus.NewRegistry(),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	from := &net.UDPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1645}

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		b := data[1:]
		if data[0]&1 == 1 && len(b) >= 20 && len(b)+18 <= radius.MaxPacketLength {
			b = append([]byte(nil), b...)
			binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
			b = signMA(b, testSecret)
		}
		conn := &captureConn{}
		srv.process(inbound{conn: conn, addr: from, b: b, at: time.Now()})
		for _, out := range conn.out {
			if len(out) < 38 || out[20] != attrMessageAuthenticator {
				t.Fatalf("reply without a leading Message-Authenticator: % x", out)
			}
			if !radius.IsAuthenticResponse(out, b, testSecret) {
				t.Fatalf("reply not authentic")
			}
			if srv.convs.len() > 32 {
				t.Fatalf("conversation table over its bound")
			}
		}
	})
}

// FuzzEAPReassembly splits arbitrary bytes into EAP-Message attributes at
// fuzzer-chosen boundaries, interleaved with other attributes; reassembly
// must return exactly the concatenation, splitEAP must round-trip, and
// eap.Parse must not panic on the result.
func FuzzEAPReassembly(f *testing.F) {
	f.Add([]byte{2, 1, 0, 9, 1, 'a', 'l', 'i', 'c'}, []byte{3, 200, 1})
	f.Add(bytes.Repeat([]byte{0xff}, 1000), []byte{253, 253, 253, 253})
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, msg, cuts []byte) {
		if len(msg) > radius.MaxPacketLength {
			return
		}
		var p radius.Packet
		rest := msg
		for i := 0; len(rest) > 0; i++ {
			k := 253
			if i < len(cuts) && cuts[i] != 0 {
				k = min(int(cuts[i]), 253)
			}
			k = min(k, len(rest))
			p.Attributes = append(p.Attributes, &radius.AVP{Type: attrEAPMessage, Attribute: rest[:k]})
			p.Attributes = append(p.Attributes, &radius.AVP{Type: attrProxyState, Attribute: []byte{byte(i)}})
			rest = rest[k:]
		}
		got, ok := eapMessage(&p)
		if !bytes.Equal(got, msg) || ok != (len(msg) > 0) {
			t.Fatalf("reassembled %x (ok %v), want %x", got, ok, msg)
		}
		again, _ := eapMessage(&radius.Packet{Attributes: splitEAP(msg)})
		if !bytes.Equal(again, msg) {
			t.Fatal("splitEAP does not round-trip")
		}
		if pk, err := eap.Parse(got); err == nil {
			if b, err := pk.Marshal(); err != nil || !bytes.Equal(b, got) {
				t.Fatalf("EAP parse/marshal does not round-trip: %v", err)
			}
		}
	})
}
