package eaptls

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"reflect"
	"runtime"

	"github.com/herts-council/nacd/radius/eap"
)

// maxRestarts bounds how often a peer may answer the Start with a Nak that
// asks for EAP-TLS again.
const maxRestarts = 3

type state uint8

const (
	stNew      state = iota // NewSession, Start not called
	stStarted               // Start sent, expecting the ClientHello (or a Nak)
	stRecv                  // expecting the peer's TLS data: a message or its next fragment
	stSendFrag              // sent a non-final fragment, expecting an ACK
	stFinal                 // sent the final flight / success indication, expecting an ACK
	stAlert                 // sent a TLS alert, expecting any response, then Failure
	stSuccess
	stFailure
	stClosed
)

// settings are the Config values with defaults applied.
type settings struct {
	certs              []tls.Certificate
	minVer, maxVer     uint16
	fragSize, maxBytes int
	curves             []tls.CurveID
}

func (c *Config) settings() settings {
	s := settings{
		minVer: tls.VersionTLS12, maxVer: tls.VersionTLS13,
		fragSize: DefaultFragmentSize, maxBytes: DefaultMaxMessageSize,
	}
	if c == nil {
		return s
	}
	s.certs = c.Certificates
	// Only TLS 1.2 and 1.3 have EAP-TLS key derivations implemented here;
	// anything outside that range is clamped into it (fail closed).
	if c.MinVersion > s.minVer && c.MinVersion <= tls.VersionTLS13 {
		s.minVer = c.MinVersion
	}
	if c.MaxVersion >= tls.VersionTLS12 && c.MaxVersion < s.maxVer {
		s.maxVer = c.MaxVersion
	}
	if s.maxVer < s.minVer {
		s.maxVer = s.minVer
	}
	if c.FragmentSize > 0 {
		s.fragSize = min(max(c.FragmentSize, minFragment), eap.MaxLen-eap.HeaderLen-1-5)
	}
	if c.MaxMessageSize > 0 {
		s.maxBytes = c.MaxMessageSize
	}
	s.curves = c.CurvePreferences
	return s
}

// Validate reports configuration mistakes NewSession would only reveal as
// failed handshakes.
func (c *Config) Validate() error {
	if c == nil || len(c.Certificates) == 0 {
		return errors.New("eaptls: no server certificate")
	}
	if c.MinVersion != 0 && (c.MinVersion < tls.VersionTLS12 || c.MinVersion > tls.VersionTLS13) {
		return fmt.Errorf("eaptls: MinVersion %s not supported (TLS 1.2 or 1.3)", tlsVersionName(c.MinVersion))
	}
	if c.MaxVersion != 0 && (c.MaxVersion < tls.VersionTLS12 || c.MaxVersion > tls.VersionTLS13) {
		return fmt.Errorf("eaptls: MaxVersion %s not supported (TLS 1.2 or 1.3)", tlsVersionName(c.MaxVersion))
	}
	if c.MinVersion != 0 && c.MaxVersion != 0 && c.MinVersion > c.MaxVersion {
		return errors.New("eaptls: MinVersion above MaxVersion")
	}
	if c.FragmentSize != 0 && (c.FragmentSize < minFragment || c.FragmentSize > 4000) {
		return fmt.Errorf("eaptls: FragmentSize %d outside [%d, 4000]", c.FragmentSize, minFragment)
	}
	if c.MaxMessageSize < 0 {
		return errors.New("eaptls: negative MaxMessageSize")
	}
	if len(c.CurvePreferences) > 0 {
		tls12 := false
		for _, id := range c.CurvePreferences {
			if _, ok := curveName(id); !ok {
				return fmt.Errorf("eaptls: CurvePreferences: unsupported key exchange %d", uint16(id))
			}
			tls12 = tls12 || !tls13Only(id)
		}
		if !tls12 && c.settings().minVer < tls.VersionTLS13 {
			return errors.New("eaptls: CurvePreferences has only TLS 1.3 hybrid key exchanges but TLS 1.2 is allowed (add x25519 or p256, or MinVersion TLS 1.3)")
		}
	}
	return nil
}

// Session is one EAP-TLS conversation. Its methods must not be called
// concurrently (the RADIUS layer serialises them per conversation).
type Session struct {
	set       settings
	authorize Authorize

	state    state
	lastID   uint8 // Identifier of the last request sent
	restarts int

	// TLS, created on the first TLS data from the peer. The handshake
	// goroutine reaches pipe, conn, hs and kl but never the Session, so an
	// abandoned Session can be collected and its cleanup releases the
	// goroutine.
	pipe    *pipe
	conn    *tls.Conn
	hs      *hsResult
	run     func()
	kl      *keyLog
	cleanup runtime.Cleanup
	hello   helloScanner

	rx    reassembler
	tx    fragmenter
	after state // state once tx is drained

	err    error
	result *Result
}

