package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// HTTP API limits and timeouts (the PKI listener faces devices).
const (
	DefaultMaxBodyBytes = 64 << 10
	maxOCSPRequestBytes = 8 << 10
	// AdminTokenFileName is the admin bearer token's file in the data dir
	// (0600), read by the CLI on the same host.
	AdminTokenFileName = "admin.token"
)

// Authority is what the HTTP API needs from the CA (*CA implements it).
type Authority interface {
	Issuer
	StatusSource
	Renew(ctx context.Context, cur *x509.Certificate, csr *x509.CertificateRequest, by string) ([]*x509.Certificate, error)
	Revoke(ctx context.Context, serial string, reason RevocationReason, by string) error
	RevokeDevice(ctx context.Context, deviceUUID string, reason RevocationReason, by string) ([]string, error)
	RevokeHolder(ctx context.Context, email string, reason RevocationReason, by string) ([]string, error)
	List(ctx context.Context, filter ListFilter) ([]Record, error)
	CRL(ctx context.Context) ([]byte, error)
	Root() *x509.Certificate
	Intermediate() *x509.Certificate
	Signer() crypto.Signer
}

// APIConfig configures the PKI HTTP API.
type APIConfig struct {
	CA       Authority
	Enroller *Enroller
	// AdminTokenFile holds the admin bearer token (created 0600 with a
	// random token when missing; refused when group/world readable). ""
	// disables bearer authentication (mTLS only).
	AdminTokenFile string
	// AdminSubjects lists the admin client certificates: an entry matches
	// a certificate issued by this CA, not revoked, whose subject CN or
	// URI SAN (urn:uuid:...) equals it.
	AdminSubjects []string
	MaxBodyBytes  int64         // default 64 KiB
	OCSPValidity  time.Duration // default 1h
	Logger        *zap.Logger   // operational (default no-op)
	AccessLog     *zap.Logger   // audit: admin actions with who did them (default no-op)
	Registerer    prometheus.Registerer
}

// API is nacd's PKI HTTP API (design section 5):
//
//	POST /v1/enroll              Bearer <enrolment token>, body: CSR (PEM or DER) -> 201 PEM chain
//	POST /v1/enroll/pkcs12       Bearer <enrolment token>, JSON {key_type, password?} -> 201 JSON {pkcs12, password, ...}
//	GET  /enroll?token=T         the instructions for a token (does not consume it)
//	POST /v1/renew               mTLS with the device's valid certificate, body: CSR -> 201 PEM chain
//	POST /v1/admin/tokens        admin: create an invitation -> 201 JSON
//	POST /v1/admin/issue         admin: issue from a CSR with facts -> 201 JSON
//	POST /v1/admin/revoke        admin: {serial|device|holder, reason} -> 200 JSON
//	GET  /v1/admin/certificates  admin: ?holder=&device=&status=&expiring=30d&kind=device|server -> 200 JSON
//	GET  /crl                    the CRL, DER (PEM with Accept: application/x-pem-file or ?format=pem)
//	POST /ocsp, GET /ocsp/{b64}  RFC 6960 OCSP
//	GET  /ca.crt                 the root certificate (PEM)
//
// Serve it with ServeSplit (one port: TLS gets everything, plain HTTP only
// /crl, /ocsp and /ca.crt, so certificates can name http://<listen>/crl as
// their CRL Distribution Point), or Serve (TLS) plus ServePublic (plain
// HTTP) on two listeners.
//
// Errors are JSON {"error": code, "reason": text}. Enrolment: an unknown,
// malformed or missing token and an expired token are 401
// (token_invalid, token_expired); a used token is 409 (token_used); a bad
// CSR is 400 (bad_csr, csr_signature, weak_key, csr_mismatch); a body over
// the cap is 413. Admin: no credentials or a wrong token 401, a
// certificate that is not an admin's 403.
//
// The API must never issue for a refused token or CSR, never accept an
// admin action without naming who did it in the audit log, and never log
// a token, a password or a key.
type API struct {
	cfg      APIConfig
	log      *zap.Logger
	audit    *zap.Logger
	ocsp     *OCSPResponder
	adminSum []byte // SHA-256 of the admin token; nil: bearer auth off
	admins   map[string]bool
	requests *prometheus.CounterVec
	ocspRes  *prometheus.CounterVec
}

