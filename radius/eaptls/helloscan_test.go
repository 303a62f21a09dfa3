package eaptls

import (
	"bytes"
	"testing"
)

// refHelloScanner is helloScanner as it was before it parsed in place (it
// copied every write into its stream): the oracle for FuzzHelloScanner.
type refHelloScanner struct {
	stream []byte
	random []byte
	failed bool
}

func (h *refHelloScanner) feed(b []byte) {
	if h.random != nil || h.failed {
		return
	}
	if len(h.stream)+len(b) > helloScanCap {
		h.failed = true
		h.stream = nil
		return
	}
	h.stream = append(h.stream, b...)
	var hs []byte
	rec := h.stream
	for len(rec) >= recordHeaderLen {
		typ := rec[0]
		n := int(rec[3])<<8 | int(rec[4])
		if len(rec) < recordHeaderLen+n {
			break
		}
		body := rec[recordHeaderLen : recordHeaderLen+n]
		rec = rec[recordHeaderLen+n:]
		switch typ {
		case recordHandshake:
			hs = append(hs, body...)
		case recordCCS:
			continue
		default:
			h.failed = true
			h.stream = nil
			return
		}
		for len(hs) >= 4 {
			mlen := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
			if len(hs) < 4+mlen {
				break
			}
			msg := hs[4 : 4+mlen]
			if hs[0] == handshakeServerHelo && mlen >= 34 && !bytes.Equal(msg[2:34], helloRetryRandom) {
				h.random = bytes.Clone(msg[2:34])
				h.stream = nil
				return
			}
			hs = hs[4+mlen:]
			if len(hs) == 0 {
				hs = nil
			}
		}
	}
}

// FuzzHelloScanner: the in-place scanner finds the same ServerHello random
// (or none) as the copying one for any bytes cut into any writes, and never
// modifies the caller's buffers.
func FuzzHelloScanner(f *testing.F) {
	random := bytes.Repeat([]byte{0x5A}, 32)
	sh := handshakeRecord(handshakeServerHelo, serverHelloBody(random))
	hrr := handshakeRecord(handshakeServerHelo, serverHelloBody(helloRetryRandom))
	f.Add(sh, uint8(3), uint8(20))
	f.Add(append(bytes.Clone(hrr), sh...), uint8(0), uint8(60))
	f.Add(append([]byte{recordHandshake, 3, 3, 0, 10}, sh[5:15]...), uint8(7), uint8(9))
	f.Add(append([]byte{recordCCS, 3, 3, 0, 1, 1}, sh...), uint8(6), uint8(255))
	f.Fuzz(func(t *testing.T, data []byte, cut1, cut2 uint8) {
		a, b := min(int(cut1), len(data)), min(int(cut2), len(data))
		if a > b {
			a, b = b, a
		}
		writes := [][]byte{data[:a], data[a:b], data[b:]}
		orig := bytes.Clone(data)
		var got helloScanner
		var want refHelloScanner
		for _, w := range writes {
			got.feed(w)
			want.feed(w)
			if !bytes.Equal(got.random, want.random) || got.failed != want.failed {
				t.Fatalf("after a write: random %x failed %v, reference %x failed %v", got.random, got.failed, want.random, want.failed)
			}
		}
		if !bytes.Equal(data, orig) {
			t.Fatal("the scanner modified the written bytes")
		}
	})
}
