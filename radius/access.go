package radius

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"layeh.com/radius"

	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius/eap"
	"github.com/herts-council/nacd/radius/eaptls"
)

// stateLen is the length of the random State value of a conversation.
const stateLen = 16

// errPolicyReject is returned by the Authorize callback when the decision is
// a reject, so that the handshake ends in a TLS alert and EAP-Failure.
var errPolicyReject = errors.New("radius: policy rejected the device")

// accessHandler answers Access-Request (EAP-TLS) and Status-Server. It owns
// the EAP conversations and the decisions.
type accessHandler struct {
	srv        *Server
	tlsConfig  *eaptls.Config
	verifier   CertificateVerifier
	convs      *conversations
	newSession func(cfg *eaptls.Config, authorize eaptls.Authorize) eapSession
}

func (h *accessHandler) ServeRADIUS(w ResponseWriter, r *Request) {
	switch r.Code {
	case radius.CodeStatusServer:
		// RFC 5997 section 3: Access-Accept, no other attributes needed.
		h.write(w, radius.CodeAccessAccept, nil)
	case radius.CodeAccessRequest:
		h.access(w, r)
	}
}

func (h *accessHandler) write(w ResponseWriter, code radius.Code, attrs radius.Attributes) bool {
	if err := w.Write(code, attrs); err != nil {
		h.srv.logger.Warn("radius: cannot send response", zap.Error(err))
		return false
	}
	return true
}

// newRecord starts an access log record from request attributes.
func (h *accessHandler) newRecord(r *Request) *accessRecord {
	called := printable(r.Get(attrCalledStationID))
	return &accessRecord{
		start:    r.Received,
		client:   r.Client,
		nasIP:    r.RemoteAddr.Addr().String(),
		userName: printable(r.Get(attrUserName)),
		calling:  printable(r.Get(attrCallingStationID)),
		called:   called,
		ssid:     ssidFromCalledStationID(called),
	}
}

func (h *accessHandler) access(w ResponseWriter, r *Request) {
	msg, ok := eapMessage(r.Packet)
	state, hasState := r.Lookup(attrState)
	if !ok {
		rec := h.newRecord(r)
		h.reject(w, r, nil, rec, string(ReasonNoEAP))
		return
	}
	p, err := eap.Parse(msg)
	if err != nil {
		if hasState {
			if c := h.convs.get(string(state), h.srv.now()); c != nil && c.client.Name == r.Client.Name {
				h.convs.remove(c)
			}
		}
		var id uint8
		if len(msg) >= 2 {
			id = msg[1]
		}
		rec := h.newRecord(r)
		h.srv.logger.Debug("radius: EAP-Message does not parse", zap.String("nas", r.Client.Name), zap.Error(err))
		h.reject(w, r, eap.Failure(id), rec, string(ReasonEAPMalformed))
		return
	}
	if p.Code != eap.CodeResponse {
		rec := h.newRecord(r)
		h.reject(w, r, eap.Failure(p.Identifier), rec, string(ReasonEAPUnexpected))
		return
	}
	if !hasState {
		if p.Type != eap.TypeIdentity {
			rec := h.newRecord(r)
			h.reject(w, r, eap.Failure(p.Identifier), rec, string(ReasonEAPUnexpected))
			return
		}
		h.start(w, r, p)
		return
	}

	c := h.convs.get(string(state), h.srv.now())
	if c == nil || c.client.Name != r.Client.Name {
		h.unknownState(w, r, p)
		return
	}
	if !c.lock() {
		c.unlock()
		h.unknownState(w, r, p)
		return
	}
	defer c.unlock()

	out, err := c.session.Handle(p)
	if errors.Is(err, eaptls.ErrIdentifierMismatch) {
		h.srv.dropped(DropEAPIdentifierMismatch, r.RemoteAddr, zap.String("nas", r.Client.Name))
		return
	}
	switch {
	case err == nil && out != nil && out.Code == eap.CodeRequest:
		h.challenge(w, r, c, out)
	case err == nil && out != nil && out.Code == eap.CodeSuccess:
		h.accept(w, r, c, out)
	default:
		h.fail(w, r, c, out, p, err)
	}
}

