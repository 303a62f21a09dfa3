package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// testKey returns a seal key.
func testKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeRotated writes n decision records through the real sink with size
// rotation and seals, closes it, and returns the files oldest first.
func writeRotated(t testing.TB, dir string, key ed25519.PrivateKey, n int, maxSize int64) []string {
	t.Helper()
	path := filepath.Join(dir, "access.log")
	clock := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	s, err := OpenSink(Options{Path: path, MaxSize: maxSize, SealKey: key, SealEvery: 7, SealInterval: -1,
		Now: func() time.Time { clock = clock.Add(time.Millisecond); return clock }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		s.Logger().Info("access-accept", decisionFields(i)...)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rot, err := RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	return append(rot, path)
}

// decisionFields are the fields of a RADIUS decision record (names as in
// radius/accesslog.go), varied by i.
func decisionFields(i int) []zap.Field {
	result, outcome, seg := "accept", "success", []string{"il3", "general", "guest"}[i%3]
	if i%10 == 9 {
		result, outcome, seg = "reject", "failure", "reject"
	}
	return []zap.Field{
		zap.String("event.action", "radius-access"), zap.String("event.outcome", outcome),
		zap.String("nacd.result", result), zap.String("nacd.segment", seg),
		zap.String("event.reason", "rule-matched"),
		zap.String("nas.name", fmt.Sprintf("ap-%d", i%50)), zap.String("nas.ip", fmt.Sprintf("10.0.%d.1", i%50)),
		zap.String("nas.site", "Wallfields"),
		zap.String("user.email", fmt.Sprintf("user%d@herts.example", i%1000)),
		zap.String("device.id", fmt.Sprintf("00000000-0000-4000-8000-%012d", i%2000)),
		zap.String("tls.client.x509.serial_number", fmt.Sprintf("%x", 0x100000+i%5000)),
	}
}

func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// firstNonSeal returns the index of the first record in lines after from
// that is not a seal.
func firstNonSeal(lines [][]byte, from int) int {
	for i := from; i < len(lines); i++ {
		if !bytes.Contains(lines[i], []byte(`"msg":"`+ActionSeal+`"`)) {
			return i
		}
	}
	return -1
}

func sealIndex(lines [][]byte) int {
	for i, l := range lines {
		if bytes.Contains(l, []byte(`"msg":"`+ActionSeal+`"`)) {
			return i
		}
	}
	return -1
}

var hashPrevRE = regexp.MustCompile(`"hash_prev":"[0-9a-f]{64}"`)

func TestVerify(t *testing.T) {
	other := testKey(t)
	tests := []struct {
		name    string
		tamper  func(t *testing.T, files []string) []string // returns the files to verify
		problem string                                      // "" intact
		file    int                                         // index of the file named
		line    int                                         // line named (1-based), 0: any
	}{
		{name: "intact rotated set", tamper: func(t *testing.T, f []string) []string { return f }},
		{name: "changed field", problem: ProblemAltered, file: 1, line: 3, tamper: func(t *testing.T, f []string) []string {
			ls := readLines(t, f[1])
			ls[2] = bytes.Replace(ls[2], []byte(`"nacd.segment":"`), []byte(`"nacd.segment":"x`), 1)
			writeLines(t, f[1], ls)
			return f
		}},
		{name: "deleted record", problem: ProblemRemoved, file: 1, line: 3, tamper: func(t *testing.T, f []string) []string {
			ls := readLines(t, f[1])
			writeLines(t, f[1], append(ls[:2:2], ls[3:]...))
			return f
		}},
		{name: "two swapped records", problem: ProblemReordered, file: 1, line: 2, tamper: func(t *testing.T, f []string) []string {
			ls := readLines(t, f[1])
			ls[1], ls[2] = ls[2], ls[1]
			writeLines(t, f[1], ls)
			return f
		}},
		{name: "truncated file (last line cut)", problem: ProblemTruncated, file: -1, tamper: func(t *testing.T, f []string) []string {
			b, _ := os.ReadFile(f[len(f)-1])
			os.WriteFile(f[len(f)-1], b[:len(b)-20], 0o600)
			return f
		}},
		{name: "rotated file cut at a record boundary", problem: ProblemTruncated, file: 1, tamper: func(t *testing.T, f []string) []string {
			ls := readLines(t, f[1])
			writeLines(t, f[1], ls[:len(ls)-1])
			return f
		}},
		{name: "forged seal (re-signed with another key)", problem: ProblemForgedSeal, file: 1, tamper: func(t *testing.T, f []string) []string {
			ls := readLines(t, f[1])
			i := sealIndex(ls)
			rec, err := parseChain(bytes.TrimRight(ls[i], "\n"))
			if err != nil {
				t.Fatal(err)
			}
			sig := ed25519.Sign(other, SealMessage(rec.seq, rec.hashPrev, rec.sealFirst, rec.time))
			l := strings.Replace(string(ls[i]), rec.signature, base64.StdEncoding.EncodeToString(sig), 1)
			l = strings.Replace(l, rec.keyID, KeyID(other.Public().(ed25519.PublicKey)), 1)
			ls[i] = []byte(l)
			writeLines(t, f[1], ls)
			return f
		}},
		{name: "signature of another key under the right key id", problem: ProblemForgedSeal, file: 1, tamper: func(t *testing.T, f []string) []string {
			ls := readLines(t, f[1])
			i := sealIndex(ls)
			rec, _ := parseChain(bytes.TrimRight(ls[i], "\n"))
			sig := ed25519.Sign(other, SealMessage(rec.seq, rec.hashPrev, rec.sealFirst, rec.time))
			ls[i] = []byte(strings.Replace(string(ls[i]), rec.signature, base64.StdEncoding.EncodeToString(sig), 1))
			writeLines(t, f[1], ls)
			return f
		}},
		{name: "changed field with the chain recomputed", problem: ProblemForgedSeal, file: 1, tamper: func(t *testing.T, f []string) []string {
			ls := readLines(t, f[1])
			i := firstNonSeal(ls, 0)
			ls[i] = bytes.Replace(ls[i], []byte(`"nacd.result":"`), []byte(`"nacd.result":"x`), 1)
			for j := i + 1; j < len(ls); j++ {
				h := hashLine(bytes.TrimRight(ls[j-1], "\n"))
				ls[j] = hashPrevRE.ReplaceAll(ls[j], []byte(`"hash_prev":"`+h+`"`))
			}
			writeLines(t, f[1], ls)
			return f
		}},
		{name: "record moved later", problem: ProblemRemoved, file: 1, line: 2, tamper: func(t *testing.T, f []string) []string {
			ls := readLines(t, f[1])
			moved := ls[1]
			ls = append(ls[:1:1], ls[2:]...)
			ls = append(ls[:4:4], append([][]byte{moved}, ls[4:]...)...)
			writeLines(t, f[1], ls)
			return f
		}},
		{name: "removed rotated file in the middle", problem: ProblemRemoved, file: 2, line: 1, tamper: func(t *testing.T, f []string) []string {
			return []string{f[0], f[2]}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := testKey(t)
			files := writeRotated(t, t.TempDir(), key, 60, 4096)
			if len(files) < 3 {
				t.Fatalf("%d files, want at least 3 (rotation by size)", len(files))
			}
			given := tc.tamper(t, files)
			res, err := Verify(given, key.Public().(ed25519.PublicKey))
			if tc.problem == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if res.Files != len(files) || res.Unsealed != 0 || res.Seals < 9 || !res.Start || res.LastSeq != uint64(res.Records) {
					t.Errorf("result %+v", res)
				}
				return
			}
			if tc.file < 0 {
				tc.file = len(files) - 1
			}
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify = %v, want a %s error", err, tc.problem)
			}
			if ve.Problem != tc.problem || ve.File != files[tc.file] || (tc.line != 0 && ve.Line != tc.line) {
				t.Errorf("Verify = %v, want %s at %s:%d", ve, tc.problem, files[tc.file], tc.line)
			}
		})
	}
}

