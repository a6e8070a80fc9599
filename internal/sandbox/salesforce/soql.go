package salesforce

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"
)

// The sandbox understands the SOQL subset the client needs:
//
//	SELECT f1, f2, Rel__r.Field FROM Obj
//	  [WHERE cond [AND cond ...]] [ORDER BY f [ASC|DESC]] [LIMIT n]
//	cond: field = value | field != value | field IN (v1, v2) | field NOT IN (...)
//	SELECT COUNT() FROM Obj [WHERE ...]
//
// Anything else is MALFORMED_QUERY, so a test never relies on SOQL the sandbox
// does not really evaluate.

type soqlQuery struct {
	fields  []string
	count   bool
	object  string
	conds   []soqlCond
	orderBy string
	desc    bool
	limit   int // -1: none
}

type soqlCond struct {
	field  string
	op     string // "=", "!=", "IN", "NOT IN"
	values []any
}

type soqlToken struct {
	kind string // "ident", "string", "number", "sym", "eof"
	text string
	pos  int
}

func lexSOQL(q string) ([]soqlToken, error) {
	var out []soqlToken
	i := 0
	for i < len(q) {
		c := rune(q[i])
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			closed := false
			for j < len(q) {
				if q[j] == '\\' && j+1 < len(q) {
					esc := map[byte]byte{'n': '\n', 't': '\t', 'r': '\r', 'b': '\b', 'f': '\f', '\'': '\'', '"': '"', '\\': '\\'}
					e, ok := esc[q[j+1]]
					if !ok {
						return nil, malformed("Invalid string literal '%s'. Illegal character sequence '\\%c' in string literal.", q[i:min(j+2, len(q))], q[j+1])
					}
					b.WriteByte(e)
					j += 2
					continue
				}
				if q[j] == '\'' {
					closed = true
					break
				}
				b.WriteByte(q[j])
				j++
			}
			if !closed {
				return nil, malformed("unexpected token: %s", q[i:])
			}
			out = append(out, soqlToken{"string", b.String(), i})
			i = j + 1
		case c == '-' || c >= '0' && c <= '9':
			j := i + 1
			for j < len(q) && (q[j] >= '0' && q[j] <= '9' || q[j] == '.') {
				j++
			}
			out = append(out, soqlToken{"number", q[i:j], i})
			i = j
		case unicode.IsLetter(c) || c == '_':
			j := i + 1
			for j < len(q) && (unicode.IsLetter(rune(q[j])) || unicode.IsDigit(rune(q[j])) || q[j] == '_' || q[j] == '.') {
				j++
			}
			out = append(out, soqlToken{"ident", q[i:j], i})
			i = j
		case strings.HasPrefix(q[i:], "!=") || strings.HasPrefix(q[i:], "<>"):
			out = append(out, soqlToken{"sym", "!=", i})
			i += 2
		case strings.ContainsRune(",()=", c):
			out = append(out, soqlToken{"sym", string(c), i})
			i++
		default:
			return nil, malformed("unexpected token: '%c'", c)
		}
	}
	return append(out, soqlToken{"eof", "", len(q)}), nil
}

type soqlParser struct {
	toks []soqlToken
	i    int
}

func (p *soqlParser) peek() soqlToken { return p.toks[p.i] }
func (p *soqlParser) next() soqlToken { t := p.toks[p.i]; p.i++; return t }

func (p *soqlParser) keyword(k string) bool {
	if t := p.peek(); t.kind == "ident" && strings.EqualFold(t.text, k) {
		p.i++
		return true
	}
	return false
}

func (p *soqlParser) expect(kind, text string) error {
	t := p.next()
	if t.kind != kind || (text != "" && !strings.EqualFold(t.text, text)) {
		return unexpected(t)
	}
	return nil
}

func unexpected(t soqlToken) error {
	if t.kind == "eof" {
		return malformed("unexpected token: <EOF>")
	}
	return malformed("unexpected token: '%s'", t.text)
}