// unknownState answers a request whose State is not (or no longer) known
// (expired, evicted, finished, or from a NAS that failed over):
// Access-Reject with EAP-Failure, logged like every reject.
func (h *accessHandler) unknownState(w ResponseWriter, r *Request, p *eap.Packet) {
	h.srv.limitedLog("unknown_state", "radius: request with an unknown or expired State",
		zap.String("nas", r.Client.Name), zap.Stringer("src", r.RemoteAddr))
	h.reject(w, r, eap.Failure(p.Identifier), h.newRecord(r), string(ReasonUnknownState))
}

// start begins a conversation on EAP-Response/Identity: a fresh random
// State, an EAP-TLS session, and Access-Challenge with EAP-TLS Start.
func (h *accessHandler) start(w ResponseWriter, r *Request, p *eap.Packet) {
	now := h.srv.now()
	rec := h.newRecord(r)
	var st [stateLen]byte
	if _, err := rand.Read(st[:]); err != nil {
		h.srv.logger.Error("radius: no randomness for State", zap.Error(err))
		h.reject(w, r, eap.Failure(p.Identifier), rec, string(ReasonInternal))
		return
	}
	c := &conversation{
		state:       string(st[:]),
		client:      r.Client,
		started:     r.Received,
		eapIdentity: printable(p.Data),
		calling:     rec.calling,
		called:      rec.called,
		ssid:        rec.ssid,
	}
	c.session = h.newSession(h.tlsConfig, h.authorize(c))
	req := c.session.Start(p.Identifier + 1)
	if req == nil {
		c.shut()
		rec.eapID = c.eapIdentity
		h.srv.logger.Error("radius: EAP-TLS session did not start")
		h.reject(w, r, eap.Failure(p.Identifier), rec, string(ReasonInternal))
		return
	}
	h.convs.add(c, now)
	if !h.challenge(w, r, c, req) {
		h.convs.remove(c)
	}
}

// challenge sends an EAP-Request in Access-Challenge with the
// conversation's State. The EAP-Request is encoded into a pooled scratch
// buffer: Write copies the attributes into the reply it caches and sends
// before it returns, so the buffer is free again after it.
func (h *accessHandler) challenge(w ResponseWriter, r *Request, c *conversation, out *eap.Packet) bool {
	scratch := eapScratch.Get().(*[]byte)
	defer putEAPScratch(scratch)
	b, err := out.AppendTo((*scratch)[:0])
	if err != nil {
		h.srv.logger.Error("radius: cannot encode EAP-Request", zap.Error(err))
		return false
	}
	*scratch = b
	attrs := splitEAPRoom(b, 1)
	attrs = append(attrs, &radius.AVP{Type: attrState, Attribute: []byte(c.state)})
	return h.write(w, radius.CodeAccessChallenge, attrs)
}

// eapScratch holds buffers for encoding an outgoing EAP packet, sized for
// an EAP-TLS fragment (~1 KB) and bounded by the largest RADIUS packet.
var eapScratch = sync.Pool{New: func() any {
	b := make([]byte, 0, 1280)
	return &b
}}

// putEAPScratch zeroes a scratch buffer (so a wrongly retained alias reads
// zeros, never a later conversation's bytes) and pools it unless a large
// packet grew it past a RADIUS packet.
func putEAPScratch(b *[]byte) {
	clear(*b)
	if cap(*b) > radius.MaxPacketLength {
		return
	}
	*b = (*b)[:0]
	eapScratch.Put(b)
}

// authorize returns the Authorize callback of conversation c: verify the
// chain, decide, record both, and refuse the handshake on a reject so that
// the peer sees a TLS alert and EAP-Failure, never a success indication.
func (h *accessHandler) authorize(c *conversation) eaptls.Authorize {
	return func(cs tls.ConnectionState) (err error) {
		defer func() {
			if v := recover(); v != nil {
				h.srv.metrics.dropped.WithLabelValues(DropPanic).Inc()
				h.srv.logger.Error("radius: panic in authorization", zap.Any("panic", v), zap.Stack("stack"))
				c.authMu.Lock()
				c.authorized = true
				c.identity = policy.Identity{Status: policy.CertInvalid}
				c.decision = policy.Decision{Segment: policy.SegmentReject, Rule: "internal", Reason: policy.Reason(ReasonInternal)}
				c.authMu.Unlock()
				err = fmt.Errorf("%w: internal error", errPolicyReject)
			}
		}()
		now := h.srv.now()
		var id policy.Identity
		if len(cs.PeerCertificates) == 0 {
			id = policy.Identity{Status: policy.CertInvalid}
		} else {
			id = h.verifier.VerifyClient(cs.PeerCertificates, now)
		}
		d := h.srv.policy().Decide(id, policy.Request{Site: c.client.Site, SSID: c.ssid, Now: now})
		if d.Accepted() && id.Status != policy.CertOK { // policy enforces this; fail closed regardless
			d = policy.Decision{Segment: policy.SegmentReject, Rule: "certificate-status", Reason: policy.ReasonInvalidCertificate}
		}
		c.authMu.Lock()
		c.authorized = true
		c.identity = id
		c.decision = d
		c.tlsVersion = cs.Version
		c.authMu.Unlock()
		if !d.Accepted() {
			return fmt.Errorf("%w: %s: %w", errPolicyReject, d.Reason, alertFor(d.Reason))
		}
		return nil
	}
}

