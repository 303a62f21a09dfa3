package loadtest

import (
	"crypto/tls"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Error causes: the keys of Summary.ErrorCauses. Stable.
const (
	CauseBadResponseAuthenticator    = "bad_response_authenticator"
	CauseMissingMessageAuthenticator = "missing_message_authenticator"
	CauseBadMessageAuthenticator     = "bad_message_authenticator"
	CauseMPPEMissing                 = "mppe_keys_missing"
	CauseMPPEMalformed               = "mppe_keys_malformed"
	CauseMPPEMismatch                = "mppe_keys_mismatch"
	CauseMalformedReply              = "malformed_reply"
	CauseUnexpectedCode              = "unexpected_code"
	CauseMissingState                = "missing_state"
	CauseEAP                         = "eap_protocol"
	CauseAcceptWithoutSuccess        = "accept_without_eap_success"
	CauseTooManyRoundTrips           = "too_many_round_trips"
	CauseSocket                      = "socket"
	CauseInternal                    = "internal"
)

// NoVLAN is the VLANs key of accepts without Tunnel-Private-Group-Id.
const NoVLAN = "none"

// Summary is the outcome of a Run. Durations are in seconds and latencies in
// milliseconds in its JSON form.
type Summary struct {
	Server      string    `json:"server"`
	Mode        string    `json:"mode"` // "concurrency" (closed loop) or "rate" (open loop)
	Concurrency int       `json:"concurrency"`
	TargetRate  float64   `json:"target_rate,omitempty"`
	TLSVersion  string    `json:"tls_version"` // "1.2", "1.3" or "any"
	Started     time.Time `json:"started"`
	Elapsed     float64   `json:"elapsed_s"`

	Attempted int64 `json:"attempted"` // authentications started
	Completed int64 `json:"completed"` // accepts + rejects
	Accepts   int64 `json:"accepts"`   // verified Access-Accepts
	Rejects   int64 `json:"rejects"`
	Timeouts  int64 `json:"timeouts"` // no reply after every retransmission
	Errors    int64 `json:"errors"`   // see ErrorCauses
	Aborted   int64 `json:"aborted"`  // cut off by the end of the run
	// Skipped counts open-loop start slots that found Concurrency
	// authentications outstanding (the server is slower than Rate).
	Skipped      int64 `json:"skipped"`
	Retransmits  int64 `json:"retransmits"`
	StrayReplies int64 `json:"stray_replies"` // replies to an earlier request (after a retransmission), ignored

	AuthsPerSecond   float64 `json:"auths_per_second"`   // completed / elapsed
	AcceptsPerSecond float64 `json:"accepts_per_second"` // accepts / elapsed

	Latency           Latency `json:"latency"`    // whole exchange of each completed authentication
	RoundTrip         Latency `json:"round_trip"` // each request until its reply (from the first transmission)
	RoundTripsPerAuth float64 `json:"round_trips_per_auth"`

	VLANs         map[string]int64  `json:"vlans"`        // Tunnel-Private-Group-Id of accepts
	TLSVersions   map[string]int64  `json:"tls_versions"` // of accepts
	ErrorCauses   map[string]int64  `json:"error_causes"`
	ErrorExamples map[string]string `json:"error_examples"` // first error message per cause
	RejectCauses  map[string]int64  `json:"reject_causes"`  // TLS alert seen by the peer, or "eap-failure"
	// MessageAuthenticatorNotFirst counts replies whose Message-Authenticator
	// is valid but not the first attribute (BlastRADIUS hardening asks for
	// first; not an error).
	MessageAuthenticatorNotFirst int64             `json:"message_authenticator_not_first"`
	Identities                   []IdentitySummary `json:"identities"`

	// ServerSide is the server's own view of the run, with
	// Config.ServerMetrics; ServerSideError says why it is missing when
	// the second read failed.
	ServerSide      *ServerSide `json:"server_side,omitempty"`
	ServerSideError string      `json:"server_side_error,omitempty"`
}

// IdentitySummary is the outcome per identity (persona).
type IdentitySummary struct {
	Name    string           `json:"name"`
	Accepts int64            `json:"accepts"`
	Rejects int64            `json:"rejects"`
	Errors  int64            `json:"errors"`
	VLANs   map[string]int64 `json:"vlans"`
}

// OK reports whether the run completed at least one authentication and saw
// no error and no timeout (rejects and skipped open-loop slots are not
// failures of the server's correctness).
func (s *Summary) OK() bool {
	return s.Completed > 0 && s.Errors == 0 && s.Timeouts == 0
}

type outcomeKind int

const (
	outAccept outcomeKind = iota
	outReject
	outTimeout
	outError
	outAborted
)

type outcome struct {
	kind    outcomeKind
	cause   string // error cause or reject cause
	err     error
	vlan    string
	version uint16
	elapsed time.Duration
	rounds  int
}

type identityCounts struct {
	accepts, rejects, errors int64
	vlans                    map[string]int64
}

// collector gathers outcomes from the workers: atomic counters for the
// live progress line, maps under a mutex.
type collector struct {
	s     *settings
	start time.Time
	rr    atomic.Uint64

	started, accepts, rejects, timeouts, errors, aborted atomic.Int64
	skipped, retransmits, stray, maNotFirst, rounds      atomic.Int64

	mu           sync.Mutex
	vlans        map[string]int64
	versions     map[string]int64
	causes       map[string]int64
	examples     map[string]string
	rejectCauses map[string]int64
	perIdentity  []identityCounts
}

func newCollector(s *settings) *collector {
	c := &collector{
		s: s, vlans: map[string]int64{}, versions: map[string]int64{}, causes: map[string]int64{},
		examples: map[string]string{}, rejectCauses: map[string]int64{},
		perIdentity: make([]identityCounts, len(s.identities)),
	}
	for i := range c.perIdentity {
		c.perIdentity[i].vlans = map[string]int64{}
	}
	return c
}

func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	case 0:
		return "any"
	}
	return fmt.Sprintf("%#04x", v)
}

