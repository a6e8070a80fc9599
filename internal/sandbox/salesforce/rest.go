package salesforce

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// apiError is one element of a REST error body (single-resource calls).
type apiError struct {
	Message   string   `json:"message"`
	ErrorCode string   `json:"errorCode"`
	Fields    []string `json:"fields,omitempty"`
}

type dataState struct {
	used  int
	limit int
}

func (d *dataState) init(opts Options) { d.limit = opts.DailyRequestLimit }

func (s *Server) handleREST(w http.ResponseWriter, r *http.Request) {
	if !s.bearerValid(r) {
		writeJSON(w, http.StatusUnauthorized, []apiError{{Message: "Session expired or invalid", ErrorCode: "INVALID_SESSION_ID"}})
		return
	}
	s.mu.Lock()
	s.data.used++
	w.Header().Set("Sforce-Limit-Info", fmt.Sprintf("api-usage=%d/%d", s.data.used, s.data.limit))
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
