package admin

import (
	"sync"
	"time"
)

// failureLimiter counts failed admin authentications per client address in
// fixed windows and refuses an address that keeps failing until its window
// ends (the ingest limiter's rule). Memory is bounded: when full, expired
// entries go first, then everything.
type failureLimiter struct {
	mu      sync.Mutex
	max     int
	window  time.Duration
	entries map[string]*failures
	cap     int
	now     func() time.Time
}

type failures struct {
	count int
	start time.Time
}

func newFailureLimiter(max int, window time.Duration, now func() time.Time) *failureLimiter {
	return &failureLimiter{max: max, window: window, entries: map[string]*failures{}, cap: 10_000, now: now}
}

// blocked reports whether ip is refused now, and for how long.
func (l *failureLimiter) blocked(ip string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.entries[ip]
	if !ok {
		return false, 0
	}
	left := f.start.Add(l.window).Sub(l.now())
	if left <= 0 {
		delete(l.entries, ip)
		return false, 0
	}
	return f.count >= l.max, left
}

// fail records one failed attempt from ip.
func (l *failureLimiter) fail(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f, ok := l.entries[ip]
	if !ok || now.Sub(f.start) >= l.window {
		if len(l.entries) >= l.cap {
			for k, e := range l.entries {
				if now.Sub(e.start) >= l.window {
					delete(l.entries, k)
				}
			}
			if len(l.entries) >= l.cap {
				l.entries = map[string]*failures{}
			}
		}
		l.entries[ip] = &failures{count: 1, start: now}
		return
	}
	f.count++
}
