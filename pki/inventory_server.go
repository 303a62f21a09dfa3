package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// ServerCertificate returns the RADIUS server certificate and key files in
// the data dir (pki/server.crt holds leaf + intermediate, pki/server.key
// 0600), issued by this CA for names (DNS names; the first is the CN),
// (re)issuing them when absent, for other names, not from this CA's
// intermediate, or past 2/3 of their life. The certificate is in the
// inventory (Kind "server").
func (ca *CA) ServerCertificate(ctx context.Context, names []string) (certFile, keyFile string, err error) {
	if len(names) == 0 {
		names = []string{BootstrapServerName}
	}
	now := time.Now()
	if leaf, ok := ca.currentServer(names, now); ok {
		ca.metrics.serverExpiry.Store(leaf.NotAfter.Unix())
		return ca.paths.server, ca.paths.serverKey, nil
	}
	chain, key, err := ca.issueServer(ctx, names, DefaultServerValidity, "nacd-serve")
	if err != nil {
		return "", "", err
	}
	if err := mkdirPrivate(filepath.Dir(ca.paths.server)); err != nil {
		return "", "", err
	}
	if err := writeKey(ca.paths.serverKey, key); err != nil {
		return "", "", fmt.Errorf("pki: write server key: %w", err)
	}
	if err := writeFileAtomic(ca.paths.server, pemChain(chain), 0o644); err != nil {
		return "", "", fmt.Errorf("pki: write server certificate: %w", err)
	}
	ca.metrics.serverExpiry.Store(chain[0].NotAfter.Unix())
	return ca.paths.server, ca.paths.serverKey, nil
}

// currentServer reports whether the server certificate on disk can be kept.
func (ca *CA) currentServer(names []string, now time.Time) (*x509.Certificate, bool) {
	leaf, _, err := loadCertKey(ca.paths.server, ca.paths.serverKey)
	if err != nil {
		return nil, false
	}
	dns, ips := splitServerNames(names)
	if leaf.CheckSignatureFrom(ca.inter) != nil || !slices.Equal(leaf.DNSNames, dns) ||
		!slices.EqualFunc(leaf.IPAddresses, ips, func(a, b net.IP) bool { return a.Equal(b) }) {
		return nil, false
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	if now.After(leaf.NotBefore.Add(life*2/3)) || now.Before(leaf.NotBefore) {
		return nil, false
	}
	if ca.revs.contains(leaf.SerialNumber) {
		return nil, false
	}
	return leaf, true
}

// ServerNames are the default names of nacd's server certificate:
// BootstrapServerName, the host name when it is a valid DNS name, and the
// loopback addresses 127.0.0.1 and ::1 (IP SANs: the PKI listener's
// default address is https://127.0.0.1:9443).
func ServerNames() []string {
	names := []string{BootstrapServerName}
	if h, err := os.Hostname(); err == nil && validDNSName(h) && !strings.EqualFold(h, BootstrapServerName) {
		names = append(names, strings.ToLower(h))
	}
	return append(names, "127.0.0.1", "::1")
}

// splitServerNames separates IP addresses (IP SANs) from DNS names.
func splitServerNames(names []string) (dns []string, ips []net.IP) {
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil && a.Zone() == "" {
			ips = append(ips, net.IP(a.AsSlice()))
		} else {
			dns = append(dns, n)
		}
	}
	return dns, ips
}

