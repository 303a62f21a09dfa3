package radius

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"layeh.com/radius"

	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius/eap"
	"github.com/herts-council/nacd/radius/eaptls"
)

func testMSK() []byte {
	msk := make([]byte, 64)
	for i := range msk {
		msk[i] = byte(0xA0 + i)
	}
	return msk
}

// startConversation sends EAP-Response/Identity and returns the State and
// the EAP-TLS Start of the Access-Challenge.
func startConversation(tb testing.TB, e *testEnv, c connLike, id byte) (state []byte, start *eap.Packet) {
	tb.Helper()
	req := accessRequest(tb, id, identityResponse(10, "anonymous@herts.example"), nil)
	p := checkResponse(tb, exchange(tb, c.UDP(), req), req)
	if p.Code != radius.CodeAccessChallenge {
		tb.Fatalf("code %v, want Access-Challenge", p.Code)
	}
	st, ok := p.Lookup(attrState)
	if !ok || len(st) < 16 {
		tb.Fatalf("State %x: want 16+ random bytes", st)
	}
	return st, replyEAP(tb, p)
}

// attrsOf returns the values of every attribute of type t.
func attrsOf(p *radius.Packet, t radius.Type) []radius.Attribute {
	var out []radius.Attribute
	for _, a := range p.Attributes {
		if a.Type == t {
			out = append(out, a.Attribute)
		}
	}
	return out
}

