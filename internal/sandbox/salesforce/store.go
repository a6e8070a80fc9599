package salesforce

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// ObjectSpec declares one sObject of the emulated org.
type ObjectSpec struct {
	// KeyPrefix is the 3-char id prefix; default: the standard one for known
	// objects, a00, a01... (by sorted name) for custom objects.
	KeyPrefix string
	// ExternalIDs are unique external-id fields (upsert keys). Like Salesforce's
	// default for unique text fields, values compare case-insensitively.
	ExternalIDs []string
	// CaseSensitive makes this object's external ids compare case-sensitively
	// (the "case sensitive" unique option of the field).
	CaseSensitive bool
	// Fields, when non-empty, is the full list of custom/standard fields that
	// exist; others fail with INVALID_FIELD. Empty means any field is accepted.
	Fields []string
	// Relationships maps a relationship name (Transaction__r) to its lookup
	// field and parent object, for external-id references in record bodies.
	Relationships map[string]Relationship
	// DateTimeFields must hold ISO 8601 datetimes (else JSON_PARSER_ERROR); they
	// are stored and answered the way Salesforce renders them (UTC, .000+0000).
	DateTimeFields []string
	// MaxLength bounds text fields: longer values fail with STRING_TOO_LONG.
	MaxLength map[string]int
}

// Relationship is a lookup from one object to a parent object.
type Relationship struct {
	Field  string // lookup field holding the parent Id, e.g. Transaction__c
	Object string // parent sObject, e.g. OneSpan_Transaction__c
}

// Record is a copy of one stored record: field name -> JSON value (string,
// json.Number, bool, nil...). It always has "Id".
type Record map[string]any

// Well-known object names.
const (
	ObjTransaction         = "OneSpan_Transaction__c"
	ObjEvent               = "OneSpan_Event__c"
	ObjContentVersion      = "ContentVersion"
	ObjContentDocument     = "ContentDocument"
	ObjContentDocumentLink = "ContentDocumentLink"
)

// DefaultObjects declares the Countersign objects of ARCHITECTURE §6 plus the
// file objects; field lists are open (permissive).
func DefaultObjects() map[string]ObjectSpec {
	return map[string]ObjectSpec{
		ObjTransaction: {ExternalIDs: []string{"Package_Id__c"}, DateTimeFields: []string{"Last_Event_At__c", "Completed_At__c"},
			MaxLength: map[string]int{"Package_Id__c": 255}},
		ObjEvent: {ExternalIDs: []string{"Event_Key__c"}, DateTimeFields: []string{"Occurred_At__c"},
			MaxLength: map[string]int{"Event_Key__c": 255},
			Relationships: map[string]Relationship{
				"Transaction__r": {Field: "Transaction__c", Object: ObjTransaction},
			}},
		ObjContentVersion:      {ExternalIDs: []string{"OneSpan_Document_Key__c"}, MaxLength: map[string]int{"OneSpan_Document_Key__c": 255, "Title": 255}},
		ObjContentDocument:     {},
		ObjContentDocumentLink: {},
		"Account":              {},
		"Contact":              {},
	}
}

var standardPrefixes = map[string]string{
	"Account": "001", "Contact": "003", "User": "005", "Organization": "00D",
	ObjContentVersion: "068", ObjContentDocument: "069", ObjContentDocumentLink: "06A",
	"Attachment": "00P", "Lead": "00Q", "Opportunity": "006", "Case": "500",
}