// alertFor is the TLS alert eaptls sends when a decision rejects: the
// certificate problem when there is one (RFC 8446 section 6.2), else
// access_denied.
func alertFor(r policy.Reason) tls.AlertError {
	switch r {
	case policy.ReasonRevoked:
		return eaptls.AlertCertificateRevoked
	case policy.ReasonExpired:
		return eaptls.AlertCertificateExpired
	case policy.ReasonUntrusted:
		return eaptls.AlertUnknownCA
	case policy.ReasonWrongEKU, policy.ReasonInvalidCertificate, policy.ReasonNotYetValid:
		return eaptls.AlertBadCertificate
	case policy.ReasonCRLStale:
		return eaptls.AlertCertificateUnknown
	default:
		return eaptls.AlertAccessDenied
	}
}

// accept answers EAP-Success with Access-Accept, if and only if the
// conversation's recorded decision admits the device and the session
// yielded an MSK; otherwise it fails closed.
func (h *accessHandler) accept(w ResponseWriter, r *Request, c *conversation, out *eap.Packet) {
	now := h.srv.now()
	ok, id, d, ver := c.authResult()
	res := c.session.Result()
	h.convs.remove(c) // the session is closed when the request releases it
	rec := h.convRecord(r, c)
	if res != nil && res.Version != 0 {
		ver = res.Version
	}
	rec.tlsVersion = ver
	h.srv.metrics.handshake.WithLabelValues(tlsVersionName(ver)).Observe(now.Sub(c.started).Seconds())
	if ok {
		rec.identity = &id
	}
	if !ok || !d.Accepted() || id.Status != policy.CertOK || res == nil || len(res.MSK) < 2*mppeKeyLen {
		h.srv.logger.Error("radius: EAP-TLS success without an admitting decision or keys; rejecting",
			zap.Bool("authorized", ok), zap.String("segment", string(d.Segment)), zap.Bool("keys", res != nil && len(res.MSK) >= 2*mppeKeyLen))
		rec.rule = d.Rule
		h.reject(w, r, eap.Failure(out.Identifier), rec, string(ReasonInternal))
		return
	}
	attrs, sessionID, err := h.acceptAttributes(r, out, &id, &d, res.MSK)
	if err != nil {
		h.srv.logger.Error("radius: cannot build Access-Accept; rejecting", zap.Error(err))
		rec.rule = d.Rule
		h.reject(w, r, eap.Failure(out.Identifier), rec, string(ReasonInternal))
		return
	}
	if h.auditFailing(d) { // already failing: one reject line, no accept line
		rec.rule = d.Rule
		h.reject(w, r, eap.Failure(out.Identifier), rec, string(ReasonAuditUnavailable))
		return
	}
	rec.result = ResultAccept
	rec.segment = d.Segment
	rec.vlan = d.VLAN
	rec.rule = d.Rule
	rec.reason = string(d.Reason)
	rec.sessionID = sessionID
	h.srv.links.put(sessionID, classLink{Identity: id, Segment: string(d.Segment), VLAN: d.VLAN}, now)
	h.decided(rec, now) // logged before the NAS can act on it
	// This line was not confirmed written: fail closed.
	if h.auditFailing(d) {
		h.reject(w, r, eap.Failure(out.Identifier), rec, string(ReasonAuditUnavailable))
		return
	}
	h.write(w, radius.CodeAccessAccept, attrs)
}

