package radius

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/herts-council/nacd/policy"
)

// Reload is the part of a Server's configuration that can change while it
// runs: the NAS clients, the policy, and the RadSec certificate and CA
// bundle. Listener addresses, limits and the EAP-TLS engine settings need a
// restart.
type Reload struct {
	Clients []Client
	Policy  *policy.Policy
	// RadSec, when set, replaces the RadSec server certificate and CA
	// bundle (its limits and timeouts are ignored: they need a restart).
	// nil keeps the current ones.
	RadSec *RadSecConfig
}

// PreparedReload is a validated Reload, ready to be applied by Commit. It
// lets a caller validate everything (this and other subsystems, such as the
// trust store) before anything changes.
type PreparedReload struct {
	s         *Server
	clients   *clientTable
	policy    *policy.Policy
	radsecTLS *tls.Config // nil: keep
}

// Prepare validates r without applying it.
func (s *Server) Prepare(r Reload) (*PreparedReload, error) {
	if r.Policy == nil {
		return nil, errors.New("radius: reload: nil policy")
	}
	if err := r.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("radius: reload: policy: %w", err)
	}
	t, err := newClientTable(r.Clients)
	if err != nil {
		return nil, fmt.Errorf("radius: reload: clients: %w", err)
	}
	p := &PreparedReload{s: s, clients: t, policy: r.Policy}
	if r.RadSec != nil {
		if s.snap.Load().radsecTLS == nil {
			return nil, errors.New("radius: reload: RadSec was not configured at start (a restart is needed)")
		}
		if p.radsecTLS, err = r.RadSec.tlsConfig(); err != nil {
			return nil, fmt.Errorf("radius: reload: %w", err)
		}
	}
	return p, nil
}

// Commit swaps the prepared configuration in, all of it at once: a request
// sees either the old clients, policy and RadSec TLS or the new ones. EAP
// conversations in progress keep their EAP-TLS session and the client that
// started them; their decision, made when the handshake completes, uses the
// policy current at that moment. Open RadSec connections stay up while
// their client and certificate identity remain configured.
func (p *PreparedReload) Commit() {
	for {
		old := p.s.snap.Load()
		next := &snapshot{clients: p.clients, policy: p.policy, radsecTLS: old.radsecTLS}
		if p.radsecTLS != nil {
			next.radsecTLS = p.radsecTLS
		}
		if p.s.snap.CompareAndSwap(old, next) {
			return
		}
	}
}

// Reload validates r and applies it atomically (Prepare then Commit). On
// error nothing changes.
func (s *Server) Reload(r Reload) error {
	p, err := s.Prepare(r)
	if err != nil {
		return err
	}
	p.Commit()
	return nil
}