func (c *collector) record(id *identity, o outcome) {
	c.rounds.Add(int64(o.rounds))
	switch o.kind {
	case outAccept:
		c.accepts.Add(1)
	case outReject:
		c.rejects.Add(1)
	case outTimeout:
		c.timeouts.Add(1)
	case outError:
		c.errors.Add(1)
	case outAborted:
		c.aborted.Add(1)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	pi := &c.perIdentity[id.index]
	switch o.kind {
	case outAccept:
		vlan := o.vlan
		if vlan == "" {
			vlan = NoVLAN
		}
		c.vlans[vlan]++
		c.versions[versionName(o.version)]++
		pi.accepts++
		pi.vlans[vlan]++
	case outReject:
		c.rejectCauses[o.cause]++
		pi.rejects++
	case outError:
		c.causes[o.cause]++
		if _, ok := c.examples[o.cause]; !ok && o.err != nil {
			msg := o.err.Error()
			if len(msg) > 300 {
				msg = msg[:300] + "..."
			}
			c.examples[o.cause] = msg
		}
		pi.errors++
	}
}

func (c *collector) summary(elapsed time.Duration, workers []*worker) *Summary {
	var total, rtt histogram
	for _, w := range workers {
		total.merge(&w.total)
		rtt.merge(&w.rtt)
	}
	s := &Summary{
		Server: c.s.Server, Mode: "concurrency", Concurrency: c.s.Concurrency,
		TLSVersion: versionName(c.s.TLSVersion), Started: c.start.UTC(), Elapsed: elapsed.Seconds(),
		Attempted: c.started.Load(), Accepts: c.accepts.Load(), Rejects: c.rejects.Load(),
		Timeouts: c.timeouts.Load(), Errors: c.errors.Load(), Aborted: c.aborted.Load(),
		Skipped: c.skipped.Load(), Retransmits: c.retransmits.Load(), StrayReplies: c.stray.Load(),
		MessageAuthenticatorNotFirst: c.maNotFirst.Load(),
		Latency:                      total.latency(), RoundTrip: rtt.latency(),
	}
	if c.s.Rate > 0 {
		s.Mode, s.TargetRate = "rate", c.s.Rate
	}
	s.Completed = s.Accepts + s.Rejects
	if secs := elapsed.Seconds(); secs > 0 {
		s.AuthsPerSecond = float64(s.Completed) / secs
		s.AcceptsPerSecond = float64(s.Accepts) / secs
	}
	if ended := s.Completed + s.Timeouts + s.Errors; ended > 0 {
		s.RoundTripsPerAuth = float64(c.rounds.Load()) / float64(ended)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s.VLANs, s.TLSVersions, s.ErrorCauses, s.RejectCauses = cloneMap(c.vlans), cloneMap(c.versions), cloneMap(c.causes), cloneMap(c.rejectCauses)
	s.ErrorExamples = map[string]string{}
	for k, v := range c.examples {
		s.ErrorExamples[k] = v
	}
	for i, id := range c.s.identities {
		pi := c.perIdentity[i]
		s.Identities = append(s.Identities, IdentitySummary{Name: id.name, Accepts: pi.accepts, Rejects: pi.rejects, Errors: pi.errors, VLANs: cloneMap(pi.vlans)})
	}
	return s
}

func cloneMap(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// progress writes the live line every ProgressInterval until stop is
// closed, and a last line then, so that even a run shorter than one
// interval shows its final counts.
func (c *collector) progress(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(c.s.ProgressInterval)
	defer t.Stop()
	var last int64
	lastAt := c.start
	line := func(now time.Time, end string) {
		done := c.accepts.Load() + c.rejects.Load()
		rate := 0.0
		if d := now.Sub(lastAt).Seconds(); d > 0 {
			rate = float64(done-last) / d
		}
		last, lastAt = done, now
		if c.s.ProgressInPlace {
			fmt.Fprint(c.s.Progress, "\r")
		}
		fmt.Fprintf(c.s.Progress, "%6.1fs %8.1f auth/s  accepts %d  rejects %d  timeouts %d  errors %d  retransmits %d  skipped %d%s",
			now.Sub(c.start).Seconds(), rate, c.accepts.Load(), c.rejects.Load(), c.timeouts.Load(),
			c.errors.Load(), c.retransmits.Load(), c.skipped.Load(), end)
	}
	for {
		select {
		case <-stop:
			end := "\n"
			if c.s.ProgressInPlace {
				end = "\x1b[K\n"
			}
			line(time.Now(), end)
			return
		case now := <-t.C:
			end := "\n"
			if c.s.ProgressInPlace {
				end = "\x1b[K"
			}
			line(now, end)
		}
	}
}

// WriteText writes a human-readable report.
func (s *Summary) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "server %s, %s mode, concurrency %d", s.Server, s.Mode, s.Concurrency)
	if s.Mode == "rate" {
		fmt.Fprintf(&b, ", target %.1f/s", s.TargetRate)
	}
	fmt.Fprintf(&b, ", TLS %s, %.2f s\n", s.TLSVersion, s.Elapsed)
	fmt.Fprintf(&b, "authentications: %d started, %d completed: %.1f/s (%.1f accepts/s)\n", s.Attempted, s.Completed, s.AuthsPerSecond, s.AcceptsPerSecond)
	fmt.Fprintf(&b, "  accepts %d (verified)  rejects %d  timeouts %d  errors %d  aborted %d  skipped %d\n", s.Accepts, s.Rejects, s.Timeouts, s.Errors, s.Aborted, s.Skipped)
	fmt.Fprintf(&b, "  retransmits %d  stray replies %d  round trips/auth %.1f\n", s.Retransmits, s.StrayReplies, s.RoundTripsPerAuth)
	lat := func(name string, l Latency) {
		fmt.Fprintf(&b, "%-10s p50 %7.2f ms  p90 %7.2f ms  p99 %7.2f ms  max %7.2f ms  (n=%d)\n", name, l.P50, l.P90, l.P99, l.Max, l.Count)
	}
	lat("latency", s.Latency)
	lat("round trip", s.RoundTrip)
	if ss := s.ServerSide; ss != nil {
		more := ""
		if ss.AboveLastBucket {
			more = " (a quantile is beyond the last bucket: a lower bound)"
		}
		fmt.Fprintf(&b, "server     p50 %7.2f ms  p90 %7.2f ms  p99 %7.2f ms  mean %6.2f ms per Access-Request (n=%d, from its metrics)%s\n",
			ss.RequestP50, ss.RequestP90, ss.RequestP99, ss.RequestMean, ss.Requests, more)
		if ss.CPUSeconds > 0 {
			fmt.Fprintf(&b, "server CPU %.2f s: %.3f ms per authentication\n", ss.CPUSeconds, ss.CPUPerAuth)
		}
	}
	if s.ServerSideError != "" {
		fmt.Fprintf(&b, "server     metrics not read after the run: %s\n", s.ServerSideError)
	}
	writeMap(&b, "VLANs", s.VLANs)
	writeMap(&b, "TLS", s.TLSVersions)
	writeMap(&b, "rejects", s.RejectCauses)
	writeMap(&b, "errors", s.ErrorCauses)
	for _, k := range sortedKeys(s.ErrorCauses) {
		if ex := s.ErrorExamples[k]; ex != "" {
			fmt.Fprintf(&b, "  %s: e.g. %s\n", k, ex)
		}
	}
	if s.MessageAuthenticatorNotFirst > 0 {
		fmt.Fprintf(&b, "note: %d replies had Message-Authenticator but not as the first attribute\n", s.MessageAuthenticatorNotFirst)
	}
	if len(s.Identities) > 1 {
		for _, id := range s.Identities {
			fmt.Fprintf(&b, "  identity %-24s accepts %d rejects %d errors %d", id.Name, id.Accepts, id.Rejects, id.Errors)
			for _, k := range sortedKeys(id.VLANs) {
				fmt.Fprintf(&b, " vlan %s: %d", k, id.VLANs[k])
			}
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeMap(b *strings.Builder, name string, m map[string]int64) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(b, "%-10s", name)
	for _, k := range sortedKeys(m) {
		fmt.Fprintf(b, " %s: %d", k, m[k])
	}
	b.WriteString("\n")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
