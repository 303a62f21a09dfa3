package loadtest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herts-council/nacd/radius/loadtest"
)

func baseConfig(t *testing.T, server string, personas ...string) loadtest.Config {
	p := newTestPKI(t)
	return loadtest.Config{
		Server:     server,
		Secret:     testSecret,
		Identities: p.identities(personas...),
		RootCAs:    p.serverRoots(),
		ServerName: serverName,
		Timeout:    5 * time.Second,
	}
}

// checkVLANs asserts that every identity landed only on its persona's VLAN
// (or was rejected when the persona has none).
func checkVLANs(t *testing.T, s *loadtest.Summary) {
	t.Helper()
	p := newTestPKI(t)
	for _, id := range s.Identities {
		want := p.wantVLAN[id.Name]
		if want == 0 {
			if id.Accepts != 0 || id.Rejects == 0 {
				t.Errorf("identity %s: %d accepts, %d rejects; want rejects only", id.Name, id.Accepts, id.Rejects)
			}
			continue
		}
		if id.Accepts == 0 || id.VLANs[strconv.Itoa(want)] != id.Accepts || len(id.VLANs) != 1 {
			t.Errorf("identity %s: %d accepts on VLANs %v, want all on %d", id.Name, id.Accepts, id.VLANs, want)
		}
	}
}

func TestRunAgainstNacd(t *testing.T) {
	addr := startNacd(t)
	all := []string{personaStaff, personaVisitor, personaUnknown}
	tests := []struct {
		name     string
		personas []string
		tls      uint16
		count    int
		duration time.Duration
		conc     int
		rate     float64
		frag     int
	}{
		{"three personas, TLS 1.3, count 150", all, tls.VersionTLS13, 150, 0, 6, 0, 0},
		{"three personas, TLS 1.2, count 90", all, tls.VersionTLS12, 90, 0, 6, 0, 0},
		{"negotiated version, small fragments", all, 0, 30, 0, 3, 0, 300},
		{"contractor rejected among accepts", append(all, personaContract), tls.VersionTLS13, 40, 0, 4, 0, 0},
		{"open loop at 60/s for 1.5s", all, tls.VersionTLS13, 0, 1500 * time.Millisecond, 8, 60, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig(t, addr, tt.personas...)
			cfg.TLSVersion, cfg.Count, cfg.Duration, cfg.Concurrency, cfg.Rate, cfg.FragmentSize = tt.tls, tt.count, tt.duration, tt.conc, tt.rate, tt.frag
			var progress bytes.Buffer
			cfg.Progress, cfg.ProgressInterval = &progress, 200*time.Millisecond
			s, err := loadtest.Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if s.Errors != 0 || s.Timeouts != 0 || s.Aborted != 0 {
				t.Fatalf("errors %d (%v %v), timeouts %d, aborted %d", s.Errors, s.ErrorCauses, s.ErrorExamples, s.Timeouts, s.Aborted)
			}
			if tt.count > 0 && (s.Attempted != int64(tt.count) || s.Completed != int64(tt.count)) {
				t.Fatalf("attempted %d, completed %d, want %d", s.Attempted, s.Completed, tt.count)
			}
			if tt.count == 0 && (s.Completed == 0 || s.Completed != s.Attempted) {
				t.Fatalf("attempted %d, completed %d", s.Attempted, s.Completed)
			}
			checkVLANs(t, s)
			// Round-robin: with a count that is a multiple of the number of
			// personas, each got exactly its share.
			if tt.count > 0 && tt.count%len(tt.personas) == 0 {
				for _, id := range s.Identities {
					if got := id.Accepts + id.Rejects; got != int64(tt.count/len(tt.personas)) {
						t.Errorf("identity %s ran %d authentications, want %d", id.Name, got, tt.count/len(tt.personas))
					}
				}
			}
			wantRejects := int64(0)
			for _, p := range tt.personas {
				if p == personaContract {
					wantRejects = s.Identities[len(s.Identities)-1].Rejects
				}
			}
			if s.Rejects != wantRejects || (wantRejects > 0 && s.RejectCauses["access denied"] != wantRejects) {
				t.Fatalf("rejects %d (%v), want %d for access denied", s.Rejects, s.RejectCauses, wantRejects)
			}
			if tt.tls != 0 && s.TLSVersions[map[uint16]string{tls.VersionTLS12: "1.2", tls.VersionTLS13: "1.3"}[tt.tls]] != s.Accepts {
				t.Fatalf("TLS versions %v for %d accepts", s.TLSVersions, s.Accepts)
			}
			if s.MessageAuthenticatorNotFirst != 0 {
				t.Fatalf("nacd sent %d replies without Message-Authenticator first", s.MessageAuthenticatorNotFirst)
			}
			if s.Latency.Count != uint64(s.Completed) || s.Latency.P50 <= 0 || s.Latency.P50 > s.Latency.P99 || s.Latency.P99 > s.Latency.Max {
				t.Fatalf("latency %+v for %d completed", s.Latency, s.Completed)
			}
			if s.RoundTripsPerAuth < 3 || s.AuthsPerSecond <= 0 {
				t.Fatalf("round trips/auth %.1f, auths/s %.1f", s.RoundTripsPerAuth, s.AuthsPerSecond)
			}
			if tt.frag > 0 && s.RoundTripsPerAuth < 6 {
				t.Fatalf("%.1f round trips/auth with %d-byte fragments: fragmentation not exercised", s.RoundTripsPerAuth, tt.frag)
			}
			if !strings.Contains(progress.String(), "auth/s") {
				t.Fatalf("no progress line: %q", progress.String())
			}
			var text strings.Builder
			if err := s.WriteText(&text); err != nil || !strings.Contains(text.String(), "accepts "+strconv.FormatInt(s.Accepts, 10)) {
				t.Fatalf("text report %q (%v)", text.String(), err)
			}
		})
	}
}