func TestAcceptAttributes(t *testing.T) {
	ff := &fakeFactory{msk: testMSK()}
	e := newEnv(t, envOptions{fake: ff})
	c := udp{e.dial(t, nasIP)}
	state, start := startConversation(t, e, c, 1)
	if start.Code != eap.CodeRequest || start.Type != eap.TypeTLS || start.Identifier != 11 {
		t.Fatalf("EAP %+v, want EAP-TLS Start with identifier 11", start)
	}

	resp := &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}
	req := accessRequest(t, 2, resp, state, tattr{attrProxyState, []byte("ps-a")}, tattr{attrProxyState, []byte("ps-b")})
	raw := exchange(t, c.UDP(), req)
	p := checkResponse(t, raw, req)
	if p.Code != radius.CodeAccessAccept {
		t.Fatalf("code %v, want Access-Accept", p.Code)
	}
	if s := replyEAP(t, p); s.Code != eap.CodeSuccess || s.Identifier != start.Identifier {
		t.Fatalf("EAP %+v, want Success id %d", s, start.Identifier)
	}
	if got := string(p.Get(attrUserName)); got != "alice@herts.example" {
		t.Fatalf("User-Name %q, want the certificate e-mail", got)
	}
	wantAttrs := []struct {
		name string
		typ  radius.Type
		val  []byte
	}{
		{"Tunnel-Type VLAN, tag 0", attrTunnelType, []byte{0, 0, 0, 13}},
		{"Tunnel-Medium-Type IEEE-802, tag 0", attrTunnelMediumType, []byte{0, 0, 0, 6}},
		{"Tunnel-Private-Group-Id VLAN", attrTunnelPrivateGroupID, []byte("20")},
		{"Session-Timeout 8h", attrSessionTimeout, binary.BigEndian.AppendUint32(nil, uint32(testSessionMax.Seconds()))},
	}
	for _, w := range wantAttrs {
		if got := p.Get(w.typ); !bytes.Equal(got, w.val) {
			t.Errorf("%s: % x, want % x", w.name, got, w.val)
		}
	}
	if got := attrsOf(p, attrProxyState); len(got) != 2 || string(got[0]) != "ps-a" || string(got[1]) != "ps-b" {
		t.Errorf("Proxy-State %q, want [ps-a ps-b]", got)
	}
	class := string(p.Get(attrClass))
	if !strings.HasPrefix(class, "nacd:") || len(class) != len("nacd:")+32 {
		t.Errorf("Class %q, want nacd:<32 hex>", class)
	}

	// MPPE keys decrypt (with the RFC algorithm written in the test) to the MSK halves.
	var reqAuth [16]byte
	copy(reqAuth[:], req[4:20])
	keys := map[byte][]byte{}
	for _, v := range attrsOf(p, attrVendorSpecific) {
		if binary.BigEndian.Uint32(v) != 311 {
			continue
		}
		keys[v[4]] = rfc2548Decrypt(t, v[6:], testSecret, reqAuth)
	}
	msk := testMSK()
	if !bytes.Equal(keys[msMPPERecvKey], msk[:32]) {
		t.Errorf("MS-MPPE-Recv-Key = %x, want MSK[0:32]", keys[msMPPERecvKey])
	}
	if !bytes.Equal(keys[msMPPESendKey], msk[32:64]) {
		t.Errorf("MS-MPPE-Send-Key = %x, want MSK[32:64]", keys[msMPPESendKey])
	}

	// One access log line with the identity and no key material.
	if e.accessLog.Len() != 1 {
		t.Fatalf("%d access log lines, want 1", e.accessLog.Len())
	}
	entry := e.accessLog.All()[0]
	m := entry.ContextMap()
	want := map[string]any{
		FieldResult:           ResultAccept,
		FieldOutcome:          "success",
		FieldSegment:          "general",
		FieldVLAN:             int64(testVLANGen),
		FieldRule:             "staff-general",
		FieldReason:           string(policy.ReasonRuleMatched),
		FieldNASName:          "ap-wallfields",
		FieldNASIP:            nasIP,
		FieldSite:             testSite,
		FieldCallingStationID: "02-00-00-00-00-01",
		FieldCalledStationID:  "0A-0B-0C-0D-0E-0F:Herts-Staff",
		FieldSSID:             "Herts-Staff",
		FieldEAPIdentity:      "anonymous@herts.example",
		FieldEmail:            "alice@herts.example",
		FieldDeviceUUID:       "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		FieldSubject:          "CN=laptop-042,O=East Herts Council",
		FieldSerial:           "0a1b2c",
		FieldIssuer:           "CN=nacd test root",
		FieldAnchor:           "council",
		FieldTLSVersion:       "1.3",
		FieldRevocationSource: "crl:council",
		FieldRevocationAge:    float64(90),
		FieldSessionID:        strings.TrimPrefix(class, "nacd:"),
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("access log %s = %#v, want %#v", k, m[k], v)
		}
	}
	assertNoSecrets(t, entry.ContextMap(), msk)

	if got := testutil.ToFloat64(e.srv.metrics.decisions.WithLabelValues(ResultAccept, "general", testSite, string(policy.ReasonRuleMatched))); got != 1 {
		t.Errorf("decisions{accept,general} = %v, want 1", got)
	}
	if e.srv.convs.len() != 0 {
		t.Errorf("%d conversations left: a finished conversation must be removed", e.srv.convs.len())
	}
	// The session is closed when the request releases the conversation,
	// just after the reply is sent.
	waitFor(t, "the finished session to be closed", func() bool { return ff.closedCount() == 1 })
	if got := testutil.CollectAndCount(e.srv.metrics.handshake); got != 1 {
		t.Errorf("handshake histogram series %d, want 1", got)
	}
}

// assertNoSecrets fails if any logged value contains the shared secret or
// a slice of the MSK (in raw, hex or any printed form).
func assertNoSecrets(tb testing.TB, m map[string]any, msk []byte) {
	tb.Helper()
	for k, v := range m {
		s := strings.ToLower(strings.TrimSpace(fmtAny(v)))
		for _, bad := range []string{string(testSecret), hexs(msk[:8]), hexs(msk[32:40]), string(msk[:8])} {
			if bad != "" && strings.Contains(s, strings.ToLower(bad)) {
				tb.Fatalf("access log field %s leaks secret material", k)
			}
		}
	}
}

