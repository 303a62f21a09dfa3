package eaptls

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// curveNames are the key exchanges Config.CurvePreferences accepts, by the
// names configuration files use.
var curveNames = []struct {
	name string
	id   tls.CurveID
}{
	{"x25519mlkem768", tls.X25519MLKEM768},
	{"secp256r1mlkem768", tls.SecP256r1MLKEM768},
	{"secp384r1mlkem1024", tls.SecP384r1MLKEM1024},
	{"x25519", tls.X25519},
	{"p256", tls.CurveP256},
	{"p384", tls.CurveP384},
	{"p521", tls.CurveP521},
}

func curveName(id tls.CurveID) (string, bool) {
	for _, c := range curveNames {
		if c.id == id {
			return c.name, true
		}
	}
	return "", false
}

// tls13Only reports whether id is a hybrid post-quantum group, usable in
// TLS 1.3 only.
func tls13Only(id tls.CurveID) bool {
	switch id {
	case tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024:
		return true
	}
	return false
}

// ParseCurvePreferences maps names (x25519mlkem768, secp256r1mlkem768,
// secp384r1mlkem1024, x25519, p256, p384, p521; case-insensitive) to
// Config.CurvePreferences. An empty list gives nil (Go's default); an
// unknown or repeated name is an error.
func ParseCurvePreferences(names []string) ([]tls.CurveID, error) {
	var ids []tls.CurveID
	seen := map[tls.CurveID]bool{}
	for _, n := range names {
		var id tls.CurveID
		for _, c := range curveNames {
			if strings.EqualFold(strings.TrimSpace(n), c.name) {
				id = c.id
			}
		}
		if id == 0 {
			return nil, fmt.Errorf("eaptls: unknown key exchange %q (want one of x25519mlkem768, secp256r1mlkem768, secp384r1mlkem1024, x25519, p256, p384, p521)", n)
		}
		if seen[id] {
			return nil, fmt.Errorf("eaptls: key exchange %q listed twice", n)
		}
		seen[id] = true
		ids = append(ids, id)
	}
	return ids, nil
}
