package audit

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/herts-council/nacd/policy"
)

// fullDisk makes the log's file system full and frees it again.
type fullDisk interface {
	fill(t *testing.T, logPath string)
	free(t *testing.T)
}

// tmpfsDisk is a 64 KiB tmpfs (needs root); fill writes a filler file
// until ENOSPC.
type tmpfsDisk struct{ dir string }

func (d *tmpfsDisk) fill(t *testing.T, _ string) {
	f, err := os.Create(filepath.Join(d.dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 512)
	for i := 0; i < 1024; i++ {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filler: %v, want ENOSPC", err)
			}
			return
		}
	}
	t.Fatal("the tmpfs never filled")
}

func (d *tmpfsDisk) free(t *testing.T) {
	if err := os.Remove(filepath.Join(d.dir, "filler")); err != nil {
		t.Fatal(err)
	}
}

// rlimitDisk limits the size of files this process writes
// (RLIMIT_FSIZE, SIGXFSZ ignored so writes fail with EFBIG) to the log's
// current size; for machines where tmpfs cannot be mounted.
type rlimitDisk struct{ old syscall.Rlimit }

func (d *rlimitDisk) fill(t *testing.T, logPath string) {
	st, err := os.Stat(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &d.old); err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: uint64(st.Size()), Max: d.old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
}

func (d *rlimitDisk) free(t *testing.T) {
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &d.old); err != nil {
		t.Fatal(err)
	}
}

// newFullDisk returns a directory for the log and its fullDisk.
func newFullDisk(t *testing.T) (string, fullDisk) {
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("NACD_TEST_DISKFULL") == "rlimit" {
		t.Log("NACD_TEST_DISKFULL=rlimit: using RLIMIT_FSIZE")
	} else if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700"); err == nil {
		t.Cleanup(func() { syscall.Unmount(dir, 0) })
		return dir, &tmpfsDisk{dir: dir}
	} else {
		t.Logf("tmpfs not mountable (%v): using RLIMIT_FSIZE", err)
	}
	signal.Ignore(syscall.SIGXFSZ)
	t.Cleanup(func() { signal.Reset(syscall.SIGXFSZ) })
	return dir, &rlimitDisk{}
}

// TestDiskFull: while the log's file system is full, records are queued
// (not written partially, not lost), the write policy decides which
// decisions fail closed, nacd_audit_write_errors_total counts; after space
// frees, the queue is written in order and the chain verifies. With a
// queue bound hit, the loss is counted and recorded in the chain.
func TestDiskFull(t *testing.T) {
	il3 := policy.Decision{Segment: policy.SegmentIL3}
	general := policy.Decision{Segment: policy.SegmentGeneral}
	tests := []struct {
		name        string
		policy      WritePolicy
		queue       int
		whileFull   int // records written while full (after the first failure)
		il3Closed   bool
		otherClosed bool
		wantLost    int
	}{
		{name: "default fails il3 closed", policy: "", queue: 100, whileFull: 5, il3Closed: true},
		{name: "fail_closed rejects every decision", policy: FailClosed, queue: 100, whileFull: 5, il3Closed: true, otherClosed: true},
		{name: "keep_serving counts errors", policy: KeepServing, queue: 100, whileFull: 5},
		{name: "queue bound hit: loss counted and recorded", policy: KeepServing, queue: 3, whileFull: 6, wantLost: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, disk := newFullDisk(t)
			path := filepath.Join(dir, "access.log")
			key := testKey(t)
			reg := prometheus.NewRegistry()
			s, err := OpenSink(Options{Path: path, SealKey: key, SealEvery: 1000, SealInterval: -1, OnWriteError: tc.policy, QueueSize: tc.queue, Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			total := 0
			write := func() {
				total++
				s.Logger().Info("access-accept", append(decisionFields(total), zap.Int("i", total))...)
			}
			for i := 0; i < 10; i++ {
				write()
			}
			if err := s.Err(); err != nil || s.Gate(il3) != nil {
				t.Fatalf("healthy log: Err %v Gate %v", err, s.Gate(il3))
			}
			disk.fill(t, path)
			// The last page of the file may still take a record or two.
			for i := 0; s.Err() == nil; i++ {
				if i == 50 {
					t.Fatal("the log never failed on a full disk")
				}
				write()
			}
			if got := s.Gate(il3) != nil; got != tc.il3Closed {
				t.Errorf("il3 fails closed = %t, want %t", got, tc.il3Closed)
			}
			if got := s.Gate(general) != nil; got != tc.otherClosed {
				t.Errorf("general fails closed = %t, want %t", got, tc.otherClosed)
			}
			for i := 0; i < tc.whileFull; i++ {
				write()
			}
			if errs := testutil.ToFloat64(s.mErrors); errs < 1 {
				t.Errorf("nacd_audit_write_errors_total = %v, want >= 1", errs)
			}
			if lost := testutil.ToFloat64(s.mLost); int(lost) != tc.wantLost {
				t.Errorf("nacd_audit_records_lost_total = %v, want %d", lost, tc.wantLost)
			}
			// A file with no partial record.
			if b, err := os.ReadFile(path); err != nil || (len(b) > 0 && b[len(b)-1] != '\n') {
				t.Errorf("the log ends inside a record while full (err %v)", err)
			}

			disk.free(t)
			write() // the next write retries the queue first
			if err := s.Err(); err != nil {
				t.Fatalf("after space freed: %v", err)
			}
			if s.Gate(il3) != nil || s.Gate(general) != nil {
				t.Error("decisions still fail closed after space freed")
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			res, err := Verify([]string{path}, key.Public().(ed25519.PublicKey))
			if err != nil || res.Unsealed != 0 {
				t.Fatalf("Verify after the outage: %+v %v", res, err)
			}
			// Every record is written or counted as lost; the loss is in the chain.
			b, _ := os.ReadFile(path)
			written := bytes.Count(b, []byte(`"msg":"access-accept"`))
			if written+tc.wantLost != total {
				t.Errorf("%d written + %d lost, want %d records", written, tc.wantLost, total)
			}
			if tc.wantLost > 0 != bytes.Contains(b, []byte(`"msg":"`+ActionLost+`"`)) {
				t.Errorf("audit-records-lost record present = %t, want %t", !(tc.wantLost > 0), tc.wantLost > 0)
			}
		})
	}
}
