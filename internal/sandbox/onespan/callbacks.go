package onespan

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/countersign/countersign/internal/callback"
	osapi "github.com/countersign/countersign/internal/onespan"
)

// EventClass is the @class OneSpan puts in every callback.
const EventClass = osapi.EventClass

// Events are the names the emulator accepts in a registration.
var Events = callback.Names

func knownEvent(name string) bool { return callback.Known(name) }

// Event is a callback body exactly as OneSpan sends it.
type Event = osapi.CallbackEvent

// CreatedDateLayout is OneSpan's createdDate: UTC, milliseconds, Z.
const CreatedDateLayout = osapi.CreatedDateLayout

// NewEvent builds an event dated at. message and documentID may be "" (null).
func NewEvent(name, sessionUser, packageID, message, documentID string, at time.Time) Event {
	return osapi.NewCallbackEvent(name, sessionUser, packageID, message, documentID, at)
}

// FailedCallback is a callback the listener did not accept; OneSpan would
// e-mail the sender about it and never resend it.
type FailedCallback struct {
	Event Event
	Err   error
}

var defaultSender = &http.Client{Timeout: 30 * time.Second}

// SendCallback POSTs ev to url the way OneSpan does (see osapi.SendCallback).
func SendCallback(ctx context.Context, url, key string, ev Event) error {
	return sendCallback(ctx, defaultSender, url, key, ev)
}

func sendCallback(ctx context.Context, hc *http.Client, url, key string, ev Event) error {
	_, err := osapi.SendCallback(ctx, hc, url, key, ev)
	return err
}

func (s *Server) HoldCallbacks(hold bool) { s.mu.Lock(); s.holdCallbacks = hold; s.mu.Unlock() }

// Held returns the callbacks recorded while held (never sent: OneSpan does not resend).
func (s *Server) Held() []Event { s.mu.Lock(); defer s.mu.Unlock(); return slices.Clone(s.held) }

// Sent returns the callbacks the listener accepted.
func (s *Server) Sent() []Event { s.mu.Lock(); defer s.mu.Unlock(); return slices.Clone(s.sent) }

// Failed returns the callbacks the listener refused or could not be reached for.
func (s *Server) Failed() []FailedCallback {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.failed)
}

// Emit sends ev to the registered URL if the registration subscribes to its
// name, like OneSpan. It returns the delivery error, if any (also in Failed).
func (s *Server) Emit(ctx context.Context, ev Event) error {
	s.mu.Lock()
	reg := s.callback
	hold := s.holdCallbacks
	hc := s.hc
	var url, key string
	subscribed := reg != nil && reg.URL != "" && slices.Contains(reg.Events, ev.Name)
	if subscribed {
		url, key = reg.URL, reg.Key
		if hold {
			s.held = append(s.held, ev)
		}
	}
	s.mu.Unlock()
	if !subscribed || hold {
		return nil
	}
	err := sendCallback(ctx, hc, url, key, ev)
	s.mu.Lock()
	if err != nil {
		s.failed = append(s.failed, FailedCallback{Event: ev, Err: err})
	} else {
		s.sent = append(s.sent, ev)
	}
	s.mu.Unlock()
	return err
}

// transition changes a package under the lock and returns the event to emit.
func (s *Server) transition(id string, f func(p *Package, now time.Time) (Event, error)) (Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.packages[id]
	if !ok {
		return Event{}, fmt.Errorf("sandbox: no package %s", id)
	}
	now := s.now().UTC()
	ev, err := f(&st.Package, now)
	if err != nil {
		return Event{}, err
	}
	// Keep updated strictly increasing so ordering by it is stable even
	// under a frozen test clock.
	if !now.After(st.Updated) {
		now = st.Updated.Add(time.Millisecond)
	}
	st.Updated = now
	return ev, nil
}

func (s *Server) lifecycle(ctx context.Context, id string, f func(p *Package, now time.Time) (Event, error)) error {
	ev, err := s.transition(id, f)
	if err != nil {
		return err
	}
	return s.Emit(ctx, ev)
}

