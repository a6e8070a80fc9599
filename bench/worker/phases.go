package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/onespan"
	"github.com/countersign/countersign/internal/queue"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
	"github.com/countersign/countersign/internal/sfpush"
)

// burstResult is one run of the worker over a stored burst.
type burstResult struct {
	events, packages int
	syncAlways       bool
	latency          time.Duration
	documents        bool
	replicas         int
	load             [3]float64    // /proc/loadavg at the end: other work on the host
	store            time.Duration // storing the burst (not part of the drain)
	drain            time.Duration // worker start -> every message acked
	calls            map[string]int
	tokenCalls       map[string]int
	sfCalls          int64         // REST exchanges the worker made (client side)
	sfTime           time.Duration // their summed duration
	kvGets, kvWrites int64
	kvGetTime        time.Duration
	kvWriteTime      time.Duration
	deadLetters      uint64
	probe            *kvProbe
}

func (b burstResult) restCalls() int {
	n := 0
	for _, c := range b.calls {
		n += c
	}
	return n
}

// statusCalls are the calls the status and event-log steps make (documents
// cost per file, not per event).
func (b burstResult) statusCalls() int { return b.calls["collection_upsert"] + b.calls["upsert"] }

// runBurst stores a burst of events (no fsync, fast), reopens NATS with the
// sync setting under test, starts the worker and waits until it acked all.
// It then checks every event and transaction reached Salesforce.
func runBurst(ctx context.Context, o burstOptions) (burstResult, error) {
	res := burstResult{events: o.events, packages: o.packages, syncAlways: o.syncAlways, latency: o.latency,
		documents: o.documents, replicas: max(o.replicas, 1)}
	dir, err := os.MkdirTemp("", "bench-worker-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	ro := rigOptions{storeDir: dir, latency: o.latency, documents: o.documents}
	if o.log != nil {
		ro.log = o.log
	}
	r, err := newRig(ctx, ro)
	if err != nil {
		return res, err
	}
	defer r.close()
	if o.documents {
		for p := range o.packages {
			r.os.AddPackage(ossandbox.Package{ID: packageID(p), Name: "bench " + packageID(p), Status: "COMPLETED",
				Documents: []ossandbox.Document{{ID: "doc-1", Name: "Contract", Size: 32 << 10, Signed: true}, {ID: "doc-2", Name: "Annex", Size: 8 << 10, Signed: true}},
				Signers:   []ossandbox.Signer{{ID: "signer-1", Email: "s1@example.com"}}})
		}
	}
	events := burst(o.events, o.packages, time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC))
	start := time.Now()
	if err := r.store(ctx, events); err != nil {
		return res, fmt.Errorf("store burst: %w", err)
	}
	res.store = time.Since(start)
	if err := r.reopenQueue(ctx, o.syncAlways); err != nil {
		return res, err
	}
	cons, err := r.consumer(ctx)
	if err != nil {
		return res, err
	}
	if n, err := backlog(ctx, cons); err != nil || n != uint64(o.events) {
		return res, fmt.Errorf("backlog before the worker: %d (%v), want %d", n, err, o.events)
	}
	r.sf.ResetCalls()
	wctx, stop := context.WithCancel(ctx)
	replicas := max(o.replicas, 1)
	done, err := r.startWorker(wctx, replicas)
	if err != nil {
		stop()
		return res, err
	}
	res.drain, err = waitDrained(ctx, cons, o.limit)
	// Counters are read before stopping: stopping makes no calls, but the
	// figures should be those of the drain alone.
	res.calls = r.sf.CallCounts()
	res.tokenCalls = r.sf.TokenCallCounts()
	res.sfCalls, res.sfTime = r.sfObs.count(), r.sfObs.sum()
	res.kvGets, res.kvGetTime = r.kv.gets.count(), r.kv.gets.sum()
	res.kvWrites, res.kvWriteTime = r.kv.writes.count(), r.kv.writes.sum()
	res.load = loadAvg()
	stop()
	for range replicas {
		if werr := <-done; werr != nil {
			return res, fmt.Errorf("worker: %w", werr)
		}
	}
	if err != nil {
		return res, err
	}
	res.deadLetters, _ = sfpush.DeadLetterCount(ctx, r.q.JetStream(), tenantID)
	if err := verifyBurst(r, o, events, res); err != nil {
		return res, err
	}
	if o.probe > 0 {
		p, err := probeKV(ctx, r.q, o.probe, 32)
		if err != nil {
			return res, fmt.Errorf("kv probe: %w", err)
		}
		res.probe = &p
	}
	return res, nil
}

type burstOptions struct {
	events, packages int
	syncAlways       bool
	latency          time.Duration
	documents        bool
	replicas         int // workers sharing the consumer (default 1)
	probe            int // measure KV round trips on this many keys after the drain (0: no)
	limit            time.Duration
	log              *os.File
}

