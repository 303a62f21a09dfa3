package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

func goVersion() string { return runtime.Version() }

// versionString is what `nacd version` prints.
func versionString() string {
	s := fmt.Sprintf("nacd %s (%s, %s/%s)", version, goVersion(), runtime.GOOS, runtime.GOARCH)
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range bi.Settings {
			if kv.Key == "vcs.revision" {
				s += " revision " + kv.Value
			}
		}
	}
	return s
}