// NewSession starts a session; authorize must not be nil (a nil authorize
// refuses every peer).
func NewSession(cfg *Config, authorize Authorize) *Session {
	s := &Session{set: cfg.settings(), authorize: authorize}
	s.rx.max = s.set.maxBytes
	s.tx.size = s.set.fragSize
	return s
}

// Start returns the EAP-Request/EAP-TLS Start (S flag) with identifier id.
// Calling it again restarts the conversation. On a closed session it still
// returns the packet, but Handle keeps failing with ErrClosed.
func (s *Session) Start(id uint8) *eap.Packet {
	if s.state != stClosed {
		s.release()
		s.state = stStarted
		s.result, s.err = nil, nil
	}
	s.lastID = id
	return &eap.Packet{Code: eap.CodeRequest, Identifier: id, Type: eap.TypeTLS, Data: []byte{flagStart}}
}

// Handle processes one EAP-Response (Type TLS or Nak) and returns the next
// packet to send: an EAP-Request (more TLS data or a fragment ACK), an
// EAP-Success, or an EAP-Failure. On ErrIdentifierMismatch it returns a nil
// packet: the response must be silently discarded. On every other error it
// returns an EAP-Failure and an error saying why.
//
// After a TLS alert was sent (a refused or failed handshake), Handle returns
// the EAP-Request carrying it and a nil error; the peer's next response gets
// the EAP-Failure and the error (Err reports it in between).
func (s *Session) Handle(resp *eap.Packet) (*eap.Packet, error) {
	switch s.state {
	case stClosed:
		return eap.Failure(s.lastID), ErrClosed
	case stSuccess, stFailure:
		return eap.Failure(s.lastID), fmt.Errorf("%w: conversation already ended", ErrClosed)
	}
	if resp == nil {
		return s.fail(s.lastID, fmt.Errorf("%w: nil response", ErrProtocol))
	}
	if s.state == stNew {
		return s.fail(resp.Identifier, fmt.Errorf("%w: response before Start", ErrProtocol))
	}
	if resp.Identifier != s.lastID {
		return nil, fmt.Errorf("%w: got %d, want %d", ErrIdentifierMismatch, resp.Identifier, s.lastID)
	}
	id := resp.Identifier
	if resp.Code != eap.CodeResponse {
		return s.fail(id, fmt.Errorf("%w: EAP code %d where a response was expected", ErrProtocol, resp.Code))
	}
	if s.state == stAlert {
		return s.fail(id, s.err)
	}
	switch resp.Type {
	case eap.TypeTLS:
	case eap.TypeNak:
		return s.nak(resp)
	case eap.TypeExpanded:
		return s.fail(id, fmt.Errorf("%w: expanded-type response (expanded Nak or other method)", ErrNak))
	default:
		return s.fail(id, fmt.Errorf("%w: EAP type %d where EAP-TLS was expected", ErrProtocol, resp.Type))
	}
	f, err := parseFrame(resp.Data)
	if err != nil {
		return s.fail(id, err)
	}
	switch s.state {
	case stSendFrag:
		if !f.isAck() {
			return s.fail(id, fmt.Errorf("%w: TLS data where a fragment ACK was expected", ErrProtocol))
		}
		return s.sendNext(id), nil
	case stFinal:
		if !f.isAck() {
			return s.fail(id, fmt.Errorf("%w: TLS data where the final ACK was expected", ErrProtocol))
		}
		s.release()
		s.state = stSuccess
		return eap.Success(id), nil
	}
	// stStarted or stRecv: the peer's TLS data.
	if f.isAck() && !s.rx.active {
		return s.fail(id, fmt.Errorf("%w: empty response where TLS data was expected", ErrProtocol))
	}
	complete, err := s.rx.add(f)
	if err != nil {
		return s.fail(id, err)
	}
	if !complete {
		s.state = stRecv
		return s.request(id, []byte{0}), nil // fragment ACK
	}
	msg := s.rx.buf
	s.rx.buf = nil
	return s.feed(id, msg)
}

// Result returns the keys and peer information; valid only after Handle
// returned an EAP-Success (nil otherwise).
func (s *Session) Result() *Result {
	if s.state != stSuccess {
		return nil
	}
	return s.result
}

