package onespan_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/callback"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
)

// received is one request as a listener saw it.
type received struct {
	header http.Header
	body   string
}

// listener records callbacks and answers with status.
type listener struct {
	mu     sync.Mutex
	got    []received
	status int
}

func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	l.mu.Lock()
	l.got = append(l.got, received{header: r.Header.Clone(), body: string(b)})
	st := l.status
	l.mu.Unlock()
	w.WriteHeader(st)
}

func (l *listener) requests() []received {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]received(nil), l.got...)
}

func setup(t *testing.T) (*ossandbox.Server, *listener, string) {
	t.Helper()
	l := &listener{status: http.StatusOK}
	srv := httptest.NewServer(l)
	t.Cleanup(srv.Close)
	sb := ossandbox.New(ossandbox.Options{APIKeys: []string{"fake-api-key"}, SenderID: "sender1"})
	sb.SetCallback(srv.URL+"/v1/callbacks/acme", "fake-callback-key", ossandbox.Events)
	return sb, l, srv.URL
}

var createdDate = regexp.MustCompile(`"createdDate":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"}$`)

func TestLifecycleSendsCallbacksLikeOneSpan(t *testing.T) {
	sb, l, _ := setup(t)
	sb.SetClock(func() time.Time { return time.Date(2020, 8, 21, 14, 12, 34, 544e6, time.UTC) })
	sb.AddPackage(ossandbox.Package{ID: "LWsUTvGgE4WpOvaQPT16idnxNj8=", Documents: []ossandbox.Document{{ID: "doc1"}},
		Signers: []ossandbox.Signer{{ID: "signer-a"}, {ID: "signer-b"}}})
	ctx := context.Background()
	id := "LWsUTvGgE4WpOvaQPT16idnxNj8="
	for _, step := range []func() error{
		func() error { return sb.Activate(ctx, id) },
		func() error { return sb.SignDocument(ctx, id, "doc1", "signer-a") },
		func() error { return sb.Complete(ctx, id) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	got := l.requests()
	if len(got) != 3 {
		t.Fatalf("got %d callbacks, want 3", len(got))
	}
	h := got[0].header
	if h.Get("Authorization") != "Basic fake-callback-key" || h.Get("Content-Type") != "application/json; charset=utf-8" || h.Get("User-Agent") != "" {
		t.Fatalf("headers = %v", h)
	}
	want0 := `{"@class":"com.silanis.esl.packages.event.ESLProcessEvent","name":"PACKAGE_ACTIVATE","sessionUser":"sender1","packageId":"LWsUTvGgE4WpOvaQPT16idnxNj8=","message":null,"documentId":null,"createdDate":"2020-08-21T14:12:34.544Z"}`
	if got[0].body != want0 {
		t.Fatalf("body:\n got %s\nwant %s", got[0].body, want0)
	}
	if !strings.Contains(got[1].body, `"name":"DOCUMENT_SIGNED","sessionUser":"signer-a"`) || !strings.Contains(got[1].body, `"documentId":"doc1"`) {
		t.Fatalf("document signed: %s", got[1].body)
	}
	if !strings.Contains(got[2].body, `"name":"PACKAGE_COMPLETE","sessionUser":"signer-b"`) || !createdDate.MatchString(got[2].body) {
		t.Fatalf("complete: %s", got[2].body)
	}
	for _, r := range got {
		ev, err := callback.Parse([]byte(r.body))
		if err != nil || ev.PackageID != id || ev.Created.IsZero() {
			t.Fatalf("the listener's parser refuses the emulator's callback %s: %v", r.body, err)
		}
	}
	p, _ := sb.Package(id)
	if p.Status != "COMPLETED" || p.Completed.IsZero() {
		t.Fatalf("package after complete: %+v", p)
	}
}

func TestDeclineCarriesTheReason(t *testing.T) {
	sb, l, _ := setup(t)
	sb.AddPackage(ossandbox.Package{ID: "p", Status: "SENT", Signers: []ossandbox.Signer{{ID: "s1"}}})
	if err := sb.Decline(context.Background(), "p", "wrong address"); err != nil {
		t.Fatal(err)
	}
	got := l.requests()
	if len(got) != 1 || !strings.Contains(got[0].body, `"name":"PACKAGE_DECLINE","sessionUser":"s1","packageId":"p","message":"wrong address"`) {
		t.Fatalf("callbacks: %+v", got)
	}
	if p, _ := sb.Package("p"); p.Status != "DECLINED" || len(p.Messages) != 1 {
		t.Fatalf("package: %+v", p)
	}
}

func TestOnlySubscribedEventsAreSent(t *testing.T) {
	sb, l, url := setup(t)
	sb.SetCallback(url+"/v1/callbacks/acme", "fake-callback-key", []string{"PACKAGE_COMPLETE"})
	ctx := context.Background()
	_ = sb.CreatePackage(ctx, ossandbox.Package{ID: "p"})
	_ = sb.Activate(ctx, "p")
	_ = sb.Complete(ctx, "p")
	if got := l.requests(); len(got) != 1 || !strings.Contains(got[0].body, "PACKAGE_COMPLETE") {
		t.Fatalf("callbacks: %+v", got)
	}
}

func TestHeldCallbacksAreRecordedNotSent(t *testing.T) {
	sb, l, _ := setup(t)
	sb.AddPackage(ossandbox.Package{ID: "p"})
	sb.HoldCallbacks(true)
	ctx := context.Background()
	_ = sb.Activate(ctx, "p")
	_ = sb.Expire(ctx, "p")
	if len(l.requests()) != 0 || len(sb.Held()) != 2 {
		t.Fatalf("sent %d, held %d", len(l.requests()), len(sb.Held()))
	}
	if p, _ := sb.Package("p"); p.Status != "EXPIRED" {
		t.Fatalf("status %s: the package must still change while callbacks are held", p.Status)
	}
}

func TestRefusedCallbackIsReportedAndNotResent(t *testing.T) {
	sb, l, _ := setup(t)
	l.status = http.StatusServiceUnavailable
	sb.AddPackage(ossandbox.Package{ID: "p"})
	if err := sb.Activate(context.Background(), "p"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Activate: %v", err)
	}
	if len(sb.Failed()) != 1 || len(sb.Sent()) != 0 || len(l.requests()) != 1 {
		t.Fatalf("failed %d sent %d delivered %d", len(sb.Failed()), len(sb.Sent()), len(l.requests()))
	}
}

func TestSendCallbackWithoutKeyHasNoAuthorization(t *testing.T) {
	l := &listener{status: http.StatusOK}
	srv := httptest.NewServer(l)
	defer srv.Close()
	ev := ossandbox.NewEvent("PACKAGE_COMPLETE", "u", "p", "", "", time.Now())
	if err := ossandbox.SendCallback(context.Background(), srv.URL, "", ev); err != nil {
		t.Fatal(err)
	}
	if got := l.requests(); len(got) != 1 || got[0].header.Get("Authorization") != "" {
		t.Fatalf("got %+v", got)
	}
}

func TestContentIsDeterministicPDFOfExactSize(t *testing.T) {
	for _, size := range []int64{0, 5, 20, 100, 70_000} {
		a, _ := io.ReadAll(ossandbox.Content("p", "d", size))
		b, _ := io.ReadAll(ossandbox.Content("p", "d", size))
		if int64(len(a)) != size || !bytes.Equal(a, b) {
			t.Fatalf("size %d: got %d bytes, deterministic %v", size, len(a), bytes.Equal(a, b))
		}
		if size >= 100 && (!bytes.HasPrefix(a, []byte("%PDF-1.7\n")) || !bytes.HasSuffix(a, []byte("%%EOF\n"))) {
			t.Fatalf("size %d: not PDF-looking: %q...%q", size, a[:10], a[len(a)-8:])
		}
	}
	x, _ := io.ReadAll(ossandbox.Content("p", "d1", 1000))
	y, _ := io.ReadAll(ossandbox.Content("p", "d2", 1000))
	if bytes.Equal(x, y) {
		t.Fatal("different documents have the same content")
	}
}

func TestAPIAnswersOneSpanShapes(t *testing.T) {
	sb := ossandbox.New(ossandbox.Options{APIKeys: []string{"fake-api-key"}})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	get := func(path, auth string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := get("/api/callback", ""); resp.StatusCode != 401 || !strings.Contains(body, `"messageKey"`) {
		t.Fatalf("no auth: %d %s", resp.StatusCode, body)
	}
	if resp, body := get("/api/callback", "Basic fake-api-key"); resp.StatusCode != 200 || !strings.Contains(body, `"events":[]`) {
		t.Fatalf("fresh callback: %d %s", resp.StatusCode, body)
	}
	sb.AddPackage(ossandbox.Package{ID: "p", Documents: []ossandbox.Document{{ID: "d", Size: 1234}}})
	if resp, body := get("/api/packages/p", "Basic fake-api-key"); resp.StatusCode != 200 || !strings.Contains(body, `"id":"default-consent"`) {
		t.Fatalf("package: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get("/api/packages/p/documents/d/pdf", "Basic fake-api-key"); resp.ContentLength != 1234 {
		t.Fatalf("pdf content length %d", resp.ContentLength)
	}
	if resp, _ := get("/api/packages/p?x", "Bearer nope"); resp.StatusCode != 401 {
		t.Fatalf("unknown token: %d", resp.StatusCode)
	}
}
