package pki

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/policy"
)

// Enrolment token lifetimes.
const (
	DefaultTokenValidity = 72 * time.Hour
	MaxTokenValidity     = 30 * 24 * time.Hour
)

// Enrolment errors callers branch on (errors.Is). ErrTokenUsed (ca.go) is
// the reuse of a consumed token.
var (
	ErrTokenInvalid = errors.New("pki: unknown or malformed enrolment token")
	ErrTokenExpired = errors.New("pki: enrolment token expired")
	// ErrCSRSignature is also ErrBadCSR.
	ErrCSRSignature = fmt.Errorf("%w: signature does not verify", ErrBadCSR)
)

// TokenStore is where enrolment tokens live: CA.Tokens() (bbolt or
// PostgreSQL, shared by every node). Consume must be atomic across
// processes: exactly one caller gets the value.
type TokenStore interface {
	Put(ctx context.Context, id string, value []byte) error
	Get(ctx context.Context, id string) (value []byte, used bool, err error)
	Consume(ctx context.Context, id string) ([]byte, error)
	Delete(ctx context.Context, id string) error
	List(ctx context.Context, fn func(id string, value []byte, used bool) error) error
}

// Issuer signs a CSR with facts (CA.Issue).
type Issuer interface {
	Issue(ctx context.Context, csr *x509.CertificateRequest, f Facts, by string) ([]*x509.Certificate, error)
}

// EnrollConfig configures an Enroller.
type EnrollConfig struct {
	Issuer Issuer     // the CA
	Tokens TokenStore // the CA's token table
	// BaseURL is the PKI listener as devices reach it
	// ("https://127.0.0.1:9443"); enrolment links are BaseURL/enroll?token=.
	BaseURL string
	// Mailer, when set, e-mails invitations (Invite.Mail).
	Mailer *Mailer
	// DefaultValidity of a token (default 72h); no token lives longer than
	// MaxTokenValidity.
	DefaultValidity time.Duration
	Logger          *zap.Logger // operational log (default no-op)
	AccessLog       *zap.Logger // audit: token-created, token-used, token-rejected (default no-op)
	Registerer      prometheus.Registerer
	// Now is the clock (default time.Now); tests move it to expire tokens.
	Now func() time.Time
	// PKCS12Iterations is the PBKDF2 count for client-chosen PKCS#12
	// passwords (default DefaultPKCS12Iterations).
	PKCS12Iterations int
}

// Enroller runs enrolment by one-time token (design section 5, "the
// exchange of e-mails"): Invite binds the facts of a future certificate to a
// random token kept server-side (only its SHA-256 is stored), and Enroll
// issues one certificate for a CSR against it, once. The facts always come
// from the token, never from the CSR.
//
// It must never store or log a token, issue for a token that is unknown,
// expired or used, or issue a certificate whose names differ from the
// token's facts.
type Enroller struct {
	cfg        EnrollConfig
	log        *zap.Logger
	audit      *zap.Logger
	now        func() time.Time
	tokens     *prometheus.CounterVec
	pkcs12Iter int
}

// Token events, the values of the event label of nacd_pki_tokens_total.
const (
	TokenCreated = "created"
	TokenUsed    = "used"
	TokenExpired = "expired" // presented after its expiry
	TokenReused  = "reused"  // presented after it was used
	TokenInvalid = "invalid" // unknown or malformed
)

// NewEnroller checks cfg and registers nacd_pki_tokens_total.
func NewEnroller(cfg EnrollConfig) (*Enroller, error) {
	if cfg.Issuer == nil || cfg.Tokens == nil {
		return nil, errors.New("pki: enroller needs an issuer and a token store")
	}
	if cfg.DefaultValidity <= 0 {
		cfg.DefaultValidity = DefaultTokenValidity
	}
	if cfg.DefaultValidity > MaxTokenValidity {
		return nil, fmt.Errorf("pki: token validity %s exceeds %s", cfg.DefaultValidity, MaxTokenValidity)
	}
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("pki: enrolment base URL %q: want https://host:port", cfg.BaseURL)
		}
		cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	}
	e := &Enroller{cfg: cfg, log: cfg.Logger, audit: cfg.AccessLog, now: cfg.Now, pkcs12Iter: cfg.PKCS12Iterations}
	if e.pkcs12Iter <= 0 {
		e.pkcs12Iter = DefaultPKCS12Iterations
	}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	e.log = e.log.Named("enroll")
	if e.audit == nil {
		e.audit = zap.NewNop()
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nacd_pki_tokens_total",
		Help: "Enrolment token events: created, used, expired (presented after expiry), reused (presented after use), invalid (unknown or malformed).",
	}, []string{"event"})
	for _, ev := range []string{TokenCreated, TokenUsed, TokenExpired, TokenReused, TokenInvalid} {
		e.tokens.WithLabelValues(ev)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(e.tokens); err != nil {
			return nil, fmt.Errorf("pki: register token metrics: %w", err)
		}
	}
	return e, nil
}

