package eaptls

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herts-council/nacd/internal/testpki"
	"github.com/herts-council/nacd/internal/testtool"
	"github.com/herts-council/nacd/radius/eap"
)

// opensslPeer is an EAP-TLS peer's TLS engine in Python's ssl module
// (OpenSSL), driven over stdin/stdout: Go sends each reassembled server TLS
// message (4-byte length + bytes), Python answers 'T' + length + its TLS
// output (empty: nothing to say, i.e. an ACK), and finally 'R' + JSON with
// MSK/EMSK computed on its own from its key log (TLS 1.2: the RFC 5216 PRF
// over the master secret, the randoms from the key log and the ServerHello;
// TLS 1.3: the RFC 8446 exporter over EXPORTER_SECRET) or 'E' + the error.
//
// For TLS 1.2 it turns Extended Master Secret off (SSL_OP_NO_EXTENDED_
// MASTER_SECRET, bit 0 in OpenSSL 3), which crypto/tls's own client cannot
// do: the one way to test the key-log route where Go's exporter refuses.
const opensslPeer = `
import hashlib, hmac, json, ssl, struct, sys

ver, cert, key, ca, keylog = sys.argv[1:6]
inp, outp = sys.stdin.buffer, sys.stdout.buffer

def send(t, b):
    outp.write(t + struct.pack(">I", len(b)) + b)
    outp.flush()

def recv():
    n = struct.unpack(">I", inp.read(4))[0]
    return inp.read(n)

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.load_cert_chain(cert, key)
v = ssl.TLSVersion.TLSv1_2 if ver == "1.2" else ssl.TLSVersion.TLSv1_3
ctx.minimum_version = ctx.maximum_version = v
if ver == "1.2":
    ctx.options |= 1  # SSL_OP_NO_EXTENDED_MASTER_SECRET
ctx.keylog_filename = keylog
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
conn = ctx.wrap_bio(inc, out, server_hostname="radius.example.test")
server_stream = b""

def pump(op):
    global server_stream
    while True:
        try:
            return op()
        except ssl.SSLWantReadError:
            send(b"T", out.read())
            m = recv()
            server_stream += m
            inc.write(m)

try:
    pump(conn.do_handshake)
    if ver == "1.3":
        b = pump(lambda: conn.read(1))
        if b != b"\x00":
            raise Exception("bad success indication %r" % b)
    send(b"T", out.read())  # 1.2: nothing (the final ACK)
except Exception as e:
    send(b"T", out.read())  # an alert of ours, if any
    send(b"E", str(e).encode())
    sys.exit(0)

suite = conn.cipher()[0]
h = hashlib.sha384 if suite.endswith("SHA384") else hashlib.sha256
lines = [l.split() for l in open(keylog).read().splitlines() if l and not l.startswith("#")]

def expand(secret, info, n):
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(secret, t + info + bytes([i]), h).digest()
        out += t
        i += 1
    return out[:n]

def expand_label(secret, label, context, n):
    full = b"tls13 " + label
    return expand(secret, struct.pack(">H", n) + bytes([len(full)]) + full + bytes([len(context)]) + context, n)

def exporter(secret, label, context, n):
    derived = expand_label(secret, label, h(b"").digest(), h().digest_size)
    return expand_label(derived, b"exporter", h(context).digest(), n)

if ver == "1.2":
    cr, ms = [(bytes.fromhex(l[1]), bytes.fromhex(l[2])) for l in lines if l[0] == "CLIENT_RANDOM"][0]
    # ServerHello: record header (5), handshake header (4), version (2), random (32)
    assert server_stream[0] == 22 and server_stream[5] == 2
    sr = server_stream[11:43]
    seed = b"client EAP encryption" + cr + sr
    km, a = b"", hmac.new(ms, seed, h).digest()
    while len(km) < 128:
        km += hmac.new(ms, a + seed, h).digest()
        a = hmac.new(ms, a, h).digest()
    sid = b"\x0d" + cr + sr
else:
    es = [bytes.fromhex(l[2]) for l in lines if l[0] == "EXPORTER_SECRET"][0]
    km = exporter(es, b"EXPORTER_EAP_TLS_Key_Material", b"\x0d", 128)
    sid = b"\x0d" + exporter(es, b"EXPORTER_EAP_TLS_Method-Id", b"\x0d", 64)
send(b"R", json.dumps({"msk": km[:64].hex(), "emsk": km[64:128].hex(), "sid": sid.hex(), "suite": suite, "version": conn.version()}).encode())
`

type opensslResult struct {
	MSK, EMSK, SID, Suite, Version string
	Err                            string
}

