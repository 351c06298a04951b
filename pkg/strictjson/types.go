package strictjson

import (
	"cmp"
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// kind is what a target accepts, as encoding/json decodes into it.
type kind uint8

const (
	// kRaw takes any value unchecked: members the target does not
	// declare, json.RawMessage, and types that decode themselves.
	kRaw kind = iota
	kAny      // interface{}: any value, numbers as float64
	kStruct
	kMap
	kSlice
	kArray
	kString
	kNumber // json.Number
	kBool
	kInt
	kUint
	kFloat
)

// typeInfo is what the scanner checks a value against. Each one is
// built once per Go type and shared; it is never changed afterwards.
type typeInfo struct {
	kind kind
	want string // "a string", for messages
	elem *typeInfo
	// length is an array's; later elements are decoded into nothing.
	length int
	// bytes marks a []byte, which also takes a base64 string.
	bytes bool
	// key is a map's key kind: kString, kInt, kUint, or kRaw for a
	// TextUnmarshaler; min and max bound an integer key or value.
	key      kind
	min, max int64
	umax     uint64
	bits     int // of a float
	// fields are a struct's members by exact name; folded maps the
	// case-folded name to the exact one, as encoding/json would match it.
	fields map[string]*typeInfo
	folded map[string]string
	// probe decodes one value on its own with encoding/json; it is set
	// where that decoding may refuse what the scanner does not check
	// (UnmarshalJSON, base64, ",string"), to find which value it was.
	probe func([]byte) error
	// flat is set for a flat struct, by member name: one whose fields are
	// its own (none promoted, none ",string") and each a string, a
	// *string, a []string, a json.RawMessage, or a struct of those or a
	// pointer to one. Decode fills such a struct from the members its
	// checking scan collected.
	flat map[string]flatField
}

// flatField is a field of a flat struct.
type flatField struct {
	index int
	kind  flatKind
	inner map[string]flatField // of a struct field
}

type flatKind uint8

const (
	flatString flatKind = iota
	flatStringPtr
	flatStrings
	flatRaw
	flatStruct
	flatStructPtr
)

var stringsType = reflect.TypeFor[[]string]()

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	numberType          = reflect.TypeFor[json.Number]()
	rawMessageType      = reflect.TypeFor[json.RawMessage]()

	rawInfo = &typeInfo{kind: kRaw}
	anyInfo = &typeInfo{kind: kAny, want: "any JSON value"}
)

var (
	infos   sync.Map // reflect.Type → *typeInfo, complete ones only
	buildMu sync.Mutex
)

