package radius

// Accounting (RFC 2866). An Accounting-Request takes the same path as an
// Access-Request (client lookup, verification, duplicate cache) and is then
// applied to the SessionTable: Start and Interim-Update write the session,
// Stop removes it, Accounting-On/Off remove every session of the NAS. The
// Accounting-Response is sent only once the store has the change, so a NAS
// retransmits (and nacd retries) whatever was not stored; a retransmission
// of an answered request is answered from the duplicate cache and not
// applied or counted twice.
//
// The session is linked to the certificate that was admitted through the
// Class attribute: the Access-Accept carries "nacd:<id>" and the NAS echoes
// it in accounting; classLinks keeps id -> {serial, device, holder, VLAN}
// for DefaultLinkTTL after the Accept.

import (
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"layeh.com/radius"

	"github.com/herts-council/nacd/policy"
)

// portKind is what a UDP socket serves: RFC 2866 keeps accounting on its own
// port. RadSec carries both on one connection (portAny).
type portKind uint8

const (
	portAny portKind = iota
	portAuth
	portAcct
)

// Accounting attribute types (RFC 2865, 2866, 2869, 3162).
const (
	attrNASIPAddress       = 4
	attrNASIdentifier      = 32
	attrAcctStatusType     = 40
	attrAcctDelayTime      = 41
	attrAcctInputOctets    = 42
	attrAcctOutputOctets   = 43
	attrAcctSessionID      = 44
	attrAcctSessionTime    = 46
	attrAcctInputPackets   = 47
	attrAcctOutputPackets  = 48
	attrAcctTerminateCause = 49
	attrAcctInputGigawords = 52
	attrAcctOutputGiga     = 53
	attrEventTimestamp     = 55
	attrNASIPv6Address     = 95
)

// Acct-Status-Type values (RFC 2866 section 5.1).
const (
	acctStart         = 1
	acctStop          = 2
	acctInterimUpdate = 3
	acctOn            = 7
	acctOff           = 8
)

// Status-type label values of nacd_radius_accounting_requests_total.
const (
	AcctStatusStart   = "start"
	AcctStatusInterim = "interim_update"
	AcctStatusStop    = "stop"
	AcctStatusOn      = "accounting_on"
	AcctStatusOff     = "accounting_off"
	AcctStatusOther   = "other"
)

// Access log fields of accounting lines (see accesslog.go for the others).
const (
	FieldAcctStatus         = "radius.acct_status_type"
	FieldAcctSessionID      = "radius.acct_session_id"
	FieldAcctSessionTime    = "radius.acct_session_time_s"
	FieldAcctInputOctets    = "radius.acct_input_octets"
	FieldAcctOutputOctets   = "radius.acct_output_octets"
	FieldAcctInputPackets   = "radius.acct_input_packets"
	FieldAcctOutputPackets  = "radius.acct_output_packets"
	FieldAcctTerminateCause = "radius.acct_terminate_cause"
	FieldNASIdentifier      = "nas.identifier"
	FieldSessionsCleared    = "nacd.sessions_cleared"
)

// serves reports whether a UDP socket of kind k serves the request b:
// Access-Request on the authentication port, Accounting-Request on the
// accounting port, Status-Server on both (RFC 5997), anything over RadSec.
func (k portKind) serves(b []byte) bool {
	if k == portAny || len(b) == 0 {
		return true
	}
	switch radius.Code(b[0]) {
	case radius.CodeAccountingRequest:
		return k == portAcct
	case radius.CodeStatusServer:
		return true
	default:
		return k == portAuth
	}
}

// ServeAccounting reads Accounting-Requests (and Status-Server, RFC 5997)
// from conn until Close, like Serve. It needs Config.Sessions.
func (s *Server) ServeAccounting(conn net.PacketConn) error {
	if s.acct.sessions == nil {
		return errors.New("radius: accounting needs Config.Sessions")
	}
	return s.serveConn(conn, portAcct)
}

// route is the server's handler: accounting to the accounting handler,
// everything else to the access handler, each only on its own port.
func (s *Server) route(w ResponseWriter, r *Request) {
	switch {
	case r.Code == radius.CodeAccountingRequest:
		if r.port == portAuth {
			s.dropped(DropUnsupportedCode, r.RemoteAddr, zap.String("nas", r.Client.Name))
			return
		}
		s.acct.ServeRADIUS(w, r)
	case r.port == portAcct && r.Code == radius.CodeStatusServer:
		// RFC 5997 section 3: Accounting-Response on the accounting port.
		if err := w.Write(radius.CodeAccountingResponse, nil); err != nil {
			s.logger.Warn("radius: cannot send response", zap.Error(err))
		}
	case r.port == portAcct:
		s.dropped(DropUnsupportedCode, r.RemoteAddr, zap.String("nas", r.Client.Name))
	default:
		s.access.ServeRADIUS(w, r)
	}
}

