package sealed

import (
	"regexp"
	"strings"
	"testing"
)

func TestObjectNames(t *testing.T) {
	const sid, aid = "5b7d3f2e-1c2a-4f6b-9d8e-0a1b2c3d4e5f", "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
	tests := []struct {
		name, got, want string
	}{
		{"payload", PayloadObject(sid), "submissions/" + sid + "/payload"},
		{"attachment", AttachmentObject(sid, aid), "submissions/" + sid + "/attachments/" + aid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
			if !strings.HasPrefix(tt.got, ContentPrefix(sid)) {
				t.Errorf("%q is not under %q", tt.got, ContentPrefix(sid))
			}
		})
	}
}

func TestStateKeys(t *testing.T) {
	const sid, aid, jti = "5b7d3f2e-1c2a-4f6b-9d8e-0a1b2c3d4e5f", "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0", "65605f96-6c4f-5875-ab9d-b3d284c0fc8d"
	tests := []struct {
		name, got, want string
	}{
		{"tags", TagsKey(sid), "tags." + sid},
		{"attachment tag", AttachmentTagKey(sid, aid), "att." + sid + "." + aid},
		{"attachment upload", AttachmentUploadKey(sid, aid), "attu." + sid + "." + aid},
		{"attachment commit", AttachmentCommitKey(sid, aid), "attc." + sid + "." + aid},
		{"submit lock", SubmitLockKey(sid), "submitting." + sid},
		{"outbox", OutboxKey(jti), "outbox." + jti},
	}
	// A key-value key is tokens of [-_=A-Za-z0-9] separated by dots.
	valid := regexp.MustCompile(`^[-_=A-Za-z0-9]+(\.[-_=A-Za-z0-9]+)*$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
			if !valid.MatchString(tt.got) {
				t.Errorf("%q is no valid key-value key", tt.got)
			}
		})
	}
	if !strings.HasPrefix(OutboxKey(jti), OutboxPrefix) {
		t.Errorf("%q is not under %q", OutboxKey(jti), OutboxPrefix)
	}
}
