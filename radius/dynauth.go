package radius

// Dynamic Authorization (RFC 5176): nacd as the Dynamic Authorization
// Client. DynAuthClient sends Disconnect-Request (and CoA-Request) to the
// NAS of a live session from the SessionTable, identifying it by
// Acct-Session-Id + User-Name + Calling-Station-Id (+ NAS-IP-Address /
// NAS-Identifier), signed with the NAS's shared secret
// (Message-Authenticator and Request Authenticator per RFC 5176 section
// 3.3), retried with bounded exponential backoff, and records the ACK or NAK
// (Error-Cause decoded) in the audit log and in
// nacd_radius_dynauth_requests_total{type,result}.

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"layeh.com/radius"

	"github.com/herts-council/nacd/policy"
)

// DynAuthMode is what a NAS accepts to end or move a live session.
type DynAuthMode string

const (
	// DynAuthDisconnect: Disconnect-Request only (the default; a policy
	// change that moves a session disconnects it, and the device
	// re-authenticates onto its new VLAN).
	DynAuthDisconnect DynAuthMode = "disconnect"
	// DynAuthCoA: the NAS also re-VLANs a live session on CoA-Request.
	DynAuthCoA DynAuthMode = "coa"
	// DynAuthNone: the NAS takes no dynamic authorization; nothing is sent.
	DynAuthNone DynAuthMode = "none"
)

// DefaultCoAPort is the Dynamic Authorization port (RFC 5176 section 3).
const DefaultCoAPort = 3799

// Defaults of DynAuthConfig.
const (
	DefaultDynAuthTimeout  = 2 * time.Second
	DefaultDynAuthAttempts = 3
	DefaultDynAuthBackoff  = 500 * time.Millisecond
	maxDynAuthBackoff      = 5 * time.Second
	maxDynAuthAttempts     = 10
	dynAuthParallel        = 16
)

// RFC 5176 codes and attributes.
const (
	codeDisconnectRequest = 40
	codeDisconnectACK     = 41
	codeDisconnectNAK     = 42
	codeCoARequest        = 43
	codeCoAACK            = 44
	codeCoANAK            = 45
	attrErrorCause        = 101

	// ErrorCauseSessionNotFound (503): the NAS no longer has the session.
	ErrorCauseSessionNotFound = 503
)

// Request types and results: the label values of
// nacd_radius_dynauth_requests_total. Stable.
const (
	DynAuthTypeDisconnect = "disconnect"
	DynAuthTypeCoA        = "coa"

	DynAuthACK     = "ack"
	DynAuthNAK     = "nak"
	DynAuthTimeout = "timeout"
	DynAuthError   = "error"   // no client for the NAS, no secret, socket error
	DynAuthSkipped = "skipped" // the NAS is configured dynauth: none
)

// errorCauses names the Error-Cause values (RFC 5176 section 3.5).
var errorCauses = map[uint32]string{
	201: "residual-session-context-removed", 202: "invalid-eap-packet",
	401: "unsupported-attribute", 402: "missing-attribute", 403: "nas-identification-mismatch",
	404: "invalid-request", 405: "unsupported-service", 406: "unsupported-extension",
	407: "invalid-attribute-value",
	501: "administratively-prohibited", 502: "request-not-routable", 503: "session-context-not-found",
	504: "session-context-not-removable", 505: "other-proxy-processing-error",
	506: "resources-unavailable", 507: "request-initiated", 508: "multiple-session-selection-unsupported",
}

// ErrorCauseName names an RFC 5176 Error-Cause ("session-context-not-found"),
// or gives its number.
func ErrorCauseName(c uint32) string {
	if n, ok := errorCauses[c]; ok {
		return n
	}
	return strconv.FormatUint(uint64(c), 10)
}

// ClientLookup finds the NAS client (secret, CoA port, mode) for an address.
// *Server implements it, following reloads of the client table.
type ClientLookup interface {
	LookupClient(a netip.Addr) *Client
}

// LookupClient returns the configured client whose networks contain a (the
// most specific), or nil.
func (s *Server) LookupClient(a netip.Addr) *Client {
	return s.snap.Load().clients.lookup(a)
}

