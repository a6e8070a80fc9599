package salesforce

import "strings"

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// makeID builds an 18-char Salesforce-like id: 3-char key prefix, a pod-like
// "5g" marker, a base62 counter, and the real case-safe 3-char checksum suffix,
// so clients that validate or shorten ids see the real shape.
func makeID(prefix string, n uint64) string {
	var b [10]byte
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = base62[n%62]
		n /= 62
	}
	id15 := prefix + "5g" + string(b[:])
	return id15 + idSuffix(id15)
}

// idSuffix computes the 3-char suffix that turns a 15-char id into 18 chars:
// one character per 5-char chunk, encoding which chunk letters are upper case.
func idSuffix(id15 string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	var out [3]byte
	for chunk := 0; chunk < 3; chunk++ {
		v := 0
		for i := 0; i < 5; i++ {
			c := id15[chunk*5+i]
			if c >= 'A' && c <= 'Z' {
				v |= 1 << i
			}
		}
		out[chunk] = alphabet[v]
	}
	return string(out[:])
}

// sameID compares ids the way Salesforce does: a 15-char id equals its 18-char
// form; the 15-char part is case-sensitive.
func sameID(a, b string) bool {
	if len(a) == 18 && len(b) == 18 {
		return strings.EqualFold(a, b) && a[:15] == b[:15]
	}
	if (len(a) == 15 || len(a) == 18) && (len(b) == 15 || len(b) == 18) {
		return a[:15] == b[:15]
	}
	return false
}

// looksLikeID reports whether v has the shape of a 15 or 18-char id.
func looksLikeID(v string) bool {
	if len(v) != 15 && len(v) != 18 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if !strings.ContainsRune(base62, rune(v[i])) {
			return false
		}
	}
	if len(v) == 18 && !strings.EqualFold(idSuffix(v[:15]), v[15:]) {
		return false
	}
	return true
}
