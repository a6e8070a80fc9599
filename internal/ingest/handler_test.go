package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/logging"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/queue"
	"github.com/countersign/countersign/internal/tracing"
)

const (
	keyNew = "fake-callback-key-new"
	keyOld = "fake-callback-key-old"
)

type rig struct {
	q       *queue.Queue
	url     string
	metrics *metrics.Metrics
	logs    *bytes.Buffer
	dir     string
}

type rigOption func(*Options, *config.Server)

func newRig(t *testing.T, opts ...rigOption) *rig {
	t.Helper()
	dir := t.TempDir()
	d := config.Default()
	d.NATS.StoreDir = dir
	d.NATS.SyncAlways = false
	q, err := queue.Open(t.Context(), queue.Options{NATS: d.NATS, Queue: d.Queue})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	r := &rig{q: q, metrics: metrics.New(prometheus.NewRegistry()), logs: &bytes.Buffer{}, dir: dir}
	secrets := &logging.Secrets{}
	secrets.Add(keyNew, keyOld)
	o := Options{
		Tenants: map[string]*config.Tenant{
			"acme":  {CallbackKeys: []string{keyNew, keyOld}},
			"other": {CallbackKeys: []string{"fake-callback-key-other"}},
		},
		MaxBodyBytes: 4096,
		Publisher:    q,
		Metrics:      r.metrics,
		Logger:       logging.New(&syncWriter{w: r.logs}, logging.JSON, slog.LevelDebug, nil),
	}
	srv := d.Server
	for _, opt := range opts {
		opt(&o, &srv)
	}
	e, err := NewEcho(srv)
	if err != nil {
		t.Fatal(err)
	}
	New(o).Register(e)
	Health{Ready: q.Ready}.Register(e)
	ts := httptest.NewServer(e)
	t.Cleanup(ts.Close)
	r.url = ts.URL
	return r
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func payload(name, pkg string) string {
	return fmt.Sprintf(`{"@class":"com.silanis.esl.packages.event.ESLProcessEvent","name":%q,"sessionUser":"30ba8506","packageId":%q,"message":null,"documentId":null,"createdDate":"2020-08-21T14:12:34.544Z"}`, name, pkg)
}

type call struct {
	tenant, auth, contentType, body string
	xff                             string
}

func (r *rig) post(t *testing.T, c call) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, r.url+"/v1/callbacks/"+c.tenant, strings.NewReader(c.body))
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	if c.xff != "" {
		req.Header.Set("X-Forwarded-For", c.xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (r *rig) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	s, err := r.q.JetStream().Stream(t.Context(), queue.CallbacksStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

const jsonCT = "application/json; charset=utf-8"

func TestIngestAnswersEveryStatusOfTheContract(t *testing.T) {
	r := newRig(t)
	valid := payload("PACKAGE_COMPLETE", "LWsUTvGgE4WpOvaQPT16idnxNj8=")
	cases := []struct {
		name    string
		call    call
		status  int
		bodyHas string
		stored  bool
		outcome string
	}{
		{"accepted", call{"acme", "Basic " + keyNew, jsonCT, valid, ""}, 200, `"duplicate":false`, true, "accepted"},
		{"old key of a rotation", call{"acme", "Basic " + keyOld, "application/json", payload("PACKAGE_ACTIVATE", "p2"), ""}, 200, `"duplicate":false`, true, "accepted"},
		{"duplicate", call{"acme", "Basic " + keyNew, jsonCT, valid, ""}, 200, `"duplicate":true`, false, "duplicate"},
		{"wrong key", call{"acme", "Basic wrong-key-value", jsonCT, valid, ""}, 401, `{"error":"unauthorized"}`, false, "unauthorized"},
		{"other tenant's key", call{"acme", "Basic fake-callback-key-other", jsonCT, valid, ""}, 401, `{"error":"unauthorized"}`, false, "unauthorized"},
		{"missing key", call{"acme", "", jsonCT, valid, ""}, 401, `{"error":"unauthorized"}`, false, "unauthorized"},
		{"base64 user:pass is not the raw key", call{"acme", "Basic ZmFrZTpmYWtl", jsonCT, valid, ""}, 401, `{"error":"unauthorized"}`, false, "unauthorized"},
		{"unknown tenant", call{"nobody", "Basic " + keyNew, jsonCT, valid, ""}, 401, `{"error":"unauthorized"}`, false, "unauthorized"},
		{"not json", call{"acme", "Basic " + keyNew, "text/plain", valid, ""}, 415, "application/json", false, "invalid"},
		{"no content type", call{"acme", "Basic " + keyNew, "", valid, ""}, 415, "application/json", false, "invalid"},
		{"malformed", call{"acme", "Basic " + keyNew, jsonCT, `{"name":`, ""}, 400, "malformed JSON", false, "invalid"},
		{"missing packageId", call{"acme", "Basic " + keyNew, jsonCT, `{"name":"PACKAGE_COMPLETE","createdDate":"2020-08-21T14:12:34.544Z"}`, ""}, 400, "packageId is required", false, "invalid"},
		{"bad date", call{"acme", "Basic " + keyNew, jsonCT, `{"name":"X","packageId":"p","createdDate":"yesterday"}`, ""}, 400, "RFC 3339", false, "invalid"},
		{"too large", call{"acme", "Basic " + keyNew, jsonCT, `{"name":"X","packageId":"p","pad":"` + strings.Repeat("x", 5000) + `"}`, ""}, 413, "body over 4096 bytes", false, "too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := r.streamMsgs(t)
			resp, body := r.post(t, tc.call)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.bodyHas) {
				t.Fatalf("got %d %s, want %d with %q", resp.StatusCode, body, tc.status, tc.bodyHas)
			}
			if strings.Contains(body, "\n ") {
				t.Errorf("reason is not one line: %q", body)
			}
			after := r.streamMsgs(t)
			if stored := after == before+1; stored != tc.stored {
				t.Errorf("stored = %v (stream %d -> %d), want %v", stored, before, after, tc.stored)
			}
		})
	}
	if got := testutil.ToFloat64(r.metrics.CallbacksReceived.WithLabelValues("acme", "PACKAGE_COMPLETE", "duplicate")); got != 1 {
		t.Errorf("duplicate metric = %v", got)
	}
	if got := testutil.ToFloat64(r.metrics.CallbacksReceived.WithLabelValues(metrics.UnknownTenant, "none", "unauthorized")); got != 1 {
		t.Errorf("unknown tenant is not counted under %s: %v", metrics.UnknownTenant, got)
	}
	if got := testutil.ToFloat64(r.metrics.CallbacksReceived.WithLabelValues("acme", "PACKAGE_DECLINE", "accepted")); got != 0 {
		t.Errorf("pre-initialized series = %v", got)
	}
}

func TestIngestAnswerCarriesTheEventKey(t *testing.T) {
	r := newRig(t)
	_, body := r.post(t, call{"acme", "Basic " + keyNew, jsonCT, payload("PACKAGE_COMPLETE", "p1"), ""})
	var a Answer
	if err := json.Unmarshal([]byte(body), &a); err != nil || len(a.ID) != 64 {
		t.Fatalf("answer %s: %v", body, err)
	}
	s, _ := r.q.JetStream().Stream(t.Context(), queue.CallbacksStream)
	m, err := s.GetLastMsgForSubject(t.Context(), "callbacks.acme.PACKAGE_COMPLETE")
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Nats-Msg-Id") != a.ID {
		t.Errorf("stored msg id %q, answered %q", m.Header.Get("Nats-Msg-Id"), a.ID)
	}
}

