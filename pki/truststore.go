package pki

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/policy"
)

// DefaultCRLRefresh is the CRL refresh interval when AnchorConfig.CRLRefresh is 0.
const DefaultCRLRefresh = 5 * time.Minute

// AnchorConfig configures one trust anchor.
type AnchorConfig struct {
	Name            string
	IL3             bool          // anchor may place devices on il3
	CAFiles         []string      // PEM bundles: roots (and optionally intermediates) of this anchor
	CRLs            []string      // CRL sources: file paths or http(s) URLs, DER or PEM; each CRL's issuer must be a certificate in CAFiles
	CRLRefresh      time.Duration // default 5m
	CRLMaxAge       time.Duration // max age of a CRL before it is stale even if NextUpdate is later; 0 = NextUpdate only
	StaleFailClosed bool          // a stale/missing CRL rejects every device of this anchor (not only il3)
	RequireCRL      bool          // no CRL loaded at all counts as revocation unknown (always unknown for il3)
	OIDs            policy.OIDs   // certificate-policy OID mapping (policy.DefaultOIDs() for nacd's own CA)
	// Revocations, when set, answers revocation for the certificates it
	// covers (nacd's own CA: CA.RevocationSet, Source "store") before any
	// CRL is consulted; CRLs still cover the rest of the chain.
	Revocations RevocationChecker
}

// Option configures a TrustStore.
type Option func(*options)

type options struct {
	logger *zap.Logger
	reg    prometheus.Registerer
	client *http.Client

	chainCache    int // verified-chain cache entries (WithChainCacheSize)
	chainCacheSet bool
}

