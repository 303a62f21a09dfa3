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

// maxIdleRunners bounds the runners waiting for work: a runner that
// finishes while that many wait exits at once. After a flood of half-open
// conversations (each holds a running handshake until it is evicted) the
// runners do not keep the flood's stacks for runnerIdle: at most this many
// stay, about 32 MiB of stacks. A busy server has a few dozen handshakes
// running at once (2,500 authentications/s x ~20 ms).
const maxIdleRunners = 1024

var (
	// idleRunners hands a handshake to a runner waiting in idle; unbuffered,
	// so a send succeeds only when one is waiting.
	idleRunners = make(chan func())
	// busyRunners counts runners running a handshake (tests use it to find
	// leaked handshakes; it is not the number of goroutines).
	busyRunners atomic.Int64
	// runners counts runner goroutines, busy or idle; idle those waiting
	// for work.
	runners atomic.Int64
	idle    atomic.Int64
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
		if idle.Add(1) > maxIdleRunners {
			idle.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(runnerIdle)
		} else {
			t.Reset(runnerIdle)
		}
		select {
		case f = <-idleRunners:
			idle.Add(-1)
		case <-t.C:
			idle.Add(-1)
			return
		}
	}
}