// TestResumeAcrossRestart: a reopened sink continues the chain (and the
// first record of a new file carries the last hash of the rotated one).
func TestResumeAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t)
	path := filepath.Join(dir, "access.log")
	for round := 0; round < 3; round++ {
		s, err := OpenSink(Options{Path: path, SealKey: key, SealInterval: -1, MaxSize: 4096})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 25; i++ {
			s.Logger().Info("access-reject", decisionFields(i)...)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rot, _ := RotatedFiles(path)
	res, err := Verify(append(rot, path), key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 75+res.Seals || res.Unsealed != 0 {
		t.Errorf("result %+v, want 75 records and their seals", res)
	}
}

// TestRotateByAge rotates when the file is older than MaxAge.
func TestRotateByAge(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t)
	path := filepath.Join(dir, "access.log")
	clock := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	s, err := OpenSink(Options{Path: path, SealKey: key, SealInterval: -1, MaxAge: time.Hour,
		Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 7; i++ { // at 0, 25, 50 | 75, 100, 125 | 150 minutes
		s.Logger().Info("access-accept", decisionFields(i)...)
		clock = clock.Add(25 * time.Minute)
	}
	s.Close()
	rot, _ := RotatedFiles(path)
	if len(rot) != 2 {
		t.Fatalf("rotated files %v, want 2 (7 records 25 minutes apart, max age 1h)", rot)
	}
	if _, err := Verify(append(rot, path), key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
}

// TestOpenTornLog: a chained file whose last record is torn (a crash) is
// refused, not moved aside or continued; an unchained (pre-chain) file is
// moved aside.
func TestOpenTornLog(t *testing.T) {
	tests := []struct {
		name      string
		content   func(path string) []byte
		wantErr   bool
		wantAside bool
	}{
		{name: "torn last record", wantErr: true, content: func(path string) []byte {
			s, err := OpenSink(Options{Path: path, SealInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			s.Logger().Info("access-accept")
			s.Logger().Info("access-accept")
			s.Close()
			b, _ := os.ReadFile(path)
			return b[:len(b)-10]
		}},
		{name: "pre-chain log", wantAside: true, content: func(string) []byte { return []byte("{\"msg\":\"access-accept\"}\n") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "access.log")
			b := tc.content(path)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := OpenSink(Options{Path: path, SealInterval: -1})
			if (err != nil) != tc.wantErr {
				t.Fatalf("OpenSink err = %v, want error %t", err, tc.wantErr)
			}
			if err == nil {
				s.Close()
			}
			aside, _ := filepath.Glob(path + ".legacy-*")
			if (len(aside) == 1) != tc.wantAside {
				t.Errorf("moved aside: %v, want %t", aside, tc.wantAside)
			}
			if got, _ := os.ReadFile(path); tc.wantErr && !bytes.Equal(got, b) {
				t.Error("the torn log was modified")
			}
		})
	}
}
