package onespan_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/fault"
	"github.com/countersign/countersign/internal/onespan"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
)

const (
	fakeAPIKey   = "fake-api-key"
	fakeClientID = "fake-client-id"
	fakeSecret   = "fake-client-secret-do-not-log"
)

// startSandbox runs the emulator on loopback for the test's lifetime.
func startSandbox(t *testing.T, o ossandbox.Options) (*ossandbox.Server, string) {
	t.Helper()
	sb := ossandbox.New(o)
	base, err := sb.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	return sb, base
}

func apiKeyClient(t *testing.T) (*ossandbox.Server, *onespan.Client) {
	t.Helper()
	sb, base := startSandbox(t, ossandbox.Options{APIKeys: []string{fakeAPIKey}})
	c, err := onespan.New(onespan.Config{BaseURL: base, APIKey: fakeAPIKey})
	if err != nil {
		t.Fatal(err)
	}
	return sb, c
}

func clientAppClient(t *testing.T, lifetime time.Duration, log *slog.Logger) (*ossandbox.Server, *onespan.Client) {
	t.Helper()
	sb, base := startSandbox(t, ossandbox.Options{
		ClientApps: map[string]string{fakeClientID: fakeSecret}, TokenLifetime: lifetime,
	})
	c, err := onespan.New(onespan.Config{BaseURL: base, ClientID: fakeClientID, ClientSecret: fakeSecret, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return sb, c
}

func TestNewRefusesBothOrNeitherAuth(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  onespan.Config
		want string
	}{
		{"both", onespan.Config{BaseURL: "https://x", APIKey: "k", ClientID: "i", ClientSecret: "s"}, "not both"},
		{"neither", onespan.Config{BaseURL: "https://x"}, "no credentials"},
		{"half client app", onespan.Config{BaseURL: "https://x", ClientID: "i"}, "both client id and secret"},
		{"relative base url", onespan.Config{BaseURL: "apps.esignlive.com", APIKey: "k"}, "absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := onespan.New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: got %v, want error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s\"") || strings.Contains(err.Error(), ": k") {
				t.Fatalf("error leaks a credential: %v", err)
			}
		})
	}
}

func TestGetPackageListsConsentAndSignedDocuments(t *testing.T) {
	sb, c := apiKeyClient(t)
	sb.AddPackage(ossandbox.Package{ID: "pkg1", Name: "Lease", Documents: []ossandbox.Document{{ID: "doc1", Name: "Lease"}}})
	p, err := c.GetPackage(context.Background(), "pkg1")
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "pkg1" || p.Name != "Lease" || p.Status != onespan.StatusDraft || p.Updated.IsZero() {
		t.Fatalf("package = %+v", p)
	}
	if len(p.Documents) != 2 || !onespan.IsConsentDocument(p.Documents[0].ID) {
		t.Fatalf("documents = %+v, want consent then doc1", p.Documents)
	}
	if sd := p.SignedDocuments(); len(sd) != 1 || sd[0].ID != "doc1" {
		t.Fatalf("SignedDocuments = %+v", sd)
	}
}

func TestPackageIDIsPathEscaped(t *testing.T) {
	sb, c := apiKeyClient(t)
	ids := []string{"LWsUTvGgE4WpOvaQPT16idnxNj8=", "xT9OeZ-j2jIynQBaLeLdgp9CtZk=", "a_b-c=", "with/slash+plus?q#h"}
	for _, id := range ids {
		sb.AddPackage(ossandbox.Package{ID: id, Documents: []ossandbox.Document{{ID: "d/1=", Size: 100}}})
	}
	ctx := context.Background()
	for _, id := range ids {
		p, err := c.GetPackage(ctx, id)
		if err != nil {
			t.Fatalf("GetPackage(%q): %v", id, err)
		}
		if p.ID != id {
			t.Fatalf("GetPackage(%q) returned %q", id, p.ID)
		}
		rc, n, err := c.DocumentPDF(ctx, id, "d/1=")
		if err != nil {
			t.Fatalf("DocumentPDF(%q): %v", id, err)
		}
		_, _ = io.Copy(io.Discard, rc)
		_ = rc.Close()
		if n != 100 {
			t.Fatalf("size = %d", n)
		}
	}
	uris := strings.Join(sb.RequestURIs(), "\n")
	if !strings.Contains(uris, "/api/packages/with%2Fslash+plus%3Fq%23h/documents/d%2F1=/pdf") {
		t.Fatalf("ids not escaped as path segments:\n%s", uris)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	sb, c := apiKeyClient(t)
	ctx := context.Background()

	_, err := c.GetPackage(ctx, "missing")
	if !fault.Is(err, fault.Permanent) || onespan.StatusCode(err) != 404 || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("404: got %v (class %v)", err, fault.ClassOf(err))
	}

	sb.SetFailureRate(1)
	_, err = c.GetPackage(ctx, "missing")
	if !fault.Is(err, fault.Retryable) || onespan.StatusCode(err) != 503 {
		t.Fatalf("503: got %v (class %v)", err, fault.ClassOf(err))
	}
	sb.SetFailureRate(0)

	sb.SetThrottled(7 * time.Second)
	before := time.Now()
	_, err = c.GetPackage(ctx, "missing")
	until, ok := fault.ThrottledUntil(err)
	if !ok || until.Before(before.Add(6*time.Second)) || until.After(time.Now().Add(8*time.Second)) {
		t.Fatalf("429: got %v until %v", err, until)
	}
	sb.SetThrottled(0)

	bad, _ := onespan.New(onespan.Config{BaseURL: sb.URL(), APIKey: "fake-wrong-key"})
	_, err = bad.GetPackage(ctx, "missing")
	if !fault.Is(err, fault.Permanent) || !strings.Contains(err.Error(), "api key") || strings.Contains(err.Error(), "fake-wrong-key") {
		t.Fatalf("401: got %v (class %v)", err, fault.ClassOf(err))
	}
}