// NewAPI checks cfg, loads (or creates) the admin token and registers
// nacd_pki_http_requests_total and nacd_pki_ocsp_responses_total.
func NewAPI(cfg APIConfig) (*API, error) {
	if cfg.CA == nil {
		return nil, errors.New("pki: API needs a CA")
	}
	if cfg.CA.Intermediate() == nil || cfg.CA.Signer() == nil {
		return nil, errors.New("pki: API: the CA has no intermediate certificate or key")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	a := &API{cfg: cfg, log: cfg.Logger, audit: cfg.AccessLog, admins: map[string]bool{}}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	a.log = a.log.Named("pki-http")
	if a.audit == nil {
		a.audit = zap.NewNop()
	}
	for _, s := range cfg.AdminSubjects {
		if s = strings.TrimSpace(s); s != "" {
			a.admins[strings.ToLower(s)] = true
		}
	}
	if cfg.AdminTokenFile != "" {
		tok, err := EnsureAdminToken(cfg.AdminTokenFile)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256([]byte(tok))
		a.adminSum = sum[:]
	}
	a.ocsp = &OCSPResponder{Issuer: cfg.CA.Intermediate(), Signer: cfg.CA.Signer(), Source: cfg.CA,
		Validity: cfg.OCSPValidity, Log: a.log}
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nacd_pki_http_requests_total",
		Help: "PKI HTTP API requests by route and status code.",
	}, []string{"route", "code"})
	a.ocspRes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nacd_pki_ocsp_responses_total",
		Help: "OCSP responses by result (good, revoked, unknown, malformed, unauthorized, internal-error).",
	}, []string{"result"})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{a.requests, a.ocspRes} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("pki: register API metrics: %w", err)
			}
		}
	}
	return a, nil
}

// EnsureAdminToken returns the admin bearer token in path, creating the
// file (0600, its directory 0700) with a random token when it does not
// exist. A file readable by group or others is refused.
func EnsureAdminToken(path string) (string, error) {
	tok, err := ReadAdminToken(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return tok, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("pki: admin token: %w", err)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok = "nacdadm_" + base64.RawURLEncoding.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) { // another process won the race
			return ReadAdminToken(path)
		}
		return "", fmt.Errorf("pki: admin token: %w", err)
	}
	if _, err := f.WriteString(tok + "\n"); err != nil {
		f.Close()
		return "", fmt.Errorf("pki: admin token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("pki: admin token: %w", err)
	}
	return tok, nil
}

// ReadAdminToken reads the admin bearer token from path, refusing a file
// that group or others can read.
func ReadAdminToken(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("pki: admin token: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("pki: admin token %s: mode %04o, want 0600", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("pki: admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 {
		return "", fmt.Errorf("pki: admin token %s: too short", path)
	}
	return tok, nil
}

// TLSConfig is the listener's TLS configuration: cert as the server
// certificate, client certificates optional but, when sent, verified
// against this CA (renewal and admin use them), TLS 1.2 minimum.
func (a *API) TLSConfig(cert tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	if r := a.cfg.CA.Root(); r != nil {
		pool.AddCert(r)
	}
	pool.AddCert(a.cfg.CA.Intermediate())
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}
}

// NewServer returns an http.Server for h with the API's timeouts and
// header cap; tlsConf may be nil (plain HTTP, for /crl and /ocsp).
func NewServer(h http.Handler, tlsConf *tls.Config, errLog *zap.Logger) *http.Server {
	s := &http.Server{
		Handler:           h,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	if errLog != nil {
		if l, err := zap.NewStdLogAt(errLog.Named("pki-http"), zap.DebugLevel); err == nil {
			s.ErrorLog = l
		}
	}
	return s
}

// Serve serves the full API over TLS on ln with cert until ctx ends, then
// shuts down gracefully (5 s).
func (a *API) Serve(ctx context.Context, ln net.Listener, cert tls.Certificate) error {
	srv := NewServer(a.Handler(), a.TLSConfig(cert), a.log)
	return serveUntil(ctx, srv, tls.NewListener(ln, srv.TLSConfig))
}

// ServePublic serves only /crl, /ocsp and /ca.crt over plain HTTP on ln
// (the CRL Distribution Point and OCSP URL of issued certificates) until
// ctx ends.
func (a *API) ServePublic(ctx context.Context, ln net.Listener) error {
	return serveUntil(ctx, NewServer(a.PublicHandler(), nil, a.log), ln)
}

func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		<-errc
		return err
	}
}

