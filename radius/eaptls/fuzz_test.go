package eaptls

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/radius/eap"
)

// fuzzStep encodes one response for FuzzHandle: kind, 2-byte length, data.
func fuzzStep(kind byte, data []byte) []byte {
	b := []byte{kind}
	b = binary.BigEndian.AppendUint16(b, uint16(len(data)))
	return append(b, data...)
}

// realClientHello returns a real ClientHello as EAP-TLS Type-Data.
func realClientHello(tb testing.TB, pki *testPKI) []byte {
	tb.Helper()
	p := NewPeer(pki.peerConfig(0, 4000))
	defer p.Close()
	resp, err := p.Handle(&eap.Packet{Code: eap.CodeRequest, Identifier: 1, Type: eap.TypeTLS, Data: []byte{flagStart}})
	if err != nil {
		tb.Fatal(err)
	}
	return resp.Data
}

// FuzzHandle feeds arbitrary sequences of responses into a started
// Session. Whatever arrives: no panic; an error comes with an EAP-Failure
// except an identifier mismatch, which comes with no packet; no error comes
// with a Request or a Success; Close releases everything.
func FuzzHandle(f *testing.F) {
	pki := newTestPKI(f, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	ch := realClientHello(f, pki)
	f.Add(fuzzStep(0, ch))
	f.Add(append(fuzzStep(0, ch), fuzzStep(0, []byte{0})...))
	f.Add(append(fuzzStep(0, appendFrame(nil, flagLength|flagMore, 2*len(ch[1:]), ch[1:])), fuzzStep(0, appendFrame(nil, 0, 0, ch[1:]))...))
	f.Add(fuzzStep(1, []byte{13}))
	f.Add(fuzzStep(1, []byte{21, 25}))
	f.Add(fuzzStep(2, []byte{0}))
	f.Add(fuzzStep(3, []byte{0, 0, 0, 0, 0, 0, 3}))
	f.Add(fuzzStep(0, []byte{flagLength | flagMore, 0, 0, 0x10, 0, 0x16}))
	f.Add(fuzzStep(0, []byte{flagStart}))
	cfg := pki.serverConfig(0, 0, 300)
	cfg.MaxMessageSize = 8192
	f.Fuzz(func(t *testing.T, in []byte) {
		s := NewSession(cfg, allowAll)
		defer func() {
			s.Close()
			if s.pipe != nil {
				t.Fatalf("Close left the pipe")
			}
		}()
		s.Start(0)
		for steps := 0; len(in) >= 3 && steps < 64; steps++ {
			kind := in[0]
			n := int(binary.BigEndian.Uint16(in[1:3]))
			in = in[3:]
			if n > len(in) {
				n = len(in)
			}
			data := in[:n]
			in = in[n:]
			resp := &eap.Packet{Code: eap.CodeResponse, Identifier: s.lastID, Type: eap.TypeTLS, Data: data}
			switch kind % 5 {
			case 1:
				resp.Type = eap.TypeNak
			case 2:
				resp.Identifier++
			case 3:
				resp.Type = eap.TypeExpanded
			case 4:
				resp.Type = eap.Type(data0(data))
			}
			pkt, err := s.Handle(resp)
			switch {
			case errors.Is(err, ErrIdentifierMismatch):
				if pkt != nil {
					t.Fatalf("mismatch with a packet")
				}
			case err != nil:
				if pkt == nil || pkt.Code != eap.CodeFailure {
					t.Fatalf("error %v with packet %+v", err, pkt)
				}
				return
			default:
				if pkt == nil || (pkt.Code != eap.CodeRequest && pkt.Code != eap.CodeSuccess) {
					t.Fatalf("no error and packet %+v", pkt)
				}
				if pkt.Code == eap.CodeRequest {
					if _, err := pkt.Marshal(); err != nil {
						t.Fatalf("unencodable request: %v", err)
					}
					if len(pkt.Data) > 5+300 {
						t.Fatalf("request of %d bytes past the fragment size", len(pkt.Data))
					}
				}
			}
		}
	})
}

func data0(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// FuzzReassemble feeds arbitrary EAP-TLS Type-Data sequences (2-byte
// length prefixed) to the frame parser and reassembler.
func FuzzReassemble(f *testing.F) {
	f.Add([]byte{0, 6, flagLength | flagMore, 0, 0, 0, 0x80, 1})
	f.Add(append([]byte{0, 69, flagLength | flagMore, 0, 0, 0, 100}, make([]byte, 64)...))
	f.Add([]byte{0, 3, flagLength, 0, 1})
	f.Add([]byte{0, 1, flagStart})
	f.Add([]byte{0, 6, flagLength, 0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := reassembler{max: 4096}
		for len(in) >= 2 {
			n := int(binary.BigEndian.Uint16(in))
			in = in[2:]
			if n > len(in) {
				n = len(in)
			}
			td := in[:n]
			in = in[n:]
			fr, err := parseFrame(td)
			if err != nil {
				if len(td) >= 5 || (len(td) >= 1 && td[0]&flagLength == 0) {
					t.Fatalf("parse refused well-formed %x: %v", td, err)
				}
				continue
			}
			if fr.length >= 0 && fr.length < 1<<30 {
				if re := appendFrame(nil, fr.flags, fr.length, fr.data); !bytes.Equal(re, td) {
					t.Fatalf("round trip %x -> %x", td, re)
				}
			}
			wasWant := r.want
			complete, err := r.add(fr)
			if err != nil {
				if !errors.Is(err, ErrProtocol) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("unexpected error class: %v", err)
				}
				r.reset()
				continue
			}
			if len(r.buf) > r.max {
				t.Fatalf("reassembled %d bytes past the cap", len(r.buf))
			}
			if complete && r.want >= 0 && len(r.buf) != r.want {
				t.Fatalf("complete with %d bytes, %d announced (was %d)", len(r.buf), r.want, wasWant)
			}
		}
	})
}
