package eap

import (
	"bytes"
	"errors"
	"testing"
)

func TestAppendTo(t *testing.T) {
	tests := []struct {
		name string
		p    Packet
		want []byte
	}{
		{"EAP-TLS request", Packet{Code: CodeRequest, Identifier: 7, Type: TypeTLS, Data: []byte{0x20}}, []byte{1, 7, 0, 6, 13, 0x20}},
		{"identity response", Packet{Code: CodeResponse, Identifier: 1, Type: TypeIdentity, Data: []byte("al")}, []byte{2, 1, 0, 7, 1, 'a', 'l'}},
		{"success", Packet{Code: CodeSuccess, Identifier: 9}, []byte{3, 9, 0, 4}},
		{"failure ignores data", Packet{Code: CodeFailure, Identifier: 2, Data: []byte("x")}, []byte{4, 2, 0, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.p.Marshal()
			if err != nil || !bytes.Equal(m, tt.want) {
				t.Fatalf("Marshal = %x, %v; want %x", m, err, tt.want)
			}
			prefix := []byte("keep")
			got, err := tt.p.AppendTo(prefix)
			if err != nil || !bytes.Equal(got, append([]byte("keep"), tt.want...)) {
				t.Fatalf("AppendTo = %x, %v; want the prefix then %x", got, err, tt.want)
			}
		})
	}
}

func TestAppendToTooLong(t *testing.T) {
	p := Packet{Code: CodeRequest, Type: TypeTLS, Data: make([]byte, MaxLen)}
	dst := []byte("x")
	got, err := p.AppendTo(dst)
	if err == nil || !bytes.Equal(got, dst) {
		t.Fatalf("AppendTo of %d bytes = %d bytes, %v; want dst unchanged and an error", p.Len(), len(got), err)
	}
	if b, err := p.Marshal(); err == nil || b != nil {
		t.Fatalf("Marshal of %d bytes = %d bytes, %v; want nil and an error", p.Len(), len(b), err)
	}
}

// FuzzParseMarshal: whatever parses encodes back to the same bytes.
func FuzzParseMarshal(f *testing.F) {
	f.Add([]byte{2, 1, 0, 7, 1, 'a', 'l'})
	f.Add([]byte{3, 9, 0, 4})
	f.Add([]byte{1, 7, 0, 5, 13})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrShort) && !errors.Is(err, ErrLength) && !errors.Is(err, ErrBadCode) && !errors.Is(err, ErrNoType) && !errors.Is(err, ErrHasPayload) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		m, err := p.Marshal()
		if err != nil || !bytes.Equal(m, b) {
			t.Fatalf("Marshal(Parse(%x)) = %x, %v", b, m, err)
		}
	})
}
