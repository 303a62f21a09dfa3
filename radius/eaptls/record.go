package eaptls

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// Alerts an Authorize callback may wrap to choose the TLS alert sent when it
// refuses a peer, e.g. fmt.Errorf("serial %s revoked: %w", s,
// eaptls.AlertCertificateRevoked). Without one, access_denied is sent.
const (
	AlertBadCertificate     tls.AlertError = 42
	AlertCertificateRevoked tls.AlertError = 44
	AlertCertificateExpired tls.AlertError = 45
	AlertCertificateUnknown tls.AlertError = 46
	AlertUnknownCA          tls.AlertError = 48
	AlertAccessDenied       tls.AlertError = 49
	alertInternalError      tls.AlertError = 80
)

const alertLevelFatal = 2

// plainAlert returns an unprotected TLS alert record. It is what the server
// sends when it refuses a TLS 1.2 peer: the server's ChangeCipherSpec has not
// been sent, so its write side is still in the clear.
func plainAlert(a tls.AlertError) []byte {
	return []byte{recordAlert, 0x03, 0x03, 0x00, 0x02, alertLevelFatal, byte(a)}
}

// parsePlainAlert returns the description of the first record of b if it is
// an unprotected alert.
func parsePlainAlert(b []byte) (tls.AlertError, bool) {
	if len(b) >= 7 && b[0] == recordAlert && b[3] == 0 && b[4] == 2 {
		return tls.AlertError(b[6]), true
	}
	return 0, false
}

// tls13Protection holds the AEAD state of one TLS 1.3 traffic secret at
// sequence number 0.
type tls13Protection struct {
	aead  cipher.AEAD
	nonce []byte
}

// hkdfExpandLabel is HKDF-Expand-Label with an empty context (RFC 8446
// section 7.1).
func hkdfExpandLabel(h func() hash.Hash, secret []byte, label string, n int) ([]byte, error) {
	full := "tls13 " + label
	info := make([]byte, 0, 4+len(full))
	info = append(info, byte(n>>8), byte(n), byte(len(full)))
	info = append(info, full...)
	info = append(info, 0) // empty context
	return hkdf.Expand(h, secret, string(info), n)
}

// newTLS13Protection derives the record protection for a TLS 1.3 traffic
// secret (RFC 8446 section 7.3).
func newTLS13Protection(suite uint16, secret []byte) (*tls13Protection, error) {
	var (
		h      func() hash.Hash
		keyLen int
		mk     func([]byte) (cipher.AEAD, error)
	)
	gcm := func(k []byte) (cipher.AEAD, error) {
		b, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	}
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256:
		h, keyLen, mk = sha256.New, 16, gcm
	case tls.TLS_AES_256_GCM_SHA384:
		h, keyLen, mk = sha512.New384, 32, gcm
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		h, keyLen, mk = sha256.New, chacha20poly1305.KeySize, chacha20poly1305.New
	default:
		return nil, errors.New("unknown TLS 1.3 cipher suite")
	}
	if len(secret) != h().Size() {
		return nil, errors.New("traffic secret of the wrong size")
	}
	key, err := hkdfExpandLabel(h, secret, "key", keyLen)
	if err != nil {
		return nil, err
	}
	iv, err := hkdfExpandLabel(h, secret, "iv", 12)
	if err != nil {
		return nil, err
	}
	aead, err := mk(key)
	if err != nil {
		return nil, err
	}
	clear(key)
	return &tls13Protection{aead: aead, nonce: iv}, nil // seq 0: nonce = iv
}

// sealAlert returns a protected TLS 1.3 alert record (the first record under
// this secret).
func (p *tls13Protection) sealAlert(a tls.AlertError) []byte {
	inner := []byte{alertLevelFatal, byte(a), recordAlert}
	n := len(inner) + p.aead.Overhead()
	hdr := []byte{recordApplication, 0x03, 0x03, byte(n >> 8), byte(n)}
	return p.aead.Seal(hdr, p.nonce, inner, hdr)
}

// openAlert decrypts the first record of b (the first under this secret)
// and returns its alert description if it is an alert.
func (p *tls13Protection) openAlert(b []byte) (tls.AlertError, bool) {
	if len(b) < recordHeaderLen || b[0] != recordApplication {
		return 0, false
	}
	n := int(b[3])<<8 | int(b[4])
	if len(b) < recordHeaderLen+n {
		return 0, false
	}
	pt, err := p.aead.Open(nil, p.nonce, b[recordHeaderLen:recordHeaderLen+n], b[:recordHeaderLen])
	if err != nil {
		return 0, false
	}
	for len(pt) > 0 && pt[len(pt)-1] == 0 { // strip padding
		pt = pt[:len(pt)-1]
	}
	if len(pt) == 3 && pt[2] == recordAlert {
		return tls.AlertError(pt[1]), true
	}
	return 0, false
}