// systemFields are set by the org; writing them is INVALID_FIELD_FOR_INSERT_UPDATE.
var systemFields = []string{"Id", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById", "SystemModstamp", "IsDeleted", "OwnerId"}

var readOnlyFields = map[string][]string{
	ObjContentVersion: {"ContentSize", "Checksum", "FileType", "FileExtension", "IsLatest", "VersionNumber", "ContentBodyId"},
}

type object struct {
	name    string
	spec    ObjectSpec
	prefix  string
	strict  bool
	names   map[string]string // lower-case field name -> canonical spelling
	extIDs  map[string]string // lower-case -> canonical external-id field
	rels    map[string]Relationship
	relFor  map[string]string // lower-case lookup field -> parent object
	records map[string]Record // by 18-char Id
	order   []string
	index   map[string]map[string]string // external-id field -> normalized value -> Id
	seq     uint64
}

type dataState struct {
	objects map[string]*object // lower-case name -> object
	byID    map[string]*object // key prefix -> object
	used    int
	limit   int
	calls   map[string]int
	blobs   map[string]*blob // ContentVersion Id -> content
	maxKeep int64
}

func (d *dataState) init(opts Options) {
	d.limit = opts.DailyRequestLimit
	d.maxKeep = opts.StoreContentBytesUpTo
	d.objects = map[string]*object{}
	d.byID = map[string]*object{}
	d.calls = map[string]int{}
	d.blobs = map[string]*blob{}
	specs := maps.Clone(opts.Objects)
	if _, ok := specs[ObjContentVersion]; ok {
		// A file always has a document and links; declare them if the caller did not.
		for _, n := range []string{ObjContentDocument, ObjContentDocumentLink} {
			if _, ok := specs[n]; !ok {
				specs[n] = ObjectSpec{}
			}
		}
	}
	names := slices.Sorted(maps.Keys(specs))
	custom := 0
	for _, name := range names {
		spec := specs[name]
		o := &object{name: name, spec: spec, strict: len(spec.Fields) > 0, names: map[string]string{},
			extIDs: map[string]string{}, rels: map[string]Relationship{}, relFor: map[string]string{},
			records: map[string]Record{}, index: map[string]map[string]string{}}
		o.prefix = spec.KeyPrefix
		if o.prefix == "" {
			o.prefix = standardPrefixes[name]
		}
		if o.prefix == "" {
			o.prefix = fmt.Sprintf("a%02d", custom)
			custom++
		}
		for _, f := range append(append(slices.Clone(systemFields), spec.Fields...), readOnlyFields[name]...) {
			o.names[strings.ToLower(f)] = f
		}
		for _, f := range spec.ExternalIDs {
			o.names[strings.ToLower(f)] = f
			o.extIDs[strings.ToLower(f)] = f
			o.index[f] = map[string]string{}
		}
		for rn, rel := range spec.Relationships {
			o.rels[strings.ToLower(rn)] = rel
			o.names[strings.ToLower(rel.Field)] = rel.Field
			o.relFor[strings.ToLower(rel.Field)] = rel.Object
		}
		d.objects[strings.ToLower(name)] = o
		d.byID[o.prefix] = o
	}
}

func (d *dataState) object(name string) *object { return d.objects[strings.ToLower(name)] }

// canonicalID returns the 18-char form of a 15 or 18-char id ("" if malformed).
func canonicalID(id string) string {
	if !looksLikeID(id) {
		return ""
	}
	return id[:15] + idSuffix(id[:15])
}

// lookupID finds a record by Id in any object.
func (d *dataState) lookupID(id string) (*object, Record) {
	id = canonicalID(id)
	if id == "" {
		return nil, nil
	}
	o := d.byID[id[:3]]
	if o == nil {
		return nil, nil
	}
	if r, ok := o.records[id]; ok {
		return o, r
	}
	return nil, nil
}

// fieldName canonicalizes a field name: Salesforce field names are
// case-insensitive and answers use the declared spelling (first seen wins).
func (o *object) fieldName(f string) (string, bool) {
	if c, ok := o.names[strings.ToLower(f)]; ok {
		return c, true
	}
	if o.strict {
		return "", false
	}
	o.names[strings.ToLower(f)] = f
	return f, true
}

func (o *object) knownField(f string) (string, bool) {
	if c, ok := o.names[strings.ToLower(f)]; ok {
		return c, true
	}
	return f, !o.strict
}

func (o *object) normKey(v any) string {
	s := fmt.Sprint(v)
	if !o.spec.CaseSensitive {
		s = strings.ToLower(s)
	}
	return s
}

// recordError is one failure, rendered with errorCode (single-resource calls)
// or statusCode (collection and create results).
type recordError struct {
	Code    string
	Message string
	Fields  []string
}

func (e *recordError) Error() string { return e.Code + ": " + e.Message }

func (e *recordError) httpStatus() int {
	if e.Code == "NOT_FOUND" {
		return 404
	}
	return 400
}

func errInvalidField(obj, f string) *recordError {
	return &recordError{Code: "INVALID_FIELD", Message: fmt.Sprintf("No such column '%s' on sobject of type %s", f, obj), Fields: []string{}}
}

// txn collects undo steps so allOrNone requests can roll back.
type txn struct{ undo []func() }

func (t *txn) rollback() {
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.undo[i]()
	}
	t.undo = nil
}

