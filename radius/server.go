// Package radius owns nacd's RADIUS server (RFC 2865, 3579, 5080, 5997): the
// UDP socket and its workers, the NAS client table, packet verification
// (Message-Authenticator, BlastRADIUS hardening), the duplicate-request
// cache, the EAP conversation table keyed by State, and the Access-Accept /
// Access-Reject / Access-Challenge it answers with.
//
// radius turns packets into calls: the certificate is verified by a
// CertificateVerifier (pki) and the placement decided by policy.Decide.
//
// radius must never accept a request that did not run EAP-TLS to success and
// a policy decision that admits the device, never answer a request whose
// Message-Authenticator is missing where required or wrong, and never log
// shared secrets, keys or MSKs.
package radius

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"layeh.com/radius"

	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius/eaptls"
)

// Defaults for Config fields left zero.
const (
	DefaultMaxConversations    = 65536
	DefaultConversationTimeout = 30 * time.Second
	// DefaultDuplicateWindow is how long an answered request's reply is kept
	// for replay to a retransmission (RFC 5080 section 2.2.2). NASes
	// retransmit within a few seconds; 5 s covers the usual 3-retry schedule
	// without keeping replies (and their per-request MPPE keys) long.
	DefaultDuplicateWindow = 5 * time.Second
	// DefaultDuplicateCacheSize bounds the number of cached requests.
	DefaultDuplicateCacheSize = 65536
	// DefaultWorkers bounds the requests processed concurrently.
	DefaultWorkers = 64
	// queuePerWorker is how many received datagrams may wait per worker
	// before new ones are dropped (cause overloaded).
	queuePerWorker = 16
)

// Client is a NAS (Wi-Fi controller) allowed to send requests.
type Client struct {
	Name     string
	Networks []netip.Prefix // a single IP is a /32 or /128
	Secret   []byte
	Site     string
	// RequireMessageAuthenticator requires Message-Authenticator on every
	// Access-Request from this client, with or without EAP (BlastRADIUS,
	// CVE-2024-3596).
	RequireMessageAuthenticator bool
	// CoAPort is the NAS's Dynamic Authorization (RFC 5176) port for
	// Disconnect-Request and CoA-Request; 0 means DefaultCoAPort.
	CoAPort int
	// DynAuth says how nacd ends or moves a live session on this NAS:
	// DynAuthDisconnect ("" too), DynAuthCoA (the NAS can re-VLAN a live
	// session), or DynAuthNone.
	DynAuth DynAuthMode
	// RadSec lets this client connect over RadSec (RFC 6614) from its
	// Networks, with a certificate that chains to RadSecConfig.ClientCAs
	// and names one of RadSecIdentities (DNS/URI/IP/e-mail SAN or subject
	// CN). Requests on such a connection use the secret "radsec".
	RadSec           bool
	RadSecIdentities []string
}

// CertificateVerifier verifies a peer's certificate chain and returns the
// identity policy decides on; a failure is reported in Identity.Status.
// pki.TrustStore implements it.
type CertificateVerifier interface {
	VerifyClient(chain []*x509.Certificate, now time.Time) policy.Identity
}

// Config configures a Server.
type Config struct {
	Clients  []Client
	EAPTLS   *eaptls.Config
	Verifier CertificateVerifier
	Policy   *policy.Policy
	// RadSec enables ServeRadSec (RADIUS over TLS); nil: UDP only.
	RadSec *RadSecConfig

	MaxConversations    int           // default DefaultMaxConversations
	ConversationTimeout time.Duration // idle timeout, default DefaultConversationTimeout
	DuplicateWindow     time.Duration // RFC 5080 reply cache lifetime, default DefaultDuplicateWindow
	DuplicateCacheSize  int           // default DefaultDuplicateCacheSize
	Workers             int           // concurrent requests, default DefaultWorkers

	// Sessions, when set, enables accounting (ServeAccounting): the table
	// accounting maintains. nil: Accounting-Request is dropped.
	Sessions *SessionTable

	// AuditGate, when set, is asked before and after an Accept's access log
	// line is written and before the Access-Accept is sent: an error means
	// the line is not confirmed written and the decision must fail closed
	// (audit.Sink.Gate); the request is rejected with
	// ReasonAuditUnavailable.
	AuditGate func(d policy.Decision) error

	Logger     *zap.Logger           // operational log (drops etc.), nil = nop
	AccessLog  *zap.Logger           // one structured line per decision, nil = nop
	Registerer prometheus.Registerer // nil = none
	Now        func() time.Time      // nil = time.Now
}