// acceptAttributes builds the Access-Accept attributes (Message-Authenticator
// and Proxy-State are added by the writer):
//
//   - EAP-Message: EAP-Success;
//   - User-Name: the certificate identity (SAN e-mail, else subject CN);
//   - Tunnel-Type=VLAN(13) and Tunnel-Medium-Type=IEEE-802(6), each with tag
//     0x00 (RFC 2868 integer tunnel attributes always carry the tag octet),
//     and Tunnel-Private-Group-Id = the VLAN ID in decimal ASCII without a
//     tag octet: that is what FreeRADIUS sends for the usual
//     `Tunnel-Private-Group-Id = "100"` and what Cisco (WLC, ISE-style
//     AAA override) and Aruba (role/VLAN derivation) accept; a first
//     octet >= 0x20 can never be mistaken for a tag (RFC 2868 section 3.6);
//   - Session-Timeout, when the decision has one (whole seconds);
//   - MS-MPPE-Recv-Key = MSK[0:32] and MS-MPPE-Send-Key = MSK[32:64]
//     (RFC 5216 section 2.3, RFC 2548);
//   - Class: "nacd:" + a random session id, for accounting linkage.
func (h *accessHandler) acceptAttributes(r *Request, out *eap.Packet, id *policy.Identity, d *policy.Decision, msk []byte) (radius.Attributes, string, error) {
	b, err := out.Marshal()
	if err != nil {
		return nil, "", err
	}
	attrs := splitEAPRoom(b, 8)
	if name := identityName(id); name != "" {
		if len(name) > maxAttrValue {
			name = name[:maxAttrValue]
		}
		attrs = append(attrs, &radius.AVP{Type: attrUserName, Attribute: []byte(name)})
	}
	if d.VLAN < 1 || d.VLAN > 4094 {
		return nil, "", fmt.Errorf("VLAN %d out of range", d.VLAN)
	}
	attrs = append(attrs,
		&radius.AVP{Type: attrTunnelType, Attribute: []byte{0, 0, 0, 13}},
		&radius.AVP{Type: attrTunnelMediumType, Attribute: []byte{0, 0, 0, 6}},
		&radius.AVP{Type: attrTunnelPrivateGroupID, Attribute: []byte(strconv.Itoa(d.VLAN))},
	)
	if d.SessionTimeout > 0 {
		secs := int64((d.SessionTimeout + time.Second - 1) / time.Second)
		v := make([]byte, 4)
		binary.BigEndian.PutUint32(v, uint32(min(secs, int64(^uint32(0)))))
		attrs = append(attrs, &radius.AVP{Type: attrSessionTimeout, Attribute: v})
	}
	recv, send, err := mppeAttributes(msk, r.Secret, r.Authenticator)
	if err != nil {
		return nil, "", err
	}
	attrs = append(attrs,
		&radius.AVP{Type: attrVendorSpecific, Attribute: recv},
		&radius.AVP{Type: attrVendorSpecific, Attribute: send},
	)
	var sid [16]byte
	if _, err := rand.Read(sid[:]); err != nil {
		return nil, "", err
	}
	sessionID := hex.EncodeToString(sid[:])
	attrs = append(attrs, &radius.AVP{Type: attrClass, Attribute: []byte("nacd:" + sessionID)})
	return attrs, sessionID, nil
}

// fail answers an EAP-Failure (or a session error) with Access-Reject.
func (h *accessHandler) fail(w ResponseWriter, r *Request, c *conversation, out, in *eap.Packet, err error) {
	h.convs.remove(c)
	now := h.srv.now()
	ok, id, d, ver := c.authResult()
	rec := h.convRecord(r, c)
	rec.tlsVersion = ver
	if ok {
		rec.identity = &id
	}
	reason := ReasonTLSHandshake
	switch {
	case ok && !d.Accepted():
		rec.rule = d.Rule
		reason = Reason(d.Reason)
	case errors.Is(err, eaptls.ErrNak):
		reason = ReasonEAPNak
	case errors.Is(err, eaptls.ErrTooLarge):
		reason = ReasonEAPTooLarge
	case errors.Is(err, eaptls.ErrProtocol):
		reason = ReasonEAPProtocol
	case err == nil && (out == nil || out.Code != eap.CodeFailure):
		reason = ReasonInternal
	}
	rec.tlsAlert = tlsAlert(err)
	h.srv.metrics.handshake.WithLabelValues(tlsVersionName(ver)).Observe(now.Sub(c.started).Seconds())
	if err != nil {
		h.srv.logger.Debug("radius: EAP-TLS conversation failed", zap.String("nas", r.Client.Name), zap.Error(err))
	}
	id8 := in.Identifier
	if out != nil {
		id8 = out.Identifier
	}
	h.reject(w, r, eap.Failure(id8), rec, string(reason))
}