func TestRefusesBadConfig(t *testing.T) {
	p := newTestPKI(t)
	ok := func() loadtest.Config {
		return loadtest.Config{Server: "127.0.0.1:9", Secret: testSecret, Identities: p.identities(personaStaff), RootCAs: p.serverRoots(), Count: 1}
	}
	tests := []struct {
		name   string
		mutate func(*loadtest.Config)
		want   string
	}{
		{"no count and no duration", func(c *loadtest.Config) { c.Count = 0 }, "no bound"},
		{"negative count", func(c *loadtest.Config) { c.Count = -1 }, "negative"},
		{"no server", func(c *loadtest.Config) { c.Server = "" }, "Server"},
		{"no secret", func(c *loadtest.Config) { c.Secret = nil }, "Secret"},
		{"no identity", func(c *loadtest.Config) { c.Identities = nil }, "Identity"},
		{"identity without key", func(c *loadtest.Config) { c.Identities[0].Certificate.PrivateKey = nil }, "private key"},
		{"no server verification", func(c *loadtest.Config) { c.RootCAs = nil }, "RootCAs"},
		{"TLS 1.1", func(c *loadtest.Config) { c.TLSVersion = tls.VersionTLS11 }, "TLSVersion"},
		{"fragment too large for a RADIUS packet", func(c *loadtest.Config) { c.FragmentSize = 4000 }, "FragmentSize"},
		{"negative rate", func(c *loadtest.Config) { c.Rate = -5 }, "negative"},
		{"server metrics not a URL", func(c *loadtest.Config) { c.ServerMetrics = "127.0.0.1:9812" }, "ServerMetrics"},
		{"server metrics unreadable", func(c *loadtest.Config) { c.ServerMetrics = "http://127.0.0.1:9/metrics" }, "server metrics"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.mutate(&c)
			s, err := loadtest.Run(context.Background(), c)
			if err == nil || s != nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, %v; want an error mentioning %q and no summary", s, err, tt.want)
			}
		})
	}
	t.Run("no bound is ErrNoBound", func(t *testing.T) {
		c := ok()
		c.Count = 0
		if _, err := loadtest.Run(context.Background(), c); !errors.Is(err, loadtest.ErrNoBound) {
			t.Fatalf("err %v, want ErrNoBound", err)
		}
	})
}

