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
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

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

	MaxConversations    int           // default DefaultMaxConversations
	ConversationTimeout time.Duration // idle timeout, default DefaultConversationTimeout
	DuplicateWindow     time.Duration // RFC 5080 reply cache lifetime, default DefaultDuplicateWindow
	DuplicateCacheSize  int           // default DefaultDuplicateCacheSize
	Workers             int           // concurrent requests, default DefaultWorkers

	Logger     *zap.Logger           // operational log (drops etc.), nil = nop
	AccessLog  *zap.Logger           // one structured line per decision, nil = nop
	Registerer prometheus.Registerer // nil = none
	Now        func() time.Time      // nil = time.Now
}

// Server is a RADIUS authentication server. It owns its socket's read loop
// and a bounded pool of workers.
type Server struct {
	cfg Config

	mu     sync.Mutex
	conns  map[net.PacketConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// ErrServerClosed is returned by Serve when called after Close.
var ErrServerClosed = errors.New("radius: server closed")

// NewServer validates cfg and returns a server ready to Serve.
func NewServer(cfg Config) (*Server, error) {
	if cfg.EAPTLS == nil {
		return nil, errors.New("radius: config: EAPTLS is required")
	}
	if cfg.Verifier == nil {
		return nil, errors.New("radius: config: Verifier is required")
	}
	if cfg.Policy == nil {
		return nil, errors.New("radius: config: Policy is required")
	}
	for i, c := range cfg.Clients {
		if c.Name == "" {
			return nil, fmt.Errorf("radius: config: client %d: empty name", i)
		}
		if len(c.Secret) == 0 {
			return nil, fmt.Errorf("radius: config: client %q: empty secret", c.Name)
		}
	}
	return &Server{cfg: cfg, conns: map[net.PacketConn]struct{}{}}, nil
}

// Serve reads requests from conn until Close is called, then returns nil.
func (s *Server) Serve(conn net.PacketConn) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.conns[conn] = struct{}{}
	s.mu.Unlock()
	buf := make([]byte, 4096)
	for {
		_, _, err := conn.ReadFrom(buf)
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			return err
		}
	}
}

// Close stops every Serve call and releases the conversations.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}
