package salesforce

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"
)

// readParts parses a body produced by stream the way a server would.
func readParts(t *testing.T, s *stream, body io.Reader) map[string]*partSeen {
	t.Helper()
	mt, params, err := mime.ParseMediaType(s.contentType())
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("content type %q: %v", s.contentType(), err)
	}
	mr := multipart.NewReader(body, params["boundary"])
	seen := map[string]*partSeen{}
	var order []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		seen[p.FormName()] = &partSeen{contentType: p.Header.Get("Content-Type"), filename: p.FileName(), data: string(data)}
		order = append(order, p.FormName())
	}
	if strings.Join(order, ",") != "entity_content,VersionData" {
		t.Fatalf("part order = %v", order)
	}
	return seen
}

type partSeen struct {
	contentType, filename, data string
}

func TestMultipartBodyHasEntityThenVersionData(t *testing.T) {
	opens := 0
	src := func() (io.ReadCloser, error) {
		opens++
		return io.NopCloser(strings.NewReader("%PDF-1.7 fake")), nil
	}
	s := newStream([]byte(`{"Title":"contract","PathOnClient":"contract.pdf"}`), `con"tract.pdf`, src, true)
	defer s.stop()
	for i := 0; i < 2; i++ { // the first send and one replay
		open := s.open
		if i == 1 {
			open = s.getBody()
		}
		body, err := open()
		if err != nil {
			t.Fatal(err)
		}
		parts := readParts(t, s, body)
		if p := parts["entity_content"]; p.contentType != "application/json" || p.data != `{"Title":"contract","PathOnClient":"contract.pdf"}` {
			t.Fatalf("entity part = %+v", p)
		}
		if p := parts["VersionData"]; p.contentType != "application/octet-stream" || p.filename != `con"tract.pdf` || p.data != "%PDF-1.7 fake" {
			t.Fatalf("file part = %+v", p)
		}
	}
	if opens != 2 {
		t.Fatalf("source opened %d times, want 2", opens)
	}
}

func TestStreamFromAReaderIsNotReplayable(t *testing.T) {
	s := newStream([]byte(`{}`), "a.pdf", func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x")), nil }, false)
	if s.getBody() != nil {
		t.Fatal("GetBody must be nil for a one-shot reader")
	}
}

func TestSourceFailureIsKept(t *testing.T) {
	boom := errors.New("onespan connection reset")
	s := newStream([]byte(`{}`), "a.pdf", func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("partial"), errReader{boom})), nil
	}, false)
	body, err := s.open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, body); !errors.Is(err, boom) {
		t.Fatalf("body read error = %v", err)
	}
	s.stop()
	if !errors.Is(s.sourceErr(), boom) {
		t.Fatalf("sourceErr = %v", s.sourceErr())
	}
}

func TestStopEndsAWriterWhoseReaderWentAway(t *testing.T) {
	closed := make(chan struct{})
	s := newStream([]byte(`{}`), "a.pdf", func() (io.ReadCloser, error) {
		return &endless{closed: closed}, nil
	}, true)
	body, err := s.open()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(body, buf); err != nil {
		t.Fatal(err)
	}
	s.stop() // must return: the pipe is closed and the source too
	select {
	case <-closed:
	default:
		t.Fatal("source not closed")
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

type endless struct{ closed chan struct{} }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func (e *endless) Close() error { close(e.closed); return nil }
