package config_test

import (
	"fmt"

	"github.com/amtsbote/amtsbote/services/subscriber/config"
)

// ExampleLoad loads a configuration and prints it as the subscriber logs
// it at start: secrets masked, keys named by kid.
func ExampleLoad() {
	c, err := config.Load("testdata/subscriber.example.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(c)
	// Output:
	// # testdata/subscriber.example.yaml
	// mode: nats
	// nats:
	//   url: nats://127.0.0.1:4223
	//   user: subscriber-08315
	//   password: *****
	//   durable: subscriber-08315
	//   filters: [ab.inbox.08.08315.>]
	// http:
	//   baseUrl: https://amtsbote.example
	//   tokenUrl: https://amtsbote.example/token
	//   clientId: bauamt-08315
	//   clientSecret: *****
	// concurrency: 8
	// destinations:
	//   - id: 2f0b0e1c-8d0a-4b9e-9c77-5f1b3d1e2a01
	//     encryptionKeys:
	//       - testdata/keys/enc.private.jwk.json  # kid bauamt-test-enc-1
	//       - testdata/keys/enc2.private.jwk.json  # kid bauamt-test-enc-2
	//     signingKey: testdata/keys/sig.private.jwk.json  # kid bauamt-test-sig-1
	// sink:
	//   kind: http
	//   http:
	//     url: https://fachverfahren.example/intake
	//     timeout: 30s
	//     maxAttempts: 8
	//     headers:
	//       Authorization: *****
}

// ExampleParse shows an error naming file, line and field.
func ExampleParse() {
	_, err := config.Parse("subscriber.yaml", []byte("mode: nats\nnats:\n  url: nats://127.0.0.1:4223\n  durable: sub\n  colour: blue\n"))
	fmt.Println(err)
	// Output:
	// subscriber.yaml:1: destinations: required: at least one destination
	// subscriber.yaml:1: http: required
	// subscriber.yaml:1: sink: required
	// subscriber.yaml:5: nats.colour: unknown key; allowed: url, credentials, user, password, passwordFile, token, tokenFile, durable, filters
}
