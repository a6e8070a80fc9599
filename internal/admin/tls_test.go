package admin

import "crypto/tls"

// insecureLoopback trusts httptest's self-signed certificate: the rig's
// HTTPS server is on loopback.
func insecureLoopback() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } //nolint:gosec // loopback test server