func TestConnectionErrorsAndTimeoutsAreRetryable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	c, _ := onespan.New(onespan.Config{BaseURL: "http://" + addr, APIKey: fakeAPIKey})
	if _, err := c.GetPackage(context.Background(), "p"); !fault.Is(err, fault.Retryable) {
		t.Fatalf("connection refused: got %v (class %v)", err, fault.ClassOf(err))
	}

	sb, c := apiKeyClient(t)
	sb.SetLatency(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.GetPackage(ctx, "p"); !fault.Is(err, fault.Retryable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: got %v (class %v)", err, fault.ClassOf(err))
	}
}

func TestStreamingALargeDocumentDoesNotBuffer(t *testing.T) {
	const size = 200 << 20
	sb, c := apiKeyClient(t)
	sb.AddPackage(ossandbox.Package{ID: "big=", Documents: []ossandbox.Document{{ID: "doc-1", Size: size}}})
	want := ossandbox.ExpectedSHA256("big=", "doc-1", size)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rc, n, err := c.DocumentPDF(context.Background(), "big=", "doc-1")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	head := make([]byte, 8)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	h.Write(head)
	got, err := io.Copy(h, rc)
	_ = rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)

	if n != size || got+8 != size {
		t.Fatalf("size: header %d, read %d, want %d", n, got+8, size)
	}
	if string(head) != "%PDF-1.7" {
		t.Fatalf("head = %q", head)
	}
	if hex.EncodeToString(h.Sum(nil)) != want {
		t.Fatal("content differs from ExpectedSHA256")
	}
	// Server and client both run here: all their allocations together must
	// stay far below the document size.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Fatalf("allocated %d MiB to stream %d MiB: something buffers", alloc>>20, size>>20)
	}
}

func TestEvidenceSummaryStreams(t *testing.T) {
	sb, c := apiKeyClient(t)
	sb.AddPackage(ossandbox.Package{ID: "p-1", EvidenceSize: 5000})
	rc, n, err := c.EvidenceSummary(context.Background(), "p-1")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	sum := sha256.Sum256(b)
	if n != 5000 || hex.EncodeToString(sum[:]) != ossandbox.ExpectedSHA256("p-1", ossandbox.EvidenceSummaryDocID, 5000) {
		t.Fatalf("evidence: n=%d len=%d", n, len(b))
	}
	if !bytes.HasPrefix(b, []byte("%PDF-")) || !bytes.HasSuffix(b, []byte("%%EOF\n")) {
		t.Fatal("evidence is not PDF-looking")
	}
}

