package admin

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/replay"
)

// filterForm is a search or replay filter as the page's forms carry it:
// the strings as typed, so a form shows them again unchanged.
type filterForm struct {
	Tenant    string
	Source    string // replay: history or deadletters; events: callback, reconcile, replay
	Package   string
	Event     string
	Outcome   string
	From, To  string
	Since     string
	Seqs      []string
	EventKeys []string
	Cursor    string
}

func readFilterForm(get func(string) string, all func(string) []string) filterForm {
	return filterForm{
		Tenant: strings.TrimSpace(get("tenant")), Source: strings.TrimSpace(get("source")),
		Package: strings.TrimSpace(get("package")), Event: strings.TrimSpace(get("event")),
		Outcome: strings.TrimSpace(get("outcome")), From: strings.TrimSpace(get("from")), To: strings.TrimSpace(get("to")),
		Since: strings.TrimSpace(get("since")), Seqs: all("seq"), EventKeys: all("event_key"), Cursor: get("cursor"),
	}
}

func queryFilter(c echo.Context) filterForm {
	q := c.QueryParams()
	return readFilterForm(q.Get, func(k string) []string { return q[k] })
}

func postFilter(c echo.Context) filterForm {
	f, _ := c.FormParams()
	return readFilterForm(f.Get, func(k string) []string { return f[k] })
}

// values is the filter as URL values (links to the next page, to replay).
func (f filterForm) values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("tenant", f.Tenant)
	set("source", f.Source)
	set("package", f.Package)
	set("event", f.Event)
	set("outcome", f.Outcome)
	set("from", f.From)
	set("to", f.To)
	set("since", f.Since)
	for _, s := range f.Seqs {
		v.Add("seq", s)
	}
	for _, k := range f.EventKeys {
		v.Add("event_key", k)
	}
	return v
}

// Hidden lists the filter's fields for a confirmation form.
func (f filterForm) Hidden() []hiddenField {
	var out []hiddenField
	v := f.values()
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, s := range v[k] {
			out = append(out, hiddenField{Name: k, Value: s})
		}
	}
	return out
}

type hiddenField struct{ Name, Value string }

// Query is the filter as a query string.
func (f filterForm) Query() string { return f.values().Encode() }

// With returns the query with one more parameter.
func (f filterForm) With(k, val string) string {
	v := f.values()
	v.Set(k, val)
	return v.Encode()
}

// Describe says in words what the filter selects.
func (f filterForm) Describe() string {
	var parts []string
	if len(f.Seqs) > 0 {
		parts = append(parts, "message "+strings.Join(f.Seqs, ", "))
	}
	if len(f.EventKeys) > 0 {
		parts = append(parts, "event "+strings.Join(shortKeys(f.EventKeys), ", "))
	}
	if f.Package != "" {
		parts = append(parts, "package "+f.Package)
	}
	if f.Event != "" {
		parts = append(parts, f.Event+" events")
	}
	switch {
	case f.From != "" && f.To != "":
		parts = append(parts, "stored from "+f.From+" to "+f.To+" UTC")
	case f.From != "":
		parts = append(parts, "stored since "+f.From+" UTC")
	case f.To != "":
		parts = append(parts, "stored until "+f.To+" UTC")
	}
	if f.Since != "" {
		parts = append(parts, "in the last "+f.Since)
	}
	if len(parts) == 0 {
		return "all of the tenant's messages"
	}
	return strings.Join(parts, "; ")
}

func shortKeys(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = shortKey(k)
	}
	return out
}

func shortKey(k string) string {
	if len(k) > 12 {
		return k[:12] + "…"
	}
	return k
}

// query reads the filter as an EventQuery (the API's rules).
func (cs *console) query(f filterForm) (EventQuery, error) {
	v := f.values()
	v.Del("source")
	if f.Cursor != "" {
		v.Set("cursor", f.Cursor)
	}
	return cs.a.readQuery(v)
}

// replayRequest reads the filter as a replay request.
func (cs *console) replayRequest(f filterForm) (ReplayRequest, error) {
	q, err := cs.query(filterForm{Package: f.Package, Event: f.Event, From: f.From, To: f.To, Since: f.Since})
	if err != nil {
		return ReplayRequest{}, err
	}
	r := ReplayRequest{Source: f.Source, PackageID: q.PackageID, Event: q.Event, From: q.From, To: q.To, EventKeys: f.EventKeys}
	for _, s := range f.Seqs {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return r, badf("message %q: not a sequence number", s)
		}
		r.Seqs = append(r.Seqs, n)
	}
	return r, nil
}