// verifyAccounting checks an Accounting-Request b (framing already walked):
// the Request Authenticator is MD5(Code+Identifier+Length+16 zero
// octets+Attributes+Secret) (RFC 2866 section 3), and a
// Message-Authenticator, when present at maOff, is the HMAC-MD5 over the
// packet with the Authenticator field zeroed (as RFC 5176 section 3.3 does
// for requests without a random authenticator). Both compare in constant
// time.
func verifyAccounting(b []byte, maOff int, c *Client) (*radius.Packet, error) {
	var zero [16]byte
	h := md5.New()
	h.Write(b[:4])
	h.Write(zero[:])
	h.Write(b[headerLen:])
	h.Write(c.Secret)
	var sum [md5.Size]byte
	if !hmac.Equal(h.Sum(sum[:0]), b[4:headerLen]) {
		return nil, drop(DropBadAuthenticator, "Accounting-Request authenticator mismatch (wrong shared secret?)")
	}
	if maOff >= 0 {
		mac := hmac.New(md5.New, c.Secret)
		mac.Write(b[:4])
		mac.Write(zero[:])
		mac.Write(b[headerLen:maOff])
		mac.Write(zero[:])
		mac.Write(b[maOff+messageAuthenticatorLen:])
		if !hmac.Equal(mac.Sum(sum[:0]), b[maOff:maOff+messageAuthenticatorLen]) {
			return nil, drop(DropBadMessageAuthenticator, "HMAC-MD5 mismatch (wrong shared secret?)")
		}
	} else if c.RequireMessageAuthenticator && hasAttr(b, attrProxyState) {
		return nil, drop(DropMissingMessageAuthenticator, "request with Proxy-State")
	}
	p, err := radius.Parse(b, c.Secret)
	if err != nil {
		return nil, drop(DropMalformed, "%v", err)
	}
	return p, nil
}

func hasAttr(b []byte, t byte) bool {
	for off := headerLen; off+2 <= len(b); off += int(b[off+1]) {
		if b[off] == t {
			return true
		}
		if b[off+1] < 2 {
			return false
		}
	}
	return false
}

// classLink is what an Access-Accept decided, for the accounting that
// echoes its Class: the verified identity and the placement.
type classLink struct {
	Identity policy.Identity
	Segment  string
	VLAN     int
}

// classLinks maps the id in Class "nacd:<id>" to the Accept's facts,
// bounded in size (oldest first out) and time.
type classLinks struct {
	mu  sync.Mutex
	m   map[string]*list.Element
	l   list.List // front: newest
	max int
	ttl time.Duration
}

type classEntry struct {
	id      string
	link    classLink
	expires time.Time
}

func newClassLinks(max int, ttl time.Duration) *classLinks {
	return &classLinks{m: map[string]*list.Element{}, max: max, ttl: ttl}
}

func (c *classLinks) put(id string, l classLink, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
	if e, ok := c.m[id]; ok {
		c.l.Remove(e)
	}
	for len(c.m) >= c.max && c.l.Len() > 0 {
		b := c.l.Back()
		delete(c.m, b.Value.(*classEntry).id)
		c.l.Remove(b)
	}
	c.m[id] = c.l.PushFront(&classEntry{id: id, link: l, expires: now.Add(c.ttl)})
}

func (c *classLinks) get(id string, now time.Time) (classLink, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
	e, ok := c.m[id]
	if !ok {
		return classLink{}, false
	}
	return e.Value.(*classEntry).link, true
}

func (c *classLinks) expireLocked(now time.Time) {
	for b := c.l.Back(); b != nil && !now.Before(b.Value.(*classEntry).expires); b = c.l.Back() {
		delete(c.m, b.Value.(*classEntry).id)
		c.l.Remove(b)
	}
}

// accountingHandler applies Accounting-Requests to the session table.
type accountingHandler struct {
	srv      *Server
	sessions *SessionTable
	requests *prometheus.CounterVec // status_type, client
	failed   prometheus.Counter
}

// accountingStoreTimeout bounds one store write; a NAS retransmits after a
// few seconds anyway.
const accountingStoreTimeout = 5 * time.Second

