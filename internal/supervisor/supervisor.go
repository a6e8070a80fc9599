// Package supervisor runs the long-lived parts of the service. A part that
// fails does not take the process down silently: it is logged, marks the
// service unready, and its error is returned when the group stops.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Part is one long-running component.
type Part struct {
	Name string
	Run  func(ctx context.Context) error
}

// Group runs parts until the context ends or one of them fails.
type Group struct {
	log    *slog.Logger
	mu     sync.Mutex
	failed error
}

// New returns an empty group.
func New(log *slog.Logger) *Group { return &Group{log: log} }

// Healthy returns the first failure, or nil while every part runs.
func (g *Group) Healthy() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failed
}

// Run starts every part and waits for all of them. A part returning before
// ctx ends is a failure: it is recorded (so readiness goes red) and the other
// parts are stopped, so the orchestrator restarts a clean process.
func (g *Group) Run(ctx context.Context, parts ...Part) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(parts))
	for i, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.Run(ctx)
			if ctx.Err() == nil {
				if err == nil {
					err = errors.New("stopped unexpectedly")
				}
				err = fmt.Errorf("%s: %w", p.Name, err)
				g.mu.Lock()
				if g.failed == nil {
					g.failed = err
				}
				g.mu.Unlock()
				g.log.Error("part failed; stopping the service", "part", p.Name, "error", err)
				errs[i] = err
				cancel()
				return
			}
			if err != nil && !errors.Is(err, context.Canceled) {
				errs[i] = fmt.Errorf("%s: %w", p.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
