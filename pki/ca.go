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
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/policy"
)

// Default lifetimes of what the CA issues.
const (
	DefaultDeviceValidity       = 365 * 24 * time.Hour
	DefaultServerValidity       = 90 * 24 * time.Hour
	DefaultRootValidity         = 20 * 365 * 24 * time.Hour
	DefaultIntermediateValidity = 10 * 365 * 24 * time.Hour
	// DefaultCRLValidity is the NextUpdate distance of the CRL; it is
	// regenerated on every revocation and every DefaultCRLValidity/3.
	DefaultCRLValidity = 24 * time.Hour
	// DefaultRevocationPoll is how often a CA polls the shared store for
	// revocations made by other nodes (PostgreSQL).
	DefaultRevocationPoll = 1500 * time.Millisecond
)

// LocalAnchorName is the trust-anchor name of nacd's own CA.
const LocalAnchorName = "nacd-local"

// Errors callers branch on (errors.Is).
var (
	ErrCAExists      = errors.New("pki: a CA already exists in the data dir (use --force to overwrite)")
	ErrNoCA          = errors.New("pki: no CA in the data dir")
	ErrWeakKey       = errors.New("pki: weak or unsupported public key (want ECDSA P-256/P-384 or RSA >= 2048)")
	ErrCSRMismatch   = errors.New("pki: CSR asks for names other than the holder's e-mail and device URI")
	ErrBadCSR        = errors.New("pki: invalid CSR")
	ErrBadFacts      = errors.New("pki: invalid certificate facts")
	ErrNotFound      = errors.New("pki: not found")
	ErrRevoked       = errors.New("pki: certificate revoked")
	ErrNotIssuedHere = errors.New("pki: certificate not issued by this CA")
	ErrExists        = errors.New("pki: already exists")
	ErrTokenUsed     = errors.New("pki: token already used")
	ErrClosed        = errors.New("pki: CA closed")
)

// CAConfig configures nacd's CA.
type CAConfig struct {
	// DataDir holds root.crt, intermediate.crt, their keys (0600) and, with
	// the embedded store, nacd-ca.db (bbolt; one process at a time: the
	// file is locked while open).
	DataDir string
	// Store is "" for the embedded bbolt DB in DataDir, or a PostgreSQL DSN
	// "postgres://user:pass@host/db?sslmode=disable" shared by several
	// nodes. The CA keys always live in DataDir (copy them to every node).
	Store string
	// PassphraseFile, when set, holds the passphrase that encrypts the CA
	// keys at rest; otherwise NACD_CA_PASSPHRASE (env) is used when set;
	// otherwise the keys are written unencrypted (0600).
	PassphraseFile string
	// CRLURL is put in issued certificates as the CRL Distribution Point
	// (e.g. "http://127.0.0.1:9443/crl"); OCSPURL as the OCSP AIA. Empty:
	// the extension is left out.
	CRLURL, OCSPURL string
	// DeviceValidity is the lifetime of device certificates (default 365d).
	DeviceValidity time.Duration
	// CRLValidity is the CRL's NextUpdate distance (default 24h).
	CRLValidity time.Duration
	// RevocationPoll is how often revocations by other nodes are picked up
	// from a shared store (default 1.5s; bbolt is single-node, no polling).
	RevocationPoll time.Duration
	// CommonName prefix of the CA certificates (default "nacd").
	CommonName string
	Logger     *zap.Logger // operational log (default no-op)
	AccessLog  *zap.Logger // audit events: certificate-issued/renewed/revoked (default no-op)
	Registerer prometheus.Registerer
}

// Facts are what an issued device certificate asserts (design section 3).
// They come from an operator (nacd ca issue) or an enrolment token, never
// from the CSR.
type Facts struct {
	Email        string // holder, SAN rfc822Name; required
	DeviceUUID   string // SAN URI urn:uuid:<uuid>; "" = a random one is generated
	DeviceName   string // subject CN; "" = the e-mail
	Ownership    policy.Ownership
	Role         policy.Role
	ClearanceIL3 bool
	// Validity overrides CAConfig.DeviceValidity when > 0.
	Validity time.Duration
}

// RecordStatus is the inventory status of a certificate.
type RecordStatus string

