package radius

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"sync"

	"layeh.com/radius"
)

// Attribute type numbers used on the wire (RFC 2865, 2868, 2869).
const (
	attrUserName              = 1
	attrClass                 = 25
	attrVendorSpecific        = 26
	attrSessionTimeout        = 27
	attrState                 = 24
	attrCalledStationID       = 30
	attrCallingStationID      = 31
	attrProxyState            = 33
	attrTunnelType            = 64
	attrTunnelMediumType      = 65
	attrEAPMessage            = 79
	attrMessageAuthenticator  = 80
	attrTunnelPrivateGroupID  = 81
	messageAuthenticatorLen   = 16
	messageAuthenticatorAttrN = 2 + messageAuthenticatorLen
	headerLen                 = 20
	maxAttrValue              = 253
)

// Drop causes: the label values of nacd_radius_dropped_total. Stable.
const (
	DropUnknownClient               = "unknown_client"
	DropMalformed                   = "malformed"
	DropUnsupportedCode             = "unsupported_code"
	DropBadMessageAuthenticator     = "bad_message_authenticator"
	DropBadAuthenticator            = "bad_authenticator" // Accounting-Request Request Authenticator (RFC 2866)
	DropMissingMessageAuthenticator = "missing_message_authenticator"
	DropDuplicateInProgress         = "duplicate_in_progress"
	DropDuplicateReplayed           = "duplicate_replayed"
	DropOverloaded                  = "overloaded"
	DropPanic                       = "panic"
	DropEAPIdentifierMismatch       = "eap_identifier_mismatch"
	DropInternal                    = "internal"
	// DropCertificateRefused: a request on a RadSec connection whose NAS
	// certificate the revocation check (RadSecConfig.VerifyPeer) now
	// refuses; the connection is closed.
	DropCertificateRefused = "certificate_refused"
)

// dropCauses lists every cause, so that the counter is initialised at zero
// for each and dashboards see the series before the first drop.
var dropCauses = []string{
	DropUnknownClient, DropMalformed, DropUnsupportedCode,
	DropBadMessageAuthenticator, DropMissingMessageAuthenticator,
	DropBadAuthenticator,
	DropDuplicateInProgress, DropDuplicateReplayed, DropOverloaded,
	DropPanic, DropEAPIdentifierMismatch, DropInternal, DropCertificateRefused,
}

// dropError is a verification failure with its metric cause.
type dropError struct {
	cause  string
	detail string
}

func (e *dropError) Error() string { return "radius: drop (" + e.cause + "): " + e.detail }

func drop(cause, format string, args ...any) error {
	return &dropError{cause: cause, detail: fmt.Sprintf(format, args...)}
}

// dropCause returns the metric cause of err (DropInternal if it carries none).
func dropCause(err error) string {
	var d *dropError
	if errors.As(err, &d) {
		return d.cause
	}
	return DropInternal
}