// Server is a RADIUS authentication server. It owns the read loop of each
// socket given to Serve and a fixed pool of workers; every request passes
// the layers client lookup -> verification -> duplicate cache -> handler,
// and every discarded request is counted with its cause.
type Server struct {
	snap      atomic.Pointer[snapshot]
	handler   Handler
	access    *accessHandler
	acct      *accountingHandler
	links     *classLinks
	dups      *dupCache
	convs     *conversations
	metrics   *metrics
	logger    *zap.Logger
	accessLog *zap.Logger
	auditGate func(policy.Decision) error
	radsec    *radsec
	now       func() time.Time
	workers   int

	queue     chan inbound
	done      chan struct{}
	startOnce sync.Once
	limiter   logLimiter

	mu     sync.Mutex
	conns  map[net.PacketConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// snapshot is the reloadable part of the configuration.
type snapshot struct {
	clients   *clientTable
	policy    *policy.Policy
	radsecTLS *tls.Config // nil when RadSec is not configured
}

// inbound is one received request. UDP requests carry their socket and
// source address; RadSec requests carry their TLS connection, which fixes
// the client and receives the reply. Both feed the same request path.
type inbound struct {
	conn   net.PacketConn
	addr   net.Addr       // the source, when conn is not a *net.UDPConn
	from   netip.AddrPort // the source as read, when conn is a *net.UDPConn
	b      []byte
	at     time.Time
	stream *radsecConn // nil for UDP
	port   portKind    // UDP: the socket's kind (Serve, ServeAccounting)

	// buf is the pooled datagram buffer b is in (UDP from serveConn), given
	// back by release once the request is done; nil otherwise.
	buf *datagram
}

// datagram is a receive buffer of the largest RADIUS packet.
type datagram [radius.MaxPacketLength]byte

// datagrams recycles the receive buffers of UDP requests: a buffer holds
// one request from its read until its worker has finished with it (the
// handler has returned and the reply was sent); see release.
var datagrams = sync.Pool{New: func() any { return new(datagram) }}

// release gives in's datagram buffer back to the pool, zeroing the bytes
// the request used, so that anything still (wrongly) aliasing them reads
// zeros rather than another request's bytes
// (TestDatagramBufferNotReusedEarly). The request's parsed attributes
// alias the buffer: release only after the handler has returned.
func (in *inbound) release() {
	if in.buf == nil {
		return
	}
	clear(in.buf[:len(in.b)])
	datagrams.Put(in.buf)
	in.buf, in.b = nil, nil
}

// send writes a reply to where in came from.
func (in *inbound) send(b []byte) error {
	if in.stream != nil {
		return in.stream.write(b)
	}
	if u, ok := in.conn.(*net.UDPConn); ok && in.addr == nil {
		_, err := u.WriteToUDPAddrPort(b, in.from)
		return err
	}
	_, err := in.conn.WriteTo(b, in.addr)
	return err
}

// source returns the client and source address of in: the client table
// lookup for UDP, the authenticated connection's client for RadSec.
func (s *Server) source(in *inbound) (*Client, netip.AddrPort) {
	if in.stream != nil {
		return in.stream.requestClient(), in.stream.remote
	}
	src := in.srcAddr()
	return s.snap.Load().clients.lookup(src.Addr()), src
}

// srcAddr is the UDP source of in, IPv4-mapped addresses unmapped.
func (in *inbound) srcAddr() netip.AddrPort {
	if in.addr == nil && in.from.IsValid() {
		return netip.AddrPortFrom(in.from.Addr().Unmap(), in.from.Port())
	}
	return addrPort(in.addr)
}

// ErrServerClosed is returned by Serve when called after Close.
var ErrServerClosed = errors.New("radius: server closed")

// NewServer validates cfg, applies defaults, registers the metrics and
// returns a server ready to Serve.
func NewServer(cfg Config) (*Server, error) {
	if cfg.EAPTLS == nil || len(cfg.EAPTLS.Certificates) == 0 {
		return nil, errors.New("radius: config: EAPTLS with a server certificate is required")
	}
	if cfg.Verifier == nil {
		return nil, errors.New("radius: config: Verifier is required")
	}
	if err := cfg.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("radius: config: policy: %w", err)
	}
	clients, err := newClientTable(cfg.Clients)
	if err != nil {
		return nil, fmt.Errorf("radius: config: %w", err)
	}
	for name, v := range map[string]int{"MaxConversations": cfg.MaxConversations, "DuplicateCacheSize": cfg.DuplicateCacheSize, "Workers": cfg.Workers} {
		if v < 0 {
			return nil, fmt.Errorf("radius: config: %s %d is negative", name, v)
		}
	}
	for name, v := range map[string]time.Duration{"ConversationTimeout": cfg.ConversationTimeout, "DuplicateWindow": cfg.DuplicateWindow} {
		if v < 0 {
			return nil, fmt.Errorf("radius: config: %s %v is negative", name, v)
		}
	}
	cfg.MaxConversations = orDefault(cfg.MaxConversations, DefaultMaxConversations)
	cfg.DuplicateCacheSize = orDefault(cfg.DuplicateCacheSize, DefaultDuplicateCacheSize)
	cfg.Workers = orDefault(cfg.Workers, DefaultWorkers)
	cfg.ConversationTimeout = orDefault(cfg.ConversationTimeout, DefaultConversationTimeout)
	cfg.DuplicateWindow = orDefault(cfg.DuplicateWindow, DefaultDuplicateWindow)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.AccessLog == nil {
		cfg.AccessLog = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("radius: register metrics: %w", err)
	}

	s := &Server{
		dups:      newDupCache(cfg.DuplicateCacheSize, cfg.DuplicateWindow),
		convs:     newConversations(cfg.MaxConversations, cfg.ConversationTimeout),
		metrics:   m,
		logger:    cfg.Logger,
		accessLog: cfg.AccessLog,
		auditGate: cfg.AuditGate,
		now:       cfg.Now,
		workers:   cfg.Workers,
		queue:     make(chan inbound, cfg.Workers*queuePerWorker),
		done:      make(chan struct{}),
		conns:     map[net.PacketConn]struct{}{},
	}
	s.limiter.every = 10 * time.Second
	s.convs.onEvict = func(cause string) { m.evictions.WithLabelValues(cause).Inc() }
	s.convs.onSize = func(n int) { m.conversations.Set(float64(n)) }
	rs, radsecTLS, err := newRadSec(s, cfg.RadSec, cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("radius: config: %w", err)
	}
	s.radsec = rs
	s.snap.Store(&snapshot{clients: clients, policy: cfg.Policy, radsecTLS: radsecTLS})
	s.access = &accessHandler{
		srv:       s,
		tlsConfig: cfg.EAPTLS,
		verifier:  cfg.Verifier,
		convs:     s.convs,
		newSession: func(c *eaptls.Config, a eaptls.Authorize) eapSession {
			return eaptls.NewSession(c, a)
		},
	}
	s.links = newClassLinks(DefaultMaxLinks, DefaultLinkTTL)
	if s.acct, err = newAccountingHandler(s, cfg.Sessions, cfg.Registerer); err != nil {
		return nil, fmt.Errorf("radius: register metrics: %w", err)
	}
	s.handler = HandlerFunc(s.route)
	return s, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// SetPolicy replaces the policy for decisions made from now on (hot
// reload). p must have passed Validate; nil is refused.
func (s *Server) SetPolicy(p *policy.Policy) error {
	if p == nil {
		return errors.New("radius: nil policy")
	}
	for {
		old := s.snap.Load()
		if s.snap.CompareAndSwap(old, &snapshot{clients: old.clients, policy: p, radsecTLS: old.radsecTLS}) {
			return nil
		}
	}
}

// SetClients replaces the NAS client table (hot reload). Conversations in
// progress finish with the client that started them.
func (s *Server) SetClients(clients []Client) error {
	t, err := newClientTable(clients)
	if err != nil {
		return fmt.Errorf("radius: clients: %w", err)
	}
	for {
		old := s.snap.Load()
		if s.snap.CompareAndSwap(old, &snapshot{clients: t, policy: old.policy, radsecTLS: old.radsecTLS}) {
			return nil
		}
	}
}

func (s *Server) policy() *policy.Policy { return s.snap.Load().policy }

// Serve reads requests from conn until Close is called, then returns nil.
// It may be called for several sockets (IPv4 and IPv6); they share the
// workers, tables and caches.
func (s *Server) Serve(conn net.PacketConn) error { return s.serveConn(conn, portAuth) }

func (s *Server) serveConn(conn net.PacketConn, port portKind) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.startOnce.Do(s.start)

	udp, _ := conn.(*net.UDPConn)
	for {
		// ReadFromUDPAddrPort allocates no *net.UDPAddr per datagram.
		buf := datagrams.Get().(*datagram)
		var (
			n    int
			addr net.Addr
			from netip.AddrPort
			err  error
		)
		if udp != nil {
			n, from, err = udp.ReadFromUDPAddrPort(buf[:])
		} else {
			n, addr, err = conn.ReadFrom(buf[:])
		}
		if err != nil {
			datagrams.Put(buf)
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			return fmt.Errorf("radius: read: %w", err)
		}
		in := inbound{port: port, conn: conn, addr: addr, from: from, b: buf[:n:n], buf: buf, at: s.now()}
		select {
		case s.queue <- in:
		default:
			in.release()
			s.dropped(DropOverloaded, in.srcAddr())
		}
	}
}

// start launches the workers and the conversation janitor.
func (s *Server) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for range s.workers {
		s.wg.Add(1)
		go s.work()
	}
	s.wg.Add(1)
	go s.janitor()
}

