package sink_test

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/amtsbote/amtsbote/services/subscriber/sink"
	"github.com/amtsbote/amtsbote/services/subscriber/sink/sinktest"
)

func TestSafeFilename(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Bauantrag.pdf", "Bauantrag.pdf"},
		{"Lageplan Müller.pdf", "Lageplan Müller.pdf"},
		{"../../../etc/passwd", "passwd"},
		{`C:\Users\erika\scan.png`, "scan.png"},
		{"..", "attachment"},
		{"", "attachment"},
		{"...pdf", "pdf"},
		{".bashrc", "bashrc"},
		{"-rf", "rf"},
		{"a\x00b.pdf", "a_b.pdf"},
		{"rechnung\u202Efdp.exe", "rechnung_fdp.exe"},
		{"\xff.pdf", "_.pdf"},
		{"a:b*c?.pdf", "a_b_c_.pdf"},
		{"CON", "_CON"},
		{"nul.tar.gz", "_nul.tar.gz"},
		{"com1.txt", "_com1.txt"},
		{"com.txt", "com.txt"},
		{"name. . ", "name"},
		{strings.Repeat("x", 300) + ".pdf", strings.Repeat("x", 196) + ".pdf"},
		{strings.Repeat("ä", 150) + ".pdf", strings.Repeat("ä", 98) + ".pdf"},
		{strings.Repeat("y", 300) + "." + strings.Repeat("z", 30), strings.Repeat("y", 200)},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			if got := sink.SafeFilename(tc.in); got != tc.want {
				t.Fatalf("SafeFilename(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestFilenames(t *testing.T) {
	names := func(in ...string) []sink.Attachment {
		atts := make([]sink.Attachment, len(in))
		for i, n := range in {
			atts[i].Filename = n
		}
		return atts
	}
	cases := []struct {
		in, want []string
	}{
		{[]string{"a.pdf", "b.pdf"}, []string{"a.pdf", "b.pdf"}},
		{[]string{"a.pdf", "A.PDF", "a.pdf"}, []string{"a.pdf", "A-2.PDF", "a-3.pdf"}},
		{[]string{"a.pdf", "a.pdf", "a-2.pdf"}, []string{"a.pdf", "a-2.pdf", "a-2-2.pdf"}},
		{[]string{"x/a", "y/a", "", ".."}, []string{"a", "a-2", "attachment", "attachment-2"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.in, ","), func(t *testing.T) {
			if got := sink.Filenames(names(tc.in...)); !slices.Equal(got, tc.want) {
				t.Fatalf("Filenames(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzFilenames feeds senders' filenames, which are untrusted, to
// Filenames: every result must be a safe, unique name, the same on every
// call.
func FuzzFilenames(f *testing.F) {
	for _, n := range sinktest.HostileFilenames {
		f.Add(n, "bauplan.pdf")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		atts := []sink.Attachment{{Filename: a}, {Filename: b}, {Filename: a}, {Filename: strings.ToUpper(b)}}
		got := sink.Filenames(atts)
		seen := map[string]bool{}
		for i, name := range got {
			if why := sinktest.SafeFilename(name); why != "" {
				t.Fatalf("Filenames made %q of %q: %s", name, atts[i].Filename, why)
			}
			if !utf8.ValidString(name) || seen[strings.ToLower(name)] {
				t.Fatalf("Filenames made %q twice: %q", name, got)
			}
			seen[strings.ToLower(name)] = true
		}
		if again := sink.Filenames(atts); !slices.Equal(got, again) {
			t.Fatalf("Filenames is not deterministic: %q, then %q", got, again)
		}
	})
}
