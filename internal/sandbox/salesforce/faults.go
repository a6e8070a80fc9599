package salesforce

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"
)

// FaultKind is one way a REST call fails. Every kind except the Commit* ones
// fails before anything is written.
type FaultKind string

const (
	// FaultUnavailable answers 503 SERVER_UNAVAILABLE.
	FaultUnavailable FaultKind = "unavailable"
	// FaultLockRow answers 400 UNABLE_TO_LOCK_ROW; collection calls answer 200
	// with every record failing that way (nothing committed).
	FaultLockRow FaultKind = "unable_to_lock_row"
	// FaultLockSomeRecords makes about half the records of a collection call fail
	// with UNABLE_TO_LOCK_ROW while the others commit; other calls: FaultLockRow.
	FaultLockSomeRecords FaultKind = "lock_some_records"
	// FaultTimeout holds the request until the client gives up, Faults.Hold
	// passes or the server closes, then drops the connection without an answer.
	FaultTimeout FaultKind = "timeout"
	// FaultInvalidSession answers 401 INVALID_SESSION_ID (token killed server-side).
	FaultInvalidSession FaultKind = "invalid_session"
	// FaultConcurrentLimit answers 403 REQUEST_LIMIT_EXCEEDED (ConcurrentRequests).
	FaultConcurrentLimit FaultKind = "concurrent_limit"
	// FaultServerError answers 500 UNKNOWN_EXCEPTION.
	FaultServerError FaultKind = "server_error"
	// FaultCommitThenUnavailable applies the write, then answers 503: proves the
	// client's retry is idempotent.
	FaultCommitThenUnavailable FaultKind = "commit_then_unavailable"
	// FaultCommitThenReset applies the write, then drops the connection.
	FaultCommitThenReset FaultKind = "commit_then_reset"
)

// DefaultFaultKinds is the mix used when Faults.Kinds is empty.
var DefaultFaultKinds = []FaultKind{FaultUnavailable, FaultLockRow, FaultTimeout, FaultInvalidSession}

// DefaultFaultHold is how long FaultTimeout holds a request at most.
const DefaultFaultHold = 5 * time.Second

// Faults configure random failures of REST calls (not the OAuth endpoints).
type Faults struct {
	// Rate is the fraction (0..1) of REST calls that fail.
	Rate float64
	// Kinds are picked uniformly (seeded by Options.Seed); empty: DefaultFaultKinds.
	Kinds []FaultKind
	// Operations limits random faults to these operations; empty means all.
	// See Calls for the names.
	Operations []string
	// Latency is added to every REST call before it is served.
	Latency time.Duration
	// Hold bounds FaultTimeout (default DefaultFaultHold).
	Hold time.Duration
}

type queuedFault struct {
	op   string
	kind FaultKind
}

type faultState struct {
	cfg        Faults
	rng        *rand.Rand
	queue      []queuedFault
	tokenQueue []FaultKind
	injected   map[FaultKind]int
}

func (f *faultState) init(seed uint64) {
	f.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	f.injected = map[FaultKind]int{}
}

// decide picks the fault for one call (caller holds s.mu).
func (f *faultState) decide(op string) (FaultKind, time.Duration, time.Duration) {
	hold := f.cfg.Hold
	if hold <= 0 {
		hold = DefaultFaultHold
	}
	for i, q := range f.queue {
		if q.op == "" || q.op == op {
			f.queue = slices.Delete(f.queue, i, i+1)
			f.injected[q.kind]++
			return q.kind, f.cfg.Latency, hold
		}
	}
	if f.cfg.Rate <= 0 || (len(f.cfg.Operations) > 0 && !slices.Contains(f.cfg.Operations, op)) {
		return "", f.cfg.Latency, hold
	}
	if f.rng.Float64() >= f.cfg.Rate {
		return "", f.cfg.Latency, hold
	}
	kinds := f.cfg.Kinds
	if len(kinds) == 0 {
		kinds = DefaultFaultKinds
	}
	k := kinds[f.rng.IntN(len(kinds))]
	f.injected[k]++
	return k, f.cfg.Latency, hold
}

// wait sleeps d unless the client or the server goes away first.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.done:
		return false
	}
}

type faultCtxKey struct{}

