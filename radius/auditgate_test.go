package radius

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"layeh.com/radius"

	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius/eap"
)

// TestAuditGate: an Accept is sent only when Config.AuditGate confirms the
// access log line (asked before and after the line is written); otherwise
// the request is rejected with ReasonAuditUnavailable.
func TestAuditGate(t *testing.T) {
	errLog := errors.New("disk full")
	tests := []struct {
		name      string
		failFrom  int32 // gate fails from this call on (1-based); 0 never
		wantCode  radius.Code
		wantLines []string // results of the access log lines, in order
	}{
		{name: "no gate failure", failFrom: 0, wantCode: radius.CodeAccessAccept, wantLines: []string{ResultAccept}},
		{name: "log already failing", failFrom: 1, wantCode: radius.CodeAccessReject, wantLines: []string{ResultReject}},
		{name: "the accept line itself failed", failFrom: 2, wantCode: radius.CodeAccessReject, wantLines: []string{ResultAccept, ResultReject}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			var mu sync.Mutex
			var segs []policy.Segment
			gate := func(d policy.Decision) error {
				n := calls.Add(1)
				mu.Lock()
				segs = append(segs, d.Segment)
				mu.Unlock()
				if tc.failFrom > 0 && n >= tc.failFrom {
					return errLog
				}
				return nil
			}
			e := newEnv(t, envOptions{fake: &fakeFactory{msk: testMSK()}, auditGate: gate})
			c := udp{e.dial(t, nasIP)}
			state, start := startConversation(t, e, c, 1)
			resp := &eap.Packet{Code: eap.CodeResponse, Identifier: start.Identifier, Type: eap.TypeTLS, Data: []byte{0}}
			req := accessRequest(t, 2, resp, state)
			p := checkResponse(t, exchange(t, c.UDP(), req), req)
			if p.Code != tc.wantCode {
				t.Fatalf("code %v, want %v", p.Code, tc.wantCode)
			}
			mu.Lock()
			defer mu.Unlock()
			if calls.Load() == 0 || segs[0] != "general" {
				t.Errorf("gate calls %d segments %v, want the decision's segment general", calls.Load(), segs)
			}
			lines := e.accessLog.All()
			if len(lines) != len(tc.wantLines) {
				t.Fatalf("%d access log lines, want %d", len(lines), len(tc.wantLines))
			}
			for i, want := range tc.wantLines {
				m := lines[i].ContextMap()
				if m[FieldResult] != want {
					t.Errorf("line %d result %v, want %s", i, m[FieldResult], want)
				}
				if want == ResultReject && m[FieldReason] != string(ReasonAuditUnavailable) {
					t.Errorf("line %d reason %v, want %s", i, m[FieldReason], ReasonAuditUnavailable)
				}
			}
		})
	}
}
