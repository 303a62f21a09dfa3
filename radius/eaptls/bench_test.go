package eaptls

import (
	"runtime"
	"testing"
	"time"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/radius/eap"
)

// BenchmarkHandshake runs one full Session<->Peer exchange per op (both
// sides in this goroutine's turn-taking, so the server's share can be
// timed): server-ns/op is the wall time spent inside Session.Start/Handle,
// which on an idle machine is the server's CPU per authentication.
func BenchmarkHandshake(b *testing.B) {
	for _, ver := range versions {
		for _, kt := range keyTypes {
			b.Run(ver.name+"/"+kt.name, func(b *testing.B) {
				pki := newTestPKI(b, kt.kt, kt.kt, 0)
				cfg := pki.serverConfig(0, ver.v, 0)
				pcfg := pki.peerConfig(ver.v, 0)
				b.ReportAllocs()
				var server time.Duration
				for b.Loop() {
					s := NewSession(cfg, allowAll)
					p := NewPeer(pcfg)
					t0 := time.Now()
					req := s.Start(1)
					server += time.Since(t0)
					for req.Code == eap.CodeRequest {
						resp, err := p.Handle(req)
						if err != nil {
							b.Fatal(err)
						}
						t0 = time.Now()
						req, err = s.Handle(resp)
						server += time.Since(t0)
						if err != nil {
							b.Fatal(err)
						}
					}
					if _, err := p.Handle(req); err != nil || req.Code != eap.CodeSuccess {
						b.Fatalf("no success: %v", err)
					}
					s.Close()
					p.Close()
				}
				b.ReportMetric(float64(server.Nanoseconds())/float64(b.N), "server-ns/op")
			})
		}
	}
}

// BenchmarkHalfOpen measures the memory a conversation holds while the peer
// is silent: "start" after the EAP-TLS Start (no TLS state, no goroutine),
// "clienthello" after the ClientHello was processed and the first fragment
// of the server flight sent (handshake goroutine parked, flight buffered).
// Run with -benchtime=10000x for 10,000 sessions.
func BenchmarkHalfOpen(b *testing.B) {
	pki := newTestPKI(b, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	cfg := pki.serverConfig(0, 0, 0)
	ch := realClientHello(b, pki) // one unfragmented ClientHello, reused
	for _, stage := range []string{"start", "clienthello"} {
		b.Run(stage, func(b *testing.B) {
			sessions := make([]*Session, 0, b.N)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s := NewSession(cfg, allowAll)
				s.Start(1)
				if stage == "clienthello" {
					req, err := s.Handle(tlsResp(1, ch))
					if err != nil || req.Code != eap.CodeRequest {
						b.Fatalf("ClientHello: %v", err)
					}
				}
				sessions = append(sessions, s)
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			n := float64(len(sessions))
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "heap-B/session")
			b.ReportMetric(float64(int64(after.StackInuse)-int64(before.StackInuse))/n, "stack-B/session")
			for _, s := range sessions {
				s.Close()
			}
		})
	}
}
