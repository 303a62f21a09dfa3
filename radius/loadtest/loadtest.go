// Package loadtest owns nacd's EAP-TLS load generator: a RADIUS client that
// runs full EAP-TLS authentications (eaptls.Peer over UDP) against one
// RADIUS server — nacd, FreeRADIUS or any other — at a fixed concurrency or
// an open-loop target rate, for a count or a duration, and reports rates,
// outcomes, latency distributions and the VLAN distribution.
//
// Every Access-Accept is verified before it counts: the Response
// Authenticator, the Message-Authenticator (RFC 3579), the EAP-Success, and
// the MS-MPPE-Recv-Key/Send-Key decrypted (RFC 2548) and compared with the
// MSK the peer derived itself. A mismatch is an error with its cause, so a
// wrong server can never look fast.
//
// loadtest must never run unbounded (Run refuses a Config without Count or
// Duration), never send to any address but Config.Server, and never print
// the shared secret, keys or MSKs. It is a lab tool: point it at loopback or
// at a lab server, never at a production RADIUS server.
package loadtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Defaults for Config fields left zero.
const (
	DefaultTimeout          = 3 * time.Second
	DefaultRetries          = 2
	DefaultMaxRoundTrips    = 64
	DefaultRateOutstanding  = 64
	DefaultProgressInterval = time.Second
	// MaxFragmentSize keeps one EAP-TLS fragment, split into 253-byte
	// EAP-Message attributes, inside a 4096-byte RADIUS packet.
	MaxFragmentSize = 3000
	minFragmentSize = 64
)

// ErrNoBound is returned by Run when the Config has neither a Count nor a
// Duration: a load generator must always stop by itself.
var ErrNoBound = errors.New("loadtest: no bound: set Count or Duration (refusing to run unbounded)")

// Identity is one client certificate (a persona). Identities are used
// round-robin, one per authentication.
type Identity struct {
	// Name labels the identity in the summary (default: the certificate's
	// common name).
	Name string
	// EAPIdentity answers EAP-Request/Identity and is sent as User-Name
	// (default: Name).
	EAPIdentity string
	// Certificate is the device certificate chain (leaf first,
	// intermediates after) and its private key.
	Certificate tls.Certificate
}

// Config configures Run.
type Config struct {
	// Server is the RADIUS server's host:port. Traffic goes to it only.
	Server string
	// Secret is the RADIUS shared secret.
	Secret []byte
	// Identities are the client certificates, used round-robin.
	Identities []Identity

	// RootCAs verifies the EAP-TLS server certificate; ServerName, when
	// set, must match it (otherwise only the chain is verified, as most
	// EAP supplicants do). InsecureSkipVerify skips the verification (lab
	// use); one of RootCAs or InsecureSkipVerify is required.
	RootCAs            *x509.CertPool
	ServerName         string
	InsecureSkipVerify bool
	// TLSVersion pins tls.VersionTLS12 or tls.VersionTLS13; 0 lets the
	// peers negotiate (1.2 to 1.3).
	TLSVersion uint16
	// CurvePreferences are the key exchanges the client offers, in order
	// (nil: Go's default, which in TLS 1.3 leads with the hybrid
	// X25519MLKEM768; most supplicants today offer X25519 and P-256 only).
	CurvePreferences []tls.CurveID
	// FragmentSize is the most TLS data per EAP-TLS response (default
	// eaptls.DefaultFragmentSize, at most MaxFragmentSize).
	FragmentSize int

	// Concurrency is the number of authentications in flight at once: in
	// closed-loop mode (Rate 0) each of Concurrency workers starts the next
	// authentication when its last one ends (default 1); with a Rate it
	// bounds the outstanding authentications (default
	// DefaultRateOutstanding).
	Concurrency int
	// Rate, when positive, starts authentications open-loop at this many per
	// second; a start slot that finds Concurrency authentications
	// outstanding is skipped and counted (Summary.Skipped).
	Rate float64

	// Count stops after this many authentications were started; Duration
	// stops starting new ones after this long. At least one is required;
	// with both, the first reached wins. Authentications in flight at the
	// end of Duration may finish within a grace period of one request's
	// full retry schedule; those still running then are aborted (counted in
	// Summary.Aborted, not as errors).
	Count    int
	Duration time.Duration

	// Timeout is how long to wait for each reply before retransmitting
	// (default DefaultTimeout). Retries is the number of retransmissions of
	// one request (same Identifier and Authenticator) before the
	// authentication counts as a timeout: 0 means DefaultRetries, negative
	// means none.
	Timeout time.Duration
	Retries int
	// MaxRoundTrips bounds the Access-Request/Challenge exchanges of one
	// authentication (default DefaultMaxRoundTrips).
	MaxRoundTrips int

	// CalledStationID and NASIdentifier are sent in every Access-Request
	// when set (policy may match the SSID in Called-Station-Id,
	// "AA-BB-CC-DD-EE-FF:SSID").
	CalledStationID string
	NASIdentifier   string

	// Progress, when set, receives a live line every ProgressInterval
	// (default DefaultProgressInterval); ProgressInPlace redraws it with a
	// carriage return (for a terminal) instead of one line each.
	Progress         io.Writer
	ProgressInterval time.Duration
	ProgressInPlace  bool

	// ServerMetrics, when set, is the URL of the server's Prometheus
	// metrics (nacd: http://127.0.0.1:9812/metrics). It is read before
	// the first authentication (Run refuses to start when it cannot be
	// read) and after the last, and Summary.ServerSide then reports the
	// server's own time per Access-Request and CPU per authentication.
	ServerMetrics string
}

