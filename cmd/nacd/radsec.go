package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius"
)

// radsecConfig is the RadSec server configuration of cfg (after
// UseBootstrap), nil when RadSec is disabled. When a revocation anchor
// applies (nacd's own CA, or ca_files with crls) its VerifyPeer checks
// every NAS certificate against it; listenRadSec starts that check's CRL
// refresh (see radsecChecks).
func radsecConfig(cfg *config.Config) *radius.RadSecConfig {
	if !cfg.RadSec.Enabled {
		return nil
	}
	rc := &radius.RadSecConfig{
		Certificates:            []tls.Certificate{cfg.RadSecCertificate()},
		ClientCAs:               cfg.RadSec.ClientCAs,
		MinVersion:              cfg.RadSec.MinVersion,
		IdleTimeout:             cfg.RadSec.IdleTimeout,
		MaxConnections:          cfg.RadSec.MaxConnections,
		MaxConnectionsPerClient: cfg.RadSec.MaxConnectionsPerClient,
	}
	if anchor, ok := cfg.RadSecRevocation(); ok {
		rv := newRadSecRevocation(anchor, cfg)
		rc.VerifyPeer = rv.verifyPeer
		radsecChecks.Store(cfg, rv)
	}
	return rc
}

// radsecChecks holds the revocation check radsecConfig built for a
// configuration until listenRadSec (called by serve with the same
// *config.Config) takes it to start its CRL refresh for as long as the
// listener serves.
var radsecChecks sync.Map // *config.Config -> *radsecRevocation

// errNASRevoked: the NAS certificate (or a CA of its chain) is revoked.
var errNASRevoked = errors.New("NAS certificate revoked")

// radsecRevocation checks NAS certificates for revocation with a
// pki.TrustStore of one anchor: the RadSec CA bundle with its CRLs, or
// nacd's own CA with its live revocation set. Anything but policy.CertOK
// refuses: revoked, and (the anchor fails closed on stale data) a CRL that
// is stale, or missing where one is required.
type radsecRevocation struct {
	store *pki.TrustStore
	err   error // the anchor did not load: every certificate is refused, listenRadSec fails
}

func newRadSecRevocation(anchor pki.AnchorConfig, cfg *config.Config) *radsecRevocation {
	// serve's logger is not reachable from here; the same stream, level
	// and format.
	logger := newLogger(os.Stderr, cfg.Log.Level).Named("radsec")
	store, err := pki.NewTrustStore([]pki.AnchorConfig{anchor}, pki.WithLogger(logger))
	if err != nil {
		return &radsecRevocation{err: fmt.Errorf("radsec: revocation check of NAS certificates: %w", err)}
	}
	return &radsecRevocation{store: store}
}

// verifyPeer is radius.RadSecConfig.VerifyPeer: chain is the NAS's
// certificate, leaf first, then the intermediates it sent.
func (v *radsecRevocation) verifyPeer(chain []*x509.Certificate, now time.Time) error {
	if v.err != nil {
		return v.err
	}
	id := v.store.VerifyClient(chain, now)
	switch id.Status {
	case policy.CertOK:
		return nil
	case policy.CertRevoked:
		return fmt.Errorf("%w: serial %s (source %s)", errNASRevoked, id.Serial, id.Revocation.Source)
	case policy.CertRevocationStale:
		return fmt.Errorf("NAS certificate serial %s: revocation status unknown (CRL stale or missing): refused", id.Serial)
	default:
		return fmt.Errorf("NAS certificate serial %s: %s under the RadSec revocation anchor: refused", id.Serial, id.Status)
	}
}

// listenRadSec listens on listen.radsec and serves RadSec on rs until rs is
// closed; serve errors go to errc. It returns the bound address, "" when
// RadSec is disabled.
func listenRadSec(cfg *config.Config, rs *radius.Server, errc chan<- error) (string, error) {
	if !cfg.RadSec.Enabled {
		return "", nil
	}
	if err := cfg.CheckRadSec(); err != nil {
		return "", err
	}
	var rv *radsecRevocation
	if v, ok := radsecChecks.LoadAndDelete(cfg); ok {
		rv = v.(*radsecRevocation)
		if rv.err != nil {
			return "", rv.err
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen.RadSec)
	if err != nil {
		return "", fmt.Errorf("listen.radsec: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	if rv != nil {
		rv.store.Start(ctx) // CRL files and URLs refresh while RadSec serves
	}
	go func() {
		defer stop()
		if err := rs.ServeRadSec(ln); err != nil && !errors.Is(err, radius.ErrServerClosed) {
			errc <- fmt.Errorf("radsec: %w", err)
		}
	}()
	return ln.Addr().String(), nil
}