func TestListPackagesFiltersByStatusAndUpdatedRangeAndPages(t *testing.T) {
	sb, c := apiKeyClient(t)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 9 {
		status := "COMPLETED"
		if i%3 == 0 {
			status = "SENT"
		}
		sb.AddPackage(ossandbox.Package{ID: "p" + string(rune('a'+i)), Status: status, Updated: base.Add(time.Duration(i) * time.Hour)})
	}
	ctx := context.Background()
	// Completed, updated in [base+1h, base+7h]: b c e f h.
	opts := onespan.ListOptions{Status: "COMPLETED", UpdatedFrom: base.Add(time.Hour), UpdatedTo: base.Add(7 * time.Hour)}
	page, err := c.ListPackages(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if page.Count != 5 || len(page.Results) != 5 {
		t.Fatalf("count %d, results %d, want 5", page.Count, len(page.Results))
	}
	var seen []string
	if err := c.EachPackage(ctx, opts, 2, func(p *onespan.Package) error {
		seen = append(seen, p.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "ph,pf,pe,pc,pb" {
		t.Fatalf("paged walk = %v", seen)
	}
	uris := strings.Join(sb.RequestURIs(), "\n")
	for _, q := range []string{"query=COMPLETED", "from=3", "to=4", "lastUpdatedStartDate=2026-03-01T13%3A00%3A00Z", "lastUpdatedEndDate=2026-03-01T19%3A00%3A00Z"} {
		if !strings.Contains(uris, q) {
			t.Fatalf("listing query lacks %q:\n%s", q, uris)
		}
	}
}

func TestClientAppTokenIsFetchedOnceAndReused(t *testing.T) {
	sb, c := clientAppClient(t, 30*time.Minute, nil)
	sb.AddPackage(ossandbox.Package{ID: "p"})
	for range 20 {
		if _, err := c.GetPackage(context.Background(), "p"); err != nil {
			t.Fatal(err)
		}
	}
	if n := sb.TokenRequests(); n != 1 {
		t.Fatalf("token requests = %d, want 1", n)
	}
}

func TestClientAppTokenIsRefreshedBeforeExpiryUnderConcurrentUse(t *testing.T) {
	const lifetime = 1200 * time.Millisecond
	sb, c := clientAppClient(t, lifetime, nil)
	sb.AddPackage(ossandbox.Package{ID: "p"})
	ctx := context.Background()
	end := time.Now().Add(2500 * time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	calls := 0
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			for time.Now().Before(end) {
				if _, err := c.GetPackage(ctx, "p"); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				calls++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// About one token per half lifetime, however many callers: never one per call.
	n := sb.TokenRequests()
	if n < 2 || n > 8 {
		t.Fatalf("token requests = %d over %d calls, want 2..8", n, calls)
	}
	// Refreshing only after expiry would cost up to 50 refused calls per
	// lifetime; a stalled goroutine on a loaded machine may cost one or two.
	if u := sb.Unauthorized(); u > 3 {
		t.Fatalf("%d requests used an expired token: refresh came too late", u)
	}
	t.Logf("%d calls, %d token requests", calls, n)
}

func TestClientApp401RefreshesOnceAndRetriesOnce(t *testing.T) {
	sb, c := clientAppClient(t, 30*time.Minute, nil)
	sb.AddPackage(ossandbox.Package{ID: "p"})
	ctx := context.Background()
	if _, err := c.GetPackage(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	sb.ExpireTokens()
	apiBefore := sb.APIRequests()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := c.GetPackage(ctx, "p"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := sb.TokenRequests(); n != 2 {
		t.Fatalf("token requests = %d, want 2 (one refresh shared by all callers)", n)
	}
	// Each caller: at most one refused attempt and one retry.
	if n := sb.APIRequests() - apiBefore; n > 40 || n < 21 {
		t.Fatalf("api requests = %d for 20 calls", n)
	}
}

func TestClientAppRefusedAfterOneRetryIsPermanent(t *testing.T) {
	sb, c := clientAppClient(t, 30*time.Minute, nil)
	sb.AddPackage(ossandbox.Package{ID: "p"})
	sb.SetTokenLifetime(-time.Minute) // every token is dead on arrival
	_, err := c.GetPackage(context.Background(), "p")
	if !fault.Is(err, fault.Permanent) || !strings.Contains(err.Error(), "client app "+fakeClientID) {
		t.Fatalf("got %v (class %v)", err, fault.ClassOf(err))
	}
	if sb.TokenRequests() != 2 || sb.Unauthorized() != 2 {
		t.Fatalf("token requests %d, 401s %d: want exactly one refresh and one retry", sb.TokenRequests(), sb.Unauthorized())
	}
}

func TestWrongClientSecretSaysClientAppAndHidesSecret(t *testing.T) {
	_, base := startSandbox(t, ossandbox.Options{ClientApps: map[string]string{fakeClientID: "fake-other-secret"}})
	c, _ := onespan.New(onespan.Config{BaseURL: base, ClientID: fakeClientID, ClientSecret: fakeSecret})
	_, err := c.GetPackage(context.Background(), "p")
	if !fault.Is(err, fault.Permanent) || !strings.Contains(err.Error(), "client app") {
		t.Fatalf("got %v (class %v)", err, fault.ClassOf(err))
	}
	if strings.Contains(err.Error(), fakeSecret) {
		t.Fatalf("error contains the secret: %v", err)
	}
}

func TestNoSecretOrTokenInLogs(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sb, c := clientAppClient(t, 30*time.Minute, log)
	sb.AddPackage(ossandbox.Package{ID: "p"})
	ctx := context.Background()
	var errs []error
	for range 3 {
		_, err := c.GetPackage(ctx, "p")
		errs = append(errs, err)
		sb.ExpireTokens() // force refreshes, the path most likely to log
	}
	sb.AddClientApp(fakeClientID, "fake-rotated-secret") // the next token request fails
	sb.ExpireTokens()
	_, err := c.GetPackage(ctx, "p")
	errs = append(errs, err)
	if err == nil {
		t.Fatal("want an error after the secret was rotated")
	}

	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "token") {
		t.Fatalf("expected token log lines, got:\n%s", out)
	}
	secrets := append([]string{fakeSecret}, sb.IssuedTokens()...)
	if len(secrets) < 4 {
		t.Fatalf("expected several tokens, got %d", len(secrets)-1)
	}
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Fatalf("log output contains a secret or token %q:\n%s", s, out)
		}
		for _, e := range errs {
			if e != nil && strings.Contains(e.Error(), s) {
				t.Fatalf("error contains a secret or token: %v", e)
			}
		}
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