func TestIngestLimitsAddressesThatKeepFailingAuth(t *testing.T) {
	r := newRig(t, func(o *Options, _ *config.Server) { o.MaxAuthFailures = 3 })
	bad := call{"acme", "Basic nope-nope-nope", jsonCT, payload("PACKAGE_COMPLETE", "p"), ""}
	for i := range 3 {
		// A spoofed X-Forwarded-For from an untrusted peer changes nothing.
		bad.xff = fmt.Sprintf("203.0.113.%d", i)
		if resp, _ := r.post(t, bad); resp.StatusCode != 401 {
			t.Fatalf("attempt %d: %d", i, resp.StatusCode)
		}
	}
	resp, _ := r.post(t, bad)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after 3 failures got %d (Retry-After %q), want 429", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Even the right key waits: the address is blocked, not the key.
	good := call{"acme", "Basic " + keyNew, jsonCT, payload("PACKAGE_COMPLETE", "p"), ""}
	if resp, _ := r.post(t, good); resp.StatusCode != 429 {
		t.Errorf("blocked address got %d", resp.StatusCode)
	}
}

func TestIngestBelievesForwardedForOnlyFromTrustedProxies(t *testing.T) {
	r := newRig(t, func(o *Options, s *config.Server) {
		o.MaxAuthFailures = 2
		s.TrustedProxies = []string{"127.0.0.1/32"}
	})
	bad := call{"acme", "Basic nope-nope-nope", jsonCT, payload("PACKAGE_COMPLETE", "p"), "198.51.100.7"}
	r.post(t, bad)
	r.post(t, bad)
	if resp, _ := r.post(t, bad); resp.StatusCode != 429 {
		t.Fatalf("client behind the proxy not limited: %d", resp.StatusCode)
	}
	other := call{"acme", "Basic " + keyNew, jsonCT, payload("PACKAGE_COMPLETE", "p"), "198.51.100.8"}
	if resp, body := r.post(t, other); resp.StatusCode != 200 {
		t.Errorf("another client behind the same proxy was blocked: %d %s", resp.StatusCode, body)
	}
}

