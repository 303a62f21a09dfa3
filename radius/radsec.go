package radius

// RadSec: RADIUS over TLS (RFC 6614) on TCP. A connection is accepted only
// when, in order:
//
//  1. the global connection limit is not reached;
//  2. its source address belongs to a client with RadSec enabled (the same
//     client table and most-specific-prefix lookup as UDP);
//  3. the TLS handshake (TLS 1.2 or 1.3, 1.3 preferred) succeeds with a
//     client certificate that chains to the RadSec CA bundle and carries
//     the clientAuth extended key usage;
//  4. that certificate names the client: one of its RadSecIdentities equals
//     a DNS, URI, IP or e-mail SAN, or the subject CN, of the leaf
//     (identity = source address AND certificate, never either alone);
//  5. the client's connection limit is not reached.
//
// When RadSecConfig.VerifyPeer is set (nacd: the revocation check of the
// NAS certificate against a pki.TrustStore), it is called at the handshake,
// after Go verified the chain (a refusal fails the handshake and is counted
// as "revoked"), and again before every request on a live connection: a
// certificate revoked since the handshake closes the connection (cause
// "revoked") and the request is dropped unanswered.
//
// Every outcome is counted in nacd_radius_radsec_connections_total{result}.
// Requests on the connection are framed by their RADIUS Length field (at
// most RadSecMaxPacket bytes; anything else closes the connection), verified
// with the shared secret "radsec" (RFC 6614 section 2.3), and then take
// exactly the UDP request path: verification, duplicate cache, the one
// handler (EAP-TLS, policy, Status-Server). The client is re-checked
// against the current client table on every request, so a reload that
// removes the client, its RadSec flag or the certificate's identity closes
// the connection at its next request.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// RadSec defaults and fixed values.
const (
	// RadSecSecret is the shared secret of every RadSec connection
	// (RFC 6614 section 2.3).
	RadSecSecret = "radsec"
	// RadSecMaxPacket caps the Length field of a packet on a RadSec
	// stream (RFC 2865 section 3, RFC 6614 section 2.5); a larger or
	// smaller (< 20) length closes the connection.
	RadSecMaxPacket = 4096

	DefaultRadSecIdleTimeout         = 120 * time.Second
	DefaultRadSecMaxConnections      = 256
	DefaultRadSecMaxConnsPerClient   = 16
	DefaultRadSecHandshakeTimeout    = 10 * time.Second
	DefaultRadSecReadTimeout         = 10 * time.Second
	DefaultRadSecWriteTimeout        = 10 * time.Second
	DefaultRadSecMaxPendingPerStream = 16
)

// Results of a RadSec connection attempt: the label values of
// nacd_radius_radsec_connections_total. Stable.
const (
	RadSecAccepted         = "accepted"
	RadSecLimit            = "limit"             // global or per-client connection limit
	RadSecUnknownClient    = "unknown_client"    // source address is no RadSec client
	RadSecHandshakeFailed  = "handshake_failed"  // TLS error, untrusted or missing certificate, timeout
	RadSecIdentityMismatch = "identity_mismatch" // trusted certificate that does not name the client
	// RadSecRevoked: RadSecConfig.VerifyPeer refused the certificate at
	// the handshake (revoked, or its revocation status unknown: fail closed).
	RadSecRevoked = "revoked"
)

// Causes of a RadSec connection close: the label values of
// nacd_radius_radsec_closed_total. Stable.
const (
	RadSecClosedIdle     = "idle"     // no request within the idle timeout
	RadSecClosedFraming  = "framing"  // Length field out of 20..4096, or a truncated packet
	RadSecClosedPeer     = "peer"     // the NAS closed it
	RadSecClosedError    = "error"    // read or write error
	RadSecClosedClient   = "client"   // the client (or its certificate identity) left the config
	RadSecClosedShutdown = "shutdown" // the server closed
	RadSecClosedRevoked  = "revoked"  // VerifyPeer refused the certificate before a request (revoked since the handshake)
)

