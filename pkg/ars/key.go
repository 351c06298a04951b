package ars

// Key is an area key as a Routing API client gives it: an ARS (the ars
// parameter, 2, 3, 5, 9 or 12 digits) or an AGS (the ags parameter, 2, 3,
// 5 or 8 digits). Clients pad keys with zeros freely, so a key may name an
// area of a higher level than its length says: ARS 083150000000, AGS
// 08315000 and AGS 08315 all name the Kreis Breisgau-Hochschwarzwald, ARS
// 08000 and AGS 08000000 the Land Baden-Württemberg. Directory.Resolve
// finds the area. The zero Key is no key; Keys are comparable.
type Key struct {
	// ars is the key's digits padded to 12 at the deepest level they can
	// name as an ARS: zero for an AGS of a Gemeinde that does not end in
	// 000, whose ARS only the directory knows.
	ars ARS
	ags AGS // the AGS, for a key given as one
}

// ParseKey parses value as the query parameter param: "ars" (see Parse)
// or "ags" (see ParseAGS). Errors are *SyntaxError and wrap ErrSyntax.
func ParseKey(param, value string) (Key, error) {
	switch param {
	case "ars":
		a, err := Parse(value)
		if err != nil {
			return Key{}, err
		}
		return KeyOfARS(a), nil
	case "ags":
		g, err := ParseAGS(value)
		if err != nil {
			return Key{}, err
		}
		return KeyOfAGS(g), nil
	}
	return Key{}, &SyntaxError{Kind: param, Input: value, Reason: `parameter is neither "ars" nor "ags"`}
}

// KeyOfARS returns the Key of a parsed ARS.
func KeyOfARS(a ARS) Key { return Key{ars: a} }

// KeyOfAGS returns the Key of a parsed AGS. An 8-digit AGS ending in 000
// may also be a Kreis, Regierungsbezirk or Land padded to 8 digits.
func KeyOfAGS(g AGS) Key {
	k := Key{ags: g}
	if a, ok := g.ARS(); ok {
		k.ars = a
	} else if g.level == Gemeinde && g.s[5:] == "000" {
		k.ars = newARS(g.s[:5], Kreis)
	}
	return k
}

// IsZero reports whether k is the zero Key.
func (k Key) IsZero() bool { return k.ars.IsZero() && k.ags.IsZero() }

// Param returns the query parameter the key was given as: "ars" or "ags",
// or "" for the zero Key.
func (k Key) Param() string {
	switch {
	case !k.ags.IsZero():
		return "ags"
	case !k.ars.IsZero():
		return "ars"
	}
	return ""
}

// String returns the key's digits as given: "08315", "08315000".
func (k Key) String() string {
	if !k.ags.IsZero() {
		return k.ags.Code()
	}
	return k.ars.Code()
}

// AGS returns the AGS the key was given as.
func (k Key) AGS() (AGS, bool) { return k.ags, !k.ags.IsZero() }

// Candidates returns the areas the key can name by ARS, each as an ARS at
// its level, from the deepest to the shallowest: the level of the key's
// length and every higher level whose prefix the remaining digits only pad
// with zeros. ARS 083110000000 gives the Gemeinde, the Gemeindeverband
// 083110000 and the Kreis 08311 (Freiburg is all three); ARS 110000000000
// gives every level down to the Land 11 (Berlin); AGS 08315000 gives the
// Kreis 08315. A Gemeinde named by its AGS is no candidate: its ARS holds a
// Gemeindeverband the AGS lacks (see Directory.Resolve).
func (k Key) Candidates() []ARS {
	var out []ARS
	for l := k.ars.level; l >= Land && k.pads(l); l-- {
		out = append(out, ARS{s: k.ars.s, level: l})
	}
	return out
}

// pads reports whether the key's digits after level l's prefix are zeros.
func (k Key) pads(l Level) bool {
	for i := 2 + l.Digits(); i < len(k.ars.s); i++ {
		if k.ars.s[i] != '0' {
			return false
		}
	}
	return true
}

// Resolve returns the area k names: for an 8-digit AGS the Gemeinde with
// that AGS if there is one, else the deepest of k's Candidates the
// directory holds. The area's Key() is then the canonical key, and its
// Code() the canonical ARS prefix: 08315 for ARS 083150000000 and for AGS
// 08315000, 08 for ARS 08000 and AGS 08000, 083110000000 (the Gemeinde)
// for ARS 083110000000 and AGS 08311000.
func (d *Directory) Resolve(k Key) (Area, bool) {
	if k.ags.level == Gemeinde {
		if i, ok := d.byAGS[k.ags.s]; ok {
			return d.areas[i], true
		}
	}
	for l := k.ars.level; l >= Land && k.pads(l); l-- {
		if i, ok := d.byKey[areaKey{k.ars.String(), l}]; ok {
			return d.areas[i], true
		}
	}
	return Area{}, false
}
