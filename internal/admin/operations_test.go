package admin

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/history"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/reconcile"
	"github.com/countersign/countersign/internal/replay"
)

// Every operations route refuses a caller without the admin token, with
// the one 401 body; an unknown tenant is a 404 once authenticated.
func TestOperationsRefuseWithoutTheAdminToken(t *testing.T) {
	key := strings.Repeat("ab", 32)
	routes := []struct{ method, path string }{
		{http.MethodGet, "/tenants/acme/events"},
		{http.MethodGet, "/tenants/acme/events/" + key},
		{http.MethodGet, "/tenants/acme/packages/pkg-1"},
		{http.MethodGet, "/tenants/acme/deadletters"},
		{http.MethodPost, "/tenants/acme/deadletters/purge"},
		{http.MethodPost, "/tenants/acme/replay"},
		{http.MethodPost, "/tenants/acme/reconcile"},
	}
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			r := newRig(t, nil) // no history, replayer or reconciler wired
			for _, tok := range []string{"", "fake-wrong-admin-token"} {
				if code, body := r.api(rt.method, rt.path, tok, nil); code != http.StatusUnauthorized || body == nil ||
					string(body) != "{\"error\":\"unauthorized\"}\n" {
					t.Errorf("token %q: %d %s", tok, code, body)
				}
			}
			nobody := strings.Replace(rt.path, "/acme/", "/nobody/", 1)
			if code, body := r.api(rt.method, nobody, testAdminToken, nil); code != http.StatusNotFound {
				t.Errorf("unknown tenant: %d %s", code, body)
			}
			// This process has no history or replayer: 503, said plainly.
			if code, body := r.api(rt.method, rt.path, testAdminToken, nil); code != http.StatusServiceUnavailable ||
				!strings.Contains(string(body), "does not serve") {
				t.Errorf("not wired: %d %s", code, body)
			}
		})
	}
}

// waitEvents polls the events API until it lists n events for the query.
func (r *opsRig) waitEvents(query string, n int) history.EventPage {
	r.t.Helper()
	var page history.EventPage
	r.eventually(15*time.Second, fmt.Sprintf("%d events for %q", n, query), func() bool {
		page = history.EventPage{}
		code, _ := r.call(http.MethodGet, "/tenants/acme/events?"+query, nil, &page)
		return code == http.StatusOK && len(page.Events) == n
	})
	return page
}

