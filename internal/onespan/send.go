package onespan

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// EventClass is the @class OneSpan puts in every callback.
const EventClass = "com.silanis.esl.packages.event.ESLProcessEvent"

// CreatedDateLayout is OneSpan's createdDate: UTC, milliseconds, Z.
const CreatedDateLayout = "2006-01-02T15:04:05.000Z"

// CallbackEvent is a callback body exactly as OneSpan sends it: its field
// order, and explicit nulls for message and documentId when unset.
type CallbackEvent struct {
	Class       string  `json:"@class"`
	Name        string  `json:"name"`
	SessionUser string  `json:"sessionUser"`
	PackageID   string  `json:"packageId"`
	Message     *string `json:"message"`
	DocumentID  *string `json:"documentId"`
	CreatedDate string  `json:"createdDate"`
}

// NewCallbackEvent builds an event dated at; message and documentID may be ""
// (sent as null).
func NewCallbackEvent(name, sessionUser, packageID, message, documentID string, at time.Time) CallbackEvent {
	ev := CallbackEvent{Class: EventClass, Name: name, SessionUser: sessionUser, PackageID: packageID,
		CreatedDate: at.UTC().Format(CreatedDateLayout)}
	if message != "" {
		ev.Message = &message
	}
	if documentID != "" {
		ev.DocumentID = &documentID
	}
	return ev
}

// CallbackAnswer is what a listener answered to a sent callback.
type CallbackAnswer struct {
	Status int
	Body   string
}

// SendCallback POSTs ev to url the way OneSpan does: "Authorization: Basic
// <key>" with the key raw (no header when key is empty), JSON in UTF-8, an
// empty User-Agent. A non-2xx answer is an error that carries the answer.
func SendCallback(ctx context.Context, hc *http.Client, url, key string, ev CallbackEvent) (CallbackAnswer, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return CallbackAnswer{}, fmt.Errorf("encode callback %s for package %s: %w", ev.Name, ev.PackageID, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return CallbackAnswer{}, fmt.Errorf("callback %s for package %s: %w", ev.Name, ev.PackageID, err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Basic "+key)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Accept-Encoding", "gzip,deflate")
	req.Header["User-Agent"] = []string{""} // the captured request has an empty User-Agent
	resp, err := hc.Do(req)
	if err != nil {
		return CallbackAnswer{}, fmt.Errorf("callback %s for package %s: %w", ev.Name, ev.PackageID, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	ans := CallbackAnswer{Status: resp.StatusCode, Body: string(b)}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return ans, fmt.Errorf("callback %s for package %s: listener answered %d", ev.Name, ev.PackageID, resp.StatusCode)
	}
	return ans, nil
}
