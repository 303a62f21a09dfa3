package eaptls

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/herts-council/nacd/radius/eap"
)

// PeerConfig configures a Peer.
type PeerConfig struct {
	// TLS is the client configuration: Certificates (the device
	// certificate and key), RootCAs and ServerName to verify the server,
	// Min/MaxVersion. It is cloned; its KeyLogWriter is replaced (the peer
	// needs the TLS 1.2 master secret to derive the MSK itself).
	TLS *tls.Config
	// FragmentSize is the most TLS data per EAP-TLS response (default
	// DefaultFragmentSize).
	FragmentSize int
	// Identity answers EAP-Request/Identity.
	Identity string
}

// Peer is an EAP-TLS peer (supplicant) driving crypto/tls's client over the
// same framing as Session. It exists for tests, the load generator and
// interop checks; it derives MSK/EMSK on its own side, independently of the
// server. Its methods must not be called concurrently.
type Peer struct {
	tlsCfg   *tls.Config
	identity string

	pipe  *pipe
	conn  *tls.Conn
	kl    keyLog
	hello helloScanner
	rx    reassembler
	tx    fragmenter

	// Written by the TLS goroutine, read after the pipe hands control back.
	hsErr         error
	tlsDone       bool
	gotIndication bool

	lastReq  *eap.Packet // for retransmissions
	lastResp *eap.Packet
	err      error // the TLS failure seen, reported with the EAP-Failure
	result   *Result
	closed   bool
}

// NewPeer returns a peer ready for an EAP-Request/Identity or an EAP-TLS
// Start.
func NewPeer(cfg PeerConfig) *Peer {
	p := &Peer{identity: cfg.Identity}
	if cfg.TLS != nil {
		p.tlsCfg = cfg.TLS.Clone()
		p.tlsCfg.KeyLogWriter = &p.kl
		p.tlsCfg.Renegotiation = tls.RenegotiateNever
		p.tlsCfg.ClientSessionCache = nil
	}
	p.tx.size = DefaultFragmentSize
	if cfg.FragmentSize > 0 {
		p.tx.size = cfg.FragmentSize
	}
	p.rx.max = DefaultMaxMessageSize
	return p
}

// Handle answers one packet from the server: EAP-Request/Identity with the
// identity, EAP-TLS requests with TLS data or ACKs (fragmenting its own
// messages). On EAP-Success it returns a nil packet and a nil error, and
// Result has the peer's own keys; on EAP-Failure (or a premature
// EAP-Success) it returns an error, wrapping the TLS failure seen, if any.
// A retransmitted request gets the previous response again.
func (p *Peer) Handle(req *eap.Packet) (*eap.Packet, error) {
	if p.closed {
		return nil, ErrClosed
	}
	if req == nil {
		return nil, fmt.Errorf("%w: nil packet", ErrProtocol)
	}
	switch req.Code {
	case eap.CodeSuccess:
		return nil, p.success()
	case eap.CodeFailure:
		p.release()
		if p.err != nil {
			return nil, fmt.Errorf("eaptls: peer got EAP-Failure: %w", p.err)
		}
		return nil, errors.New("eaptls: peer got EAP-Failure")
	case eap.CodeRequest:
	default:
		return nil, fmt.Errorf("%w: EAP code %d sent to the peer", ErrProtocol, req.Code)
	}
	if p.lastReq != nil && req.Identifier == p.lastReq.Identifier && req.Type == p.lastReq.Type &&
		string(req.Data) == string(p.lastReq.Data) {
		return p.lastResp, nil
	}
	resp, err := p.answer(req)
	if err != nil {
		return nil, err
	}
	p.lastReq = &eap.Packet{Code: req.Code, Identifier: req.Identifier, Type: req.Type, Data: append([]byte(nil), req.Data...)}
	p.lastResp = resp
	return resp, nil
}

// GotSuccessIndication reports whether the TLS 1.3 protected success
// indication (application data 0x00) was received.
func (p *Peer) GotSuccessIndication() bool { return p.gotIndication }

// Result returns the peer's keys and the server's certificates after an
// EAP-Success (nil before).
func (p *Peer) Result() *Result { return p.result }

// Err returns the TLS failure the peer saw, if any.
func (p *Peer) Err() error { return p.err }

// Close releases the peer's TLS goroutine. Safe to call more than once.
func (p *Peer) Close() {
	p.release()
	p.closed = true
}

func (p *Peer) release() {
	if p.pipe != nil {
		p.pipe.close()
		p.pipe = nil
	}
	p.kl.wipe()
	p.rx.reset()
	p.tx.load(nil)
}