func (s *Server) setStatus(ctx context.Context, id, from, to, event string) error {
	return s.lifecycle(ctx, id, func(p *Package, now time.Time) (Event, error) {
		if from != "" && p.Status != from {
			return Event{}, fmt.Errorf("sandbox: package %s is %s, not %s", id, p.Status, from)
		}
		p.Status = to
		return NewEvent(event, s.senderID, id, "", "", now), nil
	})
}

// CreatePackage plants a package like AddPackage and sends PACKAGE_CREATE
// from the sender, as OneSpan does when a package is created.
func (s *Server) CreatePackage(ctx context.Context, p Package) error {
	s.AddPackage(p)
	return s.lifecycle(ctx, p.ID, func(_ *Package, now time.Time) (Event, error) {
		return NewEvent("PACKAGE_CREATE", s.senderID, p.ID, "", "", now), nil
	})
}

// Activate sends a DRAFT package (status SENT, PACKAGE_ACTIVATE).
func (s *Server) Activate(ctx context.Context, id string) error {
	return s.setStatus(ctx, id, "DRAFT", "SENT", "PACKAGE_ACTIVATE")
}

// SignDocument marks a document signed by signer (DOCUMENT_SIGNED with the
// document id and the signer as sessionUser).
func (s *Server) SignDocument(ctx context.Context, id, docID, signer string) error {
	return s.lifecycle(ctx, id, func(p *Package, now time.Time) (Event, error) {
		if p.Status != "SENT" {
			return Event{}, fmt.Errorf("sandbox: package %s is %s, not SENT", id, p.Status)
		}
		i := slices.IndexFunc(p.Documents, func(d Document) bool { return d.ID == docID })
		if i < 0 {
			return Event{}, fmt.Errorf("sandbox: package %s has no document %s", id, docID)
		}
		p.Documents[i].Signed = true
		return NewEvent("DOCUMENT_SIGNED", signer, id, "", docID, now), nil
	})
}

// SignerComplete says a signer finished (SIGNER_COMPLETE).
func (s *Server) SignerComplete(ctx context.Context, id, signer string) error {
	return s.lifecycle(ctx, id, func(p *Package, now time.Time) (Event, error) {
		return NewEvent("SIGNER_COMPLETE", signer, id, "", "", now), nil
	})
}

// Complete completes a SENT package (status COMPLETED, PACKAGE_COMPLETE with
// the last signer as sessionUser, every document signed).
func (s *Server) Complete(ctx context.Context, id string) error {
	return s.lifecycle(ctx, id, func(p *Package, now time.Time) (Event, error) {
		if p.Status != "SENT" {
			return Event{}, fmt.Errorf("sandbox: package %s is %s, not SENT", id, p.Status)
		}
		p.Status, p.Completed = "COMPLETED", now
		for i := range p.Documents {
			p.Documents[i].Signed = true
		}
		user := s.senderID
		if n := len(p.Signers); n > 0 {
			user = p.Signers[n-1].ID
		}
		return NewEvent("PACKAGE_COMPLETE", user, id, "", "", now), nil
	})
}

// Decline declines a SENT package with a reason (status DECLINED, the reason
// in messages[] and in the callback's message).
func (s *Server) Decline(ctx context.Context, id, reason string) error {
	return s.lifecycle(ctx, id, func(p *Package, now time.Time) (Event, error) {
		if p.Status != "SENT" {
			return Event{}, fmt.Errorf("sandbox: package %s is %s, not SENT", id, p.Status)
		}
		user := s.senderID
		if len(p.Signers) > 0 {
			user = p.Signers[0].ID
		}
		p.Status = "DECLINED"
		p.Messages = append(p.Messages, Message{Content: reason, From: user, Created: now})
		return NewEvent("PACKAGE_DECLINE", user, id, reason, "", now), nil
	})
}

// Expire expires a SENT package (status EXPIRED, PACKAGE_EXPIRE).
func (s *Server) Expire(ctx context.Context, id string) error {
	return s.setStatus(ctx, id, "SENT", "EXPIRED", "PACKAGE_EXPIRE")
}

// Archive archives a COMPLETED package (status ARCHIVED, PACKAGE_ARCHIVE).
func (s *Server) Archive(ctx context.Context, id string) error {
	return s.setStatus(ctx, id, "COMPLETED", "ARCHIVED", "PACKAGE_ARCHIVE")
}
