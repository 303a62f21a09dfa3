package main

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"

	"go.uber.org/zap"
)

// nacd's garbage-collector settings. nacd's live heap is small (a few MB at
// the 8:55 rush: the in-flight conversations and the caches) but it
// allocates about 90 KB per EAP-TLS authentication, most of it inside
// crypto/tls. With Go's default GOGC=100 the heap goal sits at the 4 MB
// minimum and the collector runs about 15 times a second at 800
// authentications/s, about 10 % of the server's CPU (docs/performance.md).
// GOGC=400 makes a collection four times rarer for a heap of tens of MB.
//
// The cost is memory when the live heap is large: a conversation flood
// fills the table (limits.max_conversations, about 27 KiB each), and with
// GOGC=400 the heap could then grow to five times that. So a soft memory
// limit caps it at what GOGC=100 would use at the full table: twice the
// table's worth plus 256 MiB (4.25 GiB for the default 65,536). Above the
// limit the collector simply runs more often.
//
// Go's own environment variables win: with GOGC set (systemd
// Environment=, the container's env) nacd changes neither setting, and with
// GOMEMLIMIT set it leaves the limit alone.
const (
	defaultGCPercent = 400
	// bytesPerConversation is a generous bound of one in-flight EAP-TLS
	// conversation's heap (measured: 18.6 KB + 8 KB stack).
	bytesPerConversation = 32 << 10
	memoryLimitBase      = 256 << 20
)

// gcPlan is what applyGCSettings will do.
type gcPlan struct {
	percent     int   // -1: leave as is
	memoryLimit int64 // -1: leave as is
}

func planGC(getenv func(string) string, maxConversations int) gcPlan {
	p := gcPlan{percent: -1, memoryLimit: -1}
	if getenv("GOGC") == "" {
		p.percent = defaultGCPercent
	}
	if getenv("GOMEMLIMIT") == "" && p.percent != -1 {
		n := int64(max(maxConversations, 0))
		if n > (math.MaxInt64-memoryLimitBase)/(2*bytesPerConversation) {
			p.memoryLimit = math.MaxInt64
		} else {
			p.memoryLimit = 2*n*bytesPerConversation + memoryLimitBase
		}
	}
	return p
}

// applyGCSettings applies planGC to the runtime and logs what it did.
func applyGCSettings(logger *zap.Logger, maxConversations int) {
	p := planGC(os.Getenv, maxConversations)
	fields := []zap.Field{zap.String("GOGC", os.Getenv("GOGC")), zap.String("GOMEMLIMIT", os.Getenv("GOMEMLIMIT"))}
	if p.percent != -1 {
		debug.SetGCPercent(p.percent)
		fields = append(fields, zap.Int("gc_percent", p.percent))
	}
	if p.memoryLimit != -1 {
		debug.SetMemoryLimit(p.memoryLimit)
		fields = append(fields, zap.String("memory_limit", formatMiB(p.memoryLimit)))
	}
	logger.Info("garbage collector", fields...)
}

func formatMiB(b int64) string {
	if b == math.MaxInt64 {
		return "none"
	}
	return strconv.FormatInt(b>>20, 10) + " MiB"
}
