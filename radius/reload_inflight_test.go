package radius

import (
	"net/netip"
	"testing"

	"layeh.com/radius"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/policy"
	"github.com/herts-council/nacd/radius/eap"
)

// TestReloadKeepsConversations: a Reload in the middle of real EAP-TLS
// conversations drops none of them; each finishes with the session it
// started with, and its decision (made when the handshake completes) uses
// the new policy. A refused Reload changes nothing.
func TestReloadKeepsConversations(t *testing.T) {
	tests := []struct {
		name   string
		rounds int // round trips before the reload
	}{
		{"after the EAP-TLS Start", 1},
		{"after the server's first flight", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pki := newDevicePKI(t)
			e := newEnv(t, envOptions{verifier: pki.verifier})
			c := e.dial(t, nasIP)
			leaf := pki.issuing.IssueDevice(t, testpki.Device{CommonName: "laptop-3", Email: "ian@herts.example", Ownership: policy.OwnershipCouncilManaged, Role: policy.RoleStaff})
			peer := newPeer(t, leaf, 0)

			resp, err := peer.Handle(&eap.Packet{Code: eap.CodeRequest, Type: eap.TypeIdentity})
			if err != nil {
				t.Fatal(err)
			}
			var state []byte
			id := byte(0)
			step := func() *radius.Packet {
				t.Helper()
				id++
				req := accessRequest(t, id, resp, state)
				p := checkResponse(t, exchange(t, c, req), req)
				if p.Code == radius.CodeAccessChallenge {
					state = p.Get(attrState)
					if resp, err = peer.Handle(replyEAP(t, p)); err != nil {
						t.Fatalf("peer: %v", err)
					}
				}
				return p
			}
			for range tt.rounds {
				if p := step(); p.Code != radius.CodeAccessChallenge {
					t.Fatalf("round trip before the reload answered %v", p.Code)
				}
			}

			// A refused reload first: nothing changes.
			if err := e.srv.Reload(Reload{Clients: []Client{{Name: "broken"}}, Policy: testPolicy(t)}); err == nil {
				t.Fatal("invalid clients accepted")
			}
			// Staff now go to guest; the NAS list is rebuilt (one more NAS).
			p := testPolicy(t)
			p.Rules[0].Segment = policy.SegmentGuest
			p.Rules[0].SessionTimeout = 0
			clients := []Client{
				{Name: "ap-wallfields", Networks: []netip.Prefix{netip.MustParsePrefix(nasIP + "/32")}, Secret: testSecret, Site: testSite},
				{Name: "ap-new", Networks: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Secret: testSecret, Site: testSite},
			}
			if err := e.srv.Reload(Reload{Clients: clients, Policy: p}); err != nil {
				t.Fatal(err)
			}

			var final *radius.Packet
			for range 64 {
				if final = step(); final.Code != radius.CodeAccessChallenge {
					break
				}
			}
			if final.Code != radius.CodeAccessAccept {
				t.Fatalf("conversation across the reload ended %v", final.Code)
			}
			if got := string(final.Get(attrTunnelPrivateGroupID)); got != itoa(testVLANGuest) {
				t.Fatalf("VLAN %q, want %d (the new rule)", got, testVLANGuest)
			}
			if n := e.droppedCount(DropUnknownClient); n != 0 {
				t.Fatalf("%v requests dropped as unknown client", n)
			}
		})
	}
}