func parseSOQL(q string) (*soqlQuery, error) {
	toks, err := lexSOQL(q)
	if err != nil {
		return nil, err
	}
	p := &soqlParser{toks: toks}
	out := &soqlQuery{limit: -1}
	if !p.keyword("SELECT") {
		return nil, unexpected(p.peek())
	}
	if t := p.peek(); t.kind == "ident" && strings.EqualFold(t.text, "COUNT") && p.toks[p.i+1].text == "(" {
		p.i += 2
		if err := p.expect("sym", ")"); err != nil {
			return nil, err
		}
		out.count = true
	} else {
		for {
			t := p.next()
			if t.kind != "ident" || strings.EqualFold(t.text, "FROM") {
				return nil, unexpected(t)
			}
			out.fields = append(out.fields, t.text)
			if p.peek().text != "," {
				break
			}
			p.i++
		}
	}
	if !p.keyword("FROM") {
		return nil, unexpected(p.peek())
	}
	t := p.next()
	if t.kind != "ident" || strings.Contains(t.text, ".") {
		return nil, unexpected(t)
	}
	out.object = t.text
	if p.keyword("WHERE") {
		for {
			c, err := p.cond()
			if err != nil {
				return nil, err
			}
			out.conds = append(out.conds, c)
			if !p.keyword("AND") {
				break
			}
		}
	}
	if p.keyword("ORDER") {
		if !p.keyword("BY") {
			return nil, unexpected(p.peek())
		}
		t := p.next()
		if t.kind != "ident" {
			return nil, unexpected(t)
		}
		out.orderBy = t.text
		if p.keyword("DESC") {
			out.desc = true
		} else {
			p.keyword("ASC")
		}
	}
	if p.keyword("LIMIT") {
		t := p.next()
		n, err := strconv.Atoi(t.text)
		if t.kind != "number" || err != nil || n < 0 {
			return nil, unexpected(t)
		}
		out.limit = n
	}
	if t := p.peek(); t.kind != "eof" {
		return nil, unexpected(t)
	}
	return out, nil
}

func (p *soqlParser) cond() (soqlCond, error) {
	t := p.next()
	if t.kind != "ident" {
		return soqlCond{}, unexpected(t)
	}
	c := soqlCond{field: t.text}
	switch {
	case p.peek().text == "=" || p.peek().text == "!=":
		c.op = p.next().text
		v, err := p.value()
		if err != nil {
			return c, err
		}
		c.values = []any{v}
		return c, nil
	case p.keyword("NOT"):
		if !p.keyword("IN") {
			return c, unexpected(p.peek())
		}
		c.op = "NOT IN"
	case p.keyword("IN"):
		c.op = "IN"
	default:
		return c, unexpected(p.peek())
	}
	if err := p.expect("sym", "("); err != nil {
		return c, err
	}
	for {
		v, err := p.value()
		if err != nil {
			return c, err
		}
		c.values = append(c.values, v)
		if p.peek().text != "," {
			break
		}
		p.i++
	}
	return c, p.expect("sym", ")")
}

func (p *soqlParser) value() (any, error) {
	t := p.next()
	switch {
	case t.kind == "string":
		return t.text, nil
	case t.kind == "number":
		if _, err := strconv.ParseFloat(t.text, 64); err != nil {
			return nil, unexpected(t)
		}
		return json.Number(t.text), nil
	case t.kind == "ident" && strings.EqualFold(t.text, "null"):
		return nil, nil
	case t.kind == "ident" && strings.EqualFold(t.text, "true"):
		return true, nil
	case t.kind == "ident" && strings.EqualFold(t.text, "false"):
		return false, nil
	}
	return nil, unexpected(t)
}

// fieldPath is a resolved field reference: a field of the object or, through
// a relationship, of its parent.
type fieldPath struct {
	rel    string // relationship name as declared, "" for a direct field
	relFld string // lookup field holding the parent Id
	parent *object
	field  string // canonical field name
}

func (s *Server) resolvePath(o *object, ref string) (fieldPath, error) {
	relName, fld, ok := strings.Cut(ref, ".")
	if !ok {
		name, known := o.knownField(ref)
		if !known {
			return fieldPath{}, noColumn(ref, o.name)
		}
		return fieldPath{field: name}, nil
	}
	rel, ok := o.rels[strings.ToLower(relName)]
	if !ok || strings.Contains(fld, ".") {
		return fieldPath{}, malformed("Didn't understand relationship '%s' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name.", relName)
	}
	parent := s.data.object(rel.Object)
	if parent == nil {
		return fieldPath{}, noColumn(ref, o.name)
	}
	name, known := parent.knownField(fld)
	if !known {
		return fieldPath{}, noColumn(fld, parent.name)
	}
	for rn := range o.spec.Relationships {
		if strings.EqualFold(rn, relName) {
			relName = rn
		}
	}
	return fieldPath{rel: relName, relFld: rel.Field, parent: parent, field: name}, nil
}

func noColumn(f, obj string) error {
	return &recordError{Code: "INVALID_FIELD", Message: fmt.Sprintf("No such column '%s' on entity '%s'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", f, obj)}
}

