package eaptls

import (
	"bytes"
	"errors"
	"testing"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/radius/eap"
)

type badEnv struct {
	t     *testing.T
	pki   *testPKI
	s     *Session
	start *eap.Packet
}

func (e *badEnv) handle(resp *eap.Packet) (*eap.Packet, error) {
	e.t.Helper()
	return e.s.Handle(resp)
}

// mustAck sends resp and requires an empty EAP-TLS Request back.
func (e *badEnv) mustAck(resp *eap.Packet) *eap.Packet {
	e.t.Helper()
	req, err := e.s.Handle(resp)
	if err != nil || req == nil || req.Code != eap.CodeRequest || req.Identifier != resp.Identifier+1 {
		e.t.Fatalf("want an ACK request, got %+v, %v", req, err)
	}
	if f, err := parseFrame(req.Data); err != nil || !f.isAck() {
		e.t.Fatalf("want an empty request, got %x", req.Data)
	}
	return req
}

// toServerFlight drives a real peer until the server sent the first
// fragment of its first flight (server fragment size 300); it returns that
// request.
func (e *badEnv) toServerFlight(p *Peer) *eap.Packet {
	e.t.Helper()
	req := e.start
	for i := 0; i < 50; i++ {
		resp, err := p.Handle(req)
		if err != nil {
			e.t.Fatal(err)
		}
		req, err = e.s.Handle(resp)
		if err != nil {
			e.t.Fatal(err)
		}
		if f, _ := parseFrame(req.Data); len(f.data) > 0 {
			return req
		}
	}
	e.t.Fatal("no server flight")
	return nil
}

func frameBytes(flags byte, length int, n int) []byte {
	return appendFrame(nil, flags, length, bytes.Repeat([]byte{0x16}, n))
}

