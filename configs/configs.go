// Package configs holds nacd's example configuration. The example is also
// the built-in default configuration (internal/config.Builtin), so the
// documented defaults and the running defaults cannot drift apart.
package configs

import _ "embed"

// Example is configs/nacd.example.yaml.
//
//go:embed nacd.example.yaml
var Example []byte
