package salesforce

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// uploadMultipart streams a ContentVersion upload of size bytes generated on
// the fly and returns the response and the SHA-256 of what was sent.
func uploadMultipart(t *testing.T, s *Server, at string, entity map[string]any, size int64) (apiResp, string) {
	t.Helper()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	sum := make(chan string, 1)
	go func() {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="entity_content"`)
		h.Set("Content-Type", "application/json")
		p, _ := mw.CreatePart(h)
		_ = json.NewEncoder(p).Encode(entity)
		h = textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="VersionData"; filename="doc.pdf"`)
		h.Set("Content-Type", "application/octet-stream")
		p, _ = mw.CreatePart(h)
		hash := sha256.New()
		chunk := make([]byte, 1<<20)
		for i := range chunk {
			chunk[i] = byte(i * 7)
		}
		var err error
		for sent := int64(0); sent < size && err == nil; {
			n := min(int64(len(chunk)), size-sent)
			chunk[0] = byte(sent >> 20) // vary chunks so the hash covers order
			hash.Write(chunk[:n])
			_, err = p.Write(chunk[:n])
			sent += n
		}
		sum <- hex.EncodeToString(hash.Sum(nil))
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, _ := http.NewRequest("POST", s.URL()+v62+"/sobjects/ContentVersion", pr)
	req.Header.Set("Authorization", "Bearer "+at)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return apiResp{status: resp.StatusCode, header: resp.Header, raw: strings.TrimSpace(string(raw))}, <-sum
}

func TestContentVersionMultipartStreamsLargeFile(t *testing.T) {
	size := int64(256 << 20)
	if testing.Short() {
		size = 32 << 20
	}
	s, at := restServer(t, func(o *Options) { o.StoreContentBytesUpTo = 1 << 10 })
	txID := mustID(t, upsertTx(t, s, at, "P1", nil))

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	r, sum := uploadMultipart(t, s, at, map[string]any{"Title": "Signed", "PathOnClient": "contract.pdf",
		"FirstPublishLocationId": txID, "OneSpan_Document_Key__c": "P1/doc1"}, size)
	close(stop)
	<-sampled
	if r.status != 201 {
		t.Fatalf("upload: %d %s", r.status, r.raw)
	}
	id := mustID(t, r)
	if !strings.HasPrefix(id, "068") || r.raw != `{"id":"`+id+`","success":true,"errors":[]}` {
		t.Fatalf("body %s", r.raw)
	}
	if grew := int64(peak.Load()) - int64(base); grew > 48<<20 {
		t.Fatalf("heap grew by %d MiB during a %d MiB upload", grew>>20, size>>20)
	}
	cv, ok := s.FindContentVersion("OneSpan_Document_Key__c", "P1/doc1")
	if !ok || cv.ID != id || cv.Size != size || cv.SHA256 != sum || cv.Data != nil || cv.Title != "Signed" || cv.FirstPublishLocationID != txID {
		t.Fatalf("stored %+v (want size %d sha %s, no bytes)", cv, size, sum)
	}
	if !strings.HasPrefix(cv.ContentDocumentID, "069") || cv.Fields["FileType"] != "PDF" || cv.Fields["IsLatest"] != true {
		t.Fatalf("fields %v", cv.Fields)
	}
	links := s.FindRecords(ObjContentDocumentLink, "ContentDocumentId", cv.ContentDocumentID)
	linked := false
	for _, l := range links {
		if l["LinkedEntityId"] == txID && strings.HasPrefix(l["Id"].(string), "06A") {
			linked = true
		}
	}
	if !linked || s.Count(ObjContentDocument) != 1 {
		t.Fatalf("links %v", links)
	}
}