func TestBadInput(t *testing.T) {
	const id = 10
	cases := []struct {
		name    string
		maxMsg  int
		run     func(e *badEnv) (*eap.Packet, error)
		want    error
		wantNil bool // silently discarded
	}{
		{name: "L length above MaxMessageSize", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(tlsResp(id, frameBytes(flagLength|flagMore, 70000, 100)))
		}, want: ErrTooLarge},
		{name: "more data than announced", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(tlsResp(id, frameBytes(flagLength, 10, 20)))
		}, want: ErrProtocol},
		{name: "more data than announced across fragments", run: func(e *badEnv) (*eap.Packet, error) {
			e.mustAck(tlsResp(id, frameBytes(flagLength|flagMore, 600, 500)))
			return e.handle(tlsResp(id+1, frameBytes(0, 0, 200)))
		}, want: ErrProtocol},
		{name: "final data shorter than announced", run: func(e *badEnv) (*eap.Packet, error) {
			e.mustAck(tlsResp(id, frameBytes(flagLength|flagMore, 1000, 500)))
			return e.handle(tlsResp(id+1, frameBytes(0, 0, 100)))
		}, want: ErrProtocol},
		{name: "L with another value on a later fragment", run: func(e *badEnv) (*eap.Packet, error) {
			e.mustAck(tlsResp(id, frameBytes(flagLength|flagMore, 1000, 500)))
			return e.handle(tlsResp(id+1, frameBytes(flagLength|flagMore, 2000, 100)))
		}, want: ErrProtocol},
		{name: "L repeated with the same value reaches TLS", run: func(e *badEnv) (*eap.Packet, error) {
			e.mustAck(tlsResp(id, frameBytes(flagLength|flagMore, 1000, 500)))
			return e.handle(tlsResp(id+1, frameBytes(flagLength, 1000, 500))) // garbage TLS
		}, want: ErrHandshake},
		{name: "fragment flood past the cap", maxMsg: 4096, run: func(e *badEnv) (*eap.Packet, error) {
			for i := 0; i < 4; i++ {
				e.mustAck(tlsResp(uint8(id+i), frameBytes(flagMore, 0, 1000)))
			}
			return e.handle(tlsResp(id+4, frameBytes(flagMore, 0, 1000)))
		}, want: ErrTooLarge},
		{name: "flood of tiny fragments", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(tlsResp(id, frameBytes(flagMore, 0, 3)))
		}, want: ErrProtocol},
		{name: "empty fragment with M", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(tlsResp(id, []byte{flagMore}))
		}, want: ErrProtocol},
		{name: "S flag from the peer", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(tlsResp(id, []byte{flagStart}))
		}, want: ErrProtocol},
		{name: "no flags octet", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(tlsResp(id, nil))
		}, want: ErrProtocol},
		{name: "truncated TLS Message Length", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(tlsResp(id, []byte{flagLength, 0, 1}))
		}, want: ErrProtocol},
		{name: "ACK instead of a ClientHello", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(tlsResp(id, []byte{0}))
		}, want: ErrProtocol},
		{name: "not TLS at all", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(tlsResp(id, append([]byte{0}, "GET / HTTP/1.1\r\n\r\n"...)))
		}, want: ErrHandshake},
		{name: "partial ClientHello completes no flight", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(tlsResp(id, []byte{0, 0x16, 0x03, 0x01, 0x01, 0x00, 0x01}))
		}, want: ErrProtocol},
		{name: "data where a fragment ACK was expected", run: func(e *badEnv) (*eap.Packet, error) {
			p := NewPeer(e.pki.peerConfig(0, 0))
			defer p.Close()
			req := e.toServerFlight(p)
			if f, _ := parseFrame(req.Data); !f.more() {
				e.t.Fatal("server flight not fragmented")
			}
			return e.handle(tlsResp(req.Identifier, frameBytes(0, 0, 100)))
		}, want: ErrProtocol},
		{name: "data where the final ACK was expected", run: func(e *badEnv) (*eap.Packet, error) {
			p := NewPeer(e.pki.peerConfig(0, 0))
			defer p.Close()
			req := e.start
			for e.s.state != stFinal {
				resp, err := p.Handle(req)
				if err != nil {
					e.t.Fatal(err)
				}
				if req, err = e.s.Handle(resp); err != nil {
					e.t.Fatal(err)
				}
			}
			return e.handle(tlsResp(req.Identifier, frameBytes(0, 0, 100)))
		}, want: ErrProtocol},
		{name: "wrong identifier is discarded", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(tlsResp(id+1, frameBytes(0, 0, 100)))
		}, want: ErrIdentifierMismatch, wantNil: true},
		{name: "retransmitted response is discarded", run: func(e *badEnv) (*eap.Packet, error) {
			e.mustAck(tlsResp(id, frameBytes(flagLength|flagMore, 1000, 500)))
			return e.handle(tlsResp(id, frameBytes(flagLength|flagMore, 1000, 500)))
		}, want: ErrIdentifierMismatch, wantNil: true},
		{name: "Nak without TLS", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(&eap.Packet{Code: eap.CodeResponse, Identifier: id, Type: eap.TypeNak, Data: []byte{25, 21}})
		}, want: ErrNak},
		{name: "Nak with no alternative", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(&eap.Packet{Code: eap.CodeResponse, Identifier: id, Type: eap.TypeNak, Data: []byte{0}})
		}, want: ErrNak},
		{name: "Nak loop asking for TLS is bounded", run: func(e *badEnv) (*eap.Packet, error) {
			for i := 0; i < maxRestarts; i++ {
				req, err := e.handle(&eap.Packet{Code: eap.CodeResponse, Identifier: uint8(id + i), Type: eap.TypeNak, Data: []byte{13}})
				if err != nil || req.Code != eap.CodeRequest || req.Data[0] != flagStart {
					e.t.Fatalf("restart %d: %+v %v", i, req, err)
				}
			}
			return e.handle(&eap.Packet{Code: eap.CodeResponse, Identifier: id + maxRestarts, Type: eap.TypeNak, Data: []byte{13}})
		}, want: ErrProtocol},
		{name: "expanded Nak", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(&eap.Packet{Code: eap.CodeResponse, Identifier: id, Type: eap.TypeExpanded, Data: []byte{0, 0, 0, 0, 0, 0, 3, 254, 0, 0, 0, 0, 0, 0, 0}})
		}, want: ErrNak},
		{name: "Nak in the middle of the handshake", run: func(e *badEnv) (*eap.Packet, error) {
			p := NewPeer(e.pki.peerConfig(0, 0))
			defer p.Close()
			req := e.toServerFlight(p)
			return e.handle(&eap.Packet{Code: eap.CodeResponse, Identifier: req.Identifier, Type: eap.TypeNak, Data: []byte{13}})
		}, want: ErrNak},
		{name: "Identity response", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(&eap.Packet{Code: eap.CodeResponse, Identifier: id, Type: eap.TypeIdentity, Data: []byte("x")})
		}, want: ErrProtocol},
		{name: "Request instead of Response", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(&eap.Packet{Code: eap.CodeRequest, Identifier: id, Type: eap.TypeTLS, Data: []byte{0}})
		}, want: ErrProtocol},
		{name: "nil response", run: func(e *badEnv) (*eap.Packet, error) {
			return e.handle(nil)
		}, want: ErrProtocol},
		{name: "Handle before Start", run: func(e *badEnv) (*eap.Packet, error) {
			s := NewSession(e.pki.serverConfig(0, 0, 0), allowAll)
			defer s.Close()
			return s.Handle(tlsResp(0, []byte{0}))
		}, want: ErrProtocol},
		{name: "Handle after Close", run: func(e *badEnv) (*eap.Packet, error) {
			e.s.Close()
			return e.handle(tlsResp(id, frameBytes(0, 0, 100)))
		}, want: ErrClosed},
		{name: "Handle after Close mid-handshake", run: func(e *badEnv) (*eap.Packet, error) {
			p := NewPeer(e.pki.peerConfig(0, 0))
			defer p.Close()
			req := e.toServerFlight(p)
			e.s.Close()
			return e.handle(tlsResp(req.Identifier, []byte{0}))
		}, want: ErrClosed},
		{name: "Handle after Failure", run: func(e *badEnv) (*eap.Packet, error) {
			if _, err := e.handle(tlsResp(id, nil)); !errors.Is(err, ErrProtocol) {
				e.t.Fatalf("setup: %v", err)
			}
			return e.handle(tlsResp(id, frameBytes(0, 0, 100)))
		}, want: ErrClosed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkNoLeak(t)
			pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
			cfg := pki.serverConfig(0, 0, 300)
			cfg.MaxMessageSize = c.maxMsg
			s := NewSession(cfg, allowAll)
			defer s.Close()
			e := &badEnv{t: t, pki: pki, s: s, start: s.Start(id)}
			pkt, err := c.run(e)
			if !errors.Is(err, c.want) || (c.name == "fragment flood past the cap" && !errors.Is(err, ErrProtocol)) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if c.wantNil {
				if pkt != nil {
					t.Fatalf("packet %+v, want nil (discard)", pkt)
				}
				return
			}
			if pkt == nil || pkt.Code != eap.CodeFailure {
				t.Fatalf("packet %+v, want EAP-Failure", pkt)
			}
			if s.Result() != nil {
				t.Fatalf("result after failure")
			}
		})
	}
}