// DynAuthConfig configures a DynAuthClient.
type DynAuthConfig struct {
	Sessions *SessionTable
	Clients  ClientLookup
	Timeout  time.Duration // per attempt; default DefaultDynAuthTimeout
	Attempts int           // default DefaultDynAuthAttempts, at most 10
	Backoff  time.Duration // wait before the 2nd attempt, doubled after each (max 5 s); default DefaultDynAuthBackoff

	Logger     *zap.Logger // operational log
	AuditLog   *zap.Logger // one line per request outcome (the access log)
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// DynAuthClient sends Disconnect-Request and CoA-Request to NASes.
type DynAuthClient struct {
	cfg      DynAuthConfig
	requests *prometheus.CounterVec // type, result
	retries  *prometheus.CounterVec // type
}

// NewDynAuthClient validates cfg, applies defaults and registers metrics.
func NewDynAuthClient(cfg DynAuthConfig) (*DynAuthClient, error) {
	if cfg.Sessions == nil || cfg.Clients == nil {
		return nil, errors.New("radius: dynauth: Sessions and Clients are required")
	}
	if cfg.Timeout < 0 || cfg.Attempts < 0 || cfg.Attempts > maxDynAuthAttempts || cfg.Backoff < 0 {
		return nil, fmt.Errorf("radius: dynauth: Timeout, Backoff must be >= 0 and Attempts 0..%d", maxDynAuthAttempts)
	}
	cfg.Timeout = orDefault(cfg.Timeout, DefaultDynAuthTimeout)
	cfg.Attempts = orDefault(cfg.Attempts, DefaultDynAuthAttempts)
	cfg.Backoff = orDefault(cfg.Backoff, DefaultDynAuthBackoff)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.AuditLog == nil {
		cfg.AuditLog = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &DynAuthClient{
		cfg: cfg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_radius_dynauth_requests_total",
			Help: "Disconnect-Request and CoA-Request outcomes (after retries), by type and result (ack, nak, timeout, error, skipped).",
		}, []string{"type", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_radius_dynauth_retries_total",
			Help: "Disconnect-Request and CoA-Request attempts after the first (on timeout or NAK), by type.",
		}, []string{"type"}),
	}
	for _, t := range []string{DynAuthTypeDisconnect, DynAuthTypeCoA} {
		c.retries.WithLabelValues(t)
		for _, r := range []string{DynAuthACK, DynAuthNAK, DynAuthTimeout, DynAuthError, DynAuthSkipped} {
			c.requests.WithLabelValues(t, r)
		}
	}
	if cfg.Registerer != nil {
		for _, col := range []prometheus.Collector{c.requests, c.retries} {
			if err := cfg.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("radius: dynauth metrics: %w", err)
			}
		}
	}
	return c, nil
}

// DynAuthResult is the outcome of one request to one session.
type DynAuthResult struct {
	Session    *Session `json:"session"`
	Type       string   `json:"type"`   // disconnect | coa
	Result     string   `json:"result"` // ack | nak | timeout | error | skipped
	ErrorCause uint32   `json:"error_cause,omitempty"`
	CauseName  string   `json:"error_cause_name,omitempty"`
	Attempts   int      `json:"attempts"`
	Error      string   `json:"error,omitempty"`
}

// Disconnect sends Disconnect-Request for s. reason (e.g. "revoked-device",
// "service-desk") goes to the audit line. On ACK, or a NAK saying the NAS
// has no such session, s leaves the session table.
func (c *DynAuthClient) Disconnect(ctx context.Context, s *Session, reason string) DynAuthResult {
	return c.send(ctx, s, DynAuthTypeDisconnect, 0, reason)
}

// Reauthorize moves s to vlan: CoA-Request with the RFC 3580 tunnel
// attributes when the NAS is configured dynauth: coa, Disconnect-Request
// otherwise (the device re-authenticates and gets the new VLAN), nothing
// when it is dynauth: none.
func (c *DynAuthClient) Reauthorize(ctx context.Context, s *Session, vlan int, reason string) DynAuthResult {
	cl := c.cfg.Clients.LookupClient(nasAddr(s))
	if cl != nil && cl.DynAuth == DynAuthCoA && vlan >= 1 && vlan <= 4094 {
		return c.send(ctx, s, DynAuthTypeCoA, vlan, reason)
	}
	return c.send(ctx, s, DynAuthTypeDisconnect, 0, reason)
}

// DisconnectDevice disconnects every live session of a device (its UUID).
func (c *DynAuthClient) DisconnectDevice(ctx context.Context, deviceUUID string) ([]DynAuthResult, error) {
	return c.DisconnectMatching(ctx, SessionFilter{Device: deviceUUID}, "device")
}