func TestContentVersionJSONAndDuplicates(t *testing.T) {
	s, at := restServer(t, func(o *Options) { o.StoreContentBytesUpTo = 1 << 20 })
	txID := mustID(t, upsertTx(t, s, at, "P1", nil))
	pdf := []byte("%PDF-1.7 tiny")
	body := map[string]any{"PathOnClient": "evidence.pdf", "VersionData": base64.StdEncoding.EncodeToString(pdf),
		"FirstPublishLocationId": txID[:15], "OneSpan_Document_Key__c": "P1/evidence-summary"}
	r := call(t, s, at, "POST", v62+"/sobjects/ContentVersion", body)
	if r.status != 201 {
		t.Fatalf("json upload %d %s", r.status, r.raw)
	}
	id := mustID(t, r)
	cv, _ := s.FindContentVersion("Id", id)
	want := sha256.Sum256(pdf)
	if string(cv.Data) != string(pdf) || cv.SHA256 != hex.EncodeToString(want[:]) || cv.Title != "evidence" || cv.FirstPublishLocationID != txID {
		t.Fatalf("stored %+v", cv)
	}
	if got := call(t, s, at, "GET", v62+"/sobjects/ContentVersion/"+id+"/VersionData", nil); got.status != 200 || got.raw != string(pdf) {
		t.Fatalf("download %d %q", got.status, got.raw)
	}
	cases := []struct {
		name string
		edit func(map[string]any)
		code string
	}{
		{"a retry of the same document key", func(map[string]any) {}, "DUPLICATE_VALUE"},
		{"missing PathOnClient", func(b map[string]any) { delete(b, "PathOnClient"); b["OneSpan_Document_Key__c"] = "k2" }, "REQUIRED_FIELD_MISSING"},
		{"unknown publish location", func(b map[string]any) {
			b["FirstPublishLocationId"] = "a005g0000000ZZZAAA"
			b["OneSpan_Document_Key__c"] = "k3"
		}, "INVALID_CROSS_REFERENCE_KEY"},
		{"bad base64", func(b map[string]any) { b["VersionData"] = "%%%"; b["OneSpan_Document_Key__c"] = "k4" }, "JSON_PARSER_ERROR"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := map[string]any{}
			for k, v := range body {
				b[k] = v
			}
			c.edit(b)
			r := call(t, s, at, "POST", v62+"/sobjects/ContentVersion", b)
			if r.status != 400 || !strings.Contains(r.raw, `"errorCode":"`+c.code+`"`) {
				t.Fatalf("%d %s", r.status, r.raw)
			}
		})
	}
	if n := len(s.ContentVersions()); n != 1 || s.Count(ObjContentDocument) != 1 {
		t.Fatalf("a refused upload left files: %d", n)
	}
	// The duplicate message names the existing version, so a client can recover its id.
	r = call(t, s, at, "POST", v62+"/sobjects/ContentVersion", body)
	if !strings.Contains(r.raw, "duplicates value on record with id: "+id) {
		t.Fatalf("duplicate message %s", r.raw)
	}
}

func TestContentVersionMultipartRejections(t *testing.T) {
	s, at := restServer(t, nil)
	post := func(ct, body string) apiResp {
		req, _ := http.NewRequest("POST", s.URL()+v62+"/sobjects/ContentVersion", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+at)
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return apiResp{status: resp.StatusCode, raw: string(raw)}
	}
	const ct = `multipart/form-data; boundary="b"`
	cases := map[string]string{
		"entity part is not json": "--b\r\nContent-Disposition: form-data; name=\"entity_content\"\r\n\r\n{}\r\n--b--\r\n",
		"no binary part":          "--b\r\nContent-Disposition: form-data; name=\"entity_content\"\r\nContent-Type: application/json\r\n\r\n{\"PathOnClient\":\"a.pdf\"}\r\n--b--\r\n",
		"binary part misnamed": "--b\r\nContent-Disposition: form-data; name=\"entity_content\"\r\nContent-Type: application/json\r\n\r\n{\"PathOnClient\":\"a.pdf\"}\r\n" +
			"--b\r\nContent-Disposition: form-data; name=\"Body\"; filename=\"a.pdf\"\r\n\r\nxyz\r\n--b--\r\n",
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			if r := post(ct, body); r.status != 400 {
				t.Fatalf("%d %s", r.status, r.raw)
			}
		})
	}
	ok := "--b\r\nContent-Disposition: form-data; name=\"entity_content\"\r\nContent-Type: application/json\r\n\r\n{\"PathOnClient\":\"a.pdf\"}\r\n" +
		"--b\r\nContent-Disposition: form-data; name=\"VersionData\"; filename=\"a.pdf\"\r\nContent-Type: application/octet-stream\r\n\r\nxyz\r\n--b--\r\n"
	if r := post(ct, ok); r.status != 201 {
		t.Fatalf("valid multipart: %d %s", r.status, r.raw)
	}
	if cvs := s.ContentVersions(); len(cvs) != 1 || cvs[0].Size != 3 {
		t.Fatalf("content %+v", cvs)
	}
}
