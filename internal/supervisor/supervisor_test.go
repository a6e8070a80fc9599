package supervisor

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestFailedPartStopsOthersAndTurnsUnhealthy(t *testing.T) {
	g := New(slog.New(slog.DiscardHandler))
	stopped := make(chan struct{})
	err := g.Run(t.Context(),
		Part{Name: "long", Run: func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil }},
		Part{Name: "broken", Run: func(ctx context.Context) error { return errors.New("boom") }},
	)
	<-stopped
	if err == nil || !strings.Contains(err.Error(), "broken: boom") {
		t.Errorf("run error = %v", err)
	}
	if h := g.Healthy(); h == nil || !strings.Contains(h.Error(), "broken") {
		t.Errorf("healthy = %v", h)
	}
}

func TestCancelStopsCleanly(t *testing.T) {
	g := New(slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := g.Run(ctx, Part{Name: "p", Run: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }})
	if err != nil || g.Healthy() != nil {
		t.Errorf("clean stop returned %v / %v", err, g.Healthy())
	}
}