// DisconnectHolder disconnects every live session of a holder (e-mail).
func (c *DynAuthClient) DisconnectHolder(ctx context.Context, email string) ([]DynAuthResult, error) {
	return c.DisconnectMatching(ctx, SessionFilter{Holder: email}, "holder")
}

// DisconnectSerial disconnects every live session of a certificate serial.
func (c *DynAuthClient) DisconnectSerial(ctx context.Context, serial string) ([]DynAuthResult, error) {
	return c.DisconnectMatching(ctx, SessionFilter{Serial: serial}, "serial")
}

// DisconnectSession disconnects the session(s) with this Acct-Session-Id
// (on any NAS, or on nas when given).
func (c *DynAuthClient) DisconnectSession(ctx context.Context, acctSessionID, nas string) ([]DynAuthResult, error) {
	if acctSessionID == "" {
		return nil, errors.New("radius: dynauth: empty Acct-Session-Id")
	}
	return c.DisconnectMatching(ctx, SessionFilter{ID: acctSessionID, NAS: nas}, "session")
}

// DisconnectMatching disconnects every session f selects (an empty filter
// is refused: it would disconnect everyone).
func (c *DynAuthClient) DisconnectMatching(ctx context.Context, f SessionFilter, reason string) ([]DynAuthResult, error) {
	if f == (SessionFilter{}) {
		return nil, errors.New("radius: dynauth: refusing to disconnect every session (empty filter)")
	}
	ss, err := c.cfg.Sessions.List(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("radius: dynauth: list sessions: %w", err)
	}
	return c.disconnectAll(ctx, ss, reason), nil
}

// OnRevoke is the hook the revocation path calls after revoking
// certificates (serials), devices or holders: every live session of any of
// them is disconnected, each once. It returns when every request has an
// outcome (call it in a goroutine not to wait for NAS retries).
func (c *DynAuthClient) OnRevoke(ctx context.Context, serials, devices, holders []string) ([]DynAuthResult, error) {
	seen := map[SessionKey]bool{}
	var all []*Session
	var errs []error
	collect := func(f SessionFilter) {
		ss, err := c.cfg.Sessions.List(ctx, f)
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, s := range ss {
			if !seen[s.Key()] {
				seen[s.Key()] = true
				all = append(all, s)
			}
		}
	}
	for _, s := range serials {
		if s != "" {
			collect(SessionFilter{Serial: s})
		}
	}
	for _, d := range devices {
		if d != "" {
			collect(SessionFilter{Device: d})
		}
	}
	for _, h := range holders {
		if h != "" {
			collect(SessionFilter{Holder: h})
		}
	}
	res := c.disconnectAll(ctx, all, "revoked")
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("radius: dynauth: list sessions: %w", err)
	}
	return res, nil
}

func (c *DynAuthClient) disconnectAll(ctx context.Context, ss []*Session, reason string) []DynAuthResult {
	out := make([]DynAuthResult, len(ss))
	sem := make(chan struct{}, dynAuthParallel)
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = c.Disconnect(ctx, s, reason)
		}()
	}
	wg.Wait()
	return out
}

func nasAddr(s *Session) netip.Addr {
	a, _ := netip.ParseAddr(s.NASIP)
	return a.Unmap()
}

// send runs the attempts of one request and records its outcome.
func (c *DynAuthClient) send(ctx context.Context, s *Session, typ string, vlan int, reason string) DynAuthResult {
	res := DynAuthResult{Session: s, Type: typ}
	cl := c.cfg.Clients.LookupClient(nasAddr(s))
	switch {
	case cl == nil:
		res.Result, res.Error = DynAuthError, "no configured client for NAS "+s.NASIP
	case cl.DynAuth == DynAuthNone:
		res.Result = DynAuthSkipped
	default:
		port := cl.CoAPort
		if port == 0 {
			port = DefaultCoAPort
		}
		dst := netip.AddrPortFrom(nasAddr(s), uint16(port))
		x := &dynAuthExchange{}
		defer x.close()
		wait := c.cfg.Backoff
		for attempt := 1; attempt <= c.cfg.Attempts; attempt++ {
			if attempt > 1 {
				c.retries.WithLabelValues(typ).Inc()
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					res.Result, res.Error = DynAuthError, ctx.Err().Error()
					attempt = c.cfg.Attempts + 1
					continue
				case <-t.C:
				}
				wait = min(2*wait, maxDynAuthBackoff)
			}
			res.Attempts = attempt
			res.Result, res.ErrorCause, res.Error = c.attempt(ctx, x, dst, cl.Secret, s, typ, vlan)
			if res.Result == DynAuthNAK {
				x.req = nil // answered: a retry is a new request
			}
			if res.Result == DynAuthACK || res.Result == DynAuthError ||
				(res.Result == DynAuthNAK && res.ErrorCause == ErrorCauseSessionNotFound) {
				break
			}
		}
	}
	if res.ErrorCause != 0 {
		res.CauseName = ErrorCauseName(res.ErrorCause)
	}
	if typ == DynAuthTypeDisconnect && (res.Result == DynAuthACK || (res.Result == DynAuthNAK && res.ErrorCause == ErrorCauseSessionNotFound)) {
		if _, err := c.cfg.Sessions.Stop(context.WithoutCancel(ctx), s.Key()); err != nil {
			c.cfg.Logger.Warn("radius: dynauth: remove disconnected session", zap.Error(err))
		}
	}
	c.requests.WithLabelValues(typ, res.Result).Inc()
	c.audit(&res, vlan, reason)
	return res
}