// Bootstrap is what `nacd serve` uses in place of the foundation's
// pki.Bootstrap once the CA is open: the RADIUS server certificate issued
// by this CA (ServerCertificate with ServerNames), the demo devices of the
// README tour (staff-laptop, member-tablet: issued through Issue, so they
// are in the inventory and revocable, and kept across restarts while
// valid), and the trust anchor (Anchor: revocation from the store, no CRL
// file). Call it again (e.g. daily) to renew the server certificate.
//
// Files, where the foundation's Bootstrap put them (so tools, docs and
// `nacd policy explain` keep their paths): pki/ca.crt (root + intermediate
// bundle), pki/ca.crl (the current CRL, PEM, signed by the intermediate),
// pki/server.crt (leaf + intermediate) and pki/server.key, and
// demo/<name>.crt (leaf + intermediate) and .key. The CA itself lives in
// ca/ (keys never leave it: CAKey is empty). pki.Bootstrap on a data dir
// that holds this CA loads these files read-only instead of making a
// throwaway CA.
func (ca *CA) Bootstrap(ctx context.Context) (*BootstrapResult, error) {
	r := &BootstrapResult{
		CACert:      ca.paths.bundle,
		CRL:         ca.paths.crl,
		Demo:        map[string]DevicePaths{},
		DemoCerts:   map[string]*x509.Certificate{},
		CA:          ca.root,
		Revocations: ca.revs,
	}
	if err := mkdirPrivate(filepath.Dir(ca.paths.bundle)); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(ca.paths.bundle, pemChain([]*x509.Certificate{ca.root, ca.inter}), 0o644); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	var err error
	if r.ServerCert, r.ServerKey, err = ca.ServerCertificate(ctx, ServerNames()); err != nil {
		return nil, err
	}
	if r.Server, _, err = loadCertKey(r.ServerCert, r.ServerKey); err != nil {
		return nil, err
	}
	if err := mkdirPrivate(ca.paths.demo); err != nil {
		return nil, err
	}
	for _, d := range demoDevices {
		p := DevicePaths{Cert: filepath.Join(ca.paths.demo, d.name+".crt"), Key: filepath.Join(ca.paths.demo, d.name+".key")}
		r.Demo[d.name] = p
		cert, created, err := ca.demoDevice(ctx, d, p)
		if err != nil {
			return nil, fmt.Errorf("pki: demo device %s: %w", d.name, err)
		}
		r.DemoCerts[d.name] = cert
		r.Created = r.Created || created
	}
	crl, err := ca.CRL(ctx)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(r.CRL, pemBlock("X509 CRL", crl), 0o644); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return r, nil
}

// demoDevice keeps a valid, unrevoked demo certificate or issues a new one.
func (ca *CA) demoDevice(ctx context.Context, d demoDevice, p DevicePaths) (*x509.Certificate, bool, error) {
	cert, _, err := loadCertKey(p.Cert, p.Key)
	switch {
	case err == nil:
		now := time.Now()
		if cert.CheckSignatureFrom(ca.inter) == nil && now.Before(cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore)*2/3)) && !ca.revs.contains(cert.SerialNumber) {
			return cert, false, nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		// unreadable or mismatched: replace
	}
	key, err := newP256()
	if err != nil {
		return nil, false, err
	}
	csr, err := csrFor(key)
	if err != nil {
		return nil, false, err
	}
	chain, err := ca.Issue(ctx, csr, Facts{Email: d.email, DeviceName: d.name, Ownership: d.ownership, Role: d.role, ClearanceIL3: d.il3}, "nacd-demo")
	if err != nil {
		return nil, false, err
	}
	if err := writeKey(p.Key, key); err != nil {
		return nil, false, err
	}
	if err := writeFileAtomic(p.Cert, pemChain(chain), 0o644); err != nil {
		return nil, false, err
	}
	return chain[0], true, nil
}

