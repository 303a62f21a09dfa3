package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"layeh.com/radius"

	"github.com/herts-council/nacd/internal/eapoltest"
	"github.com/herts-council/nacd/internal/testtool"
	"github.com/herts-council/nacd/pki"
	nradius "github.com/herts-council/nacd/radius"
)

// dynNAS is a NAS for RFC 5176 on loopback: it checks the Request
// Authenticator of each Disconnect-Request and answers ACK.
type dynNAS struct {
	conn *net.UDPConn
	reqs chan *radius.Packet
}

func newDynNAS(t *testing.T, secret string) *dynNAS {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	n := &dynNAS{conn: c, reqs: make(chan *radius.Packet, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 4096)
		for {
			k, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			b := append([]byte(nil), buf[:k]...)
			if !radius.IsAuthenticRequest(b, []byte(secret)) {
				continue
			}
			p, err := radius.Parse(b, []byte(secret))
			if err != nil {
				continue
			}
			n.reqs <- p
			ack := radius.CodeDisconnectACK
			if p.Code == radius.CodeCoARequest {
				ack = radius.CodeCoAACK
			}
			out, _ := p.Response(ack).Encode()
			c.WriteToUDP(out, from)
		}
	}()
	t.Cleanup(func() { c.Close(); wg.Wait() })
	return n
}

func (n *dynNAS) port() int { return n.conn.LocalAddr().(*net.UDPAddr).Port }

func (n *dynNAS) next(t *testing.T) *radius.Packet {
	t.Helper()
	select {
	case p := <-n.reqs:
		return p
	case <-time.After(2 * time.Second):
		t.Fatal("no Disconnect-Request or CoA-Request at the NAS within 2 s")
		return nil
	}
}

// TestSessionsCLI: nacd serve in process; eapol_test authenticates the
// staff laptop, radclient sends its accounting Start echoing the Accept's
// Class; `nacd sessions list` shows the session linked to the device, and
// `nacd sessions disconnect --holder` makes the NAS receive a
// Disconnect-Request for it.
func TestSessionsCLI(t *testing.T) {
	radclientBin := testtool.Require(t, "radclient")
	eapolTest := eapoltest.Require(t)
	s := newTestSetup(t)
	nas := newDynNAS(t, testSecret)
	b, err := os.ReadFile(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "    site: Wallfields\n", "    site: Wallfields\n    coa_port: "+strconv.Itoa(nas.port())+"\n", 1)
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	readyc := make(chan readyInfo, 1)
	done := make(chan int, 1)
	go func() {
		done <- cmdServe(ctx, []string{"--config", s.cfgPath}, &stdout, &stderr, func(r readyInfo) { readyc <- r })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	})
	var info readyInfo
	select {
	case info = <-readyc:
	case code := <-done:
		t.Fatalf("serve exited %d\nstderr: %s", code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve not ready\nstderr: %s", stderr.String())
	}
	if info.RADIUSAcct == "" || !strings.Contains(stderr.String(), `"radius_acct":"`+info.RADIUSAcct) {
		t.Errorf("ready line lacks radius_acct %q", info.RADIUSAcct)
	}
	if st, err := os.Stat(filepath.Join(s.dir, "data", pki.AdminTokenFileName)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("admin token: %v %v, want a 0600 file", st, err)
	}

	laptop := s.devices["staff-laptop"]
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	res, err := eapoltest.Run(rctx, eapoltest.Options{Binary: eapolTest, Server: info.RADIUSAuth, Secret: testSecret,
		ClientCert: laptop.Chain, ClientKey: laptop.Key, Identity: "anonymous", ClientIP: "127.0.0.1", MAC: "02:00:00:00:00:42", Timeout: 30 * time.Second})
	if err != nil || !res.Success || len(res.Accept.Class) == 0 {
		t.Fatalf("eapol_test: %v, %+v", err, res)
	}
	start := strings.Join([]string{
		"Acct-Status-Type = Start", `Acct-Session-Id = "cli-0001"`, "NAS-IP-Address = 127.0.0.1",
		`User-Name = "alice@eastherts.gov.uk"`, `Calling-Station-Id = "02-00-00-00-00-42"`,
		"Class = 0x" + hex.EncodeToString(res.Accept.Class[0]),
	}, "\n")
	cmd := exec.Command(radclientBin, "-r", "1", "-t", "2", info.RADIUSAcct, "acct", testSecret)
	cmd.Stdin = strings.NewReader(start + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("radclient: %v\n%s", err, out)
	}

	admin := []string{"--config", s.cfgPath, "--admin", info.Metrics}
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"usage", []string{}, exitUsage, "", "nacd sessions list"},
		{"disconnect needs one selector", append([]string{"disconnect", "--device", "x", "--holder", "y"}, admin...), exitUsage, "", "exactly one of"},
		{"wrong token", append([]string{"list", "--token-file", writeTemp(t, strings.Repeat("0badc0de", 8))}, admin...), exitFailure, "", "wrong admin token"},
		{"daemon not running", []string{"list", "--config", s.cfgPath, "--admin", "127.0.0.1:1"}, exitFailure, "", "cannot reach nacd serve"},
		{"list by device", append([]string{"list", "--device", "6f1c7a36-0001-4c1e-9a53-2d6f0e1a0001"}, admin...), exitOK, "cli-0001", ""},
		{"list by another holder", append([]string{"list", "--holder", "cllr@eastherts.gov.uk"}, admin...), exitOK, "no live sessions", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb strings.Builder
			code := runSessions(tc.args, &out, &errb)
			if code != tc.code || !strings.Contains(out.String(), tc.stdout) || !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
		})
	}

	t.Run("list --json links the device", func(t *testing.T) {
		var out, errb strings.Builder
		if code := runSessions(append([]string{"list", "--json"}, admin...), &out, &errb); code != exitOK {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		var ss []nradius.Session
		if err := json.Unmarshal([]byte(out.String()), &ss); err != nil || len(ss) != 1 {
			t.Fatalf("%v: %s", err, out.String())
		}
		if s := ss[0]; s.DeviceUUID != "6f1c7a36-0001-4c1e-9a53-2d6f0e1a0001" || s.Email != "alice@eastherts.gov.uk" || s.VLAN != 310 || s.Serial == "" || s.NASName != "loopback" {
			t.Errorf("session %+v", s)
		}
	})
	t.Run("disconnect the holder", func(t *testing.T) {
		var out, errb strings.Builder
		code := runSessions(append([]string{"disconnect", "--holder", "alice@eastherts.gov.uk"}, admin...), &out, &errb)
		p := nas.next(t)
		if code != exitOK || !strings.Contains(out.String(), "disconnect cli-0001 on loopback") || !strings.Contains(out.String(), ": ack") {
			t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
		}
		if p.Code != radius.CodeDisconnectRequest || string(p.Get(44)) != "cli-0001" || string(p.Get(31)) != "02-00-00-00-00-42" || string(p.Get(1)) != "alice@eastherts.gov.uk" {
			t.Errorf("Disconnect-Request %v: Acct-Session-Id %q Calling-Station-Id %q User-Name %q", p.Code, p.Get(44), p.Get(31), p.Get(1))
		}
		var lout, lerr strings.Builder
		if runSessions(append([]string{"list"}, admin...), &lout, &lerr); !strings.Contains(lout.String(), "no live sessions") {
			t.Errorf("after disconnect: %s", lout.String())
		}
	})
}

