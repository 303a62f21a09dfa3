package eapoltest

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// RADIUS attribute types the parser decodes (RFC 2865, 2868).
const (
	AttrUserName             = 1
	AttrClass                = 25
	AttrVendorSpecific       = 26
	AttrSessionTimeout       = 27
	AttrTunnelType           = 64
	AttrTunnelMediumType     = 65
	AttrEAPMessage           = 79
	AttrMessageAuthenticator = 80
	AttrTunnelPrivateGroupID = 81

	// TunnelTypeVLAN and TunnelMediumIEEE802 are the RFC 3580 values.
	TunnelTypeVLAN      = 13
	TunnelMediumIEEE802 = 6
)

// Attribute values as eapol_test (wpa_supplicant's radius_msg_dump) prints
// them: text in single quotes, integers in decimal, IP addresses dotted, and
// everything else (including tagged tunnel attributes) as hex.
var (
	reMessage   = regexp.MustCompile(`^RADIUS message: code=(\d+) \(([^)]*)\) identifier=(\d+) length=(\d+)$`)
	reAttribute = regexp.MustCompile(`^   Attribute (\d+) \(([^)]*)\) length=(\d+)$`)
	reValue     = regexp.MustCompile(`^      Value: (.*)$`)
	reMPPE      = regexp.MustCompile(`^MPPE keys OK: (\d+)\s+mismatch: (\d+)$`)
	reRecvFrag  = regexp.MustCompile(`^SSL: Received packet\(len=\d+\) - Flags 0x([0-9a-f]{2})$`)
	reDecap     = regexp.MustCompile(`^decapsulated EAP packet \(code=1 id=\d+ len=(\d+)\) from RADIUS server: EAP-Request-TLS \(13\)$`)
	reHelloDump = regexp.MustCompile(`^OpenSSL: Message - hexdump\(len=(\d+)\):((?: [0-9a-f]{2})*)$`)
	reTLSVer    = regexp.MustCompile(`^SSL: Using TLS version TLSv(1\.[0-3])$`)
	reHexdump   = regexp.MustCompile(`^(EAP-TLS: Derived key|MS-MPPE-Send-Key \(sign\)|MS-MPPE-Recv-Key \(crypt\)) - hexdump\(len=(\d+)\):((?: [0-9a-f]{2})*)$`)
)

// ReceivedAttribute is one attribute of a RADIUS message as printed.
type ReceivedAttribute struct {
	Type   int
	Name   string // eapol_test's name, "?Unknown?" for types it does not know
	Length int
	Value  string // as printed, without the "Value: " prefix ("" if none printed)
}

// Message is one RADIUS message eapol_test received.
type Message struct {
	Code       int
	CodeName   string
	Attributes []ReceivedAttribute
}

