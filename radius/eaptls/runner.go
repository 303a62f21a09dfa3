package eaptls

import (
	"sync/atomic"
	"time"
)

// Handshake goroutines are reused: a crypto/tls server handshake grows its
// goroutine's stack from the initial few KiB to about 16-32 KiB, and a fresh
// goroutine per conversation paid for that growth (stack copies, about 4 % of
// the server's CPU under load) every time. A runner that finished one
// handshake waits runnerIdle for the next one, then exits, so an idle server
// holds no runners and a busy one holds about as many as it has concurrent
// handshakes.

// runnerIdle is how long an idle runner waits for work before it exits.
var runnerIdle = 20 * time.Second

var (
	// idleRunners hands a handshake to a runner waiting in idle; unbuffered,
	// so a send succeeds only when one is waiting.
	idleRunners = make(chan func())
	// busyRunners counts runners running a handshake (tests use it to find
	// leaked handshakes; it is not the number of goroutines).
	busyRunners atomic.Int64
	// runners counts runner goroutines, busy or idle.
	runners atomic.Int64
)

// goHandshake runs f on an idle runner, or on a new one when none is idle.
func goHandshake(f func()) {
	busyRunners.Add(1)
	select {
	case idleRunners <- f:
	default:
		runners.Add(1)
		go runner(f)
	}
}

func runner(f func()) {
	defer runners.Add(-1)
	var t *time.Timer
	for {
		f()
		f = nil // do not pin the finished handshake while idle
		busyRunners.Add(-1)
		if t == nil {
			t = time.NewTimer(runnerIdle)
		} else {
			t.Reset(runnerIdle)
		}
		select {
		case f = <-idleRunners:
		case <-t.C:
			return
		}
	}
}