// TestRevocationDisconnects: the CA wrapper disconnects the sessions of
// what it revoked.
func TestRevocationDisconnects(t *testing.T) {
	nas := newDynNAS(t, testSecret)
	st, err := nradius.OpenBoltSessions(filepath.Join(t.TempDir(), "sessions.db"))
	if err != nil {
		t.Fatal(err)
	}
	table, err := nradius.NewSessionTable(nradius.SessionTableConfig{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	clients := clientLookup{Name: "wlc", Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Secret: []byte(testSecret), Site: "Wallfields", CoAPort: nas.port()}
	dyn, err := nradius.NewDynAuthClient(nradius.DynAuthConfig{Sessions: table, Clients: clients, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, s := range []*nradius.Session{
		{ID: "a1", NASIP: "127.0.0.1", NASName: "wlc", Email: "leaver@herts.example", DeviceUUID: "d1", Serial: "0a", UserName: "leaver", Started: now, Updated: now},
		{ID: "b1", NASIP: "127.0.0.1", NASName: "wlc", Email: "stayer@herts.example", DeviceUUID: "d2", Serial: "0b", Started: now, Updated: now},
	} {
		if err := table.Update(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		revoke func(a pki.Authority) error
		want   string
	}{
		{"holder", func(a pki.Authority) error {
			_, err := a.RevokeHolder(context.Background(), "leaver@herts.example", pki.ReasonAffiliationChanged, "test")
			return err
		}, "a1"},
		{"serial", func(a pki.Authority) error {
			return a.Revoke(context.Background(), "0x0b", pki.ReasonKeyCompromise, "test")
		}, "b1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			results := make(chan []nradius.DynAuthResult, 1)
			w := withSessionDisconnect(fakeAuthority{}, dyn, nil)
			w.done = func(r []nradius.DynAuthResult) { results <- r }
			if err := tc.revoke(w); err != nil {
				t.Fatal(err)
			}
			p := nas.next(t)
			if got := string(p.Get(44)); got != tc.want {
				t.Errorf("Disconnect-Request for %q, want %q", got, tc.want)
			}
			if r := <-results; len(r) != 1 || r[0].Result != nradius.DynAuthACK {
				t.Errorf("results %+v", r)
			}
		})
	}
}

// clientLookup is a one-client radius.ClientLookup.
type clientLookup nradius.Client

func (c clientLookup) LookupClient(a netip.Addr) *nradius.Client {
	cl := nradius.Client(c)
	for _, n := range cl.Networks {
		if n.Contains(a) {
			return &cl
		}
	}
	return nil
}

// fakeAuthority revokes successfully and returns the serials of its
// holder.
type fakeAuthority struct{ pki.Authority }

func (fakeAuthority) Revoke(context.Context, string, pki.RevocationReason, string) error { return nil }
func (fakeAuthority) RevokeHolder(context.Context, string, pki.RevocationReason, string) ([]string, error) {
	return []string{"0a"}, nil
}

func writeTemp(t *testing.T, content string) string {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