// WithLogger sets the logger (default: no-op).
func WithLogger(l *zap.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegisterer registers the store's metrics on r (default: none).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.reg = r } }

// WithHTTPClient sets the client used to fetch CRLs over http(s). It must
// have timeouts (Timeout, or a Transport with dial/header timeouts); the
// default allows 15 s per fetch and follows at most 3 http(s) redirects.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// TrustStore holds the parsed trust anchors and their CRLs. VerifyClient,
// Fresh and the refresh loop may run concurrently with Reload.
type TrustStore struct {
	opts    options
	log     *zap.Logger
	metrics *metrics

	state  atomic.Pointer[storeState]
	reload sync.Mutex    // serialises Reload and refreshes
	kick   chan struct{} // wakes the refresh loop after Reload
	start  sync.Once
}

// storeState is an immutable set of anchors, swapped whole by Reload.
type storeState struct {
	anchors []*anchor
	chains  *chainCache // verified chains of these anchors (nil: off)
}

// anchor is one parsed trust anchor. Everything but crls is immutable.
type anchor struct {
	cfg     AnchorConfig
	refresh time.Duration
	roots   *x509.CertPool
	inter   *x509.CertPool      // intermediates from the CA files (nil if none)
	cas     []*x509.Certificate // every CA certificate from the files (CRL issuers)
	sources []*crlSource
	crls    atomic.Pointer[crlIndex]
}

// crlSource is one configured CRL location and its last good CRL. Its
// mutable fields are guarded by TrustStore.reload.
type crlSource struct {
	loc     string
	isURL   bool
	cur     atomic.Pointer[loadedCRL] // last good CRL; nil until one loads
	nextDue time.Time
	lastErr error
}

// crlIndex maps an issuer's public key (RawSubjectPublicKeyInfo) to its CRL.
type crlIndex struct {
	byKey    map[string]*loadedCRL
	unloaded bool // a configured source has no CRL loaded
}

// NewTrustStore loads the anchors' CA files and CRLs now. It fails, naming
// the anchor and file, when a CA file cannot be read or holds no
// certificate, or a CRL cannot be read or parsed, is not signed by a CA
// certificate of its anchor, or is of an unsupported kind. A CRL URL that
// cannot be fetched is not fatal: it is logged, counted, and retried by the
// refresh loop; until it loads, the anchor's devices get the missing-CRL
// treatment (see VerifyClient).
func NewTrustStore(anchors []AnchorConfig, opts ...Option) (*TrustStore, error) {
	ts := &TrustStore{kick: make(chan struct{}, 1)}
	for _, o := range opts {
		o(&ts.opts)
	}
	ts.log = ts.opts.logger
	if ts.log == nil {
		ts.log = zap.NewNop()
	}
	ts.log = ts.log.Named("pki")
	if ts.opts.client == nil {
		ts.opts.client = defaultHTTPClient()
	}
	ts.metrics = newMetrics(ts)
	st, err := ts.build(context.Background(), anchors, nil)
	if err != nil {
		return nil, err
	}
	ts.state.Store(st)
	if ts.opts.reg != nil {
		if err := ts.metrics.register(ts.opts.reg); err != nil {
			return nil, fmt.Errorf("pki: register metrics: %w", err)
		}
	}
	return ts, nil
}

// Reload parses anchors and swaps them in atomically; on error the old
// anchors stay in use. A CRL URL that cannot be fetched keeps the CRL the
// old anchor of the same name had from the same source, if any.
func (ts *TrustStore) Reload(anchors []AnchorConfig) error {
	ts.reload.Lock()
	defer ts.reload.Unlock()
	st, err := ts.build(context.Background(), anchors, ts.state.Load())
	if err != nil {
		return err
	}
	ts.state.Store(st)
	select {
	case ts.kick <- struct{}{}:
	default:
	}
	ts.log.Info("trust anchors reloaded", zap.Int("anchors", len(st.anchors)))
	return nil
}

func (ts *TrustStore) build(ctx context.Context, cfgs []AnchorConfig, old *storeState) (*storeState, error) {
	if len(cfgs) == 0 {
		return nil, errors.New("pki: no trust anchors configured")
	}
	size := DefaultChainCacheSize
	if ts.opts.chainCacheSet {
		size = ts.opts.chainCache
	}
	st := &storeState{chains: newChainCache(size)}
	seen := map[string]bool{}
	now := time.Now()
	for _, cfg := range cfgs {
		if cfg.Name == "" {
			return nil, errors.New("pki: trust anchor with an empty name")
		}
		if seen[cfg.Name] {
			return nil, fmt.Errorf("pki: trust anchor %q configured twice", cfg.Name)
		}
		seen[cfg.Name] = true
		a, err := ts.buildAnchor(ctx, cfg, old, now)
		if err != nil {
			return nil, err
		}
		st.anchors = append(st.anchors, a)
	}
	return st, nil
}

func (ts *TrustStore) buildAnchor(ctx context.Context, cfg AnchorConfig, old *storeState, now time.Time) (*anchor, error) {
	a := &anchor{cfg: cfg, refresh: cfg.CRLRefresh, roots: x509.NewCertPool()}
	if a.refresh <= 0 {
		a.refresh = DefaultCRLRefresh
	}
	if cfg.CRLMaxAge < 0 {
		return nil, fmt.Errorf("pki: trust anchor %q: negative CRL max age", cfg.Name)
	}
	if err := cfg.OIDs.Validate(); err != nil {
		return nil, fmt.Errorf("pki: trust anchor %q: %w", cfg.Name, err)
	}
	if len(cfg.CAFiles) == 0 {
		return nil, fmt.Errorf("pki: trust anchor %q: no CA files", cfg.Name)
	}
	nroots := 0
	for _, f := range cfg.CAFiles {
		certs, err := readCertFile(f)
		if err != nil {
			return nil, fmt.Errorf("pki: trust anchor %q: CA file %s: %w", cfg.Name, f, err)
		}
		for _, c := range certs {
			if !c.BasicConstraintsValid || !c.IsCA {
				return nil, fmt.Errorf("pki: trust anchor %q: CA file %s: %q is not a CA certificate", cfg.Name, f, c.Subject.String())
			}
			a.cas = append(a.cas, c)
			if isSelfSigned(c) {
				a.roots.AddCert(c)
				nroots++
				continue
			}
			if a.inter == nil {
				a.inter = x509.NewCertPool()
			}
			a.inter.AddCert(c)
		}
	}
	if nroots == 0 {
		// Only intermediates: they are the anchor (a deployment may trust
		// an issuing CA without its root). Verify then ends at them.
		a.roots = a.inter
		a.inter = nil
	}
	var oldA *anchor
	if old != nil {
		for _, o := range old.anchors {
			if o.cfg.Name == cfg.Name {
				oldA = o
			}
		}
	}
	for _, loc := range cfg.CRLs {
		isURL, err := sourceKind(loc)
		if err != nil {
			return nil, fmt.Errorf("pki: trust anchor %q: CRL %s: %w", cfg.Name, loc, err)
		}
		src := &crlSource{loc: loc, isURL: isURL}
		c, err := ts.loadSource(ctx, a, src)
		if err != nil {
			if !isURL || !isFetchError(err) {
				ts.metrics.refreshError(cfg.Name)
				return nil, fmt.Errorf("pki: trust anchor %q: CRL %s: %w", cfg.Name, loc, err)
			}
			ts.metrics.refreshError(cfg.Name)
			ts.log.Warn("CRL fetch failed at load; will retry",
				zap.String("anchor", cfg.Name), zap.String("source", loc), zap.Error(err))
			if oldA != nil {
				for _, o := range oldA.sources {
					if c := o.cur.Load(); o.loc == loc && c != nil && a.isCA(c.issuer) {
						src.cur.Store(c)
					}
				}
			}
		} else {
			src.cur.Store(c)
			ts.log.Info("CRL loaded", zap.String("anchor", cfg.Name), zap.String("source", loc),
				zap.Time("this_update", c.thisUpdate), zap.Time("next_update", c.nextUpdate), zap.Int("revoked", len(c.revoked)))
		}
		src.nextDue = a.nextDue(src, now)
		a.sources = append(a.sources, src)
	}
	a.rebuildIndex()
	return a, nil
}

// fetchError marks a failure to obtain the bytes of a URL source (network,
// HTTP status), as opposed to bad content.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

func isFetchError(err error) bool {
	var fe *fetchError
	return errors.As(err, &fe)
}

// loadSource reads and parses one CRL source against a's CA certificates.
func (ts *TrustStore) loadSource(ctx context.Context, a *anchor, src *crlSource) (*loadedCRL, error) {
	var (
		data []byte
		err  error
	)
	if src.isURL {
		data, err = fetchCRL(ctx, ts.opts.client, src.loc)
		if err != nil {
			return nil, &fetchError{err}
		}
	} else {
		data, err = readCRLFile(src.loc)
		if err != nil {
			return nil, err
		}
	}
	digest := sha256.Sum256(data)
	if cur := src.cur.Load(); cur != nil && cur.digest == digest {
		return cur, nil // unchanged bytes: already parsed and verified
	}
	c, err := parseCRL(data, src.loc, a.cas)
	if err != nil {
		return nil, err
	}
	c.digest = digest
	return c, nil
}

func (a *anchor) isCA(c *x509.Certificate) bool {
	for _, x := range a.cas {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// rebuildIndex publishes the sources' current CRLs. When two sources carry
// a CRL of the same issuer key, the newer one (ThisUpdate) wins.
func (a *anchor) rebuildIndex() {
	idx := &crlIndex{byKey: make(map[string]*loadedCRL, len(a.sources))}
	for _, s := range a.sources {
		c := s.cur.Load()
		if c == nil {
			idx.unloaded = true
			continue
		}
		k := string(c.issuer.RawSubjectPublicKeyInfo)
		if prev, ok := idx.byKey[k]; ok && !c.thisUpdate.After(prev.thisUpdate) {
			continue
		}
		idx.byKey[k] = c
	}
	a.crls.Store(idx)
}

func readCertFile(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil && string(c.RawSubject) == string(c.RawIssuer)
}

// Start starts the CRL refresh loop in a goroutine and returns; the loop
// re-reads files and re-fetches URLs every anchor's CRLRefresh, keeps the last
// good CRL on failure, and stops when ctx is done. Calls after the first do
// nothing.
func (ts *TrustStore) Start(ctx context.Context) {
	ts.start.Do(func() { go ts.loop(ctx) })
}

func (ts *TrustStore) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := ts.refreshDue(ctx, time.Now())
		d := time.Until(next)
		if d < time.Second {
			d = time.Second
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-ts.kick:
		case <-timer.C:
		}
	}
}

// refreshDue refreshes every source whose time has come and returns when the
// next one is due.
func (ts *TrustStore) refreshDue(ctx context.Context, now time.Time) time.Time {
	ts.reload.Lock()
	defer ts.reload.Unlock()
	next := now.Add(DefaultCRLRefresh)
	for _, a := range ts.state.Load().anchors {
		changed := false
		for _, s := range a.sources {
			if !now.Before(s.nextDue) {
				if ctx.Err() != nil {
					return next
				}
				changed = ts.refreshSource(ctx, a, s) || changed
				s.nextDue = a.nextDue(s, time.Now())
			}
			if s.nextDue.Before(next) {
				next = s.nextDue
			}
		}
		if changed {
			a.rebuildIndex()
		}
	}
	return next
}

// Refresh re-reads every CRL source now (the refresh loop does this on its
// timer). It returns the errors joined; every failed source keeps its last
// good CRL.
func (ts *TrustStore) Refresh(ctx context.Context) error {
	ts.reload.Lock()
	defer ts.reload.Unlock()
	var errs []error
	for _, a := range ts.state.Load().anchors {
		changed := false
		for _, s := range a.sources {
			ok := ts.refreshSource(ctx, a, s)
			if !ok && s.lastErr != nil {
				errs = append(errs, fmt.Errorf("pki: trust anchor %q: CRL %s: %w", a.cfg.Name, s.loc, s.lastErr))
			}
			changed = ok || changed
			s.nextDue = a.nextDue(s, time.Now())
		}
		if changed {
			a.rebuildIndex()
		}
	}
	return errors.Join(errs...)
}

// refreshSource loads s again; when it changed and is good it replaces
// s.cur and reports true. A CRL older than the current one (lower CRL number or earlier
// ThisUpdate, same issuer) is refused: serving an old CRL must not undo a
// revocation.
func (ts *TrustStore) refreshSource(ctx context.Context, a *anchor, s *crlSource) bool {
	cur := s.cur.Load()
	c, err := ts.loadSource(ctx, a, s)
	if err == nil && cur != nil && cur.issuer.Equal(c.issuer) && olderCRL(c, cur) {
		err = fmt.Errorf("%w (this update %s, loaded %s)", ErrCRLRollback,
			c.thisUpdate.UTC().Format(time.RFC3339), cur.thisUpdate.UTC().Format(time.RFC3339))
	}
	s.lastErr = err
	if err == nil && c == cur {
		return false // unchanged
	}
	if err != nil {
		ts.metrics.refreshError(a.cfg.Name)
		fields := []zap.Field{zap.String("anchor", a.cfg.Name), zap.String("source", s.loc), zap.Error(err)}
		if cur != nil {
			fields = append(fields, zap.Time("kept_this_update", cur.thisUpdate), zap.Time("kept_next_update", cur.nextUpdate))
		}
		ts.log.Warn("CRL refresh failed; keeping the last good CRL", fields...)
		return false
	}
	s.cur.Store(c)
	ts.log.Debug("CRL refreshed", zap.String("anchor", a.cfg.Name), zap.String("source", s.loc),
		zap.Time("this_update", c.thisUpdate), zap.Time("next_update", c.nextUpdate), zap.Int("revoked", len(c.revoked)))
	return true
}

// minRetry is the shortest wait between two loads of one CRL source.
const minRetry = 30 * time.Second

// nextDue is when s should be loaded again: after the anchor's refresh
// interval, or sooner when s has no CRL yet or its CRL reaches NextUpdate
// first, but never sooner than minRetry (or the interval, if shorter).
func (a *anchor) nextDue(s *crlSource, now time.Time) time.Time {
	due := now.Add(a.refresh)
	floor := now.Add(min(a.refresh, minRetry))
	c := s.cur.Load()
	switch {
	case c == nil:
		due = floor
	case !c.nextUpdate.IsZero() && c.nextUpdate.Before(due):
		due = c.nextUpdate
	}
	if due.Before(floor) {
		due = floor
	}
	return due
}

func olderCRL(n, cur *loadedCRL) bool {
	if n.number != nil && cur.number != nil {
		return n.number.Cmp(cur.number) < 0
	}
	return n.thisUpdate.Before(cur.thisUpdate)
}

// Fresh reports whether every CRL source of every anchor has a CRL loaded
// that is not stale at now, and every anchor with RequireCRL has a CRL
// (a readiness check). An anchor without CRL sources and without RequireCRL
// does not count.
func (ts *TrustStore) Fresh(now time.Time) bool { return ts.CheckFresh(now) == nil }

// CheckFresh is Fresh with the reasons, naming the anchors and sources.
func (ts *TrustStore) CheckFresh(now time.Time) error {
	var errs []error
	for _, a := range ts.state.Load().anchors {
		if a.cfg.RequireCRL && len(a.sources) == 0 {
			errs = append(errs, fmt.Errorf("trust anchor %q: CRL required but none configured", a.cfg.Name))
		}
		for _, s := range a.sources {
			switch c := s.cur.Load(); {
			case c == nil:
				errs = append(errs, fmt.Errorf("trust anchor %q: CRL %s not loaded", a.cfg.Name, s.loc))
			case c.stale(now, a.cfg.CRLMaxAge):
				errs = append(errs, fmt.Errorf("trust anchor %q: CRL %s stale (this update %s, next update %s)", a.cfg.Name, s.loc,
					c.thisUpdate.UTC().Format(time.RFC3339), c.nextUpdate.UTC().Format(time.RFC3339)))
			}
		}
	}
	return errors.Join(errs...)
}
