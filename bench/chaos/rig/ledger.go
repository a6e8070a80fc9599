// Package rig drives fault runs against the real listener: it sends a load of
// OneSpan callbacks, keeps a ledger of what each one was answered, and audits
// the Salesforce emulators at the end (every 2xx delivered exactly once,
// transactions right, files once). The cluster test and `make chaos` share it.
package rig

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/onespan"
	ossandbox "github.com/countersign/countersign/internal/sandbox/onespan"
	sfsandbox "github.com/countersign/countersign/internal/sandbox/salesforce"
)

// Tenant is one tenant the load sends callbacks for.
type Tenant struct {
	ID  string
	Key string // its callback key
	SF  *sfsandbox.Server
	// OS receives the packages that complete, so the worker can fetch their
	// documents; nil sends no PACKAGE_COMPLETE.
	OS *ossandbox.Server
}

// Entry is one callback and what the listener answered.
type Entry struct {
	Tenant  string
	Package string
	Event   string
	At      time.Time // createdDate
	Key     string    // event key, computed here
	Body    []byte
	Status  int    // HTTP status; 0 when no answer came (refused, reset, timeout)
	ID      string // the id the listener answered with a 2xx
	Target  string // the ingest base URL it went to
}

// Load is a bounded set of callbacks sent by several goroutines.
type Load struct {
	Tenants   []Tenant
	Callbacks int           // how many callbacks in all
	Senders   int           // concurrent senders (default 8)
	Rate      float64       // callbacks per second in all; 0 sends as fast as the senders go
	Prefix    string        // package id prefix, unique per run
	Seed      uint64        // order of the callbacks
	Timeout   time.Duration // per request (default 10s)
	// CompleteEvery makes one package in n end with PACKAGE_COMPLETE (its
	// documents are planted in the tenant's OneSpan emulator); 0 never.
	CompleteEvery int
	// Targets returns the ingest base URLs to send to now (round-robin); the
	// harness drops a listener it killed, as a load balancer would.
	Targets func() []string

	entries []Entry
	sent    atomic.Int64
}

// Plan builds every callback up front: three per package (create, activate,
// then a log-only event, a decline or a completion), shuffled so some arrive
// out of order and the monotonic status rule is exercised.
func (l *Load) Plan() error {
	if len(l.Tenants) == 0 || l.Callbacks <= 0 {
		return fmt.Errorf("load: tenants and callbacks are required")
	}
	rng := rand.New(rand.NewPCG(l.Seed, l.Seed^0x5bd1e995))
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var out []Entry
	for p := 0; len(out) < l.Callbacks; p++ {
		t := l.Tenants[p%len(l.Tenants)]
		pkg := fmt.Sprintf("%s-%06d", l.Prefix, p)
		at := base.Add(time.Duration(p) * time.Millisecond)
		last := []string{callback.SignerComplete, callback.DocumentSigned, callback.PackageDecline}[p%3]
		if l.CompleteEvery > 0 && t.OS != nil && p%l.CompleteEvery == 0 {
			last = callback.PackageComplete
			t.OS.AddPackage(ossandbox.Package{ID: pkg, Name: "chaos " + pkg, Status: "COMPLETED",
				Documents:    []ossandbox.Document{{ID: "doc-1", Name: "Contract", Size: 8 << 10, Signed: true}},
				Signers:      []ossandbox.Signer{{ID: "signer-1", Email: "s1@example.com"}},
				EvidenceSize: 4 << 10})
		}
		for i, name := range []string{callback.PackageCreate, callback.PackageActivate, last} {
			if len(out) == l.Callbacks {
				break
			}
			doc := ""
			if name == callback.DocumentSigned {
				doc = "doc-1"
			}
			ev := onespan.NewCallbackEvent(name, "signer-1", pkg, "", doc, at.Add(time.Duration(i)*time.Second))
			body, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			parsed, err := callback.Parse(body)
			if err != nil {
				return fmt.Errorf("load: planned callback does not parse: %w", err)
			}
			out = append(out, Entry{Tenant: t.ID, Package: pkg, Event: name, At: parsed.Created,
				Key: parsed.Key(t.ID), Body: body})
		}
	}
	// Swap each callback with one up to 16 places ahead: mostly in order,
	// sometimes an activation before its creation.
	for i := range out {
		j := min(i+rng.IntN(16), len(out)-1)
		out[i], out[j] = out[j], out[i]
	}
	l.entries = out
	return nil
}

// Sent is how many callbacks have been answered (or failed) so far.
func (l *Load) Sent() int { return int(l.sent.Load()) }

// Run sends every planned callback once (OneSpan never re-sends) and records
// each answer. It returns when all are sent or ctx ends.
func (l *Load) Run(ctx context.Context) {
	senders := max(l.Senders, 1)
	if l.Senders == 0 {
		senders = 8
	}
	timeout := l.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	hc := &http.Client{Timeout: timeout, Transport: &http.Transport{
		MaxIdleConnsPerHost: senders, IdleConnTimeout: 30 * time.Second}}
	defer hc.CloseIdleConnections()
	keys := map[string]string{}
	for _, t := range l.Tenants {
		keys[t.ID] = t.Key
	}
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(l.entries) {
					return
				}
				if l.Rate > 0 {
					due := start.Add(time.Duration(float64(i) / l.Rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(d):
						}
					}
				}
				e := &l.entries[i]
				targets := l.Targets()
				if len(targets) == 0 {
					l.sent.Add(1)
					continue
				}
				e.Target = targets[i%len(targets)]
				var ev onespan.CallbackEvent
				_ = json.Unmarshal(e.Body, &ev)
				ans, _ := onespan.SendCallback(ctx, hc, e.Target+"/v1/callbacks/"+e.Tenant, keys[e.Tenant], ev)
				e.Status = ans.Status
				if ans.Status == 0 && l.Rate > 0 {
					// A refused connection fails at once; without this a
					// sender behind schedule would burn its backlog against a
					// restarting listener far faster than the nominal rate.
					time.Sleep(time.Duration(float64(senders) / l.Rate * float64(time.Second)))
				}
				if ans.Status >= 200 && ans.Status < 300 {
					var body struct {
						ID string `json:"id"`
					}
					_ = json.Unmarshal([]byte(ans.Body), &body)
					e.ID = body.ID
				}
				l.sent.Add(1)
			}
		}()
	}
	wg.Wait()
}

// Entries are the planned callbacks with their answers (read after Run).
func (l *Load) Entries() []Entry { return l.entries }