// Invite is a request for an enrolment token.
type Invite struct {
	Email        string
	Role         policy.Role
	Ownership    policy.Ownership
	ClearanceIL3 bool
	DeviceName   string        // subject CN of the certificate ("" = the e-mail)
	Valid        time.Duration // token lifetime (0 = the default, 72h)
	By           string        // who asked (operator, "admin-api:<cn>"), for the audit log
	Mail         bool          // e-mail the link (needs EnrollConfig.Mailer)
}

// Invitation is a created token. Token is shown once: only its hash is
// stored.
type Invitation struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"` // public token id (hash prefix) for logs and audit
	URL       string    `json:"url,omitempty"`
	Facts     Facts     `json:"-"`
	ExpiresAt time.Time `json:"expires_at"`
	Mailed    bool      `json:"mailed"`
}

// tokenRecord is what the token table holds for a token (JSON), keyed by
// the hex SHA-256 of the token.
type tokenRecord struct {
	Version      int              `json:"v"`
	Email        string           `json:"email"`
	DeviceUUID   string           `json:"device_uuid"`
	DeviceName   string           `json:"device_name"`
	Ownership    policy.Ownership `json:"ownership"`
	Role         policy.Role      `json:"role"`
	ClearanceIL3 bool             `json:"clearance_il3"`
	CreatedAt    time.Time        `json:"created_at"`
	ExpiresAt    time.Time        `json:"expires_at"`
	CreatedBy    string           `json:"created_by"`
}

func (r tokenRecord) facts() Facts {
	return Facts{Email: r.Email, DeviceUUID: r.DeviceUUID, DeviceName: r.DeviceName,
		Ownership: r.Ownership, Role: r.Role, ClearanceIL3: r.ClearanceIL3}
}

// tokenPrefix marks nacd enrolment tokens (secret scanners, humans).
const tokenPrefix = "nacdet_"

// tokenKey returns the table key (hex SHA-256) and the public id of a
// presented token; ok is false when it is not shaped like one of ours.
func tokenKey(tok string) (key, id string, ok bool) {
	raw, found := strings.CutPrefix(tok, tokenPrefix)
	if !found || len(raw) != 43 {
		return "", "", false
	}
	if _, err := base64.RawURLEncoding.DecodeString(raw); err != nil {
		return "", "", false
	}
	sum := sha256.Sum256([]byte(tok))
	key = hex.EncodeToString(sum[:])
	return key, key[:16], true
}

// TokenID returns the public id of a token (as in the audit log), or "".
func TokenID(tok string) string {
	_, id, _ := tokenKey(tok)
	return id
}

// ValidateInvite checks the facts of an invitation.
func ValidateInvite(inv Invite) error {
	addr, err := mail.ParseAddress(inv.Email)
	if err != nil || addr.Address != inv.Email || addr.Name != "" {
		return fmt.Errorf("%w: e-mail %q is not a plain address", ErrBadFacts, inv.Email)
	}
	switch inv.Role {
	case policy.RoleStaff, policy.RoleMember, policy.RoleContractor, policy.RoleVisitor:
	default:
		return fmt.Errorf("%w: role %q (want staff, member, contractor or visitor)", ErrBadFacts, inv.Role)
	}
	switch inv.Ownership {
	case policy.OwnershipCouncilManaged, policy.OwnershipPersonal:
	default:
		return fmt.Errorf("%w: ownership %q (want council-managed or personal)", ErrBadFacts, inv.Ownership)
	}
	if inv.ClearanceIL3 && inv.Ownership != policy.OwnershipCouncilManaged {
		// Not a policy invariant (policy keeps personal devices off il3
		// anyway), but a clear operator mistake.
		return fmt.Errorf("%w: il3 clearance on a personal device", ErrBadFacts)
	}
	if len(inv.DeviceName) > 64 || strings.ContainsFunc(inv.DeviceName, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%w: device name must be at most 64 printable characters", ErrBadFacts)
	}
	if inv.Valid < 0 || inv.Valid > MaxTokenValidity {
		return fmt.Errorf("%w: token validity %s (want up to %s)", ErrBadFacts, inv.Valid, MaxTokenValidity)
	}
	return nil
}

