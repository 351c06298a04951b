package sink

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxFilename bounds a stored filename in bytes, below every common
// file system's limit of 255 with room for a "-<n>" suffix.
const maxFilename = 200

// Filenames returns the names under which the attachments are stored, in
// their order: each sender's filename reduced to a safe, unique name.
//
// The reduction keeps the last path element (after '/' or '\'), replaces
// invalid UTF-8, control and formatting characters (such as the
// right-to-left override) and <>:"|?* with '_', trims spaces, dots and
// leading dashes, shortens the name to 200 bytes keeping its extension,
// prefixes Windows device names (CON, NUL, COM1, …) with '_' and names an
// empty result "attachment". A name equal to an earlier one, ignoring
// case, gets "-2", "-3", … before its extension. The result depends only
// on the filenames and their order.
func Filenames(atts []Attachment) []string {
	names := make([]string, len(atts))
	taken := make(map[string]bool, len(atts))
	for i, a := range atts {
		name := SafeFilename(a.Filename)
		if taken[strings.ToLower(name)] {
			stem, ext := splitExt(name)
			for n := 2; ; n++ {
				candidate := stem + "-" + strconv.Itoa(n) + ext
				if !taken[strings.ToLower(candidate)] {
					name = candidate
					break
				}
			}
		}
		taken[strings.ToLower(name)] = true
		names[i] = name
	}
	return names
}

// SafeFilename reduces one sender's filename as Filenames does, without
// making it unique.
func SafeFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for len(name) > 0 {
		r, size := utf8.DecodeRuneInString(name)
		name = name[size:]
		switch {
		case r == utf8.RuneError && size <= 1,
			unicode.IsControl(r), unicode.Is(unicode.Cf, r), unicode.Is(unicode.Zl, r), unicode.Is(unicode.Zp, r),
			strings.ContainsRune(`<>:"|?*`, r):
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	name = strings.TrimRight(strings.TrimLeft(b.String(), " .-"), " .")
	if len(name) > maxFilename {
		stem, extension := splitExt(name)
		if len(extension) > 20 {
			stem, extension = name, ""
		}
		name = strings.TrimRight(cutUTF8(stem, maxFilename-len(extension)), " .") + extension
	}
	if name == "" {
		name = "attachment"
	}
	if reservedDevice(name) {
		name = "_" + name
	}
	return name
}

// splitExt splits "a.tar.gz" into "a.tar" and ".gz"; a name without a dot
// past its first byte has no extension.
func splitExt(name string) (stem, extension string) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		return name, ""
	}
	return name[:i], name[i:]
}

// cutUTF8 shortens s to at most n bytes without splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// reservedDevice reports whether Windows would take name for a device,
// whatever its extension.
func reservedDevice(name string) bool {
	base := strings.ToUpper(strings.TrimRight(strings.SplitN(name, ".", 2)[0], " "))
	switch base {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return true
	}
	if len(base) == 4 && (strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT")) {
		return base[3] >= '0' && base[3] <= '9'
	}
	return false
}
