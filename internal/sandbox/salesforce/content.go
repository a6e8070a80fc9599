package salesforce

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"strings"
)

// MaxBase64VersionData is Salesforce's limit for base64 blob data in a JSON
// (non-multipart) insert: 37.5 MB.
const MaxBase64VersionData = 37.5 * 1024 * 1024

// maxEntityPart bounds the JSON part of a multipart upload.
const maxEntityPart = 1 << 20

// blob is what the sandbox keeps of uploaded file content: size and hashes
// always, bytes only up to Options.StoreContentBytesUpTo.
type blob struct {
	size   int64
	sha256 string
	md5    string
	data   []byte // nil when larger than the cap
}

// ContentFile is a copy of one ContentVersion and what was kept of its bytes.
type ContentFile struct {
	ID                     string
	ContentDocumentID      string
	Title                  string
	PathOnClient           string
	FirstPublishLocationID string
	Size                   int64
	SHA256                 string // hex
	MD5                    string // hex; Salesforce's Checksum field
	Data                   []byte // nil unless Size <= StoreContentBytesUpTo
	Fields                 Record // every field, custom ones included
}

// blobWriter hashes and counts a stream, keeping bytes up to a cap.
type blobWriter struct {
	sha, md  hashWriter
	n        int64
	keep     int64
	buf      bytes.Buffer
	overflow bool
}

type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

func newBlobWriter(keep int64) *blobWriter {
	return &blobWriter{sha: sha256.New(), md: md5.New(), keep: keep}
}

