package radius

import (
	"net/netip"
	"testing"
)

func TestClientTable(t *testing.T) {
	mk := func(name string, prefixes ...string) Client {
		c := Client{Name: name, Secret: []byte("s-" + name)}
		for _, p := range prefixes {
			c.Networks = append(c.Networks, netip.MustParsePrefix(p))
		}
		return c
	}
	tab, err := newClientTable([]Client{
		mk("campus", "10.0.0.0/8"),
		mk("controller", "10.1.2.3/32", "2001:db8::10/128"),
		mk("floor", "10.1.0.0/16"),
		mk("v6net", "2001:db8::/32"),
		mk("mapped", "::ffff:192.0.2.0/120"),
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		src  string
		want string
	}{
		{"10.1.2.3", "controller"},
		{"10.1.2.4", "floor"},
		{"10.200.0.1", "campus"},
		{"::ffff:10.1.2.3", "controller"},
		{"2001:db8::10", "controller"},
		{"2001:db8::11", "v6net"},
		{"192.0.2.7", "mapped"},
		{"11.0.0.1", ""},
		{"2001:db9::1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			c := tab.lookup(netip.MustParseAddr(tt.src))
			got := ""
			if c != nil {
				got = c.Name
			}
			if got != tt.want {
				t.Fatalf("lookup(%s) = %q, want %q", tt.src, got, tt.want)
			}
		})
	}

	bad := []struct {
		name    string
		clients []Client
	}{
		{"duplicate prefix across clients", []Client{mk("a", "10.0.0.0/8"), mk("b", "10.0.0.0/8")}},
		{"same prefix written differently", []Client{mk("a", "10.0.0.0/8"), mk("b", "10.9.9.9/8")}},
		{"duplicate name", []Client{mk("a", "10.0.0.0/8"), mk("a", "11.0.0.0/8")}},
		{"no networks", []Client{mk("a")}},
		{"empty secret", []Client{{Name: "a", Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}},
		{"mapped prefix wider than IPv4", []Client{mk("a", "::ffff:0:0/90")}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := newClientTable(tt.clients); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
