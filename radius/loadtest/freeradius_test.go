package loadtest_test

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/herts-council/nacd/internal/freeradiustest"
	"github.com/herts-council/nacd/radius/loadtest"
)

// TestRunAgainstFreeRADIUS runs a short load against FreeRADIUS 3.2 (the
// reference EAP-TLS server): the load generator's verification must accept
// a server it did not grow up with. Skips loudly without freeradius
// locally, fails in CI.
func TestRunAgainstFreeRADIUS(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	ca := p.deviceRoot.WriteCert(t, dir, "council-root")
	serverFiles := p.server.WriteFiles(t, dir, "server")
	srv := freeradiustest.Start(t, freeradiustest.Config{
		Secret:         string(testSecret),
		CACertFile:     ca,
		ServerCertFile: serverFiles.Chain,
		ServerKeyFile:  serverFiles.Key,
		VLANByCommonName: map[string]int{
			personaStaff: vlanGeneral, personaVisitor: vlanGuest, personaUnknown: vlanOnboarding,
		},
	})
	for _, tt := range []struct {
		name string
		tls  uint16
	}{
		{"TLS 1.2", tls.VersionTLS12},
		{"TLS 1.3", tls.VersionTLS13},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig(t, srv.Addr, personaStaff, personaVisitor, personaUnknown)
			cfg.Count, cfg.Concurrency, cfg.TLSVersion = 30, 3, tt.tls
			s, err := loadtest.Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if s.Accepts != 30 || s.Errors != 0 || s.Timeouts != 0 {
				t.Fatalf("accepts %d errors %v %v timeouts %d rejects %v", s.Accepts, s.ErrorCauses, s.ErrorExamples, s.Timeouts, s.RejectCauses)
			}
			checkVLANs(t, s)
		})
	}
}