const (
	StatusValid   RecordStatus = "valid"
	StatusRevoked RecordStatus = "revoked"
	StatusExpired RecordStatus = "expired" // computed at read time, never stored
)

// Record is one row of nacd's certificate inventory.
type Record struct {
	Serial       string           `json:"serial"` // lower-case hex, as policy.Identity.Serial
	Email        string           `json:"email"`
	DeviceUUID   string           `json:"device_uuid"`
	DeviceName   string           `json:"device_name"`
	Kind         string           `json:"kind"` // KindDevice | KindServer
	Ownership    policy.Ownership `json:"ownership"`
	Role         policy.Role      `json:"role"`
	ClearanceIL3 bool             `json:"clearance_il3"`
	NotBefore    time.Time        `json:"not_before"`
	NotAfter     time.Time        `json:"not_after"`
	Status       RecordStatus     `json:"status"`
	IssuedAt     time.Time        `json:"issued_at"`
	IssuedBy     string           `json:"issued_by"`
	RenewedFrom  string           `json:"renewed_from,omitempty"` // serial of the certificate this one renewed
	RevokedAt    time.Time        `json:"revoked_at,omitempty"`
	Reason       RevocationReason `json:"reason,omitempty"`
	RevokedBy    string           `json:"revoked_by,omitempty"`
	Certificate  []byte           `json:"certificate,omitempty"` // DER
}

// Record kinds.
const (
	KindDevice = "device" // EAP-TLS client certificate in nacd's profile
	KindServer = "server" // nacd's own RADIUS/HTTPS server certificate
)

// ListFilter selects inventory records; zero fields match everything.
type ListFilter struct {
	Holder         string        // e-mail, case-insensitive
	Device         string        // device UUID
	ExpiringWithin time.Duration // NotAfter within now+d (and not yet expired)
	Status         RecordStatus  // valid | revoked | expired
}

// RevocationReason is an RFC 5280 CRLReason code.
type RevocationReason int

// RFC 5280 section 5.3.1 reason codes (7 is unused).
const (
	ReasonUnspecified          RevocationReason = 0
	ReasonKeyCompromise        RevocationReason = 1
	ReasonCACompromise         RevocationReason = 2
	ReasonAffiliationChanged   RevocationReason = 3
	ReasonSuperseded           RevocationReason = 4
	ReasonCessationOfOperation RevocationReason = 5
	ReasonCertificateHold      RevocationReason = 6
	ReasonRemoveFromCRL        RevocationReason = 8
	ReasonPrivilegeWithdrawn   RevocationReason = 9
	ReasonAACompromise         RevocationReason = 10
)

// PassphraseEnv is the environment variable holding the CA key passphrase
// when CAConfig.PassphraseFile is not set.
const PassphraseEnv = "NACD_CA_PASSPHRASE"

// provisionerName is the one step-ca provisioner nacd configures: a JWK
// provisioner over the intermediate's public key that carries the
// certificate-lifetime claims and is recorded with every certificate in
// step's DB. nacd never hands out tokens for it: facts come from nacd's own
// callers (operator, enrolment token code), through Issue.
const provisionerName = "nacd"

// CA is nacd's certificate authority: smallstep's embedded authority over a
// nosql store, plus nacd's inventory in the same backend. All methods are
// safe for concurrent use.
type CA struct {
	cfg   CAConfig
	log   *zap.Logger
	audit atomic.Pointer[zap.Logger]
	paths caPaths

	root, inter *x509.Certificate
	signer      crypto.Signer

	auth    *authority.Authority
	prov    provisioner.Interface
	maxLife time.Duration
	be      storeBackend
	authDB  authDBCloser
	revs    *RevocationSet
	metrics *caMetrics
	tokens  *TokenTable

	crlMu  sync.Mutex // serialises this node's CRL generation (the store serialises nodes)
	crl    atomic.Pointer[publishedCRL]
	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
}

// caPaths are the CA's files under DataDir/ca, and the files Bootstrap
// writes where the foundation's bootstrap PKI had them (DataDir/pki,
// DataDir/demo), so tools and docs keep their paths.
type caPaths struct {
	dir, rootCert, rootKey, rootCRL, interCert, interKey, db string
	// Bootstrap's files (pki.Bootstrap layout).
	bundle, crl, server, serverKey, demo string
}