// Invite creates a single-use token bound to inv's facts (and a new device
// UUID) and, when inv.Mail is set, e-mails the link to the holder. The
// token is stored only as its hash.
func (e *Enroller) Invite(ctx context.Context, inv Invite) (Invitation, error) {
	if err := ValidateInvite(inv); err != nil {
		return Invitation{}, err
	}
	if inv.Mail && e.cfg.Mailer == nil {
		return Invitation{}, errors.New("pki: no SMTP server configured to e-mail the invitation")
	}
	valid := inv.Valid
	if valid == 0 {
		valid = e.cfg.DefaultValidity
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Invitation{}, fmt.Errorf("pki: token: %w", err)
	}
	tok := tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	key, id, _ := tokenKey(tok)
	uuid, err := randomUUID()
	if err != nil {
		return Invitation{}, err
	}
	now := e.now().UTC()
	rec := tokenRecord{
		Version: 1, Email: inv.Email, DeviceUUID: uuid, DeviceName: inv.DeviceName,
		Ownership: inv.Ownership, Role: inv.Role, ClearanceIL3: inv.ClearanceIL3,
		CreatedAt: now, ExpiresAt: now.Add(valid), CreatedBy: inv.By,
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return Invitation{}, err
	}
	if err := e.cfg.Tokens.Put(ctx, key, val); err != nil {
		return Invitation{}, fmt.Errorf("pki: store token: %w", err)
	}
	out := Invitation{Token: tok, ID: id, URL: e.URL(tok), Facts: rec.facts(), ExpiresAt: rec.ExpiresAt}
	e.tokens.WithLabelValues(TokenCreated).Inc()
	e.audit.Info("token-created", append(tokenFields("token-created", id, rec), zap.String("user.name", inv.By), zap.String("event.outcome", "success"))...)
	if inv.Mail {
		if err := e.cfg.Mailer.SendInvitation(ctx, out, e.cfg.BaseURL); err != nil {
			e.log.Warn("invitation not e-mailed", zap.String("token_id", id), zap.String("holder", inv.Email), zap.Error(err))
			return out, fmt.Errorf("pki: token %s created but not e-mailed: %w", id, err)
		}
		out.Mailed = true
		e.audit.Info("token-mailed", zap.String("event.action", "token-mailed"), zap.String("event.category", "pki"),
			zap.String("token.id", id), zap.String("holder.email", inv.Email), zap.String("user.name", inv.By))
	}
	return out, nil
}

// URL is the enrolment link of tok ("" without a BaseURL).
func (e *Enroller) URL(tok string) string {
	if e.cfg.BaseURL == "" {
		return ""
	}
	return e.cfg.BaseURL + "/enroll?token=" + url.QueryEscape(tok)
}

// tokenFields are the audit fields of a token event, named as the CA's
// certificate events are (event.action, holder.email, device.uuid, ...).
func tokenFields(action, id string, rec tokenRecord) []zap.Field {
	return []zap.Field{
		zap.String("event.action", action), zap.String("event.category", "pki"), zap.String("token.id", id),
		zap.String("holder.email", rec.Email), zap.String("device.uuid", rec.DeviceUUID),
		zap.String("device.name", rec.DeviceName), zap.String("certificate.ownership", string(rec.Ownership)),
		zap.String("certificate.role", string(rec.Role)), zap.Bool("certificate.clearance_il3", rec.ClearanceIL3),
		zap.Time("token.expires_at", rec.ExpiresAt),
	}
}

