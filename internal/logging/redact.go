// Package logging builds the service's slog logger behind a redacting
// handler: no callback key, Authorization header, token or secret may ever
// reach a log line, whoever logs it.
package logging

import (
	"context"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
)

// Redacted replaces anything removed from a log line.
const Redacted = "[REDACTED]"

// Sensitive attribute keys: their values are dropped whatever they contain.
var sensitiveKey = regexp.MustCompile(`(?i)(authorization|password|passwd|secret|token|api_?key|callback_?key|cookie|verifier|credential|^key$|_key$)`)

// Values that look like credentials wherever they appear.
var sensitiveValue = []*regexp.Regexp{
	regexp.MustCompile(`(?i)\b(basic|bearer)\s+[^\s"',;]+`),
	regexp.MustCompile(`\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._\-]+`), // Salesforce access token
	regexp.MustCompile(`\b5Aep[A-Za-z0-9._\-]{20,}`),               // Salesforce refresh token
	regexp.MustCompile(`(?i)((?:access_token|refresh_token|client_secret|code_verifier|code|token|secret|password)=)[^&\s"']+`),
}

// Secrets is a set of exact strings (configured keys and tokens) to scrub
// from every log line. It may grow at run time (a new token after rotation).
type Secrets struct {
	mu   sync.RWMutex
	list []string
}

// Add registers values to scrub; values shorter than 6 bytes are ignored
// because scrubbing them would mangle ordinary words.
func (s *Secrets) Add(values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range values {
		if len(v) >= 6 {
			s.list = append(s.list, v)
		}
	}
}

func (s *Secrets) scrub(v string) string {
	if s == nil {
		return v
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, secret := range s.list {
		if strings.Contains(v, secret) {
			v = strings.ReplaceAll(v, secret, Redacted)
		}
	}
	return v
}

// mayHoldCredential is a cheap test that no credential pattern can match v,
// so most values skip the regular expressions.
func mayHoldCredential(v string) bool {
	if strings.ContainsAny(v, "=!") || strings.Contains(v, "5Aep") {
		return true
	}
	for i := 0; i+5 <= len(v); i++ {
		switch v[i] | 0x20 {
		case 'b':
			if w := strings.ToLower(v[i:min(i+6, len(v))]); strings.HasPrefix(w, "basic") || strings.HasPrefix(w, "bearer") {
				return true
			}
		}
	}
	return false
}

// Scrub removes credentials from a string (exported for error texts shown
// on pages).
func (s *Secrets) Scrub(v string) string {
	v = s.scrub(v)
	if !mayHoldCredential(v) {
		return v
	}
	for _, re := range sensitiveValue {
		v = re.ReplaceAllStringFunc(v, func(m string) string {
			if sub := re.FindStringSubmatch(m); len(sub) > 1 && strings.HasSuffix(sub[1], "=") {
				return sub[1] + Redacted
			}
			if i := strings.IndexAny(m, " \t"); i > 0 {
				return m[:i+1] + Redacted
			}
			return Redacted
		})
	}
	return v
}

// Handler wraps another handler and redacts every attribute.
type Handler struct {
	next    slog.Handler
	secrets *Secrets
}

// NewHandler redacts attributes before passing records to next.
func NewHandler(next slog.Handler, secrets *Secrets) *Handler {
	return &Handler{next: next, secrets: secrets}
}

func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, h.secrets.Scrub(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.redact(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = h.redact(a)
	}
	return &Handler{next: h.next.WithAttrs(red), secrets: h.secrets}
}

func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), secrets: h.secrets}
}

// keyVerdicts caches whether an attribute key is sensitive: keys are few
// and repeat on every line.
var keyVerdicts sync.Map

func sensitive(key string) bool {
	if v, ok := keyVerdicts.Load(key); ok {
		return v.(bool)
	}
	lower := strings.ToLower(key)
	v := sensitiveKey.MatchString(key) && !strings.HasSuffix(lower, "event_key") && !strings.HasSuffix(lower, "document_key")
	keyVerdicts.Store(key, v)
	return v
}

func (h *Handler) redact(a slog.Attr) slog.Attr {
	if sensitive(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		attrs := v.Group()
		red := make([]any, len(attrs))
		for i, ga := range attrs {
			red[i] = h.redact(ga)
		}
		return slog.Group(a.Key, red...)
	case slog.KindString:
		return slog.String(a.Key, h.secrets.Scrub(v.String()))
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, h.secrets.Scrub(err.Error()))
		}
		return slog.String(a.Key, h.secrets.Scrub(v.String()))
	default:
		return slog.Attr{Key: a.Key, Value: v}
	}
}

// Format of the log output.
type Format string

const (
	JSON Format = "json"
	Text Format = "text"
)

// New returns a redacting logger writing to w.
func New(w io.Writer, format Format, level slog.Leveler, secrets *Secrets) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == Text {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(NewHandler(h, secrets))
}
