package audit

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
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