// Lookup returns the facts bound to tok without consuming it: ErrTokenInvalid,
// ErrTokenExpired or ErrTokenUsed when it cannot be used.
func (e *Enroller) Lookup(ctx context.Context, tok string) (Facts, time.Time, error) {
	key, _, ok := tokenKey(tok)
	if !ok {
		return Facts{}, time.Time{}, ErrTokenInvalid
	}
	rec, err := e.lookup(ctx, key)
	if err != nil {
		return Facts{}, time.Time{}, err
	}
	return rec.facts(), rec.ExpiresAt, nil
}

func (e *Enroller) lookup(ctx context.Context, key string) (tokenRecord, error) {
	val, used, err := e.cfg.Tokens.Get(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return tokenRecord{}, ErrTokenInvalid
	case err != nil:
		return tokenRecord{}, fmt.Errorf("pki: read token: %w", err)
	}
	var rec tokenRecord
	if err := json.Unmarshal(val, &rec); err != nil || rec.Version != 1 {
		return tokenRecord{}, fmt.Errorf("pki: token record unreadable: %v", err)
	}
	switch {
	case used:
		return rec, ErrTokenUsed
	case !e.now().Before(rec.ExpiresAt):
		return rec, ErrTokenExpired
	}
	return rec, nil
}

// RejectReason is the stable reason code of a refused enrolment (audit log,
// API error body).
func RejectReason(err error) string {
	switch {
	case errors.Is(err, ErrTokenUsed):
		return "token_used"
	case errors.Is(err, ErrTokenExpired):
		return "token_expired"
	case errors.Is(err, ErrTokenInvalid):
		return "token_invalid"
	case errors.Is(err, ErrWeakKey):
		return "weak_key"
	case errors.Is(err, ErrCSRSignature):
		return "csr_signature"
	case errors.Is(err, ErrCSRMismatch):
		return "csr_mismatch"
	case errors.Is(err, ErrBadCSR):
		return "bad_csr"
	case errors.Is(err, ErrBadFacts):
		return "bad_request"
	case errors.Is(err, ErrClosed):
		return "unavailable"
	}
	return "internal"
}

// Enroll issues one certificate for csr against tok, and consumes tok. In
// order: the token must be known, unused and unexpired; the CSR must
// verify, carry a strong key and ask for no names but the token's (see
// CheckCSR) — a bad CSR does not consume the token; then the token is
// consumed atomically (one winner among concurrent requests, on every
// node) and the certificate issued with the token's facts. from (the
// client's address) goes to the audit log. chain is leaf, intermediate.
func (e *Enroller) Enroll(ctx context.Context, tok string, csr *x509.CertificateRequest, from string) ([]*x509.Certificate, error) {
	return e.enroll(ctx, tok, from, func(f Facts) (*x509.CertificateRequest, error) {
		if err := CheckCSR(csr, f); err != nil {
			return nil, err
		}
		return csr, nil
	})
}

// EnrollPEM is Enroll for a CSR still in bytes (PEM or DER): the token
// is checked first, so a bad token is reported as such whatever the body.
func (e *Enroller) EnrollPEM(ctx context.Context, tok string, csrData []byte, from string) ([]*x509.Certificate, error) {
	return e.enroll(ctx, tok, from, func(f Facts) (*x509.CertificateRequest, error) {
		csr, err := ParseCSR(csrData)
		if err != nil {
			return nil, err
		}
		if err := CheckCSR(csr, f); err != nil {
			return nil, err
		}
		return csr, nil
	})
}

