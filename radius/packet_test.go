package radius

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"testing"

	"layeh.com/radius"
)

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Known answer computed outside Go (Python hmac/hashlib) for an
// Access-Request, identifier 0x2a, Request Authenticator 00..0f,
// User-Name "bob", secret "xyzzy5461".
const (
	kaSecret = "xyzzy5461"
	kaPacket = "012a002b000102030405060708090a0b0c0d0e0f0105626f62501200000000000000000000000000000000"
	kaMA     = "fbb730dd8c7098ed749fccdf00e90ace"
)

func TestMessageAuthenticatorKnownAnswer(t *testing.T) {
	zeroed := mustHex(t, kaPacket)
	want := mustHex(t, kaMA)

	// The vector agrees with crypto/hmac computed here, independently.
	mac := hmac.New(md5.New, []byte(kaSecret))
	mac.Write(zeroed)
	if got := mac.Sum(nil); !bytes.Equal(got, want) {
		t.Fatalf("test vector: HMAC-MD5 = %x, want %x", got, want)
	}

	signed := append([]byte(nil), zeroed...)
	copy(signed[27:43], want)
	flipped := append([]byte(nil), signed...)
	flipped[10] ^= 1

	tests := []struct {
		name   string
		pkt    []byte
		secret string
		want   bool
	}{
		{"correct", signed, kaSecret, true},
		{"wrong secret", signed, "xyzzy5462", false},
		{"authenticator bit flipped", flipped, kaSecret, false},
		{"zero MA", zeroed, kaSecret, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validMessageAuthenticator(tt.pkt, 27, []byte(tt.secret)); got != tt.want {
				t.Fatalf("validMessageAuthenticator = %v, want %v", got, tt.want)
			}
			_, err := verifyRequest(tt.pkt, &Client{Name: "nas", Secret: []byte(tt.secret)})
			if (err == nil) != tt.want {
				t.Fatalf("verifyRequest error = %v, want ok=%v", err, tt.want)
			}
			if err != nil && dropCause(err) != DropBadMessageAuthenticator {
				t.Fatalf("cause %q, want %q", dropCause(err), DropBadMessageAuthenticator)
			}
		})
	}
}

func TestEncodeResponse(t *testing.T) {
	req := mustHex(t, kaPacket)
	var reqAuth [16]byte
	copy(reqAuth[:], req[4:20])
	secret := []byte(kaSecret)
	ps := []radius.Attribute{[]byte("proxy-1"), []byte("proxy-2"), []byte("proxy-3")}
	attrs := radius.Attributes{{Type: attrReplyMessage, Attribute: []byte("hello")}}

	b, err := encodeResponse(radius.CodeAccessAccept, 0x2a, reqAuth, secret, attrs, ps)
	if err != nil {
		t.Fatal(err)
	}
	if !radius.IsAuthenticResponse(b, req, secret) {
		t.Fatal("Response Authenticator does not verify")
	}
	if b[20] != attrMessageAuthenticator || b[21] != 18 {
		t.Fatalf("first attribute %d/%d, want Message-Authenticator", b[20], b[21])
	}
	c := append([]byte(nil), b...)
	copy(c[4:20], reqAuth[:])
	clear(c[22:38])
	mac := hmac.New(md5.New, secret)
	mac.Write(c)
	if !hmac.Equal(mac.Sum(nil), b[22:38]) {
		t.Fatal("Message-Authenticator does not verify")
	}
	p, err := radius.Parse(b, secret)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range p.Attributes {
		if a.Type == attrProxyState {
			got = append(got, string(a.Attribute))
		}
	}
	if want := []string{"proxy-1", "proxy-2", "proxy-3"}; !equalStrings(got, want) {
		t.Fatalf("Proxy-State %q, want %q in order", got, want)
	}
	if p.Attributes[len(p.Attributes)-4].Type != attrReplyMessage {
		t.Fatalf("handler attributes must precede Proxy-State")
	}

	big := radius.Attributes{}
	for range 17 {
		big = append(big, &radius.AVP{Type: attrReplyMessage, Attribute: make([]byte, 253)})
	}
	if _, err := encodeResponse(radius.CodeAccessAccept, 1, reqAuth, secret, big, nil); err == nil {
		t.Fatal("a response over 4096 bytes must be refused")
	}
	if _, err := encodeResponse(radius.CodeAccessAccept, 1, reqAuth, secret, radius.Attributes{{Type: 1, Attribute: make([]byte, 254)}}, nil); err == nil {
		t.Fatal("an attribute over 253 bytes must be refused")
	}
}

const attrReplyMessage = 18

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEAPMessageSplitAndReassemble(t *testing.T) {
	tests := []struct {
		name  string
		size  int
		attrs int
	}{
		{"one byte", 1, 1},
		{"exactly 253", 253, 1},
		{"254", 254, 2},
		{"1020-byte fragment", 1020 + 10, 5},
		{"near the packet limit", 4000, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := make([]byte, tt.size)
			for i := range msg {
				msg[i] = byte(i)
			}
			attrs := splitEAP(msg)
			if len(attrs) != tt.attrs {
				t.Fatalf("%d attributes, want %d", len(attrs), tt.attrs)
			}
			for _, a := range attrs {
				if len(a.Attribute) > 253 || len(a.Attribute) == 0 {
					t.Fatalf("attribute of %d bytes", len(a.Attribute))
				}
			}
			// Interleave another attribute: reassembly takes EAP-Message only, in order.
			p := &radius.Packet{Attributes: append(radius.Attributes{{Type: attrUserName, Attribute: []byte("x")}}, attrs...)}
			got, ok := eapMessage(p)
			if !ok || !bytes.Equal(got, msg) {
				t.Fatalf("reassembled %d bytes (ok=%v), want the original %d", len(got), ok, len(msg))
			}
		})
	}
	if _, ok := eapMessage(&radius.Packet{}); ok {
		t.Fatal("no EAP-Message must report ok=false")
	}
}

func TestSSIDFromCalledStationID(t *testing.T) {
	tests := []struct{ in, want string }{
		{"AA-BB-CC-DD-EE-FF:Herts-Staff", "Herts-Staff"},
		{"aa-bb-cc-dd-ee-ff:herts staff", "herts staff"},
		{"AA:BB:CC:DD:EE:FF:Guest", "Guest"},
		{"aabb.ccdd.eeff:Guest", "Guest"},
		{"AABBCCDDEEFF:Guest:With:Colons", "Guest:With:Colons"},
		{"AA-BB-CC-DD-EE-FF", ""},
		{"AA-BB-CC-DD-EE-FF:", ""},
		{"not-a-mac-at-all:SSID", ""},
		{"AA-BB:CC-DD-EE-FF:Mixed", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := ssidFromCalledStationID(tt.in); got != tt.want {
				t.Fatalf("ssid(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