// verifyRequest checks one request datagram from client c and returns it
// parsed. It enforces, in order: header and attribute framing, the codes
// nacd serves (Access-Request, Status-Server), at most one
// Message-Authenticator of the right size, the presence rules (RFC 3579
// for EAP, RFC 5997 for Status-Server, BlastRADIUS for Proxy-State and for
// clients that require it on every Access-Request), and the HMAC-MD5
// itself, compared in constant time. Octets beyond the Length field are
// padding (RFC 2865 section 3) and ignored.
func verifyRequest(b []byte, c *Client) (*radius.Packet, error) {
	if len(b) < headerLen {
		return nil, drop(DropMalformed, "%d bytes, shorter than a header", len(b))
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n < headerLen || n > radius.MaxPacketLength || n > len(b) {
		return nil, drop(DropMalformed, "length field %d, datagram %d bytes", n, len(b))
	}
	b = b[:n]
	code := radius.Code(b[0])
	if code != radius.CodeAccessRequest && code != radius.CodeStatusServer && code != radius.CodeAccountingRequest {
		return nil, drop(DropUnsupportedCode, "code %d", b[0])
	}

	maOff := -1 // offset of the Message-Authenticator value
	var hasEAP, hasProxyState bool
	for off := headerLen; off < n; {
		if n-off < 2 {
			return nil, drop(DropMalformed, "truncated attribute at %d", off)
		}
		t, l := b[off], int(b[off+1])
		if l < 2 || off+l > n {
			return nil, drop(DropMalformed, "attribute %d at %d: length %d", t, off, l)
		}
		switch t {
		case attrMessageAuthenticator:
			if maOff >= 0 {
				return nil, drop(DropMalformed, "more than one Message-Authenticator")
			}
			if l != messageAuthenticatorAttrN {
				return nil, drop(DropMalformed, "Message-Authenticator of length %d", l)
			}
			maOff = off + 2
		case attrEAPMessage:
			hasEAP = true
		case attrProxyState:
			hasProxyState = true
		}
		off += l
	}

	if code == radius.CodeAccountingRequest {
		return verifyAccounting(b, maOff, c)
	}
	if maOff < 0 {
		switch {
		case code == radius.CodeStatusServer:
			return nil, drop(DropMissingMessageAuthenticator, "Status-Server")
		case hasEAP:
			return nil, drop(DropMissingMessageAuthenticator, "Access-Request with EAP-Message")
		case hasProxyState:
			return nil, drop(DropMissingMessageAuthenticator, "request with Proxy-State")
		case c.RequireMessageAuthenticator:
			return nil, drop(DropMissingMessageAuthenticator, "client requires it on every Access-Request")
		}
	} else if !validMessageAuthenticator(b, maOff, c.Secret) {
		return nil, drop(DropBadMessageAuthenticator, "HMAC-MD5 mismatch (wrong shared secret?)")
	}

	p, err := parsePacket(b, c.Secret)
	if err != nil { // unreachable after the walk above; fail closed anyway
		return nil, drop(DropMalformed, "%v", err)
	}
	return p, nil
}

// parsePacket decodes the request b (its Length already checked and b cut
// to it) like radius.Parse, but without copying: the attribute values alias
// b. They are valid only while b is: the server's datagram buffer is reused
// once the request's handler has returned, so anything kept past that
// (conversation fields, session records, log strings) must be copied
// (string(v), printable, append([]byte(nil), v...)). Each value's capacity
// is cut to its length, so an append to one never writes over the next.
// The framing checks are those of radius.ParseAttributes (FuzzParsePacket
// proves both agree), with three allocations per packet instead of two per
// attribute.
func parsePacket(b, secret []byte) (*radius.Packet, error) {
	if len(b) < headerLen {
		return nil, errors.New("radius: packet not at least 20 bytes long")
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n < headerLen || n > radius.MaxPacketLength || len(b) < n {
		return nil, errors.New("radius: invalid packet length")
	}
	count := 0
	for off := headerLen; off < n; count++ {
		if n-off < 2 {
			return nil, errors.New("short buffer")
		}
		l := int(b[off+1])
		if l < 2 || off+l > n {
			return nil, errors.New("invalid attribute length")
		}
		off += l
	}
	p := &radius.Packet{Code: radius.Code(b[0]), Identifier: b[1], Secret: secret}
	copy(p.Authenticator[:], b[4:headerLen])
	if count == 0 {
		return p, nil
	}
	avps := make([]radius.AVP, count)
	p.Attributes = make(radius.Attributes, count)
	for i, off := 0, headerLen; i < count; i++ {
		l := int(b[off+1])
		avps[i].Type = radius.Type(b[off])
		if l > 2 { // radius.ParseAttributes leaves an empty value nil
			avps[i].Attribute = b[off+2 : off+l : off+l]
		}
		p.Attributes[i] = &avps[i]
		off += l
	}
	return p, nil
}

// validMessageAuthenticator checks the HMAC-MD5 (RFC 3579 section 3.2) of
// request b whose Message-Authenticator value starts at maOff: the HMAC is
// over the packet with that value zeroed, keyed with the shared secret. For
// Access-Request and Status-Server the Authenticator field is the Request
// Authenticator as sent.
func validMessageAuthenticator(b []byte, maOff int, secret []byte) bool {
	var got [messageAuthenticatorLen]byte
	copy(got[:], b[maOff:maOff+messageAuthenticatorLen])
	sum := hmacMD5(secret, b[:maOff], zeroAuthenticator[:], b[maOff+messageAuthenticatorLen:])
	return hmac.Equal(sum[:], got[:])
}

var zeroAuthenticator [messageAuthenticatorLen]byte

// md5State is a pooled MD5 with the scratch space of hmacMD5, so that the
// per-packet HMAC-MD5 and MD5 of the RADIUS hot path allocate nothing
// (crypto/hmac.New allocates two digests and both pads per call).
type md5State struct {
	h     hash.Hash
	pad   [md5.BlockSize]byte
	inner [md5.Size]byte
	out   [md5.Size]byte
}

var md5Pool = sync.Pool{New: func() any { return &md5State{h: md5.New()} }}

// hmacMD5 is HMAC-MD5 (RFC 2104) keyed with secret over the concatenation
// of parts. It equals crypto/hmac with md5.New (TestHMACMD5MatchesCryptoHMAC).
func hmacMD5(secret []byte, parts ...[]byte) (out [md5.Size]byte) {
	st := md5Pool.Get().(*md5State)
	var key [md5.BlockSize]byte
	if len(secret) > md5.BlockSize {
		k := md5.Sum(secret)
		copy(key[:], k[:])
	} else {
		copy(key[:], secret)
	}
	for i := range st.pad {
		st.pad[i] = key[i] ^ 0x36
	}
	st.h.Reset()
	st.h.Write(st.pad[:])
	for _, p := range parts {
		st.h.Write(p)
	}
	st.h.Sum(st.inner[:0])
	for i := range st.pad {
		st.pad[i] = key[i] ^ 0x5c
	}
	st.h.Reset()
	st.h.Write(st.pad[:])
	st.h.Write(st.inner[:])
	st.h.Sum(st.out[:0])
	out = st.out
	st.h.Reset()
	clear(st.pad[:])
	clear(key[:])
	md5Pool.Put(st)
	return out
}

// md5Sum is MD5 over the concatenation of parts.
func md5Sum(parts ...[]byte) (out [md5.Size]byte) {
	st := md5Pool.Get().(*md5State)
	st.h.Reset()
	for _, p := range parts {
		st.h.Write(p)
	}
	st.h.Sum(st.out[:0])
	out = st.out
	st.h.Reset()
	md5Pool.Put(st)
	return out
}

// encodeResponse builds the wire form of a response to a request with
// identifier id and Request Authenticator reqAuth: Message-Authenticator is
// the first attribute (the BlastRADIUS mitigation), then attrs, then the
// request's Proxy-State attributes in their order. The
// Message-Authenticator is computed with the Request Authenticator in the
// header (RFC 3579 section 3.2), then the Response Authenticator
// MD5(Code+Identifier+Length+RequestAuth+Attributes+Secret) replaces it.
//
// An Accounting-Response carries no Message-Authenticator: RFC 2866 has
// none, and NASes disagree on how it would be computed (FreeRADIUS zeroes
// the Authenticator field, RFC 3579 style uses the Request Authenticator).
func encodeResponse(code radius.Code, id byte, reqAuth [16]byte, secret []byte, attrs radius.Attributes, proxyState []radius.Attribute) ([]byte, error) {
	withMA := code != radius.CodeAccountingResponse
	n := headerLen
	if withMA {
		n += messageAuthenticatorAttrN
	}
	for _, a := range attrs {
		if a.Type < 1 || a.Type > 255 || len(a.Attribute) > maxAttrValue {
			return nil, fmt.Errorf("radius: response attribute %d of %d bytes", a.Type, len(a.Attribute))
		}
		n += 2 + len(a.Attribute)
	}
	for _, ps := range proxyState {
		if len(ps) > maxAttrValue {
			return nil, fmt.Errorf("radius: Proxy-State of %d bytes", len(ps))
		}
		n += 2 + len(ps)
	}
	if n > radius.MaxPacketLength {
		return nil, fmt.Errorf("radius: response of %d bytes exceeds %d", n, radius.MaxPacketLength)
	}
	b := make([]byte, n)
	b[0] = byte(code)
	b[1] = id
	binary.BigEndian.PutUint16(b[2:4], uint16(n))
	copy(b[4:20], reqAuth[:])
	off := headerLen
	if withMA {
		b[20], b[21] = attrMessageAuthenticator, messageAuthenticatorAttrN
		off += messageAuthenticatorAttrN
	}
	put := func(t byte, v []byte) {
		b[off], b[off+1] = t, byte(2+len(v))
		copy(b[off+2:], v)
		off += 2 + len(v)
	}
	for _, a := range attrs {
		put(byte(a.Type), a.Attribute)
	}
	for _, ps := range proxyState {
		put(attrProxyState, ps)
	}

	if withMA {
		mac := hmacMD5(secret, b)
		copy(b[22:38], mac[:])
	}
	auth := md5Sum(b, secret)
	copy(b[4:20], auth[:])
	return b, nil
}

// eapMessage concatenates the EAP-Message attributes of p in order (RFC 3579
// section 3.1). ok is false when there is none.
func eapMessage(p *radius.Packet) (msg []byte, ok bool) {
	n := 0
	for _, a := range p.Attributes {
		if a.Type == attrEAPMessage {
			n += len(a.Attribute)
		}
	}
	if n > 0 {
		msg = make([]byte, 0, n)
	}
	for _, a := range p.Attributes {
		if a.Type == attrEAPMessage {
			msg = append(msg, a.Attribute...)
			ok = true
		}
	}
	return msg, ok
}

// splitEAP cuts an EAP packet into EAP-Message attributes of at most 253
// bytes each, aliasing msg.
func splitEAP(msg []byte) radius.Attributes { return splitEAPRoom(msg, 0) }

// splitEAPRoom is splitEAP with capacity for extra more attributes. The
// AVPs share one allocation.
func splitEAPRoom(msg []byte, extra int) radius.Attributes {
	n := (len(msg) + maxAttrValue - 1) / maxAttrValue
	avps := make([]radius.AVP, n)
	attrs := make(radius.Attributes, n, n+extra)
	for i := range avps {
		k := min(len(msg), maxAttrValue)
		avps[i] = radius.AVP{Type: attrEAPMessage, Attribute: msg[:k:k]}
		attrs[i] = &avps[i]
		msg = msg[k:]
	}
	return attrs
}

// proxyStates returns the request's Proxy-State values in order.
func proxyStates(p *radius.Packet) []radius.Attribute {
	var ps []radius.Attribute
	for _, a := range p.Attributes {
		if a.Type == attrProxyState {
			ps = append(ps, a.Attribute)
		}
	}
	return ps
}
