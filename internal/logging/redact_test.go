package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestRedactingHandlerRemovesSecrets(t *testing.T) {
	var buf bytes.Buffer
	secrets := &Secrets{}
	secrets.Add("fake-callback-key-123", "fake-admin-token-xyz")
	log := New(&buf, JSON, slog.LevelDebug, secrets)

	log.Info("got header Basic fake-callback-key-123", "authorization", "Basic fake-callback-key-123")
	log.Info("oauth", "url", "https://x/token?code=fake-code-value&state=s", "body", "refresh_token=5Aep861fakeFAKEfakeFAKEfake&client_secret=fake-cs")
	log.With("api_key", "fake-onespan-key").Warn("w", "err", errors.New("bearer 00D000000000001!AQfakeAccessToken refused"))
	log.Info("g", slog.Group("req", slog.String("Cookie", "cs_session=fake"), slog.String("msg", "uses fake-admin-token-xyz")))
	log.Info("event accepted", "event_key", "abc123", "tenant", "acme")

	out := buf.String()
	for _, leaked := range []string{"fake-callback-key-123", "fake-code-value", "5Aep861fake", "fake-cs", "fake-onespan-key",
		"00D000000000001!AQfakeAccessToken", "cs_session=fake", "fake-admin-token-xyz"} {
		if strings.Contains(out, leaked) {
			t.Errorf("log output leaks %q:\n%s", leaked, out)
		}
	}
	for _, kept := range []string{`"event_key":"abc123"`, `"tenant":"acme"`, "state=s"} {
		if !strings.Contains(out, kept) {
			t.Errorf("log output lost %q:\n%s", kept, out)
		}
	}
}
