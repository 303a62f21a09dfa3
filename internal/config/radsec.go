package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/herts-council/nacd/pki"
	"github.com/herts-council/nacd/policy"
)

// RadSec defaults (configs/nacd.example.yaml documents each).
const (
	DefaultRadSecListen                  = "127.0.0.1:2083"
	DefaultRadSecIdleTimeout             = 120 * time.Second
	DefaultRadSecMaxConnections          = 256
	DefaultRadSecMaxConnectionsPerClient = 16
)

// RadSec is RADIUS over TLS (RFC 6614) for the Wi-Fi controllers.
type RadSec struct {
	Enabled bool
	// CAFiles are the PEM bundles a NAS certificate must chain to. Empty:
	// nacd's own CA (the bootstrap CA, filled in by UseBootstrap).
	CAFiles   []string
	ClientCAs *x509.CertPool
	// CertFile and KeyFile are empty when the EAP-TLS server certificate
	// (TLS.Certificate) is to be presented; Certificate is then empty too.
	CertFile, KeyFile       string
	Certificate             tls.Certificate
	MinVersion              uint16
	IdleTimeout             time.Duration
	MaxConnections          int
	MaxConnectionsPerClient int
	// CRLs (radsec.crls) are the CRL sources for NAS certificates under
	// custom CAFiles; RequireCRL (radsec.require_crl, default true with
	// CRLs) makes a certificate no CRL covers count as unknown (refused).
	CRLs       []string
	RequireCRL bool
	// Revocation is the trust anchor NAS certificates are checked against
	// for revocation, at the handshake and before every request (see
	// RadSecRevocation); zero (no CAFiles) when revocation is not checked:
	// custom ca_files without crls. Set by Load for custom ca_files with
	// crls and by UseBootstrap for nacd's own CA (its live revocation set).
	Revocation pki.AnchorConfig
}

// RadSecAnchorName names the RadSec revocation anchor in logs and errors.
const RadSecAnchorName = "radsec"

// RadSecRevocation returns the trust anchor NAS certificates are checked
// against for revocation, and false when none applies (custom ca_files
// without crls: revocation is not checked).
func (c *Config) RadSecRevocation() (pki.AnchorConfig, bool) {
	a := c.RadSec.Revocation
	return a, c.RadSec.Enabled && len(a.CAFiles) > 0
}

// radsecAnchor is the revocation anchor of a RadSec CA bundle: fail closed
// on a stale or missing CRL (StaleFailClosed).
func radsecAnchor(a pki.AnchorConfig) pki.AnchorConfig {
	a.Name = RadSecAnchorName
	a.IL3 = false
	a.StaleFailClosed = true
	if a.CRLRefresh == 0 {
		a.CRLRefresh = DefaultCRLRefresh
	}
	return a
}

type rawRadSec struct {
	Enabled                 bool     `yaml:"enabled"`
	CAFiles                 []string `yaml:"ca_files"`
	Certificate             string   `yaml:"certificate"`
	Key                     string   `yaml:"key"`
	MinVersion              string   `yaml:"min_version"`
	IdleTimeout             string   `yaml:"idle_timeout"`
	MaxConnections          *int     `yaml:"max_connections"`
	MaxConnectionsPerClient *int     `yaml:"max_connections_per_client"`
	CRLs                    []string `yaml:"crls"`
	RequireCRL              *bool    `yaml:"require_crl"`
}

// BootstrapRadSecCA reports whether RadSec's CA bundle must come from the
// bootstrap PKI (nacd's own CA).
func (c *Config) BootstrapRadSecCA() bool { return c.RadSec.Enabled && len(c.RadSec.CAFiles) == 0 }

func (c *Config) useBootstrapRadSec(b *pki.BootstrapResult) error {
	if !c.BootstrapRadSecCA() {
		return nil
	}
	pool, err := loadCAPool([]string{b.CACert})
	if err != nil {
		return fmt.Errorf("config: radsec: bootstrap CA: %w", err)
	}
	c.RadSec.CAFiles, c.RadSec.ClientCAs = []string{b.CACert}, pool
	// nacd's own CA: the same revocation data as the bootstrap device
	// anchor (the CA's live revocation set, or its CRL).
	c.RadSec.Revocation = radsecAnchor(BootstrapAnchor(b))
	return nil
}

// RadSecCertificate is the certificate RadSec presents: radsec.certificate,
// else the EAP-TLS server certificate.
func (c *Config) RadSecCertificate() tls.Certificate {
	if c.RadSec.CertFile != "" {
		return c.RadSec.Certificate
	}
	return c.TLS.Certificate
}

// loadCAPool reads PEM bundles into a pool; each file must hold at least one
// certificate.
func loadCAPool(files []string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, unwrapPathError(err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("%s: no PEM certificate", f)
		}
	}
	return pool, nil
}

