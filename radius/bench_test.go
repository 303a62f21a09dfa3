package radius

import (
	"crypto/tls"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"layeh.com/radius"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
)

// BenchmarkVerifyRequest: framing walk, Message-Authenticator HMAC-MD5 and
// attribute parse of a typical EAP-carrying Access-Request.
func BenchmarkVerifyRequest(b *testing.B) {
	tests := []struct {
		name string
		size int // EAP identity length
	}{
		{"identity", 24},
		{"1020-byte EAP-TLS fragment", 1020},
	}
	c := &Client{Name: "nas", Secret: testSecret}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			pkt := accessRequest(b, 1, identityResponse(1, string(make([]byte, tt.size))), []byte("0123456789abcdef"))
			b.SetBytes(int64(len(pkt)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := verifyRequest(pkt, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeResponse: an Access-Challenge carrying a 1020-byte
// fragment (Message-Authenticator + Response Authenticator).
func BenchmarkEncodeResponse(b *testing.B) {
	attrs := splitEAP(make([]byte, 1030))
	attrs = append(attrs, &radius.AVP{Type: attrState, Attribute: make([]byte, 16)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := encodeResponse(radius.CodeAccessChallenge, 1, [16]byte{}, testSecret, attrs, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConversationsParallel: each op adds a conversation and looks up
// a recent one, on a full table (so every add evicts), from parallel
// goroutines.
func BenchmarkConversationsParallel(b *testing.B) {
	const max = 4096
	tab := newConversations(max, time.Minute)
	now := time.Unix(1_700_000_000, 0)
	var seq atomic.Uint64
	for i := range max {
		c, _ := newConv(strconv.Itoa(i))
		tab.add(c, now)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := seq.Add(1) + max
			c, _ := newConv(strconv.FormatUint(n, 10))
			tab.add(c, now)
			if got := tab.get(strconv.FormatUint(n-max/2, 10), now); got != nil {
				got.lock()
				got.unlock()
			}
		}
	})
	if tab.len() > max {
		b.Fatalf("table over its bound: %d", tab.len())
	}
}

// BenchmarkEAPTLSAuthentication: one complete EAP-TLS authentication per op
// (Identity to Access-Accept, both ends in process, over UDP loopback),
// for TLS 1.2 and 1.3 with ECDSA P-256 and RSA-2048 device keys.
func BenchmarkEAPTLSAuthentication(b *testing.B) {
	pki := newDevicePKI(b)
	e := newEnv(b, envOptions{verifier: pki.verifier})
	c := e.dial(b, nasIP)
	for _, kt := range []testpki.KeyType{testpki.ECDSAP256, testpki.RSA2048} {
		leaf := pki.issuing.IssueDevice(b, testpki.Device{CommonName: "bench", Email: "bench@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff, KeyType: kt})
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			b.Run(fmt.Sprintf("%s/TLS%s", kt, tlsVersionName(v)), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					peer := newPeer(b, leaf, v)
					p, _ := authenticate(b, c, peer)
					if p.Code != radius.CodeAccessAccept {
						b.Fatalf("code %v", p.Code)
					}
					peer.Close()
				}
			})
		}
	}
}
