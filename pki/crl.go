package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxCRLSize caps the bytes read from one CRL source (file or URL).
const MaxCRLSize = 10 << 20

// Errors callers may branch on (wrapped with the anchor, source and detail).
var (
	ErrCRLSignature   = errors.New("pki: CRL signature does not verify with its issuer's certificate")
	ErrCRLIssuer      = errors.New("pki: CRL issuer is not a CA certificate of the anchor")
	ErrCRLUnsupported = errors.New("pki: unsupported CRL")
	ErrCRLRollback    = errors.New("pki: CRL is older than the one already loaded")
	ErrCRLTooLarge    = errors.New("pki: CRL exceeds the size limit")
	ErrCRLSource      = errors.New("pki: bad CRL source")
)

var (
	oidExtIssuingDistributionPoint = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidExtDeltaCRLIndicator        = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidExtCRLNumber                = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidExtAuthorityKeyID           = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtFreshestCRL              = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidExtAuthorityInfoAccess      = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}
)

// loadedCRL is one parsed CRL whose signature verified with issuer. It is
// immutable once built.
type loadedCRL struct {
	source     string
	issuer     *x509.Certificate // the CA certificate whose key signed it
	thisUpdate time.Time
	nextUpdate time.Time // zero when absent
	number     *big.Int  // nil when absent
	digest     [32]byte  // SHA-256 of the bytes it was parsed from
	revoked    map[string]struct{}
	// Scope from the issuingDistributionPoint extension.
	onlyUser, onlyCA bool
}

// covers reports whether the CRL's scope includes cert.
func (c *loadedCRL) covers(cert *x509.Certificate) bool {
	isCA := cert.BasicConstraintsValid && cert.IsCA
	if c.onlyUser && isCA {
		return false
	}
	if c.onlyCA && !isCA {
		return false
	}
	return true
}

// stale reports whether the CRL is stale at now: past NextUpdate, older than
// maxAge (when maxAge > 0), or without NextUpdate and without maxAge (it
// then states no freshness at all, so it is never fresh).
func (c *loadedCRL) stale(now time.Time, maxAge time.Duration) bool {
	if c.nextUpdate.IsZero() {
		if maxAge <= 0 {
			return true
		}
	} else if now.After(c.nextUpdate) {
		return true
	}
	return maxAge > 0 && now.Sub(c.thisUpdate) > maxAge
}

// serialKey writes a map key for s into buf without allocating for serials
// up to 39 bytes (RFC 5280 allows 20); longer serials allocate.
func serialKey(buf *[40]byte, s *big.Int) []byte {
	if s == nil {
		return nil
	}
	n := (s.BitLen() + 7) / 8
	var b []byte
	if n+1 <= len(buf) {
		b = buf[:n+1]
	} else {
		b = make([]byte, n+1)
	}
	b[0] = 0
	if s.Sign() < 0 {
		b[0] = 1
	}
	s.FillBytes(b[1:])
	return b
}

func (c *loadedCRL) isRevoked(s *big.Int) bool {
	var buf [40]byte
	_, ok := c.revoked[string(serialKey(&buf, s))]
	return ok
}

// isURL reports whether source is an http(s) URL; other schemes are refused.
func sourceKind(source string) (isURL bool, err error) {
	if source == "" {
		return false, fmt.Errorf("%w: empty source", ErrCRLSource)
	}
	i := strings.Index(source, "://")
	if i < 0 {
		return false, nil
	}
	u, err := url.Parse(source)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrCRLSource, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		if u.Host == "" {
			return false, fmt.Errorf("%w: %q has no host", ErrCRLSource, source)
		}
		return true, nil
	default:
		return false, fmt.Errorf("%w: scheme %q (only files and http/https URLs)", ErrCRLSource, u.Scheme)
	}
}

// readCRLFile reads a CRL file, refusing more than MaxCRLSize bytes.
func readCRLFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f)
}

func readCapped(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxCRLSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxCRLSize {
		return nil, fmt.Errorf("%w (%d bytes)", ErrCRLTooLarge, MaxCRLSize)
	}
	return data, nil
}

// fetchCRL GETs a CRL over http(s) with client (whose timeouts bound the
// call) and ctx.
func fetchCRL(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCRLSource, err)
	}
	req.Header.Set("Accept", "application/pkix-crl, application/x-pkcs7-crl;q=0.5, */*;q=0.1")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("http status %s", resp.Status)
	}
	if resp.ContentLength > MaxCRLSize {
		return nil, fmt.Errorf("%w (Content-Length %d)", ErrCRLTooLarge, resp.ContentLength)
	}
	return readCapped(resp.Body)
}

// defaultHTTPClient has strict timeouts: a CRL server that accepts and never
// answers must not hold a refresh for long.
func defaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			MaxIdleConns:          4,
			IdleConnTimeout:       30 * time.Second,
		},
		CheckRedirect: checkRedirect,
	}
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("too many redirects")
	}
	if s := req.URL.Scheme; s != "http" && s != "https" {
		return fmt.Errorf("redirect to scheme %q refused", s)
	}
	return nil
}

