package salesforce

import "testing"

func TestQuoteSOQL(t *testing.T) {
	cases := map[string]string{
		`plain`:            `'plain'`,
		`O'Brien`:          `'O\'Brien'`,
		`back\slash`:       `'back\\slash'`,
		`\' OR Id != null`: `'\\\' OR Id != null'`,
		`pkg/doc-1`:        `'pkg/doc-1'`,
	}
	for in, want := range cases {
		if got := QuoteSOQL(in); got != want {
			t.Errorf("QuoteSOQL(%q) = %q, want %q", in, got, want)
		}
		if got := EscapeSOQL(in); "'"+got+"'" != want {
			t.Errorf("EscapeSOQL(%q) = %q", in, got)
		}
	}
}