func (s *Server) work() {
	defer s.wg.Done()
	for {
		select {
		case <-s.done:
			return
		case in := <-s.queue:
			s.process(in)
			if in.stream != nil {
				in.stream.release()
			}
			in.release() // the handler has returned: nothing aliases in.b now
		}
	}
}

// janitor evicts idle conversations even when no request arrives, so their
// EAP-TLS sessions are released.
func (s *Server) janitor() {
	defer s.wg.Done()
	every := min(max(s.convs.ttl/2, 100*time.Millisecond), 5*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.convs.expire(s.now())
		}
	}
}

// Close stops every Serve call, waits for requests in progress and closes
// every EAP conversation.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	var errs []error
	for c := range s.conns {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Unlock()
	s.radsec.close()
	s.wg.Wait()
	s.convs.closeAll()
	return errors.Join(errs...)
}

func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// process runs one datagram through the layers. It never panics.
func (s *Server) process(in inbound) {
	client, src := s.source(&in)
	if client == nil {
		cause := DropUnknownClient
		if in.stream != nil && in.stream.closeCause() == RadSecClosedRevoked {
			cause = DropCertificateRefused
		}
		s.dropped(cause, src)
		return
	}
	typ := requestType(in.b)
	s.metrics.requests.WithLabelValues(typ, client.Name).Inc()
	if !in.port.serves(in.b) {
		s.dropped(DropUnsupportedCode, src, zap.String("nas", client.Name), zap.String("detail", "code not served on this port"))
		return
	}
	p, err := verifyRequest(in.b, client)
	if err != nil {
		s.dropped(dropCause(err), src, zap.String("nas", client.Name), zap.Error(err))
		return
	}
	key := dupKey{src: src, id: p.Identifier, auth: p.Authenticator}
	switch st, reply := s.dups.begin(key, in.at); st {
	case dupInProgress:
		s.dropped(DropDuplicateInProgress, src, zap.String("nas", client.Name))
		return
	case dupAnswered:
		s.metrics.dropped.WithLabelValues(DropDuplicateReplayed).Inc()
		if err := in.send(reply); err != nil {
			s.logger.Warn("radius: cannot re-send cached reply", zap.Error(err))
		}
		return
	}
	x := &serverCall{
		w: responseWriter{srv: s, in: in, key: key, req: p, typ: typ},
		r: Request{Packet: p, Client: client, RemoteAddr: src, Received: in.at, port: in.port},
	}
	s.serve(&x.w, &x.r)
	x.w.returned = true // r's attributes alias in.b, which is released next
	if !x.w.written {
		s.dups.abandon(key)
	}
}