// value reads a resolved field of a record (nil when absent or no parent).
func (s *Server) pathValue(o *object, rec Record, p fieldPath, version string) any {
	if p.rel == "" {
		return fieldValue(o, rec, p.field, version)
	}
	pid, _ := rec[p.relFld].(string)
	prec := p.parent.records[pid]
	if prec == nil {
		return nil
	}
	return fieldValue(p.parent, prec, p.field, version)
}

func fieldValue(o *object, rec Record, field, version string) any {
	if o.name == ObjContentVersion && field == "VersionData" {
		return "/services/data/" + version + "/sobjects/ContentVersion/" + rec["Id"].(string) + "/VersionData"
	}
	return rec[field]
}

type queryResult struct {
	TotalSize int           `json:"totalSize"`
	Done      bool          `json:"done"`
	Records   []orderedJSON `json:"records"`
}

func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request, c *restCall) {
	q := r.URL.Query().Get("q")
	res, err := s.runQuery(q, c.version)
	if err != nil {
		re, ok := err.(*recordError)
		if !ok {
			re = &recordError{Code: "MALFORMED_QUERY", Message: err.Error()}
		}
		writeErrors(w, http.StatusBadRequest, apiError{Message: re.Message, ErrorCode: re.Code})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) runQuery(q, version string) (*queryResult, error) {
	if strings.TrimSpace(q) == "" {
		return nil, malformed("unexpected token: <EOF>")
	}
	pq, err := parseSOQL(q)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.data.object(pq.object)
	if o == nil {
		return nil, &recordError{Code: "INVALID_TYPE", Message: fmt.Sprintf("sObject type '%s' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.", pq.object)}
	}
	sel := make([]fieldPath, len(pq.fields))
	for i, f := range pq.fields {
		if sel[i], err = s.resolvePath(o, f); err != nil {
			return nil, err
		}
	}
	conds := make([]fieldPath, len(pq.conds))
	for i, c := range pq.conds {
		if conds[i], err = s.resolvePath(o, c.field); err != nil {
			return nil, err
		}
	}
	var ids []string
	for _, id := range o.order {
		rec := o.records[id]
		ok := true
		for i, c := range pq.conds {
			fo := o
			if conds[i].parent != nil {
				fo = conds[i].parent
			}
			have := s.pathValue(o, rec, conds[i], version)
			match := false
			for _, v := range c.values {
				if valuesEqual(fo, conds[i].field, have, v) {
					match = true
					break
				}
			}
			if match == (c.op == "!=" || c.op == "NOT IN") {
				ok = false
				break
			}
		}
		if ok {
			ids = append(ids, id)
		}
	}
	if pq.orderBy != "" {
		p, err := s.resolvePath(o, pq.orderBy)
		if err != nil {
			return nil, err
		}
		if p.rel != "" {
			return nil, malformed("the sandbox does not order by relationship fields: %s", pq.orderBy)
		}
		sortRecords(o, ids, p.field, pq.desc)
	}
	if pq.limit >= 0 && len(ids) > pq.limit {
		ids = ids[:pq.limit]
	}
	res := &queryResult{Done: true, Records: []orderedJSON{}}
	if pq.count {
		res.TotalSize = len(ids)
		return res, nil
	}
	for _, id := range ids {
		rec := o.records[id]
		out := orderedJSON{{"attributes", map[string]string{"type": o.name, "url": "/services/data/" + version + "/sobjects/" + o.name + "/" + id}}}
		nested := map[string]int{} // relationship -> index in out
		for _, p := range sel {
			if p.rel == "" {
				out = append(out, kv{p.field, fieldValue(o, rec, p.field, version)})
				continue
			}
			pid, _ := rec[p.relFld].(string)
			prec := p.parent.records[pid]
			idx, seen := nested[p.rel]
			if !seen {
				var v any
				if prec != nil {
					v = orderedJSON{{"attributes", map[string]string{"type": p.parent.name, "url": "/services/data/" + version + "/sobjects/" + p.parent.name + "/" + pid}}}
				}
				out = append(out, kv{p.rel, v})
				idx = len(out) - 1
				nested[p.rel] = idx
			}
			if prec != nil {
				n := out[idx].v.(orderedJSON)
				out[idx].v = append(n, kv{p.field, fieldValue(p.parent, prec, p.field, version)})
			}
		}
		res.Records = append(res.Records, out)
	}
	res.TotalSize = len(res.Records)
	return res, nil
}

// malformed is a MALFORMED_QUERY error carrying Salesforce's message text.
func malformed(format string, a ...any) error {
	return &recordError{Code: "MALFORMED_QUERY", Message: fmt.Sprintf(format, a...)}
}