// corruptAccepts flips a bit of the Response Authenticator of every
// Access-Accept.
func corruptAccepts(b []byte) []byte {
	if len(b) > 20 && b[0] == 2 {
		b[10] ^= 0x01
	}
	return b
}

func TestDetectsBrokenServer(t *testing.T) {
	nacd := startNacd(t)
	tests := []struct {
		name   string
		server func(t *testing.T) string
		cause  string
		detail string
	}{
		{"Response Authenticator corrupted on Accept", func(t *testing.T) string { return startProxy(t, nacd, nil, corruptAccepts) }, loadtest.CauseBadResponseAuthenticator, "Access-Accept"},
		{"MPPE Send key from EMSK", func(t *testing.T) string { return startResponder(t, faultSendKeyFromEMSK) }, loadtest.CauseMPPEMismatch, "EMSK[0:32]"},
		{"MPPE keys swapped", func(t *testing.T) string { return startResponder(t, faultSwappedKeys) }, loadtest.CauseMPPEMismatch, "Recv-Key"},
		{"MPPE keys missing", func(t *testing.T) string { return startResponder(t, faultNoMPPE) }, loadtest.CauseMPPEMissing, "MS-MPPE"},
		{"no Message-Authenticator", func(t *testing.T) string { return startResponder(t, faultNoMessageAuthenticator) }, loadtest.CauseMissingMessageAuthenticator, "Access-Challenge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig(t, tt.server(t), personaStaff, personaVisitor)
			cfg.Count, cfg.Concurrency, cfg.TLSVersion = 6, 2, tls.VersionTLS13
			s, err := loadtest.Run(context.Background(), cfg)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if s.Accepts != 0 || s.Errors != 6 || s.ErrorCauses[tt.cause] != 6 {
				t.Fatalf("accepts %d errors %d causes %v (%v); want 6 errors %s and no accept", s.Accepts, s.Errors, s.ErrorCauses, s.ErrorExamples, tt.cause)
			}
			if ex := s.ErrorExamples[tt.cause]; !strings.Contains(ex, tt.detail) {
				t.Fatalf("example %q does not mention %q", ex, tt.detail)
			}
			if s.OK() {
				t.Fatal("summary OK with errors")
			}
		})
	}
	t.Run("sound responder is accepted", func(t *testing.T) {
		// The control: the same responder without a fault passes, so the
		// cases above fail for their fault and nothing else.
		cfg := baseConfig(t, startResponder(t, faultNone), personaStaff)
		cfg.Count = 4
		s, err := loadtest.Run(context.Background(), cfg)
		if err != nil || s.Accepts != 4 || !s.OK() {
			t.Fatalf("accepts %d, errors %v %v (%v)", s.Accepts, s.ErrorCauses, s.ErrorExamples, err)
		}
	})
}