var (
	radsecResults = []string{RadSecAccepted, RadSecLimit, RadSecUnknownClient, RadSecHandshakeFailed, RadSecIdentityMismatch, RadSecRevoked}
	radsecCloses  = []string{RadSecClosedIdle, RadSecClosedFraming, RadSecClosedPeer, RadSecClosedError, RadSecClosedClient, RadSecClosedShutdown, RadSecClosedRevoked}
)

// RadSecConfig configures RADIUS over TLS. Certificates and ClientCAs can be
// replaced by Reload; the limits, timeouts and VerifyPeer are fixed at
// NewServer (a Reload keeps them).
type RadSecConfig struct {
	// Certificates is the server certificate (chain) presented to NASes.
	Certificates []tls.Certificate
	// ClientCAs are the CAs a NAS certificate must chain to (nacd's own
	// CA or a configured bundle). Required.
	ClientCAs *x509.CertPool
	// MinVersion is the lowest TLS version accepted: TLS 1.2 (default)
	// or TLS 1.3.
	MinVersion uint16
	// VerifyPeer, when set, checks a NAS certificate beyond its chain:
	// nacd checks revocation here. chain is what the NAS presented, leaf
	// first (its chain to ClientCAs already verified). It is called at the
	// handshake (an error fails it: result "revoked") and before every
	// request on the connection (an error closes it: cause "revoked", the
	// request dropped), so it must be cheap and safe for concurrent use.
	// nil: no check beyond the chain (NewServer logs a warning).
	VerifyPeer func(chain []*x509.Certificate, now time.Time) error

	IdleTimeout             time.Duration // close after no request for this long, default DefaultRadSecIdleTimeout
	MaxConnections          int           // global, default DefaultRadSecMaxConnections
	MaxConnectionsPerClient int           // per NAS client, default DefaultRadSecMaxConnsPerClient
	HandshakeTimeout        time.Duration // default DefaultRadSecHandshakeTimeout
	ReadTimeout             time.Duration // to read the rest of a packet once its header came, default DefaultRadSecReadTimeout
	WriteTimeout            time.Duration // per response, default DefaultRadSecWriteTimeout
	// MaxPendingPerConnection bounds the requests of one connection being
	// processed at once; beyond it nacd stops reading the connection (TCP
	// backpressure). Default DefaultRadSecMaxPendingPerStream.
	MaxPendingPerConnection int
}

// tlsConfig builds the server-side TLS configuration: mutual TLS with
// verified client certificates (clientAuth EKU), TLS 1.2 minimum.
func (c *RadSecConfig) tlsConfig() (*tls.Config, error) {
	if len(c.Certificates) == 0 {
		return nil, errors.New("radsec: a server certificate is required")
	}
	if c.ClientCAs == nil {
		return nil, errors.New("radsec: a CA bundle for NAS certificates is required")
	}
	minV := c.MinVersion
	switch minV {
	case 0:
		minV = tls.VersionTLS12
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return nil, fmt.Errorf("radsec: MinVersion %#x: want TLS 1.2 or 1.3", minV)
	}
	return &tls.Config{
		Certificates: slices.Clone(c.Certificates),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.ClientCAs,
		MinVersion:   minV,
		MaxVersion:   tls.VersionTLS13,
		// Connections are long-lived; every one proves its certificate
		// in a full handshake against the current CA bundle, never by
		// resuming a session from before a reload.
		SessionTicketsDisabled: true,
	}, nil
}

