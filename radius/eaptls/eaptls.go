// Package eaptls owns the server side of EAP-TLS (RFC 5216, and RFC 9190 for
// TLS 1.3): it drives Go's crypto/tls over an in-memory transport, fragments
// and reassembles EAP-TLS messages, and derives the MSK/EMSK.
//
// eaptls never decides who gets in: it hands the verified-by-possession peer
// certificate chain to an Authorize callback before the server's final
// flight, so that no success indication is ever followed by a failure.
//
// This file is the API contract; session.go implements the server side and
// peer.go a peer (supplicant) for tests and load generation.
//
// Authorization timing. crypto/tls calls tls.Config.VerifyConnection on the
// server BEFORE it checks the client's CertificateVerify (Go 1.26,
// handshake_server.go and handshake_server_tls13.go), so a callback there
// would judge a certificate whose key possession is not yet proven. eaptls
// therefore calls Authorize when tls.Conn.Handshake has returned (the
// CertificateVerify and the client Finished are verified) and holds back
// what crypto/tls produced after the client's last flight: in TLS 1.2 the
// server's ChangeCipherSpec+Finished, in TLS 1.3 the protected success
// indication (0x00) is only written after Authorize accepted. On refusal
// eaptls discards the held bytes and sends a TLS alert of its own (in the
// clear for TLS 1.2, whose server write side is still unprotected; under the
// server application traffic secret for TLS 1.3), waits for the peer's ACK
// (RFC 5216 section 2.1.3) and then sends EAP-Failure.
//
// Resumption is disabled (no session tickets, no session cache): a resumed
// session would skip the client certificate, and nacd must re-check
// revocation and policy on every authentication.
package eaptls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
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
	// MinVersion/MaxVersion default to TLS 1.2 / TLS 1.3; values outside
	// that range are clamped into it (Validate reports them).
	MinVersion, MaxVersion uint16
	// FragmentSize is the most TLS data put in one EAP-TLS message
	// (default DefaultFragmentSize).
	FragmentSize int
	// MaxMessageSize caps the TLS Message Length a peer may announce and the
	// bytes reassembled (default DefaultMaxMessageSize).
	MaxMessageSize int
	// CurvePreferences is the set of key exchanges the server accepts
	// (nil: Go's default, which includes the hybrid post-quantum
	// X25519MLKEM768, SecP256r1MLKEM768 and SecP384r1MLKEM1024). Go
	// ignores the order and always picks a hybrid ML-KEM group when both
	// sides allow one; leaving the hybrids out trades post-quantum
	// protection of the session keys (harvest now, decrypt later) for
	// about 100 us of server CPU per TLS 1.3 authentication (see
	// docs/performance.md). ParseCurvePreferences reads the names.
	CurvePreferences []tls.CurveID
}

// Authorize is called once per session, during the handshake, after the peer
// proved possession of its certificate's key and before the server's final
// flight. cs.PeerCertificates holds the chain the peer sent; crypto/tls has
// NOT verified it against any root: the callback must. A non-nil error
// aborts the handshake with a TLS alert and the session ends in EAP-Failure;
// Handle returns an error that wraps it (and ErrRejected, and an
// *AlertError naming the alert sent). The alert is access_denied unless the
// error wraps a tls.AlertError (see AlertCertificateRevoked and friends).
// It runs on the goroutine that called Handle, with the complete connection
// state (cs.HandshakeComplete is true). After a refusal the EAP-Failure
// follows the peer's ACK of the alert, one round trip later (Session.Err
// reports the error meanwhile).
type Authorize func(cs tls.ConnectionState) error

// Result is what a successful session yields.
type Result struct {
	MSK              []byte // 64 bytes
	EMSK             []byte // 64 bytes
	SessionID        []byte // 0x0D || client.random || server.random (TLS 1.2) or Method-Id based (TLS 1.3)
	Version          uint16 // tls.VersionTLS12 or tls.VersionTLS13
	CipherSuite      uint16
	CurveID          tls.CurveID // key exchange negotiated (e.g. tls.X25519MLKEM768)
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
	// ErrRejected wraps every Authorize refusal.
	ErrRejected = errors.New("eaptls: authorization refused")
)

// AlertError names a TLS alert that ended a session: one the peer sent
// (Sent false) or one eaptls sent (Sent true). Handle's errors wrap it when
// the alert is known, so the RADIUS layer can log "TLS alert X".
type AlertError struct {
	Alert tls.AlertError
	Sent  bool
}

func (e *AlertError) Error() string {
	if e.Sent {
		return "TLS alert sent: " + e.Alert.Error()
	}
	return "TLS alert received: " + e.Alert.Error()
}

// Name is the alert's name without the "tls: " prefix, e.g. "access denied".
func (e *AlertError) Name() string { return strings.TrimPrefix(e.Alert.Error(), "tls: ") }
