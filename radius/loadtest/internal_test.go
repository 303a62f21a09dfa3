package loadtest

import (
	"bytes"
	"crypto/md5"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	tests := []struct {
		name   string
		values []time.Duration
		q      float64
		want   time.Duration
		within float64 // relative error allowed
	}{
		{"single value", []time.Duration{5 * time.Millisecond}, 0.99, 5 * time.Millisecond, 1.0 / 64},
		{"median of 1..100 ms", seq(1, 100, time.Millisecond), 0.5, 50 * time.Millisecond, 1.0 / 64},
		{"p99 of 1..100 ms", seq(1, 100, time.Millisecond), 0.99, 99 * time.Millisecond, 1.0 / 64},
		{"p90 of 1..1000 us", seq(1, 1000, time.Microsecond), 0.90, 900 * time.Microsecond, 1.0 / 64},
		{"small values are exact", seq(1, 50, time.Microsecond), 0.5, 25 * time.Microsecond, 0},
		{"max is exact", []time.Duration{time.Millisecond, 3 * time.Second}, 1, 3 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, v := range tt.values {
				h.record(v)
			}
			got := time.Duration(h.quantile(tt.q)) * time.Microsecond
			if diff := float64(got-tt.want) / float64(tt.want); diff < 0 || diff > tt.within {
				t.Fatalf("quantile(%v) = %v, want %v (+%.1f%%)", tt.q, got, tt.want, tt.within*100)
			}
		})
	}
	t.Run("merge adds", func(t *testing.T) {
		var a, b histogram
		a.record(time.Millisecond)
		b.record(9 * time.Millisecond)
		a.merge(&b)
		if l := a.latency(); l.Count != 2 || l.Max != 9 || l.Mean != 5 {
			t.Fatalf("merged %+v", l)
		}
	})
	t.Run("bucket upper bounds are monotonic", func(t *testing.T) {
		for i := 1; i < histBuckets; i++ {
			if bucketValue(i) <= bucketValue(i-1) {
				t.Fatalf("bucket %d upper %d <= bucket %d upper %d", i, bucketValue(i), i-1, bucketValue(i-1))
			}
			if bucketOf(bucketValue(i)) != i {
				t.Fatalf("bucketOf(bucketValue(%d)) = %d", i, bucketOf(bucketValue(i)))
			}
		}
	})
}

func seq(from, to int, unit time.Duration) []time.Duration {
	var out []time.Duration
	for i := from; i <= to; i++ {
		out = append(out, time.Duration(i)*unit)
	}
	return out
}

// rfc2548 encrypts as RFC 2548 section 2.4.2 says, independently of
// decryptMPPEKey.
func rfc2548(key, secret, reqAuth, salt []byte) []byte {
	p := append([]byte{byte(len(key))}, key...)
	for len(p)%16 != 0 {
		p = append(p, 0)
	}
	out := append([]byte(nil), salt...)
	chain := append(append([]byte(nil), reqAuth...), salt...)
	for i := 0; i < len(p); i += 16 {
		b := md5.Sum(append(append([]byte(nil), secret...), chain...))
		c := make([]byte, 16)
		for j := range c {
			c[j] = p[i+j] ^ b[j]
		}
		out, chain = append(out, c...), c
	}
	return out
}

func TestDecryptMPPEKey(t *testing.T) {
	secret := []byte("s3cret")
	reqAuth := bytes.Repeat([]byte{0xa5}, 16)
	key := bytes.Repeat([]byte{0x42}, 32)
	good := rfc2548(key, secret, reqAuth, []byte{0x81, 0x02})
	tests := []struct {
		name    string
		v       []byte
		secret  []byte
		want    []byte
		wantErr bool
	}{
		{"32-byte key round trip", good, secret, key, false},
		{"wrong secret gives another key or an error", good, []byte("other"), nil, false},
		{"salt without high bit", rfc2548(key, secret, reqAuth, []byte{0x01, 0x02}), secret, nil, true},
		{"truncated", good[:20], secret, nil, true},
		{"empty", nil, secret, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decryptMPPEKey(tt.v, tt.secret, reqAuth)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error, key %x", got)
				}
				return
			}
			if tt.want == nil {
				if err == nil && bytes.Equal(got, key) {
					t.Fatal("wrong secret decrypted to the key")
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("got %x, %v", got, err)
			}
		})
	}
}

func TestTunnelValue(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
		want string
	}{
		{"untagged", []byte("110"), "110"},
		{"tag 1", []byte("\x01110"), "110"},
		{"tag 0", []byte("\x00110"), "110"},
		{"empty", nil, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tunnelValue(tt.in); got != tt.want {
				t.Fatalf("tunnelValue(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestMessageAuthenticatorRoundTrip(t *testing.T) {
	secret := []byte("s3cret")
	b := []byte{11, 7, 0, 38}
	b = append(b, bytes.Repeat([]byte{9}, 16)...) // response authenticator slot
	b = append(b, attrMessageAuthenticator, 18)
	b = append(b, make([]byte, 16)...)
	reqAuth := bytes.Repeat([]byte{3}, 16)
	// Sign as a server does: request authenticator in the header.
	signed := append([]byte(nil), b...)
	copy(signed[4:20], reqAuth)
	signRequest(signed, 22, secret)
	copy(b[22:38], signed[22:38])
	tests := []struct {
		name   string
		mutate func([]byte)
		want   bool
	}{
		{"valid", func([]byte) {}, true},
		{"flipped MAC bit", func(p []byte) { p[30] ^= 1 }, false},
		{"flipped code", func(p []byte) { p[0] = 2 }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := append([]byte(nil), b...)
			tt.mutate(p)
			if got := messageAuthenticatorOK(p, 22, reqAuth, secret); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzReply feeds arbitrary server replies to the reply checks: they must
// never panic, and a reply that passes check must have a verified
// Message-Authenticator or carry neither EAP nor Accept.
func FuzzReply(f *testing.F) {
	secret := []byte("s3cret")
	reqAuth := bytes.Repeat([]byte{7}, 16)
	seed := []byte{11, 1, 0, 44}
	seed = append(seed, make([]byte, 16)...)
	seed = append(seed, attrMessageAuthenticator, 18)
	seed = append(seed, make([]byte, 16)...)
	seed = append(seed, attrEAPMessage, 6, 1, 2, 0, 4)
	f.Add(seed)
	f.Add(append([]byte{2, 1, 0, 30}, append(make([]byte, 16), attrVendorSpecific, 10, 0, 0, 1, 55, 16, 4, 0x80, 0)...))
	f.Fuzz(func(t *testing.T, resp []byte) {
		if len(resp) < headerLen || len(resp) > maxPacket {
			return
		}
		s := &settings{Config: Config{Secret: secret}}
		w := &worker{s: s, col: newCollector(s)}
		req := append([]byte{1, resp[1], 0, 20}, reqAuth...)
		r, err := w.check(resp, req)
		if err == nil && r == nil {
			t.Fatal("nil reply without error")
		}
		attrs, err := parseAttrs(resp)
		if err != nil {
			return
		}
		for _, a := range attrs {
			if a.typ == attrVendorSpecific {
				sub, _ := microsoftSubAttrs(a.value)
				for _, v := range sub {
					_, _ = decryptMPPEKey(v, secret, reqAuth)
				}
			}
			_ = tunnelValue(a.value)
		}
	})
}