// eventsData is the event search page.
type eventsData struct {
	Filter   filterForm
	Outcomes []string
	Searched bool
	Page     history.EventPage
}

func (cs *console) events(c echo.Context) error {
	if ok, err := cs.wired(c, cs.a.o.History != nil); !ok {
		return err
	}
	f := queryFilter(c)
	d := eventsData{Filter: f, Outcomes: outcomes}
	if f.Tenant == "" && len(cs.a.tenants) == 1 {
		d.Filter.Tenant = cs.a.tenants[0]
	}
	if f.Tenant != "" {
		if _, ok, err := cs.tenantParam(c, f.Tenant); !ok {
			return err
		}
		q, err := cs.query(f)
		if err != nil {
			return cs.fail(c, err)
		}
		q.Source = f.Source
		if d.Page, err = cs.a.events(cs.ctx(c), f.Tenant, q); err != nil {
			return cs.fail(c, err)
		}
		d.Searched = true
	}
	return cs.render(c, http.StatusOK, "events", cs.view(c, "Events", "events", d))
}

func (cs *console) event(c echo.Context) error {
	if ok, err := cs.wired(c, cs.a.o.History != nil); !ok {
		return err
	}
	id, ok, err := cs.tenantParam(c, c.Param("tenant"))
	if !ok {
		return err
	}
	key := c.Param("key")
	if !eventKeyFormat(key) {
		return cs.fail(c, badf("an event key is 64 hex digits"))
	}
	st, err := cs.a.o.History.Story(cs.ctx(c), id, key)
	if err != nil {
		return cs.fail(c, err)
	}
	return cs.render(c, http.StatusOK, "event", cs.view(c, st.Event+" of package "+st.PackageID, "events", st))
}

// packageData is the package story page ("where is package X, and why").
type packageData struct {
	Filter filterForm
	Story  *history.PackageStory
	Latest map[string]int // event outcome counts, of each event's latest attempt
	Dead   []history.Story
}

func (cs *console) pkg(c echo.Context) error {
	if ok, err := cs.wired(c, cs.a.o.History != nil); !ok {
		return err
	}
	f := queryFilter(c)
	if f.Tenant == "" && len(cs.a.tenants) == 1 {
		f.Tenant = cs.a.tenants[0]
	}
	d := packageData{Filter: f}
	title := "Find a package"
	if f.Tenant != "" && f.Package != "" {
		if _, ok, err := cs.tenantParam(c, f.Tenant); !ok {
			return err
		}
		ps, err := cs.a.o.History.PackageStory(cs.ctx(c), f.Tenant, f.Package)
		if err != nil {
			return cs.fail(c, err)
		}
		d.Story, d.Latest = &ps, map[string]int{}
		for _, st := range ps.Events {
			if n := len(st.Attempts); n > 0 {
				last := st.Attempts[n-1]
				d.Latest[last.Outcome]++
				if last.Outcome == history.DeadLettered {
					d.Dead = append(d.Dead, st)
				}
			} else {
				d.Latest["waiting"]++
			}
		}
		title = "Package " + f.Package
	}
	return cs.render(c, http.StatusOK, "package", cs.view(c, title, "packages", d))
}

// deadLettersData is the dead-letter page.
type deadLettersData struct {
	Filter filterForm
	Page   replay.DeadLetterPage
	Listed bool
}

func (cs *console) deadLetters(c echo.Context) error {
	if ok, err := cs.wired(c, cs.a.o.Replayer != nil); !ok {
		return err
	}
	f := queryFilter(c)
	if f.Tenant == "" && len(cs.a.tenants) == 1 {
		f.Tenant = cs.a.tenants[0]
	}
	d := deadLettersData{Filter: f}
	if f.Tenant != "" {
		if _, ok, err := cs.tenantParam(c, f.Tenant); !ok {
			return err
		}
		q, err := cs.query(f)
		if err != nil {
			return cs.fail(c, err)
		}
		if d.Page, err = cs.a.deadLetters(cs.ctx(c), f.Tenant, q); err != nil {
			return cs.fail(c, err)
		}
		d.Listed = true
	}
	return cs.render(c, http.StatusOK, "deadletters", cs.view(c, "Dead letters", "deadletters", d))
}

func (cs *console) replayForm(c echo.Context) error {
	f := queryFilter(c)
	if f.Tenant == "" && len(cs.a.tenants) == 1 {
		f.Tenant = cs.a.tenants[0]
	}
	if f.Source == "" {
		f.Source = replay.SourceHistory
	}
	return cs.render(c, http.StatusOK, "replay", cs.view(c, "Replay", "replay", f))
}

