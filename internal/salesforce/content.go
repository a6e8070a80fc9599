package salesforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"sync"

	"github.com/countersign/countersign/internal/fault"
)

// InsertContentVersion creates a ContentVersion (a Salesforce File) with
// POST /services/data/{v}/sobjects/ContentVersion as multipart/form-data: part
// entity_content holds fields as JSON, part VersionData streams body. Memory
// does not depend on the file size: bytes go from body to the socket through a
// pipe. PathOnClient defaults to filename.
//
// The request body is NOT replayable (its GetBody is nil): a transport that
// refreshes the token on 401 cannot resend it and the call fails AuthExpired.
// Use InsertContentVersionFrom when the source can be reopened.
func (c *Client) InsertContentVersion(ctx context.Context, fields map[string]any, filename string, body io.Reader) (string, error) {
	used := false
	open := func() (io.ReadCloser, error) {
		if used {
			return nil, errors.New("content stream already consumed")
		}
		used = true
		return io.NopCloser(body), nil // the caller owns body: never close it
	}
	return c.insertContentVersion(ctx, fields, filename, open, false)
}

// InsertContentVersionFrom is InsertContentVersion with a source that can be
// opened again: the request's GetBody reopens it, so a transport can replay
// the upload after a token refresh. Every opened reader is closed.
func (c *Client) InsertContentVersionFrom(ctx context.Context, fields map[string]any, filename string, open func() (io.ReadCloser, error)) (string, error) {
	return c.insertContentVersion(ctx, fields, filename, open, true)
}

func (c *Client) insertContentVersion(ctx context.Context, fields map[string]any, filename string, open func() (io.ReadCloser, error), replayable bool) (string, error) {
	op := fmt.Sprintf("salesforce insert content version %q", filename)
	if filename == "" {
		return "", fault.Errorf(fault.Permanent, op, "a file name is required")
	}
	entity := make(map[string]any, len(fields)+1)
	for k, v := range fields {
		entity[k] = v
	}
	if _, ok := entity["PathOnClient"]; !ok {
		entity["PathOnClient"] = filename // required for file content; sets FileType
	}
	js, err := json.Marshal(entity)
	if err != nil {
		return "", fault.Errorf(fault.Permanent, op, "encode fields: %w", err)
	}
	s := newStream(js, filename, open, replayable)
	defer s.stop()
	resp, err := c.do(ctx, request{
		op: OpContentVersion, what: op, method: http.MethodPost,
		path:   c.dataPath("sobjects", "ContentVersion"),
		stream: s,
	})
	if err != nil {
		return "", err
	}
	var ub upsertBody
	if err := json.Unmarshal(resp.body, &ub); err != nil {
		return "", fault.Errorf(fault.Retryable, op, "decode answer (http %d): %w", resp.status, err)
	}
	if ub.Success != nil && !*ub.Success {
		return ub.ID, c.recordError(op, ub.Errors)
	}
	if ub.ID == "" {
		return "", fault.Errorf(fault.Retryable, op, "answer (http %d) has no id", resp.status)
	}
	return ub.ID, nil
}

// stream produces the multipart body, once per open (the first request and
// each replay), each time from a fresh source through its own pipe.
type stream struct {
	entity     []byte
	filename   string
	source     func() (io.ReadCloser, error)
	replayable bool
	boundary   string // same for every replay: it is in the Content-Type header

	mu      sync.Mutex
	running []*run
	srcErr  error
	wg      sync.WaitGroup
}

type run struct {
	pr    *io.PipeReader
	src   io.ReadCloser
	close sync.Once
}

func newStream(entity []byte, filename string, source func() (io.ReadCloser, error), replayable bool) *stream {
	return &stream{
		entity: entity, filename: filename, source: source, replayable: replayable,
		boundary: multipart.NewWriter(io.Discard).Boundary(),
	}
}

func (s *stream) contentType() string {
	return "multipart/form-data; boundary=" + s.boundary
}

// getBody is the request's GetBody: nil unless the source can be reopened.
func (s *stream) getBody() func() (io.ReadCloser, error) {
	if !s.replayable {
		return nil
	}
	return s.open
}

// open starts one writer goroutine and returns the reading end of its pipe.
func (s *stream) open() (io.ReadCloser, error) {
	src, err := s.source()
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	r := &run{pr: pr, src: src}
	s.mu.Lock()
	s.running = append(s.running, r)
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.write(pw, src)
		r.close.Do(func() { src.Close() })
		pw.CloseWithError(err) // nil: the reader sees EOF
	}()
	return pr, nil
}

// write emits both parts. A source failure is remembered so the caller gets
// the source's error (and class), not the transport's rewording of it.
func (s *stream) write(w io.Writer, src io.Reader) error {
	mw := multipart.NewWriter(w)
	if err := mw.SetBoundary(s.boundary); err != nil {
		return err
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="entity_content"`)
	h.Set("Content-Type", "application/json")
	pw, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := pw.Write(s.entity); err != nil {
		return err
	}
	h = textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="VersionData"; filename="%s"`, quoteFilename(s.filename)))
	h.Set("Content-Type", "application/octet-stream")
	if pw, err = mw.CreatePart(h); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := pw.Write(buf[:n]); err != nil {
				return err // the transport closed the pipe: not a source failure
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			s.mu.Lock()
			if s.srcErr == nil {
				s.srcErr = rerr
			}
			s.mu.Unlock()
			return rerr
		}
	}
	return mw.Close()
}

func (s *stream) sourceErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srcErr
}

// stop ends every writer (closing the pipes makes their next write fail, and
// closing reopened sources unblocks a stalled read) and waits for them, so no
// source is touched after the call returns.
func (s *stream) stop() {
	s.mu.Lock()
	runs := s.running
	s.mu.Unlock()
	for _, r := range runs {
		r.pr.CloseWithError(errors.New("upload finished"))
		r.close.Do(func() { r.src.Close() })
	}
	s.wg.Wait()
}

// quoteFilename escapes a file name for a quoted header parameter and drops
// line breaks so a name can never add a header.
func quoteFilename(s string) string {
	s = strings.NewReplacer("\r", "", "\n", "").Replace(s)
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}
