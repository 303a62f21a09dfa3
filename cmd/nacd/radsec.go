package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius"
)

// radsecConfig is the RadSec server configuration of cfg (after
// UseBootstrap), nil when RadSec is disabled. rv, when not nil, checks
// every NAS certificate for revocation (VerifyPeer).
func radsecConfig(cfg *config.Config, rv *radsecRevocation) *radius.RadSecConfig {
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
	if rv != nil {
		rc.VerifyPeer = rv.verifyPeer
	}
	return rc
}

// startRadSecRevocation builds the revocation check of NAS certificates when
// one applies (nacd's own CA, or radsec.ca_files with crls; nil, nil
// otherwise) and refreshes its CRLs until ctx is done.
//
// Its CRL refreshes are logged but not exported as metrics: the device
// trust store already registers the nacd_pki_crl_* collectors on serve's
// registry, and a second TrustStore cannot register them again.
func startRadSecRevocation(ctx context.Context, cfg *config.Config, logger *zap.Logger) (*radsecRevocation, error) {
	anchor, ok := cfg.RadSecRevocation()
	if !ok {
		return nil, nil
	}
	rv, err := newRadSecRevocation(anchor, logger)
	if err != nil {
		return nil, err
	}
	rv.store.Start(ctx)
	return rv, nil
}

// errNASRevoked: the NAS certificate (or a CA of its chain) is revoked.
var errNASRevoked = errors.New("NAS certificate revoked")

// radsecRevocation checks NAS certificates for revocation with a
// pki.TrustStore of one anchor: the RadSec CA bundle with its CRLs, or
// nacd's own CA with its live revocation set. Anything but policy.CertOK
// refuses: revoked, and (the anchor fails closed on stale data) a CRL that
// is stale, or missing where one is required.
type radsecRevocation struct {
	store *pki.TrustStore
}

func newRadSecRevocation(anchor pki.AnchorConfig, logger *zap.Logger) (*radsecRevocation, error) {
	store, err := pki.NewTrustStore([]pki.AnchorConfig{anchor}, pki.WithLogger(logger.Named("radsec")))
	if err != nil {
		return nil, fmt.Errorf("radsec: revocation check of NAS certificates: %w", err)
	}
	return &radsecRevocation{store: store}, nil
}

// verifyPeer is radius.RadSecConfig.VerifyPeer: chain is the NAS's
// certificate, leaf first, then the intermediates it sent.
func (v *radsecRevocation) verifyPeer(chain []*x509.Certificate, now time.Time) error {
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
	ln, err := net.Listen("tcp", cfg.Listen.RadSec)
	if err != nil {
		return "", fmt.Errorf("listen.radsec: %w", err)
	}
	go func() {
		if err := rs.ServeRadSec(ln); err != nil && !errors.Is(err, radius.ErrServerClosed) {
			errc <- fmt.Errorf("radsec: %w", err)
		}
	}()
	return ln.Addr().String(), nil
}