// Parse parses the complete output of one eapol_test run. It returns an
// error wrapping ErrUnparsable when the output lacks the final verdict line,
// when a received RADIUS message is malformed in the dump, or when the
// verdict contradicts what was received (SUCCESS without an Access-Accept).
// The returned Result always carries Raw.
func Parse(out string) (*Result, error) {
	res := &Result{Raw: out}
	lines := strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n")

	// The verdict is the last non-empty line, printed by eapol_test's main().
	verdict := ""
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			verdict = l
			break
		}
	}
	switch verdict {
	case "SUCCESS":
		res.Success = true
	case "FAILURE":
	default:
		return res, fmt.Errorf("%w: last line is %q, want SUCCESS or FAILURE", ErrUnparsable, verdict)
	}

	var msgs []Message
	helloNext := ""
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if helloNext != "" {
			kind := helloNext
			helloNext = ""
			if sm := reHelloDump.FindStringSubmatch(l); sm != nil {
				b, err := hex.DecodeString(strings.ReplaceAll(sm[2], " ", ""))
				if err != nil {
					return res, fmt.Errorf("%w: bad %s hexdump", ErrUnparsable, kind)
				}
				if strings.HasSuffix(kind, "certificate") {
					certs, err := certificateList(b, strings.HasPrefix(kind, "1.3"))
					if err != nil {
						return res, fmt.Errorf("%w: %s message: %v", ErrUnparsable, kind, err)
					}
					if strings.Contains(kind, "server") && res.ServerCertificates == nil {
						res.ServerCertificates = certs
					}
					if strings.Contains(kind, "client") && res.ClientCertificates == nil {
						res.ClientCertificates = certs
					}
					continue
				}
				ext, err := helloExtensions(b, kind == "client")
				if err != nil {
					return res, fmt.Errorf("%w: %s: %v", ErrUnparsable, kind, err)
				}
				if kind == "client" && res.ClientHelloExtensions == nil {
					res.ClientHelloExtensions = ext
				}
				if kind == "server" && res.ServerHelloExtensions == nil {
					res.ServerHelloExtensions = ext
				}
				continue
			}
		}
		switch {
		case strings.HasPrefix(l, "OpenSSL: TX ver=") && strings.HasSuffix(l, " (handshake/client hello)"):
			helloNext = "client"
		case strings.HasPrefix(l, "OpenSSL: RX ver=") && strings.HasSuffix(l, " (handshake/server hello)"):
			helloNext = "server"
		case strings.HasSuffix(l, " content_type=22 (handshake/certificate)") && strings.HasPrefix(l, "OpenSSL: "):
			// "OpenSSL: RX ver=0x303 ..." is the server's Certificate,
			// TX the client's; ver=0x304 is the TLS 1.3 format.
			v := "1.2"
			if strings.Contains(l, " ver=0x304 ") {
				v = "1.3"
			}
			who := "client"
			if strings.HasPrefix(l, "OpenSSL: RX ") {
				who = "server"
			}
			helloNext = v + " " + who + " certificate"
		case l == "Received RADIUS message":
			if i+1 >= len(lines) {
				return res, fmt.Errorf("%w: truncated RADIUS message dump", ErrUnparsable)
			}
			m, next, err := parseMessage(lines, i+1)
			if err != nil {
				return res, err
			}
			msgs = append(msgs, m)
			i = next - 1
		case strings.HasPrefix(l, "SSL: sending ") && strings.HasSuffix(l, " bytes, more fragments will follow"):
			res.ClientFragments++
		case reRecvFrag.MatchString(l):
			f, _ := strconv.ParseUint(reRecvFrag.FindStringSubmatch(l)[1], 16, 8)
			if f&0x40 != 0 { // M (more fragments) flag, RFC 5216 section 3.1
				res.ServerFragments++
			}
		case reDecap.MatchString(l):
			n, _ := strconv.Atoi(reDecap.FindStringSubmatch(l)[1])
			res.MaxServerEAPLength = max(res.MaxServerEAPLength, n)
		case l == "EAP-TLS: ACKing Commitment Message":
			res.CommitmentMessage = true
		case l == "OpenSSL: Handshake finished - resumed=1":
			res.Resumed = true
		case strings.HasPrefix(l, "CTRL-EVENT-EAP-SUCCESS "):
			res.EAPSuccesses++
		case l == "EAPOL test timed out":
			res.TimedOut = true
		case reMPPE.MatchString(l):
			sm := reMPPE.FindStringSubmatch(l)
			ok, _ := strconv.Atoi(sm[1])
			mis, _ := strconv.Atoi(sm[2])
			res.MPPEChecked = true
			res.MPPEKeysOK = ok > 0 && mis == 0
		case reTLSVer.MatchString(l):
			res.TLSVersion = reTLSVer.FindStringSubmatch(l)[1]
		case reHexdump.MatchString(l):
			sm := reHexdump.FindStringSubmatch(l)
			n, _ := strconv.Atoi(sm[2])
			b, err := hex.DecodeString(strings.ReplaceAll(sm[3], " ", ""))
			if err != nil || len(b) != n {
				return res, fmt.Errorf("%w: bad hexdump in %q", ErrUnparsable, l)
			}
			switch {
			case strings.HasPrefix(sm[1], "EAP-TLS"):
				res.MSK = b
			case strings.HasPrefix(sm[1], "MS-MPPE-Send"):
				res.MPPESendKey = b
			default:
				res.MPPERecvKey = b
			}
		}
	}
	res.Messages = msgs
	if len(msgs) > 0 {
		res.Code = msgs[len(msgs)-1].CodeName
	}
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Code == 2 { // Access-Accept
			a, err := decodeAccept(msgs[i].Attributes)
			if err != nil {
				return res, err
			}
			res.Accept = a
			break
		}
	}
	if res.Success && res.Accept == nil {
		return res, fmt.Errorf("%w: SUCCESS without an Access-Accept in the output", ErrUnparsable)
	}
	if res.Success && res.Code != "Access-Accept" {
		return res, fmt.Errorf("%w: SUCCESS but the last RADIUS message was %q", ErrUnparsable, res.Code)
	}
	return res, nil
}