func buildRadSec(raw *rawConfig, cfg *Config, ps *problems) {
	rr := raw.RadSec
	r := RadSec{Enabled: rr.Enabled, CAFiles: rr.CAFiles, CertFile: rr.Certificate, KeyFile: rr.Key}

	// Per-client flags first: a client may not ask for RadSec while it is off.
	for i, rc := range raw.Clients {
		if i >= len(cfg.Clients) {
			break
		}
		path := fmt.Sprintf("clients[%d]", i)
		c := &cfg.Clients[i]
		c.RadSec = rc.RadSec
		for j, id := range rc.RadSecIdentities {
			if strings.TrimSpace(id) == "" || strings.TrimSpace(id) != id {
				ps.add(fmt.Sprintf("%s.radsec_identities[%d]", path, j), "%q must be a certificate name (DNS/URI/IP/e-mail SAN or subject CN) without surrounding spaces", id)
				continue
			}
			c.RadSecIdentities = append(c.RadSecIdentities, id)
		}
		switch {
		case rc.RadSec && !rr.Enabled:
			ps.add(path+".radsec", "is true but radsec.enabled is false: enable RadSec, or remove this")
		case rc.RadSec && len(rc.RadSecIdentities) == 0:
			ps.add(path+".radsec_identities", "required when radsec is true: the names (DNS/URI/IP/e-mail SAN or subject CN) the controller's certificate carries")
		case !rc.RadSec && len(rc.RadSecIdentities) > 0:
			ps.add(path+".radsec_identities", "set but radsec is false")
		}
	}

	if !rr.Enabled {
		if raw.Listen.RadSec != "" {
			ps.add("listen.radsec", "is set but radsec.enabled is false: enable RadSec, or remove this")
		}
	} else {
		cfg.Listen.RadSec = listenAddr(ps, "listen.radsec", raw.Listen.RadSec, DefaultRadSecListen)
	}
	for _, other := range []struct{ path, addr string }{{"listen.metrics", cfg.Listen.Metrics}} {
		if other.addr == cfg.Listen.RadSec && !strings.HasSuffix(other.addr, ":0") {
			ps.add("listen.radsec", "%q is also %s", cfg.Listen.RadSec, other.path)
		}
	}
	for j, f := range rr.CAFiles {
		if _, err := loadCAPool([]string{f}); err != nil {
			ps.add(fmt.Sprintf("radsec.ca_files[%d]", j), "cannot load: %v", err)
		}
	}
	if len(rr.CAFiles) > 0 {
		if pool, err := loadCAPool(rr.CAFiles); err == nil {
			r.ClientCAs = pool
		}
	}
	switch {
	case rr.Certificate == "" && rr.Key == "":
	case rr.Certificate == "":
		ps.add("radsec.certificate", "key is set but certificate is not: set both, or neither for the EAP-TLS server certificate")
	case rr.Key == "":
		ps.add("radsec.key", "certificate is set but key is not: set both, or neither for the EAP-TLS server certificate")
	default:
		cert, err := tls.LoadX509KeyPair(rr.Certificate, rr.Key)
		if err != nil {
			ps.add("radsec.certificate", "cannot load the certificate and key: %v", unwrapPathError(err))
		}
		r.Certificate = cert
	}
	r.MinVersion = tlsVersion(ps, "radsec.min_version", rr.MinVersion, tls.VersionTLS12)
	r.IdleTimeout = duration(ps, "radsec.idle_timeout", rr.IdleTimeout, DefaultRadSecIdleTimeout, time.Second)
	r.MaxConnections = intField(ps, "radsec.max_connections", rr.MaxConnections, DefaultRadSecMaxConnections, 1, 1<<16)
	r.MaxConnectionsPerClient = intField(ps, "radsec.max_connections_per_client", rr.MaxConnectionsPerClient, DefaultRadSecMaxConnectionsPerClient, 1, 1<<16)
	if r.MaxConnectionsPerClient > r.MaxConnections && rr.MaxConnectionsPerClient != nil {
		ps.add("radsec.max_connections_per_client", "%d is above max_connections %d", r.MaxConnectionsPerClient, r.MaxConnections)
	}
	checkCRLSources(ps, "radsec.crls", rr.CRLs)
	switch {
	case len(rr.CRLs) > 0 && len(rr.CAFiles) == 0:
		ps.add("radsec.crls", "set but ca_files is not: with nacd's own CA (the default) revocation is checked against its own revocations; set ca_files, or remove this")
	case rr.RequireCRL != nil && len(rr.CRLs) == 0:
		ps.add("radsec.require_crl", "set but crls is not: set crls, or remove this")
	}
	r.CRLs = rr.CRLs
	r.RequireCRL = len(rr.CRLs) > 0 && (rr.RequireCRL == nil || *rr.RequireCRL)
	if len(rr.CAFiles) > 0 && len(rr.CRLs) > 0 {
		r.Revocation = radsecAnchor(pki.AnchorConfig{CAFiles: rr.CAFiles, CRLs: rr.CRLs, RequireCRL: r.RequireCRL, OIDs: policy.DefaultOIDs()})
	}
	cfg.RadSec = r
}

// errNoRadSecCA is returned when RadSec is on without a CA bundle after
// bootstrap; unreachable through Load + UseBootstrap.
var errNoRadSecCA = errors.New("config: radsec: no CA bundle for NAS certificates")

// CheckRadSec reports whether the RadSec settings are complete for serving
// (after UseBootstrap): a CA bundle and a certificate.
func (c *Config) CheckRadSec() error {
	if !c.RadSec.Enabled {
		return nil
	}
	if c.RadSec.ClientCAs == nil {
		return errNoRadSecCA
	}
	if len(c.RadSecCertificate().Certificate) == 0 {
		return errors.New("config: radsec: no server certificate")
	}
	return nil
}
