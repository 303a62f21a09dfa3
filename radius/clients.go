package radius

import (
	"fmt"
	"net/netip"
	"slices"
)

// clientTable finds the NAS a request came from: the client whose network
// is the most specific prefix containing the source address. It is
// immutable once built; a reload builds a new one.
type clientTable struct {
	entries []clientEntry // most specific prefix first
}

type clientEntry struct {
	prefix netip.Prefix
	client *Client
}

// newClientTable validates clients and indexes them by prefix. A prefix
// listed twice (in one client or across clients) is an error: which secret
// applies would be ambiguous.
func newClientTable(clients []Client) (*clientTable, error) {
	t := &clientTable{}
	seen := map[netip.Prefix]string{}
	names := map[string]bool{}
	for i := range clients {
		c := clients[i] // copy: the table owns its clients
		c.Secret = append([]byte(nil), c.Secret...)
		c.Networks = slices.Clone(c.Networks)
		c.RadSecIdentities = slices.Clone(c.RadSecIdentities)
		switch {
		case c.Name == "":
			return nil, fmt.Errorf("client %d: empty name", i)
		case names[c.Name]:
			return nil, fmt.Errorf("client %q: name used twice", c.Name)
		case len(c.Secret) == 0:
			return nil, fmt.Errorf("client %q: empty shared secret", c.Name)
		case len(c.Networks) == 0:
			return nil, fmt.Errorf("client %q: no networks", c.Name)
		case c.RadSec && len(c.RadSecIdentities) == 0:
			return nil, fmt.Errorf("client %q: RadSec without a certificate identity", c.Name)
		}
		names[c.Name] = true
		cp := &c
		for _, p := range c.Networks {
			if !p.IsValid() {
				return nil, fmt.Errorf("client %q: invalid network %v", c.Name, p)
			}
			if p.Addr().Is4In6() {
				if p.Bits() < 96 {
					return nil, fmt.Errorf("client %q: network %v mixes IPv4-mapped and IPv6 space", c.Name, p)
				}
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			p = p.Masked()
			if other, dup := seen[p]; dup {
				return nil, fmt.Errorf("client %q: network %v already belongs to client %q", c.Name, p, other)
			}
			seen[p] = c.Name
			t.entries = append(t.entries, clientEntry{prefix: p, client: cp})
		}
	}
	slices.SortStableFunc(t.entries, func(a, b clientEntry) int { return b.prefix.Bits() - a.prefix.Bits() })
	return t, nil
}

// lookup returns the client for source address a, or nil.
func (t *clientTable) lookup(a netip.Addr) *Client {
	a = a.Unmap()
	for i := range t.entries {
		if t.entries[i].prefix.Contains(a) {
			return t.entries[i].client
		}
	}
	return nil
}
