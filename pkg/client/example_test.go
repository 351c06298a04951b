package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
)

// A sender hands in an application with one attachment.
func ExampleSender() {
	ctx := context.Background()
	c, err := client.New("https://amtsbote.example.org",
		client.Credentials(os.Getenv("CLIENT_ID"), os.Getenv("CLIENT_SECRET")))
	if err != nil {
		log.Fatal(err)
	}
	plan, err := os.ReadFile("lageplan.pdf")
	if err != nil {
		log.Fatal(err)
	}
	receipt, err := c.Sender().Submit(ctx, client.Submission{
		DestinationID: "879ee109-a690-4db8-ab32-424284184d7d",
		ServiceType:   client.ServiceType{Identifier: "urn:de:fim:leika:leistung:99010003001006", Name: "Bauantrag"},
		Data:          []byte(`{"bauherr":"Erika Mustermann","flurstueck":"123/4"}`),
		Attachments:   []client.Attachment{{Filename: "lageplan.pdf", MimeType: "application/pdf", Bytes: plan}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("submitted", receipt.SubmissionID, "in case", receipt.CaseID)
	// Later: status, err := c.Sender().StatusOf(ctx, receipt) tells accepted or rejected.
}

// A receiver picks up its destination's submissions, checks each
// completely, and accepts it or rejects it naming the failed check.
func ExampleReceiver() {
	ctx := context.Background()
	destinationID := "879ee109-a690-4db8-ab32-424284184d7d"
	c, err := client.New("https://amtsbote.example.org",
		client.Credentials(os.Getenv("CLIENT_ID"), os.Getenv("CLIENT_SECRET")))
	if err != nil {
		log.Fatal(err)
	}
	var encKey, sigKey jose.KeyPair // loaded with jose.ParsePrivate from the authority's key store
	keys, err := client.NewKeyRing(encKey)
	if err != nil {
		log.Fatal(err)
	}
	receiver := c.Receiver()
	list, err := receiver.ListSubmissions(ctx, destinationID, 100, 0)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range list.Submissions {
		sub, err := receiver.Fetch(ctx, p.SubmissionID, keys)
		var check *client.CheckError
		switch {
		case errors.As(err, &check):
			err = receiver.Reject(ctx, sub, sigKey, check.Problem())
		case err == nil:
			// Deliver sub.Data and sub.Attachments into the specialist procedure here.
			err = receiver.Accept(ctx, sub, sigKey)
			sub.Close()
		}
		if err != nil {
			log.Print(err)
		}
	}
}
