package loadtest_test

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"

	"layeh.com/radius"

	"github.com/herts-council/nacd/radius/eap"
	"github.com/herts-council/nacd/radius/eaptls"
	"github.com/herts-council/nacd/radius/loadtest"
)

// BenchmarkLoadAgainstNacd: one verified authentication per op through
// loadtest.Run against nacd's radius.Server in process, 8 in flight. Both
// ends share the process; for the server's share of a CPU profile use
// `go tool pprof -focus 'radius\.|serverHandshake'`.
func BenchmarkLoadAgainstNacd(b *testing.B) {
	addr := startNacd(b)
	for _, v := range []struct {
		name string
		v    uint16
	}{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}} {
		b.Run(v.name, func(b *testing.B) {
			p := newTestPKI(b)
			cfg := loadtest.Config{Server: addr, Secret: testSecret, Identities: p.identities(personaStaff),
				RootCAs: p.serverRoots(), ServerName: serverName, TLSVersion: v.v, Concurrency: 8, Count: b.N}
			b.ResetTimer()
			s, err := loadtest.Run(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if s.Accepts != int64(b.N) {
				b.Fatalf("accepts %d of %d: %v %v", s.Accepts, b.N, s.ErrorCauses, s.ErrorExamples)
			}
			b.ReportMetric(s.AuthsPerSecond, "auths/s")
			b.ReportMetric(s.Latency.P99, "p99-ms")
		})
	}
}

// BenchmarkServerHalfOpen measures the server's heap per in-flight EAP-TLS
// conversation, whole server included (conversation table, eaptls session
// mid-handshake, handshake goroutine, duplicate-cache replies): each op
// opens one conversation up to the server's first TLS flight (Identity,
// Start, ClientHello -> ServerHello... fragment 1) and leaves it there. The
// peers are closed, so what remains on the heap is the server's. Run with
// -benchtime=2000x.
func BenchmarkServerHalfOpen(b *testing.B) {
	addr := startNacd(b)
	p := newTestPKI(b)
	ua, _ := net.ResolveUDPAddr("udp", addr)
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	tc := &tls.Config{Certificates: []tls.Certificate{p.personas[personaStaff].TLSCertificate()}, RootCAs: p.serverRoots(), ServerName: serverName, MinVersion: tls.VersionTLS13}
	var id byte
	roundTrip := func(msg *eap.Packet, state []byte) *radius.Packet {
		id++
		req := rawAccessRequest(b, id, msg, state)
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := radius.Parse(buf[:n], testSecret)
		if err != nil || resp.Code != radius.CodeAccessChallenge {
			b.Fatalf("reply %v %v", resp, err)
		}
		return resp
	}
	eapOf := func(r *radius.Packet) *eap.Packet {
		var m []byte
		for _, a := range r.Attributes {
			if a.Type == 79 {
				m = append(m, a.Attribute...)
			}
		}
		pk, err := eap.Parse(m)
		if err != nil {
			b.Fatal(err)
		}
		return pk
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		peer := eaptls.NewPeer(eaptls.PeerConfig{TLS: tc, Identity: "half-open"})
		out, _ := peer.Handle(&eap.Packet{Code: eap.CodeRequest, Type: eap.TypeIdentity})
		r := roundTrip(out, nil)
		state := r.Get(24)
		out, err := peer.Handle(eapOf(r))
		if err != nil {
			b.Fatal(err)
		}
		// The ClientHello (fragmented: the hybrid ML-KEM key share makes it
		// larger than one fragment) until the server's flight comes back.
		for k := 0; ; k++ {
			pk := eapOf(roundTrip(out, state))
			if len(pk.Data) > 1 {
				break // TLS data: the server processed the ClientHello
			}
			if out, err = peer.Handle(pk); err != nil || k > 8 {
				b.Fatalf("peer after fragment ACK: %v", err)
			}
		}
		peer.Close()
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	n := float64(b.N)
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "heap-B/conv")
	b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/n, "stack-B/conv")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/conv")
}

// rawAccessRequest is a minimal signed Access-Request carrying msg.
func rawAccessRequest(tb testing.TB, id byte, msg *eap.Packet, state []byte) []byte {
	m, err := msg.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	b := make([]byte, 20, 4096)
	b[0], b[1] = 1, id
	rand.Read(b[4:20])
	b = append(b, 80, 18)
	b = append(b, make([]byte, 16)...)
	b = append(append(b, 1, byte(2+len("half-open"))), "half-open"...)
	if state != nil {
		b = append(append(b, 24, byte(2+len(state))), state...)
	}
	for len(m) > 0 {
		k := min(len(m), 253)
		b = append(append(b, 79, byte(2+k)), m[:k]...)
		m = m[k:]
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	mac := hmac.New(md5.New, testSecret)
	mac.Write(b)
	mac.Sum(b[22:22])
	return b
}
