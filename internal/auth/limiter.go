package auth

import (
	"sync"
	"time"
)

// FailureLimiter counts failed authentications per client address in fixed
// windows and refuses an address that keeps failing until its window ends.
// Ingest (callback keys) and admin (bearer tokens) share the rule. Memory is
// bounded: when full, expired entries go first, then the map is reset (an
// attacker flooding addresses gains nothing but a reset of the counters).
type FailureLimiter struct {
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

// DefaultLimiterCapacity is how many addresses a FailureLimiter tracks
// unless told otherwise.
const DefaultLimiterCapacity = 100_000

// NewFailureLimiter refuses an address after max failures within window.
// It tracks up to capacity addresses (DefaultLimiterCapacity when <= 0);
// now is its clock (time.Now when nil), injectable for tests.
func NewFailureLimiter(max int, window time.Duration, capacity int, now func() time.Time) *FailureLimiter {
	if capacity <= 0 {
		capacity = DefaultLimiterCapacity
	}
	if now == nil {
		now = time.Now
	}
	return &FailureLimiter{max: max, window: window, entries: map[string]*failures{}, cap: capacity, now: now}
}

// Blocked reports whether ip is refused now, and for how long.
func (l *FailureLimiter) Blocked(ip string) (bool, time.Duration) {
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

// Fail records one failed attempt from ip.
func (l *FailureLimiter) Fail(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f, ok := l.entries[ip]
	if !ok || now.Sub(f.start) >= l.window {
		if len(l.entries) >= l.cap {
			l.evict(now)
		}
		l.entries[ip] = &failures{count: 1, start: now}
		return
	}
	f.count++
}

func (l *FailureLimiter) evict(now time.Time) {
	for ip, f := range l.entries {
		if now.Sub(f.start) >= l.window {
			delete(l.entries, ip)
		}
	}
	if len(l.entries) >= l.cap {
		l.entries = map[string]*failures{}
	}
}
