package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"layeh.com/radius"

	"github.com/herts-council/nacd/radius/eap"
	"github.com/herts-council/nacd/radius/eaptls"
)

// worker runs one authentication at a time over its own UDP socket, so its
// Identifier (incremented per request) can never collide with another
// outstanding request: no 256-identifier limit across workers.
type worker struct {
	s    *settings
	col  *collector
	conn *net.UDPConn
	id   byte
	buf  []byte
	mac  string // Calling-Station-Id

	total histogram // whole authentication (completed ones)
	rtt   histogram // each round trip
}

func newWorker(s *settings, col *collector, n int) (*worker, error) {
	conn, err := net.DialUDP("udp", nil, s.addr)
	if err != nil {
		return nil, fmt.Errorf("loadtest: open UDP socket to %s: %w", s.addr, err)
	}
	var r [1]byte
	_, _ = rand.Read(r[:])
	return &worker{
		s: s, col: col, conn: conn, id: r[0],
		buf: make([]byte, maxPacket+1),
		mac: fmt.Sprintf("02-00-00-%02X-%02X-%02X", byte(n>>16), byte(n>>8), byte(n)),
	}, nil
}

func (w *worker) close() { w.conn.Close() }

// loop runs authentications until no more may start.
func (w *worker) loop(startCtx, runCtx context.Context, tickets <-chan struct{}) {
	// Unblock a read when the run is aborted.
	stop := context.AfterFunc(runCtx, func() { _ = w.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		if tickets != nil {
			select {
			case _, ok := <-tickets:
				if !ok {
					return
				}
				w.col.started.Add(1)
			case <-startCtx.Done():
				return
			}
		} else {
			if startCtx.Err() != nil || !w.col.take() {
				return
			}
		}
		id := w.col.nextIdentity()
		t0 := time.Now()
		o := w.authenticate(runCtx, id)
		o.elapsed = time.Since(t0)
		if o.kind == outAccept || o.kind == outReject {
			w.total.record(o.elapsed)
		}
		w.col.record(id, o)
	}
}

// authError is a failed authentication with its stable cause.
type authError struct {
	cause string
	err   error
}

func (e *authError) Error() string { return e.cause + ": " + e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

func fail(cause string, format string, args ...any) *authError {
	return &authError{cause: cause, err: fmt.Errorf(format, args...)}
}

var (
	errTimeout = errors.New("no reply")
	errAborted = errors.New("aborted")
)

func (w *worker) result(rounds int, err error) outcome {
	var ae *authError
	switch {
	case errors.Is(err, errAborted):
		return outcome{kind: outAborted, rounds: rounds}
	case errors.Is(err, errTimeout):
		return outcome{kind: outTimeout, rounds: rounds}
	case errors.As(err, &ae):
		return outcome{kind: outError, cause: ae.cause, err: ae.err, rounds: rounds}
	default:
		return outcome{kind: outError, cause: CauseInternal, err: err, rounds: rounds}
	}
}

// authenticate runs one full EAP-TLS authentication.
func (w *worker) authenticate(ctx context.Context, id *identity) outcome {
	peer := eaptls.NewPeer(eaptls.PeerConfig{TLS: id.tls, FragmentSize: w.s.FragmentSize, Identity: id.eapIdentity})
	defer peer.Close()
	out, err := peer.Handle(&eap.Packet{Code: eap.CodeRequest, Identifier: 0, Type: eap.TypeIdentity})
	if err != nil {
		return w.result(0, fail(CauseEAP, "peer identity: %v", err))
	}
	var state []byte
	for round := 1; round <= w.s.MaxRoundTrips; round++ {
		msg, err := out.Marshal()
		if err != nil {
			return w.result(round-1, fail(CauseEAP, "marshal EAP response: %v", err))
		}
		req, err := w.request(msg, state, id)
		if err != nil {
			return w.result(round-1, err)
		}
		resp, err := w.exchange(ctx, req)
		if err != nil {
			return w.result(round, err)
		}
		r, err := w.check(resp, req)
		if err != nil {
			return w.result(round, err)
		}
		switch radius.Code(resp[0]) {
		case radius.CodeAccessChallenge:
			if r.state == nil {
				return w.result(round, fail(CauseMissingState, "Access-Challenge without State"))
			}
			state = r.state
			p, err := eap.Parse(r.eap)
			if err != nil {
				return w.result(round, fail(CauseEAP, "EAP-Message in Access-Challenge: %v", err))
			}
			out, err = peer.Handle(p)
			if err != nil {
				return w.result(round, fail(CauseEAP, "peer: %v", err))
			}
			if out == nil {
				return w.result(round, fail(CauseEAP, "EAP %d inside an Access-Challenge", p.Code))
			}
		case radius.CodeAccessAccept:
			o := w.verifyAccept(peer, r, req)
			o.rounds = round
			return o
		case radius.CodeAccessReject:
			return outcome{kind: outReject, cause: rejectCause(peer, r), rounds: round}
		default:
			return w.result(round, fail(CauseUnexpectedCode, "reply code %d", resp[0]))
		}
	}
	return w.result(w.s.MaxRoundTrips, fail(CauseTooManyRoundTrips, "no decision after %d round trips", w.s.MaxRoundTrips))
}

// rejectCause is the TLS alert the peer saw, or "eap-failure".
func rejectCause(peer *eaptls.Peer, r *reply) string {
	if p, err := eap.Parse(r.eap); err == nil && p.Code == eap.CodeFailure {
		_, err := peer.Handle(p)
		var ae *eaptls.AlertError
		if errors.As(err, &ae) {
			return ae.Name()
		}
	} else if len(r.eap) == 0 {
		return "no-eap-message"
	}
	return "eap-failure"
}

// request builds a signed Access-Request carrying the EAP message msg.
func (w *worker) request(msg, state []byte, id *identity) ([]byte, error) {
	w.id++
	b := make([]byte, headerLen, 512+len(msg)+len(msg)/maxAttrValue*2)
	b[0] = byte(radius.CodeAccessRequest)
	b[1] = w.id
	if _, err := rand.Read(b[4:20]); err != nil {
		return nil, fail(CauseInternal, "request authenticator: %v", err)
	}
	add := func(t byte, v []byte) { b = append(append(b, t, byte(2+len(v))), v...) }
	maOff := len(b) + 2
	add(attrMessageAuthenticator, make([]byte, 16))
	add(attrUserName, []byte(id.eapIdentity))
	add(attrServiceType, []byte{0, 0, 0, 2})     // Framed-User
	add(attrNASPortType, []byte{0, 0, 0, 19})    // Wireless-802.11
	add(attrFramedMTU, []byte{0, 0, 0x05, 0x78}) // 1400, as eapol_test
	add(attrCallingStationID, []byte(w.mac))
	if w.s.CalledStationID != "" {
		add(attrCalledStationID, []byte(w.s.CalledStationID))
	}
	if w.s.NASIdentifier != "" {
		add(attrNASIdentifier, []byte(w.s.NASIdentifier))
	}
	if state != nil {
		add(attrState, state)
	}
	for len(msg) > 0 {
		k := min(len(msg), maxAttrValue)
		add(attrEAPMessage, msg[:k])
		msg = msg[k:]
	}
	if len(b) > maxPacket {
		return nil, fail(CauseInternal, "Access-Request of %d bytes", len(b))
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	signRequest(b, maOff, w.s.Secret)
	return b, nil
}

// exchange sends req and waits for its reply, retransmitting the same bytes
// (same Identifier and Request Authenticator) on timeout. Replies to other
// identifiers (late answers to an earlier request) are ignored. The reply
// returned is an authentic response to req (RFC 2865 Response
// Authenticator).
func (w *worker) exchange(ctx context.Context, req []byte) ([]byte, error) {
	t0 := time.Now()
	for attempt := 0; attempt <= w.s.retries; attempt++ {
		if ctx.Err() != nil {
			return nil, errAborted
		}
		if attempt > 0 {
			w.col.retransmits.Add(1)
		}
		if _, err := w.conn.Write(req); err != nil {
			return nil, fail(CauseSocket, "send: %v", err)
		}
		deadline := time.Now().Add(w.s.Timeout)
		for {
			if err := w.conn.SetReadDeadline(deadline); err != nil {
				return nil, fail(CauseSocket, "deadline: %v", err)
			}
			if ctx.Err() != nil {
				return nil, errAborted
			}
			n, err := w.conn.Read(w.buf)
			if err != nil {
				if ctx.Err() != nil {
					return nil, errAborted
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break // retransmit
				}
				return nil, fail(CauseSocket, "receive: %v", err)
			}
			b := w.buf[:n]
			if n < headerLen || b[1] != req[1] {
				w.col.stray.Add(1)
				continue
			}
			if l := int(binary.BigEndian.Uint16(b[2:4])); l < headerLen || l > n || l > maxPacket {
				return nil, fail(CauseMalformedReply, "reply length field %d for %d bytes", l, n)
			} else {
				b = b[:l]
			}
			if !radius.IsAuthenticResponse(b, req, w.s.Secret) {
				return nil, fail(CauseBadResponseAuthenticator, "Response Authenticator of a %s does not verify with the shared secret", radius.Code(b[0]))
			}
			w.rtt.record(time.Since(t0))
			return bytes.Clone(b), nil
		}
	}
	return nil, errTimeout
}

// reply is what check extracted from an authentic reply.
type reply struct {
	attrs []attr
	eap   []byte // EAP-Message attributes joined
	state []byte
}

// check verifies a reply's attributes and Message-Authenticator.
func (w *worker) check(resp, req []byte) (*reply, error) {
	attrs, err := parseAttrs(resp)
	if err != nil {
		return nil, fail(CauseMalformedReply, "%s: %v", radius.Code(resp[0]), err)
	}
	r := &reply{attrs: attrs}
	maOff, maFirst := -1, false
	for i, a := range attrs {
		switch a.typ {
		case attrMessageAuthenticator:
			if maOff >= 0 || len(a.value) != 16 {
				return nil, fail(CauseMalformedReply, "%s: duplicate or short Message-Authenticator", radius.Code(resp[0]))
			}
			maOff, maFirst = a.off, i == 0
		case attrEAPMessage:
			r.eap = append(r.eap, a.value...)
		case attrState:
			if r.state == nil {
				r.state = bytes.Clone(a.value)
			}
		}
	}
	code := radius.Code(resp[0])
	if maOff < 0 {
		// RFC 3579 section 3.2: every packet carrying EAP-Message has one.
		if r.eap != nil || code == radius.CodeAccessAccept {
			return nil, fail(CauseMissingMessageAuthenticator, "%s without Message-Authenticator", code)
		}
		return r, nil
	}
	if !messageAuthenticatorOK(resp, maOff, req[4:20], w.s.Secret) {
		return nil, fail(CauseBadMessageAuthenticator, "%s: Message-Authenticator does not verify", code)
	}
	if !maFirst {
		w.col.maNotFirst.Add(1)
	}
	return r, nil
}

// verifyAccept checks an authentic Access-Accept: EAP-Success that the peer
// takes (the TLS handshake really finished), then the MPPE keys against the
// peer's own MSK. Only then is it an accept.
func (w *worker) verifyAccept(peer *eaptls.Peer, r *reply, req []byte) outcome {
	p, err := eap.Parse(r.eap)
	if err != nil || p.Code != eap.CodeSuccess {
		return w.result(0, fail(CauseAcceptWithoutSuccess, "Access-Accept without an EAP-Success (EAP-Message %x)", truncate(r.eap, 8)))
	}
	if out, err := peer.Handle(p); err != nil || out != nil {
		return w.result(0, fail(CauseEAP, "peer refused the EAP-Success: %v", err))
	}
	res := peer.Result()
	if res == nil || len(res.MSK) < 64 {
		return w.result(0, fail(CauseInternal, "peer has no MSK after EAP-Success"))
	}
	var recv, send []byte
	var vlan string
	for _, a := range r.attrs {
		switch a.typ {
		case attrVendorSpecific:
			sub, err := microsoftSubAttrs(a.value)
			if err != nil {
				return w.result(0, fail(CauseMPPEMalformed, "%v", err))
			}
			if v, ok := sub[msMPPERecvKey]; ok {
				recv = v
			}
			if v, ok := sub[msMPPESendKey]; ok {
				send = v
			}
		case attrTunnelPrivateGroupID:
			if vlan == "" {
				vlan = tunnelValue(a.value)
			}
		}
	}
	if recv == nil || send == nil {
		return w.result(0, fail(CauseMPPEMissing, "Access-Accept without MS-MPPE-Recv-Key and MS-MPPE-Send-Key"))
	}
	reqAuth := req[4:20]
	rk, err := decryptMPPEKey(recv, w.s.Secret, reqAuth)
	if err != nil {
		return w.result(0, fail(CauseMPPEMalformed, "MS-MPPE-Recv-Key: %v", err))
	}
	sk, err := decryptMPPEKey(send, w.s.Secret, reqAuth)
	if err != nil {
		return w.result(0, fail(CauseMPPEMalformed, "MS-MPPE-Send-Key: %v", err))
	}
	if !bytes.Equal(rk, res.MSK[:32]) {
		return w.result(0, fail(CauseMPPEMismatch, "MS-MPPE-Recv-Key is not MSK[0:32]%s", keyHint(rk, res)))
	}
	if !bytes.Equal(sk, res.MSK[32:64]) {
		return w.result(0, fail(CauseMPPEMismatch, "MS-MPPE-Send-Key is not MSK[32:64]%s", keyHint(sk, res)))
	}
	return outcome{kind: outAccept, vlan: vlan, version: res.Version}
}

// keyHint names the known wrong offsets a key was taken from, without
// printing key material.
func keyHint(k []byte, res *eaptls.Result) string {
	switch {
	case len(res.EMSK) >= 64 && bytes.Equal(k, res.EMSK[:32]):
		return " (it is EMSK[0:32]: the server read past the MSK, offset 64)"
	case len(res.EMSK) >= 64 && bytes.Equal(k, res.EMSK[32:64]):
		return " (it is EMSK[32:64])"
	case bytes.Equal(k, res.MSK[:32]):
		return " (it is MSK[0:32]: Send and Recv swapped or equal)"
	case bytes.Equal(k, res.MSK[32:64]):
		return " (it is MSK[32:64]: Send and Recv swapped)"
	case len(k) != 32:
		return fmt.Sprintf(" (a %d-byte key)", len(k))
	}
	return ""
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