func (t *txn) onUndo(f func()) {
	if t != nil {
		t.undo = append(t.undo, f)
	}
}

// prepareFields validates a write body and returns canonical field values:
// relationship references are resolved to lookup Ids, unknown or read-only
// fields are refused. skipExt is the upsert key that may not appear in the body.
func (d *dataState) prepareFields(o *object, body map[string]any, forbidExt string) (Record, *recordError) {
	out := Record{}
	for k, v := range body {
		if k == "attributes" {
			continue
		}
		if strings.EqualFold(k, "Id") {
			return nil, &recordError{Code: "INVALID_FIELD", Message: "Id field should not be specified in the sobject data.", Fields: []string{}}
		}
		if forbidExt != "" && strings.EqualFold(k, forbidExt) {
			return nil, &recordError{Code: "INVALID_FIELD", Message: fmt.Sprintf("The external ID field '%s' should not be specified in the sobject data.", forbidExt), Fields: []string{forbidExt}}
		}
		if ref, ok := v.(map[string]any); ok {
			field, id, err := d.resolveReference(o, k, ref)
			if err != nil {
				return nil, err
			}
			out[field] = id
			continue
		}
		if strings.HasSuffix(strings.ToLower(k), "__r") {
			return nil, errInvalidField(o.name, k)
		}
		name, ok := o.fieldName(k)
		if !ok {
			return nil, errInvalidField(o.name, k)
		}
		if slices.Contains(systemFields, name) || slices.Contains(readOnlyFields[o.name], name) {
			return nil, &recordError{Code: "INVALID_FIELD_FOR_INSERT_UPDATE", Message: fmt.Sprintf("Unable to create/update fields: %s. Please check the security settings of this field and verify that it is read/write for your user profile or permission set.", name), Fields: []string{name}}
		}
		if parent, ok := o.relFor[strings.ToLower(name)]; ok && v != nil {
			if err := d.checkLookup(name, parent, v); err != nil {
				return nil, err
			}
		}
		v, err := o.checkValue(name, v)
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

func (d *dataState) checkLookup(field, parent string, v any) *recordError {
	id, _ := v.(string)
	if !looksLikeID(id) {
		return &recordError{Code: "MALFORMED_ID", Message: fmt.Sprintf("%s: id value of incorrect type: %v", field, v), Fields: []string{field}}
	}
	po, r := d.lookupID(id)
	if r == nil || !strings.EqualFold(po.name, parent) {
		return &recordError{Code: "INVALID_CROSS_REFERENCE_KEY", Message: "invalid cross reference id", Fields: []string{field}}
	}
	return nil
}

// resolveReference turns "Transaction__r": {"Package_Id__c": "X"} into the
// lookup field and the parent's Id.
func (d *dataState) resolveReference(o *object, relName string, ref map[string]any) (string, string, *recordError) {
	rel, ok := o.rels[strings.ToLower(relName)]
	if !ok {
		return "", "", errInvalidField(o.name, relName)
	}
	parent := d.object(rel.Object)
	if parent == nil {
		return "", "", errInvalidField(o.name, relName)
	}
	var key string
	var val any
	n := 0
	for k, v := range ref {
		if k == "attributes" {
			continue
		}
		key, val = k, v
		n++
	}
	if n != 1 {
		return "", "", &recordError{Code: "INVALID_FIELD", Message: fmt.Sprintf("Exactly one external ID field is required to reference %s through %s", parent.name, relName), Fields: []string{}}
	}
	ext, ok := parent.extIDs[strings.ToLower(key)]
	if !ok {
		return "", "", &recordError{Code: "INVALID_FIELD", Message: fmt.Sprintf("The value provided for foreign key reference %s is not a nested SObject", relName), Fields: []string{}}
	}
	id, ok := parent.index[ext][parent.normKey(val)]
	if !ok {
		return "", "", &recordError{Code: "INVALID_FIELD", Message: fmt.Sprintf("Foreign key external ID: %v not found for field %s in entity %s", val, ext, parent.name), Fields: []string{}}
	}
	return rel.Field, id, nil
}

// checkValue applies the declared field types: datetimes are parsed and
// normalized, text lengths bounded.
func (o *object) checkValue(name string, v any) (any, *recordError) {
	str, isStr := v.(string)
	if !isStr {
		return v, nil
	}
	if max, ok := o.spec.MaxLength[name]; ok && utf8.RuneCountInString(str) > max {
		shown := str
		if len(shown) > 40 {
			shown = shown[:40] + "..."
		}
		return nil, &recordError{Code: "STRING_TOO_LONG", Message: fmt.Sprintf("%s: data value too large: %s (max length=%d)", name, shown, max), Fields: []string{name}}
	}
	if slices.Contains(o.spec.DateTimeFields, name) {
		t, ok := parseSFDateTime(str)
		if !ok {
			return nil, &recordError{Code: "JSON_PARSER_ERROR", Message: fmt.Sprintf("Cannot deserialize instance of datetime from VALUE_STRING value %s or request may be missing a required field", str), Fields: []string{}}
		}
		return sfTime(t), nil
	}
	return v, nil
}

// parseSFDateTime accepts the ISO 8601 forms Salesforce takes for datetimes.
func parseSFDateTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999-0700", "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// checkUnique refuses values that another record already holds.
func (o *object) checkUnique(fields Record, selfID string) *recordError {
	for _, f := range o.spec.ExternalIDs {
		v, ok := fields[f]
		if !ok || v == nil || v == "" {
			continue
		}
		if other, ok := o.index[f][o.normKey(v)]; ok && other != selfID {
			return &recordError{Code: "DUPLICATE_VALUE", Message: fmt.Sprintf("duplicate value found: %s duplicates value on record with id: %s", f, other), Fields: []string{}}
		}
	}
	return nil
}

func (o *object) setIndex(r Record, add bool) {
	for _, f := range o.spec.ExternalIDs {
		v, ok := r[f]
		if !ok || v == nil || v == "" {
			continue
		}
		if add {
			o.index[f][o.normKey(v)] = r["Id"].(string)
		} else {
			delete(o.index[f], o.normKey(v))
		}
	}
}

func sfTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000+0000") }

// insertLocked adds a validated record and returns its Id.
func (s *Server) insertLocked(tx *txn, o *object, fields Record) (string, *recordError) {
	if err := o.checkUnique(fields, ""); err != nil {
		return "", err
	}
	o.seq++
	id := makeID(o.prefix, o.seq)
	now := sfTime(s.now())
	r := Record{}
	maps.Copy(r, fields)
	r["Id"] = id
	r["CreatedDate"], r["LastModifiedDate"], r["SystemModstamp"] = now, now, now
	r["CreatedById"], r["LastModifiedById"] = s.userID, s.userID
	r["IsDeleted"] = false
	o.records[id] = r
	o.order = append(o.order, id)
	o.setIndex(r, true)
	tx.onUndo(func() {
		o.setIndex(r, false)
		delete(o.records, id)
		o.order = slices.DeleteFunc(o.order, func(x string) bool { return x == id })
	})
	return id, nil
}

// updateLocked merges fields into an existing record.
func (s *Server) updateLocked(tx *txn, o *object, id string, fields Record) *recordError {
	r := o.records[id]
	if o.name == ObjContentVersion {
		// File content is immutable: a new version is a new ContentVersion.
		if _, ok := lookupKey(fields, "VersionData"); ok {
			return &recordError{Code: "INVALID_FIELD_FOR_INSERT_UPDATE", Message: "Unable to create/update fields: VersionData. Please check the security settings of this field and verify that it is read/write for your user profile or permission set.", Fields: []string{"VersionData"}}
		}
	}
	if err := o.checkUnique(fields, id); err != nil {
		return err
	}
	old := maps.Clone(r)
	o.setIndex(r, false)
	maps.Copy(r, fields)
	now := sfTime(s.now())
	r["LastModifiedDate"], r["SystemModstamp"] = now, now
	o.setIndex(r, true)
	tx.onUndo(func() {
		o.setIndex(r, false)
		clear(r)
		maps.Copy(r, old)
		o.setIndex(r, true)
	})
	return nil
}

// upsertLocked implements upsert by external id (or Id). body must not hold
// the key when keyInBody is false (single-record REST form).
func (s *Server) upsertLocked(tx *txn, o *object, extField string, extValue any, body map[string]any, keyInBody bool) (string, bool, *recordError) {
	var ext string
	if strings.EqualFold(extField, "Id") {
		ext = "Id"
	} else if e, ok := o.extIDs[strings.ToLower(extField)]; ok {
		ext = e
	} else {
		return "", false, &recordError{Code: "NOT_FOUND", Message: "Provided external ID field does not exist or is not accessible: " + extField, Fields: []string{}}
	}
	forbid := ext
	if keyInBody {
		forbid = ""
	}
	if keyInBody {
		body = maps.Clone(body)
		for k := range body {
			if strings.EqualFold(k, ext) {
				delete(body, k)
			}
		}
	}
	fields, err := s.data.prepareFields(o, body, forbid)
	if err != nil {
		return "", false, err
	}
	if ext == "Id" {
		id, _ := extValue.(string)
		if rid := canonicalID(id); rid != "" && o.records[rid] != nil {
			return rid, false, s.updateLocked(tx, o, rid, fields)
		}
		return "", false, &recordError{Code: "NOT_FOUND", Message: "Provided external ID field does not exist or is not accessible: Id", Fields: []string{}}
	}
	if extValue == nil || extValue == "" {
		return "", false, &recordError{Code: "MISSING_ARGUMENT", Message: ext + " not specified", Fields: []string{}}
	}
	if id, ok := o.index[ext][o.normKey(extValue)]; ok {
		return id, false, s.updateLocked(tx, o, id, fields)
	}
	v, err := o.checkValue(ext, extValue)
	if err != nil {
		return "", false, err
	}
	fields[ext] = v
	if o.name == ObjContentVersion {
		id, err := s.createContentVersionLocked(tx, o, fields, nil)
		return id, err == nil, err
	}
	id, err := s.insertLocked(tx, o, fields)
	return id, err == nil, err
}

// --- Go accessors for tests ---

func (s *Server) objectOrNil(name string) *object {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data.object(name)
}

// Records returns copies of an object's records in insertion order.
func (s *Server) Records(obj string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.data.object(obj)
	if o == nil {
		return nil
	}
	out := make([]Record, 0, len(o.order))
	for _, id := range o.order {
		out = append(out, copyRecord(o.records[id]))
	}
	return out
}

// Count returns how many records an object holds.
func (s *Server) Count(obj string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.data.object(obj); o != nil {
		return len(o.records)
	}
	return 0
}

// RecordByID returns a copy of one record (15 or 18-char id).
func (s *Server) RecordByID(id string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, r := s.data.lookupID(id)
	if r == nil {
		return nil, false
	}
	return copyRecord(r), true
}

// FindRecords returns copies of the records whose field equals value, compared
// the way SOQL does (text case-insensitively, ids 15/18-char).
func (s *Server) FindRecords(obj, field string, value any) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.data.object(obj)
	if o == nil {
		return nil
	}
	name, _ := o.knownField(field)
	var out []Record
	for _, id := range o.order {
		r := o.records[id]
		if valuesEqual(o, name, r[name], value) {
			out = append(out, copyRecord(r))
		}
	}
	return out
}

// FindRecord returns the first record whose field equals value.
func (s *Server) FindRecord(obj, field string, value any) (Record, bool) {
	rs := s.FindRecords(obj, field, value)
	if len(rs) == 0 {
		return nil, false
	}
	return rs[0], true
}

// Insert stores a record through the same validation as REST (no API usage);
// tests use it to seed data.
func (s *Server) Insert(obj string, fields map[string]any) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.data.object(obj)
	if o == nil {
		return "", fmt.Errorf("insert %s: unknown object", obj)
	}
	f, err := s.data.prepareFields(o, normalizeNumbers(fields), "")
	if err != nil {
		return "", fmt.Errorf("insert %s: %w", obj, err)
	}
	if o.name == ObjContentVersion {
		id, err := s.createContentVersionLocked(nil, o, f, nil)
		if err != nil {
			return "", fmt.Errorf("insert %s: %w", obj, err)
		}
		return id, nil
	}
	id, rerr := s.insertLocked(nil, o, f)
	if rerr != nil {
		return "", fmt.Errorf("insert %s: %w", obj, rerr)
	}
	return id, nil
}