func TestIngestAnswers503WhenQueueIsDownAndNever2xxForUnstoredEvents(t *testing.T) {
	r := newRig(t)
	const workers, perWorker = 8, 60
	var (
		mu       sync.Mutex
		accepted = map[string]bool{}
		codes    = map[int]int{}
		wg       sync.WaitGroup
		halfway  = make(chan struct{})
		once     sync.Once
	)
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				if w == 0 && i == perWorker/3 {
					once.Do(func() { close(halfway) })
				}
				body := payload("PACKAGE_COMPLETE", fmt.Sprintf("pkg-%d-%d", w, i))
				req, _ := http.NewRequest(http.MethodPost, r.url+"/v1/callbacks/acme", strings.NewReader(body))
				req.Header.Set("Authorization", "Basic "+keyNew)
				req.Header.Set("Content-Type", jsonCT)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				if resp.StatusCode == 200 {
					var a Answer
					_ = json.Unmarshal(b, &a)
					accepted[a.ID] = true
				} else if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
				mu.Unlock()
			}
		}()
	}
	<-halfway
	r.q.EmbeddedServer().Shutdown() // NATS dies mid-load
	wg.Wait()
	if codes[503] == 0 || codes[200] == 0 {
		t.Fatalf("want both 200s and 503s, got %v", codes)
	}
	for code := range codes {
		if code != 200 && code != 503 {
			t.Errorf("unexpected status %d", code)
		}
	}
	if resp, _ := http.Get(r.url + "/readyz"); resp.StatusCode != 503 {
		t.Errorf("readyz = %d with NATS down", resp.StatusCode)
	}

	// Reopen the same store: every answered 2xx must be there.
	r.q.Close()
	d := config.Default()
	d.NATS.StoreDir = r.dir
	q2, err := queue.Open(t.Context(), queue.Options{NATS: d.NATS, Queue: d.Queue})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	stored := storedIDs(t, q2)
	for id := range accepted {
		if !stored[id] {
			t.Errorf("answered 200 for %s but it is not in the stream", id)
		}
	}
	t.Logf("codes %v, stored %d", codes, len(stored))
}

func storedIDs(t *testing.T, q *queue.Queue) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := q.JetStream().Stream(ctx, queue.CallbacksStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	ids := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		ids[m.Header.Get("Nats-Msg-Id")] = true
	}
	return ids
}

func TestHealthAndReadiness(t *testing.T) {
	r := newRig(t)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		resp, err := http.Get(r.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d", path, resp.StatusCode)
		}
	}
}

func TestLogsNeverContainTheCallbackKey(t *testing.T) {
	r := newRig(t)
	r.post(t, call{"acme", "Basic " + keyNew, jsonCT, payload("PACKAGE_COMPLETE", "p1"), ""})
	r.post(t, call{"acme", "Basic " + keyOld + "x", jsonCT, payload("PACKAGE_COMPLETE", "p1"), ""})
	r.post(t, call{"nobody", "Basic " + keyNew, jsonCT, payload("PACKAGE_COMPLETE", "p1"), ""})
	r.post(t, call{"acme", "Basic " + keyNew, jsonCT, `{"name":"` + keyNew + `"`, ""})
	out := r.logs.String()
	if !strings.Contains(out, "callback stored") || !strings.Contains(out, "callback refused") {
		t.Fatalf("expected log lines missing:\n%s", out)
	}
	for _, k := range []string{keyNew, keyOld} {
		if strings.Contains(out, k) {
			t.Errorf("log contains a callback key:\n%s", out)
		}
	}
}

func TestLogLinesCarryTheTraceID(t *testing.T) {
	r := newRig(t)
	shutdown, err := tracing.Setup(t.Context(), "", "test")
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t.Context())
	var buf syncWriter
	buf.w = &bytes.Buffer{}
	e, _ := NewEcho(config.Default().Server)
	log := slog.New(tracing.LogHandler{Handler: logging.New(&buf, logging.JSON, slog.LevelInfo, nil).Handler()})
	New(Options{Tenants: map[string]*config.Tenant{"acme": {CallbackKeys: []string{keyNew}}}, MaxBodyBytes: 4096,
		Publisher: r.q, Metrics: metrics.New(prometheus.NewRegistry()), Logger: log}).Register(e)
	ts := httptest.NewServer(e)
	defer ts.Close()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/callbacks/acme", strings.NewReader(payload("PACKAGE_COMPLETE", "traced")))
	req.Header.Set("Authorization", "Basic "+keyNew)
	req.Header.Set("Content-Type", jsonCT)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	buf.mu.Lock()
	out := buf.w.(*bytes.Buffer).String()
	buf.mu.Unlock()
	if !strings.Contains(out, `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`) {
		t.Errorf("the stored-callback log line lacks the caller's trace id:\n%s", out)
	}
	// And the stored message carries it on to the worker.
	s, _ := r.q.JetStream().Stream(t.Context(), queue.CallbacksStream)
	m, _ := s.GetLastMsgForSubject(t.Context(), "callbacks.acme.PACKAGE_COMPLETE")
	if !strings.Contains(m.Header.Get("traceparent"), "4bf92f3577b34da6a3ce929d0e0e4736") {
		t.Errorf("traceparent header = %q", m.Header.Get("traceparent"))
	}
}
