package sfpush

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/countersign/countersign/internal/queue"
)

// PackageState is the cs_packages record of one package: what has been
// applied to Salesforce. It is changed only by compare-and-swap, so two
// workers and late events never move a transaction backwards.
type PackageState struct {
	PackageID string `json:"package_id"`
	// RecordID is the Salesforce Id of the transaction record.
	RecordID string `json:"record_id,omitempty"`
	// Status and StatusAt: the applied status and the createdDate of the
	// event that set it. A status from an older event is never applied.
	Status   string    `json:"status,omitempty"`
	StatusAt time.Time `json:"status_at,omitzero"`
	// LastEvent and LastEventAt: the newest event seen, of any kind.
	LastEvent   string    `json:"last_event,omitempty"`
	LastEventAt time.Time `json:"last_event_at,omitzero"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	// Documents maps a document key (<packageId>/<documentId>) to the
	// ContentVersion Id uploaded for it.
	Documents map[string]string `json:"documents,omitempty"`
	// Sequences are the CALLBACKS stream sequences of the package's events,
	// oldest first, capped at maxSequences (for history and replay).
	Sequences []uint64  `json:"sequences,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	// Lease is held by the one writer updating the transaction record; it
	// serializes Salesforce writes of a package across workers and replicas.
	Lease *Lease `json:"lease,omitempty"`
	// Dirty means a write may have reached Salesforce without being recorded
	// here (its answer was lost, or its writer died holding the lease): the
	// next writer rewrites the record from this state even if nothing changed.
	Dirty bool `json:"dirty,omitempty"`
}

// Lease marks the package's transaction record as being written.
type Lease struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

const maxSequences = 1000

// PackageKey is the cs_packages key: <tenant>.<unpadded base64url(packageId)>,
// because package ids contain '=' and other characters keys cannot hold.
func PackageKey(tenant, packageID string) string {
	return tenant + "." + base64.RawURLEncoding.EncodeToString([]byte(packageID))
}

// stateStore reads and CAS-writes package states.
type stateStore struct {
	kv     jetstream.KeyValue
	nc     *nats.Conn // for atomic batches; nil: one write at a time
	tenant string
}

// get returns the state and its revision (0 when absent).
func (s stateStore) get(ctx context.Context, pkg string) (PackageState, uint64, error) {
	e, err := s.kv.Get(ctx, PackageKey(s.tenant, pkg))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return PackageState{PackageID: pkg}, 0, nil
	}
	if err != nil {
		return PackageState{}, 0, fmt.Errorf("read state of package %s: %w", pkg, err)
	}
	var st PackageState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return PackageState{}, 0, fmt.Errorf("decode state of package %s: %w", pkg, err)
	}
	return st, e.Revision(), nil
}

// errConflict means another writer changed the state first.
var errConflict = errors.New("package state changed concurrently")

