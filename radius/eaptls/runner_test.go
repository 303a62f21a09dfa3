package eaptls

import (
	"os"
	"sync"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// Idle runners exit quickly in this package's tests (set before any
	// runner starts: runners read it without synchronisation).
	runnerIdle = 200 * time.Millisecond
	os.Exit(m.Run())
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting until %s (runners %d, busy %d)", what, runners.Load(), busyRunners.Load())
}

// TestRunnerReusedThenExits: a runner that finished a handshake takes the
// next one instead of a new goroutine being started, and exits after
// runnerIdle without work (200 ms in these tests, see TestMain). Not parallel: it reads the package counters.
func TestRunnerReusedThenExits(t *testing.T) {
	waitFor(t, "the runners of earlier tests exited", func() bool { return runners.Load() == 0 })

	done := make(chan struct{})
	goHandshake(func() { close(done) })
	<-done
	waitFor(t, "the first runner is idle", func() bool { return busyRunners.Load() == 0 })
	if n := runners.Load(); n != 1 {
		t.Fatalf("%d runners after one handshake, want 1", n)
	}
	// Wait until it is parked in the idle select, then hand it more work:
	// no second goroutine is started.
	time.Sleep(20 * time.Millisecond)
	ran := make(chan struct{})
	goHandshake(func() { close(ran) })
	<-ran
	if n := runners.Load(); n != 1 {
		t.Fatalf("%d runners after a second sequential handshake, want 1 (reused)", n)
	}
	waitFor(t, "the idle runner exited", func() bool { return runners.Load() == 0 })
}

// TestRunnersConcurrent: concurrent handshakes each get their own runner
// (none waits for another), and every one completes.
func TestRunnersConcurrent(t *testing.T) {
	const n = 16
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	var finished sync.WaitGroup
	finished.Add(n)
	for range n {
		goHandshake(func() {
			defer finished.Done()
			started.Done()
			<-release // all n must be running at once, or this deadlocks
		})
	}
	started.Wait()
	if b := busyRunners.Load(); b < n {
		t.Fatalf("%d handshakes running, want at least %d", b, n)
	}
	close(release)
	finished.Wait()
}

// TestIdleRunnersBounded: after more concurrent handshakes than
// maxIdleRunners (a flood of half-open conversations), at most
// maxIdleRunners runners stay waiting; the rest exit at once instead of
// holding their stacks for runnerIdle.
func TestIdleRunnersBounded(t *testing.T) {
	waitFor(t, "the runners of earlier tests exited", func() bool { return runners.Load() == 0 })
	n := maxIdleRunners + 64
	var started sync.WaitGroup
	started.Add(n)
	release := make(chan struct{})
	for range n {
		goHandshake(func() {
			started.Done()
			<-release
		})
	}
	started.Wait()
	if r := runners.Load(); r != int64(n) {
		t.Fatalf("%d runners for %d concurrent handshakes", r, n)
	}
	close(release)
	waitFor(t, "the surplus runners exited", func() bool {
		return busyRunners.Load() == 0 && runners.Load() == maxIdleRunners
	})
	if i := idle.Load(); i != maxIdleRunners {
		t.Errorf("%d idle runners counted, want %d", i, maxIdleRunners)
	}
	waitFor(t, "the idle runners exited after runnerIdle", func() bool { return runners.Load() == 0 && idle.Load() == 0 })
}
