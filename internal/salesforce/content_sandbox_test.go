package salesforce

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/countersign/countersign/internal/fault"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// patternReader yields n deterministic pseudo-random bytes (xorshift64)
// without holding them: a stand-in for a signed PDF of any size.
type patternReader struct {
	left  int64
	state uint64
}

func newPattern(n int64) *patternReader { return &patternReader{left: n, state: 0x9E3779B97F4A7C15} }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	var word [8]byte
	for i := 0; i < len(b); i += 8 {
		p.state ^= p.state << 13
		p.state ^= p.state >> 7
		p.state ^= p.state << 17
		binary.LittleEndian.PutUint64(word[:], p.state)
		copy(b[i:], word[:])
	}
	p.left -= int64(len(b))
	return len(b), nil
}

// hashing tees what is read into a hash.
type hashing struct {
	r io.Reader
	h hash.Hash
}

func (h hashing) Read(b []byte) (int, error) {
	n, err := h.r.Read(b)
	h.h.Write(b[:n])
	return n, err
}

// peakHeap samples HeapInuse until stop is called and returns the maximum.
func peakHeap() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 { close(done); <-finished; return peak.Load() }
}

func TestLargeFileStreamsWithoutGrowingMemory(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions()) // keeps no file bytes: size and hashes only
	ctx := testCtx(t)
	tr, err := e.c.Upsert(ctx, "OneSpan_Transaction__c", "Package_Id__c", "pkg-big", map[string]any{"Status__c": "COMPLETED"})
	if err != nil {
		t.Fatal(err)
	}
	const size = 256 << 20
	src := hashing{r: newPattern(size), h: sha256.New()}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	stop := peakHeap()
	id, err := e.c.InsertContentVersion(ctx, map[string]any{
		"Title":                   "contract",
		"FirstPublishLocationId":  tr.ID,
		"OneSpan_Document_Key__c": "pkg-big/doc-1",
	}, "contract.pdf", src)
	peak := stop()
	if err != nil {
		t.Fatal(err)
	}
	growth := int64(peak) - int64(before.HeapInuse)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	t.Logf("256 MiB upload: heap in use %d MiB before, peak %d MiB; %d MiB allocated in all (client and sandbox)",
		before.HeapInuse>>20, peak>>20, (after.TotalAlloc-before.TotalAlloc)>>20)
	// Generous bounds: buffering the file, even briefly, needs >= 256 MiB.
	if growth > 48<<20 {
		t.Fatalf("heap grew by %d MiB while streaming 256 MiB", growth>>20)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Fatalf("%d MiB allocated while streaming 256 MiB", alloc>>20)
	}

	files := e.srv.ContentVersions()
	if len(files) != 1 {
		t.Fatalf("%d files in the org", len(files))
	}
	f := files[0]
	if f.ID != id || f.Size != size || f.SHA256 != hex.EncodeToString(src.h.Sum(nil)) {
		t.Fatalf("stored file = id %s size %d sha %s; want id %s size %d", f.ID, f.Size, f.SHA256, id, size)
	}
	if f.PathOnClient != "contract.pdf" || f.Title != "contract" || f.FirstPublishLocationID != tr.ID {
		t.Fatalf("stored fields = %+v", f)
	}
}

func TestRetriedUploadFindsTheEarlierFile(t *testing.T) {
	opts := sfsandbox.DefaultOptions()
	opts.StoreContentBytesUpTo = 1 << 20
	e := newEnv(t, opts)
	ctx := testCtx(t)
	tr, err := e.c.Upsert(ctx, "OneSpan_Transaction__c", "Package_Id__c", "pkg-1", map[string]any{"Status__c": "COMPLETED"})
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]any{"Title": "evidence", "FirstPublishLocationId": tr.ID, "OneSpan_Document_Key__c": "pkg-1/evidence-summary"}

	if _, found, err := e.c.FindContentVersion(ctx, "", "pkg-1/evidence-summary"); err != nil || found {
		t.Fatalf("before upload: found=%v err=%v", found, err)
	}
	id, err := e.c.InsertContentVersion(ctx, fields, "evidence.pdf", strings.NewReader("%PDF-1.7 evidence"))
	if err != nil {
		t.Fatal(err)
	}
	ref, found, err := e.c.FindContentVersion(ctx, "OneSpan_Document_Key__c", "pkg-1/evidence-summary")
	if err != nil || !found || ref.ID != id || ref.ContentDocumentID == "" {
		t.Fatalf("find = %+v, %v, %v; want %s", ref, found, err, id)
	}
	if f, ok := e.srv.FindContentVersion("OneSpan_Document_Key__c", "pkg-1/evidence-summary"); !ok || string(f.Data) != "%PDF-1.7 evidence" || f.ContentDocumentID != ref.ContentDocumentID {
		t.Fatalf("stored file = %+v", f)
	}

	// The retry of an upload that had committed: a unique key refuses it and
	// names the file that exists.
	_, err = e.c.InsertContentVersion(ctx, fields, "evidence.pdf", strings.NewReader("%PDF-1.7 evidence"))
	if !fault.Is(err, fault.Permanent) || Code(err) != CodeDuplicateValue {
		t.Fatalf("second upload: %v, want DUPLICATE_VALUE", err)
	}
	if dup, ok := DuplicateRecordID(err); !ok || dup != id {
		t.Fatalf("duplicate id = %q, %v; want %s", dup, ok, id)
	}
	if n := len(e.srv.ContentVersions()); n != 1 {
		t.Fatalf("%d files, want 1", n)
	}
}

