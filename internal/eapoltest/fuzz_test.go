package eapoltest

import (
	"strings"
	"testing"
)

// FuzzParse: Parse must never panic, and must never report a success that
// the output does not show (a SUCCESS verdict needs an Access-Accept).
func FuzzParse(f *testing.F) {
	for _, name := range []string{"freeradius-accept-tls12.txt", "nacd-reject-revoked-tls12.txt", "closed-port.txt"} {
		b, err := readTestdata(name)
		if err != nil {
			f.Fatal(err)
		}
		// Seeds: the interesting tail (Access-Accept/Reject dump and
		// verdict) and the first handshake dumps, to keep inputs small.
		lines := strings.Split(string(b), "\n")
		f.Add(strings.Join(lines[max(0, len(lines)-60):], "\n"))
		for i, l := range lines {
			if strings.HasSuffix(l, "(handshake/client hello)") || strings.HasSuffix(l, "(handshake/server hello)") || strings.HasSuffix(l, "(handshake/certificate)") {
				f.Add(strings.Join(lines[i:min(len(lines), i+2)], "\n") + "\nFAILURE\n")
			}
		}
	}
	f.Add("Received RADIUS message\nRADIUS message: code=2 (Access-Accept) identifier=1 length=20\nSUCCESS\n")
	f.Fuzz(func(t *testing.T, out string) {
		r, err := Parse(out)
		if r == nil {
			t.Fatal("nil Result")
		}
		if err == nil && r.Success && (r.Accept == nil || r.Code != "Access-Accept") {
			t.Fatalf("success without an Access-Accept: code %q", r.Code)
		}
	})
}