func mkdirPrivate(d string) error {
	if err := os.MkdirAll(d, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

func pemChain(chain []*x509.Certificate) []byte {
	var out []byte
	for _, c := range chain {
		out = append(out, pemCert(c)...)
	}
	return out
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func newP256() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

// csrFor is an empty CSR (no subject, no SANs) for key: the facts come
// from Issue's Facts.
func csrFor(key crypto.Signer) (*x509.CertificateRequest, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificateRequest(der)
}

// DefaultBootstrapRenew is how often RenewBootstrap re-runs Bootstrap.
const DefaultBootstrapRenew = time.Hour

// RenewBootstrap re-runs Bootstrap every interval (DefaultBootstrapRenew
// when <= 0) until ctx ends, so the server certificate (and the demo
// devices) are renewed at 2/3 of their life; failures are logged. serve
// runs it in a goroutine in place of re-running pki.Bootstrap.
func (ca *CA) RenewBootstrap(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultBootstrapRenew
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ca.closed.Load() {
				return
			}
			if _, err := ca.Bootstrap(ctx); err != nil {
				ca.log.Error("renew server certificate", zap.Error(err))
			}
		}
	}
}

// loadCAFiles is pki.Bootstrap on a data dir that holds nacd's smallstep
// CA: the files CA.Bootstrap wrote, checked (every certificate chains to
// the CA, keys match, the CRL is the intermediate's), with nothing created
// and the store not opened (a running nacd holds it). The anchor uses the
// CRL file, which CA.Bootstrap rewrites at every run (hourly under serve).
func loadCAFiles(dir string, now time.Time) (*BootstrapResult, error) {
	p := pathsFor(dir)
	fail := func(err error) (*BootstrapResult, error) {
		return nil, fmt.Errorf("pki: bootstrap files of the CA in %s: %w (run nacd serve once to write them)", p.dir, err)
	}
	root, err := readOneCert(p.rootCert)
	if err != nil {
		return fail(err)
	}
	inter, err := readOneCert(p.interCert)
	if err != nil {
		return fail(err)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return fail(err)
	}
	r := &BootstrapResult{CACert: p.bundle, CRL: p.crl, ServerCert: p.server, ServerKey: p.serverKey,
		Demo: map[string]DevicePaths{}, DemoCerts: map[string]*x509.Certificate{}, CA: root}
	if r.Server, _, err = loadCertKey(p.server, p.serverKey); err != nil {
		return fail(err)
	}
	for _, d := range demoDevices {
		dp := DevicePaths{Cert: filepath.Join(p.demo, d.name+".crt"), Key: filepath.Join(p.demo, d.name+".key")}
		c, _, err := loadCertKey(dp.Cert, dp.Key)
		if err != nil {
			return fail(err)
		}
		r.Demo[d.name], r.DemoCerts[d.name] = dp, c
	}
	for _, c := range append([]*x509.Certificate{r.Server}, mapValues(r.DemoCerts)...) {
		if err := c.CheckSignatureFrom(inter); err != nil {
			return fail(fmt.Errorf("%s: %w", c.Subject.CommonName, err))
		}
	}
	crlPEM, err := os.ReadFile(p.crl)
	if err != nil {
		return fail(err)
	}
	if _, err := parseCRL(crlPEM, p.crl, []*x509.Certificate{inter}); err != nil {
		return fail(err)
	}
	if _, err := os.Stat(p.rootCRL); err == nil {
		r.RootCRL = p.rootCRL
	}
	_ = now
	return r, nil
}

func mapValues(m map[string]*x509.Certificate) []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(m))
	for _, c := range m {
		out = append(out, c)
	}
	return out
}

// OpenLocal is what `nacd serve` calls in place of pki.Bootstrap: it opens
// (creating on first run) nacd's CA in cfg.DataDir and runs CA.Bootstrap.
// Use the result as before (config.UseBootstrap, printBootstrap); keep the
// CA open while serving (its RevocationSet is the anchor's revocation
// source), run ca.RenewBootstrap(ctx, time.Hour) in a goroutine, call
// ca.RegisterMetrics(reg) and ca.SetAccessLog(accessLog) once those exist,
// and ca.Close() at the end.
func OpenLocal(ctx context.Context, cfg CAConfig) (*CA, *BootstrapResult, error) {
	ca, err := OpenCA(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	b, err := ca.Bootstrap(ctx)
	if err != nil {
		_ = ca.Close()
		return nil, nil, err
	}
	return ca, b, nil
}