// Handler is the whole API (serve it over TLS).
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	a.public(mux)
	mux.HandleFunc("POST /v1/enroll", a.count("enroll", a.handleEnroll))
	mux.HandleFunc("POST /v1/enroll/pkcs12", a.count("enroll-pkcs12", a.handleEnrollPKCS12))
	mux.HandleFunc("GET /enroll", a.count("enroll-page", a.handleEnrollPage))
	mux.HandleFunc("POST /v1/renew", a.count("renew", a.handleRenew))
	mux.HandleFunc("POST /v1/admin/tokens", a.count("admin-tokens", a.admin(a.handleAdminToken)))
	mux.HandleFunc("POST /v1/admin/issue", a.count("admin-issue", a.admin(a.handleAdminIssue)))
	mux.HandleFunc("POST /v1/admin/revoke", a.count("admin-revoke", a.admin(a.handleAdminRevoke)))
	mux.HandleFunc("GET /v1/admin/certificates", a.count("admin-list", a.admin(a.handleAdminList)))
	mux.HandleFunc("/", a.count("other", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	}))
	return a.ocspGET(mux)
}

// PublicHandler serves /crl, /ocsp and /ca.crt only.
func (a *API) PublicHandler() http.Handler {
	mux := http.NewServeMux()
	a.public(mux)
	mux.HandleFunc("/", a.count("other", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	}))
	return a.ocspGET(mux)
}

func (a *API) public(mux *http.ServeMux) {
	mux.HandleFunc("GET /crl", a.count("crl", a.handleCRL))
	mux.HandleFunc("POST /ocsp", a.count("ocsp", a.handleOCSPPost))
	mux.HandleFunc("POST /ocsp/", a.count("ocsp", a.handleOCSPPost))
	mux.HandleFunc("GET /ca.crt", a.count("ca", a.handleRoot))
}

// ocspGET routes GET /ocsp/{base64} before the mux, which would clean
// (and redirect) the "//" base64 can contain.
func (a *API) ocspGET(next http.Handler) http.Handler {
	get := a.count("ocsp", a.handleOCSPGet)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.EscapedPath(), "/ocsp/") {
			get(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// statusWriter records the status code for the request counter.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (a *API) count(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		a.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
	}
}

// apiError is the JSON error body.
type apiError struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

