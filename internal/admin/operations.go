package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/reconcile"
	"github.com/countersign/countersign/internal/replay"
)

// Reconciler runs one reconciliation pass (reconcile.Reconciler).
type Reconciler interface {
	RunOnce(ctx context.Context, tenant string, since time.Duration) (reconcile.Result, error)
}

// Outcomes an event search accepts (the worker's settle decisions).
var outcomes = []string{history.Delivered, history.Retried, history.DeadLettered, history.Paused}

// Replay sources, as the API and the page name them.
var replaySources = []string{replay.SourceHistory, replay.SourceDeadLetters}

// Long operations (replay, purge, reconcile) may outlive the server's write
// timeout: the handler extends its own deadline up to this bound.
const longOperation = 15 * time.Minute

func (a *Admin) registerOperations(g *echo.Group) {
	g.GET("/tenants/:tenant/events", a.apiEvents)
	g.GET("/tenants/:tenant/events/:key", a.apiEvent)
	g.GET("/tenants/:tenant/packages/:package", a.apiPackage)
	g.GET("/tenants/:tenant/deadletters", a.apiDeadLetters)
	g.POST("/tenants/:tenant/deadletters/purge", a.apiPurge)
	g.POST("/tenants/:tenant/replay", a.apiReplay)
	g.POST("/tenants/:tenant/reconcile", a.apiReconcile)
}

// EventQuery is what an events search or a dead-letter listing accepts, as
// query parameters: package, event, outcome, source, from, to (RFC 3339, or
// YYYY-MM-DDTHH:MM in UTC), since (a duration back from now), cursor, limit.
type EventQuery struct {
	PackageID string
	Event     string
	Outcome   string
	Source    string
	From, To  time.Time
	Cursor    string
	Limit     int
}

// badRequest is a request the caller must fix (400).
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{msg: fmt.Sprintf(format, args...)} }

// parseTime accepts RFC 3339 and the forms an HTML datetime-local or date
// input sends (read as UTC).
func parseTime(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, badf("%s: %q is not a time (use RFC 3339, e.g. 2026-01-02T15:04:05Z)", field, s)
}

// parseSince reads a look-back such as 48h, 90m or 7d.
func parseSince(field, s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, badf("%s: %q is not a positive duration (e.g. 48h, 90m, 7d)", field, s)
	}
	return d, nil
}

// readQuery reads an EventQuery from URL values (API and page alike).
func (a *Admin) readQuery(v url.Values) (EventQuery, error) {
	q := EventQuery{
		PackageID: strings.TrimSpace(v.Get("package")),
		Event:     strings.TrimSpace(v.Get("event")),
		Outcome:   strings.TrimSpace(v.Get("outcome")),
		Source:    strings.TrimSpace(v.Get("source")),
		Cursor:    v.Get("cursor"),
	}
	var err error
	if q.From, err = parseTime("from", v.Get("from")); err != nil {
		return q, err
	}
	if q.To, err = parseTime("to", v.Get("to")); err != nil {
		return q, err
	}
	since, err := parseSince("since", v.Get("since"))
	if err != nil {
		return q, err
	}
	if since > 0 {
		if !q.From.IsZero() {
			return q, badf("since and from: give one of them")
		}
		q.From = a.now().Add(-since).UTC()
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.To.Before(q.From) {
		return q, badf("to is before from")
	}
	if q.Outcome != "" && !slices.Contains(outcomes, q.Outcome) {
		return q, badf("outcome must be one of %s", strings.Join(outcomes, ", "))
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return q, badf("limit must be 1 to 1000")
		}
		q.Limit = n
	}
	return q, nil
}

// operationError answers err: 400 for a request to fix, 404 for what is not
// there, 503 otherwise (NATS unavailable or slow).
func (a *Admin) operationError(c echo.Context, err error) error {
	var bad *badRequest
	switch {
	case errors.As(err, &bad):
		return jsonError(c, http.StatusBadRequest, bad.msg)
	case errors.Is(err, history.ErrNotFound):
		return jsonError(c, http.StatusNotFound, err.Error())
	}
	return a.internal(c, err)
}