// identity is an Identity with its TLS configuration built once.
type identity struct {
	name, eapIdentity string
	tls               *tls.Config
	index             int
}

// settings is a validated Config with defaults applied.
type settings struct {
	Config
	addr       *net.UDPAddr
	identities []*identity
	retries    int
}

func (c *Config) validate() (*settings, error) {
	if c.Count < 0 || c.Duration < 0 {
		return nil, errors.New("loadtest: Count and Duration must not be negative")
	}
	if c.Count == 0 && c.Duration == 0 {
		return nil, ErrNoBound
	}
	if c.Server == "" {
		return nil, errors.New("loadtest: Server is required")
	}
	addr, err := net.ResolveUDPAddr("udp", c.Server)
	if err != nil {
		return nil, fmt.Errorf("loadtest: server %q: %w", c.Server, err)
	}
	if len(c.Secret) == 0 {
		return nil, errors.New("loadtest: Secret is required")
	}
	if len(c.Identities) == 0 {
		return nil, errors.New("loadtest: at least one Identity (client certificate) is required")
	}
	if c.RootCAs == nil && !c.InsecureSkipVerify {
		return nil, errors.New("loadtest: RootCAs is required to verify the server certificate (or InsecureSkipVerify for a lab)")
	}
	switch c.TLSVersion {
	case 0, tls.VersionTLS12, tls.VersionTLS13:
	default:
		return nil, fmt.Errorf("loadtest: TLSVersion %#04x: want TLS 1.2 or 1.3", c.TLSVersion)
	}
	if c.FragmentSize != 0 && (c.FragmentSize < minFragmentSize || c.FragmentSize > MaxFragmentSize) {
		return nil, fmt.Errorf("loadtest: FragmentSize %d: want %d..%d", c.FragmentSize, minFragmentSize, MaxFragmentSize)
	}
	if c.Concurrency < 0 || c.Rate < 0 || c.Timeout < 0 || c.MaxRoundTrips < 0 || c.ProgressInterval < 0 {
		return nil, errors.New("loadtest: Concurrency, Rate, Timeout, MaxRoundTrips and ProgressInterval must not be negative")
	}
	if c.ServerMetrics != "" {
		u, err := url.Parse(c.ServerMetrics)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("loadtest: ServerMetrics %q: want an http:// or https:// URL", c.ServerMetrics)
		}
	}
	s := &settings{Config: *c, addr: addr}
	if s.Concurrency == 0 {
		s.Concurrency = 1
		if s.Rate > 0 {
			s.Concurrency = DefaultRateOutstanding
		}
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	switch {
	case c.Retries == 0:
		s.retries = DefaultRetries
	case c.Retries > 0:
		s.retries = c.Retries
	}
	if s.MaxRoundTrips == 0 {
		s.MaxRoundTrips = DefaultMaxRoundTrips
	}
	if s.ProgressInterval == 0 {
		s.ProgressInterval = DefaultProgressInterval
	}
	for i, id := range c.Identities {
		built, err := s.buildIdentity(i, id)
		if err != nil {
			return nil, err
		}
		s.identities = append(s.identities, built)
	}
	return s, nil
}

func (s *settings) buildIdentity(i int, id Identity) (*identity, error) {
	cert := id.Certificate
	if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return nil, fmt.Errorf("loadtest: identity %d: certificate and private key are required", i)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("loadtest: identity %d: parse certificate: %w", i, err)
		}
		cert.Leaf = leaf
	}
	name := id.Name
	if name == "" {
		name = cert.Leaf.Subject.CommonName
	}
	if name == "" {
		name = fmt.Sprintf("identity-%d", i)
	}
	eapID := id.EAPIdentity
	if eapID == "" {
		eapID = name
	}
	if len(eapID) > maxAttrValue {
		return nil, fmt.Errorf("loadtest: identity %q: EAP identity longer than %d bytes", name, maxAttrValue)
	}
	tc := &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      s.RootCAs,
		ServerName:   s.ServerName,
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   tls.VersionTLS13,

		CurvePreferences: s.CurvePreferences,
	}
	if s.TLSVersion != 0 {
		tc.MinVersion, tc.MaxVersion = s.TLSVersion, s.TLSVersion
	}
	switch {
	case s.InsecureSkipVerify:
		tc.InsecureSkipVerify = true
	case s.ServerName == "":
		// Verify the chain without a host name, as EAP supplicants
		// configured with only a CA do.
		roots := s.RootCAs
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("loadtest: server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		}
	}
	return &identity{name: name, eapIdentity: eapID, tls: tc, index: i}, nil
}