// radsec is the RadSec part of a Server: limits, live connections, metrics.
type radsec struct {
	srv *Server
	cfg RadSecConfig // limits and timeouts, defaults applied

	conns   prometheus.Gauge
	results *prometheus.CounterVec
	closes  *prometheus.CounterVec

	// verified is the snapshot's TLS configuration with VerifyConnection
	// calling cfg.VerifyPeer, derived once per reload (nil without it).
	verified atomic.Pointer[derivedTLS]

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	live      map[*radsecConn]struct{}
	perClient map[string]int
	// handshaking counts connections between accept and the end of their
	// TLS handshake; they count against MaxConnections too, so a flood of
	// unfinished handshakes cannot exceed it.
	handshaking map[net.Conn]struct{}
	closed      bool
}

func newRadSec(s *Server, cfg *RadSecConfig, reg prometheus.Registerer) (*radsec, *tls.Config, error) {
	r := &radsec{
		srv:         s,
		listeners:   map[net.Listener]struct{}{},
		live:        map[*radsecConn]struct{}{},
		perClient:   map[string]int{},
		handshaking: map[net.Conn]struct{}{},
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nacd_radius_radsec_connections",
			Help: "RadSec (RADIUS over TLS) connections open and authenticated.",
		}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_radius_radsec_connections_total",
			Help: "RadSec connection attempts, by result (accepted, limit, unknown_client, handshake_failed, identity_mismatch, revoked).",
		}, []string{"result"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_radius_radsec_closed_total",
			Help: "Accepted RadSec connections closed, by cause (idle, framing, peer, error, client, shutdown, revoked).",
		}, []string{"cause"}),
	}
	for _, v := range radsecResults {
		r.results.WithLabelValues(v)
	}
	for _, v := range radsecCloses {
		r.closes.WithLabelValues(v)
	}
	var tc *tls.Config
	if cfg != nil {
		c := *cfg
		for name, v := range map[string]int{"MaxConnections": c.MaxConnections, "MaxConnectionsPerClient": c.MaxConnectionsPerClient, "MaxPendingPerConnection": c.MaxPendingPerConnection} {
			if v < 0 {
				return nil, nil, fmt.Errorf("radsec: %s %d is negative", name, v)
			}
		}
		for name, v := range map[string]time.Duration{"IdleTimeout": c.IdleTimeout, "HandshakeTimeout": c.HandshakeTimeout, "ReadTimeout": c.ReadTimeout, "WriteTimeout": c.WriteTimeout} {
			if v < 0 {
				return nil, nil, fmt.Errorf("radsec: %s %v is negative", name, v)
			}
		}
		c.IdleTimeout = orDefault(c.IdleTimeout, DefaultRadSecIdleTimeout)
		c.MaxConnections = orDefault(c.MaxConnections, DefaultRadSecMaxConnections)
		c.MaxConnectionsPerClient = orDefault(c.MaxConnectionsPerClient, DefaultRadSecMaxConnsPerClient)
		c.HandshakeTimeout = orDefault(c.HandshakeTimeout, DefaultRadSecHandshakeTimeout)
		c.ReadTimeout = orDefault(c.ReadTimeout, DefaultRadSecReadTimeout)
		c.WriteTimeout = orDefault(c.WriteTimeout, DefaultRadSecWriteTimeout)
		c.MaxPendingPerConnection = orDefault(c.MaxPendingPerConnection, DefaultRadSecMaxPendingPerStream)
		var err error
		if tc, err = c.tlsConfig(); err != nil {
			return nil, nil, err
		}
		r.cfg = c
		if c.VerifyPeer == nil {
			s.logger.Warn("radius: RadSec has no revocation check for NAS certificates: a revoked controller certificate is accepted until it expires")
		}
	}
	if reg != nil {
		var errs []error
		for _, c := range []prometheus.Collector{r.conns, r.results, r.closes} {
			if err := reg.Register(c); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return nil, nil, err
		}
	}
	return r, tc, nil
}

// ErrRadSecNotConfigured is returned by ServeRadSec when Config.RadSec was nil.
var ErrRadSecNotConfigured = errors.New("radius: RadSec is not configured")

