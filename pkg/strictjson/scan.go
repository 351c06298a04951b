package strictjson

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner checks a document against a target type in one pass over the
// bytes, without building a tree: syntax, UTF-8, duplicate and miscased
// member names, unknown members, value kinds, number ranges and depth.
type scanner struct {
	data     []byte
	pos      int
	depth    int
	maxDepth int
	strict   bool // refuse members the target does not declare
	probe    bool // run typeInfo.probe on each value that has one
	path     []segment
	names    [][]byte // member names of the open objects, for duplicates
	buf      []byte   // scratch for folded names

	// members, when not nil, collects the members of the outermost
	// object as it is checked, so that Object and Decode need no second
	// pass. flat holds the outermost object's fields when it decodes into
	// a flat struct; nested then collects the members of the objects of
	// its struct fields.
	members map[string]json.RawMessage
	flat    map[string]flatField
	nested  map[string]map[string]json.RawMessage
}

// segment is one step of the path to the current value.
type segment struct {
	name  []byte
	index int // of an array element; -1 for a member
}

// linearNames is the member count up to which an object's names are
// compared one by one; larger objects get a set.
const linearNames = 16

// plain marks the bytes that a string holds as they are: printable
// ASCII other than '"' and '\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func (s *scanner) document(ti *typeInfo) error {
	s.skipSpace()
	if s.pos == len(s.data) {
		return s.fail(ErrSyntax, "no JSON value: the input is empty")
	}
	if ti.kind == kStruct || ti.kind == kMap {
		if c := s.data[s.pos]; c != '{' {
			if got := tokenName(c); got != "" {
				return s.fail(ErrType, "must be a JSON object, not "+got)
			}
		}
	}
	if err := s.value(ti); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos != len(s.data) {
		return s.fail(ErrTrailingData, fmt.Sprintf("unexpected data after the JSON value at byte %d", s.pos))
	}
	return nil
}

// value checks the value at s.pos, which ti describes.
func (s *scanner) value(ti *typeInfo) error {
	s.skipSpace()
	if s.pos == len(s.data) {
		return s.syntax("a value")
	}
	start := s.pos
	var err error
	switch c := s.data[s.pos]; {
	case c == '{':
		err = s.object(ti)
	case c == '[':
		err = s.array(ti)
	case c == '"':
		err = s.stringValue(ti)
	case c == '-' || '0' <= c && c <= '9':
		err = s.number(ti)
	case c == 't':
		err = s.literal(ti, "true")
	case c == 'f':
		err = s.literal(ti, "false")
	case c == 'n':
		err = s.literal(ti, "null")
	default:
		err = s.syntax("a value")
	}
	if err == nil && s.probe && ti.probe != nil {
		if perr := ti.probe(s.data[start:s.pos]); perr != nil {
			return &Error{Path: s.pathString(), Offset: int64(start), Reason: trimJSON(perr), Kind: ErrType, Err: perr}
		}
	}
	return err
}

func (s *scanner) object(ti *typeInfo) error {
	switch ti.kind {
	case kStruct, kMap, kAny, kRaw:
	default:
		return s.mismatch(s.pos, ti, "an object")
	}
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == '}' {
		s.pos++
		s.depth--
		return nil
	}
	base := len(s.names)
	var seen map[string]struct{}
	for {
		s.skipSpace()
		if s.pos == len(s.data) || s.data[s.pos] != '"' {
			return s.syntax("a member name")
		}
		at := s.pos
		raw, escaped, err := s.scanString("a member name")
		if err != nil {
			return err
		}
		name := raw
		if escaped {
			name = unescape(raw)
		}
		s.path = append(s.path, segment{name: name, index: -1})

		key := name // what no two members may share
		switch {
		case ti.kind == kMap && ti.key == kInt:
			n, ok := parseInt(name)
			if !ok || n < ti.min || n > ti.max {
				return s.failAt(at, ErrType, fmt.Sprintf("the member name must be an integer from %d to %d", ti.min, ti.max))
			}
			key = strconv.AppendInt(nil, n, 10)
		case ti.kind == kMap && ti.key == kUint:
			n, ok := parseUint(name)
			if !ok || n > ti.umax {
				return s.failAt(at, ErrType, fmt.Sprintf("the member name must be an integer from 0 to %d", ti.umax))
			}
			key = strconv.AppendUint(nil, n, 10)
		}
		if seen != nil {
			if _, dup := seen[string(key)]; dup {
				return s.duplicate(at, name, key)
			}
			seen[string(key)] = struct{}{}
		} else {
			for _, k := range s.names[base:] {
				if bytes.Equal(k, key) {
					return s.duplicate(at, name, key)
				}
			}
			s.names = append(s.names, key)
			if len(s.names)-base == linearNames {
				seen = make(map[string]struct{}, 4*linearNames)
				for _, k := range s.names[base:] {
					seen[string(k)] = struct{}{}
				}
			}
		}

		child := rawInfo
		switch ti.kind {
		case kStruct:
			if f, ok := ti.fields[string(name)]; ok {
				child = f
				break
			}
			s.buf = appendFold(s.buf[:0], name)
			if exact, ok := ti.folded[string(s.buf)]; ok {
				return s.failAt(at, ErrCaseMismatch, "no such member; did you mean "+exact+"?")
			}
			if s.strict {
				return s.failAt(at, ErrUnknownMember, "no such member")
			}
		case kMap:
			child = ti.elem
		case kAny:
			child = anyInfo
		}

		s.skipSpace()
		if s.pos == len(s.data) || s.data[s.pos] != ':' {
			return s.syntax("':' after the member name")
		}
		s.pos++
		s.skipSpace()
		start := s.pos
		if err := s.value(child); err != nil {
			return err
		}
		if s.members != nil {
			s.collect(name, s.data[start:s.pos:s.pos])
		}
		s.path = s.path[:len(s.path)-1]
		s.skipSpace()
		if s.pos == len(s.data) {
			return s.syntax("',' or '}' after a member")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			s.names = s.names[:base]
			s.depth--
			return nil
		default:
			return s.syntax("',' or '}' after a member")
		}
	}
}