// runOpenSSLPeer runs one conversation between a Session and the Python
// peer, doing the peer's EAP-TLS framing in Go.
func runOpenSSLPeer(t *testing.T, python string, pki *testPKI, ver string, s *Session) (opensslResult, eap.Code, error) {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "peer.py")
	if err := os.WriteFile(script, []byte(opensslPeer), 0o600); err != nil {
		t.Fatal(err)
	}
	files := pki.client.WriteFiles(t, dir, "device")
	ca := pki.root.WriteCert(t, dir, "root")
	cmd := exec.Command(python, script, ver, files.Chain, files.Key, ca, filepath.Join(dir, "keylog"))
	stdin, _ := cmd.StdinPipe()
	stdoutPipe, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("python peer: %v\n%s", err, stderr.String())
		}
	}()
	stdout := bufio.NewReader(stdoutPipe)
	readMsg := func() (byte, []byte) {
		var hdr [5]byte
		if _, err := io.ReadFull(stdout, hdr[:]); err != nil {
			t.Fatalf("python peer: %v\n%s", err, stderr.String())
		}
		b := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(stdout, b); err != nil {
			t.Fatal(err)
		}
		return hdr[0], b
	}
	var res opensslResult
	req := s.Start(1)
	tx := fragmenter{size: 500}
	rx := reassembler{max: DefaultMaxMessageSize}
	var peerOut []byte
	first := true
	for round := 0; round < 200; round++ {
		f, err := parseFrame(req.Data)
		if err != nil {
			t.Fatal(err)
		}
		var respData []byte
		switch {
		case tx.pending(): // the server ACKed our fragment
			respData, _ = tx.next()
		case f.start() && first:
			first = false
			typ, b := readMsg() // the ClientHello
			if typ != 'T' {
				t.Fatalf("python peer: %c %s", typ, b)
			}
			peerOut = b
		default:
			complete, err := rx.add(f)
			if err != nil {
				t.Fatal(err)
			}
			if !complete {
				respData = []byte{0}
				break
			}
			msg := rx.buf
			rx.buf = nil
			hdr := binary.BigEndian.AppendUint32(nil, uint32(len(msg)))
			if _, err := stdin.Write(append(hdr, msg...)); err != nil {
				t.Fatal(err)
			}
			typ, b := readMsg()
			if typ != 'T' {
				t.Fatalf("python peer: %c %s", typ, b)
			}
			peerOut = b
		}
		if respData == nil {
			if len(peerOut) == 0 {
				respData = []byte{0}
			} else {
				tx.load(peerOut)
				respData, _ = tx.next()
			}
			peerOut = nil
		}
		next, serr := s.Handle(tlsResp(req.Identifier, respData))
		if next == nil {
			t.Fatalf("no packet: %v", serr)
		}
		if next.Code == eap.CodeSuccess || next.Code == eap.CodeFailure {
			typ, b := readMsg()
			switch typ {
			case 'R':
				if err := json.Unmarshal(b, &res); err != nil {
					t.Fatal(err)
				}
			case 'E':
				res.Err = string(b)
			default:
				t.Fatalf("python peer: %c %s", typ, b)
			}
			return res, next.Code, serr
		}
		if serr != nil {
			t.Fatalf("request with error %v", serr)
		}
		req = next
	}
	t.Fatal("no end")
	return res, 0, nil
}

// TestOpenSSLPeer is an interop test against OpenSSL's client: success and
// refusal on both versions, keys derived independently on the peer's side,
// and TLS 1.2 without Extended Master Secret (the key-log route).
func TestOpenSSLPeer(t *testing.T) {
	python := testtool.Require(t, "python3")
	if out, err := exec.Command(python, "-c", "import ssl").CombinedOutput(); err != nil {
		t.Fatalf("python3 without ssl: %v %s", err, out)
	}
	cases := []struct {
		name   string
		ver    string
		refuse bool
	}{
		{"tls12 without EMS", "1.2", false},
		{"tls13", "1.3", false},
		{"tls12 refused", "1.2", true},
		{"tls13 refused", "1.3", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkNoLeak(t)
			pki := newTestPKI(t, testpki.ECDSAP256, testpki.ECDSAP256, 0)
			var exportErr error
			s := NewSession(pki.serverConfig(0, 0, 0), func(cs tls.ConnectionState) error {
				if cs.Version == tls.VersionTLS12 {
					_, exportErr = cs.ExportKeyingMaterial(labelTLS12, nil, 128)
				}
				if c.refuse {
					return errNotAllowed
				}
				return nil
			})
			defer s.Close()
			res, code, err := runOpenSSLPeer(t, python, pki, c.ver, s)
			if c.refuse {
				if code != eap.CodeFailure || !errors.Is(err, errNotAllowed) {
					t.Fatalf("code %d, err %v", code, err)
				}
				if !strings.Contains(strings.ToLower(res.Err), "access denied") && !strings.Contains(strings.ToLower(res.Err), "access_denied") {
					t.Fatalf("OpenSSL saw %q, want the access_denied alert", res.Err)
				}
				t.Logf("OpenSSL: %s", res.Err)
				return
			}
			if code != eap.CodeSuccess || err != nil || res.Err != "" {
				t.Fatalf("code %d, server %v, peer %q", code, err, res.Err)
			}
			r := s.Result()
			if hex.EncodeToString(r.MSK) != res.MSK || hex.EncodeToString(r.EMSK) != res.EMSK || hex.EncodeToString(r.SessionID) != res.SID {
				t.Fatalf("keys differ from OpenSSL's side (%s, %s)", res.Version, res.Suite)
			}
			if c.ver == "1.2" && exportErr == nil {
				t.Fatalf("crypto/tls exported keys: Extended Master Secret was negotiated, the test proves nothing")
			}
			t.Logf("%s %s: keys agree", res.Version, res.Suite)
		})
	}
}