// ServeRadSec accepts RadSec connections on ln (a TCP listener; nacd does
// the TLS) until Close, then returns nil. It may be called for several
// listeners; they share the server's workers, tables and limits.
func (s *Server) ServeRadSec(ln net.Listener) error {
	if s.snap.Load().radsecTLS == nil {
		return ErrRadSecNotConfigured
	}
	r := s.radsec
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	r.listeners[ln] = struct{}{}
	r.mu.Unlock()
	s.startOnce.Do(s.start)

	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			r.mu.Lock()
			closed := r.closed
			if !closed {
				delete(r.listeners, ln)
			}
			r.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // e.g. EMFILE surfaces as temporary: back off
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("radius: radsec accept: %w", err)
		}
		delay = 0
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return nil
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			r.handle(conn)
		}()
	}
}

// close closes every listener and connection (Server.Close).
func (r *radsec) close() {
	r.mu.Lock()
	r.closed = true
	for ln := range r.listeners {
		ln.Close()
	}
	for c := range r.handshaking {
		c.Close()
	}
	conns := make([]*radsecConn, 0, len(r.live))
	for c := range r.live {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	for _, c := range conns {
		c.shut(RadSecClosedShutdown)
	}
}

// radsecConn is one authenticated RadSec connection.
type radsecConn struct {
	r       *radsec
	conn    *tls.Conn
	remote  netip.AddrPort
	leaf    *x509.Certificate
	chain   []*x509.Certificate // as presented, leaf first (VerifyPeer)
	pending chan struct{}       // one token per request being processed

	mu        sync.Mutex
	base      *Client // the configured client it was matched to
	effective *Client // base with the RadSec secret
	done      chan struct{}
	cause     string // why it closed; first one wins

	wmu sync.Mutex // serialises responses
}

// handle runs one connection from accept to close.
func (r *radsec) handle(raw net.Conn) {
	remote := addrPort(raw.RemoteAddr())
	log := r.srv.logger.With(zap.Stringer("src", remote))

	client := r.srv.snap.Load().clients.lookup(remote.Addr())
	if client == nil || !client.RadSec {
		r.refuse(raw, RadSecUnknownClient, log)
		return
	}
	r.mu.Lock()
	full := len(r.live)+len(r.handshaking) >= r.cfg.MaxConnections
	if !full && !r.closed {
		r.handshaking[raw] = struct{}{}
	}
	closed := r.closed
	r.mu.Unlock()
	if closed {
		raw.Close()
		return
	}
	if full {
		r.refuse(raw, RadSecLimit, log)
		return
	}
	handshaking := true
	doneHandshaking := func() {
		if handshaking {
			handshaking = false
			r.mu.Lock()
			delete(r.handshaking, raw)
			r.mu.Unlock()
		}
	}
	defer doneHandshaking()
	log = log.With(zap.String("nas", client.Name))

	tc := tls.Server(raw, &tls.Config{
		// The current snapshot's configuration: a reload of the
		// certificate or CA bundle applies to the next handshake.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.serverTLS()
		},
	})
	raw.SetDeadline(time.Now().Add(r.cfg.HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		var pe *peerRefusedError
		if errors.As(err, &pe) {
			r.results.WithLabelValues(RadSecRevoked).Inc()
			r.srv.limitedLog("radsec_revoked", "radius: RadSec certificate refused by the revocation check; handshake failed",
				zap.Stringer("src", remote), zap.String("nas", client.Name), zap.String("subject", pe.subject), zap.Error(pe.err))
			tc.Close()
			return
		}
		r.results.WithLabelValues(RadSecHandshakeFailed).Inc()
		r.srv.limitedLog("radsec_handshake", "radius: RadSec TLS handshake failed", zap.Stringer("src", remote), zap.String("nas", client.Name), zap.Error(err))
		tc.Close()
		return
	}
	raw.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 { // RequireAndVerifyClientCert makes this unreachable; fail closed
		r.results.WithLabelValues(RadSecHandshakeFailed).Inc()
		tc.Close()
		return
	}
	leaf := cs.PeerCertificates[0]
	// The client may have changed during the handshake: look it up again.
	client = r.srv.snap.Load().clients.lookup(remote.Addr())
	if client == nil || !client.RadSec {
		r.refuse(tc, RadSecUnknownClient, log)
		return
	}
	if !certificateNames(leaf, client.RadSecIdentities) {
		r.results.WithLabelValues(RadSecIdentityMismatch).Inc()
		r.srv.limitedLog("radsec_identity", "radius: RadSec certificate does not name the client; connection closed",
			zap.Stringer("src", remote), zap.String("nas", client.Name), zap.String("subject", leaf.Subject.String()))
		tc.Close()
		return
	}

	c := &radsecConn{
		r:       r,
		conn:    tc,
		remote:  remote,
		leaf:    leaf,
		chain:   cs.PeerCertificates,
		pending: make(chan struct{}, r.cfg.MaxPendingPerConnection),
		done:    make(chan struct{}),
	}
	c.setClient(client)
	doneHandshaking()
	r.mu.Lock()
	switch {
	case r.closed:
		r.mu.Unlock()
		tc.Close()
		return
	case len(r.live) >= r.cfg.MaxConnections, r.perClient[client.Name] >= r.cfg.MaxConnectionsPerClient:
		r.mu.Unlock()
		r.refuse(tc, RadSecLimit, log)
		return
	}
	r.live[c] = struct{}{}
	r.perClient[client.Name]++
	r.conns.Set(float64(len(r.live)))
	r.mu.Unlock()
	r.results.WithLabelValues(RadSecAccepted).Inc()
	log.Debug("radius: RadSec connection accepted", zap.String("subject", leaf.Subject.String()), zap.String("tls_version", tlsVersionName(cs.Version)))

	c.readLoop()

	r.mu.Lock()
	delete(r.live, c)
	if r.perClient[client.Name]--; r.perClient[client.Name] <= 0 {
		delete(r.perClient, client.Name)
	}
	r.conns.Set(float64(len(r.live)))
	r.mu.Unlock()
	c.mu.Lock()
	cause := c.cause
	c.mu.Unlock()
	r.closes.WithLabelValues(cause).Inc()
	log.Debug("radius: RadSec connection closed", zap.String("cause", cause))
}

// derivedTLS is a snapshot's RadSec TLS configuration (base) and its
// clone that calls VerifyPeer (derived).
type derivedTLS struct{ base, derived *tls.Config }

// serverTLS is the TLS configuration for a new handshake: the current
// snapshot's, with VerifyConnection calling VerifyPeer when one is set.
func (r *radsec) serverTLS() (*tls.Config, error) {
	base := r.srv.snap.Load().radsecTLS
	if base == nil {
		return nil, ErrRadSecNotConfigured
	}
	if r.cfg.VerifyPeer == nil {
		return base, nil
	}
	if d := r.verified.Load(); d != nil && d.base == base {
		return d.derived, nil
	}
	c := base.Clone()
	c.VerifyConnection = r.verifyConnection
	r.verified.Store(&derivedTLS{base: base, derived: c})
	return c, nil
}

// verifyConnection runs VerifyPeer at the handshake, after Go verified the
// chain (RequireAndVerifyClientCert).
func (r *radsec) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 || len(cs.VerifiedChains) == 0 { // unreachable with RequireAndVerifyClientCert; fail closed
		return &peerRefusedError{err: errors.New("no verified client certificate")}
	}
	if err := r.cfg.VerifyPeer(cs.PeerCertificates, r.srv.now()); err != nil {
		return &peerRefusedError{subject: cs.PeerCertificates[0].Subject.String(), err: err}
	}
	return nil
}