// collect keeps a member of the outermost object, or of an object that is
// the value of one of its struct fields.
func (s *scanner) collect(name, raw []byte) {
	switch {
	case s.depth == 1:
		s.members[string(name)] = raw
	case s.depth == 2 && len(s.path) == 2 && s.path[0].index < 0:
		top := string(s.path[0].name)
		if f, ok := s.flat[top]; !ok || f.inner == nil {
			return
		}
		if s.nested == nil {
			s.nested = make(map[string]map[string]json.RawMessage)
		}
		m := s.nested[top]
		if m == nil {
			m = make(map[string]json.RawMessage)
			s.nested[top] = m
		}
		m[string(name)] = raw
	}
}

func (s *scanner) array(ti *typeInfo) error {
	elem := rawInfo
	switch ti.kind {
	case kSlice, kArray:
		elem = ti.elem
	case kAny:
		elem = anyInfo
	case kRaw:
	default:
		return s.mismatch(s.pos, ti, "an array")
	}
	if err := s.enter(); err != nil {
		return err
	}
	s.pos++
	s.skipSpace()
	if s.pos < len(s.data) && s.data[s.pos] == ']' {
		s.pos++
		s.depth--
		return nil
	}
	s.path = append(s.path, segment{})
	for i := 0; ; i++ {
		s.path[len(s.path)-1].index = i
		e := elem
		if ti.kind == kArray && i >= ti.length {
			e = rawInfo // encoding/json drops what does not fit
		}
		if err := s.value(e); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos == len(s.data) {
			return s.syntax("',' or ']' after an array element")
		}
		switch s.data[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.path = s.path[:len(s.path)-1]
			s.depth--
			return nil
		default:
			return s.syntax("',' or ']' after an array element")
		}
	}
}

func (s *scanner) stringValue(ti *typeInfo) error {
	switch {
	case ti.kind == kString, ti.kind == kRaw, ti.kind == kAny, ti.kind == kNumber, ti.bytes:
	default:
		return s.mismatch(s.pos, ti, "a string")
	}
	at := s.pos
	raw, escaped, err := s.scanString("the string")
	if err != nil {
		return err
	}
	if ti.kind == kNumber && !escaped && !isNumber(raw) {
		return s.failAt(at, ErrType, fmt.Sprintf("must be a number, not the string %q", raw))
	}
	return nil
}

func (s *scanner) number(ti *typeInfo) error {
	at := s.pos
	if err := s.scanNumber(); err != nil {
		return err
	}
	lit := s.data[at:s.pos]
	ok := true
	switch ti.kind {
	case kRaw, kNumber:
	case kInt:
		n, valid := parseInt(lit)
		ok = valid && ti.min <= n && n <= ti.max
	case kUint:
		n, valid := parseUint(lit)
		ok = valid && n <= ti.umax
	case kFloat:
		ok = fitsFloat(lit, ti.bits)
	case kAny:
		ok = fitsFloat(lit, 64)
	default:
		return s.mismatch(at, ti, "a number")
	}
	if !ok {
		want := ti.want
		if ti.kind == kAny {
			want = "a number within float64 range"
		}
		return s.failAt(at, ErrType, "must be "+want+", not the number "+string(lit))
	}
	return nil
}

