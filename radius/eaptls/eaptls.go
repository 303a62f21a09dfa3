// Package eaptls owns the server side of EAP-TLS (RFC 5216, and RFC 9190 for
// TLS 1.3): it drives Go's crypto/tls over an in-memory transport, fragments
// and reassembles EAP-TLS messages, and derives the MSK/EMSK.
//
// eaptls never decides who gets in: it hands the verified-by-possession peer
// certificate chain to an Authorize callback before the server's final
// flight, so that no success indication is ever followed by a failure.
//
// THIS FILE IS THE API CONTRACT. The implementation replaces the bodies.
package eaptls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/herts-council/nacd/radius/eap"
)

// Defaults.
const (
	DefaultFragmentSize   = 1020      // TLS bytes per EAP-TLS fragment
	DefaultMaxMessageSize = 64 * 1024 // cap on a reassembled TLS message
)

// Config is shared by all sessions; it must not be modified after the first
// NewSession.
type Config struct {
	// Certificates is the server certificate chain (leaf + intermediates,
	// no root) and key.
	Certificates []tls.Certificate
	// MinVersion/MaxVersion default to TLS 1.2 / TLS 1.3.
	MinVersion, MaxVersion uint16
	// FragmentSize is the most TLS data put in one EAP-TLS message
	// (default DefaultFragmentSize).
	FragmentSize int
	// MaxMessageSize caps the TLS Message Length a peer may announce and the
	// bytes reassembled (default DefaultMaxMessageSize).
	MaxMessageSize int
}

// Authorize is called once per session, during the handshake, after the peer
// proved possession of its certificate's key and before the server's final
// flight. cs.PeerCertificates holds the chain the peer sent; crypto/tls has
// NOT verified it against any root: the callback must. A non-nil error
// aborts the handshake with a TLS alert and the session ends in EAP-Failure;
// Handle returns an error that wraps it.
type Authorize func(cs tls.ConnectionState) error

// Result is what a successful session yields.
type Result struct {
	MSK              []byte // 64 bytes
	EMSK             []byte // 64 bytes
	SessionID        []byte // 0x0D || client.random || server.random (TLS 1.2) or Method-Id based (TLS 1.3)
	Version          uint16 // tls.VersionTLS12 or tls.VersionTLS13
	CipherSuite      uint16
	PeerCertificates []*x509.Certificate
}

// Errors the RADIUS layer branches on (wrapped with detail).
var (
	ErrIdentifierMismatch = errors.New("eaptls: response identifier does not match the request")
	ErrTooLarge           = errors.New("eaptls: message exceeds the maximum size")
	ErrProtocol           = errors.New("eaptls: protocol violation")
	ErrNak                = errors.New("eaptls: peer refused EAP-TLS")
	ErrHandshake          = errors.New("eaptls: TLS handshake failed")
	ErrClosed             = errors.New("eaptls: session closed")
)

// Session is one EAP-TLS conversation. Its methods must not be called
// concurrently (the RADIUS layer serialises them per conversation).
type Session struct{}

// NewSession starts a session; authorize must not be nil.
func NewSession(cfg *Config, authorize Authorize) *Session { return &Session{} }

// Start returns the EAP-Request/EAP-TLS Start (S flag) with identifier id.
func (s *Session) Start(id uint8) *eap.Packet { return nil }

// Handle processes one EAP-Response (Type TLS or Nak) and returns the next
// packet to send: an EAP-Request (more TLS data or a fragment ACK), an
// EAP-Success, or an EAP-Failure. On ErrIdentifierMismatch it returns a nil
// packet: the response must be silently discarded. On every other error it
// returns an EAP-Failure and an error saying why.
func (s *Session) Handle(resp *eap.Packet) (*eap.Packet, error) { return nil, ErrClosed }

// Result returns the keys and peer information; valid only after Handle
// returned an EAP-Success.
func (s *Session) Result() *Result { return nil }

// Close releases the session (its handshake goroutine, buffers). Safe to call
// more than once.
func (s *Session) Close() {}
