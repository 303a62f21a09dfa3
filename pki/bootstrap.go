package pki

import (
	"crypto/x509"
	"errors"
	"time"
)

// BootstrapPaths are the files of one demo device.
type DevicePaths struct {
	Cert, Key string
}

// BootstrapResult describes the bootstrap PKI in a data dir.
type BootstrapResult struct {
	CACert     string
	CAKey      string
	ServerCert string
	ServerKey  string
	CRL        string
	Demo       map[string]DevicePaths

	CA        *x509.Certificate
	Server    *x509.Certificate
	DemoCerts map[string]*x509.Certificate
}

// Bootstrap creates (or loads) the throwaway local CA under dir/pki.
func Bootstrap(dir string, now time.Time) (*BootstrapResult, error) {
	return nil, errors.New("pki: bootstrap not implemented yet")
}