func TestEventsSearchFiltersPagesAndTellsStories(t *testing.T) {
	r := newOpsRig(t, opsOptions{})
	r.start()
	t0 := time.Now().UTC()
	r.activate("pkg-a")
	r.activate("pkg-b")
	r.eventually(15*time.Second, "both packages SENT", func() bool { return r.status("pkg-a") == "SENT" && r.status("pkg-b") == "SENT" })
	all := r.waitEvents("", 4)

	future := url.QueryEscape(time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	cases := []struct {
		query string
		want  int
	}{
		{"package=pkg-a", 2},
		{"event=PACKAGE_ACTIVATE", 2},
		{"package=pkg-b&event=PACKAGE_CREATE", 1},
		{"outcome=delivered", 4},
		{"outcome=dead_lettered", 0},
		{"source=callback", 4},
		{"source=replay", 0},
		{"since=1h", 4},
		{"from=" + url.QueryEscape(t0.Add(-time.Minute).Format(time.RFC3339)) + "&to=" + future, 4},
		{"from=" + future, 0},
		{"to=" + url.QueryEscape(t0.Add(-time.Hour).Format("2006-01-02T15:04")), 0},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			var p history.EventPage
			if code, body := r.call(http.MethodGet, "/tenants/acme/events?"+tc.query, nil, &p); code != http.StatusOK || len(p.Events) != tc.want {
				t.Errorf("%d events (status %d), want %d: %s", len(p.Events), code, tc.want, body)
			}
		})
	}
	for _, bad := range []string{"outcome=bogus", "from=yesterday", "since=-1h", "limit=0", "limit=1001", "cursor=%25%25",
		"source=elsewhere", "from=2026-01-02&to=2026-01-01", "since=1h&from=2026-01-01"} {
		if code, body := r.call(http.MethodGet, "/tenants/acme/events?"+bad, nil, nil); code != http.StatusBadRequest || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s", bad, code, body)
		}
	}

	// Paging: one event a page, every event once, newest first.
	seen := map[string]bool{}
	cursor := ""
	for i := 0; i < 10; i++ {
		var p history.EventPage
		q := url.Values{"limit": {"1"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		if code, body := r.call(http.MethodGet, "/tenants/acme/events?"+q.Encode(), nil, &p); code != http.StatusOK || len(p.Events) != 1 {
			t.Fatalf("page %d: %d %s", i, code, body)
		}
		if seen[p.Events[0].EventKey] || p.Events[0].EventKey != all.Events[i].EventKey {
			t.Fatalf("page %d repeats or reorders: %s", i, p.Events[0].EventKey)
		}
		seen[p.Events[0].EventKey] = true
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	if len(seen) != 4 {
		t.Fatalf("paging saw %d events, want 4", len(seen))
	}

	// One event with its attempts; the package's whole story.
	ev := r.waitEvents("package=pkg-a&event=PACKAGE_ACTIVATE", 1).Events[0]
	var st history.Story
	if code, body := r.call(http.MethodGet, "/tenants/acme/events/"+ev.EventKey, nil, &st); code != http.StatusOK ||
		len(st.Attempts) != 1 || st.Attempts[0].Outcome != history.Delivered || len(st.Messages) != 1 || st.Messages[0].Source != queue.SourceCallback {
		t.Fatalf("story: %d %s", code, body)
	}
	if code, body := r.call(http.MethodGet, "/tenants/acme/events/"+strings.Repeat("0", 64), nil, nil); code != http.StatusNotFound {
		t.Errorf("unknown event: %d %s", code, body)
	}
	if code, body := r.call(http.MethodGet, "/tenants/acme/events/not-a-key", nil, nil); code != http.StatusBadRequest {
		t.Errorf("bad event key: %d %s", code, body)
	}
	var ps history.PackageStory
	if code, body := r.call(http.MethodGet, "/tenants/acme/packages/pkg-a", nil, &ps); code != http.StatusOK ||
		ps.Status != "SENT" || ps.RecordID == "" || len(ps.Events) != 2 || !ps.Indexed {
		t.Fatalf("package story: %d %s", code, body)
	}
	if code, body := r.call(http.MethodGet, "/tenants/acme/packages/pkg-unknown", nil, &ps); code != http.StatusOK || len(ps.Events) != 0 {
		t.Errorf("unknown package: %d %s", code, body)
	}
}

// streamReplay posts a replay asking for progress lines.
func (r *opsRig) streamReplay(req ReplayRequest) ([]Progress, *ReplayAnswer, string) {
	r.t.Helper()
	b, _ := json.Marshal(req)
	hr, _ := http.NewRequest(http.MethodPost, r.base+APIPrefix+"/tenants/acme/replay", strings.NewReader(string(b)))
	hr.Header.Set("Authorization", "Bearer "+testAdminToken)
	hr.Header.Set("Accept", ndjson)
	resp, err := r.client().Do(hr)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ndjson {
		r.t.Fatalf("streamed replay: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var progress []Progress
	var final *ReplayAnswer
	var errText string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line ReplayProgress
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			r.t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if line.Progress != nil {
			progress = append(progress, *line.Progress)
		}
		if line.Result != nil {
			final = line.Result
		}
		errText += line.Error
	}
	return progress, final, errText
}

// The "replay of a dead letter that then succeeds", and purge,
// through the API alone.
func TestDeadLettersListPurgeAndReplayThatSucceeds(t *testing.T) {
	r := newOpsRig(t, opsOptions{})
	r.breakEvents()
	r.start()
	t0 := time.Now().UTC()
	r.activate("pkg-dl")
	r.activate("pkg-x")
	r.eventually(15*time.Second, "4 dead letters", func() bool { return r.deadLetterCount() == 4 })
	t1 := time.Now().UTC()
	r.stop()

	list := func(query string) replay.DeadLetterPage {
		t.Helper()
		var p replay.DeadLetterPage
		if code, body := r.call(http.MethodGet, "/tenants/acme/deadletters?"+query, nil, &p); code != http.StatusOK {
			t.Fatalf("list %q: %d %s", query, code, body)
		}
		return p
	}
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"", 4}, {"package=pkg-dl", 2}, {"event=PACKAGE_ACTIVATE", 2}, {"package=pkg-x&event=PACKAGE_CREATE", 1},
		{"since=1h", 4}, {"from=" + url.QueryEscape(t1.Add(time.Minute).Format(time.RFC3339)), 0},
	} {
		if got := list(tc.query); len(got.DeadLetters) != tc.want {
			t.Errorf("dead letters %q: %d, want %d", tc.query, len(got.DeadLetters), tc.want)
		}
	}
	first := list("limit=3")
	if len(first.DeadLetters) != 3 || first.Next == "" {
		t.Fatalf("first page %+v", first)
	}
	if rest := list("limit=3&cursor=" + first.Next); len(rest.DeadLetters) != 1 || rest.DeadLetters[0].Seq <= first.DeadLetters[2].Seq {
		t.Fatalf("second page %+v", rest)
	}
	d := first.DeadLetters[0]
	if d.ErrorClass != "permanent" || d.Error == "" || d.PackageID == "" || len(d.EventKey) != 64 {
		t.Errorf("dead letter %+v", d)
	}
	if code, body := r.call(http.MethodGet, "/tenants/acme/deadletters?cursor=abc", nil, nil); code != http.StatusBadRequest {
		t.Errorf("bad cursor: %d %s", code, body)
	}

	// Purge by filter: a dry run counts, then the other package's go.
	var purge PurgeAnswer
	if code, body := r.call(http.MethodPost, "/tenants/acme/deadletters/purge", ReplayRequest{PackageID: "pkg-x", DryRun: true}, &purge); code != http.StatusOK ||
		purge.Matched != 2 || purge.Purged != 0 || !purge.DryRun || r.deadLetterCount() != 4 {
		t.Fatalf("purge dry run: %d %s", code, body)
	}
	if code, body := r.call(http.MethodPost, "/tenants/acme/deadletters/purge", ReplayRequest{PackageID: "pkg-x"}, &purge); code != http.StatusOK ||
		purge.Purged != 2 || r.deadLetterCount() != 2 {
		t.Fatalf("purge: %d %s (%d left)", code, body, r.deadLetterCount())
	}

	// Bad replay requests change nothing.
	for _, bad := range []any{
		map[string]any{"source": "elsewhere"},
		map[string]any{"event_keys": []string{"nope"}},
		map[string]any{"seqs": []int{0}},
		map[string]any{"unknown": true},
		map[string]any{"since": "soon"},
		map[string]any{"from": t1, "to": t0},
		"not an object",
	} {
		if code, body := r.call(http.MethodPost, "/tenants/acme/replay", bad, nil); code != http.StatusBadRequest {
			t.Errorf("%v: %d %s", bad, code, body)
		}
	}

	// Fix the cause; count, then replay everything that failed in the window.
	r.fixEvents()
	r.start()
	window := ReplayRequest{Source: replay.SourceDeadLetters, From: t0.Add(-time.Second), To: t1.Add(time.Second)}
	dry := window
	dry.DryRun = true
	var count ReplayAnswer
	if code, body := r.call(http.MethodPost, "/tenants/acme/replay", dry, &count); code != http.StatusOK ||
		count.Matched != 2 || count.WouldReplay != 2 || count.Replayed != 0 || r.deadLetterCount() != 2 {
		t.Fatalf("dry run: %d %s", code, body)
	}
	progress, final, errText := r.streamReplay(window)
	if errText != "" || final == nil || final.Replayed != 2 || len(progress) == 0 || progress[len(progress)-1] != (Progress{Done: 2, Total: 2}) {
		t.Fatalf("replay: %+v %+v %q", progress, final, errText)
	}
	if n := r.deadLetterCount(); n != 0 {
		t.Errorf("%d dead letters left after the replay", n)
	}
	r.eventually(15*time.Second, "pkg-dl SENT", func() bool { return r.status("pkg-dl") == "SENT" })
	page := r.waitEvents("source=replay&outcome=delivered", 2)
	for _, ev := range page.Events {
		var st history.Story
		r.call(http.MethodGet, "/tenants/acme/events/"+ev.EventKey, nil, &st)
		n := len(st.Attempts)
		if ev.PackageID != "pkg-dl" || n != 2 || st.Attempts[0].Outcome != history.DeadLettered || st.Attempts[n-1].Source != queue.SourceReplay ||
			len(st.Messages) != 2 || st.Messages[1].Source != queue.SourceReplay || st.Messages[1].Seq == st.Messages[0].Seq {
			t.Errorf("story of a replayed dead letter: %+v", st)
		}
	}

	// Replaying a delivered event from the history by its key, plain JSON.
	var again ReplayAnswer
	key := page.Events[0].EventKey
	if code, body := r.call(http.MethodPost, "/tenants/acme/replay", ReplayRequest{EventKeys: []string{key}}, &again); code != http.StatusOK ||
		again.Replayed != 1 {
		t.Fatalf("replay by key: %d %s", code, body)
	}
	r.eventually(15*time.Second, "the third attempt", func() bool {
		var st history.Story
		code, _ := r.call(http.MethodGet, "/tenants/acme/events/"+key, nil, &st)
		return code == http.StatusOK && len(st.Attempts) == 3 && st.Attempts[2].Outcome == history.Delivered
	})
}

// `listener reconcile` through the API: callbacks OneSpan never delivered
// are recovered and delivered.
func TestReconcileOnDemandRecoversMissedCallbacks(t *testing.T) {
	r := newOpsRig(t, opsOptions{})
	r.start()
	ctx := t.Context()
	r.activate("pkg-missed")
	r.eventually(15*time.Second, "SENT", func() bool { return r.status("pkg-missed") == "SENT" })
	r.os.HoldCallbacks(true) // the listener is "down"
	for _, step := range []func() error{
		func() error { return r.os.SignDocument(ctx, "pkg-missed", "doc-1", "signer-1") },
		func() error { return r.os.SignerComplete(ctx, "pkg-missed", "signer-1") },
		func() error { return r.os.Complete(ctx, "pkg-missed") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := r.call(http.MethodPost, "/tenants/acme/reconcile", ReconcileRequest{Since: "soon"}, nil); code != http.StatusBadRequest {
		t.Errorf("bad since: %d %s", code, body)
	}
	// The package's delivered events must be settled first (else the pass
	// leaves it to the worker); a pass stores each missed event once.
	var res reconcile.Result
	stored := 0
	r.eventually(15*time.Second, "a pass that recovers the completion", func() bool {
		code, body := r.call(http.MethodPost, "/tenants/acme/reconcile", ReconcileRequest{Since: "1h"}, &res)
		if code != http.StatusOK {
			t.Fatalf("reconcile: %d %s", code, body)
		}
		stored += res.Synthesized
		return res.Synthesized+res.Duplicates > 0
	})
	if stored != 1 || res.Events[0].Event != "PACKAGE_COMPLETE" || res.Events[0].PackageID != "pkg-missed" {
		t.Fatalf("reconcile: stored %d, %+v", stored, res)
	}
	r.eventually(20*time.Second, "COMPLETED", func() bool { return r.status("pkg-missed") == "COMPLETED" })
	r.waitEvents("source=reconcile&outcome=delivered", 1)
	// Default look-back (reconcile.lookback), and nothing more to recover.
	if code, body := r.call(http.MethodPost, "/tenants/acme/reconcile", nil, &res); code != http.StatusOK || res.Synthesized != 0 {
		t.Fatalf("second pass: %d %s", code, body)
	}
}