// peerRefusedError is a handshake failed by VerifyPeer.
type peerRefusedError struct {
	subject string
	err     error
}

func (e *peerRefusedError) Error() string { return "radsec: certificate refused: " + e.err.Error() }
func (e *peerRefusedError) Unwrap() error { return e.err }

func (r *radsec) refuse(c net.Conn, result string, log *zap.Logger) {
	r.results.WithLabelValues(result).Inc()
	r.srv.limitedLog("radsec_"+result, "radius: RadSec connection refused", zap.String("result", result), zap.Stringer("src", addrPort(c.RemoteAddr())))
	c.Close()
}

// certificateNames reports whether leaf carries one of names as a DNS, URI,
// IP or e-mail SAN or as its subject CN (exact, case-insensitive for DNS
// names and the CN).
func certificateNames(leaf *x509.Certificate, names []string) bool {
	for _, n := range names {
		if n == "" {
			continue
		}
		if equalFoldASCII(leaf.Subject.CommonName, n) {
			return true
		}
		for _, d := range leaf.DNSNames {
			if equalFoldASCII(d, n) {
				return true
			}
		}
		for _, u := range leaf.URIs {
			if u.String() == n {
				return true
			}
		}
		for _, e := range leaf.EmailAddresses {
			if e == n {
				return true
			}
		}
		if a, err := netip.ParseAddr(n); err == nil {
			for _, ip := range leaf.IPAddresses {
				if b, ok := netip.AddrFromSlice(ip); ok && b.Unmap() == a.Unmap() {
					return true
				}
			}
		}
	}
	return false
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// setClient records the configured client and derives the one requests
// are verified with: the same client with the RadSec shared secret.
func (c *radsecConn) setClient(base *Client) {
	eff := *base
	eff.Secret = []byte(RadSecSecret)
	c.base, c.effective = base, &eff
}

// requestClient returns the client for a request on this connection,
// re-checked against the current client table and VerifyPeer; nil (and
// the connection closed) when the certificate is refused (revoked since
// the handshake), the client is gone, no longer RadSec, or no longer named
// by the certificate.
func (c *radsecConn) requestClient() *Client {
	if vp := c.r.cfg.VerifyPeer; vp != nil {
		if err := vp(c.chain, c.r.srv.now()); err != nil {
			c.mu.Lock()
			nas := c.base.Name
			c.mu.Unlock()
			c.r.srv.limitedLog("radsec_revoked_live", "radius: RadSec certificate refused by the revocation check; connection closed, request dropped",
				zap.Stringer("src", c.remote), zap.String("nas", nas), zap.String("subject", c.leaf.Subject.String()), zap.Error(err))
			c.shut(RadSecClosedRevoked)
			return nil
		}
	}
	cur := c.r.srv.snap.Load().clients.lookup(c.remote.Addr())
	c.mu.Lock()
	if cur != nil && cur == c.base {
		eff := c.effective
		c.mu.Unlock()
		return eff
	}
	ok := cur != nil && cur.RadSec && cur.Name == c.base.Name && certificateNames(c.leaf, cur.RadSecIdentities)
	if ok {
		c.setClient(cur)
		eff := c.effective
		c.mu.Unlock()
		return eff
	}
	c.mu.Unlock()
	c.shut(RadSecClosedClient)
	return nil
}

// shut closes the connection once, recording the first cause.
// closeCause is why the connection was shut ("" while it is open).
func (c *radsecConn) closeCause() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

func (c *radsecConn) shut(cause string) {
	c.mu.Lock()
	select {
	case <-c.done:
		c.mu.Unlock()
		return
	default:
	}
	c.cause = cause
	close(c.done)
	c.mu.Unlock()
	c.conn.Close()
}

// readLoop reads length-framed packets and hands them to the workers until
// the connection ends.
func (c *radsecConn) readLoop() {
	s := c.r.srv
	defer c.shut(RadSecClosedError) // no-op when a cause was set
	for {
		// Wait for a free slot before reading more: backpressure.
		select {
		case c.pending <- struct{}{}:
		case <-c.done:
			return
		}
		b, err := readFrame(c.conn, func() {
			c.conn.SetReadDeadline(time.Now().Add(c.r.cfg.IdleTimeout))
		}, func() {
			c.conn.SetReadDeadline(time.Now().Add(c.r.cfg.ReadTimeout))
		})
		if err != nil {
			<-c.pending
			var fe *frameError
			cause := RadSecClosedError
			if errors.As(err, &fe) {
				cause = fe.cause
			}
			select {
			case <-c.done: // closed by the server (shutdown, reload): not the NAS's fault
				return
			default:
			}
			if cause == RadSecClosedFraming {
				s.dropped(DropMalformed, c.remote, zap.String("transport", "radsec"), zap.Error(err))
			}
			c.shut(cause)
			return
		}
		in := inbound{b: b, at: s.now(), stream: c}
		select {
		case s.queue <- in: // blocking: TCP pushes back instead of dropping
		case <-s.done:
			<-c.pending
			c.shut(RadSecClosedShutdown)
			return
		case <-c.done:
			<-c.pending
			return
		}
	}
}

// frameError is a failed frame read with its close cause.
type frameError struct {
	cause string
	err   error
}

func (e *frameError) Error() string { return "radsec: " + e.cause + ": " + e.err.Error() }
func (e *frameError) Unwrap() error { return e.err }

// readFrame reads one RADIUS packet from a stream (RFC 6614 section 2.5):
// the 4-byte header, then Length-4 more bytes. Length must be 20..4096.
// beforeHeader and beforeBody set the deadlines (idle wait, then the rest
// of the packet). Errors are *frameError: idle (timeout before any byte),
// peer (EOF before any byte), framing (bad Length, partial header or
// packet, including a timeout mid-packet) or error.
func readFrame(r io.Reader, beforeHeader, beforeBody func()) ([]byte, error) {
	var hdr [4]byte
	if beforeHeader != nil {
		beforeHeader()
	}
	n, err := io.ReadFull(r, hdr[:])
	if err != nil {
		return nil, &frameError{cause: readCloseCause(err, n), err: err}
	}
	length := int(binary.BigEndian.Uint16(hdr[2:4]))
	if length < headerLen || length > RadSecMaxPacket {
		return nil, &frameError{cause: RadSecClosedFraming, err: fmt.Errorf("length field %d outside %d..%d", length, headerLen, RadSecMaxPacket)}
	}
	b := make([]byte, length)
	copy(b, hdr[:])
	if beforeBody != nil {
		beforeBody()
	}
	if _, err := io.ReadFull(r, b[4:]); err != nil {
		return nil, &frameError{cause: RadSecClosedFraming, err: fmt.Errorf("truncated packet of length %d: %w", length, err)}
	}
	return b, nil
}

// readCloseCause classifies a failed header read: a timeout before any
// byte is the idle timeout, EOF before any byte is the NAS closing, a
// partial header is a framing error.
func readCloseCause(err error, n int) string {
	var ne net.Error
	switch {
	case n > 0:
		return RadSecClosedFraming
	case errors.As(err, &ne) && ne.Timeout():
		return RadSecClosedIdle
	case errors.Is(err, io.EOF):
		return RadSecClosedPeer
	default:
		return RadSecClosedError
	}
}

// release frees the request slot taken by the reader (after processing).
func (c *radsecConn) release() {
	select {
	case <-c.pending:
	default:
	}
}

// write sends one response on the stream, within the write timeout; a
// failure closes the connection.
func (c *radsecConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return errors.New("radius: radsec connection closed")
	default:
	}
	c.conn.SetWriteDeadline(time.Now().Add(c.r.cfg.WriteTimeout))
	if _, err := c.conn.Write(b); err != nil {
		c.shut(RadSecClosedError)
		return err
	}
	return nil
}