func TestPolicyRejectIsMinimal(t *testing.T) {
	v := &fixedVerifier{id: staffIdentity()}
	v.id.Role = policy.RoleContractor // no rule for contractors: default deny
	ff := &fakeFactory{msk: testMSK()}
	e := newEnv(t, envOptions{fake: ff, verifier: v})
	c := udp{e.dial(t, nasIP)}
	state, start := startConversation(t, e, c, 1)
	req := accessRequest(t, 2, &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}, state)
	p := checkResponse(t, exchange(t, c.UDP(), req), req)
	if p.Code != radius.CodeAccessReject {
		t.Fatalf("code %v, want Access-Reject", p.Code)
	}
	assertMinimalReject(t, p, true)
	if f := replyEAP(t, p); f.Code != eap.CodeFailure {
		t.Fatalf("EAP %v, want Failure", f.Code)
	}
	m := e.accessLog.All()[0].ContextMap()
	if m[FieldResult] != ResultReject || m[FieldReason] != string(policy.ReasonNoRuleMatched) || m[FieldRule] != "default-deny" || m[FieldTLSAlert] != "bad certificate" || m[FieldEmail] != "alice@herts.example" {
		t.Fatalf("access log %v", m)
	}
	if _, ok := m[FieldVLAN]; ok {
		t.Fatal("a reject must not log a VLAN")
	}
	if got := testutil.ToFloat64(e.srv.metrics.decisions.WithLabelValues(ResultReject, "reject", testSite, string(policy.ReasonNoRuleMatched))); got != 1 {
		t.Fatalf("decisions{reject,no-rule-matched} = %v, want 1", got)
	}
	// The conversation is over: its State is now unknown.
	req = accessRequest(t, 3, &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}, state)
	if p := checkResponse(t, exchange(t, c.UDP(), req), req); p.Code != radius.CodeAccessReject {
		t.Fatalf("reused State answered %v", p.Code)
	}
}

func TestAlertForReason(t *testing.T) {
	tests := []struct {
		reason policy.Reason
		want   string
	}{
		{policy.ReasonRevoked, "revoked certificate"},
		{policy.ReasonExpired, "expired certificate"},
		{policy.ReasonUntrusted, "unknown certificate authority"},
		{policy.ReasonWrongEKU, "bad certificate"},
		{policy.ReasonNoRuleMatched, "access denied"},
		{policy.ReasonRuleReject, "access denied"},
	}
	for _, tt := range tests {
		t.Run(string(tt.reason), func(t *testing.T) {
			if got := strings.TrimPrefix(alertFor(tt.reason).Error(), "tls: "); got != tt.want {
				t.Fatalf("alert %q, want %q", got, tt.want)
			}
		})
	}
}

// TestIdentifierMismatchDropped: eaptls says the response does not answer
// the last request: silently discard, keep the conversation.
func TestIdentifierMismatchDropped(t *testing.T) {
	ff := &fakeFactory{msk: testMSK()}
	e := newEnv(t, envOptions{fake: ff})
	c := udp{e.dial(t, nasIP)}
	state, start := startConversation(t, e, c, 1)
	bad := &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier + 7, Type: eap.TypeTLS, Data: []byte{0}}
	if _, err := c.UDP().Write(accessRequest(t, 2, bad, state)); err != nil {
		t.Fatal(err)
	}
	e.waitDropped(t, DropEAPIdentifierMismatch, 1)
	assertNoReply(t, c.UDP())
	good := accessRequest(t, 3, &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}, state)
	if p := checkResponse(t, exchange(t, c.UDP(), good), good); p.Code != radius.CodeAccessAccept {
		t.Fatalf("after a mismatched response the conversation must go on; got %v", p.Code)
	}
}

// TestStateFromAnotherNAS: a State is only valid from the NAS that started
// the conversation.
func TestStateFromAnotherNAS(t *testing.T) {
	ff := &fakeFactory{msk: testMSK()}
	e := newEnv(t, envOptions{fake: ff})
	state, start := startConversation(t, e, udp{e.dial(t, nasIP)}, 1)
	other := e.dial(t, strictNASIP)
	req := accessRequest(t, 2, &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}, state)
	p := checkResponse(t, exchange(t, other, req), req)
	if p.Code != radius.CodeAccessReject {
		t.Fatalf("code %v, want Access-Reject", p.Code)
	}
	if ff.session(0).handles.Load() != 0 {
		t.Fatal("another NAS's request reached the session")
	}
}