// parseMessage parses "RADIUS message: code=..." at lines[i] and the
// attribute lines after it; it returns the index of the first line after
// the dump.
func parseMessage(lines []string, i int) (Message, int, error) {
	sm := reMessage.FindStringSubmatch(lines[i])
	if sm == nil {
		return Message{}, 0, fmt.Errorf("%w: expected a RADIUS message header, got %q", ErrUnparsable, lines[i])
	}
	code, _ := strconv.Atoi(sm[1])
	m := Message{Code: code, CodeName: sm[2]}
	i++
	for i < len(lines) {
		am := reAttribute.FindStringSubmatch(lines[i])
		if am == nil {
			if reValue.MatchString(lines[i]) {
				return m, 0, fmt.Errorf("%w: attribute value without attribute: %q", ErrUnparsable, lines[i])
			}
			break
		}
		t, _ := strconv.Atoi(am[1])
		n, _ := strconv.Atoi(am[3])
		a := ReceivedAttribute{Type: t, Name: am[2], Length: n}
		i++
		if i < len(lines) {
			if vm := reValue.FindStringSubmatch(lines[i]); vm != nil {
				a.Value = vm[1]
				i++
			}
		}
		m.Attributes = append(m.Attributes, a)
	}
	return m, i, nil
}

func decodeAccept(attrs []ReceivedAttribute) (*Attributes, error) {
	out := &Attributes{}
	bad := func(a ReceivedAttribute, err error) error {
		return fmt.Errorf("%w: Access-Accept attribute %d (%s) value %q: %v", ErrUnparsable, a.Type, a.Name, a.Value, err)
	}
	for _, a := range attrs {
		out.Types = append(out.Types, a.Type)
		switch a.Type {
		case AttrUserName:
			s, err := unquote(a.Value)
			if err != nil {
				return nil, bad(a, err)
			}
			out.UserName = s
		case AttrClass:
			b, err := hex.DecodeString(a.Value)
			if err != nil {
				return nil, bad(a, err)
			}
			out.Class = append(out.Class, b)
		case AttrSessionTimeout:
			v, err := strconv.ParseUint(a.Value, 10, 32)
			if err != nil {
				return nil, bad(a, err)
			}
			out.SessionTimeout = int(v)
		case AttrTunnelType, AttrTunnelMediumType:
			// Tagged integer (RFC 2868 section 3.1): 1 tag byte + 3 value bytes.
			b, err := hex.DecodeString(a.Value)
			if err == nil && len(b) != 4 {
				err = fmt.Errorf("length %d, want 4", len(b))
			}
			if err != nil {
				return nil, bad(a, err)
			}
			v := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
			if a.Type == AttrTunnelType {
				out.TunnelType = v
			} else {
				out.TunnelMediumType = v
			}
		case AttrTunnelPrivateGroupID:
			// Tagged string (RFC 2868 section 3.6): a first byte 0x01-0x1F
			// is a tag; 0x00 is also treated as a tag here, as a VLAN
			// name or number never starts with NUL.
			b, err := hex.DecodeString(a.Value)
			if err == nil && len(b) == 0 {
				err = errors.New("empty")
			}
			if err != nil {
				return nil, bad(a, err)
			}
			if b[0] <= 0x1f {
				b = b[1:]
			}
			out.TunnelPrivateGroupID = string(b)
		case AttrVendorSpecific:
			b, err := hex.DecodeString(a.Value)
			if err != nil {
				return nil, bad(a, err)
			}
			// Microsoft (311) MS-MPPE-Send-Key (16) / MS-MPPE-Recv-Key (17).
			if len(b) >= 6 && bytes.Equal(b[:4], []byte{0, 0, 1, 0x37}) {
				switch b[4] {
				case 16:
					out.MPPESendKey = true
				case 17:
					out.MPPERecvKey = true
				}
			}
		}
	}
	return out, nil
}

// unquote decodes a TEXT value printed by wpa_supplicant's printf_encode:
// 'text' with \\, \', \", \n, \r, \t, \e and \xHH escapes.
func unquote(v string) (string, error) {
	if len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
		return "", errors.New("not a quoted string")
	}
	v = v[1 : len(v)-1]
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(v) {
			return "", errors.New("dangling escape")
		}
		switch v[i] {
		case '\\', '\'', '"':
			b.WriteByte(v[i])
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'e':
			b.WriteByte(0x1b)
		case 'x':
			if i+2 >= len(v) {
				return "", errors.New("short \\x escape")
			}
			h, err := hex.DecodeString(v[i+1 : i+3])
			if err != nil {
				return "", err
			}
			b.WriteByte(h[0])
			i += 2
		default:
			return "", fmt.Errorf("unknown escape \\%c", v[i])
		}
	}
	return b.String(), nil
}

