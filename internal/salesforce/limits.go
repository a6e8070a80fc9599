package salesforce

import (
	"strconv"
	"strings"
)

// LimitInfo is the org's rolling 24-hour API usage from the Sforce-Limit-Info
// header. The zero value means "not known yet".
type LimitInfo struct {
	Used int64
	Max  int64
}

// Ratio returns Used/Max, or 0 when the limit is unknown.
func (l LimitInfo) Ratio() float64 {
	if l.Max <= 0 {
		return 0
	}
	return float64(l.Used) / float64(l.Max)
}

// Known reports whether the value came from a header.
func (l LimitInfo) Known() bool { return l.Max > 0 }

// ParseLimitInfo reads the api-usage entry of a Sforce-Limit-Info header, e.g.
// "api-usage=10018/100000" or "api-usage=18/5000, per-app-api-usage=17/250(appName=x)".
// Other entries (api-bursts, per-app-api-usage) are ignored.
func ParseLimitInfo(header string) (LimitInfo, bool) {
	for _, part := range strings.FieldsFunc(header, func(r rune) bool { return r == ',' || r == ';' }) {
		part = strings.TrimSpace(part)
		// HasPrefix, not Contains: "per-app-api-usage=" must not match.
		rest, ok := strings.CutPrefix(part, "api-usage=")
		if !ok {
			continue
		}
		usedS, maxS, ok := strings.Cut(rest, "/")
		if !ok {
			return LimitInfo{}, false
		}
		if i := strings.IndexFunc(maxS, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			maxS = maxS[:i] // tolerate a trailing "(appName=...)" or junk
		}
		used, err1 := strconv.ParseInt(strings.TrimSpace(usedS), 10, 64)
		limit, err2 := strconv.ParseInt(maxS, 10, 64)
		if err1 != nil || err2 != nil || used < 0 || limit <= 0 {
			return LimitInfo{}, false
		}
		return LimitInfo{Used: used, Max: limit}, true
	}
	return LimitInfo{}, false
}