// convRecord starts an access log record for a conversation.
func (h *accessHandler) convRecord(r *Request, c *conversation) *accessRecord {
	rec := h.newRecord(r)
	rec.start = c.started
	rec.eapID = c.eapIdentity
	if rec.calling == "" {
		rec.calling = c.calling
	}
	if rec.called == "" {
		rec.called, rec.ssid = c.called, c.ssid
	}
	return rec
}

// reject sends a minimal Access-Reject (EAP-Failure when given, nothing
// identifying) and logs the decision.
func (h *accessHandler) reject(w ResponseWriter, r *Request, failure *eap.Packet, rec *accessRecord, reason string) {
	rec.result = ResultReject
	rec.segment = policy.SegmentReject
	rec.reason = reason
	h.decided(rec, h.srv.now())
	h.writeReject(w, failure)
}

func (h *accessHandler) writeReject(w ResponseWriter, failure *eap.Packet) bool {
	var attrs radius.Attributes
	if failure != nil {
		b, err := failure.Marshal()
		if err != nil {
			return false
		}
		attrs = splitEAP(b)
	}
	return h.write(w, radius.CodeAccessReject, attrs)
}

// auditFailing asks Config.AuditGate whether d must fail closed because the
// access log cannot be written.
func (h *accessHandler) auditFailing(d policy.Decision) bool {
	if h.srv.auditGate == nil {
		return false
	}
	err := h.srv.auditGate(d)
	if err != nil {
		h.srv.logger.Error("radius: the access log cannot be written; rejecting (log.on_write_error)",
			zap.String("segment", string(d.Segment)), zap.Error(err))
	}
	return err != nil
}

// decided counts the decision and writes its access log line.
func (h *accessHandler) decided(rec *accessRecord, now time.Time) {
	h.srv.metrics.decisions.WithLabelValues(rec.result, string(rec.segment), rec.client.Site, rec.reason).Inc()
	msg := "access-reject"
	if rec.result == ResultAccept {
		msg = "access-accept"
	}
	h.srv.accessLog.Info(msg, rec.fields(now)...)
}

// identityName is the User-Name of an Accept: the holder's e-mail, else the
// certificate's CN.
func identityName(id *policy.Identity) string {
	if id.Email != "" {
		return id.Email
	}
	return id.CommonName
}

// ssidFromCalledStationID extracts the SSID from a Called-Station-Id of the
// form "<MAC>:<SSID>" (RFC 3580 section 3.20), where MAC is written
// AA-BB-CC-DD-EE-FF, AA:BB:CC:DD:EE:FF, AABB.CCDD.EEFF or AABBCCDDEEFF.
// The SSID keeps its case. It returns "" when there is no SSID.
func ssidFromCalledStationID(s string) string {
	for _, n := range []int{17, 14, 12} {
		if len(s) > n && s[n] == ':' && isMAC(s[:n]) {
			return s[n+1:]
		}
	}
	return ""
}

func isMAC(s string) bool {
	var sep byte
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
			digits++
		case c == '-' || c == ':' || c == '.':
			if sep != 0 && c != sep {
				return false
			}
			sep = c
		default:
			return false
		}
	}
	if digits != 12 {
		return false
	}
	switch len(s) {
	case 17:
		return sep == '-' || sep == ':'
	case 14:
		return sep == '.'
	default:
		return sep == 0
	}
}

// printable returns b as a string for logs: valid UTF-8 without control
// characters, at most 253 bytes; anything else is hex-escaped.
func printable(b []byte) string {
	if len(b) > maxAttrValue {
		b = b[:maxAttrValue]
	}
	if utf8.Valid(b) && !strings.ContainsFunc(string(b), func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return string(b)
	}
	return "hex:" + hex.EncodeToString(b)
}

// tlsAlert names the TLS alert that ended a handshake ("access denied",
// "bad certificate"), or "".
func tlsAlert(err error) string {
	var ae *eaptls.AlertError
	if errors.As(err, &ae) {
		return ae.Name()
	}
	var op *net.OpError
	if errors.As(err, &op) && (op.Op == "remote error" || op.Op == "local error") && op.Err != nil {
		return strings.TrimPrefix(op.Err.Error(), "tls: ")
	}
	return ""
}