// TestDiscardedResponseDoesNotDerail: a response with a wrong identifier is
// dropped and the conversation then completes.
func TestDiscardedResponseDoesNotDerail(t *testing.T) {
	checkNoLeak(t)
	pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	s := NewSession(pki.serverConfig(0, 0, 0), allowAll)
	defer s.Close()
	p := NewPeer(pki.peerConfig(0, 0))
	defer p.Close()
	req := s.Start(200)
	for i := 0; i < 100; i++ {
		resp, err := p.Handle(req)
		if req.Code == eap.CodeSuccess {
			if err != nil || !bytes.Equal(p.Result().MSK, s.Result().MSK) {
				t.Fatalf("peer: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		stale := *resp
		stale.Identifier--
		if pkt, err := s.Handle(&stale); pkt != nil || !errors.Is(err, ErrIdentifierMismatch) {
			t.Fatalf("stale response: %+v %v", pkt, err)
		}
		// A retransmitted request gets the same response from the peer.
		if again, err := p.Handle(req); err != nil || again != resp {
			t.Fatalf("peer retransmission: %v", err)
		}
		if req, err = s.Handle(resp); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("no success")
}

// TestNakWithTLSRestarts: a Nak listing EAP-TLS restarts with a new Start
// and the conversation then succeeds.
func TestNakWithTLSRestarts(t *testing.T) {
	checkNoLeak(t)
	pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	s := NewSession(pki.serverConfig(0, 0, 0), allowAll)
	defer s.Close()
	s.Start(5)
	req, err := s.Handle(&eap.Packet{Code: eap.CodeResponse, Identifier: 5, Type: eap.TypeNak, Data: []byte{21, 13}})
	if err != nil || req.Code != eap.CodeRequest || req.Identifier != 6 || req.Type != eap.TypeTLS || req.Data[0] != flagStart {
		t.Fatalf("after Nak(TLS): %+v %v", req, err)
	}
	p := NewPeer(pki.peerConfig(0, 0))
	defer p.Close()
	for i := 0; i < 100; i++ {
		resp, err := p.Handle(req)
		if req.Code == eap.CodeSuccess {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if req, err = s.Handle(resp); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("no success")
}
