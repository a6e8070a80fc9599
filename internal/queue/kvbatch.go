package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// KVWrite is one compare-and-swap of a KV batch: Value replaces Key if its
// revision is still Revision (0: the key must not exist).
type KVWrite struct {
	Key      string
	Value    []byte
	Revision uint64
}

// ErrBatchConflict means a key of the batch had changed: nothing was written.
var ErrBatchConflict = errors.New("kv batch: a revision changed, nothing written")

// MaxKVBatch bounds a KV batch (the server's default atomic batch limit is
// 1000 messages).
const MaxKVBatch = 500

// CASBatch writes every write of the batch or none, each only if its key is
// at the expected revision, as one JetStream atomic batch into the bucket's
// stream, and returns the new revisions in order. It costs about one write
// however many keys it holds, which matters when every write is fsync'd.
// The bucket's stream must allow atomic publish (Open sets it for
// cs_packages).
func CASBatch(ctx context.Context, nc *nats.Conn, bucket string, writes []KVWrite) ([]uint64, error) {
	n := len(writes)
	if n == 0 {
		return nil, nil
	}
	if n > MaxKVBatch {
		return nil, fmt.Errorf("kv batch of %d writes: at most %d", n, MaxKVBatch)
	}
	id := nuid.Next()
	for i, w := range writes {
		m := nats.NewMsg("$KV." + bucket + "." + w.Key)
		m.Data = w.Value
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.Revision, 10))
		if i < n-1 {
			if err := nc.PublishMsg(m); err != nil {
				return nil, fmt.Errorf("kv batch %s: %w", bucket, err)
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		resp, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return nil, fmt.Errorf("kv batch %s: %w", bucket, err)
		}
		var ack struct {
			Seq   uint64 `json:"seq"`
			Count int    `json:"count"`
			Error *struct {
				Code        int    `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return nil, fmt.Errorf("kv batch %s: bad answer: %w", bucket, err)
		}
		if ack.Error != nil {
			if strings.Contains(ack.Error.Description, "wrong last sequence") {
				return nil, ErrBatchConflict
			}
			return nil, fmt.Errorf("kv batch %s: %s", bucket, ack.Error.Description)
		}
		if ack.Count != n {
			return nil, fmt.Errorf("kv batch %s: stored %d of %d", bucket, ack.Count, n)
		}
		// A batch is stored contiguously, its last message at ack.Seq.
		revs := make([]uint64, n)
		for k := range revs {
			revs[k] = ack.Seq - uint64(n-1-k)
		}
		return revs, nil
	}
	return nil, nil
}