func TestRetransmitsAndTimeouts(t *testing.T) {
	nacd := startNacd(t)
	t.Run("server drops every other request", func(t *testing.T) {
		dropOdd := func(n int, b []byte) []byte {
			if n%2 == 1 {
				return nil
			}
			return b
		}
		cfg := baseConfig(t, startProxy(t, nacd, dropOdd, nil), personaStaff, personaVisitor)
		cfg.Count, cfg.Concurrency, cfg.Timeout, cfg.Retries = 4, 1, 100*time.Millisecond, 3
		s, err := loadtest.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if s.Accepts != 4 || s.Errors != 0 || s.Timeouts != 0 {
			t.Fatalf("accepts %d errors %v timeouts %d", s.Accepts, s.ErrorCauses, s.Timeouts)
		}
		// One in two transmissions is lost: every request needs about one
		// retransmission.
		if s.Retransmits < int64(s.RoundTripsPerAuth*4)/2 {
			t.Fatalf("%d retransmits for %.1f round trips per auth x 4", s.Retransmits, s.RoundTripsPerAuth)
		}
		checkVLANs(t, s)
	})
	t.Run("server never answers", func(t *testing.T) {
		dropAll := func(int, []byte) []byte { return nil }
		cfg := baseConfig(t, startProxy(t, nacd, dropAll, nil), personaStaff)
		cfg.Count, cfg.Concurrency, cfg.Timeout, cfg.Retries = 3, 3, 50*time.Millisecond, 2
		s, err := loadtest.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if s.Timeouts != 3 || s.Retransmits != 6 || s.Accepts != 0 || s.Errors != 0 {
			t.Fatalf("timeouts %d retransmits %d accepts %d errors %d; want 3 timeouts after 2 retransmits each", s.Timeouts, s.Retransmits, s.Accepts, s.Errors)
		}
	})
	t.Run("no retries", func(t *testing.T) {
		dropAll := func(int, []byte) []byte { return nil }
		cfg := baseConfig(t, startProxy(t, nacd, dropAll, nil), personaStaff)
		cfg.Count, cfg.Timeout, cfg.Retries = 2, 50*time.Millisecond, -1
		s, err := loadtest.Run(context.Background(), cfg)
		if err != nil || s.Timeouts != 2 || s.Retransmits != 0 {
			t.Fatalf("timeouts %d retransmits %d (%v)", s.Timeouts, s.Retransmits, err)
		}
	})
}

func TestCancelReturnsPartialSummary(t *testing.T) {
	nacd := startNacd(t)
	dropAll := func(int, []byte) []byte { return nil }
	cfg := baseConfig(t, startProxy(t, nacd, dropAll, nil), personaStaff)
	cfg.Duration, cfg.Concurrency, cfg.Timeout = time.Hour, 2, time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	s, err := loadtest.Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) || s == nil {
		t.Fatalf("Run = %v, %v; want a summary and context.Canceled", s, err)
	}
	if s.Aborted != 2 || s.Timeouts != 0 || s.Errors != 0 {
		t.Fatalf("aborted %d timeouts %d errors %d, want 2 aborted", s.Aborted, s.Timeouts, s.Errors)
	}
}

// TestServerMetricsAgainstNacd: with ServerMetrics pointing at nacd's
// registry, the server side of the summary counts exactly the
// Access-Requests the load generator sent (every round trip answered once)
// and has plausible quantiles.
func TestServerMetricsAgainstNacd(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	addr := startNacdRegistry(t, reg)
	metrics := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer metrics.Close()
	p := newTestPKI(t)
	s, err := loadtest.Run(context.Background(), loadtest.Config{
		Server: addr, Secret: testSecret, Identities: p.identities(personaStaff, personaVisitor), RootCAs: p.serverRoots(),
		Count: 40, Concurrency: 4, ServerMetrics: metrics.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !s.OK() || s.Accepts != 40 {
		t.Fatalf("accepts %d, errors %v", s.Accepts, s.ErrorCauses)
	}
	ss := s.ServerSide
	if ss == nil {
		t.Fatalf("no server side: %s", s.ServerSideError)
	}
	if ss.Requests != int64(s.RoundTrip.Count) || s.Retransmits != 0 {
		t.Errorf("server answered %d Access-Requests, the client completed %d round trips (%d retransmits)", ss.Requests, s.RoundTrip.Count, s.Retransmits)
	}
	if !(ss.RequestP50 > 0 && ss.RequestP50 <= ss.RequestP90 && ss.RequestP90 <= ss.RequestP99 && ss.RequestMean > 0) {
		t.Errorf("server quantiles not ordered/positive: %+v", ss)
	}
	if ss.CPUSeconds < 0 || ss.CPUPerAuth < 0 {
		t.Errorf("negative CPU: %+v", ss)
	}
	var b strings.Builder
	if err := s.WriteText(&b); err != nil || !strings.Contains(b.String(), "per Access-Request (n=") {
		t.Errorf("text report without the server line: %v\n%s", err, b.String())
	}
}