func newAccountingHandler(s *Server, t *SessionTable, reg prometheus.Registerer) (*accountingHandler, error) {
	h := &accountingHandler{
		srv:      s,
		sessions: t,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nacd_radius_accounting_requests_total",
			Help: "Accounting-Requests applied to the session table (duplicates not counted), by Acct-Status-Type and client.",
		}, []string{"status_type", "client"}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nacd_radius_accounting_store_errors_total",
			Help: "Accounting-Requests left unanswered because the session store failed (the NAS retransmits).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{h.requests, h.failed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return h, nil
}

func statusName(t uint32) string {
	switch t {
	case acctStart:
		return AcctStatusStart
	case acctStop:
		return AcctStatusStop
	case acctInterimUpdate:
		return AcctStatusInterim
	case acctOn:
		return AcctStatusOn
	case acctOff:
		return AcctStatusOff
	}
	return AcctStatusOther
}

func attrUint32(p *radius.Packet, t radius.Type) (uint32, bool) {
	v, ok := p.Lookup(t)
	if !ok || len(v) != 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(v), true
}

// ServeRADIUS handles one verified Accounting-Request.
func (h *accountingHandler) ServeRADIUS(w ResponseWriter, r *Request) {
	if h.sessions == nil {
		h.srv.dropped(DropUnsupportedCode, r.RemoteAddr, zap.String("nas", r.Client.Name))
		return
	}
	st, ok := attrUint32(r.Packet, attrAcctStatusType)
	if !ok {
		h.srv.dropped(DropMalformed, r.RemoteAddr, zap.String("nas", r.Client.Name), zap.String("detail", "no Acct-Status-Type"))
		return
	}
	status := statusName(st)
	s := h.session(r)
	if (st == acctStart || st == acctStop || st == acctInterimUpdate) && s.ID == "" {
		h.srv.dropped(DropMalformed, r.RemoteAddr, zap.String("nas", r.Client.Name), zap.String("detail", "no Acct-Session-Id"))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), accountingStoreTimeout)
	defer cancel()
	var err error
	cleared := -1
	switch st {
	case acctStart, acctInterimUpdate:
		err = h.sessions.Update(ctx, s)
	case acctStop:
		var old *Session
		old, err = h.sessions.Stop(ctx, s.Key())
		if old != nil {
			s = mergeSession(old, s)
		}
	case acctOn, acctOff:
		cleared, err = h.sessions.ClearNAS(ctx, s.NASIP)
	}
	if err != nil {
		h.failed.Inc()
		h.srv.limitedLog("accounting_store", "radius: cannot store accounting; not answered",
			zap.String("nas", r.Client.Name), zap.String(FieldAcctStatus, status), zap.Error(err))
		return
	}
	h.requests.WithLabelValues(status, r.Client.Name).Inc()
	h.log(r, status, s, cleared)
	if err := w.Write(radius.CodeAccountingResponse, nil); err != nil {
		h.srv.logger.Warn("radius: cannot send response", zap.Error(err))
	}
}