func copyRecord(r Record) Record {
	out := make(Record, len(r))
	maps.Copy(out, r)
	return out
}

// normalizeNumbers makes Go numbers look like decoded JSON numbers.
func normalizeNumbers(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch n := v.(type) {
		case int, int64, int32, float64, float32, uint, uint64:
			out[k] = json.Number(fmt.Sprint(n))
		case time.Time:
			out[k] = n.Format(time.RFC3339Nano)
		default:
			out[k] = v
		}
	}
	return out
}

// isIDField reports whether a field holds record ids (compared 15/18-char).
func isIDField(o *object, field string) bool {
	if field == "Id" || strings.HasSuffix(field, "Id") {
		return true
	}
	_, ok := o.relFor[strings.ToLower(field)]
	return ok
}

// valuesEqual compares a stored value with a wanted one like SOQL's "=".
func valuesEqual(o *object, field string, have, want any) bool {
	if want == nil {
		return have == nil
	}
	if have == nil {
		return false
	}
	switch w := want.(type) {
	case string:
		h, ok := have.(string)
		if !ok {
			return fmt.Sprint(have) == w
		}
		if isIDField(o, field) && looksLikeID(h) && looksLikeID(w) {
			return sameID(h, w)
		}
		return strings.EqualFold(h, w)
	case bool:
		h, ok := have.(bool)
		return ok && h == w
	default:
		return compareNumbers(have, want) == 0
	}
}

func compareNumbers(a, b any) int {
	fa, oka := toFloat(a)
	fb, okb := toFloat(b)
	if !oka || !okb {
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	}
	switch {
	case fa < fb:
		return -1
	case fa > fb:
		return 1
	}
	return 0
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

// sortRecords orders ids by a field (ORDER BY); nulls first like SOQL's default.
func sortRecords(o *object, ids []string, field string, desc bool) {
	sort.SliceStable(ids, func(i, j int) bool {
		a, b := o.records[ids[i]][field], o.records[ids[j]][field]
		c := compareValues(a, b)
		if desc {
			return c > 0
		}
		return c < 0
	})
}

func compareValues(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	if as, ok := a.(string); ok {
		if bs, ok := b.(string); ok {
			return strings.Compare(strings.ToLower(as), strings.ToLower(bs))
		}
	}
	return compareNumbers(a, b)
}