// enroll is Enroll with the CSR made by mk once the facts are known (the
// PKCS#12 path generates the key there).
func (e *Enroller) enroll(ctx context.Context, tok, from string, mk func(Facts) (*x509.CertificateRequest, error)) ([]*x509.Certificate, error) {
	key, id, ok := tokenKey(tok)
	if !ok {
		return nil, e.reject(id, tokenRecord{}, from, ErrTokenInvalid)
	}
	rec, err := e.lookup(ctx, key)
	if err != nil {
		return nil, e.reject(id, rec, from, err)
	}
	f := rec.facts()
	csr, err := mk(f)
	if err != nil {
		return nil, e.reject(id, rec, from, err)
	}
	val, err := e.cfg.Tokens.Consume(ctx, key)
	switch {
	case errors.Is(err, ErrTokenUsed):
		return nil, e.reject(id, rec, from, ErrTokenUsed)
	case errors.Is(err, ErrNotFound):
		return nil, e.reject(id, rec, from, ErrTokenInvalid)
	case err != nil:
		return nil, e.reject(id, rec, from, fmt.Errorf("pki: consume token: %w", err))
	}
	// Expiry again, against the consumed value: the clock may have passed
	// it between lookup and consume.
	if !e.now().Before(rec.ExpiresAt) {
		return nil, e.reject(id, rec, from, ErrTokenExpired)
	}
	chain, err := e.cfg.Issuer.Issue(ctx, csr, f, "token:"+id)
	if err != nil {
		if errors.Is(err, ErrWeakKey) || errors.Is(err, ErrBadCSR) || errors.Is(err, ErrCSRMismatch) || errors.Is(err, ErrBadFacts) {
			// The CA refused what CheckCSR let through: give the holder
			// the token back (the CSR, not the token, was at fault).
			e.restore(ctx, key, val)
		}
		return nil, e.reject(id, rec, from, err)
	}
	e.tokens.WithLabelValues(TokenUsed).Inc()
	fields := append(tokenFields("token-used", id, rec), zap.String("certificate.serial", hexSerial(chain[0])),
		zap.String("source.address", from), zap.String("event.outcome", "success"))
	e.audit.Info("token-used", fields...)
	return chain, nil
}

// restore puts a consumed token back as unused (Delete + Put).
func (e *Enroller) restore(ctx context.Context, key string, val []byte) {
	if err := e.cfg.Tokens.Delete(ctx, key); err == nil {
		err = e.cfg.Tokens.Put(ctx, key, val)
		if err == nil {
			return
		}
		e.log.Error("token not restored after a refused issuance", zap.String("token_id", key[:16]), zap.Error(err))
	}
}

// reject counts, audit-logs and returns err.
func (e *Enroller) reject(id string, rec tokenRecord, from string, err error) error {
	reason := RejectReason(err)
	switch reason {
	case "token_used":
		e.tokens.WithLabelValues(TokenReused).Inc()
	case "token_expired":
		e.tokens.WithLabelValues(TokenExpired).Inc()
	case "token_invalid":
		e.tokens.WithLabelValues(TokenInvalid).Inc()
	}
	fields := []zap.Field{zap.String("event.action", "token-rejected"), zap.String("event.category", "pki"),
		zap.String("event.outcome", "failure"), zap.String("event.reason", reason), zap.String("token.id", id),
		zap.String("source.address", from), zap.String("error.message", err.Error())}
	if rec.Email != "" {
		fields = append(fields, zap.String("holder.email", rec.Email), zap.String("device.uuid", rec.DeviceUUID))
	}
	e.audit.Warn("token-rejected", fields...)
	return err
}

// Sweep deletes tokens that expired or were used more than keep ago and
// returns how many it deleted.
func (e *Enroller) Sweep(ctx context.Context, keep time.Duration) (int, error) {
	cutoff := e.now().Add(-keep)
	var dead []string
	err := e.cfg.Tokens.List(ctx, func(id string, value []byte, used bool) error {
		var rec tokenRecord
		if json.Unmarshal(value, &rec) != nil {
			return nil
		}
		if rec.ExpiresAt.Before(cutoff) {
			dead = append(dead, id)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, id := range dead {
		if err := e.cfg.Tokens.Delete(ctx, id); err != nil {
			return 0, err
		}
	}
	return len(dead), nil
}

// SweepEvery runs Sweep(keep) every interval until ctx ends (for nacd
// serve: e.g. hourly, keeping dead tokens 7 days for the audit trail).
func (e *Enroller) SweepEvery(ctx context.Context, interval, keep time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := e.Sweep(ctx, keep); err != nil {
				e.log.Warn("token sweep failed", zap.Error(err))
			} else if n > 0 {
				e.log.Info("expired enrolment tokens deleted", zap.Int("tokens", n))
			}
		}
	}
}

func hexSerial(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return strings.ToLower(c.SerialNumber.Text(16))
}
