package strictjson_test

import (
	"errors"
	"fmt"

	"github.com/amtsbote/amtsbote/pkg/strictjson"
)

func ExampleDecode() {
	var in struct {
		DestinationID string `json:"destinationId"`
	}
	err := strictjson.Decode([]byte(`{"DESTINATIONID":"x"}`), &in, strictjson.Options{})
	var e *strictjson.Error
	if errors.As(err, &e) && errors.Is(err, strictjson.ErrCaseMismatch) {
		fmt.Printf("%s: %s\n", e.Path, e.Reason)
	}
	fmt.Println(err)
	// Output:
	// DESTINATIONID: no such member; did you mean destinationId?
	// member DESTINATIONID: no such member; did you mean destinationId?
}
