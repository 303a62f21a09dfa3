// Package eap owns the EAP packet format (RFC 3748): parsing and encoding of
// the Code/Identifier/Length header and the method Type. It never trusts a
// length field: every length is checked against the bytes actually present.
package eap

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Code is the EAP packet code.
type Code uint8

const (
	CodeRequest  Code = 1
	CodeResponse Code = 2
	CodeSuccess  Code = 3
	CodeFailure  Code = 4
)

// Type is the EAP method type (Request and Response only).
type Type uint8

const (
	TypeIdentity     Type = 1
	TypeNotification Type = 2
	TypeNak          Type = 3 // Legacy Nak
	TypeTLS          Type = 13
	TypeExpanded     Type = 254
)

// HeaderLen is the length of Code, Identifier and Length.
const HeaderLen = 4

// MaxLen is the largest EAP packet the 16-bit Length field can describe.
const MaxLen = 0xffff

var (
	ErrShort      = errors.New("eap: packet shorter than its header")
	ErrLength     = errors.New("eap: length field does not match the packet")
	ErrBadCode    = errors.New("eap: unknown code")
	ErrNoType     = errors.New("eap: request/response without a type")
	ErrHasPayload = errors.New("eap: success/failure with a payload")
)

// Packet is one EAP packet. Data is the type-data after the Type octet and
// aliases the buffer given to Parse.
type Packet struct {
	Code       Code
	Identifier uint8
	Type       Type // zero for Success/Failure
	Data       []byte
}

// Parse decodes one EAP packet. The Length field must equal len(b): RADIUS
// carries exactly one EAP packet, and trailing bytes are a lie worth refusing.
func Parse(b []byte) (*Packet, error) {
	if len(b) < HeaderLen {
		return nil, ErrShort
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n != len(b) {
		return nil, fmt.Errorf("%w: header says %d, have %d", ErrLength, n, len(b))
	}
	p := &Packet{Code: Code(b[0]), Identifier: b[1]}
	switch p.Code {
	case CodeRequest, CodeResponse:
		if n < HeaderLen+1 {
			return nil, ErrNoType
		}
		p.Type = Type(b[4])
		p.Data = b[5:n]
	case CodeSuccess, CodeFailure:
		if n != HeaderLen {
			return nil, ErrHasPayload
		}
	default:
		return nil, fmt.Errorf("%w %d", ErrBadCode, b[0])
	}
	return p, nil
}

// Len returns the encoded length of p.
func (p *Packet) Len() int {
	if p.Code == CodeRequest || p.Code == CodeResponse {
		return HeaderLen + 1 + len(p.Data)
	}
	return HeaderLen
}

// Marshal encodes p. It fails if the packet would exceed MaxLen.
func (p *Packet) Marshal() ([]byte, error) {
	n := p.Len()
	if n > MaxLen {
		return nil, errTooLong(n)
	}
	return p.AppendTo(make([]byte, 0, n))
}

func errTooLong(n int) error { return fmt.Errorf("eap: packet of %d bytes exceeds %d", n, MaxLen) }

// AppendTo appends the encoding of p to dst (which may be a reused buffer)
// and returns the extended slice. It fails, leaving dst as it was, if the
// packet would exceed MaxLen.
func (p *Packet) AppendTo(dst []byte) ([]byte, error) {
	n := p.Len()
	if n > MaxLen {
		return dst, errTooLong(n)
	}
	dst = append(dst, byte(p.Code), p.Identifier, byte(n>>8), byte(n))
	if n > HeaderLen {
		dst = append(dst, byte(p.Type))
		dst = append(dst, p.Data...)
	}
	return dst, nil
}

// Success returns an EAP-Success with the given identifier.
func Success(id uint8) *Packet { return &Packet{Code: CodeSuccess, Identifier: id} }

// Failure returns an EAP-Failure with the given identifier.
func Failure(id uint8) *Packet { return &Packet{Code: CodeFailure, Identifier: id} }