func writeError(w http.ResponseWriter, code int, errCode, reason string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="nacd"`)
	}
	writeJSON(w, code, apiError{Error: errCode, Reason: reason})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// errorStatus maps an enrolment/CA error to its HTTP status and code.
func errorStatus(err error) (int, string) {
	reason := RejectReason(err)
	switch reason {
	case "token_used":
		return http.StatusConflict, reason
	case "token_expired", "token_invalid":
		return http.StatusUnauthorized, reason
	case "weak_key", "csr_signature", "csr_mismatch", "bad_csr", "bad_request":
		return http.StatusBadRequest, reason
	case "unavailable":
		return http.StatusServiceUnavailable, reason
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, ErrRevoked):
		return http.StatusForbidden, "revoked"
	case errors.Is(err, ErrNotIssuedHere):
		return http.StatusForbidden, "not_issued_here"
	case errors.Is(err, ErrExists):
		return http.StatusConflict, "exists"
	}
	return http.StatusInternalServerError, "internal"
}

// writeErr writes err; internal errors are logged and not echoed.
func (a *API) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	code, ec := errorStatus(err)
	reason := err.Error()
	if code >= 500 {
		a.log.Error("PKI API request failed", zap.String("path", r.URL.Path), zap.Error(err))
		reason = "internal error"
	}
	writeError(w, code, ec, reason)
}

// readBody reads the capped body; ok is false when the response was
// written (413 or 400).
func (a *API) readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", max))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "bad_request", "request body unreadable")
		return nil, false
	}
	return body, true
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func remote(r *http.Request) string { return r.RemoteAddr }

// writeChain writes a PEM chain with 201.
func writeChain(w http.ResponseWriter, chain []*x509.Certificate) {
	w.Header().Set("Content-Type", "application/pem-certificate-chain")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Nacd-Serial", hexSerial(chain[0]))
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(chainPEM(chain))
}

func chainPEM(chain []*x509.Certificate) []byte {
	var b []byte
	for _, c := range chain {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

// enrollInput is what both enrolment endpoints need first: enrolment
// enabled, a bearer token (its absence audit-logged) and the size-capped
// body. It has answered the request when ok is false.
func (a *API) enrollInput(w http.ResponseWriter, r *http.Request) (tok string, body []byte, ok bool) {
	if a.cfg.Enroller == nil {
		writeError(w, http.StatusNotFound, "not_found", "enrolment is not enabled")
		return "", nil, false
	}
	tok, ok = bearer(r)
	if !ok {
		a.cfg.Enroller.reject("", tokenRecord{}, remote(r), fmt.Errorf("%w: no bearer token", ErrTokenInvalid))
		writeError(w, http.StatusUnauthorized, "token_invalid", "an enrolment token is required (Authorization: Bearer)")
		return "", nil, false
	}
	body, ok = a.readBody(w, r, a.cfg.MaxBodyBytes)
	if !ok {
		return "", nil, false
	}
	return tok, body, true
}

func (a *API) handleEnroll(w http.ResponseWriter, r *http.Request) {
	tok, body, ok := a.enrollInput(w, r)
	if !ok {
		return
	}
	chain, err := a.cfg.Enroller.EnrollPEM(r.Context(), tok, body, remote(r))
	if err != nil {
		a.writeErr(w, r, err)
		return
	}
	writeChain(w, chain)
}

// PKCS12Request is the JSON body of POST /v1/enroll/pkcs12 (may be empty).
type PKCS12Request struct {
	KeyType  string `json:"key_type,omitempty"` // ecdsa-p256 (default) | rsa-2048
	Password string `json:"password,omitempty"` // chosen password (>= 16 characters); "" = generated
}

// PKCS12Response is the JSON answer of POST /v1/enroll/pkcs12. The
// password is shown this once (generated or echoed), never stored.
type PKCS12Response struct {
	PKCS12     string    `json:"pkcs12"` // base64 (standard) DER PFX
	Password   string    `json:"password"`
	Serial     string    `json:"serial"`
	DeviceUUID string    `json:"device_uuid"`
	NotAfter   time.Time `json:"not_after"`
}

func (a *API) handleEnrollPKCS12(w http.ResponseWriter, r *http.Request) {
	tok, body, ok := a.enrollInput(w, r)
	if !ok {
		return
	}
	var req PKCS12Request
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := strictJSON(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "body: "+err.Error())
			return
		}
	}
	b, err := a.cfg.Enroller.EnrollPKCS12(r.Context(), tok, req.KeyType, req.Password, remote(r), a.cfg.CA.Root())
	if err != nil {
		a.writeErr(w, r, err)
		return
	}
	leaf := b.Chain[0]
	id := Facts{}
	for _, u := range leaf.URIs {
		if s, ok := strings.CutPrefix(u.String(), "urn:uuid:"); ok {
			id.DeviceUUID = s
		}
	}
	writeJSON(w, http.StatusCreated, PKCS12Response{
		PKCS12: base64.StdEncoding.EncodeToString(b.Data), Password: b.Password,
		Serial: hexSerial(leaf), DeviceUUID: id.DeviceUUID, NotAfter: leaf.NotAfter,
	})
}

func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func (a *API) handleEnrollPage(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Enroller == nil {
		writeError(w, http.StatusNotFound, "not_found", "enrolment is not enabled")
		return
	}
	tok := r.URL.Query().Get("token")
	f, exp, err := a.cfg.Enroller.Lookup(r.Context(), tok)
	if err != nil {
		a.writeErr(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	base := "https://" + r.Host
	inv := Invitation{Token: tok, ID: TokenID(tok), URL: base + "/enroll?token=" + url.QueryEscape(tok), Facts: f, ExpiresAt: exp}
	_, _ = io.WriteString(w, InvitationText(inv, base, "nacd-root.crt")+
		"\nThe CA root for --cacert: "+base+"/ca.crt (compare its fingerprint with the one the service desk gave you).\n")
}

func (a *API) handleRenew(w http.ResponseWriter, r *http.Request) {
	leaf := clientCert(r)
	if leaf == nil {
		writeError(w, http.StatusUnauthorized, "no_client_certificate", "renewal needs the device's current certificate over mutual TLS")
		return
	}
	body, ok := a.readBody(w, r, a.cfg.MaxBodyBytes)
	if !ok {
		return
	}
	csr, err := ParseCSR(body)
	if err == nil {
		err = CheckKey(csr.PublicKey)
	}
	if err == nil {
		if e := csr.CheckSignature(); e != nil {
			err = fmt.Errorf("%w (%v)", ErrCSRSignature, e)
		}
	}
	var chain []*x509.Certificate
	if err == nil {
		chain, err = a.cfg.CA.Renew(r.Context(), leaf, csr, "renew:"+hexSerial(leaf))
	}
	if err != nil {
		a.audit.Warn("renew-rejected", zap.String("event.action", "renew-rejected"), zap.String("event.category", "pki"),
			zap.String("event.outcome", "failure"), zap.String("certificate.serial", hexSerial(leaf)),
			zap.String("event.reason", RejectReason(err)), zap.String("source.address", remote(r)), zap.String("error.message", err.Error()))
		a.writeErr(w, r, err)
		return
	}
	writeChain(w, chain)
}

// clientCert is the verified client certificate of r, or nil.
func clientCert(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	return r.TLS.VerifiedChains[0][0]
}

func (a *API) handleCRL(w http.ResponseWriter, r *http.Request) {
	der, err := a.cfg.CA.CRL(r.Context())
	if err != nil {
		a.writeErr(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "max-age=60")
	accept := r.Header.Get("Accept")
	if r.URL.Query().Get("format") == "pem" || strings.Contains(accept, "application/x-pem-file") || strings.Contains(accept, "text/plain") {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(der)
}

func (a *API) handleRoot(w http.ResponseWriter, r *http.Request) {
	root := a.cfg.CA.Root()
	if root == nil {
		writeError(w, http.StatusNotFound, "not_found", "no root certificate")
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, _ = w.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}))
}

func (a *API) handleOCSPPost(w http.ResponseWriter, r *http.Request) {
	body, ok := a.readBody(w, r, maxOCSPRequestBytes)
	if !ok {
		return
	}
	a.writeOCSP(w, r, body, false)
}

func (a *API) handleOCSPGet(w http.ResponseWriter, r *http.Request) {
	enc := strings.TrimPrefix(r.URL.EscapedPath(), "/ocsp/")
	s, err := url.PathUnescape(enc)
	var der []byte
	if err == nil && len(s) <= 2*maxOCSPRequestBytes {
		der, err = base64.StdEncoding.DecodeString(s)
	}
	if err != nil || len(der) == 0 {
		a.ocspRes.WithLabelValues(string(OCSPMalformed)).Inc()
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(malformedOCSP())
		return
	}
	a.writeOCSP(w, r, der, true)
}

func malformedOCSP() []byte {
	return []byte{0x30, 0x03, 0x0A, 0x01, 0x01}
}

func (a *API) writeOCSP(w http.ResponseWriter, r *http.Request, der []byte, cacheable bool) {
	resp, result := a.ocsp.Respond(r.Context(), der)
	a.ocspRes.WithLabelValues(string(result)).Inc()
	w.Header().Set("Content-Type", "application/ocsp-response")
	if cacheable && (result == OCSPGood || result == OCSPRevoked || result == OCSPUnknown) {
		w.Header().Set("Cache-Control", "max-age=60, public, no-transform, must-revalidate")
	} else {
		w.Header().Set("Cache-Control", "no-store")
	}
	_, _ = w.Write(resp)
}

// serialOf parses a hex serial ("0x" and upper case accepted).
func serialOf(s string) (*big.Int, bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x"), "0X")
	if s == "" || len(s) > 64 {
		return nil, false
	}
	if _, err := hex.DecodeString(strings.Repeat("0", len(s)%2) + s); err != nil {
		return nil, false
	}
	n, ok := new(big.Int).SetString(s, 16)
	return n, ok
}