// Err returns the error that ends or ended the conversation, if known: set
// as soon as a TLS alert is sent, before the EAP-Failure, so a conversation
// that times out waiting for the peer's last response can still be logged
// with its reason.
func (s *Session) Err() error { return s.err }

// Close releases the session (its handshake goroutine, buffers). Safe to call
// more than once. A session dropped without Close is released when the
// garbage collector finds it unreachable, but call Close.
func (s *Session) Close() {
	s.release()
	s.state = stClosed
	s.result = nil
}

func (s *Session) release() {
	if s.pipe != nil {
		s.cleanup.Stop()
		s.pipe.close()
		s.pipe = nil
	}
	s.conn, s.hs, s.run = nil, nil, nil
	if s.kl != nil {
		s.kl.wipe()
		s.kl = nil
	}
	s.hello = helloScanner{}
	s.rx.reset()
	s.tx.load(nil)
}

func (s *Session) fail(id uint8, err error) (*eap.Packet, error) {
	s.release()
	s.state = stFailure
	s.err = err
	return eap.Failure(id), err
}

// request builds the next EAP-Request (Identifier = response's + 1).
func (s *Session) request(id uint8, typeData []byte) *eap.Packet {
	s.lastID = id + 1
	return &eap.Packet{Code: eap.CodeRequest, Identifier: s.lastID, Type: eap.TypeTLS, Data: typeData}
}

func (s *Session) send(id uint8, msg []byte, after state) (*eap.Packet, error) {
	s.tx.load(msg)
	s.after = after
	return s.sendNext(id), nil
}

func (s *Session) sendNext(id uint8) *eap.Packet {
	data, more := s.tx.next()
	if more {
		s.state = stSendFrag
	} else {
		s.state = s.after
	}
	return s.request(id, data)
}

func (s *Session) nak(resp *eap.Packet) (*eap.Packet, error) {
	id := resp.Identifier
	if s.state != stStarted {
		return s.fail(id, fmt.Errorf("%w: Nak in the middle of the EAP-TLS conversation", ErrNak))
	}
	if bytes.IndexByte(resp.Data, byte(eap.TypeTLS)) < 0 {
		return s.fail(id, fmt.Errorf("%w: Nak, desired types %v", ErrNak, resp.Data))
	}
	s.restarts++
	if s.restarts > maxRestarts {
		return s.fail(id, fmt.Errorf("%w: more than %d Naks asking for EAP-TLS", ErrProtocol, maxRestarts))
	}
	return s.Start(id + 1), nil
}

// feed hands one complete TLS message to crypto/tls and answers with what
// it produced.
func (s *Session) feed(id uint8, msg []byte) (*eap.Packet, error) {
	if s.pipe == nil {
		s.kl = &keyLog{}
		s.pipe = newPipe()
		s.conn = tls.Server(s.pipe, &tls.Config{
			Certificates: s.set.certs,
			// Chain verification is Authorize's job (trust anchors,
			// revocation); crypto/tls still checks possession of the key.
			ClientAuth: tls.RequireAnyClientCert,
			// No resumption: revocation and policy must be rechecked on
			// every authentication, and a resumed session has no client
			// certificate to check. (Go servers never renegotiate.)
			SessionTicketsDisabled: true,
			MinVersion:             s.set.minVer,
			MaxVersion:             s.set.maxVer,
			CurvePreferences:       s.set.curves,
			KeyLogWriter:           s.kl,
		})
		conn, hs := s.conn, &hsResult{}
		s.hs = hs
		s.run = func() { hs.err = conn.Handshake() }
		s.cleanup = runtime.AddCleanup(s, (*pipe).abandon, s.pipe)
	}
	finished := s.pipe.exchange(msg, s.run)
	out := s.pipe.take()
	if !finished {
		if len(out) == 0 {
			// Every peer message must complete a flight; refusing the rest
			// bounds the number of round trips.
			return s.fail(id, fmt.Errorf("%w: TLS message that completes no handshake flight", ErrProtocol))
		}
		s.hello.feed(out)
		return s.send(id, out, stRecv)
	}
	if s.hs.err != nil {
		return s.handshakeFailed(id, out)
	}
	if n := s.pipe.leftover(); n > 0 {
		return s.fail(id, fmt.Errorf("%w: %d bytes of TLS data after the peer's Finished", ErrProtocol, n))
	}
	s.hello.feed(out)
	cs := s.conn.ConnectionState()
	k, err := deriveKeys(&cs, s.kl, s.hello.random)
	if err != nil {
		return s.fail(id, fmt.Errorf("%w: key derivation: %w", ErrHandshake, err))
	}
	if s.authorize == nil {
		return s.refuse(id, &cs, out, errors.New("eaptls: no Authorize callback"))
	}
	if err := s.authorize(cs); err != nil {
		return s.refuse(id, &cs, out, err)
	}
	if cs.Version == tls.VersionTLS13 {
		// RFC 9190 section 2.1.1: the protected success indication, written
		// only now that the authorization decision is made.
		if _, err := s.conn.Write([]byte{0}); err != nil {
			return s.fail(id, fmt.Errorf("%w: writing the success indication: %w", ErrHandshake, err))
		}
		out = append(out, s.pipe.take()...)
	}
	if len(out) == 0 {
		return s.fail(id, fmt.Errorf("%w: nothing to send after the handshake", ErrHandshake))
	}
	s.result = &Result{
		MSK: k.msk, EMSK: k.emsk, SessionID: k.sessionID,
		Version: cs.Version, CipherSuite: cs.CipherSuite, CurveID: cs.CurveID, PeerCertificates: cs.PeerCertificates,
	}
	s.kl.wipe()
	return s.send(id, out, stFinal)
}