// serverCall is one request and its writer, allocated together.
type serverCall struct {
	w responseWriter
	r Request
}

// serve calls the handler, recovering a panic: the request is dropped,
// logged and counted.
func (s *Server) serve(w *responseWriter, r *Request) {
	defer func() {
		if v := recover(); v != nil {
			s.metrics.dropped.WithLabelValues(DropPanic).Inc()
			s.logger.Error("radius: panic while handling a request; dropped",
				zap.String("nas", r.Client.Name), zap.Any("panic", v), zap.Stack("stack"))
		}
	}()
	s.handler.ServeRADIUS(w, r)
}

func requestType(b []byte) string {
	if len(b) == 0 {
		return "other"
	}
	switch radius.Code(b[0]) {
	case radius.CodeAccessRequest:
		return "access_request"
	case radius.CodeStatusServer:
		return "status_server"
	case radius.CodeAccountingRequest:
		return "accounting_request"
	default:
		return "other"
	}
}

func responseCode(c radius.Code) string {
	switch c {
	case radius.CodeAccessAccept:
		return "access_accept"
	case radius.CodeAccessReject:
		return "access_reject"
	case radius.CodeAccessChallenge:
		return "access_challenge"
	case radius.CodeAccountingResponse:
		return "accounting_response"
	default:
		return "other"
	}
}