func (b *blobWriter) Write(p []byte) (int, error) {
	b.sha.Write(p)
	b.md.Write(p)
	b.n += int64(len(p))
	if !b.overflow {
		if b.n > b.keep {
			b.overflow = true
			b.buf = bytes.Buffer{}
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *blobWriter) blob() *blob {
	out := &blob{size: b.n, sha256: hex.EncodeToString(b.sha.Sum(nil)), md5: hex.EncodeToString(b.md.Sum(nil))}
	if !b.overflow && b.keep > 0 {
		out.data = bytes.Clone(b.buf.Bytes())
		if out.data == nil {
			out.data = []byte{}
		}
	}
	return out
}

// handleContentVersion is POST /sobjects/ContentVersion, JSON or multipart.
func (s *Server) handleContentVersion(w http.ResponseWriter, r *http.Request, o *object) {
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if !strings.HasPrefix(mt, "multipart/") {
		body, err := decodeObject(r)
		if err != nil {
			writeRecordError(w, err)
			return
		}
		s.finishContentVersion(w, o, body, nil)
		return
	}
	entity, b, err := s.readMultipart(r, params["boundary"])
	drain(r)
	if err != nil {
		writeRecordError(w, err)
		return
	}
	s.finishContentVersion(w, o, entity, b)
}

func (s *Server) finishContentVersion(w http.ResponseWriter, o *object, body map[string]any, b *blob) {
	s.mu.Lock()
	tx := &txn{}
	fields, err := s.data.prepareFields(o, body, "")
	var id string
	if err == nil {
		id, err = s.createContentVersionLocked(tx, o, fields, b)
	}
	if err != nil {
		tx.rollback()
	}
	s.mu.Unlock()
	if err != nil {
		writeRecordError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, saveResult{ID: id, Success: true, Errors: []statusError{}})
}

// readMultipart reads the entity JSON part, then streams the VersionData part
// through the hashes: memory does not grow with the file's size.
func (s *Server) readMultipart(r *http.Request, boundary string) (map[string]any, *blob, *recordError) {
	bad := func(msg string) *recordError { return &recordError{Code: "INVALID_MULTIPART_REQUEST", Message: msg} }
	if boundary == "" {
		return nil, nil, bad("multipart boundary missing")
	}
	mr := multipart.NewReader(r.Body, boundary)
	part, err := mr.NextPart()
	if err != nil {
		return nil, nil, bad("Multipart message must include a non-binary part")
	}
	if ct, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type")); ct != "application/json" {
		return nil, nil, bad("The first part of a multipart message must be the JSON entity (Content-Type: application/json)")
	}
	dec := json.NewDecoder(io.LimitReader(part, maxEntityPart))
	dec.UseNumber()
	var entity map[string]any
	if err := dec.Decode(&entity); err != nil || entity == nil {
		return nil, nil, &recordError{Code: "JSON_PARSER_ERROR", Message: "Json Deserialization failed on the entity part"}
	}
	part, err = mr.NextPart()
	if err != nil {
		return nil, nil, bad("Multipart message must include a binary part named VersionData")
	}
	if part.FormName() != "VersionData" {
		return nil, nil, bad(fmt.Sprintf("Binary part name %q does not match a blob field of ContentVersion (VersionData)", part.FormName()))
	}
	bw := newBlobWriter(s.opts.StoreContentBytesUpTo)
	if _, err := io.Copy(bw, part); err != nil {
		return nil, nil, bad("reading VersionData: " + err.Error())
	}
	if _, err := mr.NextPart(); err != io.EOF {
		return nil, nil, bad("Multipart message has unexpected parts after VersionData")
	}
	return entity, bw.blob(), nil
}

// createContentVersionLocked inserts a ContentVersion, its ContentDocument (for
// a first version) and ContentDocumentLinks to the owner and to
// FirstPublishLocationId. b is nil for JSON inserts (VersionData in base64).
func (s *Server) createContentVersionLocked(tx *txn, o *object, fields Record, b *blob) (string, *recordError) {
	for k, v := range fields {
		if !strings.EqualFold(k, "VersionData") {
			continue
		}
		delete(fields, k)
		if b != nil {
			continue
		}
		str, ok := v.(string)
		if !ok {
			return "", &recordError{Code: "JSON_PARSER_ERROR", Message: "VersionData must be a base64 string", Fields: []string{"VersionData"}}
		}
		if len(str) > MaxBase64VersionData {
			return "", &recordError{Code: "STRING_TOO_LONG", Message: "VersionData: data value too large: base64 data over 37.5 MB, use a multipart request", Fields: []string{"VersionData"}}
		}
		raw, err := base64.StdEncoding.DecodeString(str)
		if err != nil {
			return "", &recordError{Code: "JSON_PARSER_ERROR", Message: "Cannot deserialize VersionData: illegal base64 data", Fields: []string{"VersionData"}}
		}
		bw := newBlobWriter(s.opts.StoreContentBytesUpTo)
		bw.Write(raw)
		b = bw.blob()
	}
	docID, _ := fields["ContentDocumentId"].(string)
	if b == nil {
		return "", &recordError{Code: "REQUIRED_FIELD_MISSING", Message: "Required fields are missing: [VersionData]", Fields: []string{"VersionData"}}
	}
	pathOnClient, _ := fields["PathOnClient"].(string)
	if pathOnClient == "" {
		return "", &recordError{Code: "REQUIRED_FIELD_MISSING", Message: "Required fields are missing: [PathOnClient]", Fields: []string{"PathOnClient"}}
	}
	var linkTo string
	if v, ok := fields["FirstPublishLocationId"]; ok && v != nil {
		str, _ := v.(string)
		if _, rec := s.data.lookupID(str); rec == nil {
			return "", &recordError{Code: "INVALID_CROSS_REFERENCE_KEY", Message: "invalid cross reference id", Fields: []string{"FirstPublishLocationId"}}
		}
		linkTo = canonicalID(str)
		fields["FirstPublishLocationId"] = linkTo
	}
	if err := o.checkUnique(fields, ""); err != nil {
		return "", err
	}
	if t, _ := fields["Title"].(string); t == "" {
		fields["Title"] = strings.TrimSuffix(path.Base(pathOnClient), path.Ext(pathOnClient))
	}
	ext := strings.ToLower(strings.TrimPrefix(path.Ext(pathOnClient), "."))
	fileType := map[string]string{"pdf": "PDF", "txt": "TEXT", "png": "PNG", "jpg": "JPG", "jpeg": "JPG", "docx": "WORD_X", "xml": "XML", "json": "JSON", "zip": "ZIP"}[ext]
	if fileType == "" {
		fileType = "UNKNOWN"
	}
	docs := s.data.object(ObjContentDocument)
	links := s.data.object(ObjContentDocumentLink)
	version := 1
	if docID != "" {
		doc := docs.records[canonicalID(docID)]
		if doc == nil {
			return "", &recordError{Code: "INVALID_CROSS_REFERENCE_KEY", Message: "invalid cross reference id", Fields: []string{"ContentDocumentId"}}
		}
		docID = doc["Id"].(string)
		for _, rec := range o.records {
			if rec["ContentDocumentId"] == docID && rec["IsLatest"] == true {
				old := rec
				old["IsLatest"] = false
				tx.onUndo(func() { old["IsLatest"] = true })
				version++
			}
		}
	} else {
		var err *recordError
		docID, err = s.insertLocked(tx, docs, Record{"Title": fields["Title"], "FileType": fileType, "FileExtension": ext,
			"ContentSize": json.Number(fmt.Sprint(b.size)), "OwnerId": s.userID})
		if err != nil {
			return "", err
		}
	}
	fields["ContentDocumentId"] = docID
	fields["ContentSize"] = json.Number(fmt.Sprint(b.size))
	fields["Checksum"] = b.md5
	fields["FileType"] = fileType
	fields["FileExtension"] = ext
	fields["IsLatest"] = true
	fields["VersionNumber"] = fmt.Sprint(version)
	fields["OwnerId"] = s.userID
	if _, ok := fields["ContentLocation"]; !ok {
		fields["ContentLocation"] = "S"
	}
	if _, ok := fields["Origin"]; !ok {
		fields["Origin"] = "C"
	}
	id, err := s.insertLocked(tx, o, fields)
	if err != nil {
		return "", err
	}
	doc := docs.records[docID]
	prevLatest := doc["LatestPublishedVersionId"]
	doc["LatestPublishedVersionId"] = id
	tx.onUndo(func() { doc["LatestPublishedVersionId"] = prevLatest })
	s.data.blobs[id] = b
	tx.onUndo(func() { delete(s.data.blobs, id) })
	if version == 1 {
		// Salesforce links a new file to its owner and to the first publish location.
		for _, target := range []string{s.userID, linkTo} {
			if target == "" {
				continue
			}
			if _, err := s.insertLocked(tx, links, Record{"ContentDocumentId": docID, "LinkedEntityId": target, "ShareType": "I", "Visibility": "AllUsers"}); err != nil {
				return "", err
			}
		}
	}
	return id, nil
}

// handleVersionData is GET /sobjects/ContentVersion/{Id}/VersionData.
func (s *Server) handleVersionData(w http.ResponseWriter, r *http.Request, c *restCall) {
	s.mu.Lock()
	b := s.data.blobs[canonicalID(c.segs[2])]
	s.mu.Unlock()
	if b == nil {
		writeRecordError(w, errNoResource)
		return
	}
	if b.data == nil {
		writeRecordError(w, &recordError{Code: "NOT_FOUND", Message: "the sandbox kept no bytes of this file (see StoreContentBytesUpTo)"})
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(len(b.data)))
	_, _ = w.Write(b.data)
}

// ContentVersions returns every ContentVersion with what was kept of its bytes.
func (s *Server) ContentVersions() []ContentFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.data.object(ObjContentVersion)
	if o == nil {
		return nil
	}
	out := make([]ContentFile, 0, len(o.order))
	for _, id := range o.order {
		out = append(out, s.contentFileLocked(o.records[id]))
	}
	return out
}

// FindContentVersion returns the first ContentVersion whose field equals value
// (e.g. "OneSpan_Document_Key__c", "pkg/doc1").
func (s *Server) FindContentVersion(field string, value any) (ContentFile, bool) {
	for _, cf := range s.ContentVersions() {
		s.mu.Lock()
		o := s.data.object(ObjContentVersion)
		name, _ := o.knownField(field)
		eq := valuesEqual(o, name, cf.Fields[name], value)
		s.mu.Unlock()
		if eq {
			return cf, true
		}
	}
	return ContentFile{}, false
}

func (s *Server) contentFileLocked(rec Record) ContentFile {
	str := func(k string) string { v, _ := rec[k].(string); return v }
	cf := ContentFile{ID: str("Id"), ContentDocumentID: str("ContentDocumentId"), Title: str("Title"), PathOnClient: str("PathOnClient"),
		FirstPublishLocationID: str("FirstPublishLocationId"), Fields: copyRecord(rec)}
	if b := s.data.blobs[cf.ID]; b != nil {
		cf.Size, cf.SHA256, cf.MD5 = b.size, b.sha256, b.md5
		cf.Data = bytes.Clone(b.data)
	}
	return cf
}
