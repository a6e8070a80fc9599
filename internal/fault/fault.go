// Package fault classifies failures so that one place (the worker) can decide
// what to do with a message: ack, retry later, pause a tenant or dead-letter it.
package fault

import (
	"errors"
	"fmt"
	"time"
)

// Class says what the caller should do about an error.
type Class int

const (
	// Retryable failures are transient: retry with backoff.
	Retryable Class = iota + 1
	// AuthExpired means the access token was refused: refresh once and retry once.
	AuthExpired
	// Reconnect means the tenant's grant is gone: an operator must reconnect it.
	Reconnect
	// Throttled means the provider asked us to slow down until Error.Until.
	Throttled
	// Permanent failures will fail the same way again: dead-letter them.
	Permanent
)

var classNames = map[Class]string{
	Retryable:   "retryable",
	AuthExpired: "auth_expired",
	Reconnect:   "reconnect",
	Throttled:   "throttled",
	Permanent:   "permanent",
}

func (c Class) String() string {
	if n, ok := classNames[c]; ok {
		return n
	}
	return "unknown"
}

// Error is a failure with a class. Op says what failed (with ids, never secrets);
// Code is the provider's error code when there is one (INVALID_SESSION_ID...).
type Error struct {
	Class Class
	Op    string
	Code  string
	Until time.Time // when Class is Throttled: do not call again before this
	Err   error
}

func (e *Error) Error() string {
	msg := e.Op
	if e.Code != "" {
		msg += ": " + e.Code
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// New wraps err with a class.
func New(class Class, op string, err error) *Error {
	return &Error{Class: class, Op: op, Err: err}
}

// Errorf builds a classed error from a format, like fmt.Errorf (with %w support).
func Errorf(class Class, op, format string, args ...any) *Error {
	return &Error{Class: class, Op: op, Err: fmt.Errorf(format, args...)}
}

// ClassOf returns the class of err. Unclassified errors are Retryable: a bug
// that we do not understand must not drop an event, and max_deliver bounds the
// retries anyway. Cancellation and timeouts are Retryable too.
func ClassOf(err error) Class {
	if err == nil {
		return 0
	}
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Class
	}
	return Retryable
}

// ThrottledUntil returns the time a Throttled error asks us to wait for.
func ThrottledUntil(err error) (time.Time, bool) {
	var fe *Error
	if errors.As(err, &fe) && fe.Class == Throttled {
		return fe.Until, true
	}
	return time.Time{}, false
}

// Is reports whether err has the given class.
func Is(err error, class Class) bool { return err != nil && ClassOf(err) == class }