// hsResult is the handshake goroutine's result, read after it exited.
type hsResult struct{ err error }

// refuse ends an authorized-by-possession but refused handshake: the held
// final bytes are dropped and a TLS alert is sent instead.
func (s *Session) refuse(id uint8, cs *tls.ConnectionState, held []byte, authErr error) (*eap.Packet, error) {
	alert := AlertAccessDenied
	if a, ok := errors.AsType[tls.AlertError](authErr); ok {
		alert = a
	}
	var rec []byte
	switch cs.Version {
	case tls.VersionTLS12:
		// The server's ChangeCipherSpec is in held and never sent: the
		// server write side is still unprotected for the peer.
		rec = plainAlert(alert)
	case tls.VersionTLS13:
		// The alert is the first record under the server application
		// traffic secret, as long as crypto/tls wrote nothing after its
		// Finished (true without session tickets).
		if len(held) == 0 {
			if p, err := newTLS13Protection(cs.CipherSuite, s.kl.serverTraffic); err == nil {
				rec = p.sealAlert(alert)
			}
		}
	}
	s.kl.wipe()
	if rec == nil {
		return s.fail(id, fmt.Errorf("%w: %w", ErrRejected, authErr))
	}
	s.err = fmt.Errorf("%w: %w: %w", ErrRejected, authErr, &AlertError{Alert: alert, Sent: true})
	return s.send(id, rec, stAlert)
}

// handshakeFailed reports a handshake error: the alert crypto/tls wrote, if
// any, is delivered first (RFC 5216 section 2.1.3).
func (s *Session) handshakeFailed(id uint8, out []byte) (*eap.Packet, error) {
	hsErr := s.hs.err
	err := fmt.Errorf("%w: %w", ErrHandshake, hsErr)
	if a, ok := remoteAlert(hsErr); ok {
		err = fmt.Errorf("%w: %w%.0w", ErrHandshake, hsErr, &AlertError{Alert: a})
	}
	if len(out) == 0 {
		return s.fail(id, err)
	}
	a, ok := parsePlainAlert(out)
	if !ok && s.kl.serverTraffic != nil {
		if p, perr := newTLS13Protection(s.conn.ConnectionState().CipherSuite, s.kl.serverTraffic); perr == nil {
			a, ok = p.openAlert(out)
		}
	}
	if ok {
		err = fmt.Errorf("%w: %w: %w", ErrHandshake, hsErr, &AlertError{Alert: a, Sent: true})
	}
	s.kl.wipe()
	s.err = err
	return s.send(id, out, stAlert)
}

// remoteAlert extracts the alert from crypto/tls's "remote error" (a
// *net.OpError wrapping its unexported alert type, a uint8).
func remoteAlert(err error) (tls.AlertError, bool) {
	op, ok := errors.AsType[*net.OpError](err)
	if !ok || op.Op != "remote error" || op.Err == nil {
		return 0, false
	}
	if a, ok := op.Err.(tls.AlertError); ok {
		return a, true
	}
	v := reflect.ValueOf(op.Err)
	if v.Kind() != reflect.Uint8 {
		return 0, false
	}
	return tls.AlertError(v.Uint()), true
}