// knownTenant answers 404 for an unconfigured tenant, and 503 when the
// routes' parts are not wired in this process.
func (a *Admin) knownTenant(c echo.Context, need ...any) (string, bool, error) {
	id := c.Param("tenant")
	if a.source(id) == nil {
		return id, false, unknownTenant(c, id)
	}
	for _, n := range need {
		if n == nil || n == (*history.Store)(nil) || n == (*replay.Replayer)(nil) {
			return id, false, jsonError(c, http.StatusServiceUnavailable, "this listener does not serve delivery history, replay and reconciliation")
		}
	}
	return id, true, nil
}

func (a *Admin) apiEvents(c echo.Context) error {
	return answerPage(a, c, a.o.History, a.events)
}

// answerPage answers a list route: the tenant (with the part it needs), its
// query, then one page of list.
func answerPage[P any](a *Admin, c echo.Context, need any, list func(context.Context, string, EventQuery) (P, error)) error {
	tenant, ok, err := a.knownTenant(c, need)
	if !ok {
		return err
	}
	q, err := a.readQuery(c.QueryParams())
	if err != nil {
		return a.operationError(c, err)
	}
	page, err := list(c.Request().Context(), tenant, q)
	if err != nil {
		return a.operationError(c, err)
	}
	return c.JSON(http.StatusOK, page)
}

func (a *Admin) events(ctx context.Context, tenant string, q EventQuery) (history.EventPage, error) {
	if q.Source != "" && !slices.Contains([]string{"callback", "reconcile", "replay"}, q.Source) {
		return history.EventPage{}, badf("source must be callback, reconcile or replay")
	}
	f := history.Filter{Tenant: tenant, PackageID: q.PackageID, Event: q.Event, Outcome: q.Outcome, Source: q.Source, From: q.From, To: q.To}
	page, err := a.o.History.Events(ctx, f, history.Page{Cursor: q.Cursor, Limit: q.Limit})
	if err != nil && strings.Contains(err.Error(), "bad cursor") {
		return page, badf("cursor: not one this listener issued")
	}
	return page, err
}

func (a *Admin) apiEvent(c echo.Context) error {
	tenant, ok, err := a.knownTenant(c, a.o.History)
	if !ok {
		return err
	}
	key := c.Param("key")
	if !eventKeyFormat(key) {
		return jsonError(c, http.StatusBadRequest, "an event key is 64 hex digits")
	}
	st, err := a.o.History.Story(c.Request().Context(), tenant, key)
	if err != nil {
		return a.operationError(c, err)
	}
	return c.JSON(http.StatusOK, st)
}

func eventKeyFormat(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

func (a *Admin) apiPackage(c echo.Context) error {
	tenant, ok, err := a.knownTenant(c, a.o.History)
	if !ok {
		return err
	}
	pkg, uerr := url.PathUnescape(c.Param("package"))
	if uerr != nil || strings.TrimSpace(pkg) == "" {
		return jsonError(c, http.StatusBadRequest, "package id required")
	}
	ps, err := a.o.History.PackageStory(c.Request().Context(), tenant, pkg)
	if err != nil {
		return a.operationError(c, err)
	}
	if ps.Events == nil {
		ps.Events = []history.Story{}
	}
	return c.JSON(http.StatusOK, ps)
}

func (a *Admin) apiDeadLetters(c echo.Context) error {
	return answerPage(a, c, a.o.Replayer, a.deadLetters)
}

func (a *Admin) deadLetters(ctx context.Context, tenant string, q EventQuery) (replay.DeadLetterPage, error) {
	if q.Cursor != "" {
		if n, err := strconv.ParseUint(q.Cursor, 10, 64); err != nil || n == 0 {
			return replay.DeadLetterPage{}, badf("cursor: not one this listener issued")
		}
	}
	f := replay.Filter{Tenant: tenant, PackageID: q.PackageID, Event: q.Event, From: q.From, To: q.To}
	return a.o.Replayer.ListDeadLetters(ctx, f, replay.Page{Cursor: q.Cursor, Limit: q.Limit})
}

// ReplayRequest is the body of POST /tenants/{tenant}/replay and of the
// dead-letter purge. Every set field must match; none set selects all of
// the tenant's messages in the source.
type ReplayRequest struct {
	// Source is history (every callback as received, the default) or
	// deadletters.
	Source    string    `json:"source,omitempty"`
	EventKeys []string  `json:"event_keys,omitempty"`
	Seqs      []uint64  `json:"seqs,omitempty"` // sequences in the source stream
	PackageID string    `json:"package_id,omitempty"`
	Event     string    `json:"event,omitempty"`
	From      time.Time `json:"from,omitzero"`
	To        time.Time `json:"to,omitzero"`
	// Since sets From to this long before now (48h, 90m, 7d), instead of From.
	Since string `json:"since,omitempty"`
	// DryRun counts what would be replayed (or purged), and changes nothing.
	DryRun bool `json:"dry_run,omitempty"`
}

// ReplayAnswer is the answer of a replay: Matched messages, Replayed copies
// stored (one per event), Skipped other copies of the same events.
type ReplayAnswer struct {
	replay.Result
	// WouldReplay is what a dry run would store: Matched - Skipped.
	WouldReplay int `json:"would_replay"`
}

// ReplayProgress is one line of a streamed replay (Accept:
// application/x-ndjson): progress lines, then one line with the result or
// the error.
type ReplayProgress struct {
	Progress *Progress     `json:"progress,omitempty"`
	Result   *ReplayAnswer `json:"result,omitempty"`
	Error    string        `json:"error,omitempty"`
}

// Progress counts messages handled of those selected.
type Progress struct {
	Done  int `json:"done"`
	Total int `json:"total"`
}

// PurgeAnswer is the answer of POST /tenants/{tenant}/deadletters/purge.
type PurgeAnswer struct {
	Matched int  `json:"matched"`
	Purged  int  `json:"purged"`
	DryRun  bool `json:"dry_run"`
}

// ndjson is the media type of streamed answers.
const ndjson = "application/x-ndjson"

func readBody(c echo.Context, v any) error {
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, 1<<20))
	if err != nil {
		return badf("could not read body")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badf("body: %v", err)
	}
	return nil
}

