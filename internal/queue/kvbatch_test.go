package queue

import (
	"errors"
	"fmt"
	"testing"
)

func TestCASBatchWritesAllOrNothing(t *testing.T) {
	modes(t, func(t *testing.T, q *Queue) {
		ctx := t.Context()
		kv := q.Packages()
		writes := make([]KVWrite, 50)
		for i := range writes {
			writes[i] = KVWrite{Key: fmt.Sprintf("acme.k%d", i), Value: []byte("v1")}
		}
		revs, err := CASBatch(ctx, q.Conn(), PackagesBucket, writes)
		if err != nil {
			t.Fatal(err)
		}
		for i, w := range writes {
			e, err := kv.Get(ctx, w.Key)
			if err != nil || string(e.Value()) != "v1" || e.Revision() != revs[i] {
				t.Fatalf("key %s: %v %v rev %d want %d", w.Key, e, err, e.Revision(), revs[i])
			}
			writes[i] = KVWrite{Key: w.Key, Value: []byte("v2"), Revision: revs[i]}
		}
		// One stale revision: nothing of the batch is written.
		stale := append([]KVWrite(nil), writes...)
		stale[7].Revision = 1
		if _, err := CASBatch(ctx, q.Conn(), PackagesBucket, stale); !errors.Is(err, ErrBatchConflict) {
			t.Fatalf("stale batch: %v", err)
		}
		if e, _ := kv.Get(ctx, writes[0].Key); string(e.Value()) != "v1" {
			t.Fatal("a refused batch wrote something")
		}
		if _, err := CASBatch(ctx, q.Conn(), PackagesBucket, writes); err != nil {
			t.Fatal(err)
		}
		if e, _ := kv.Get(ctx, writes[49].Key); string(e.Value()) != "v2" {
			t.Fatal("second batch not written")
		}
		// A key that must not exist yet.
		if _, err := CASBatch(ctx, q.Conn(), PackagesBucket, []KVWrite{{Key: writes[0].Key, Value: []byte("x")}}); !errors.Is(err, ErrBatchConflict) {
			t.Fatalf("create over an existing key: %v", err)
		}
	})
}