// refreshing is a stand-in for the production transport: on 401 it gets a
// new token and replays once, if the request can be replayed.
type refreshing struct {
	mu      sync.Mutex
	token   string
	mint    func() string
	replays int
}

func (rt *refreshing) send(r *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	tok := rt.token
	rt.mu.Unlock()
	r.Header.Set("Authorization", "Bearer "+tok)
	return http.DefaultTransport.RoundTrip(r)
}

func (rt *refreshing) RoundTrip(r *http.Request) (*http.Response, error) {
	first := r.Clone(r.Context())
	resp, err := rt.send(first)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || r.GetBody == nil && r.Body != nil {
		return resp, err
	}
	resp.Body.Close()
	again := r.Clone(r.Context())
	if r.GetBody != nil {
		body, err := r.GetBody()
		if err != nil {
			return nil, err
		}
		again.Body = body
	}
	rt.mu.Lock()
	rt.token = rt.mint()
	rt.replays++
	rt.mu.Unlock()
	return rt.send(again)
}

func TestUploadFromReopenableSourceIsReplayedAfterRefresh(t *testing.T) {
	srv := sfsandbox.NewTestServer(t, sfsandbox.DefaultOptions())
	access, _ := srv.IssueTokens("api refresh_token")
	rt := &refreshing{token: access, mint: func() string { a, _ := srv.IssueTokens("api refresh_token"); return a }}
	c := New(Config{InstanceURL: srv.URL(), HTTPClient: &http.Client{Transport: rt}})
	ctx := testCtx(t)
	srv.ExpireAccessTokens()

	const size = 3 << 20
	var opens, closes atomic.Int32
	open := func() (io.ReadCloser, error) {
		opens.Add(1)
		return closeCounter{Reader: newPattern(size), n: &closes}, nil
	}
	id, err := c.InsertContentVersionFrom(ctx, map[string]any{"Title": "signed", "OneSpan_Document_Key__c": "pkg-2/doc-1"}, "signed.pdf", open)
	if err != nil {
		t.Fatal(err)
	}
	if rt.replays != 1 || opens.Load() != 2 || closes.Load() != 2 {
		t.Fatalf("replays=%d opens=%d closes=%d; want 1, 2, 2", rt.replays, opens.Load(), closes.Load())
	}
	f, ok := srv.FindContentVersion("OneSpan_Document_Key__c", "pkg-2/doc-1")
	if !ok || f.ID != id || f.Size != size {
		t.Fatalf("stored file = %+v", f)
	}

	// A one-shot reader cannot be replayed: the transport must not try, and
	// the caller learns that the session expired.
	srv.ExpireAccessTokens()
	_, err = c.InsertContentVersion(ctx, map[string]any{"Title": "x", "OneSpan_Document_Key__c": "pkg-2/doc-2"}, "x.pdf", newPattern(size))
	if !fault.Is(err, fault.AuthExpired) {
		t.Fatalf("one-shot upload after expiry: %v, want auth expired", err)
	}
	if rt.replays != 1 {
		t.Fatalf("the transport replayed a one-shot body")
	}
}

func TestSourceFailureKeepsItsClass(t *testing.T) {
	e := newEnv(t, sfsandbox.DefaultOptions())
	gone := fault.Errorf(fault.Retryable, "onespan download doc-1", "connection reset")
	body := io.MultiReader(newPattern(1<<20), errReader{gone})
	_, err := e.c.InsertContentVersion(testCtx(t), map[string]any{"Title": "x"}, "x.pdf", body)
	if !errors.Is(err, gone) || !fault.Is(err, fault.Retryable) {
		t.Fatalf("got %v, want the source's error", err)
	}
	if n := len(e.srv.ContentVersions()); n != 0 {
		t.Fatalf("a truncated file was stored")
	}

	openFails := fault.Errorf(fault.Permanent, "onespan download doc-2", "document not found")
	_, err = e.c.InsertContentVersionFrom(testCtx(t), nil, "y.pdf", func() (io.ReadCloser, error) { return nil, openFails })
	if !errors.Is(err, openFails) || !fault.Is(err, fault.Permanent) {
		t.Fatalf("got %v, want the open error", err)
	}
}

type closeCounter struct {
	io.Reader
	n *atomic.Int32
}

func (c closeCounter) Close() error { c.n.Add(1); return nil }