// replayFilter checks r and builds the replay filter.
func (a *Admin) replayFilter(tenant string, r ReplayRequest) (replay.Filter, error) {
	since, err := parseSince("since", r.Since)
	if err != nil {
		return replay.Filter{}, err
	}
	if since > 0 {
		if !r.From.IsZero() {
			return replay.Filter{}, badf("since and from: give one of them")
		}
		r.From = a.now().Add(-since).UTC()
	}
	f := replay.Filter{Tenant: tenant, PackageID: strings.TrimSpace(r.PackageID), Event: strings.TrimSpace(r.Event),
		From: r.From, To: r.To, Source: r.Source, EventKeys: r.EventKeys, Seqs: r.Seqs}
	if f.Source == "" {
		f.Source = replay.SourceHistory
	}
	if !slices.Contains(replaySources, f.Source) {
		return f, badf("source must be %s or %s", replay.SourceHistory, replay.SourceDeadLetters)
	}
	if !f.From.IsZero() && !f.To.IsZero() && f.To.Before(f.From) {
		return f, badf("to is before from")
	}
	for _, k := range f.EventKeys {
		if !eventKeyFormat(k) {
			return f, badf("event key %q: an event key is 64 hex digits", k)
		}
	}
	if len(f.EventKeys) > 1000 || len(f.Seqs) > 10000 {
		return f, badf("too many event keys or sequences in one request")
	}
	for _, s := range f.Seqs {
		if s == 0 {
			return f, badf("sequences start at 1")
		}
	}
	return f, nil
}

func answerOf(res replay.Result) ReplayAnswer {
	ans := ReplayAnswer{Result: res}
	if res.DryRun {
		ans.WouldReplay = res.Matched - res.Skipped
	}
	return ans
}