// confirmData is the confirmation page of a replay or purge: the dry run's
// count, and the same filter in hidden fields.
type confirmData struct {
	Filter      filterForm
	Purge       bool
	Matched     int
	WouldChange int
	Skipped     int
}

// replayFilterOf checks the posted filter of a replay or purge.
func (cs *console) replayFilterOf(c echo.Context, purge bool) (filterForm, replay.Filter, error) {
	f := postFilter(c)
	if purge {
		f.Source = replay.SourceDeadLetters
	}
	if _, ok := cs.a.o.Sources[f.Tenant]; !ok {
		return f, replay.Filter{}, badf("choose a configured tenant")
	}
	req, err := cs.replayRequest(f)
	if err != nil {
		return f, replay.Filter{}, err
	}
	rf, err := cs.a.replayFilter(f.Tenant, req)
	return f, rf, err
}

// selection is the start of every replay and purge handler: replay must be
// wired here and the posted filter valid; when not ok, err is the answer.
func (cs *console) selection(c echo.Context, purge bool) (filterForm, replay.Filter, bool, error) {
	if ok, err := cs.wired(c, cs.a.o.Replayer != nil); !ok {
		return filterForm{}, replay.Filter{}, false, err
	}
	f, rf, err := cs.replayFilterOf(c, purge)
	if err != nil {
		return f, rf, false, cs.fail(c, err)
	}
	return f, rf, true, nil
}

func (cs *console) replayPreview(c echo.Context) error {
	f, rf, ok, err := cs.selection(c, false)
	if !ok {
		return err
	}
	res, err := cs.a.o.Replayer.Replay(cs.ctx(c), rf, true, nil)
	if err != nil {
		return cs.fail(c, err)
	}
	d := confirmData{Filter: f, Matched: res.Matched, WouldChange: res.Matched - res.Skipped, Skipped: res.Skipped}
	return cs.render(c, http.StatusOK, "confirm", cs.view(c, "Confirm the replay", "replay", d))
}

// replayDone is the answer page of a replay.
type replayDone struct {
	Filter filterForm
	Result replay.Result
}

func (cs *console) replay(c echo.Context) error {
	f, rf, ok, err := cs.selection(c, false)
	if !ok {
		return err
	}
	_ = http.NewResponseController(c.Response()).SetWriteDeadline(cs.a.now().Add(longOperation))
	res, err := cs.a.o.Replayer.Replay(cs.ctx(c), rf, false, nil)
	if err != nil {
		cs.a.log.Error("replay from the page failed", "tenant", rf.Tenant, "replayed", res.Replayed, "error", err)
		return cs.message(c, http.StatusServiceUnavailable, message{Title: "The replay stopped",
			Paragraphs: []string{strconv.Itoa(res.Replayed) + " events were replayed before it stopped; run it again to continue (a replayed dead letter is no longer in the dead letters)."},
			Detail:     scrub(err.Error()), Links: []link{{"Dead letters", consolePrefix + "/deadletters?tenant=" + url.QueryEscape(rf.Tenant)}}})
	}
	cs.a.log.Info("replay requested", "tenant", rf.Tenant, "source", rf.Source, "via", "page", "replayed", res.Replayed)
	return cs.render(c, http.StatusOK, "replayed", cs.view(c, "Replayed", "replay", replayDone{Filter: f, Result: res}))
}

func (cs *console) purgePreview(c echo.Context) error {
	f, rf, ok, err := cs.selection(c, true)
	if !ok {
		return err
	}
	ans, err := cs.a.purge(cs.ctx(c), rf, true)
	if err != nil {
		return cs.fail(c, err)
	}
	d := confirmData{Filter: f, Purge: true, Matched: ans.Matched, WouldChange: ans.Matched}
	return cs.render(c, http.StatusOK, "confirm", cs.view(c, "Confirm the purge", "deadletters", d))
}

func (cs *console) purge(c echo.Context) error {
	f, rf, ok, err := cs.selection(c, true)
	if !ok {
		return err
	}
	ans, err := cs.a.purge(cs.ctx(c), rf, false)
	if err != nil {
		return cs.fail(c, err)
	}
	return cs.message(c, http.StatusOK, message{OK: true, Title: strconv.Itoa(ans.Purged) + " dead letters purged",
		Paragraphs: []string{"Purged: " + f.Describe() + ". Their delivery history is kept."},
		Links:      []link{{"Dead letters of " + f.Tenant, consolePrefix + "/deadletters?tenant=" + url.QueryEscape(f.Tenant)}}})
}
