package sfpush

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
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
			return st, false, errBusy
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