func (a *Admin) apiReplay(c echo.Context) error {
	tenant, ok, err := a.knownTenant(c, a.o.Replayer)
	if !ok {
		return err
	}
	var req ReplayRequest
	if err := readBody(c, &req); err != nil {
		return a.operationError(c, err)
	}
	f, err := a.replayFilter(tenant, req)
	if err != nil {
		return a.operationError(c, err)
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), longOperation)
	defer cancel()
	w := c.Response()
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(longOperation))
	if !strings.Contains(c.Request().Header.Get(echo.HeaderAccept), ndjson) {
		res, err := a.o.Replayer.Replay(ctx, f, req.DryRun, nil)
		if err != nil {
			return a.operationError(c, err)
		}
		a.log.Info("replay requested", "tenant", tenant, "source", f.Source, "dry_run", req.DryRun, "replayed", res.Replayed)
		return c.JSON(http.StatusOK, answerOf(res))
	}
	// Streamed: a progress line at most every 200ms, then the result.
	w.Header().Set(echo.HeaderContentType, ndjson)
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	var last time.Time
	progress := func(done, total int) {
		if done < total && time.Since(last) < 200*time.Millisecond {
			return
		}
		last = time.Now()
		_ = enc.Encode(ReplayProgress{Progress: &Progress{Done: done, Total: total}})
		_ = rc.Flush()
	}
	res, err := a.o.Replayer.Replay(ctx, f, req.DryRun, progress)
	if err != nil {
		a.log.Error("replay failed", "tenant", tenant, "replayed", res.Replayed, "error", err)
		ans := answerOf(res)
		return enc.Encode(ReplayProgress{Result: &ans, Error: err.Error()})
	}
	a.log.Info("replay requested", "tenant", tenant, "source", f.Source, "dry_run", req.DryRun, "replayed", res.Replayed)
	ans := answerOf(res)
	return enc.Encode(ReplayProgress{Result: &ans})
}

func (a *Admin) apiPurge(c echo.Context) error {
	tenant, ok, err := a.knownTenant(c, a.o.Replayer)
	if !ok {
		return err
	}
	var req ReplayRequest
	if err := readBody(c, &req); err != nil {
		return a.operationError(c, err)
	}
	req.Source = replay.SourceDeadLetters
	f, err := a.replayFilter(tenant, req)
	if err != nil {
		return a.operationError(c, err)
	}
	ans, err := a.purge(c.Request().Context(), f, req.DryRun)
	if err != nil {
		return a.operationError(c, err)
	}
	return c.JSON(http.StatusOK, ans)
}

// purge deletes the dead letters f selects; a dry run counts them (the
// replayer's dry run selects exactly what a purge deletes).
func (a *Admin) purge(ctx context.Context, f replay.Filter, dryRun bool) (PurgeAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, longOperation)
	defer cancel()
	f.Source = replay.SourceDeadLetters
	if dryRun {
		res, err := a.o.Replayer.Replay(ctx, f, true, nil)
		return PurgeAnswer{Matched: res.Matched, DryRun: true}, err
	}
	n, err := a.o.Replayer.PurgeDeadLetters(ctx, f)
	if err == nil {
		a.log.Info("dead letters purged by operator", "tenant", f.Tenant, "count", n)
	}
	return PurgeAnswer{Matched: n, Purged: n}, err
}

// ReconcileRequest is the body of POST /tenants/{tenant}/reconcile.
type ReconcileRequest struct {
	// Since is how far back OneSpan's changed packages are compared
	// (default reconcile.lookback).
	Since string `json:"since,omitempty"`
}

func (a *Admin) apiReconcile(c echo.Context) error {
	tenant, ok, err := a.knownTenant(c, a.o.Reconciler)
	if !ok {
		return err
	}
	var req ReconcileRequest
	if err := readBody(c, &req); err != nil {
		return a.operationError(c, err)
	}
	since, err := a.lookback(req.Since)
	if err != nil {
		return a.operationError(c, err)
	}
	_ = http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(longOperation))
	res, err := a.reconcile(c.Request().Context(), tenant, since)
	if err != nil {
		return a.operationError(c, err)
	}
	return c.JSON(http.StatusOK, res)
}

func (a *Admin) lookback(s string) (time.Duration, error) {
	since, err := parseSince("since", s)
	if err != nil {
		return 0, err
	}
	if since == 0 {
		since = a.o.Config.Reconcile.Lookback.D()
	}
	if since <= 0 {
		since = 48 * time.Hour
	}
	return since, nil
}

func (a *Admin) reconcile(ctx context.Context, tenant string, since time.Duration) (reconcile.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, longOperation)
	defer cancel()
	res, err := a.o.Reconciler.RunOnce(ctx, tenant, since)
	if err != nil {
		return res, err
	}
	a.log.Info("reconciled on demand", "tenant", tenant, "since", since.String(), "checked", res.Checked,
		"synthesized", res.Synthesized, "duplicates", res.Duplicates, "waiting", res.Waiting)
	return res, nil
}