// Run runs the load described by cfg and returns its summary. It returns an
// error without a summary when cfg is invalid (ErrNoBound without a bound)
// or no socket can be opened. When ctx ends early, the authentications in
// flight are aborted and Run returns the summary so far with ctx's error.
func Run(ctx context.Context, cfg Config) (*Summary, error) {
	s, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	var metricsBefore *serverSnapshot
	httpClient := &http.Client{Timeout: serverMetricsTimeout}
	if s.ServerMetrics != "" {
		if metricsBefore, err = scrapeServer(ctx, httpClient, s.ServerMetrics); err != nil {
			return nil, fmt.Errorf("loadtest: server metrics: %w", err)
		}
	}
	col := newCollector(s)
	workers := make([]*worker, s.Concurrency)
	for i := range workers {
		w, err := newWorker(s, col, i)
		if err != nil {
			for _, w := range workers[:i] {
				w.close()
			}
			return nil, err
		}
		workers[i] = w
	}
	defer func() {
		for _, w := range workers {
			w.close()
		}
	}()

	// startCtx ends when no new authentication may start; runCtx when the
	// ones in flight are aborted.
	start := time.Now()
	col.start = start
	startCtx, stopStarting := context.WithCancel(ctx)
	defer stopStarting()
	runCtx, abort := context.WithCancel(ctx)
	defer abort()
	if s.Duration > 0 {
		var cancelS, cancelR context.CancelFunc
		startCtx, cancelS = context.WithDeadline(startCtx, start.Add(s.Duration))
		defer cancelS()
		grace := s.Timeout*time.Duration(s.retries+1) + 2*time.Second
		runCtx, cancelR = context.WithDeadline(runCtx, start.Add(s.Duration+grace))
		defer cancelR()
	}

	var tickets chan struct{}
	if s.Rate > 0 {
		tickets = make(chan struct{})
		go schedule(startCtx, s, col, tickets)
	}
	progressDone := make(chan struct{})
	progressStop := make(chan struct{})
	if s.Progress != nil {
		go col.progress(progressStop, progressDone)
	} else {
		close(progressDone)
	}

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(startCtx, runCtx, tickets)
		}()
	}
	wg.Wait()
	close(progressStop)
	<-progressDone

	sum := col.summary(time.Since(start), workers)
	if metricsBefore != nil {
		// A fresh context: the run's may be cancelled (Ctrl-C), and the
		// figures so far are still worth having.
		sctx, cancel := context.WithTimeout(context.Background(), serverMetricsTimeout)
		after, err := scrapeServer(sctx, httpClient, s.ServerMetrics)
		cancel()
		if err == nil {
			sum.ServerSide, err = serverSide(s.ServerMetrics, metricsBefore, after, sum.Completed)
		}
		if err != nil {
			sum.ServerSideError = err.Error()
		}
	}
	if err := ctx.Err(); err != nil {
		return sum, err
	}
	return sum, nil
}

// schedule offers start tickets at s.Rate per second until startCtx ends or
// Count tickets were taken; a ticket no idle worker takes at once is
// skipped (open loop: the schedule never waits for the server).
func schedule(startCtx context.Context, s *settings, col *collector, tickets chan<- struct{}) {
	defer close(tickets)
	t0 := time.Now()
	var slots, taken int64
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-startCtx.Done():
			return
		case <-timer.C:
		}
		due := int64(time.Since(t0).Seconds()*s.Rate) + 1
		for ; slots < due; slots++ {
			if s.Count > 0 && taken >= int64(s.Count) {
				return
			}
			select {
			case tickets <- struct{}{}:
				taken++
			default:
				col.skipped.Add(1)
			}
		}
		if s.Count > 0 && taken >= int64(s.Count) {
			return
		}
		next := t0.Add(time.Duration(float64(slots) / s.Rate * float64(time.Second)))
		timer.Reset(max(time.Until(next), 0))
	}
}

// nextIdentity is the round-robin choice.
func (c *collector) nextIdentity() *identity {
	n := c.rr.Add(1) - 1
	return c.s.identities[n%uint64(len(c.s.identities))]
}

// take reserves one authentication under Count; false when Count is spent.
func (c *collector) take() bool {
	if c.s.Count == 0 {
		c.started.Add(1)
		return true
	}
	if c.started.Add(1) > int64(c.s.Count) {
		c.started.Add(-1)
		return false
	}
	return true
}
