package audit

import (
	"bytes"
	"crypto/ed25519"
	"log/syslog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestSealOnInterval: with unsealed records, the interval seals them
// without further writes.
func TestSealOnInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	key := testKey(t)
	s, err := OpenSink(Options{Path: path, SealKey: key, SealEvery: 1000, SealInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Logger().Info("access-accept", decisionFields(1)...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		if bytes.Contains(b, []byte(`"nacd.seal.reason":"interval"`)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no interval seal:\n%s", b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	res, err := Verify([]string{path}, key.Public().(ed25519.PublicKey))
	if err != nil || res.Seals < 1 || res.Unsealed != 0 {
		t.Errorf("Verify: %+v %v", res, err)
	}
}

// TestWithFieldsChained: fields added with Logger.With are in the record
// and covered by the chain.
func TestWithFieldsChained(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	s, err := OpenSink(Options{Path: path, SealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	l := s.Logger().With(zap.String("nas.name", "ap-1"))
	l.Info("access-accept")
	l.Info("access-reject")
	s.Close()
	b, _ := os.ReadFile(path)
	if bytes.Count(b, []byte(`"nas.name":"ap-1"`)) != 2 {
		t.Errorf("With fields missing:\n%s", b)
	}
	if _, err := Verify([]string{path}, nil); err != nil {
		t.Error(err)
	}
}

// BenchmarkSinkWrite is the cost of one decision record (encode, chain
// hash, write to a file).
func BenchmarkSinkWrite(b *testing.B) {
	path := filepath.Join(b.TempDir(), "access.log")
	s, err := OpenSink(Options{Path: path, SealKey: testKey(b), SealInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	fields := decisionFields(7)
	b.ReportAllocs()
	for b.Loop() {
		s.Logger().Info("access-accept", fields...)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestSyslogStream: with Stream "syslog" every record written to the file
// is also sent, byte for byte (without the newline), to the local syslog
// socket (here a unixgram socket in a temp dir).
func TestSyslogStream(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Skipf("unixgram: %v", err)
	}
	defer conn.Close()
	old := syslogDial
	syslogDial = func() (*syslog.Writer, error) {
		return syslog.Dial("unixgram", sock, syslog.LOG_INFO|syslog.LOG_AUTH, "nacd")
	}
	defer func() { syslogDial = old }()

	path := filepath.Join(dir, "access.log")
	s, err := OpenSink(Options{Path: path, Stream: Syslog, SealInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	s.Logger().Info("access-accept", decisionFields(3)...)
	s.Logger().Info("access-reject", decisionFields(9)...)
	s.Close()
	lines := readLines(t, path)
	if len(lines) != 2 {
		t.Fatalf("%d lines in the file, want 2", len(lines))
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64<<10)
	for i, l := range lines {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("syslog message %d: %v", i, err)
		}
		msg := string(buf[:n])
		// <38> = auth (4) * 8 + info (6)
		if !strings.HasPrefix(msg, "<38>") || !strings.Contains(msg, " nacd[") || !strings.HasSuffix(strings.TrimRight(msg, "\n"), string(bytes.TrimRight(l, "\n"))) {
			t.Errorf("syslog message %d = %q, want <38>... nacd[pid]: %s", i, msg, l)
		}
	}
}

func TestStreamNames(t *testing.T) {
	for _, tc := range []struct {
		name    string
		wantErr bool
	}{{"stdout", false}, {"stderr", false}, {"kafka", true}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := openStream(tc.name)
			if (err != nil) != tc.wantErr {
				t.Errorf("openStream(%q) = %v, want error %t", tc.name, err, tc.wantErr)
			}
		})
	}
}