func (s *Server) serveWithFault(w http.ResponseWriter, r *http.Request, c *restCall, kind FaultKind, hold time.Duration) {
	collection := c.op == "collection_upsert" || c.op == "collection_create"
	switch kind {
	case "":
		c.handle(w, r, c)
	case FaultUnavailable:
		writeErrors(w, http.StatusServiceUnavailable, apiError{Message: "The server is temporarily unavailable. Please try again later.", ErrorCode: "SERVER_UNAVAILABLE"})
	case FaultServerError:
		writeErrors(w, http.StatusInternalServerError, apiError{Message: "An unexpected error occurred. Please include this ErrorId if you contact support: 1785305813-4242 (-1189432112)", ErrorCode: "UNKNOWN_EXCEPTION"})
	case FaultInvalidSession:
		writeErrors(w, http.StatusUnauthorized, apiError{Message: "Session expired or invalid", ErrorCode: "INVALID_SESSION_ID"})
	case FaultConcurrentLimit:
		writeErrors(w, http.StatusForbidden, apiError{Message: "ConcurrentRequests (Concurrent API Requests) Limit exceeded.", ErrorCode: "REQUEST_LIMIT_EXCEEDED"})
	case FaultLockRow, FaultLockSomeRecords:
		if !collection {
			writeErrors(w, http.StatusBadRequest, apiError{Message: "unable to obtain exclusive access to this record", ErrorCode: "UNABLE_TO_LOCK_ROW"})
			return
		}
		// Collections report locks per record inside a 200.
		c.handle(w, r.WithContext(context.WithValue(r.Context(), faultCtxKey{}, kind)), c)
	case FaultTimeout:
		t := time.NewTimer(hold)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		case <-s.done:
		}
		panic(http.ErrAbortHandler)
	case FaultCommitThenUnavailable, FaultCommitThenReset:
		c.handle(&discardWriter{h: http.Header{}}, r, c)
		if kind == FaultCommitThenReset {
			panic(http.ErrAbortHandler)
		}
		writeErrors(w, http.StatusServiceUnavailable, apiError{Message: "The server is temporarily unavailable. Please try again later.", ErrorCode: "SERVER_UNAVAILABLE"})
	default:
		c.handle(w, r, c)
	}
}

// serveToken applies a queued token-endpoint fault, if any, around handleToken.
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	var kind FaultKind
	if len(s.faults.tokenQueue) > 0 {
		kind = s.faults.tokenQueue[0]
		s.faults.tokenQueue = s.faults.tokenQueue[1:]
		s.faults.injected[kind]++
	}
	hold := s.faults.cfg.Hold
	s.mu.Unlock()
	if hold <= 0 {
		hold = DefaultFaultHold
	}
	count := func() {
		_ = r.ParseForm()
		s.mu.Lock()
		s.oauth.calls[r.PostForm.Get("grant_type")]++
		s.mu.Unlock()
	}
	switch kind {
	case "":
		s.handleToken(w, r)
	case FaultCommitThenUnavailable, FaultCommitThenReset:
		// The grant is applied (code burned, refresh token rotated) but the
		// client never learns the new tokens.
		s.handleToken(&discardWriter{h: http.Header{}}, r)
		if kind == FaultCommitThenReset {
			panic(http.ErrAbortHandler)
		}
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
	case FaultTimeout:
		count()
		t := time.NewTimer(hold)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		case <-s.done:
		}
		panic(http.ErrAbortHandler)
	case FaultServerError:
		count()
		writeTokenError(w, http.StatusInternalServerError, "server_error", "internal server error")
	default:
		count()
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
	}
}

// lockedRecords decides which records of a collection call fail with
// UNABLE_TO_LOCK_ROW under a lock fault (caller holds s.mu).
func (s *Server) lockedRecords(r *http.Request, n int) []bool {
	kind, _ := r.Context().Value(faultCtxKey{}).(FaultKind)
	if kind == "" {
		return nil
	}
	out := make([]bool, n)
	for i := range out {
		out[i] = kind == FaultLockRow || s.faults.rng.IntN(2) == 0
	}
	return out
}

var errLockRow = &recordError{Code: "UNABLE_TO_LOCK_ROW", Message: "unable to obtain exclusive access to this record", Fields: []string{}}

// discardWriter swallows the real answer of a commit-then-fail call.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// --- knobs ---

// SetFaults replaces the random fault configuration.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.cfg = f
}

// FailNext queues faults for the next REST calls of operation op ("" = any
// operation), one call per kind, in order. Queued faults ignore Rate.
func (s *Server) FailNext(op string, kinds ...FaultKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range kinds {
		s.faults.queue = append(s.faults.queue, queuedFault{op: op, kind: k})
	}
}

// FailNextToken queues faults for the next token-endpoint calls, one call per
// kind: FaultUnavailable (503), FaultServerError (500 server_error),
// FaultTimeout, and the Commit* kinds, which apply the exchange or refresh
// (burning the code, rotating the refresh token) and then fail.
func (s *Server) FailNextToken(kinds ...FaultKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.tokenQueue = append(s.faults.tokenQueue, kinds...)
}

// ClearFaults removes random and queued faults and added latency.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.cfg = Faults{}
	s.faults.queue = nil
	s.faults.tokenQueue = nil
}

// FaultsInjected counts injected faults by kind.
func (s *Server) FaultsInjected() map[FaultKind]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[FaultKind]int, len(s.faults.injected))
	for k, v := range s.faults.injected {
		out[k] = v
	}
	return out
}