// session reads the session facts of an Accounting-Request, linking the
// Accept through Class.
func (h *accountingHandler) session(r *Request) *Session {
	now := r.Received
	s := &Session{
		ID:            printable(r.Get(attrAcctSessionID)),
		NASIP:         r.RemoteAddr.Addr().Unmap().String(),
		NASName:       r.Client.Name,
		NASIdentifier: printable(r.Get(attrNASIdentifier)),
		Site:          r.Client.Site,
		UserName:      printable(r.Get(attrUserName)),
		Calling:       printable(r.Get(attrCallingStationID)),
		Called:        printable(r.Get(attrCalledStationID)),
		Updated:       now,
	}
	if v, ok := r.Lookup(attrNASIPAddress); ok && len(v) == 4 {
		s.NASIPAddress = netip.AddrFrom4([4]byte(v)).String()
	} else if v, ok := r.Lookup(attrNASIPv6Address); ok && len(v) == 16 {
		s.NASIPAddress = netip.AddrFrom16([16]byte(v)).String()
	}
	s.SSID = ssidFromCalledStationID(s.Called)
	delay, _ := attrUint32(r.Packet, attrAcctDelayTime)
	event := now.Add(-time.Duration(min(delay, 86400)) * time.Second)
	st, _ := attrUint32(r.Packet, attrAcctStatusType)
	s.SessionTime, _ = attrUint32(r.Packet, attrAcctSessionTime)
	if st == acctStart {
		s.Started = event
	} else {
		s.Started = event.Add(-time.Duration(s.SessionTime) * time.Second)
	}
	in, _ := attrUint32(r.Packet, attrAcctInputOctets)
	out, _ := attrUint32(r.Packet, attrAcctOutputOctets)
	inG, _ := attrUint32(r.Packet, attrAcctInputGigawords)
	outG, _ := attrUint32(r.Packet, attrAcctOutputGiga)
	s.InOctets = uint64(inG)<<32 | uint64(in)
	s.OutOctets = uint64(outG)<<32 | uint64(out)
	s.InPackets, _ = attrUint32(r.Packet, attrAcctInputPackets)
	s.OutPackets, _ = attrUint32(r.Packet, attrAcctOutputPackets)
	if v, ok := r.Lookup(attrTunnelPrivateGroupID); ok {
		if len(v) > 0 && v[0] < 0x20 { // a tag (RFC 2868 section 3.6)
			v = v[1:]
		}
		if n, err := strconv.Atoi(string(v)); err == nil && n >= 1 && n <= 4094 {
			s.VLAN = n
		}
	}
	for _, a := range r.Attributes {
		if a.Type != attrClass {
			continue
		}
		id, ok := strings.CutPrefix(string(a.Attribute), "nacd:")
		if !ok {
			continue
		}
		s.ClassID = printable([]byte(id))
		if l, ok := h.srv.links.get(id, now); ok {
			ident := l.Identity
			s.Identity = &ident
			s.Serial, s.DeviceUUID, s.Email, s.Segment = ident.Serial, ident.DeviceUUID, ident.Email, l.Segment
			if s.VLAN == 0 {
				s.VLAN = l.VLAN
			}
		}
		break
	}
	return s
}

// terminateCauses names the common Acct-Terminate-Cause values (RFC 2866
// section 5.10, RFC 3580).
var terminateCauses = map[uint32]string{
	1: "user-request", 2: "lost-carrier", 3: "lost-service", 4: "idle-timeout",
	5: "session-timeout", 6: "admin-reset", 7: "admin-reboot", 8: "port-error",
	9: "nas-error", 10: "nas-request", 11: "nas-reboot", 12: "port-unneeded",
	13: "port-preempted", 14: "port-suspended", 15: "service-unavailable",
	16: "callback", 17: "user-error", 18: "host-request", 19: "supplicant-restart",
	20: "reauthentication-failure", 21: "port-reinitialized", 22: "port-administratively-disabled",
}

// log writes the access log line of one accounting event.
func (h *accountingHandler) log(r *Request, status string, s *Session, cleared int) {
	f := []zap.Field{
		zap.String(FieldAction, "radius-accounting"),
		zap.String(FieldOutcome, "success"),
		zap.String(FieldAcctStatus, status),
		zap.String(FieldNASName, r.Client.Name),
		zap.String(FieldNASIP, s.NASIP),
		zap.String(FieldSite, r.Client.Site),
		zap.String(FieldNASIdentifier, s.NASIdentifier),
	}
	if cleared >= 0 {
		f = append(f, zap.Int(FieldSessionsCleared, cleared))
	} else {
		f = append(f,
			zap.String(FieldAcctSessionID, s.ID),
			zap.String(FieldSessionID, s.ClassID),
			zap.String(FieldUserName, s.UserName),
			zap.String(FieldCallingStationID, s.Calling),
			zap.String(FieldCalledStationID, s.Called),
			zap.String(FieldSSID, s.SSID),
			zap.String(FieldEmail, s.Email),
			zap.String(FieldDeviceUUID, s.DeviceUUID),
			zap.String(FieldSerial, s.Serial),
			zap.Int(FieldVLAN, s.VLAN),
			zap.Time(FieldStart, s.Started),
			zap.Uint32(FieldAcctSessionTime, s.SessionTime),
			zap.Uint64(FieldAcctInputOctets, s.InOctets),
			zap.Uint64(FieldAcctOutputOctets, s.OutOctets),
			zap.Uint32(FieldAcctInputPackets, s.InPackets),
			zap.Uint32(FieldAcctOutputPackets, s.OutPackets),
		)
		if c, ok := attrUint32(r.Packet, attrAcctTerminateCause); ok {
			name := terminateCauses[c]
			if name == "" {
				name = strconv.FormatUint(uint64(c), 10)
			}
			f = append(f, zap.String(FieldAcctTerminateCause, name))
		}
	}
	h.srv.accessLog.Info("accounting-"+strings.ReplaceAll(status, "_", "-"), f...)
}
