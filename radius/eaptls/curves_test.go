package eaptls

import (
	"crypto/tls"
	"errors"
	"reflect"
	"testing"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/radius/eap"
)

// The server's CurvePreferences is the set it accepts: by default the
// hybrid ML-KEM group is negotiated with a Go peer; without it, X25519;
// with only the hybrid, a peer that cannot do it fails (no silent
// classical fallback).
func TestCurvePreferences(t *testing.T) {
	pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	cases := []struct {
		name        string
		server      []tls.CurveID
		minV, maxV  uint16
		peer        []tls.CurveID // nil: Go's default
		wantFinal   eap.Code
		wantCurveID tls.CurveID
	}{
		{"default server, Go peer, TLS 1.3: hybrid ML-KEM", nil, 0, tls.VersionTLS13, nil, eap.CodeSuccess, tls.X25519MLKEM768},
		{"default server, classical peer", nil, 0, tls.VersionTLS13, []tls.CurveID{tls.X25519}, eap.CodeSuccess, tls.X25519},
		{"classical server, Go peer offering the hybrid", []tls.CurveID{tls.X25519, tls.CurveP256}, 0, tls.VersionTLS13, nil, eap.CodeSuccess, tls.X25519},
		{"classical server, P-256 peer", []tls.CurveID{tls.X25519, tls.CurveP256}, 0, tls.VersionTLS13, []tls.CurveID{tls.CurveP256}, eap.CodeSuccess, tls.CurveP256},
		{"post-quantum only server, classical peer refused", []tls.CurveID{tls.X25519MLKEM768}, tls.VersionTLS13, tls.VersionTLS13, []tls.CurveID{tls.X25519}, eap.CodeFailure, 0},
		{"post-quantum only server, Go peer", []tls.CurveID{tls.X25519MLKEM768}, tls.VersionTLS13, tls.VersionTLS13, nil, eap.CodeSuccess, tls.X25519MLKEM768},
		{"default server, TLS 1.2: X25519", nil, 0, tls.VersionTLS12, nil, eap.CodeSuccess, tls.X25519},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := pki.serverConfig(c.minV, c.maxV, 0)
			cfg.CurvePreferences = c.server
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			pcfg := pki.peerConfig(c.maxV, 0)
			pcfg.TLS.CurvePreferences = c.peer
			s := NewSession(cfg, allowAll)
			p := NewPeer(pcfg)
			defer s.Close()
			defer p.Close()
			x := converse(t, s, p, 1)
			if x.final != c.wantFinal {
				t.Fatalf("final %d, want %d (server error %v)", x.final, c.wantFinal, x.serverErr)
			}
			if c.wantFinal != eap.CodeSuccess {
				if !errors.Is(x.serverErr, ErrHandshake) {
					t.Errorf("server error %v, want ErrHandshake", x.serverErr)
				}
				return
			}
			if got := s.Result().CurveID; got != c.wantCurveID {
				t.Errorf("negotiated %s, want %s", got, c.wantCurveID)
			}
		})
	}
}

func TestCurvePreferencesValidate(t *testing.T) {
	pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
	cases := []struct {
		name    string
		curves  []tls.CurveID
		minV    uint16
		wantErr bool
	}{
		{"default", nil, 0, false},
		{"classical", []tls.CurveID{tls.X25519, tls.CurveP256}, 0, false},
		{"hybrid and classical", []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, 0, false},
		{"hybrid only with TLS 1.2 allowed", []tls.CurveID{tls.X25519MLKEM768}, 0, true},
		{"hybrid only, TLS 1.3 only", []tls.CurveID{tls.X25519MLKEM768}, tls.VersionTLS13, false},
		{"unknown group", []tls.CurveID{tls.X25519, 0x1234}, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := pki.serverConfig(c.minV, 0, 0)
			cfg.CurvePreferences = c.curves
			if err := cfg.Validate(); (err != nil) != c.wantErr {
				t.Errorf("Validate() = %v, want error %v", err, c.wantErr)
			}
		})
	}
}

func TestParseCurvePreferences(t *testing.T) {
	cases := []struct {
		name    string
		in      []string
		want    []tls.CurveID
		wantErr bool
	}{
		{"empty is Go's default", nil, nil, false},
		{"names in order", []string{"x25519mlkem768", "X25519", " p256 "}, []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}, false},
		{"every name", []string{"secp256r1mlkem768", "secp384r1mlkem1024", "p384", "p521"}, []tls.CurveID{tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024, tls.CurveP384, tls.CurveP521}, false},
		{"unknown", []string{"x448"}, nil, true},
		{"twice", []string{"x25519", "x25519"}, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseCurvePreferences(c.in)
			if (err != nil) != c.wantErr {
				t.Fatalf("error %v, want error %v", err, c.wantErr)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}