func (p *Peer) response(id uint8, typ eap.Type, data []byte) *eap.Packet {
	return &eap.Packet{Code: eap.CodeResponse, Identifier: id, Type: typ, Data: data}
}

func (p *Peer) answer(req *eap.Packet) (*eap.Packet, error) {
	switch req.Type {
	case eap.TypeIdentity:
		return p.response(req.Identifier, eap.TypeIdentity, []byte(p.identity)), nil
	case eap.TypeTLS:
	default:
		// A real supplicant would Nak; for a test peer it is a failure.
		return nil, fmt.Errorf("%w: peer got EAP type %d", ErrProtocol, req.Type)
	}
	f, err := parseFrame(req.Data)
	if err != nil {
		return nil, err
	}
	id := req.Identifier
	if f.start() {
		return p.start(id)
	}
	if p.pipe == nil {
		return nil, fmt.Errorf("%w: EAP-TLS request before Start", ErrProtocol)
	}
	if p.tx.pending() {
		if !f.isAck() {
			return nil, fmt.Errorf("%w: server sent data where a fragment ACK was expected", ErrProtocol)
		}
		return p.sendNext(id), nil
	}
	if f.isAck() && !p.rx.active {
		return nil, fmt.Errorf("%w: unexpected ACK from the server", ErrProtocol)
	}
	complete, err := p.rx.add(f)
	if err != nil {
		return nil, err
	}
	if !complete {
		return p.response(id, eap.TypeTLS, []byte{0}), nil
	}
	msg := p.rx.buf
	p.rx.buf = nil
	p.hello.feed(msg)
	p.pipe.exchange(msg, p.run)
	out := p.pipe.take()
	if p.hsErr != nil && p.err == nil {
		p.err = p.hsErr
		if a, ok := remoteAlert(p.hsErr); ok {
			p.err = fmt.Errorf("%w%.0w", p.hsErr, &AlertError{Alert: a})
		}
	}
	if len(out) == 0 {
		return p.response(id, eap.TypeTLS, []byte{0}), nil // ACK
	}
	p.tx.load(out)
	return p.sendNext(id), nil
}

func (p *Peer) start(id uint8) (*eap.Packet, error) {
	if p.tlsCfg == nil {
		return nil, errors.New("eaptls: peer has no TLS config")
	}
	p.release()
	p.hsErr, p.err, p.tlsDone, p.gotIndication, p.result = nil, nil, false, false, nil
	p.kl = keyLog{}
	p.hello = helloScanner{}
	p.pipe = newPipe()
	p.conn = tls.Client(p.pipe, p.tlsCfg)
	p.pipe.exchange(nil, p.run)
	out := p.pipe.take()
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no ClientHello: %v", ErrHandshake, p.hsErr)
	}
	p.tx.load(out)
	return p.sendNext(id), nil
}

func (p *Peer) sendNext(id uint8) *eap.Packet {
	data, _ := p.tx.next()
	return p.response(id, eap.TypeTLS, data)
}

// run is the TLS goroutine: the handshake, then (TLS 1.3) the success
// indication.
func (p *Peer) run() {
	err := p.conn.Handshake()
	if err == nil {
		p.tlsDone = true
		if p.conn.ConnectionState().Version == tls.VersionTLS13 {
			var b [1]byte
			n, rerr := p.conn.Read(b[:])
			switch {
			case rerr != nil:
				err = rerr
			case n != 1 || b[0] != 0:
				err = fmt.Errorf("%w: bad TLS 1.3 success indication", ErrProtocol)
			default:
				p.gotIndication = true
			}
		}
	}
	p.hsErr = err
}

func (p *Peer) success() error {
	if p.err != nil {
		return fmt.Errorf("eaptls: peer got EAP-Success after a TLS failure: %w", p.err)
	}
	if p.result != nil {
		return nil
	}
	if p.pipe == nil || !p.tlsDone {
		return fmt.Errorf("%w: EAP-Success before the TLS handshake finished", ErrProtocol)
	}
	cs := p.conn.ConnectionState()
	if cs.Version == tls.VersionTLS13 && !p.gotIndication {
		return fmt.Errorf("%w: EAP-Success without the TLS 1.3 success indication", ErrProtocol)
	}
	k, err := deriveKeys(&cs, &p.kl, p.hello.random)
	if err != nil {
		return fmt.Errorf("eaptls: peer key derivation: %w", err)
	}
	p.result = &Result{
		MSK: k.msk, EMSK: k.emsk, SessionID: k.sessionID,
		Version: cs.Version, CipherSuite: cs.CipherSuite, PeerCertificates: cs.PeerCertificates,
	}
	p.release()
	return nil
}