func (s *scanner) literal(ti *typeInfo, word string) error {
	for i := range len(word) {
		if s.pos+i == len(s.data) || s.data[s.pos+i] != word[i] {
			s.pos += i
			return s.syntax(fmt.Sprintf("%q", word))
		}
	}
	if word != "null" {
		switch ti.kind {
		case kBool, kAny, kRaw:
		default:
			return s.mismatch(s.pos, ti, "a boolean")
		}
	}
	s.pos += len(word)
	return s.endOfToken(word)
}

// plain8 reports whether all eight bytes of x are plain: the long
// base64url strings of JWEs go eight bytes a step.
func plain8(x uint64) bool {
	const lsb, msb = 0x0101010101010101, 0x8080808080808080
	q := x ^ (lsb * '"')
	bs := x ^ (lsb * '\\')
	// Each term sets the top bit of a byte at or above the first byte
	// that is ≥ 0x80, < 0x20, '"' or '\\', and of no byte if none is.
	return (x|(x-lsb*0x20)&^x|(q-lsb)&^q|(bs-lsb)&^bs)&msb == 0
}

// scanString reads the string at s.pos, returning what is between its
// quotes and whether that holds escapes. what names it in errors.
func (s *scanner) scanString(what string) (raw []byte, escaped bool, err error) {
	data := s.data
	start := s.pos + 1
	i := start
	for {
		for i+8 <= len(data) && plain8(binary.LittleEndian.Uint64(data[i:])) {
			i += 8
		}
		for i < len(data) && plain[data[i]] {
			i++
		}
		if i == len(data) {
			s.pos = i
			return nil, false, s.syntax("the closing '\"' of " + what)
		}
		switch c := data[i]; {
		case c == '"':
			s.pos = i + 1
			return data[start:i], escaped, nil
		case c == '\\':
			escaped = true
			n, err := s.escape(i, what)
			if err != nil {
				return nil, false, err
			}
			i += n
		case c < 0x20:
			s.pos = i
			return nil, false, s.fail(ErrSyntax, fmt.Sprintf("invalid JSON at byte %d: control character 0x%02x in %s; it must be escaped", i, c, what))
		default:
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n == 1 {
				s.pos = i
				return nil, false, s.fail(ErrInvalidUTF8, fmt.Sprintf("%s is not valid UTF-8: byte 0x%02x at byte %d", what, c, i))
			}
			i += n
		}
	}
}

// escape checks the escape at data[i] and returns its length.
func (s *scanner) escape(i int, what string) (int, error) {
	data := s.data
	if i+1 == len(data) {
		s.pos = i + 1
		return 0, s.syntax("an escape in " + what)
	}
	switch data[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
	default:
		s.pos = i
		return 0, s.fail(ErrSyntax, fmt.Sprintf(`invalid JSON at byte %d: \%c is no escape`, i, data[i+1]))
	}
	r, ok := hex4(data[i+2:])
	if !ok {
		s.pos = i
		return 0, s.fail(ErrSyntax, fmt.Sprintf(`invalid JSON at byte %d: \u needs four hex digits`, i))
	}
	if !utf16.IsSurrogate(r) {
		return 6, nil
	}
	if r < 0xdc00 && i+7 < len(data) && data[i+6] == '\\' && data[i+7] == 'u' {
		r2, ok := hex4(data[i+8:])
		if !ok {
			s.pos = i + 6
			return 0, s.fail(ErrSyntax, fmt.Sprintf(`invalid JSON at byte %d: \u needs four hex digits`, i+6))
		}
		if 0xdc00 <= r2 && r2 <= 0xdfff {
			return 12, nil
		}
	}
	s.pos = i
	return 0, s.fail(ErrInvalidUTF8, fmt.Sprintf(`%s is not valid UTF-8: lone surrogate \u%04x at byte %d`, what, r, i))
}

// scanNumber reads the number at s.pos.
func (s *scanner) scanNumber() error {
	data, i := s.data, s.pos
	digits := func() bool {
		start := i
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		return i > start
	}
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case !digits():
		s.pos = i
		return s.syntax("a digit")
	}
	if i < len(data) && data[i] == '.' {
		i++
		if !digits() {
			s.pos = i
			return s.syntax("a digit after the decimal point")
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if !digits() {
			s.pos = i
			return s.syntax("a digit in the exponent")
		}
	}
	s.pos = i
	return s.endOfToken("a number")
}