func pathsFor(dataDir string) caPaths {
	d := filepath.Join(dataDir, "ca")
	return caPaths{
		dir:       d,
		rootCert:  filepath.Join(d, "root.crt"),
		rootKey:   filepath.Join(d, "root.key"),
		rootCRL:   filepath.Join(d, "root.crl"),
		interCert: filepath.Join(d, "intermediate.crt"),
		interKey:  filepath.Join(d, "intermediate.key"),
		db:        filepath.Join(d, "nacd-ca.db"),
		bundle:    filepath.Join(dataDir, "pki", "ca.crt"),
		crl:       filepath.Join(dataDir, "pki", "ca.crl"),
		server:    filepath.Join(dataDir, "pki", "server.crt"),
		serverKey: filepath.Join(dataDir, "pki", "server.key"),
		demo:      filepath.Join(dataDir, "demo"),
	}
}

func (c CAConfig) withDefaults() CAConfig {
	if c.DataDir == "" {
		c.DataDir = "nacd-data"
	}
	if c.DeviceValidity <= 0 {
		c.DeviceValidity = DefaultDeviceValidity
	}
	if c.CRLValidity <= 0 {
		c.CRLValidity = DefaultCRLValidity
	}
	if c.RevocationPoll <= 0 {
		c.RevocationPoll = DefaultRevocationPoll
	}
	if c.CommonName == "" {
		c.CommonName = "nacd"
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.AccessLog == nil {
		c.AccessLog = zap.NewNop()
	}
	return c
}

// passphrase returns the key passphrase (nil: keys unencrypted).
func (c CAConfig) passphrase() ([]byte, error) {
	if c.PassphraseFile != "" {
		b, err := os.ReadFile(c.PassphraseFile)
		if err != nil {
			return nil, fmt.Errorf("pki: read CA passphrase file: %w", err)
		}
		p := []byte(strings.TrimRight(string(b), "\r\n"))
		if len(p) == 0 {
			return nil, fmt.Errorf("pki: CA passphrase file %s is empty", c.PassphraseFile)
		}
		return p, nil
	}
	if v := os.Getenv(PassphraseEnv); v != "" {
		return []byte(v), nil
	}
	return nil, nil
}

// Exists reports whether dataDir holds a CA (any of its files).
func caExists(p caPaths) (bool, error) {
	for _, f := range []string{p.rootCert, p.rootKey, p.interCert, p.interKey} {
		switch _, err := os.Stat(f); {
		case err == nil:
			return true, nil
		case !errors.Is(err, fs.ErrNotExist):
			return false, fmt.Errorf("pki: %w", err)
		}
	}
	return false, nil
}

// InitCA creates the root and intermediate (ECDSA P-256) in cfg.DataDir/ca,
// keys 0600 (encrypted when a passphrase is configured: PassphraseFile or
// NACD_CA_PASSPHRASE). It refuses with ErrCAExists when a CA (any of its
// files) is already there unless force is set; force replaces the CA keys
// and certificates, never the store (certificates of the old CA stay in
// the inventory and no longer verify).
func InitCA(cfg CAConfig, force bool) error {
	cfg = cfg.withDefaults()
	p := pathsFor(cfg.DataDir)
	exists, err := caExists(p)
	if err != nil {
		return err
	}
	if exists && !force {
		return fmt.Errorf("%w: %s", ErrCAExists, p.dir)
	}
	pass, err := cfg.passphrase()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.Chmod(p.dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	now := time.Now()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	root, err := newCACert(cfg.CommonName+" root CA", x509util.DefaultRootTemplate, rootKey, nil, rootKey, now, DefaultRootValidity)
	if err != nil {
		return fmt.Errorf("pki: create root: %w", err)
	}
	interKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	inter, err := newCACert(cfg.CommonName+" device CA", x509util.DefaultIntermediateTemplate, interKey, root, rootKey, now, DefaultIntermediateValidity)
	if err != nil {
		return fmt.Errorf("pki: create intermediate: %w", err)
	}
	// Keys first, certificates after: the intermediate certificate last
	// marks a complete CA.
	if err := writeCAKey(p.rootKey, rootKey, pass); err != nil {
		return err
	}
	if err := writeCAKey(p.interKey, interKey, pass); err != nil {
		return err
	}
	if err := writeFileAtomic(p.rootCert, pemCert(root), 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	// The root's CRL (it revokes no intermediate: the only way to replace
	// the intermediate is init --force), valid as long as the
	// intermediate, so CRL-file anchors (pki.Bootstrap read-only, external
	// tools) can check the whole chain without the root key online.
	rootCRL, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: now.Add(-5 * time.Minute).Truncate(time.Second), NextUpdate: inter.NotAfter,
	}, root, rootKey)
	if err != nil {
		return fmt.Errorf("pki: root CRL: %w", err)
	}
	if err := writeFileAtomic(p.rootCRL, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: rootCRL}), 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := writeFileAtomic(p.interCert, pemCert(inter), 0o644); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	// A replaced CA invalidates the server certificate issued by the old one.
	if force {
		_ = os.Remove(p.server)
		_ = os.Remove(p.serverKey)
	}
	return nil
}