// verifyBurst checks the outcome, so a fast number can never come from
// skipped work.
func verifyBurst(r *rig, o burstOptions, events []onespan.CallbackEvent, res burstResult) error {
	var problems []string
	if res.deadLetters != 0 {
		problems = append(problems, fmt.Sprintf("%d dead letters", res.deadLetters))
	}
	if n := r.sf.Count(sfsandbox.ObjEvent); n != o.events {
		problems = append(problems, fmt.Sprintf("%d event records, want %d", n, o.events))
	}
	if n := r.sf.Count(sfsandbox.ObjTransaction); n != o.packages {
		problems = append(problems, fmt.Sprintf("%d transaction records, want %d", n, o.packages))
	}
	last := map[string]string{}
	for _, ev := range events {
		last[ev.PackageID] = ev.Name
	}
	wrong := 0
	for _, pkg := range slices.Sorted(maps.Keys(last)) {
		rec, ok := r.sf.FindRecord(sfsandbox.ObjTransaction, "Package_Id__c", pkg)
		want := "SENT"
		switch last[pkg] {
		case callback.PackageComplete:
			want = callback.StatusCompleted
		case callback.PackageCreate:
			want = "DRAFT"
		}
		if !ok || rec["Status__c"] != want || rec["Last_Event__c"] != last[pkg] {
			wrong++
		}
	}
	if wrong > 0 {
		problems = append(problems, fmt.Sprintf("%d transactions with a wrong status or last event", wrong))
	}
	if o.documents {
		if n, want := len(r.sf.ContentVersions()), 3*o.packages; n != want {
			problems = append(problems, fmt.Sprintf("%d files, want %d", n, want))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("burst outcome wrong: %s", strings.Join(problems, "; "))
	}
	return nil
}

// loadAvg is /proc/loadavg's three figures (zero where unreadable).
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err == nil {
		_, _ = fmt.Sscan(string(b), &l[0], &l[1], &l[2])
	}
	return l
}

// kvProbe measures cs_packages round trips on the drained rig: n creates,
// gets and CAS updates one after another (as the worker does them inside a
// batch), then the same with inflight at a time. Figures are per operation.
type kvProbe struct {
	n, inflight          int
	seqGet, seqPut       time.Duration
	parGet, parPut       time.Duration
	seqCreate, parCreate time.Duration
	// batchPut is a CAS update per key, 200 keys per atomic batch publish
	// (nats-server >= 2.12) instead of one request each; staleRejected says
	// a batch holding one stale revision was refused whole.
	batchPut      time.Duration
	staleRejected bool
}

func probeKV(ctx context.Context, q *queue.Queue, n, inflight int) (kvProbe, error) {
	kv := q.Packages()
	p := kvProbe{n: n, inflight: inflight}
	var seqRevs []uint64
	value := bytes.Repeat([]byte("x"), 400) // about a PackageState's JSON
	phase := func(par int, op func(i int) error) (time.Duration, error) {
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, par)
		for range par {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					if err := op(i); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return 0, err
		}
		return time.Since(start) / time.Duration(n), nil
	}
	for _, par := range []int{1, inflight} {
		prefix := fmt.Sprintf("probe%d.", par)
		revs := make([]uint64, n)
		create, err := phase(par, func(i int) error {
			rev, err := kv.Create(ctx, prefix+strconv.Itoa(i), value)
			revs[i] = rev
			return err
		})
		if err != nil {
			return p, err
		}
		get, err := phase(par, func(i int) error { _, err := kv.Get(ctx, prefix+strconv.Itoa(i)); return err })
		if err != nil {
			return p, err
		}
		put, err := phase(par, func(i int) error {
			rev, err := kv.Update(ctx, prefix+strconv.Itoa(i), value, revs[i])
			revs[i] = rev
			return err
		})
		if err != nil {
			return p, err
		}
		if par == 1 {
			p.seqCreate, p.seqGet, p.seqPut = create, get, put
			seqRevs = revs // current revisions of probe1.*, for the batches below
		} else {
			p.parCreate, p.parGet, p.parPut = create, get, put
		}
	}
	// The same CAS updates, 200 per atomic batch (the worker's batch size).
	js := q.JetStream()
	stream, err := js.Stream(ctx, "KV_"+queue.PackagesBucket)
	if err != nil {
		return p, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return p, err
	}
	sc := info.Config
	sc.AllowAtomicPublish = true
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		return p, fmt.Errorf("allow atomic publish on the bucket: %w", err)
	}
	const batchSize = 200
	start := time.Now()
	for from := 0; from+batchSize <= n; from += batchSize {
		acks, err := atomicCAS(ctx, q, "probe1.", from, batchSize, value, seqRevs, -1)
		if err != nil {
			return p, err
		}
		for i, seq := range acks {
			seqRevs[from+i] = seq
		}
	}
	p.batchPut = time.Since(start) / time.Duration(n/batchSize*batchSize)
	_, err = atomicCAS(ctx, q, "probe1.", 0, batchSize, value, seqRevs, batchSize/2)
	p.staleRejected = err != nil && strings.Contains(err.Error(), "wrong last sequence")
	return p, nil
}

// atomicCAS writes keys prefix<from..from+n) in one atomic batch, each with
// its expected revision (the one at index stale is made wrong), and returns
// the new revisions.
func atomicCAS(ctx context.Context, q *queue.Queue, prefix string, from, n int, value []byte, revs []uint64, stale int) ([]uint64, error) {
	nc := q.Conn()
	id := nuid.Next()
	for i := 0; i < n; i++ {
		m := nats.NewMsg("$KV." + queue.PackagesBucket + "." + prefix + strconv.Itoa(from+i))
		m.Data = value
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		exp := revs[from+i]
		if i == stale {
			exp = 1
		}
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(exp, 10))
		if i < n-1 {
			if err := nc.PublishMsg(m); err != nil {
				return nil, err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return nil, err
		}
		var ack struct {
			Seq   uint64 `json:"seq"`
			Count int    `json:"count"`
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return nil, err
		}
		if ack.Error != nil {
			return nil, errors.New(ack.Error.Description)
		}
		if ack.Count != n {
			return nil, fmt.Errorf("atomic batch stored %d of %d", ack.Count, n)
		}
		// The batch's messages are stored consecutively, the last at ack.Seq.
		out := make([]uint64, n)
		for k := range out {
			out[k] = ack.Seq - uint64(n-1-k)
		}
		return out, nil
	}
	return nil, errors.New("empty batch")
}
