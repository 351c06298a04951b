package ledger

import (
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/amtsbote/amtsbote/pkg/bus"
)

// FuzzReadEvent feeds EVENTS messages (subject, CloudEvent type, data)
// to the ledger's reader. Whatever it accepts is a token that passes the
// claim rules, belongs to the case its subject names and is the data as
// published, trimmed.
func FuzzReadEvent(f *testing.F) {
	f.Add("ab.events.452b5ee6-35df-441a-bd39-6141723cf914", "de.amtsbote.case.event", []byte("a.b.c"))
	f.Fuzz(func(t *testing.T, subject, typ string, data []byte) {
		ev := event.New()
		ev.SetType(typ)
		c, token, err := readEvent(&bus.Message{Subject: subject, Event: ev, Data: data})
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted claims that break the rules: %v", err)
		}
		caseID, _ := c.CaseID()
		if want, _ := bus.EventsSubject(caseID); want != subject {
			t.Fatalf("accepted case %s on subject %s", caseID, subject)
		}
		if token != strings.TrimSpace(string(data)) {
			t.Fatalf("token %q is not the data", token)
		}
	})
}