// dropped counts a discarded request and logs it, at most once per cause
// every few seconds.
func (s *Server) dropped(cause string, src netip.AddrPort, fields ...zap.Field) {
	s.metrics.dropped.WithLabelValues(cause).Inc()
	s.limitedLog(cause, "radius: request dropped", append(fields, zap.String("cause", cause), zap.Stringer("src", src))...)
}

func (s *Server) limitedLog(key, msg string, fields ...zap.Field) {
	if n, ok := s.limiter.allow(key, s.now()); ok {
		s.logger.Warn(msg, append(fields, zap.Int("suppressed_since_last", n))...)
	}
}

// logLimiter lets one line per key through every period and counts the
// others. Keys are drop causes (a bounded set).
type logLimiter struct {
	mu         sync.Mutex
	every      time.Duration
	last       map[string]time.Time
	suppressed map[string]int
}

func (l *logLimiter) allow(key string, now time.Time) (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last, l.suppressed = map[string]time.Time{}, map[string]int{}
	}
	if t, seen := l.last[key]; seen && now.Sub(t) < l.every {
		l.suppressed[key]++
		return 0, false
	}
	l.last[key] = now
	n := l.suppressed[key]
	l.suppressed[key] = 0
	return n, true
}

// responseWriter completes, caches and sends the response to one request.
type responseWriter struct {
	srv      *Server
	in       inbound
	key      dupKey
	req      *radius.Packet
	typ      string // requestType of the request
	written  bool
	returned bool // the handler has returned: the request's bytes are gone
}

// errWriteAfterReturn is returned by a Write after the handler returned:
// the request's attributes (Proxy-State) alias a datagram buffer that may
// already hold another request, and the request was already dropped.
var errWriteAfterReturn = errors.New("radius: response written after the handler returned")

func (w *responseWriter) Write(code radius.Code, attrs radius.Attributes) error {
	if w.returned {
		return errWriteAfterReturn
	}
	if w.written {
		return errors.New("radius: response already written")
	}
	b, err := encodeResponse(code, w.req.Identifier, w.req.Authenticator, w.req.Secret, attrs, proxyStates(w.req))
	if err != nil {
		return err
	}
	w.written = true
	now := w.srv.now()
	w.srv.dups.finish(w.key, b, now)
	w.srv.metrics.responses.WithLabelValues(responseCode(code)).Inc()
	if err := w.in.send(b); err != nil {
		return fmt.Errorf("radius: send: %w", err)
	}
	w.srv.metrics.observeDuration(w.typ, w.srv.now().Sub(w.in.at))
	return nil
}
