package loadtest

import (
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
)

// RADIUS attribute types the load generator reads or writes.
const (
	attrUserName             = 1
	attrServiceType          = 6
	attrFramedMTU            = 12
	attrState                = 24
	attrVendorSpecific       = 26
	attrCalledStationID      = 30
	attrCallingStationID     = 31
	attrNASIdentifier        = 32
	attrNASPortType          = 61
	attrEAPMessage           = 79
	attrMessageAuthenticator = 80
	attrTunnelPrivateGroupID = 81

	vendorMicrosoft = 311
	msMPPESendKey   = 16
	msMPPERecvKey   = 17

	headerLen    = 20
	maxAttrValue = 253
	maxPacket    = 4096
)

// attr is one attribute of a raw packet: its type, value and the offset of
// the value in the packet.
type attr struct {
	typ   byte
	value []byte
	off   int
}

// parseAttrs walks the attributes of a packet whose header was checked.
func parseAttrs(b []byte) ([]attr, error) {
	var out []attr
	for off := headerLen; off < len(b); {
		if len(b)-off < 2 {
			return nil, errors.New("truncated attribute header")
		}
		n := int(b[off+1])
		if n < 2 || off+n > len(b) {
			return nil, fmt.Errorf("attribute %d with bad length %d", b[off], n)
		}
		out = append(out, attr{typ: b[off], value: b[off+2 : off+n], off: off + 2})
		off += n
	}
	return out, nil
}

// messageAuthenticatorOK checks a response's Message-Authenticator (RFC 3579
// section 3.2): HMAC-MD5 keyed with the secret over the response with the
// Request Authenticator in the authenticator field and the
// Message-Authenticator value zeroed.
func messageAuthenticatorOK(resp []byte, maOff int, reqAuth []byte, secret []byte) bool {
	if maOff+16 > len(resp) {
		return false
	}
	mac := hmac.New(md5.New, secret)
	mac.Write(resp[:4])
	mac.Write(reqAuth)
	mac.Write(resp[headerLen:maOff])
	var zero [16]byte
	mac.Write(zero[:])
	mac.Write(resp[maOff+16:])
	var sum [md5.Size]byte
	return hmac.Equal(mac.Sum(sum[:0]), resp[maOff:maOff+16])
}

// signRequest fills the Message-Authenticator of an Access-Request whose
// value (zeroed) is at maOff.
func signRequest(b []byte, maOff int, secret []byte) {
	mac := hmac.New(md5.New, secret)
	mac.Write(b)
	mac.Sum(b[maOff:maOff])
}

// decryptMPPEKey undoes the RFC 2548 section 2.4.2 salt encryption of an
// MS-MPPE-Send-Key / MS-MPPE-Recv-Key value (salt || ciphertext):
// b(1) = MD5(secret || Request-Authenticator || salt), b(i) = MD5(secret ||
// c(i-1)), p(i) = c(i) XOR b(i); the plaintext is a key-length octet, the
// key and padding.
func decryptMPPEKey(v, secret, reqAuth []byte) ([]byte, error) {
	if len(v) < 2+16 || (len(v)-2)%16 != 0 {
		return nil, fmt.Errorf("MPPE key attribute of %d bytes", len(v))
	}
	salt, c := v[:2], v[2:]
	if salt[0]&0x80 == 0 {
		return nil, errors.New("MPPE salt without its high bit set")
	}
	p := make([]byte, len(c))
	var b [md5.Size]byte
	h := md5.New()
	for i := 0; i < len(c); i += 16 {
		h.Reset()
		h.Write(secret)
		if i == 0 {
			h.Write(reqAuth)
			h.Write(salt)
		} else {
			h.Write(c[i-16 : i])
		}
		h.Sum(b[:0])
		for j := 0; j < 16; j++ {
			p[i+j] = c[i+j] ^ b[j]
		}
	}
	n := int(p[0])
	if n == 0 || 1+n > len(p) {
		return nil, fmt.Errorf("MPPE key length %d in %d decrypted bytes", n, len(p))
	}
	return p[1 : 1+n], nil
}

// microsoftSubAttrs returns the Microsoft sub-attributes of a
// Vendor-Specific value (a VSA may carry several).
func microsoftSubAttrs(v []byte) (map[byte][]byte, error) {
	if len(v) < 4 || binary.BigEndian.Uint32(v) != vendorMicrosoft {
		return nil, nil
	}
	out := map[byte][]byte{}
	for b := v[4:]; len(b) > 0; {
		if len(b) < 2 || int(b[1]) < 2 || int(b[1]) > len(b) {
			return nil, errors.New("malformed Microsoft vendor attribute")
		}
		out[b[0]] = b[2:b[1]]
		b = b[b[1]:]
	}
	return out, nil
}

// tunnelValue strips the RFC 2868 tag octet (0x00..0x1F) from a tagged
// string attribute such as Tunnel-Private-Group-Id.
func tunnelValue(v []byte) string {
	if len(v) > 0 && v[0] <= 0x1f {
		v = v[1:]
	}
	return string(v)
}