// endOfToken refuses a letter, digit or sign right after a number or a
// literal, like the "1" of "01" or the "x" of "truex".
func (s *scanner) endOfToken(what string) error {
	if s.pos == len(s.data) {
		return nil
	}
	c := s.data[s.pos]
	if '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '.' || c == '+' || c == '-' {
		return s.fail(ErrSyntax, fmt.Sprintf("invalid JSON at byte %d: %s after %s", s.pos, describeByte(c), what))
	}
	return nil
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *scanner) enter() error {
	s.depth++
	if s.depth > s.maxDepth {
		return s.fail(ErrTooDeep, fmt.Sprintf("nested deeper than %d levels at byte %d", s.maxDepth, s.pos))
	}
	return nil
}

func (s *scanner) fail(kind error, reason string) error {
	return s.failAt(s.pos, kind, reason)
}

func (s *scanner) failAt(off int, kind error, reason string) error {
	return &Error{Path: s.pathString(), Offset: int64(off), Reason: reason, Kind: kind}
}

func (s *scanner) syntax(want string) error {
	found := "the end of the input"
	if s.pos < len(s.data) {
		found = describeByte(s.data[s.pos])
	}
	return s.fail(ErrSyntax, fmt.Sprintf("invalid JSON at byte %d: want %s, found %s", s.pos, want, found))
}

func (s *scanner) mismatch(off int, ti *typeInfo, got string) error {
	return s.failAt(off, ErrType, "must be "+ti.want+", not "+got)
}

func (s *scanner) duplicate(off int, name, key []byte) error {
	reason := "duplicate; a member name may appear only once in an object"
	if !bytes.Equal(name, key) {
		reason = fmt.Sprintf("duplicate; an earlier member names the same key %s", key)
	}
	return s.failAt(off, ErrDuplicateKey, reason)
}

// pathString renders s.path like "serviceType.name" or "list[2]".
func (s *scanner) pathString() string {
	var b []byte
	for _, seg := range s.path {
		switch {
		case seg.index >= 0:
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(seg.index), 10)
			b = append(b, ']')
		case isPlainName(seg.name):
			if len(b) > 0 {
				b = append(b, '.')
			}
			b = append(b, seg.name...)
		default:
			b = append(b, '[')
			b = strconv.AppendQuote(b, string(seg.name))
			b = append(b, ']')
		}
	}
	return string(b)
}

// tokenName names the kind of value that starts with c, or "".
func tokenName(c byte) string {
	switch {
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	case c == '-' || '0' <= c && c <= '9':
		return "a number"
	}
	return ""
}

func describeByte(c byte) string {
	if 0x20 < c && c < 0x7f {
		return fmt.Sprintf("%q", c)
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

func trimJSON(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape decodes the escapes of a string that scanString accepted.
func unescape(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'u':
			r, _ := hex4(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2, _ := hex4(raw[i+2:])
				r = utf16.DecodeRune(r, r2)
				i += 6
			}
			out = utf8.AppendRune(out, r)
			continue
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		default:
			c = raw[i+1]
		}
		out = append(out, c)
		i += 2
	}
	return out
}

// parseInt is strconv.ParseInt(string(b), 10, 64) without an allocation
// for the short numbers that bodies hold.
func parseInt(b []byte) (int64, bool) {
	d := b
	if len(d) > 0 && (d[0] == '-' || d[0] == '+') {
		d = d[1:]
	}
	if len(d) == 0 || len(d) > 18 {
		n, err := strconv.ParseInt(string(b), 10, 64)
		return n, err == nil
	}
	var n int64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if b[0] == '-' {
		n = -n
	}
	return n, true
}

// parseUint is strconv.ParseUint(string(b), 10, 64), as parseInt.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		n, err := strconv.ParseUint(string(b), 10, 64)
		return n, err == nil
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// fitsFloat reports whether strconv.ParseFloat takes the number literal
// b at the given size, as encoding/json requires.
func fitsFloat(b []byte, bits int) bool {
	d := b
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) <= 15 && bytes.IndexFunc(d, func(r rune) bool { return r < '0' || r > '9' }) < 0 {
		return true // an integer below 1e15 fits either size
	}
	_, err := strconv.ParseFloat(string(b), bits)
	return err == nil
}

// isNumber reports whether b is exactly one JSON number.
func isNumber(b []byte) bool {
	s := scanner{data: b}
	if len(b) == 0 || !(b[0] == '-' || '0' <= b[0] && b[0] <= '9') {
		return false
	}
	return s.scanNumber() == nil && s.pos == len(b)
}
