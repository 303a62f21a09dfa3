package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/herts-council/nacd/internal/config"
	"github.com/herts-council/nacd/radius"
)

// radsecConfig is the RadSec server configuration of cfg (after
// UseBootstrap), nil when RadSec is disabled.
func radsecConfig(cfg *config.Config) *radius.RadSecConfig {
	if !cfg.RadSec.Enabled {
		return nil
	}
	return &radius.RadSecConfig{
		Certificates:            []tls.Certificate{cfg.RadSecCertificate()},
		ClientCAs:               cfg.RadSec.ClientCAs,
		MinVersion:              cfg.RadSec.MinVersion,
		IdleTimeout:             cfg.RadSec.IdleTimeout,
		MaxConnections:          cfg.RadSec.MaxConnections,
		MaxConnectionsPerClient: cfg.RadSec.MaxConnectionsPerClient,
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