// newCACert creates a CA certificate from an x509util template, validity
// set explicitly (trap: a template without validity gives a zero-length
// certificate).
func newCACert(cn, tmplText string, key crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer, now time.Time, life time.Duration) (*x509.Certificate, error) {
	cr, err := x509util.CreateCertificateRequest(cn, nil, key)
	if err != nil {
		return nil, err
	}
	data := x509util.CreateTemplateData(cn, nil)
	c, err := x509util.NewCertificate(cr, x509util.WithTemplate(tmplText, data))
	if err != nil {
		return nil, err
	}
	tmpl := c.GetCertificate()
	tmpl.Subject.Organization = []string{"nacd"}
	tmpl.NotBefore = now.Add(-5 * time.Minute).Truncate(time.Second)
	tmpl.NotAfter = now.Add(life).Truncate(time.Second)
	if parent == nil {
		parent = tmpl
	} else if tmpl.NotAfter.After(parent.NotAfter) {
		tmpl.NotAfter = parent.NotAfter
	}
	cert, err := x509util.CreateCertificate(tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, err
	}
	if !cert.NotAfter.After(cert.NotBefore) {
		return nil, errors.New("zero-length validity")
	}
	return cert, nil
}

func writeCAKey(path string, key crypto.Signer, pass []byte) error {
	opts := []pemutil.Options{pemutil.WithPKCS8(true)}
	if pass != nil {
		opts = append(opts, pemutil.WithPassword(pass))
	}
	blk, err := pemutil.Serialize(key, opts...)
	if err != nil {
		return fmt.Errorf("pki: serialise key: %w", err)
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

func readCAKey(path string, pass []byte) (crypto.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %v): chmod 600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var opts []pemutil.Options
	if pass != nil {
		opts = append(opts, pemutil.WithPassword(pass))
	}
	k, err := pemutil.ParseKey(b, opts...)
	if err != nil {
		if pass == nil && strings.Contains(string(b), "ENCRYPTED") {
			return nil, fmt.Errorf("%s is encrypted: set %s or a passphrase file", path, PassphraseEnv)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}

func readOneCert(path string) (*x509.Certificate, error) {
	certs, err := readCertFile(path)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// OpenCA opens (creating it when absent) the CA in cfg.DataDir and its store
// and starts the CRL timer and the revocation poller. With the embedded
// store (bbolt) the DB file is locked: one process per data dir. Close it.
func OpenCA(ctx context.Context, cfg CAConfig) (*CA, error) {
	cfg = cfg.withDefaults()
	p := pathsFor(cfg.DataDir)
	exists, err := caExists(p)
	if err != nil {
		return nil, err
	}
	if !exists {
		if err := InitCA(cfg, false); err != nil && !errors.Is(err, ErrCAExists) {
			return nil, err
		}
	}
	ca := &CA{cfg: cfg, log: cfg.Logger.Named("ca"), paths: p, stop: make(chan struct{})}
	ca.audit.Store(cfg.AccessLog)
	if err := ca.loadKeys(); err != nil {
		return nil, fmt.Errorf("pki: open CA %s: %w", p.dir, err)
	}
	authDB, be, err := openBackend(ctx, cfg, p)
	if err != nil {
		return nil, fmt.Errorf("pki: open CA store: %w", err)
	}
	ca.be, ca.authDB = be, authDB
	if err := ca.startAuthority(authDB); err != nil {
		_ = authDB.Shutdown()
		be.close()
		return nil, fmt.Errorf("pki: open CA: %w", err)
	}
	ca.tokens = &TokenTable{be: be}
	ca.revs = newRevocationSet(ca.root, ca.inter, cfg.RevocationPoll)
	ca.metrics = newCAMetrics(ca)
	fail := func(err error) (*CA, error) {
		_ = ca.auth.Shutdown()
		be.close()
		return nil, err
	}
	if err := ca.reconcile(ctx); err != nil {
		return fail(fmt.Errorf("pki: reconcile inventory: %w", err))
	}
	if err := ca.revs.resync(ctx, be); err != nil {
		return fail(fmt.Errorf("pki: load revocations: %w", err))
	}
	if _, err := ca.ensureCRL(ctx, time.Now()); err != nil {
		return fail(fmt.Errorf("pki: CRL: %w", err))
	}
	if cfg.Registerer != nil {
		if err := ca.metrics.register(cfg.Registerer); err != nil {
			return fail(fmt.Errorf("pki: register CA metrics: %w", err))
		}
	}
	ca.wg.Add(1)
	go ca.loop()
	return ca, nil
}

func (ca *CA) loadKeys() error {
	pass, err := ca.cfg.passphrase()
	if err != nil {
		return err
	}
	if ca.root, err = readOneCert(ca.paths.rootCert); err != nil {
		return err
	}
	if ca.inter, err = readOneCert(ca.paths.interCert); err != nil {
		return err
	}
	// The root key is only used by InitCA: it is not decrypted here (each
	// decryption is 600k PBKDF2 rounds), only checked to be private.
	if fi, err := os.Stat(ca.paths.rootKey); err != nil {
		return err
	} else if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is readable by group or others (mode %v): chmod 600", ca.paths.rootKey, fi.Mode().Perm())
	}
	if ca.signer, err = readCAKey(ca.paths.interKey, pass); err != nil {
		return err
	}
	if !publicKeysEqual(ca.signer.Public(), ca.inter.PublicKey) {
		return errors.New("intermediate key does not match intermediate certificate")
	}
	if err := ca.inter.CheckSignatureFrom(ca.root); err != nil {
		return fmt.Errorf("intermediate not signed by root: %w", err)
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// startAuthority creates step's embedded authority over authDB and checks
// that the provisioner loaded (a failing provisioner is only logged by
// step and silently disabled).
func (ca *CA) startAuthority(authDB authDBCloser) error {
	ca.maxLife = ca.cfg.DeviceValidity
	if ca.maxLife < DefaultServerValidity {
		ca.maxLife = DefaultServerValidity
	}
	jwk := &jose.JSONWebKey{Key: ca.inter.PublicKey, Algorithm: jose.ES256, Use: "sig"}
	kid, err := jose.Thumbprint(jwk)
	if err != nil {
		return fmt.Errorf("provisioner key: %w", err)
	}
	jwk.KeyID = kid
	f := false
	claims := &provisioner.Claims{
		MinTLSDur:     &provisioner.Duration{Duration: time.Minute},
		MaxTLSDur:     &provisioner.Duration{Duration: ca.maxLife},
		DefaultTLSDur: &provisioner.Duration{Duration: ca.cfg.DeviceValidity},
		EnableSSHCA:   &f,
	}
	cfg := &config.Config{
		DNSNames: []string{"nacd"},
		AuthorityConfig: &config.AuthConfig{
			Provisioners: provisioner.List{&provisioner.JWK{Type: "JWK", Name: provisionerName, Key: jwk, Claims: claims}},
			Claims:       claims,
			Backdate:     &provisioner.Duration{Duration: time.Minute},
		},
		CRL: &config.CRLConfig{Enabled: false}, // nacd publishes its own CRL (crlpublish.go)
	}
	a, err := authority.NewEmbedded(
		authority.WithConfig(cfg),
		authority.WithX509RootCerts(ca.root),
		authority.WithX509Signer(ca.inter, ca.signer),
		authority.WithDatabase(authDB),
		authority.WithQuietInit(),
	)
	if err != nil {
		return err
	}
	p, err := a.LoadProvisionerByName(provisionerName)
	if err == nil {
		if u, bad := p.(provisioner.Uninitialized); bad {
			err = fmt.Errorf("provisioner %q failed to initialise: %v", provisionerName, u.Reason)
		} else if _, ok := p.(*provisioner.JWK); !ok {
			err = fmt.Errorf("provisioner %q has type %T", provisionerName, p)
		}
	}
	if err != nil {
		_ = a.Shutdown()
		return fmt.Errorf("step authority: %w", err)
	}
	ca.auth, ca.prov = a, p
	return nil
}

// Close stops the CRL timer and poller, shuts step's authority down (its
// own CRL goroutine and DB) and closes the store. Calls after the first
// return nil.
func (ca *CA) Close() error {
	var err error
	ca.once.Do(func() {
		ca.closed.Store(true)
		close(ca.stop)
		ca.wg.Wait()
		if ca.cfg.Registerer != nil {
			ca.metrics.unregister(ca.cfg.Registerer)
		}
		err = ca.auth.Shutdown()
		ca.be.close()
	})
	return err
}

func (ca *CA) loop() {
	defer ca.wg.Done()
	poll := time.NewTicker(ca.cfg.RevocationPoll)
	defer poll.Stop()
	for {
		select {
		case <-ca.stop:
			return
		case now := <-poll.C:
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if err := ca.revs.poll(ctx, ca.be, now); err != nil {
				ca.log.Warn("revocation poll failed", zap.Error(err))
			}
			if _, err := ca.ensureCRL(ctx, now); err != nil {
				ca.log.Warn("CRL refresh failed", zap.Error(err))
			}
			cancel()
		}
	}
}

// SetAccessLog replaces the audit logger (serve opens the access log
// after the CA).
func (ca *CA) SetAccessLog(l *zap.Logger) {
	if l == nil {
		l = zap.NewNop()
	}
	ca.audit.Store(l)
}

// RegisterMetrics registers the CA's collectors on r (when CAConfig had no
// Registerer); Close unregisters them.
func (ca *CA) RegisterMetrics(r prometheus.Registerer) error {
	if ca.cfg.Registerer != nil {
		return errors.New("pki: CA metrics already registered")
	}
	if err := ca.metrics.register(r); err != nil {
		return err
	}
	ca.cfg.Registerer = r
	return nil
}

// Root is the root certificate.
func (ca *CA) Root() *x509.Certificate { return ca.root }

// Intermediate is the issuing intermediate (issuer of devices, CRL and,
// as the OCSP responder's issuer, the OCSP responses).
func (ca *CA) Intermediate() *x509.Certificate { return ca.inter }

// Signer is the intermediate's private key (sign OCSP responses with it;
// never log or export it).
func (ca *CA) Signer() crypto.Signer { return ca.signer }

// RootFile is the path of the root certificate PEM in the data dir.
func (ca *CA) RootFile() string { return ca.paths.rootCert }

// IntermediateFile is the path of the intermediate certificate PEM.
func (ca *CA) IntermediateFile() string { return ca.paths.interCert }

// Tokens is a table in the CA's store for the enrolment code: atomic
// single-use records.
func (ca *CA) Tokens() *TokenTable { return ca.tokens }

// RevocationSet is the in-memory set of revoked serials of this CA, kept in
// sync with the store (on this node immediately; other nodes' revocations
// within RevocationPoll).
func (ca *CA) RevocationSet() *RevocationSet { return ca.revs }

// Anchor is the trust-anchor configuration for this CA (LocalAnchorName,
// il3, policy.DefaultOIDs), with revocation checked against RevocationSet
// (Source "store") instead of a CRL file. CAFiles holds the root and the
// intermediate.
func (ca *CA) Anchor() AnchorConfig {
	return AnchorConfig{
		Name:        LocalAnchorName,
		IL3:         true,
		CAFiles:     []string{ca.paths.rootCert, ca.paths.interCert},
		OIDs:        policy.DefaultOIDs(),
		Revocations: ca.revs,
	}
}

// CADir is the directory of the CA's files in a data dir (DataDir/ca).
func CADir(dataDir string) string { return pathsFor(dataDir).dir }

// CARootFile is the root certificate PEM of the CA in a data dir
// (DataDir/ca/root.crt), for clients that verify nacd's HTTPS listener.
func CARootFile(dataDir string) string { return pathsFor(dataDir).rootCert }
