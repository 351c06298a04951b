package gateway_test

import (
	"net/http"
	"testing"

	"github.com/amtsbote/amtsbote/internal/flowtest"
	"github.com/amtsbote/amtsbote/pkg/problem"
	"github.com/amtsbote/amtsbote/pkg/store"
)

// TestSubmissionToTheResponsibleDestination: with the applicant's region,
// a submission must go to the destination responsible for the service
// there; another destination serving the region less specifically is
// refused with a 422 naming the responsible one.
func TestSubmissionToTheResponsibleDestination(t *testing.T) {
	f := newFlowEnv(t, flowtest.OpenSQLite(t))
	kreis := f.createDestination(newUUID(t), store.StatusActive, "DE08315")
	muellheim := f.createDestination(newUUID(t), store.StatusActive, "DE083155012074")
	sender := f.token("send:region:DE08")

	body := createBody(kreis)
	body["region"] = "DE083155012074"
	p := f.callJSON(t, http.MethodPost, "/v1/submissions", sender, body).problem(t, http.StatusUnprocessableEntity, problem.TypeUnprocessable, "region")
	if p.Extra["responsibleDestinationId"] != muellheim.ID {
		t.Errorf("problem %+v does not name %s", p, muellheim.ID)
	}

	body = createBody(muellheim)
	body["region"] = "DE083155012074"
	if c := f.create(t, sender, body); c.DestinationID != muellheim.ID {
		t.Errorf("created %+v", c)
	}
	// Auggen has no route of its own: the Kreis is responsible.
	body = createBody(kreis)
	body["region"] = "DE083155012004"
	if c := f.create(t, sender, body); c.DestinationID != kreis.ID {
		t.Errorf("created %+v", c)
	}
	// Without a region the sender chooses among the destinations.
	f.create(t, sender, createBody(kreis))
}
