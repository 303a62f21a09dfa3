package eaptls

import (
	"encoding/binary"
	"fmt"
)

// EAP-TLS flags (RFC 5216 section 3.1). The low five bits are reserved:
// they are sent as zero and ignored on receipt.
const (
	flagLength = 0x80 // L: a 4-octet TLS Message Length follows the flags
	flagMore   = 0x40 // M: more fragments follow
	flagStart  = 0x20 // S: EAP-TLS Start (server to peer only)
)

// minFragment is the fewest TLS bytes a non-final fragment from the other
// side may carry. It bounds the number of fragments (and so of round trips)
// one message can take: MaxMessageSize/minFragment + 1. No real supplicant
// fragments below a few hundred bytes.
const minFragment = 64

// frame is one parsed EAP-TLS Type-Data.
type frame struct {
	flags  byte
	length int // TLS Message Length when flags&flagLength, else -1
	data   []byte
}

func (f frame) more() bool  { return f.flags&flagMore != 0 }
func (f frame) start() bool { return f.flags&flagStart != 0 }

// isAck reports whether f is an empty EAP-TLS message (an acknowledgement):
// no data, no M and no S flag. An L flag announcing zero bytes is tolerated.
func (f frame) isAck() bool {
	return len(f.data) == 0 && f.flags&(flagMore|flagStart) == 0 && f.length <= 0
}

// parseFrame decodes EAP-TLS Type-Data: Flags, optional TLS Message Length,
// TLS data. It never trusts a length: a truncated field is an error, and the
// announced length is returned for the reassembler to check.
func parseFrame(b []byte) (frame, error) {
	if len(b) < 1 {
		return frame{}, fmt.Errorf("%w: EAP-TLS message without flags", ErrProtocol)
	}
	f := frame{flags: b[0], length: -1}
	b = b[1:]
	if f.flags&flagLength != 0 {
		if len(b) < 4 {
			return frame{}, fmt.Errorf("%w: L flag with a truncated TLS Message Length (%d bytes)", ErrProtocol, len(b))
		}
		n := binary.BigEndian.Uint32(b)
		if n > 1<<30 {
			n = 1 << 30 // keep it an int on every platform; any cap rejects it anyway
		}
		f.length = int(n)
		b = b[4:]
	}
	f.data = b
	return f, nil
}

// appendFrame encodes EAP-TLS Type-Data.
func appendFrame(dst []byte, flags byte, length int, data []byte) []byte {
	dst = append(dst, flags)
	if flags&flagLength != 0 {
		dst = binary.BigEndian.AppendUint32(dst, uint32(length))
	}
	return append(dst, data...)
}

// reassembler collects the fragments of one incoming TLS message.
type reassembler struct {
	max    int    // MaxMessageSize
	buf    []byte // bytes so far
	want   int    // announced TLS Message Length, -1 if none
	active bool   // a fragmented message is in progress
}

// add takes one frame and reports whether the message is complete; the
// message is then in r.buf (owned by the caller until the next add/reset).
// Rules (RFC 5216 section 2.1.5, fail closed):
//   - the announced length must not exceed max (ErrTooLarge) and must cover
//     the data (more data than announced is ErrProtocol);
//   - an L on a later fragment must repeat the first value;
//   - the reassembled bytes must not exceed max (ErrTooLarge) nor the
//     announced length, and must equal it when the last fragment arrives;
//   - a non-final fragment must carry at least minFragment bytes, which
//     bounds a fragment flood;
//   - S from the peer is a protocol violation.
func (r *reassembler) add(f frame) (complete bool, err error) {
	if f.start() {
		return false, fmt.Errorf("%w: S flag in a response", ErrProtocol)
	}
	if !r.active {
		r.buf = r.buf[:0]
		r.want = -1
		if f.length >= 0 {
			if f.length > r.max {
				return false, fmt.Errorf("%w: peer announced a %d-byte TLS message (max %d)", ErrTooLarge, f.length, r.max)
			}
			r.want = f.length
		}
	} else if f.length >= 0 && f.length != r.want {
		return false, fmt.Errorf("%w: TLS Message Length changed from %d to %d between fragments", ErrProtocol, r.want, f.length)
	}
	if len(r.buf)+len(f.data) > r.max {
		// A fragment flood: too large, and a protocol violation.
		return false, fmt.Errorf("%w%.0w: reassembled TLS message passes %d bytes", ErrTooLarge, ErrProtocol, r.max)
	}
	if r.want >= 0 && len(r.buf)+len(f.data) > r.want {
		return false, fmt.Errorf("%w: more TLS data (%d bytes) than the announced %d", ErrProtocol, len(r.buf)+len(f.data), r.want)
	}
	if f.more() && len(f.data) < minFragment {
		return false, fmt.Errorf("%w: non-final fragment of %d bytes (min %d)", ErrProtocol, len(f.data), minFragment)
	}
	r.buf = append(r.buf, f.data...)
	if f.more() {
		r.active = true
		return false, nil
	}
	r.active = false
	if r.want >= 0 && len(r.buf) != r.want {
		return false, fmt.Errorf("%w: TLS message of %d bytes, %d announced", ErrProtocol, len(r.buf), r.want)
	}
	return true, nil
}

func (r *reassembler) reset() {
	r.buf = nil
	r.want = -1
	r.active = false
}

// fragmenter cuts one outgoing TLS message into EAP-TLS frames.
//
// Choice (RFC 5216 section 2.1.5): the L flag and TLS Message Length are
// sent on the first fragment of a fragmented message only (as hostapd does);
// an unfragmented message carries neither. Every peer must accept this: L is
// mandatory on a first fragment and optional elsewhere.
type fragmenter struct {
	msg  []byte
	off  int
	size int
}

func (g *fragmenter) load(msg []byte) {
	g.msg = msg
	g.off = 0
}

func (g *fragmenter) pending() bool { return g.off < len(g.msg) }

// next returns the Type-Data of the next fragment and whether more follow.
func (g *fragmenter) next() (typeData []byte, more bool) {
	rest := g.msg[g.off:]
	var flags byte
	n := len(rest)
	if n > g.size {
		n = g.size
		flags |= flagMore
		if g.off == 0 {
			flags |= flagLength
		}
	}
	out := appendFrame(make([]byte, 0, 5+n), flags, len(g.msg), rest[:n])
	g.off += n
	if !g.pending() {
		g.msg, g.off = nil, 0
	}
	return out, flags&flagMore != 0
}
