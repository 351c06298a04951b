package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/amtsbote/amtsbote/pkg/client"
	"github.com/amtsbote/amtsbote/pkg/jose"
)

// demo is what the soak reads of demo.json.
type demo struct {
	BaseURL string `json:"baseUrl"`
	Clients []struct {
		Role         string `json:"role"`
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	} `json:"clients"`
	Destinations []struct {
		DestinationID     string `json:"destinationId"`
		EncryptionKeyFile string `json:"encryptionKeyFile"`
		SigningKeyFile    string `json:"signingKeyFile"`
	} `json:"destinations"`
}

// lateTally is what the late back office did.
type lateTally struct {
	Accepted   int      `json:"accepted"`
	Unreadable []string `json:"unreadable,omitempty"`
	// Cases are the accepted ones' cases, whose time to accepted is the
	// load test's giving up, not Amtsbote's.
	Cases []string `json:"cases,omitempty"`
}

// lateBackOffice does what an authority's back office does on its next
// round: it picks up every submission still on its destinations' pickup
// lists, decrypts it with the destination's keys and accepts it. The load
// test's receivers give up on a submission after one failed fetch; an
// authority fetches again later. One that stays unreadable for tries
// attempts is reported by id.
func lateBackOffice(ctx context.Context, demoPath string, tries int, wait time.Duration, tmp string, out io.Writer) (lateTally, error) {
	var t lateTally
	raw, err := os.ReadFile(demoPath)
	if err != nil {
		return t, err
	}
	var d demo
	if err := json.Unmarshal(raw, &d); err != nil {
		return t, fmt.Errorf("read %s: %w", demoPath, err)
	}
	var id, secret string
	for _, c := range d.Clients {
		if c.Role == "receiver" {
			id, secret = c.ClientID, c.ClientSecret
		}
	}
	cl, err := client.New(d.BaseURL, client.Credentials(id, secret),
		client.HTTPClient(&http.Client{Timeout: time.Minute}), client.AttachmentDir(tmp))
	if err != nil {
		return t, err
	}
	rc := cl.Receiver()
	for _, dest := range d.Destinations {
		enc, err := readKey(dest.EncryptionKeyFile)
		if err != nil {
			return t, err
		}
		sig, err := readKey(dest.SigningKeyFile)
		if err != nil {
			return t, err
		}
		ring, err := client.NewKeyRing(enc)
		if err != nil {
			return t, err
		}
		var pending []client.Pickup
		for offset := 0; ; {
			l, err := rc.ListSubmissions(ctx, dest.DestinationID, 500, offset)
			if err != nil {
				return t, err
			}
			pending = append(pending, l.Submissions...)
			offset += len(l.Submissions)
			if len(l.Submissions) == 0 || offset >= l.TotalCount {
				break
			}
		}
		for _, p := range pending {
			var last error
			done := false
			for i := 0; i < tries && !done; i++ {
				if i > 0 {
					select {
					case <-ctx.Done():
						return t, ctx.Err()
					case <-time.After(wait):
					}
				}
				rec, err := rc.Fetch(ctx, p.SubmissionID, ring)
				if err == nil {
					err = rc.Accept(ctx, rec, sig)
					rec.Close()
				}
				if last = err; err == nil {
					done = true
				}
			}
			if done {
				t.Accepted++
				t.Cases = append(t.Cases, p.CaseID)
				fmt.Fprintf(out, "soak: late back office accepted %s\n", p.SubmissionID)
			} else {
				t.Unreadable = append(t.Unreadable, p.SubmissionID)
				fmt.Fprintf(out, "soak: late back office could not take %s: %v\n", p.SubmissionID, last)
			}
		}
	}
	return t, nil
}

func readKey(path string) (jose.KeyPair, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return jose.KeyPair{}, err
	}
	kp, err := jose.ParsePrivate(raw)
	if err != nil {
		return jose.KeyPair{}, fmt.Errorf("key %s: %w", path, err)
	}
	return kp, nil
}
