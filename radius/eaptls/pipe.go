package eaptls

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// pipe is the in-memory net.Conn between an EAP conversation and a crypto/tls
// handshake running in its own goroutine. The hand-off is strictly
// synchronous, so at any moment exactly one side runs:
//
//   - exchange gives the TLS goroutine one reassembled TLS message and blocks
//     until the goroutine either asks for more input (Read with nothing left:
//     its flight is complete) or exits (handshake finished or failed);
//   - the bytes crypto/tls wrote meanwhile are then taken with take.
//
// The goroutine starts lazily on the first exchange, so a conversation
// abandoned after the EAP-TLS Start costs no goroutine, and close always
// releases it: a blocked Read returns net.ErrClosed and close waits for the
// goroutine to exit.
type pipe struct {
	in      chan []byte   // exchange -> Read
	yield   chan struct{} // Read -> exchange: flight complete, need input
	done    chan struct{} // closed when the goroutine exits
	closing chan struct{} // closed by close
	started bool
	closed  bool
	stop    sync.Once

	// Touched only by the TLS goroutine while it runs, read by the other
	// side after done (the channel operations order the accesses).
	pending []byte

	mu   sync.Mutex
	out  []byte
	shut bool
}

func newPipe() *pipe {
	return &pipe{
		in:      make(chan []byte),
		yield:   make(chan struct{}),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
	}
}

// exchange feeds msg to the TLS side, starting run in a goroutine on first
// use, and waits until it needs more input (finished=false) or has exited
// (finished=true).
func (p *pipe) exchange(msg []byte, run func()) (finished bool) {
	if p.closed {
		return true
	}
	if !p.started {
		p.started = true
		p.pending = msg
		goHandshake(func() {
			defer close(p.done)
			run()
		})
	} else {
		select {
		case p.in <- msg:
		case <-p.done:
			return true
		}
	}
	select {
	case <-p.yield:
		return false
	case <-p.done:
		return true
	}
}

// leftover reports how many fed bytes the TLS side never read. Call only
// after the goroutine finished.
func (p *pipe) leftover() int { return len(p.pending) }

// take returns and clears what the TLS side wrote.
func (p *pipe) take() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.out
	p.out = nil
	return b
}

// close releases the goroutine (if any) and waits for it. Idempotent.
func (p *pipe) close() {
	if p.closed {
		return
	}
	p.closed = true
	p.mu.Lock()
	p.shut = true
	p.out = nil
	p.mu.Unlock()
	p.abandon()
	if p.started {
		<-p.done
	}
	p.pending = nil
}

// abandon unblocks the goroutine without waiting for it: the cleanup of an
// unreachable Session calls it.
func (p *pipe) abandon() { p.stop.Do(func() { close(p.closing) }) }

// Read implements net.Conn for crypto/tls.
func (p *pipe) Read(b []byte) (int, error) {
	for len(p.pending) == 0 {
		p.pending = nil
		select {
		case p.yield <- struct{}{}:
		case <-p.closing:
			return 0, net.ErrClosed
		}
		select {
		case p.pending = <-p.in:
		case <-p.closing:
			return 0, net.ErrClosed
		}
	}
	n := copy(b, p.pending)
	p.pending = p.pending[n:]
	if len(p.pending) == 0 {
		p.pending = nil // do not pin the message buffer
	}
	return n, nil
}

// Write implements net.Conn for crypto/tls: it only buffers.
func (p *pipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut {
		return 0, net.ErrClosed
	}
	p.out = append(p.out, b...)
	return len(b), nil
}

// Close implements net.Conn; the pipe's life is managed by close.
func (p *pipe) Close() error                     { return nil }
func (p *pipe) LocalAddr() net.Addr              { return pipeAddr{} }
func (p *pipe) RemoteAddr() net.Addr             { return pipeAddr{} }
func (p *pipe) SetDeadline(time.Time) error      { return nil }
func (p *pipe) SetReadDeadline(time.Time) error  { return nil }
func (p *pipe) SetWriteDeadline(time.Time) error { return nil }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "eap" }
func (pipeAddr) String() string  { return "eap" }

var _ net.Conn = (*pipe)(nil)

// tlsVersionName is for error messages.
func tlsVersionName(v uint16) string {
	if v == 0 {
		return "none"
	}
	return tls.VersionName(v)
}