// TestConversationFlood: twice MaxConversations half-open conversations
// never grow the table beyond its bound, evicted sessions are closed and
// their States rejected, and a legitimate authentication afterwards works.
func TestConversationFlood(t *testing.T) {
	const max = 8
	ff := &fakeFactory{msk: testMSK()}
	e := newEnv(t, envOptions{fake: ff, maxConversations: max})
	c := udp{e.dial(t, nasIP)}
	var states [][]byte
	for i := range 2 * max {
		st, _ := startConversation(t, e, c, byte(i))
		states = append(states, st)
		if n := e.srv.convs.len(); n > max {
			t.Fatalf("after %d Identity requests the table holds %d > %d", i+1, n, max)
		}
	}
	if got := testutil.ToFloat64(e.srv.metrics.evictions.WithLabelValues(EvictFull)); got != max {
		t.Fatalf("evictions{full} = %v, want %d", got, max)
	}
	if got := testutil.ToFloat64(e.srv.metrics.conversations); got != max {
		t.Fatalf("conversations gauge = %v, want %d", got, max)
	}
	if ff.closedCount() != max {
		t.Fatalf("%d sessions closed, want the %d evicted", ff.closedCount(), max)
	}
	// The oldest was evicted: its State is unknown now.
	req := accessRequest(t, 200, &eap.Packet{Code: eap.CodeResponse, Identifier: 11, Type: eap.TypeTLS, Data: []byte{0}}, states[0])
	if p := checkResponse(t, exchange(t, c.UDP(), req), req); p.Code != radius.CodeAccessReject {
		t.Fatalf("evicted State answered %v, want Access-Reject", p.Code)
	}
	// A legitimate authentication after the flood.
	st, start := startConversation(t, e, c, 201)
	req = accessRequest(t, 202, &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}, st)
	if p := checkResponse(t, exchange(t, c.UDP(), req), req); p.Code != radius.CodeAccessAccept {
		t.Fatalf("legitimate authentication after the flood: %v", p.Code)
	}
}

// TestSessionErrorsReject: every error from the session ends in
// Access-Reject with EAP-Failure and the matching reason.
func TestSessionErrorsReject(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		reason Reason
	}{
		{"peer Nak", eaptls.ErrNak, ReasonEAPNak},
		{"message too large", eaptls.ErrTooLarge, ReasonEAPTooLarge},
		{"protocol violation", eaptls.ErrProtocol, ReasonEAPProtocol},
		{"handshake failure", eaptls.ErrHandshake, ReasonTLSHandshake},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ff := &fakeFactory{msk: testMSK(), handle: func(f *fakeSession, p *eap.Packet) (*eap.Packet, error) {
				return eap.Failure(p.Identifier), tt.err
			}}
			e := newEnv(t, envOptions{fake: ff})
			c := udp{e.dial(t, nasIP)}
			st, start := startConversation(t, e, c, 1)
			req := accessRequest(t, 2, &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}, st)
			p := checkResponse(t, exchange(t, c.UDP(), req), req)
			if p.Code != radius.CodeAccessReject {
				t.Fatalf("code %v", p.Code)
			}
			assertMinimalReject(t, p, true)
			if m := e.accessLog.All()[0].ContextMap(); m[FieldReason] != string(tt.reason) {
				t.Fatalf("reason %v, want %s", m[FieldReason], tt.reason)
			}
			if e.srv.convs.len() != 0 {
				t.Fatal("failed conversation left in the table")
			}
		})
	}
}

// TestSuccessWithoutDecisionFailsClosed: an EAP-Success from the session
// without an admitting decision must never become an Access-Accept.
func TestSuccessWithoutDecisionFailsClosed(t *testing.T) {
	ff := &fakeFactory{msk: testMSK(), handle: func(f *fakeSession, p *eap.Packet) (*eap.Packet, error) {
		return eap.Success(p.Identifier), nil // never called Authorize
	}}
	e := newEnv(t, envOptions{fake: ff})
	c := udp{e.dial(t, nasIP)}
	st, start := startConversation(t, e, c, 1)
	req := accessRequest(t, 2, &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}, st)
	p := checkResponse(t, exchange(t, c.UDP(), req), req)
	if p.Code != radius.CodeAccessReject {
		t.Fatalf("code %v, want Access-Reject", p.Code)
	}
	if f := replyEAP(t, p); f.Code != eap.CodeFailure {
		t.Fatalf("EAP %v, want Failure", f.Code)
	}
}