// dynAuthExchange is one Disconnect/CoA request's socket and bytes across
// its attempts. A retransmission after a timeout sends the same bytes (same
// Identifier, Request Authenticator and Event-Timestamp) from the same
// source port, as RFC 5080 section 2.2.1 requires, so the NAS's duplicate
// detection sees a retransmission rather than a second request, and a late
// answer to the earlier transmission still counts. Only after a NAK (an
// answered request) is the request built anew, with a new Identifier.
type dynAuthExchange struct {
	conn *net.UDPConn
	req  []byte
}

func (x *dynAuthExchange) close() {
	if x.conn != nil {
		x.conn.Close()
	}
}

// attempt sends x's request (building it, and the socket, when there is
// none yet) and waits Timeout for a valid answer (right code, Identifier,
// Response Authenticator and Message-Authenticator); anything else received
// is ignored.
func (c *DynAuthClient) attempt(ctx context.Context, x *dynAuthExchange, dst netip.AddrPort, secret []byte, s *Session, typ string, vlan int) (result string, cause uint32, errText string) {
	if len(secret) == 0 {
		return DynAuthError, 0, "empty shared secret"
	}
	if x.req == nil {
		var idb [1]byte
		if _, err := rand.Read(idb[:]); err != nil {
			return DynAuthError, 0, err.Error()
		}
		req, err := encodeDynAuthRequest(typ, idb[0], secret, s, vlan, c.cfg.Now())
		if err != nil {
			return DynAuthError, 0, err.Error()
		}
		x.req = req
	}
	if x.conn == nil {
		conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return DynAuthError, 0, err.Error()
		}
		x.conn = conn
	}
	conn, req := x.conn, x.req
	deadline := time.Now().Add(c.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(req); err != nil {
		return DynAuthError, 0, err.Error()
	}
	ack, nak := byte(codeDisconnectACK), byte(codeDisconnectNAK)
	if typ == DynAuthTypeCoA {
		ack, nak = codeCoAACK, codeCoANAK
	}
	buf := make([]byte, radius.MaxPacketLength)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return DynAuthTimeout, 0, "no valid answer within " + c.cfg.Timeout.String()
			}
			// ICMP port unreachable and the like: count as a timeout of this
			// attempt (the NAS may come back), keep the text. The socket
			// keeps the error pending; the next attempt sends the same bytes
			// from a fresh one.
			x.close()
			x.conn = nil
			return DynAuthTimeout, 0, err.Error()
		}
		code, cause, ok := checkDynAuthResponse(buf[:n], req, secret)
		if !ok || (code != ack && code != nak) {
			c.cfg.Logger.Debug("radius: dynauth: ignored an invalid answer", zap.Stringer("nas", dst))
			continue
		}
		if code == ack {
			return DynAuthACK, 0, ""
		}
		return DynAuthNAK, cause, ""
	}
}