// put writes st if the stored revision is still rev (0: must not exist).
func (s stateStore) put(ctx context.Context, st PackageState, rev uint64) (uint64, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	key := PackageKey(s.tenant, st.PackageID)
	var newRev uint64
	if rev == 0 {
		newRev, err = s.kv.Create(ctx, key, b)
	} else {
		newRev, err = s.kv.Update(ctx, key, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, errConflict
	}
	if err != nil {
		return 0, fmt.Errorf("write state of package %s: %w", st.PackageID, err)
	}
	return newRev, nil
}

// update applies fn to the current state until a CAS succeeds (bounded).
func (s stateStore) update(ctx context.Context, pkg string, fn func(*PackageState) bool) (PackageState, error) {
	for attempt := 0; attempt < 20; attempt++ {
		st, rev, err := s.get(ctx, pkg)
		if err != nil {
			return st, err
		}
		if !fn(&st) {
			return st, nil
		}
		if _, err := s.put(ctx, st, rev); err == nil {
			return st, nil
		} else if !errors.Is(err, errConflict) {
			return st, err
		}
	}
	return PackageState{}, fmt.Errorf("package %s: %w after 20 attempts", pkg, errConflict)
}

// errBusy means another writer holds the package's lease.
var errBusy = errors.New("package is being written by another worker")

// busyError is errBusy with the time the other writer's lease ends.
type busyError struct{ until time.Time }

func (e *busyError) Error() string {
	return errBusy.Error() + " until " + e.until.UTC().Format(time.RFC3339)
}

func (e *busyError) Is(target error) bool { return target == errBusy }

// lease takes the package's lease for holder. forced reports that the record
// must be rewritten whatever the batch changes: the last writer's outcome is
// unknown (Dirty, or its lease expired unreleased).
func (s stateStore) lease(ctx context.Context, pkg, holder string, ttl time.Duration, now func() time.Time) (st PackageState, forced bool, err error) {
	for attempt := 0; attempt < 20; attempt++ {
		st, rev, err := s.get(ctx, pkg)
		if err != nil {
			return st, false, err
		}
		t := now()
		if st.Lease != nil && st.Lease.Holder != holder && t.Before(st.Lease.Until) {
			return st, false, &busyError{until: st.Lease.Until}
		}
		forced = st.Dirty || st.Lease != nil
		st.Lease = &Lease{Holder: holder, Until: t.Add(ttl)}
		if _, err := s.put(ctx, st, rev); err == nil {
			return st, forced, nil
		} else if !errors.Is(err, errConflict) {
			return st, false, err
		}
	}
	return PackageState{}, false, fmt.Errorf("package %s: %w after 20 attempts", pkg, errConflict)
}

// finish releases holder's lease, applying fn to the fresh state (other
// fields, such as uploaded documents, may have changed meanwhile). lost
// reports that the lease had expired and was taken: the caller's write may
// be stale, so the state is marked Dirty for the next writer.
func (s stateStore) finish(ctx context.Context, pkg, holder string, fn func(*PackageState)) (lost bool, err error) {
	for attempt := 0; attempt < 20; attempt++ {
		st, rev, err := s.get(ctx, pkg)
		if err != nil {
			return false, err
		}
		lost = st.Lease == nil || st.Lease.Holder != holder
		if lost {
			st.Dirty = true
		} else {
			fn(&st)
			st.Lease = nil
		}
		if _, err := s.put(ctx, st, rev); err == nil {
			return lost, nil
		} else if !errors.Is(err, errConflict) {
			return lost, err
		}
	}
	return false, fmt.Errorf("package %s: %w after 20 attempts", pkg, errConflict)
}

type leased struct {
	st     PackageState
	forced bool
	err    error
}

// leaseMany leases every package for holder. It reads them in parallel and
// writes all leases in one atomic batch; if any package changed meanwhile,
// it falls back to one compare-and-swap per package.
func (s stateStore) leaseMany(ctx context.Context, pkgs []string, holder string, ttl time.Duration, now func() time.Time) map[string]leased {
	out := make(map[string]leased, len(pkgs))
	var mu sync.Mutex
	var writes []queue.KVWrite
	var batch []string
	set := func(pkg string, l leased) { mu.Lock(); out[pkg] = l; mu.Unlock() }
	parallel(ctx, pkgs, func(pkg string) {
		st, rev, err := s.get(ctx, pkg)
		if err != nil {
			set(pkg, leased{err: err})
			return
		}
		t := now()
		if st.Lease != nil && st.Lease.Holder != holder && t.Before(st.Lease.Until) {
			set(pkg, leased{err: &busyError{until: st.Lease.Until}})
			return
		}
		forced := st.Dirty || st.Lease != nil
		st.Lease = &Lease{Holder: holder, Until: t.Add(ttl)}
		b, err := json.Marshal(st)
		if err != nil {
			set(pkg, leased{err: err})
			return
		}
		mu.Lock()
		out[pkg] = leased{st: st, forced: forced}
		writes = append(writes, queue.KVWrite{Key: PackageKey(s.tenant, pkg), Value: b, Revision: rev})
		batch = append(batch, pkg)
		mu.Unlock()
	})
	if err := s.writeBatch(ctx, writes); err != nil {
		parallel(ctx, batch, func(pkg string) {
			st, forced, err := s.lease(ctx, pkg, holder, ttl, now)
			set(pkg, leased{st: st, forced: forced, err: err})
		})
	}
	return out
}

type finished struct {
	lost bool
	err  error
}

// finishMany releases holder's leases, applying fn to each fresh state, in
// one atomic batch when nothing changed meanwhile (one by one otherwise).
func (s stateStore) finishMany(ctx context.Context, pkgs []string, holder string, fn func(pkg string, st *PackageState)) map[string]finished {
	out := make(map[string]finished, len(pkgs))
	var mu sync.Mutex
	var writes []queue.KVWrite
	var batch []string
	set := func(pkg string, f finished) { mu.Lock(); out[pkg] = f; mu.Unlock() }
	parallel(ctx, pkgs, func(pkg string) {
		st, rev, err := s.get(ctx, pkg)
		if err != nil {
			set(pkg, finished{err: err})
			return
		}
		lost := st.Lease == nil || st.Lease.Holder != holder
		if lost {
			st.Dirty = true
		} else {
			fn(pkg, &st)
			st.Lease = nil
		}
		b, err := json.Marshal(st)
		if err != nil {
			set(pkg, finished{err: err})
			return
		}
		mu.Lock()
		out[pkg] = finished{lost: lost}
		writes = append(writes, queue.KVWrite{Key: PackageKey(s.tenant, pkg), Value: b, Revision: rev})
		batch = append(batch, pkg)
		mu.Unlock()
	})
	if err := s.writeBatch(ctx, writes); err != nil {
		parallel(ctx, batch, func(pkg string) {
			lost, err := s.finish(ctx, pkg, holder, func(st *PackageState) { fn(pkg, st) })
			set(pkg, finished{lost: lost, err: err})
		})
	}
	return out
}

// writeBatch writes all or none; without a connection (or on any failure)
// the caller falls back to single writes.
func (s stateStore) writeBatch(ctx context.Context, writes []queue.KVWrite) error {
	if len(writes) == 0 {
		return nil
	}
	if s.nc == nil || len(writes) > queue.MaxKVBatch {
		return errConflict
	}
	_, err := queue.CASBatch(ctx, s.nc, queue.PackagesBucket, writes)
	return err
}

// parallel runs fn for every package with bounded parallelism: KV round
// trips dominate a batch against a remote NATS cluster.
func parallel(ctx context.Context, pkgs []string, fn func(pkg string)) {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, pkg := range pkgs {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(pkg)
		}()
	}
	wg.Wait()
}

// addSequences appends seqs not yet listed, keeping the newest maxSequences.
func (st *PackageState) addSequences(seqs ...uint64) bool {
	changed := false
	for _, q := range seqs {
		found := false
		for _, have := range st.Sequences {
			if have == q {
				found = true
				break
			}
		}
		if !found {
			st.Sequences = append(st.Sequences, q)
			changed = true
		}
	}
	if len(st.Sequences) > maxSequences {
		st.Sequences = st.Sequences[len(st.Sequences)-maxSequences:]
	}
	return changed
}
