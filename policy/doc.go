// Package policy owns the PSN segregation rules: it turns the attributes of a
// verified device certificate and the site it connects from into a network
// segment (il3, general, guest, onboarding or reject) with a reason.
//
// What it owns:
//   - Identity: IdentityFromCertificate reads the attribute fields of a
//     device certificate (design section 3); the verifier (pki) fills in the
//     trust anchor, certificate status and revocation.
//   - Policy: sites (segment -> VLAN), the ordered rules, and
//     MaxRevocationAge. Validate runs once at load and refuses a policy that
//     could break an invariant of design section 4; Decide places one device.
//   - The stable names: segments, ownerships, roles, reason codes (Reasons)
//     and built-in rule names (BuiltinRules), with their parsers.
//
// policy is pure: no sockets, files, clocks, logging or globals; callers
// pass "now". It imports nothing of nacd's own. Decide is safe for
// concurrent use and does not allocate.
//
// policy must never place a device on il3 unless it is council-managed, holds
// il3 clearance, chains to a trust anchor marked il3, and its revocation status
// is known and fresh; in particular it must never place a personal device on
// il3. Decide enforces this whatever the configuration (Validate refuses such
// configurations too, and a final guard re-checks every il3 decision). When
// in doubt, not il3.
package policy