// parseCRL parses DER or PEM ("X509 CRL") CRL bytes, finds its issuer among
// cas (subject match + signature) and returns it with the revoked serials
// indexed. It refuses delta CRLs, indirect CRLs, CRLs partitioned by reason
// and CRLs with unknown critical extensions: using them as complete CRLs
// would miss revocations.
func parseCRL(data []byte, source string, cas []*x509.Certificate) (*loadedCRL, error) {
	der := data
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		block, _ := pem.Decode(bytes.TrimSpace(data))
		if block == nil {
			return nil, fmt.Errorf("%w: bad PEM", ErrCRLUnsupported)
		}
		if block.Type != "X509 CRL" {
			return nil, fmt.Errorf("%w: PEM block %q, want \"X509 CRL\"", ErrCRLUnsupported, block.Type)
		}
		der = block.Bytes
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("parse CRL: %w", err)
	}
	c := &loadedCRL{
		source:     source,
		thisUpdate: rl.ThisUpdate,
		nextUpdate: rl.NextUpdate,
		number:     rl.Number,
	}
	for _, ext := range rl.Extensions {
		switch {
		case ext.Id.Equal(oidExtDeltaCRLIndicator):
			return nil, fmt.Errorf("%w: delta CRL", ErrCRLUnsupported)
		case ext.Id.Equal(oidExtIssuingDistributionPoint):
			if err := c.parseIDP(ext.Value); err != nil {
				return nil, err
			}
		case ext.Id.Equal(oidExtCRLNumber), ext.Id.Equal(oidExtAuthorityKeyID),
			ext.Id.Equal(oidExtFreshestCRL), ext.Id.Equal(oidExtAuthorityInfoAccess):
		default:
			if ext.Critical {
				return nil, fmt.Errorf("%w: unknown critical extension %s", ErrCRLUnsupported, ext.Id)
			}
		}
	}
	var sigErr error
	for _, ca := range cas {
		if !bytes.Equal(ca.RawSubject, rl.RawIssuer) {
			continue
		}
		if err := rl.CheckSignatureFrom(ca); err != nil {
			sigErr = err
			continue
		}
		c.issuer = ca
		break
	}
	if c.issuer == nil {
		if sigErr != nil {
			return nil, fmt.Errorf("%w (issuer %q): %v", ErrCRLSignature, rl.Issuer.String(), sigErr)
		}
		return nil, fmt.Errorf("%w: issuer %q (add the issuing CA certificate to the anchor's CA files)", ErrCRLIssuer, rl.Issuer.String())
	}
	c.revoked = make(map[string]struct{}, len(rl.RevokedCertificateEntries))
	var buf [40]byte
	for i := range rl.RevokedCertificateEntries {
		e := &rl.RevokedCertificateEntries[i]
		for _, ext := range e.Extensions {
			if ext.Critical {
				// e.g. certificateIssuer (indirect CRLs): the entry may not be
				// about this issuer's certificates.
				return nil, fmt.Errorf("%w: critical entry extension %s", ErrCRLUnsupported, ext.Id)
			}
		}
		c.revoked[string(serialKey(&buf, e.SerialNumber))] = struct{}{}
	}
	return c, nil
}

// parseIDP reads the issuingDistributionPoint extension (RFC 5280 5.2.5).
func (c *loadedCRL) parseIDP(v []byte) error {
	s := cryptobyte.String(v)
	var seq cryptobyte.String
	if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || !s.Empty() {
		return fmt.Errorf("%w: malformed issuingDistributionPoint", ErrCRLUnsupported)
	}
	// distributionPoint [0] (constructed): ignored (names where it is published).
	if !seq.SkipOptionalASN1(cbasn1.Tag(0).ContextSpecific().Constructed()) {
		return fmt.Errorf("%w: malformed issuingDistributionPoint", ErrCRLUnsupported)
	}
	readBool := func(tag cbasn1.Tag) (bool, error) {
		var present bool
		var val cryptobyte.String
		if !seq.ReadOptionalASN1(&val, &present, tag.ContextSpecific()) {
			return false, fmt.Errorf("%w: malformed issuingDistributionPoint", ErrCRLUnsupported)
		}
		if !present {
			return false, nil
		}
		if len(val) != 1 {
			return false, fmt.Errorf("%w: malformed issuingDistributionPoint boolean", ErrCRLUnsupported)
		}
		return val[0] != 0, nil
	}
	var err error
	if c.onlyUser, err = readBool(1); err != nil {
		return err
	}
	if c.onlyCA, err = readBool(2); err != nil {
		return err
	}
	if seq.PeekASN1Tag(cbasn1.Tag(3).ContextSpecific()) {
		return fmt.Errorf("%w: CRL partitioned by reason (onlySomeReasons)", ErrCRLUnsupported)
	}
	indirect, err := readBool(4)
	if err != nil {
		return err
	}
	if indirect {
		return fmt.Errorf("%w: indirect CRL", ErrCRLUnsupported)
	}
	attr, err := readBool(5)
	if err != nil {
		return err
	}
	if attr {
		return fmt.Errorf("%w: CRL of attribute certificates only", ErrCRLUnsupported)
	}
	return nil
}
