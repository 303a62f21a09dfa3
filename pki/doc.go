// Package pki owns nacd's trust anchors and revocation checking, and a minimal
// bootstrap CA for the embedded default.
//
// The RADIUS path calls TrustStore.VerifyClient (which satisfies
// radius.CertificateVerifier; pki does not import radius) to verify a device
// chain: it builds the chain against each configured anchor (parsed once,
// cached), requires the clientAuth EKU on the leaf, looks every non-root
// certificate of the verified chain up in the CRL of its issuer (an O(1) map
// lookup), and returns a policy.Identity with Anchor, AnchorIL3, Status and
// Revocation filled. CRLs come from files or http(s) URLs (DER or PEM),
// are refreshed on a timer (Start) and on demand (Refresh); the last good
// CRL is kept when a refresh fails, and an older CRL never replaces a newer
// one.
//
// Decisions worth knowing:
//   - clientAuth must be asserted explicitly: anyExtendedKeyUsage alone, or
//     no EKU extension, is CertWrongEKU (design section 3 profile).
//   - A CRL is used only after its signature verified with a CA certificate
//     from the anchor's CA files; so the issuer of every configured CRL
//     (e.g. an issuing intermediate) must be in those files. A CRL that does
//     not verify is refused at load, counted, and never used.
//   - Delta, indirect and reason-partitioned CRLs are refused: using them as
//     complete CRLs would miss revocations.
//   - Revocation.Checked is true only when a CRL covered every non-root
//     certificate of the chain (or one of them is revoked).
//
// pki must never accept a chain it could not verify (every failure is a
// non-ok Status), and must never report revocation as checked when it was
// not.
//
// The CA (ca.go, profile.go, inventory*.go, revocation.go, crlpublish.go,
// store*.go) is smallstep's embedded authority (authority.NewEmbedded) over
// a store that is bbolt in the data dir or a shared PostgreSQL, with nacd's
// own inventory (holder, device, facts, status, revocation) in the same
// backend. It issues device certificates in the design section 3 profile
// from Facts (never from the CSR), revokes by serial, device or holder,
// publishes a CRL signed by the intermediate, and keeps a RevocationSet in
// memory that the TrustStore consults for the CA's anchor
// (AnchorConfig.Revocations): a revocation rejects the next authentication
// on this node at once and on other nodes of the same PostgreSQL within
// RevocationPoll. Traps of the library are handled where they bite:
// validity is always set by nacd's profile modifier (an unset one gives an
// expired certificate), the provisioner is checked loaded and carries the
// lifetime claims, authority.Revoke is called with the certificate (never
// by serial alone), Close calls Shutdown, and CRL numbering across nodes is
// serialised by a PostgreSQL row lock. Bootstrap (the throwaway CA of the
// foundation) stays for configurations that do not open the CA;
// CA.Bootstrap is its replacement.
//
// The CA must never issue a certificate it has not recorded (the record is
// committed before the chain is returned) and never take a device's facts
// from its CSR.
package pki