// CheckKeys verifies, beyond eapol_test's own check (which compares only
// the MS-MPPE-Recv-Key with the first half of the supplicant's MSK), that
// both MPPE keys the server sent are the right halves of the MSK:
// Recv-Key = MSK[0:32] and Send-Key = MSK[32:64] (RFC 5216 section 2.3,
// RFC 2548). It needs the MSK and both keys in the output.
func (r *Result) CheckKeys() error {
	if len(r.MSK) != 64 {
		return fmt.Errorf("MSK not in eapol_test output (got %d bytes)", len(r.MSK))
	}
	if len(r.MPPERecvKey) != 32 || len(r.MPPESendKey) != 32 {
		return fmt.Errorf("MPPE keys not in eapol_test output (recv %d, send %d bytes)", len(r.MPPERecvKey), len(r.MPPESendKey))
	}
	if !bytes.Equal(r.MPPERecvKey, r.MSK[:32]) {
		return errors.New("MS-MPPE-Recv-Key is not MSK[0:32]")
	}
	if !bytes.Equal(r.MPPESendKey, r.MSK[32:64]) {
		return errors.New("MS-MPPE-Send-Key is not MSK[32:64]")
	}
	return nil
}

// Extension types worth naming in tests (IANA TLS ExtensionType values).
const (
	ExtExtendedMasterSecret = 0x0017
	ExtSessionTicket        = 0x0023
	ExtSupportedVersions    = 0x002b
)

// helloExtensions returns the extension types of a ClientHello or
// ServerHello handshake message (RFC 8446 section 4.1.2/4.1.3).
func helloExtensions(b []byte, client bool) ([]uint16, error) {
	if len(b) < 4+2+32+1 || (client && b[0] != 1) || (!client && b[0] != 2) {
		return nil, errors.New("not a hello message")
	}
	n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	if 4+n > len(b) {
		return nil, errors.New("truncated hello")
	}
	p := b[4 : 4+n]
	skip := func(k int) bool {
		if k > len(p) {
			return false
		}
		p = p[k:]
		return true
	}
	vec := func(lenBytes int) bool {
		if len(p) < lenBytes {
			return false
		}
		l := 0
		for i := 0; i < lenBytes; i++ {
			l = l<<8 | int(p[i])
		}
		return skip(lenBytes + l)
	}
	ok := skip(2+32) && vec(1) // version, random, session id
	if client {
		ok = ok && vec(2) && vec(1) // cipher suites, compression methods
	} else {
		ok = ok && skip(2+1) // cipher suite, compression method
	}
	if !ok {
		return nil, errors.New("malformed hello")
	}
	if len(p) == 0 {
		return []uint16{}, nil
	}
	if len(p) < 2 || int(p[0])<<8|int(p[1]) != len(p)-2 {
		return nil, errors.New("bad extensions length")
	}
	p = p[2:]
	ext := []uint16{}
	for len(p) > 0 {
		if len(p) < 4 {
			return nil, errors.New("truncated extension")
		}
		t, l := uint16(p[0])<<8|uint16(p[1]), int(p[2])<<8|int(p[3])
		if 4+l > len(p) {
			return nil, errors.New("truncated extension data")
		}
		ext = append(ext, t)
		p = p[4+l:]
	}
	return ext, nil
}

// HasExtension reports whether ext lists t.
func HasExtension(ext []uint16, t uint16) bool {
	for _, e := range ext {
		if e == t {
			return true
		}
	}
	return false
}

// certificateList returns the DER certificates of a TLS Certificate
// handshake message (RFC 5246 section 7.4.2; RFC 8446 section 4.4.2 when
// tls13), in the order sent.
func certificateList(b []byte, tls13 bool) ([][]byte, error) {
	if len(b) < 4 || b[0] != 11 {
		return nil, errors.New("not a Certificate message")
	}
	u24 := func(p []byte) int { return int(p[0])<<16 | int(p[1])<<8 | int(p[2]) }
	n := u24(b[1:])
	if 4+n > len(b) {
		return nil, errors.New("truncated")
	}
	p := b[4 : 4+n]
	if tls13 {
		if len(p) < 1 || 1+int(p[0]) > len(p) {
			return nil, errors.New("bad request context")
		}
		p = p[1+int(p[0]):]
	}
	if len(p) < 3 || u24(p) != len(p)-3 {
		return nil, errors.New("bad certificate_list length")
	}
	p = p[3:]
	certs := [][]byte{}
	for len(p) > 0 {
		if len(p) < 3 || 3+u24(p) > len(p) {
			return nil, errors.New("truncated certificate")
		}
		l := u24(p)
		certs = append(certs, p[3:3+l])
		p = p[3+l:]
		if tls13 {
			if len(p) < 2 || 2+(int(p[0])<<8|int(p[1])) > len(p) {
				return nil, errors.New("truncated certificate extensions")
			}
			p = p[2+(int(p[0])<<8|int(p[1])):]
		}
	}
	return certs, nil
}
