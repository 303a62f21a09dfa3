package policy

import "time"

// GuardIL3 exposes the final il3 re-check to the tests, which must be able to
// prove it refuses a bad il3 decision that Decide itself would never build.
func GuardIL3(d Decision, id Identity, site *Site, maxAge time.Duration) Decision {
	return guardIL3(d, &id, site, maxAge)
}
