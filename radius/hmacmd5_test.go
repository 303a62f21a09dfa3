package radius

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"testing"
)

// hmacMD5 and md5Sum (pooled, allocation-free) must equal crypto/hmac and
// crypto/md5 for every secret length (shorter than, equal to and longer
// than the 64-byte block, where the key is hashed first) and split input.
func TestHMACMD5MatchesCryptoHMAC(t *testing.T) {
	msg := make([]byte, 300)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	cases := []struct {
		name   string
		secret []byte
		parts  [][]byte
	}{
		{"empty secret, empty message", nil, nil},
		{"short secret", []byte("testing123"), [][]byte{msg[:20]}},
		{"secret of one block", bytes.Repeat([]byte{'k'}, 64), [][]byte{msg}},
		{"secret longer than a block", bytes.Repeat([]byte{'s'}, 65), [][]byte{msg}},
		{"long secret, split message", bytes.Repeat([]byte("secret"), 40), [][]byte{msg[:22], make([]byte, 16), msg[38:]}},
		{"message split in empty parts", []byte("x"), [][]byte{{}, msg[:1], {}, msg[1:100]}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := hmac.New(md5.New, c.secret)
			joined := bytes.Join(c.parts, nil)
			want.Write(joined)
			// Twice: the pooled state must not carry anything over.
			for range 2 {
				if got := hmacMD5(c.secret, c.parts...); !bytes.Equal(got[:], want.Sum(nil)) {
					t.Errorf("hmacMD5 = %x, want %x", got, want.Sum(nil))
				}
				if got, w := md5Sum(append(c.parts, c.secret)...), md5.Sum(append(joined, c.secret...)); got != w {
					t.Errorf("md5Sum = %x, want %x", got, w)
				}
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { hmacMD5([]byte("testing123"), msg[:20], msg[20:]) }); n != 0 {
		t.Errorf("hmacMD5 allocates %v times per call, want 0", n)
	}
}
