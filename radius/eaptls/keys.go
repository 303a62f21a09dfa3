package eaptls

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// EAP-TLS key derivation (RFC 5216 section 2.3, RFC 9190 section 2.3).
const (
	eapTLSType     = 0x0D
	labelTLS12     = "client EAP encryption"
	labelTLS13Keys = "EXPORTER_EAP_TLS_Key_Material"
	labelTLS13ID   = "EXPORTER_EAP_TLS_Method-Id"
	keyLen         = 64
)

// keyLog captures, for one connection, the secrets crypto/tls writes to
// tls.Config.KeyLogWriter (NSS key log format). Only what EAP-TLS needs is
// kept: the TLS 1.2 client random and master secret (crypto/tls refuses
// ExportKeyingMaterial on TLS 1.2 without Extended Master Secret, so the
// RFC 5216 PRF is computed from the master secret), and the TLS 1.3 server
// application traffic secret (to protect the alert nacd sends when
// authorization fails after the handshake). Nothing here is ever logged.
type keyLog struct {
	clientRandom  []byte
	masterSecret  []byte
	serverTraffic []byte
	err           error
}

// Write parses one key log line. crypto/tls writes whole lines.
func (k *keyLog) Write(line []byte) (int, error) {
	n := len(line)
	fields := strings.Fields(string(line))
	if len(fields) != 3 {
		return n, nil
	}
	cr, err1 := hex.DecodeString(fields[1])
	secret, err2 := hex.DecodeString(fields[2])
	if err1 != nil || err2 != nil || len(cr) != 32 {
		k.err = errors.New("eaptls: unparsable key log line")
		return n, nil
	}
	switch fields[0] {
	case "CLIENT_RANDOM":
		k.clientRandom, k.masterSecret = cr, secret
	case "SERVER_TRAFFIC_SECRET_0":
		k.clientRandom, k.serverTraffic = cr, secret
	}
	return n, nil
}

// wipe zeroes the secrets.
func (k *keyLog) wipe() {
	clear(k.masterSecret)
	clear(k.serverTraffic)
	k.masterSecret, k.serverTraffic = nil, nil
}

// prf12 is the TLS 1.2 PRF (RFC 5246 section 5): P_hash(secret, label||seed).
func prf12(h func() hash.Hash, secret []byte, label string, seed []byte, n int) []byte {
	ls := make([]byte, 0, len(label)+len(seed))
	ls = append(ls, label...)
	ls = append(ls, seed...)
	out := make([]byte, 0, n+64)
	mac := hmac.New(h, secret)
	mac.Write(ls)
	a := mac.Sum(nil) // A(1)
	for len(out) < n {
		mac.Reset()
		mac.Write(a)
		mac.Write(ls)
		out = mac.Sum(out)
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	return out[:n]
}

// prfHash returns the PRF hash of a TLS 1.2 cipher suite: SHA-384 for the
// _SHA384 suites, SHA-256 for every other TLS 1.2 suite (RFC 5246, 5289).
func prfHash(suite uint16) func() hash.Hash {
	if strings.HasSuffix(tls.CipherSuiteName(suite), "_SHA384") {
		return sha512.New384
	}
	return sha256.New
}

// keys is the derived EAP-TLS key material.
type keys struct {
	msk, emsk, sessionID []byte
}

// deriveKeys computes MSK, EMSK and Session-Id for a finished handshake.
// TLS 1.3 uses the exporter (RFC 9190). TLS 1.2 uses the RFC 5216 PRF over
// the master secret from the key log and the two randoms (client random
// from the key log line, server random parsed from the ServerHello), the
// same route with or without Extended Master Secret.
func deriveKeys(cs *tls.ConnectionState, kl *keyLog, serverRandom []byte) (keys, error) {
	switch cs.Version {
	case tls.VersionTLS13:
		km, err := cs.ExportKeyingMaterial(labelTLS13Keys, []byte{eapTLSType}, 2*keyLen)
		if err != nil {
			return keys{}, fmt.Errorf("TLS 1.3 exporter: %w", err)
		}
		mid, err := cs.ExportKeyingMaterial(labelTLS13ID, []byte{eapTLSType}, 64)
		if err != nil {
			return keys{}, fmt.Errorf("TLS 1.3 exporter: %w", err)
		}
		return keys{msk: km[:keyLen:keyLen], emsk: km[keyLen:], sessionID: append([]byte{eapTLSType}, mid...)}, nil
	case tls.VersionTLS12:
		if kl.err != nil {
			return keys{}, kl.err
		}
		if len(kl.masterSecret) != 48 || len(kl.clientRandom) != 32 {
			return keys{}, errors.New("no TLS 1.2 master secret captured")
		}
		if len(serverRandom) != 32 {
			return keys{}, errors.New("no ServerHello random captured")
		}
		seed := make([]byte, 0, 64)
		seed = append(seed, kl.clientRandom...)
		seed = append(seed, serverRandom...)
		km := prf12(prfHash(cs.CipherSuite), kl.masterSecret, labelTLS12, seed, 2*keyLen)
		return keys{msk: km[:keyLen:keyLen], emsk: km[keyLen:], sessionID: append([]byte{eapTLSType}, seed...)}, nil
	default:
		return keys{}, fmt.Errorf("no EAP-TLS key derivation for %s", tlsVersionName(cs.Version))
	}
}

// TLS record layer constants.
const (
	recordHeaderLen     = 5
	recordCCS           = 20
	recordAlert         = 21
	recordHandshake     = 22
	recordApplication   = 23
	handshakeServerHelo = 2
)

// helloRetryRandom is the ServerHello.random of a TLS 1.3 HelloRetryRequest
// (RFC 8446 section 4.1.3).
var helloRetryRandom = []byte{
	0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
	0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
}

// helloScanner finds ServerHello.random in the server's byte stream: it
// reads plaintext TLS records from the start of the stream, collects
// handshake-layer bytes and returns the random of the first ServerHello that
// is not a HelloRetryRequest. Bytes are accumulated across calls (records
// may straddle EAP-TLS messages) up to a cap.
type helloScanner struct {
	stream []byte
	random []byte
	failed bool
}

const helloScanCap = 1 << 17

func (h *helloScanner) feed(b []byte) {
	if h.random != nil || h.failed {
		return
	}
	if len(h.stream)+len(b) > helloScanCap {
		h.failed = true
		h.stream = nil
		return
	}
	// Parse b in place when nothing is buffered (the usual case: the
	// ServerHello is in the first write); keep a copy only when the
	// ServerHello is not complete yet.
	rec := b
	if len(h.stream) > 0 {
		h.stream = append(h.stream, b...)
		rec = h.stream
	}
	defer func() {
		if h.random == nil && !h.failed && len(h.stream) == 0 {
			h.stream = append([]byte(nil), b...)
		}
	}()
	var hs []byte
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
			if len(hs) == 0 {
				hs = body // no copy; never appended to in place (below)
			} else {
				hs = append(hs[:len(hs):len(hs)], body...)
			}
		case recordCCS:
			continue
		default: // alert or encrypted data before a ServerHello: give up
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