// encodeDynAuthRequest builds a Disconnect-Request or CoA-Request (RFC 5176
// section 3.3): Message-Authenticator = HMAC-MD5 over the packet with the
// Authenticator field and the Message-Authenticator zeroed, then Request
// Authenticator = MD5(Code+Identifier+Length+16 zero octets+Attributes+Secret).
func encodeDynAuthRequest(typ string, id byte, secret []byte, s *Session, vlan int, now time.Time) ([]byte, error) {
	code := byte(codeDisconnectRequest)
	if typ == DynAuthTypeCoA {
		code = codeCoARequest
	}
	b := make([]byte, headerLen, 256)
	b[0], b[1] = code, id
	put := func(t byte, v []byte) error {
		if len(v) == 0 {
			return nil
		}
		if len(v) > maxAttrValue {
			return fmt.Errorf("attribute %d of %d bytes", t, len(v))
		}
		b = append(b, t, byte(2+len(v)))
		b = append(b, v...)
		return nil
	}
	maOff := len(b) + 2
	b = append(b, attrMessageAuthenticator, messageAuthenticatorAttrN)
	b = append(b, make([]byte, messageAuthenticatorLen)...)
	var ts [4]byte
	binary.BigEndian.PutUint32(ts[:], uint32(now.Unix()))
	errs := []error{
		put(attrUserName, []byte(s.UserName)),
		put(attrAcctSessionID, []byte(s.ID)),
		put(attrCallingStationID, []byte(s.Calling)),
		put(attrNASIdentifier, []byte(s.NASIdentifier)),
	}
	if a, err := netip.ParseAddr(s.NASIPAddress); err == nil {
		if a.Is4() || a.Is4In6() {
			v := a.Unmap().As4()
			errs = append(errs, put(attrNASIPAddress, v[:]))
		} else {
			v := a.As16()
			errs = append(errs, put(attrNASIPv6Address, v[:]))
		}
	}
	errs = append(errs, put(attrEventTimestamp, ts[:]))
	if typ == DynAuthTypeCoA {
		errs = append(errs,
			put(attrTunnelType, []byte{0, 0, 0, 13}),
			put(attrTunnelMediumType, []byte{0, 0, 0, 6}),
			put(attrTunnelPrivateGroupID, []byte(strconv.Itoa(vlan))))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if s.ID == "" {
		return nil, errors.New("session without Acct-Session-Id")
	}
	if len(b) > radius.MaxPacketLength {
		return nil, fmt.Errorf("request of %d bytes", len(b))
	}
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	mac := hmac.New(md5.New, secret)
	mac.Write(b)
	mac.Sum(b[maOff : maOff : maOff+messageAuthenticatorLen])
	h := md5.New()
	h.Write(b)
	h.Write(secret)
	h.Sum(b[4:4:headerLen])
	return b, nil
}

// checkDynAuthResponse verifies a response to req: framing, Identifier,
// Response Authenticator MD5(Code+Identifier+Length+RequestAuth+Attributes+
// Secret), the Message-Authenticator when present (HMAC-MD5 with the
// Request Authenticator in the header), and returns its code and
// Error-Cause.
func checkDynAuthResponse(b, req, secret []byte) (code byte, cause uint32, ok bool) {
	if len(b) < headerLen {
		return 0, 0, false
	}
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n < headerLen || n > len(b) || b[1] != req[1] {
		return 0, 0, false
	}
	b = b[:n]
	h := md5.New()
	h.Write(b[:4])
	h.Write(req[4:headerLen])
	h.Write(b[headerLen:])
	h.Write(secret)
	var sum [md5.Size]byte
	if !hmac.Equal(h.Sum(sum[:0]), b[4:headerLen]) {
		return 0, 0, false
	}
	maOff := -1
	for off := headerLen; off < n; {
		if n-off < 2 {
			return 0, 0, false
		}
		t, l := b[off], int(b[off+1])
		if l < 2 || off+l > n {
			return 0, 0, false
		}
		switch {
		case t == attrMessageAuthenticator && l == messageAuthenticatorAttrN && maOff < 0:
			maOff = off + 2
		case t == attrMessageAuthenticator:
			return 0, 0, false
		case t == attrErrorCause && l == 6:
			cause = binary.BigEndian.Uint32(b[off+2 : off+6])
		}
		off += l
	}
	if maOff >= 0 {
		// RFC 5176 section 3.3 computes it with the Request Authenticator;
		// FreeRADIUS-based NASes with the field zeroed. The Response
		// Authenticator above is verified either way.
		var zero [messageAuthenticatorLen]byte
		valid := false
		for _, auth := range [][]byte{req[4:headerLen], zero[:]} {
			mac := hmac.New(md5.New, secret)
			mac.Write(b[:4])
			mac.Write(auth)
			mac.Write(b[headerLen:maOff])
			mac.Write(zero[:])
			mac.Write(b[maOff+messageAuthenticatorLen:])
			valid = valid || hmac.Equal(mac.Sum(sum[:0]), b[maOff:maOff+messageAuthenticatorLen])
		}
		if !valid {
			return 0, 0, false
		}
	}
	return b[0], cause, true
}

// Audit log fields of dynamic authorization lines.
const (
	FieldDynAuthType     = "nacd.dynauth.type"
	FieldDynAuthResult   = "nacd.dynauth.result"
	FieldDynAuthCause    = "nacd.dynauth.error_cause"
	FieldDynAuthAttempts = "nacd.dynauth.attempts"
	FieldDynAuthReason   = "nacd.dynauth.reason"
	FieldDynAuthError    = "error.message"
)

func (c *DynAuthClient) audit(r *DynAuthResult, vlan int, reason string) {
	s := r.Session
	outcome := "failure"
	if r.Result == DynAuthACK {
		outcome = "success"
	}
	f := []zap.Field{
		zap.String(FieldAction, "radius-dynauth"),
		zap.String(FieldOutcome, outcome),
		zap.String(FieldDynAuthType, r.Type),
		zap.String(FieldDynAuthResult, r.Result),
		zap.Int(FieldDynAuthAttempts, r.Attempts),
		zap.String(FieldDynAuthReason, reason),
		zap.String(FieldNASName, s.NASName),
		zap.String(FieldNASIP, s.NASIP),
		zap.String(FieldSite, s.Site),
		zap.String(FieldAcctSessionID, s.ID),
		zap.String(FieldSessionID, s.ClassID),
		zap.String(FieldUserName, s.UserName),
		zap.String(FieldCallingStationID, s.Calling),
		zap.String(FieldEmail, s.Email),
		zap.String(FieldDeviceUUID, s.DeviceUUID),
		zap.String(FieldSerial, s.Serial),
	}
	if r.ErrorCause != 0 {
		f = append(f, zap.String(FieldDynAuthCause, r.CauseName))
	}
	if r.Error != "" {
		f = append(f, zap.String(FieldDynAuthError, r.Error))
	}
	if r.Type == DynAuthTypeCoA {
		f = append(f, zap.Int(FieldVLAN, vlan))
	}
	c.cfg.AuditLog.Info(r.Type+"-"+r.Result, f...)
}

// Reconcile re-decides, under p (a policy just reloaded), every live session
// that carries the identity of its Accept, and moves each one whose
// placement changes: CoA-Request with the new VLAN when its NAS is
// configured dynauth: coa, Disconnect-Request otherwise, and always
// Disconnect when the new decision rejects (the device re-authenticates and
// the new rules apply in full). The identity is as verified at the Accept
// (revocation status and age included); now is the decision time (a
// certificate expired since is rejected). Sessions without an identity
// (Class not linked) are left alone. A CoA acknowledged updates the
// session's segment and VLAN in the table.
func (c *DynAuthClient) Reconcile(ctx context.Context, p *policy.Policy, now time.Time) ([]DynAuthResult, error) {
	if p == nil {
		return nil, errors.New("radius: dynauth: nil policy")
	}
	ss, err := c.cfg.Sessions.List(ctx, SessionFilter{})
	if err != nil {
		return nil, fmt.Errorf("radius: dynauth: list sessions: %w", err)
	}
	type move struct {
		s *Session
		d policy.Decision
	}
	var moves []move
	for _, s := range ss {
		if s.Identity == nil {
			continue
		}
		d := p.Decide(*s.Identity, policy.Request{Site: s.Site, SSID: s.SSID, Now: now})
		if d.Accepted() && string(d.Segment) == s.Segment && d.VLAN == s.VLAN {
			continue
		}
		moves = append(moves, move{s, d})
	}
	out := make([]DynAuthResult, len(moves))
	sem := make(chan struct{}, dynAuthParallel)
	var wg sync.WaitGroup
	for i, m := range moves {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if !m.d.Accepted() {
				out[i] = c.Disconnect(ctx, m.s, "policy-reject")
				return
			}
			out[i] = c.Reauthorize(ctx, m.s, m.d.VLAN, "policy-change")
			if out[i].Type == DynAuthTypeCoA && out[i].Result == DynAuthACK {
				if err := c.cfg.Sessions.SetPlacement(context.WithoutCancel(ctx), m.s.Key(), string(m.d.Segment), m.d.VLAN); err != nil {
					c.cfg.Logger.Warn("radius: dynauth: record the new VLAN", zap.Error(err))
				}
			}
		}()
	}
	wg.Wait()
	return out, nil
}