// infoFor returns the typeInfo of t, building it (and those of the types
// it holds) on first use.
func infoFor(t reflect.Type) *typeInfo {
	if ti, ok := infos.Load(t); ok {
		return ti.(*typeInfo)
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	b := builder{building: make(map[reflect.Type]*typeInfo)}
	ti := b.build(t)
	// Store only now: a recursive type's info is incomplete until the
	// outermost build returns.
	for t, ti := range b.building {
		infos.Store(t, ti)
	}
	return ti
}

type builder struct {
	building map[reflect.Type]*typeInfo
}

// build returns the info of a value of type t that is addressable (a
// field, an element, or what a pointer points to), as encoding/json
// decodes into it.
func (b *builder) build(t reflect.Type) *typeInfo {
	if ti, ok := infos.Load(t); ok {
		return ti.(*typeInfo)
	}
	if ti, ok := b.building[t]; ok {
		return ti
	}
	ti := new(typeInfo)
	b.building[t] = ti
	probe := probeInto(t)

	base, custom := indirectType(t)
	if custom {
		*ti = typeInfo{kind: kRaw, probe: probe}
		return ti
	}
	switch base.Kind() {
	case reflect.Interface:
		if base.NumMethod() == 0 {
			*ti = *anyInfo
		} else {
			*ti = typeInfo{kind: kRaw, probe: probe}
		}
	case reflect.Struct:
		ti.kind, ti.want = kStruct, "an object"
		b.structFields(ti, base)
	case reflect.Map:
		ti.kind, ti.want = kMap, "an object"
		kt := base.Key()
		switch {
		case reflect.PointerTo(kt).Implements(textUnmarshalerType):
			ti.key, ti.probe = kRaw, probe
		case kt.Kind() == reflect.String:
			ti.key = kString
		case isInt(kt.Kind()):
			ti.key, ti.min, ti.max = kInt, minInt(kt.Bits()), maxInt(kt.Bits())
		case isUint(kt.Kind()):
			ti.key, ti.umax = kUint, maxUint(kt.Bits())
		default:
			// encoding/json refuses such a map; let it say so.
			*ti = typeInfo{kind: kRaw, probe: probe}
			return ti
		}
		ti.elem = b.build(base.Elem())
	case reflect.Slice:
		ti.kind, ti.want = kSlice, "an array"
		if base.Elem().Kind() == reflect.Uint8 {
			ti.bytes, ti.want, ti.probe = true, "an array or a base64 string", probe
		}
		ti.elem = b.build(base.Elem())
	case reflect.Array:
		ti.kind, ti.want, ti.length = kArray, "an array", base.Len()
		ti.elem = b.build(base.Elem())
	case reflect.String:
		ti.kind, ti.want = kString, "a string"
		if base == numberType {
			ti.kind, ti.want, ti.probe = kNumber, "a number", probe
		}
	case reflect.Bool:
		ti.kind, ti.want = kBool, "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		ti.kind, ti.min, ti.max = kInt, minInt(base.Bits()), maxInt(base.Bits())
		ti.want = fmt.Sprintf("an integer from %d to %d", ti.min, ti.max)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		ti.kind, ti.umax = kUint, maxUint(base.Bits())
		ti.want = fmt.Sprintf("an integer from 0 to %d", ti.umax)
	case reflect.Float32, reflect.Float64:
		ti.kind, ti.bits = kFloat, base.Bits()
		ti.want = fmt.Sprintf("a number within float%d range", ti.bits)
	default:
		*ti = typeInfo{kind: kRaw, probe: probe}
	}
	return ti
}

// indirectType follows t as encoding/json's indirect follows a value of
// type t: it stops at the first (pointer) type with UnmarshalJSON or
// UnmarshalText, reporting custom, or else at the first non-pointer.
func indirectType(t reflect.Type) (base reflect.Type, custom bool) {
	cur, addr := t, false
	if t.Kind() != reflect.Pointer && t.Name() != "" {
		cur, addr = reflect.PointerTo(t), true
	}
	// The bound ends types like "type P *P".
	for range 100 {
		if cur.Kind() != reflect.Pointer {
			return cur, false
		}
		if cur.NumMethod() > 0 && (cur.Implements(unmarshalerType) || cur.Implements(textUnmarshalerType)) {
			return cur, true
		}
		if addr {
			cur, addr = t, false
		} else {
			cur = cur.Elem()
		}
	}
	return cur, true
}

// probeInto returns a function that decodes a value into a new t.
func probeInto(t reflect.Type) func([]byte) error {
	return func(data []byte) error {
		return json.Unmarshal(data, reflect.New(t).Interface())
	}
}

// probeQuoted returns a function that decodes a value into a field of
// type t with the ",string" option.
func probeQuoted(t reflect.Type) func([]byte) error {
	st := reflect.StructOf([]reflect.StructField{{Name: "V", Type: t, Tag: `json:"v,string"`}})
	return func(data []byte) error {
		doc := make([]byte, 0, len(data)+6)
		doc = append(append(append(doc, `{"v":`...), data...), '}')
		return json.Unmarshal(doc, reflect.New(st).Interface())
	}
}

// field is a struct member as encoding/json's typeFields finds it.
type field struct {
	name   string
	tagged bool
	index  []int
	typ    reflect.Type
	quoted bool
}

// structFields fills ti with the members of struct t, following
// encoding/json's rules for embedded structs and tags so that a name
// is found exactly when encoding/json would decode it.
func (b *builder) structFields(ti *typeInfo, t reflect.Type) {
	fields := typeFields(t)
	ti.fields = make(map[string]*typeInfo, len(fields))
	ti.folded = make(map[string]string, len(fields))
	for _, f := range fields {
		if f.quoted {
			ti.fields[f.name] = &typeInfo{kind: kRaw, probe: probeQuoted(f.typ)}
		} else {
			ti.fields[f.name] = b.build(f.typ)
		}
		// Like encoding/json, the first field wins a folded name.
		if k := string(appendFold(nil, []byte(f.name))); ti.folded[k] == "" {
			ti.folded[k] = f.name
		}
	}
	ti.flat = flatFields(ti, fields)
}

// flatFields returns the fields of a flat struct by name, or nil when the
// struct is not flat. Fields of a struct field may not be structs.
func flatFields(ti *typeInfo, fields []field) map[string]flatField {
	if len(fields) == 0 {
		return nil
	}
	flat := make(map[string]flatField, len(fields))
	for _, f := range fields {
		if len(f.index) != 1 || f.quoted {
			return nil
		}
		ff := flatField{index: f.index[0]}
		t, ptr := f.typ, false
		if t.Kind() == reflect.Pointer {
			t, ptr = t.Elem(), true
		}
		fi := ti.fields[f.name]
		switch {
		case f.typ == rawMessageType:
			ff.kind = flatRaw
		case f.typ == stringsType:
			ff.kind = flatStrings
		// A custom or json.Number field has another kind.
		case t.Kind() == reflect.String && fi.kind == kString:
			ff.kind = flatString
			if ptr {
				ff.kind = flatStringPtr
			}
		case t.Kind() == reflect.Struct && fi.kind == kStruct && leafOnly(fi.flat):
			ff.kind, ff.inner = flatStruct, fi.flat
			if ptr {
				ff.kind = flatStructPtr
			}
		default:
			return nil
		}
		flat[f.name] = ff
	}
	return flat
}

// leafOnly reports whether fields is a flat struct without struct fields.
func leafOnly(fields map[string]flatField) bool {
	if fields == nil {
		return false
	}
	for _, f := range fields {
		if f.inner != nil {
			return false
		}
	}
	return true
}

// typeFields returns the members of struct t in index order, as
// encoding/json's function of the same name does.
func typeFields(t reflect.Type) []field {
	var current []field
	next := []field{{typ: t}}
	var count, nextCount map[reflect.Type]int
	visited := map[reflect.Type]bool{}
	var fields []field

	for len(next) > 0 {
		current, next = next, current[:0]
		count, nextCount = nextCount, map[reflect.Type]int{}
		for _, f := range current {
			if visited[f.typ] {
				continue
			}
			visited[f.typ] = true
			for i := range f.typ.NumField() {
				sf := f.typ.Field(i)
				if sf.Anonymous {
					et := sf.Type
					if et.Kind() == reflect.Pointer {
						et = et.Elem()
					}
					if !sf.IsExported() && et.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				if !isValidTag(name) {
					name = ""
				}
				index := append(slices.Clip(f.index), i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				quoted := false
				if hasOption(opts, "string") {
					switch ft.Kind() {
					case reflect.Bool,
						reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
						reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
						reflect.Float32, reflect.Float64,
						reflect.String:
						quoted = true
					}
				}
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					tagged := name != ""
					if name == "" {
						name = sf.Name
					}
					fields = append(fields, field{name: name, tagged: tagged, index: index, typ: sf.Type, quoted: quoted})
					if count[f.typ] > 1 {
						// Twice, so that the field annihilates below.
						fields = append(fields, fields[len(fields)-1])
					}
					continue
				}
				nextCount[ft]++
				if nextCount[ft] == 1 {
					next = append(next, field{name: ft.Name(), index: index, typ: ft})
				}
			}
		}
	}

	slices.SortFunc(fields, func(a, b field) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := cmp.Compare(len(a.index), len(b.index)); c != 0 {
			return c
		}
		if a.tagged != b.tagged {
			if a.tagged {
				return -1
			}
			return +1
		}
		return slices.Compare(a.index, b.index)
	})
	// Of the fields sharing a name, the shallowest wins, a tagged one
	// before an untagged one; a tie hides them all.
	out := fields[:0]
	for advance, i := 0, 0; i < len(fields); i += advance {
		for advance = 1; i+advance < len(fields) && fields[i+advance].name == fields[i].name; advance++ {
		}
		if advance > 1 && len(fields[i].index) == len(fields[i+1].index) && fields[i].tagged == fields[i+1].tagged {
			continue
		}
		out = append(out, fields[i])
	}
	slices.SortFunc(out, func(a, b field) int { return slices.Compare(a.index, b.index) })
	return out
}

// isValidTag reports whether encoding/json takes s as a member name.
func isValidTag(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}

func hasOption(opts, name string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == name {
			return true
		}
	}
	return false
}

// appendFold appends the case-folded name, equal for two names exactly
// when encoding/json matches one with the other.
func appendFold(out, name []byte) []byte {
	for i := 0; i < len(name); {
		if c := name[i]; c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(name[i:])
		out = utf8.AppendRune(out, foldRune(r))
		i += n
	}
	return out
}

// foldRune returns the smallest rune of r's case-folding orbit.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

func isInt(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return true
	}
	return false
}

func isUint(k reflect.Kind) bool {
	switch k {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return true
	}
	return false
}

func minInt(bits int) int64 { return math.MinInt64 >> (64 - bits) }
func maxInt(bits int) int64 { return math.MaxInt64 >> (64 - bits) }

func maxUint(bits int) uint64 { return math.MaxUint64 >> (64 - bits) }

// isPlainName reports whether a path can show name without quotes.
func isPlainName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, r := range string(name) {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("_-$@:", r) {
			return false
		}
	}
	return true
}
