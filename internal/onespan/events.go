package onespan

import "github.com/countersign/countersign/internal/callback"

// AllEvents are the callback event names OneSpan can send (registration asks
// for all of them when onespan.callback_events is empty).
var AllEvents = callback.Names

// IsKnownEvent reports whether name is in AllEvents.
func IsKnownEvent(name string) bool { return callback.Known(name) }
