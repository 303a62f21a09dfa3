package radius

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"testing"
)

// Known answer computed outside Go (Python hashlib) from RFC 2548 section
// 2.4.2: secret "xyzzy5461", Request Authenticator 00..0f, salt 0x8001,
// key 0x40..0x5f.
const kaMPPE = "8001d1a657ec2cb5f798022c6ccf4e9642d4ab43e38de2e96a22713bad312ee2e14b90558e3cac143b6097efa52718dc4d6f"

// rfc2548Encrypt is the RFC's algorithm written out independently, for the
// known-answer test: P = len || key || zero padding; b(1) = MD5(S + R + A),
// c(i) = p(i) xor b(i), b(i) = MD5(S + c(i-1)).
func rfc2548Encrypt(key, secret []byte, reqAuth [16]byte, salt [2]byte) []byte {
	p := append([]byte{byte(len(key))}, key...)
	for len(p)%16 != 0 {
		p = append(p, 0)
	}
	out := append([]byte(nil), salt[:]...)
	prev := append(append([]byte(nil), reqAuth[:]...), salt[:]...)
	for i := 0; i < len(p); i += 16 {
		b := md5.Sum(append(append([]byte(nil), secret...), prev...))
		c := make([]byte, 16)
		for j := range c {
			c[j] = p[i+j] ^ b[j]
		}
		out = append(out, c...)
		prev = c
	}
	return out
}

// rfc2548Decrypt reverses it and returns the key.
func rfc2548Decrypt(tb testing.TB, v, secret []byte, reqAuth [16]byte) []byte {
	tb.Helper()
	if len(v) < 18 || (len(v)-2)%16 != 0 || v[0]&0x80 == 0 {
		tb.Fatalf("bad encrypted MPPE value of %d bytes, salt %x", len(v), v[:2])
	}
	prev := append(append([]byte(nil), reqAuth[:]...), v[:2]...)
	var p []byte
	for c := v[2:]; len(c) > 0; c = c[16:] {
		b := md5.Sum(append(append([]byte(nil), secret...), prev...))
		for j := 0; j < 16; j++ {
			p = append(p, c[j]^b[j])
		}
		prev = c[:16]
	}
	if int(p[0]) > len(p)-1 {
		tb.Fatalf("key length %d in %d bytes", p[0], len(p))
	}
	return p[1 : 1+int(p[0])]
}

func TestMPPEKeyKnownAnswer(t *testing.T) {
	secret := []byte(kaSecret)
	var reqAuth [16]byte
	for i := range reqAuth {
		reqAuth[i] = byte(i)
	}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(0x40 + i)
	}
	salt := [2]byte{0x80, 0x01}
	want := mustHex(t, kaMPPE)

	if ref := rfc2548Encrypt(key, secret, reqAuth, salt); !bytes.Equal(ref, want) {
		t.Fatalf("reference implementation disagrees with the vector: %x", ref)
	}
	got, err := encryptMPPEKey(key, secret, reqAuth, salt)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encryptMPPEKey = %x\nwant             %x", got, want)
	}
	if len(got) != 50 {
		t.Fatalf("%d bytes, want 2 salt + 48", len(got))
	}
	if _, err := encryptMPPEKey(key, secret, reqAuth, [2]byte{0x7f, 0}); err == nil {
		t.Fatal("a salt without the high bit must be refused")
	}
}

func TestMPPEAttributes(t *testing.T) {
	msk := make([]byte, 64)
	for i := range msk {
		msk[i] = byte(i * 3)
	}
	var reqAuth [16]byte
	copy(reqAuth[:], "request-auth-16b")
	recv, send, err := mppeAttributes(msk, testSecret, reqAuth)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		vsa  []byte
		typ  byte
		want []byte
	}{
		{"MS-MPPE-Recv-Key is MSK[0:32]", recv, msMPPERecvKey, msk[:32]},
		{"MS-MPPE-Send-Key is MSK[32:64]", send, msMPPESendKey, msk[32:64]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if binary.BigEndian.Uint32(tt.vsa) != 311 || tt.vsa[4] != tt.typ || int(tt.vsa[5]) != len(tt.vsa)-4 {
				t.Fatalf("VSA header % x", tt.vsa[:6])
			}
			if got := rfc2548Decrypt(t, tt.vsa[6:], testSecret, reqAuth); !bytes.Equal(got, tt.want) {
				t.Fatalf("decrypted %x, want %x", got, tt.want)
			}
		})
	}
	if bytes.Equal(recv[6:8], send[6:8]) {
		t.Fatal("the two attributes share a salt")
	}
	if _, _, err := mppeAttributes(msk[:63], testSecret, reqAuth); err == nil {
		t.Fatal("a short MSK must be refused")
	}
}
